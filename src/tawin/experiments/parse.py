"""Experiments — reading an experiment YAML (its schema is in :mod:`tawin.experiments.grid`).

:func:`load_experiment` reads the file and applies ``--set`` overrides; :func:`parse_experiment`
types every section, reports every problem at once (old spellings with their new form) and checks
every cell's resolved config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from tawin.baselines import BaselineName
from tawin.baselines.sequential import SequentialBaselineConfig
from tawin.config import read_yaml
from tawin.errors import ConfigError, UserError
from tawin.experiments.evals import parse_evals
from tawin.experiments.grid import (
    ANCHOR_LISTS,
    EXPERIMENT_KEYS,
    METHOD_RENAMED,
    SFT_ROWS,
    AnchorMode,
    Experiment,
    Method,
    ReportSpec,
    _typed,
)
from tawin.overrides import apply_overrides, in_new_spelling, merge_override, parse_override, rename_old_spellings
from tawin.run.config import PipelineConfig
from tawin.run.small_data import with_small_data

LEGACY_SPELLINGS = {
    "anchors": "the σ* list of an anchor grid sits in its method now: anchor: {grid: [0, 1, 2]}",
    "sweep_anchor": "one cell per σ* is now written anchor: {grid: [0, 1, 2]}",
    "auto": "σ* = target_k − 1 is now written anchor: null",
    "candidates": "choosing σ* on valid is now written anchor: {best_on_valid: [1, 2, 3]}",
}


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read an experiment YAML, apply ``--set`` overrides and validate every cell.

    An override whose first key is a top-level experiment key (``seeds=[0]``,
    ``report.goal_k=5``) applies to the experiment; any other (``rl.max_steps=2``) to ``base``.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: experiment file not found; see configs/experiments/ for examples.")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with base, seeds and methods.")
    problems: list[str] = []
    if isinstance(data.get("base"), dict):  # in its new spelling before a --set in either spelling overrides it
        data["base"] = in_new_spelling(PipelineConfig, data["base"], problems, "base.")
    on_base = []
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] in EXPERIMENT_KEYS:
            merge_override(data, keys, value)
        else:
            on_base.append(text)
    apply_overrides(PipelineConfig, data, on_base, problems, under=("base",))
    return parse_experiment(data, where=str(path), problems=problems, given=on_base)


def parse_experiment(
    data: dict, where: str = "experiment", problems: list[str] | None = None, given: Sequence[str] = ()
) -> Experiment:
    """Build and validate an :class:`Experiment` from a mapping (the parsed YAML); `problems` found
    while reading it are reported with the others. `given` are the ``--set`` overrides of base
    already merged into `data`: they win over base's small-data entries for the same setting."""
    problems = list(problems or [])
    if unknown := sorted(set(data) - set(EXPERIMENT_KEYS)):
        problems.append(f"unknown top-level key(s) {unknown}; valid keys: {list(EXPERIMENT_KEYS)}")
        problems += [f"{key}: {LEGACY_SPELLINGS[key]}" for key in unknown if key in LEGACY_SPELLINGS]
    base_data = data.get("base") or {}
    if isinstance(base_data, dict) and "seed" in base_data:
        problems.append("base.seed: give the seeds as the top-level list `seeds: [0, 1, 2]` instead")
        base_data = {k: v for k, v in base_data.items() if k != "seed"}
    base = _sized(_typed(PipelineConfig, base_data, "base", problems), problems, given)
    seeds = _int_list(data.get("seeds", [0]), "seeds", problems, unique=True, non_empty=True)
    baselines = _list(data.get("baselines", []), "baselines", problems)
    if bad := [b for b in baselines if b not in get_args(BaselineName)]:
        problems.append(f"baselines: {bad} not among {list(get_args(BaselineName))}")
    baseline = _typed(SequentialBaselineConfig, data.get("baseline") or {}, "baseline", problems)
    problems += [f"baseline: {problem}" for problem in (baseline.check() if baseline is not None else [])]
    report = _typed(ReportSpec, data.get("report") or {}, "report", problems)
    diagnostics = data.get("diagnostics", False)
    if not isinstance(diagnostics, bool):
        problems.append(f"diagnostics={diagnostics!r} must be true or false")
    diagnostics_seeds = _int_list(data.get("diagnostics_seeds", []), "diagnostics_seeds", problems, unique=True)
    if seeds and diagnostics_seeds and not set(diagnostics_seeds) <= set(seeds):
        problems.append(f"diagnostics_seeds={list(diagnostics_seeds)} must be among seeds={list(seeds)}")
    methods = _parse_methods(data.get("methods"), problems)
    if base is not None:
        # Cross-field rules run on whatever parsed, so one error lists every problem.
        experiment = Experiment(
            base,
            seeds or (0,),
            methods,
            tuple(b for b in baselines if b in get_args(BaselineName)),
            baseline or SequentialBaselineConfig(),
            diagnostics is True,
            tuple(diagnostics_seeds or ()),
            report or ReportSpec(),
            str(data.get("name", "experiment")),
            parse_evals(data.get("evals"), base.eval, problems),
        )
        problems += [p for p in experiment.check() if p not in problems]
    if problems or base is None:
        raise ConfigError(f"invalid experiment in {where}: " + "; ".join(problems) + ".")
    return experiment


