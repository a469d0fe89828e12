"""Experiments — the YAML schema of a grid of methods × seeds (× anchors σ*), and its cells.

An experiment file (see ``configs/experiments/``)::

    name: industrial-compare        # title of report.md
    base: {data: …, model: …, sft: …, rl: …, eval: …}   # a PipelineConfig mapping shared by all
    seeds: [0, 1, 2]                # one SFT checkpoint per seed, shared by every cell of that seed
    methods:                        # display name → RL overrides (the name's slug names the folder)
      SFT only: null                # null or {sft_only: true}: evaluate the SFT checkpoint
      ReRe: {negatives: beam, reward: rank, weighting: none}
      TAWin (σ*=2): {weighting: tawin, target_k: 3, anchor: 2}
      TAWin (K−1): {weighting: tawin, target_k: 5, anchor: null}
      TAWin (valid): {weighting: tawin, target_k: 3, anchor: {best_on_valid: [1, 2, 3]}}
      TAWin: {weighting: tawin, anchor: {grid: [0, 1, 2, 3, 4, 6, 8]}}
      SFT (all train rows): {sft_only: true, rows: {holdout: 0}}   # its own SFT: seed_S/sft-rl-holdout-0/
    baselines: [sasrec, gru4rec, popularity]
    baseline: {max_epochs: 50}      # SequentialBaselineConfig overrides for sasrec/gru4rec
    diagnostics: true               # eval.diagnostics for every LLM cell (AUC, OPAUC, WPAUC@K)
    diagnostics_seeds: [0]          # ...of these seeds only (default: every seed)
    report: {reference: ReRe, candidate: TAWin (σ*=2), goal_k: 3, goal_ratio: 1.045}

A TAWin method's σ* (``anchor``) has one spelling per meaning, recorded as the cell's
``anchor_mode`` in results.json:

* ``anchor: 2`` — that σ* (``config``);
* ``anchor: null`` — σ* = target_k − 1, the window that targets Recall@target_k (Lemma 3.5); the
  default of ``rl.anchor``, so leaving ``anchor`` out means the same unless base.rl sets one. The
  cell records the resolved σ* (``auto``);
* ``anchor: {best_on_valid: [1, 2, 3]}`` — one cell: every σ* of the list is trained on the seed's
  SFT checkpoint and scored on the valid split (Recall@target_k, eval.sample_size rows); the best is
  reported on the eval split, and the choice and every candidate's valid score are recorded
  (``best_on_valid``; the candidates' runs sit in the cell's ``sweep/anchor_A/``);
* ``anchor: {grid: [0, 1, 2, 3, 4, 6, 8]}`` — one cell per σ* (folder ``<method>-a<σ*>``, label
  ``<method> (σ*=a)``), plotted as the anchor sweep of report.md (``grid``).

A method's ``rows`` overrides base.rl.rows (:class:`~tawin.rl.config.RLRows`); one whose hold-out
(``holdout``, ``holdout_order``) differs from base's starts from (or evaluates) an SFT checkpoint of
its own, ``seed_S/sft-<overrides>/`` (named by the fields' earlier spellings, ``sft-rl-holdout-0``,
so that earlier experiment folders resume), trained once per seed for every method that shares
those overrides. That is how one experiment holds both RL on rows held out of SFT and the SFT
trained on every train row that it must beat. An SFT-only method may set only that hold-out. The
earlier spellings ``data: {rl_holdout: …, rl_holdout_order: …}`` and ``latest_share``,
``max_rows``, ``sample_seed`` in a method still load (:data:`METHOD_RENAMED`).

Seeds, anchors and the resolved configs are all validated before any work starts, and every
problem is reported in one :class:`~tawin.errors.ConfigError`. ``diagnostics``,
``diagnostics_seeds`` and ``report`` may change on a finished experiment folder: a rerun then adds
the diagnostics to the finished cells (their checkpoints are scored; nothing is retrained) and
rewrites the report.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from tawin.baselines import BaselineName
from tawin.baselines.sequential import SequentialBaselineConfig
from tawin.config import build_config, deep_merge, to_dict, validate
from tawin.errors import ConfigError
from tawin.experiments.evals import NamedEval
from tawin.metrics.ranking import TOP_KS
from tawin.rl.config import RLConfig, RLRows
from tawin.run.config import PipelineConfig

BASELINE_LABELS: dict[BaselineName, str] = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "popularity": "Popularity"}
AnchorMode = Literal["config", "auto", "best_on_valid", "grid"]
ANCHOR_LISTS: tuple[AnchorMode, ...] = ("best_on_valid", "grid")
"""The modes written as `anchor: {<mode>: [σ*, …]}`."""
CellKind = Literal["sft", "rl", "baseline"]


METHOD_RENAMED: dict[str, str] = {
    "data.rl_holdout": "rows.holdout",
    "data.rl_holdout_order": "rows.holdout_order",
    **RLConfig.RENAMED,
}
"""Old spellings in a method's YAML mapping that still load (see :mod:`tawin.overrides`)."""
SFT_ROWS: dict[str, str] = {"holdout": "rl_holdout", "holdout_order": "rl_holdout_order"}
"""The `rl.rows` fields that choose SFT's rows (an SFT-only method may set them), each with the
earlier spelling that names its SFT folder."""


