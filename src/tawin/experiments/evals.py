"""Experiments — further evaluations of every LLM cell beside the main one (``evals:``).

The main evaluation of a cell is ``base.eval`` (its metrics.json). ``evals`` names further ones,
each a set of ``eval`` overrides, written to ``<cell>/eval_<name>/``::

    evals:
      in_sample: {split: train, sample_size: 1000, sample_seed: 0}   # the prompts RL trained on

They may be added to a finished experiment: a rerun scores the finished cells' checkpoints
(nothing is retrained). results.json holds them as ``cells[id]["evals"][name]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tawin.config import build_config, to_dict
from tawin.eval.config import EvalConfig
from tawin.overrides import rename_old_spellings


@dataclass(frozen=True)
class NamedEval:
    name: str
    """Folder suffix (`eval_<name>/`) and key in results.json; lowercase letters, digits, `_`."""
    eval: EvalConfig
    """base.eval with this evaluation's overrides (diagnostics stay with the main evaluation)."""


def parse_evals(raw, base_eval: EvalConfig | None, problems: list[str]) -> tuple[NamedEval, ...]:
    """The ``evals`` mapping (name → eval overrides) resolved against `base_eval`."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.append(
            f"evals must map a name to eval overrides, e.g. evals: {{in_sample: {{split: train}}}}; got {raw!r}"
        )
        return ()
    named = []
    for name, overrides in raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
            problems.append(
                f"evals: the name {name!r} must be lowercase letters, digits or _ (it names the folder eval_<name>/)"
            )
            continue
        if not isinstance(overrides, dict):
            problems.append(f"evals.{name} must be a mapping of eval fields, e.g. {{split: train, sample_size: 1000}}")
            continue
        if base_eval is None:
            continue
        local: list[str] = []
        overrides = rename_old_spellings(
            EvalConfig, overrides, f"evals.{name}.", problems
        )  # before base_eval's new spellings join
        merged = {**to_dict(base_eval), **overrides, "diagnostics": False}
        built = build_config(EvalConfig, merged, f"evals.{name}", local)
        problems += local
        if built is not None:
            problems += [f"evals.{name}: {p}" for p in built.check()]
            named.append(NamedEval(name, built))
    return tuple(named)


def eval_folder(cell_folder: Path, name: str) -> Path:
    """Where the evaluation `name` of a cell writes metrics.json and predictions.jsonl."""
    return Path(cell_folder) / f"eval_{name}"