def _sized(base: PipelineConfig | None, problems: list[str], given: Sequence[str]) -> PipelineConfig | None:
    """`base` with the small-data variant applied where its train split is small enough (once, so
    that every cell carries the applied values; `given`, the ``--set`` overrides of base, win over
    its entries, and the methods' settings over both); a problem there is one of the experiment's."""
    if base is None or base.small_data.check():  # a bad small_data section is reported with base's rules
        return base
    try:
        return with_small_data(base, given)
    except UserError as error:
        problems.append(f"base: {str(error).rstrip('.')}")
        return base


def _int_list(value, name: str, problems: list[str], unique: bool = False, non_empty: bool = False) -> tuple[int, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        problems.append(f"{name}={value!r} must be a list of integers")
        return ()
    if non_empty and not values:
        problems.append(f"{name} must list at least one value")
    if unique and len(set(values)) != len(values):
        problems.append(f"{name}={list(values)} repeats a value")
    return tuple(values)


def _list(value, name: str, problems: list[str]) -> list:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        problems.append(f"{name}={value!r} must be a list")
        return []
    return list(value)


def _parse_methods(raw, problems: list[str]) -> tuple[Method, ...]:
    if not isinstance(raw, dict) or not raw:
        problems.append("methods must map each method's display name to its RL overrides (or null for SFT only)")
        return ()
    methods = []
    for label, spec in raw.items():
        label, where = str(label), f"methods[{label}]"
        spec = {"sft_only": True} if spec is None else spec
        if not isinstance(spec, dict):
            problems.append(f"{where}={spec!r} must be a mapping of RL overrides, or null for SFT only")
            continue
        spec = rename_old_spellings(None, spec, f"{where}.", problems, renamed=METHOD_RENAMED)
        if "data" in spec:
            problems.append(
                f"{where}.data={spec.pop('data')!r}: every cell of an experiment shares base.data (the dataset); "
                "a method chooses its train rows in `rows`, e.g. rows: {holdout: 0}"
            )
        if "sweep_anchor" in spec:
            problems.append(f"{where}.sweep_anchor: {LEGACY_SPELLINGS['sweep_anchor']}")
            spec.pop("sweep_anchor")
        if spec.pop("sft_only", False):
            methods.append(Method(label, sft_only=True, rl=_sft_only_rows(spec, where, problems)))
            continue
        mode, candidates = _parse_anchor(spec.get("anchor"), f"{where}.anchor", problems)
        if mode in ANCHOR_LISTS or "anchor" in spec and candidates is None:
            spec.pop("anchor")  # a list of σ* (or a spelling already reported) is no RL override
        methods.append(Method(label, rl=spec, anchor_mode=mode, candidates=candidates or ()))
    return tuple(methods)


def _sft_only_rows(spec: dict, where: str, problems: list[str]) -> dict:
    """An SFT-only method's overrides: at most the SFT hold-out in `rows` (it trains no RL)."""
    rows = spec.get("rows", {})
    if set(spec) - {"rows"} or not isinstance(rows, dict) or set(rows) - set(SFT_ROWS):
        problems.append(
            f"{where}: sft_only takes no RL overrides but the hold-out, rows: {{{', '.join(SFT_ROWS)}}} (got {spec!r})"
        )
        return {}
    return {"rows": rows} if rows else {}


def _parse_anchor(anchor, where: str, problems: list[str]) -> tuple[AnchorMode, tuple[int, ...] | None]:
    """(mode, σ* list) of a method's `anchor`: an integer or null stays an RL override (`config`);
    `{best_on_valid: […]}` and `{grid: […]}` are lists of σ*. A σ* list of None: not understood."""
    if anchor is None or isinstance(anchor, int) and not isinstance(anchor, bool):
        return "config", ()
    if isinstance(anchor, dict) and len(anchor) == 1 and next(iter(anchor)) in ANCHOR_LISTS:
        mode = next(iter(anchor))
        candidates = _int_list(anchor[mode], f"{where}.{mode}", problems, unique=True, non_empty=True)
        if any(a < 0 for a in candidates):
            problems.append(f"{where}.{mode}={list(candidates)} must be ≥ 0 (σ* is a 0-based rank among the negatives)")
        return mode, candidates
    legacy = (
        "candidates" if isinstance(anchor, dict) and "candidates" in anchor else "auto" if anchor == "auto" else None
    )
    problems.append(
        f"{where}={anchor!r}: "
        + (
            LEGACY_SPELLINGS[legacy]
            if legacy
            else "write an integer σ*, null (σ* = target_k − 1), {best_on_valid: [1, 2, 3]} or {grid: [0, 1, 2]}"
        )
    )
    return "config", None