@dataclass(frozen=True)
class Method:
    RENAMED: ClassVar[dict[str, str]] = {
        "data.rl_holdout": "rl.rows.holdout",
        "data.rl_holdout_order": "rl.rows.holdout_order",
        **{f"rl.{old}": f"rl.{new}" for old, new in RLConfig.RENAMED.items()},
    }
    """Old spellings in the experiment's saved config.yaml, where a method's `data` held its hold-out."""
    RETIRED: ClassVar[tuple[str, ...]] = ("data",)

    label: str
    """Display name in tables and plots (the YAML key)."""
    sft_only: bool = False
    """Evaluate the seed's SFT checkpoint instead of training RL."""
    rl: dict = field(default_factory=dict)
    """RLConfig overrides on top of base.rl (anchor excluded for best_on_valid and grid); `rows`
    overrides base.rl.rows. An SFT-only method holds at most `rows` with the SFT hold-out."""
    anchor_mode: AnchorMode = "config"
    """How σ* is set (see the module docstring); `auto` is decided per cell, where σ* is null."""
    candidates: tuple[int, ...] = ()
    """The σ* list of `anchor: {best_on_valid: […]}` or `anchor: {grid: […]}`."""


@dataclass(frozen=True)
class ReportSpec:
    reference: str | None = None
    """Method label the relative gains and the bootstrap compare against (e.g. ReRe)."""
    candidate: str | None = None
    """Method label of the goal line and the paired bootstrap (e.g. TAWin (σ*=2))."""
    sft_reference: str | None = None
    """Method label of the SFT run RL must beat (e.g. SFT on every train row, where RL trains on
    rows held out of SFT): report.md adds the paired bootstrap of candidate − it."""
    goal_k: int = 3
    """K of the goal's Recall@K and of the bootstrap's per-row Recall@K."""
    goal_ratio: float = 1.045
    """Goal: mean Recall@goal_k of the candidate ≥ goal_ratio × the reference's."""
    bootstrap_resamples: int = 10000
    """Resamples S of the paired bootstrap over eval rows."""
    ks: tuple[int, ...] = TOP_KS.reported
    """Cut-offs K in the report's tables and comparison plot."""
    sweep_ks: tuple[int, ...] = TOP_KS.swept
    """Recall@K curves of the anchor-sweep plot; each should peak near σ* = K − 1."""


