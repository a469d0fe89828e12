"""Experiments — reading an experiment YAML (its schema is in :mod:`tawin.experiments.grid`).

:func:`load_experiment` reads the file and applies ``--set`` overrides; :func:`parse_experiment`
types every section, reports every problem at once (old spellings with their new form) and checks
every cell's resolved config.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from tawin.baselines import BaselineName
from tawin.baselines.sequential import SequentialBaselineConfig
from tawin.config import merge_override, parse_override, read_yaml
from tawin.errors import ConfigError
from tawin.experiments.evals import parse_evals
from tawin.experiments.grid import (
    ANCHOR_LISTS,
    EXPERIMENT_KEYS,
    METHOD_DATA_KEYS,
    AnchorMode,
    Experiment,
    Method,
    ReportSpec,
    _typed,
)
from tawin.run.config import PipelineConfig

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
    for text in overrides:
        keys, value = parse_override(text)
        merge_override(data, keys if keys[0] in EXPERIMENT_KEYS else ["base", *keys], value)
    return parse_experiment(data, where=str(path))


def parse_experiment(data: dict, where: str = "experiment") -> Experiment:
    """Build and validate an :class:`Experiment` from a mapping (the parsed YAML)."""
    problems: list[str] = []
    if unknown := sorted(set(data) - set(EXPERIMENT_KEYS)):
        problems.append(f"unknown top-level key(s) {unknown}; valid keys: {list(EXPERIMENT_KEYS)}")
        problems += [f"{key}: {LEGACY_SPELLINGS[key]}" for key in unknown if key in LEGACY_SPELLINGS]
    base_data = data.get("base") or {}
    if isinstance(base_data, dict) and "seed" in base_data:
        problems.append("base.seed: give the seeds as the top-level list `seeds: [0, 1, 2]` instead")
        base_data = {k: v for k, v in base_data.items() if k != "seed"}
    base = _typed(PipelineConfig, base_data, "base", problems)
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
        experiment = Experiment(base, seeds or (0,), methods, tuple(b for b in baselines if b in get_args(BaselineName)),
                                baseline or SequentialBaselineConfig(), diagnostics is True, tuple(diagnostics_seeds or ()),
                                report or ReportSpec(), str(data.get("name", "experiment")),
                                parse_evals(data.get("evals"), base.eval, problems))
        problems += [p for p in experiment.check() if p not in problems]
    if problems or base is None:
        raise ConfigError(f"invalid experiment in {where}: " + "; ".join(problems) + ".")
    return experiment


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
        spec = dict(spec)
        data = _method_data(spec.pop("data", None), f"{where}.data", problems)
        if "sweep_anchor" in spec:
            problems.append(f"{where}.sweep_anchor: {LEGACY_SPELLINGS['sweep_anchor']}")
            spec.pop("sweep_anchor")
        if spec.pop("sft_only", False):
            if spec:
                problems.append(f"{where}: sft_only takes no RL overrides (got {sorted(spec)})")
            methods.append(Method(label, sft_only=True, data=data))
            continue
        mode, candidates = _parse_anchor(spec.get("anchor"), f"{where}.anchor", problems)
        if mode in ANCHOR_LISTS or "anchor" in spec and candidates is None:
            spec.pop("anchor")  # a list of σ* (or a spelling already reported) is no RL override
        methods.append(Method(label, data=data, rl=spec, anchor_mode=mode, candidates=candidates or ()))
    return tuple(methods)


def _method_data(raw, where: str, problems: list[str]) -> dict:
    """A method's base.data overrides: only the hold-out fields (every cell shares one dataset)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{where}={raw!r} must be a mapping such as {{rl_holdout: 0}}")
        return {}
    if bad := sorted(set(raw) - set(METHOD_DATA_KEYS)):
        problems.append(f"{where}: {bad} cannot differ between methods (every cell of an experiment shares base.data's dataset); "
                        f"a method may set {list(METHOD_DATA_KEYS)}")
    return {key: value for key, value in raw.items() if key in METHOD_DATA_KEYS}


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
    legacy = "candidates" if isinstance(anchor, dict) and "candidates" in anchor else "auto" if anchor == "auto" else None
    problems.append(f"{where}={anchor!r}: " + (LEGACY_SPELLINGS[legacy] if legacy else "write an integer σ*, null (σ* = target_k − 1), "
                                                "{best_on_valid: [1, 2, 3]} or {grid: [0, 1, 2]}"))
    return "config", None
