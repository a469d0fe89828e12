"""Experiments — the YAML schema of a grid of methods × seeds (× anchors σ*), and its cells.

An experiment file (see ``configs/experiments/``)::

    name: industrial-compare        # title of report.md
    base: {data: …, model: …, sft: …, rl: …, eval: …}   # a PipelineConfig mapping shared by all
    seeds: [0, 1, 2]                # one SFT checkpoint per seed, shared by every cell of that seed
    methods:                        # display name → RL overrides (the name's slug names the folder)
      SFT only: null                # null or {sft_only: true}: evaluate the SFT checkpoint
      ReRe: {negatives: beam, reward: rank, weighting: none}
      TAWin (σ*=2): {weighting: tawin, target_k: 3, anchor: 2}
      TAWin auto: {weighting: tawin, target_k: 3, anchor: auto}   # σ* = target_k − 1 (Lemma 3.5)
      TAWin swept: {weighting: tawin, anchor: {auto: sweep, candidates: [1, 2, 3]}}
      TAWin: {weighting: tawin, sweep_anchor: true}               # one cell per σ* in `anchors`
    anchors: [0, 1, 2, 3, 4, 6, 8]  # σ* grid for methods marked sweep_anchor
    baselines: [sasrec, gru4rec, popularity]
    baseline: {max_epochs: 50}      # SequentialBaselineConfig overrides for sasrec/gru4rec
    diagnostics: true               # eval.diagnostics for every LLM cell (AUC, OPAUC, WPAUC@K)
    diagnostics_seeds: [0]          # ...of these seeds only (default: every seed)
    report: {reference: ReRe, candidate: TAWin (σ*=2), goal_k: 3, goal_ratio: 1.045}

``anchor: {auto: sweep, …}`` trains every candidate on the seed's SFT checkpoint, scores each on
the valid split (Recall@target_k, eval.max_rows rows) and reports the best one on the eval split;
the choice and every candidate's valid score are recorded in results.json. Seeds, anchors and
the resolved configs are all validated before any work starts, and every problem is reported in
one :class:`~tawin.errors.ConfigError`. ``diagnostics``, ``diagnostics_seeds`` and ``report`` may
change on a finished experiment folder: a rerun then adds the diagnostics to the finished cells
(their checkpoints are scored; nothing is retrained) and rewrites the report.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import yaml

from tawin.baselines.sequential import SequentialBaselineConfig
from tawin.config import _build, merge_override, parse_override, validate
from tawin.errors import ConfigError
from tawin.pipeline import PipelineConfig
from tawin.rl.config import RLConfig

BaselineName = Literal["sasrec", "gru4rec", "popularity"]
BASELINE_LABELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "popularity": "Popularity"}
EXPERIMENT_KEYS = ("name", "base", "seeds", "methods", "anchors", "baselines", "baseline", "diagnostics", "diagnostics_seeds", "report")
AnchorMode = Literal["config", "auto", "sweep", "grid"]


@dataclass(frozen=True)
class Method:
    label: str
    """Display name in tables and plots (the YAML key)."""
    sft_only: bool = False
    """Evaluate the seed's SFT checkpoint instead of training RL."""
    rl: dict = field(default_factory=dict)
    """RLConfig overrides on top of base.rl (anchor excluded when anchor_mode is auto/sweep/grid)."""
    anchor_mode: AnchorMode = "config"
    """`config`: σ* from rl (−1 → target_k−1); `auto`: σ* = target_k−1 recorded explicitly;
    `sweep`: best of `candidates` on valid Recall@target_k; `grid`: one cell per experiment anchor."""
    candidates: tuple[int, ...] = ()
    """σ* candidates of `anchor: {auto: sweep}`."""


@dataclass(frozen=True)
class ReportSpec:
    reference: str | None = None
    """Method label the relative gains and the bootstrap compare against (e.g. ReRe)."""
    candidate: str | None = None
    """Method label of the goal line and the paired bootstrap (e.g. TAWin (σ*=2))."""
    goal_k: int = 3
    """K of the goal's Recall@K and of the bootstrap's per-row Recall@K."""
    goal_ratio: float = 1.045
    """Goal: mean Recall@goal_k of the candidate ≥ goal_ratio × the reference's."""
    bootstrap_resamples: int = 10000
    """Resamples S of the paired bootstrap over eval rows."""
    ks: tuple[int, ...] = (1, 3, 5, 10)
    """Cut-offs K in the report's tables and comparison plot."""
    sweep_ks: tuple[int, ...] = (1, 3, 5)
    """Recall@K curves of the anchor-sweep plot; each should peak near σ* = K − 1."""