@dataclass(frozen=True)
class Experiment:
    base: PipelineConfig = field(default_factory=PipelineConfig)
    """Shared pipeline config; each cell replaces seed (and rl for RL methods)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds; every (method, seed) is one cell and every seed trains one SFT checkpoint."""
    methods: tuple[Method, ...] = ()
    """Methods in report order."""
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
    evals: tuple[NamedEval, ...] = ()
    """Further evaluations of every LLM cell (see :mod:`tawin.experiments.evals`)."""

    def check(self) -> list[str]:
        """Cross-field rules (folder names, labels, report Ks and labels, baselines) and every cell's
        resolved config."""
        problems: list[str] = []
        folders: dict[str, str] = {}
        labels: dict[str, str] = {}
        cells = expand_cells(self, problems)
        for cell in (c for c in cells if c.seed == self.seeds[0]):
            if folders.setdefault(cell.name, cell.label) != cell.label:
                problems.append(
                    f"methods {folders[cell.name]!r} and {cell.label!r} share the folder name {cell.name!r}; rename one"
                )
            if labels.setdefault(cell.label, cell.name) != cell.name:
                problems.append(
                    f"two cells are labelled {cell.label!r} (folders "
                    f"{labels[cell.label]!r} and {cell.name!r}); rename a method"
                )
        labels |= {m.label: "" for m in self.methods}  # a method whose RL config failed still counts
        for role in ("reference", "candidate", "sft_reference"):
            value = getattr(self.report, role)
            if value is not None and value not in labels:
                problems.append(f"report.{role}={value!r} is not a method or baseline label ({sorted(labels)})")
        spec, ks = self.report, set(self.base.eval.ks)
        for name, wanted in (("ks", spec.ks), ("sweep_ks", spec.sweep_ks), ("goal_k", (spec.goal_k,))):
            if missing := sorted(set(wanted) - ks):
                problems.append(
                    f"report.{name} asks for K={missing} but "
                    f"base.eval.ks={sorted(ks)}; add them to base.eval.ks or drop them"
                )
        sequential = [b for b in self.baselines if b != "popularity"]
        if sequential and max(self.base.eval.ks, default=0) > self.baseline.eval_top:
            problems.append(
                f"baseline.eval_top={self.baseline.eval_top} < max(base.eval.ks)={max(self.base.eval.ks)}: "
                f"{sequential} could not be scored at every K; raise baseline.eval_top"
            )
        return problems


EXPERIMENT_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Experiment))


@dataclass(frozen=True)
class Cell:
    seed: int
    name: str
    """Folder name under seed_S/ (the method's slug, `-a<σ*>` for anchor-grid cells)."""
    label: str
    """Row label in tables: the method label, plus ` (σ*=a)` for anchor-grid cells."""
    method: str
    """The method's label (groups the cells of an anchor grid)."""
    kind: CellKind
    config: PipelineConfig
    """The cell's resolved config (for best_on_valid, σ* is chosen when the cell runs)."""
    anchor_mode: AnchorMode = "config"
    candidates: tuple[int, ...] = ()
    """The σ* candidates of a best_on_valid cell."""
    sft: str = "sft"
    """Folder under seed_S/ of the SFT run the cell evaluates or starts from (see :func:`sft_folder_name`)."""

    @property
    def id(self) -> str:
        return f"seed_{self.seed}/{self.name}"


def sft_folder_name(rows: RLRows, base: RLRows) -> str:
    """`sft` for base.rl.rows' hold-out; `sft-<field>-<value>…` for a method's other hold-out (one SFT each),
    the fields named by their earlier spellings (`sft-rl-holdout-0`)."""
    values = {old: getattr(rows, key) for key, old in SFT_ROWS.items() if getattr(rows, key) != getattr(base, key)}
    changed = [f"{key}-{value:g}" if isinstance(value, float) else f"{key}-{value}" for key, value in values.items()]
    return "sft" if not changed else slug("sft-" + "-".join(changed))


def slug(label: str) -> str:
    """Folder-safe name: lowercase ASCII letters/digits joined by '-' ("TAWin (σ*=2)" → "tawin-2")."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "method"


def _typed(cls, data, prefix: str, problems: list[str]):
    """`cls` from a mapping via tawin.config's typed builder; None (and problems) when it does not fit."""
    if not isinstance(data, dict):
        problems.append(f"{prefix} must be a mapping of {cls.__name__} fields")
        return None
    local: list[str] = []
    built = build_config(cls, data, prefix, local)
    problems += local
    return built


