"""Experiments — what an experiment folder holds: each cell's files, its cell.json, results.json.

The folder's layout is in :mod:`tawin.experiments.cli`; the functions here name its paths. A
cell's resolved settings (the σ* it chose on valid, a baseline's epochs and valid metrics) are
decided once, written into its cell.json, and read back through :func:`read_cell`;
:func:`resolved_config` and :func:`cell_checkpoint` turn them into the config and the checkpoint
the cell ran with, for results.json and for diagnostics added later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from tawin.checkpoint import atomic_write_json
from tawin.config import to_dict
from tawin.experiments.evals import eval_folder
from tawin.experiments.grid import Cell, Experiment
from tawin.run.config import PipelineConfig
from tawin.run.done import stage_done


@dataclass
class CellRecord:
    """cell.json: the settings a cell resolved when it ran, and what it cost.

    ``seconds`` counts training and evaluation, ``diagnostics_seconds`` the exact-score diagnostics
    apart (on a CPU they cost many times the rest, and may run for some seeds only)."""

    settings: dict = field(default_factory=dict)
    """e.g. {"anchor": 2, "anchor_sweep": {"metric", "scores"}} or {"baseline": {…}, "valid": {…}}."""
    seconds: float = 0
    diagnostics_seconds: float | None = None

    def to_json(self) -> dict:
        timings = {"seconds": round(self.seconds, 1)}
        if self.diagnostics_seconds is not None:
            timings["diagnostics_seconds"] = round(self.diagnostics_seconds, 1)
        return {**self.settings, **timings}


def read_cell(folder: Path) -> CellRecord | None:
    """The cell.json of the cell in `folder`, or None before the cell first recorded anything."""
    path = Path(folder) / "cell.json"
    if not path.exists():
        return None
    settings = json.loads(path.read_text())
    seconds, diagnostics_seconds = settings.pop("seconds", 0), settings.pop("diagnostics_seconds", None)
    return CellRecord(settings, seconds, diagnostics_seconds)


def write_cell(folder: Path, record: CellRecord) -> None:
    atomic_write_json(Path(folder) / "cell.json", record.to_json())


def seed_sft_folder(out: Path, seed: int, name: str = "sft") -> Path:
    """The SFT run that the LLM cells of `seed` start from (`name`: the cell's :attr:`Cell.sft`)."""
    return Path(out) / f"seed_{seed}" / name


def candidate_folder(out: Path, cell: Cell, anchor: int) -> Path:
    """Where a best_on_valid cell trains (rl/) and scores on valid (valid/) the candidate σ* = `anchor`."""
    return Path(out) / cell.id / "sweep" / f"anchor_{anchor}"


def resolved_config(cell: Cell, record: CellRecord | None) -> PipelineConfig:
    """The config the cell ran with: its own, with the σ* it chose on valid where it chose one."""
    anchor = record.settings.get("anchor") if record is not None else None
    if cell.kind == "rl" and anchor is not None:
        return replace(cell.config, rl=replace(cell.config.rl, anchor=anchor))
    return cell.config


def cell_checkpoint(out: Path, cell: Cell, record: CellRecord | None) -> Path:
    """The checkpoint an LLM cell evaluated: the seed's SFT, the chosen candidate's RL, or the cell's RL."""
    if cell.kind == "sft":
        return seed_sft_folder(out, cell.seed, cell.sft) / "best"
    if cell.anchor_mode == "best_on_valid":
        return candidate_folder(out, cell, resolved_config(cell, record).rl.anchor) / "rl" / "final"
    return Path(out) / cell.id / "rl" / "final"


def needs_diagnostics(out: Path, cell: Cell) -> bool:
    """A finished LLM cell whose config asks for diagnostics that its metrics.json does not hold."""
    folder = Path(out) / cell.id
    return (
        cell.kind != "baseline"
        and cell.config.eval.diagnostics
        and stage_done(folder, "cell")
        and "auc" not in json.loads((folder / "metrics.json").read_text())
    )


def missing_evals(out: Path, experiment: Experiment, cell: Cell) -> list:
    """The named evaluations (``evals:``) a finished LLM cell still lacks."""
    folder = Path(out) / cell.id
    if cell.kind == "baseline" or not stage_done(folder, "cell"):
        return []
    return [named for named in experiment.evals if not stage_done(eval_folder(folder, named.name), "cell")]


def needs_work(out: Path, experiment: Experiment, cell: Cell) -> bool:
    """Unfinished, or finished but lacking diagnostics or a named evaluation its experiment asks for."""
    finished = stage_done(Path(out) / cell.id, "cell")
    return not finished or needs_diagnostics(out, cell) or bool(missing_evals(out, experiment, cell))


def collect_results(out: Path, experiment: Experiment, cells: list[Cell], write: bool = False) -> dict:
    """results.json: every cell with a metrics.json, its resolved config and its cell.json."""
    entries = {}
    for cell in cells:
        folder = Path(out) / cell.id
        if not stage_done(folder, "cell"):
            continue
        record = read_cell(folder)
        config = resolved_config(cell, record)
        rl = config.rl
        anchor = rl.resolved_anchor if cell.kind == "rl" and rl.weighting == "tawin" else None
        entries[cell.id] = {
            "seed": cell.seed,
            "cell": cell.name,
            "label": cell.label,
            "method": cell.method,
            "kind": cell.kind,
            "anchor": anchor,
            "anchor_mode": cell.anchor_mode if anchor is not None else None,
            **(record.to_json() if record is not None else {}),
            "config": to_dict(config),
            "metrics": json.loads((folder / "metrics.json").read_text()),
        }
        evals = {
            named.name: json.loads((eval_folder(folder, named.name) / "metrics.json").read_text())
            for named in experiment.evals
            if stage_done(eval_folder(folder, named.name), "cell")
        }
        if evals:
            entries[cell.id]["evals"] = evals
    labels = list(dict.fromkeys(cell.label for cell in cells))
    results = {
        "name": experiment.name,
        "experiment": to_dict(experiment),
        "labels": labels,
        "n_cells": len(cells),
        "complete": len(entries) == len(cells),
        "cells": entries,
    }
    if write:
        atomic_write_json(Path(out) / "results.json", results)
    return results