@dataclass(frozen=True)
class Experiment:
    base: PipelineConfig = field(default_factory=PipelineConfig)
    """Shared pipeline config; each cell replaces seed (and rl for RL methods)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds; every (method, seed) is one cell and every seed trains one SFT checkpoint."""
    methods: tuple[Method, ...] = ()
    """Methods in report order."""
    anchors: tuple[int, ...] = ()
    """σ* grid for methods marked `sweep_anchor: true`."""
    baselines: tuple[BaselineName, ...] = ()
    """Classical baselines, each trained per seed and scored on the same eval rows."""
    baseline: SequentialBaselineConfig = field(default_factory=SequentialBaselineConfig)
    """Hyper-parameters of sasrec/gru4rec (seed replaced per cell)."""
    diagnostics: bool = False
    """Exact full-catalogue AUC/OPAUC/WPAUC@K for every LLM cell (eval.diagnostics_rows rows).
    Turning it on for a finished experiment adds them to the finished cells without retraining."""
    diagnostics_seeds: tuple[int, ...] = ()
    """The seeds whose cells get diagnostics (empty = every seed): they cost ~1 CPU-second per
    row and cell on the default model, so one seed is often what a CPU can afford."""
    report: ReportSpec = field(default_factory=ReportSpec)
    """What report.md compares."""
    name: str = "experiment"
    """Title of report.md."""


@dataclass(frozen=True)
class Cell:
    seed: int
    name: str
    """Folder name under seed_S/ (the method's slug, `-a<σ*>` for anchor-grid cells)."""
    label: str
    """Row label in tables: the method label, plus ` (σ*=a)` for anchor-grid cells."""
    method: str
    """The method's label (groups the cells of an anchor grid)."""
    kind: Literal["sft", "rl", "baseline"]
    config: PipelineConfig
    anchor_mode: AnchorMode = "config"
    candidates: tuple[int, ...] = ()

    @property
    def id(self) -> str:
        return f"seed_{self.seed}/{self.name}"