def expand_cells(experiment: Experiment, problems: list[str] | None = None) -> list[Cell]:
    """Every cell, seed-major in report order: methods (anchor grids expanded), then baselines.

    Each method's RLConfig is resolved and checked once; problems go to `problems` (or raise).
    """
    raise_now = problems is None
    problems = [] if problems is None else problems
    base = experiment.base
    problems += [f"base: {p}" for p in validate(base) if not p.startswith("rl.")]
    specs: list[
        tuple
    ] = []  # (folder, label, method, kind, rl or None, anchor mode, candidates): the same for every seed
    for method in experiment.methods:
        specs += _method_specs(method, base, problems)
    for baseline in experiment.baselines:
        specs.append((baseline, BASELINE_LABELS[baseline], BASELINE_LABELS[baseline], "baseline", None, "config", ()))
    cells = []
    for seed in experiment.seeds:
        diagnose = experiment.diagnostics and (not experiment.diagnostics_seeds or seed in experiment.diagnostics_seeds)
        seeded = replace(base, seed=seed, eval=replace(base.eval, diagnostics=diagnose))
        for name, label, method, kind, rl, mode, candidates in specs:
            config = seeded if rl is None else replace(seeded, rl=rl)
            sft = sft_folder_name(config.rl.rows, base.rl.rows)
            cells.append(Cell(seed, name, label, method, kind, config, mode, candidates, sft))
    if raise_now and problems:
        raise ConfigError("invalid experiment: " + "; ".join(problems) + ".")
    return cells


def _method_specs(method: Method, base: PipelineConfig, problems: list[str]) -> list[tuple]:
    """The cell specs of one method (several for an anchor grid), its RL config resolved and checked."""
    name, where = slug(method.label), f"methods[{method.label}]"
    rl = _resolve_rl(base.rl, method, problems)
    if rl is None:
        return []
    problems += [f"{where}: {p}" for p in rl.rows.check()]
    if method.sft_only:  # its rl section differs from base.rl in the SFT hold-out at most
        return [(name, method.label, method.label, "sft", rl, "config", ())]
    if method.anchor_mode == "grid":
        for anchor in method.candidates:
            problems += [f"{where} at σ*={anchor}: {p}" for p in replace(rl, anchor=anchor).check()]
        return [
            (
                f"{name}-a{anchor}",
                f"{method.label} (σ*={anchor})",
                method.label,
                "rl",
                replace(rl, anchor=anchor),
                "grid",
                (),
            )
            for anchor in method.candidates
        ]
    if method.anchor_mode == "best_on_valid":
        for anchor in method.candidates:
            problems += [f"{where} candidate σ*={anchor}: {p}" for p in replace(rl, anchor=anchor).check()]
        if rl.target_k not in base.eval.ks:
            problems.append(
                f"{where}: best_on_valid picks σ* by valid Recall@{rl.target_k}; add {rl.target_k} to base.eval.ks"
            )
        return [(name, method.label, method.label, "rl", rl, "best_on_valid", method.candidates)]
    problems += [f"{where}: {p}" for p in rl.check()]
    if rl.weighting == "tawin" and rl.anchor is None:  # σ* = target_k − 1, recorded as such
        return [(name, method.label, method.label, "rl", replace(rl, anchor=rl.resolved_anchor), "auto", ())]
    return [(name, method.label, method.label, "rl", rl, "config", ())]


def _resolve_rl(base_rl: RLConfig, method: Method, problems: list[str]) -> RLConfig | None:
    """base.rl with the method's overrides, typed like a YAML rl section (unknown keys reported)."""
    return _with_overrides(base_rl, method.rl, f"methods[{method.label}]", problems)


def _with_overrides(base, overrides: dict, prefix: str, problems: list[str]):
    """A config section `base` with `overrides` merged in (nested sections field by field), typed like
    a YAML section (None and problems where they do not fit)."""
    return _typed(type(base), deep_merge(to_dict(base), overrides), prefix, problems)