def slug(label: str) -> str:
    """Folder-safe name: lowercase ASCII letters/digits joined by '-' ("TAWin (σ*=2)" → "tawin-2")."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "method"


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read an experiment YAML, apply ``--set`` overrides and validate every cell.

    An override whose first key is a top-level experiment key (``seeds=[0]``,
    ``report.goal_k=5``) applies to the experiment; any other (``rl.max_steps=2``) to ``base``.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: experiment file not found; see configs/experiments/ for examples.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with base, seeds and methods.")
    for text in overrides:
        keys, value = parse_override(text)
        merge_override(data, keys if keys[0] in EXPERIMENT_KEYS else ["base", *keys], value)
    return parse_experiment(data, where=str(path))


def parse_experiment(data: dict, where: str = "experiment") -> Experiment:
    """Build and validate an :class:`Experiment` from a mapping (the parsed YAML)."""
    problems: list[str] = []
    unknown = sorted(set(data) - set(EXPERIMENT_KEYS))
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown}; valid keys: {list(EXPERIMENT_KEYS)}")
    base_data = data.get("base") or {}
    if isinstance(base_data, dict) and "seed" in base_data:
        problems.append("base.seed: give the seeds as the top-level list `seeds: [0, 1, 2]` instead")
        base_data = {k: v for k, v in base_data.items() if k != "seed"}
    base = _typed(PipelineConfig, base_data, "base", problems)
    seeds = _int_list(data.get("seeds", [0]), "seeds", problems, unique=True, non_empty=True)
    anchors = _int_list(data.get("anchors", []), "anchors", problems, unique=True)
    if any(a < 0 for a in anchors):
        problems.append(f"anchors={list(anchors)} must be ≥ 0 (σ* is a 0-based rank among the negatives)")
    baselines = _list(data.get("baselines", []), "baselines", problems)
    bad = [b for b in baselines if b not in BASELINE_LABELS]
    if bad:
        problems.append(f"baselines: {bad} not among {list(BASELINE_LABELS)}")
    baseline = _typed(SequentialBaselineConfig, data.get("baseline") or {}, "baseline", problems)
    try:
        baseline = baseline.validate() if baseline is not None else None
    except ConfigError as error:
        problems.append(f"baseline: {error}")
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
        experiment = Experiment(base, seeds or (0,), methods, anchors, tuple(b for b in baselines if b in BASELINE_LABELS),
                                baseline or SequentialBaselineConfig(), diagnostics is True, tuple(diagnostics_seeds or ()),
                                report or ReportSpec(), str(data.get("name", "experiment")))
        problems += [p for p in check_experiment(experiment) if p not in problems]
    if problems or base is None:
        raise ConfigError(f"invalid experiment in {where}: " + "; ".join(problems) + ".")
    return experiment


def _typed(cls, data, prefix: str, problems: list[str]):
    """`cls` from a mapping via tawin.config's typed builder; None (and problems) when it does not fit."""
    if not isinstance(data, dict):
        problems.append(f"{prefix} must be a mapping of {cls.__name__} fields")
        return None
    local: list[str] = []
    built = _build(cls, data, prefix, local)
    problems += local
    return built


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
        sft_only, grid = spec.pop("sft_only", False), spec.pop("sweep_anchor", False)
        if sft_only:
            if spec or grid:
                problems.append(f"{where}: sft_only takes no RL overrides (got {sorted(spec) + (['sweep_anchor'] if grid else [])})")
            methods.append(Method(label, sft_only=True))
            continue
        anchor = spec.get("anchor")
        mode, candidates = ("grid", ()) if grid else ("config", ())
        if grid and anchor is not None:
            problems.append(f"{where}: sweep_anchor takes σ* from the top-level `anchors`; drop `anchor`")
        elif anchor == "auto":
            mode = "auto"
        elif isinstance(anchor, dict):
            if anchor.get("auto") != "sweep" or set(anchor) - {"auto", "candidates"}:
                problems.append(f"{where}.anchor={anchor!r}: write `anchor: {{auto: sweep, candidates: [1, 2, 3]}}`")
            candidates = _int_list(anchor.get("candidates", []), f"{where}.anchor.candidates", problems, unique=True, non_empty=True)
            mode = "sweep"
        elif isinstance(anchor, str):
            problems.append(f"{where}.anchor={anchor!r}: use an integer σ*, `auto` or `{{auto: sweep, candidates: […]}}`")
        if mode != "config":
            spec.pop("anchor", None)
        methods.append(Method(label, rl=spec, anchor_mode=mode, candidates=candidates))
    return tuple(methods)


def check_experiment(experiment: Experiment) -> list[str]:
    """Cross-field rules (anchors vs methods, folder names, report labels, diagnostics module)."""
    problems: list[str] = []
    grid = [m.label for m in experiment.methods if m.anchor_mode == "grid"]
    if grid and not experiment.anchors:
        problems.append(f"methods {grid} set sweep_anchor: true but `anchors` is empty; list σ* values, e.g. anchors: [0, 1, 2, 3, 4]")
    if experiment.anchors and not grid:
        problems.append("`anchors` is set but no method has sweep_anchor: true; mark the method to sweep")
    folders: dict[str, str] = {}
    labels: dict[str, str] = {}
    cells = expand_cells(experiment, problems)
    for cell in (c for c in cells if c.seed == experiment.seeds[0]):
        if folders.setdefault(cell.name, cell.label) != cell.label:
            problems.append(f"methods {folders[cell.name]!r} and {cell.label!r} share the folder name {cell.name!r}; rename one")
        if labels.setdefault(cell.label, cell.name) != cell.name:
            problems.append(f"two cells are labelled {cell.label!r} (folders {labels[cell.label]!r} and {cell.name!r}); rename a method")
    labels |= {m.label: "" for m in experiment.methods}  # a method whose RL config failed still counts
    for role in ("reference", "candidate"):
        value = getattr(experiment.report, role)
        if value is not None and value not in labels:
            problems.append(f"report.{role}={value!r} is not a method or baseline label ({sorted(labels)})")
    spec, ks = experiment.report, set(experiment.base.eval.ks)
    for name, wanted in (("ks", spec.ks), ("sweep_ks", spec.sweep_ks), ("goal_k", (spec.goal_k,))):
        if missing := sorted(set(wanted) - ks):
            problems.append(f"report.{name} asks for K={missing} but base.eval.ks={sorted(ks)}; add them to base.eval.ks or drop them")
    sequential = [b for b in experiment.baselines if b != "popularity"]
    if sequential and max(experiment.base.eval.ks, default=0) > experiment.baseline.eval_top:
        problems.append(f"baseline.eval_top={experiment.baseline.eval_top} < max(base.eval.ks)={max(experiment.base.eval.ks)}: "
                        f"{sequential} could not be scored at every K; raise baseline.eval_top")
    if experiment.diagnostics and importlib.util.find_spec("tawin.eval.diagnostics") is None:
        problems.append("diagnostics: true needs tawin.eval.diagnostics, which this checkout lacks; set diagnostics: false")
    return problems


def expand_cells(experiment: Experiment, problems: list[str] | None = None) -> list[Cell]:
    """Every cell, seed-major in report order: methods (anchor grids expanded), then baselines.

    Each method's RLConfig is resolved and checked once; problems go to `problems` (or raise).
    """
    raise_now = problems is None
    problems = [] if problems is None else problems
    base = experiment.base
    problems += [f"base: {p}" for p in validate(base) if not p.startswith("rl.")]
    # (folder, label, method, kind, rl or None, anchor mode, candidates) — the same for every seed.
    specs: list[tuple] = []
    for method in experiment.methods:
        name, where = slug(method.label), f"methods[{method.label}]"
        if method.sft_only:
            specs.append((name, method.label, method.label, "sft", None, "config", ()))
            continue
        rl = _resolve_rl(base.rl, method, problems)
        if rl is None:
            continue
        if method.anchor_mode == "auto":
            rl = replace(rl, anchor=rl.target_k - 1)
        if method.anchor_mode == "grid":
            for anchor in experiment.anchors:
                problems += [f"{where} at σ*={anchor}: {p}" for p in replace(rl, anchor=anchor).check()]
                specs.append((f"{name}-a{anchor}", f"{method.label} (σ*={anchor})", method.label, "rl", replace(rl, anchor=anchor), "grid", ()))
            continue
        for anchor in method.candidates:
            problems += [f"{where} candidate σ*={anchor}: {p}" for p in replace(rl, anchor=anchor).check()]
        if method.candidates and rl.target_k not in base.eval.ks:
            problems.append(f"{where}: the anchor sweep picks by valid Recall@{rl.target_k}; add {rl.target_k} to base.eval.ks")
        if not method.candidates:
            problems += [f"{where}: {p}" for p in rl.check()]
        specs.append((name, method.label, method.label, "rl", rl, method.anchor_mode, method.candidates))
    for baseline in experiment.baselines:
        specs.append((baseline, BASELINE_LABELS[baseline], BASELINE_LABELS[baseline], "baseline", None, "config", ()))
    cells = []
    for seed in experiment.seeds:
        diagnose = experiment.diagnostics and (not experiment.diagnostics_seeds or seed in experiment.diagnostics_seeds)
        seeded = replace(base, seed=seed, eval=replace(base.eval, diagnostics=diagnose))
        for name, label, method, kind, rl, mode, candidates in specs:
            config = seeded if rl is None else replace(seeded, rl=rl)
            cells.append(Cell(seed, name, label, method, kind, config, mode, candidates))
    if raise_now and problems:
        raise ConfigError("invalid experiment: " + "; ".join(problems) + ".")
    return cells


def _resolve_rl(base_rl: RLConfig, method: Method, problems: list[str]) -> RLConfig | None:
    """base.rl with the method's overrides, typed like a YAML rl section (unknown keys reported)."""
    data = {f.name: getattr(base_rl, f.name) for f in dataclasses.fields(RLConfig)}
    data.update(method.rl)
    return _typed(RLConfig, data, f"methods[{method.label}]", problems)
