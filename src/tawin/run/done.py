"""Orchestration — the one rule for "is this stage's output complete?".

Each stage writes the files that mark it done last (a checkpoint folder is renamed into place whole,
results go through an atomic rename), so a folder holding every marker of its kind is finished and
is skipped, and one lacking any is resumed or redone. `tawin run` (:mod:`tawin.run.stages`,
:mod:`tawin.run.pipeline`), `tawin baseline` (:mod:`tawin.run.baseline`) and `tawin experiment`
(:mod:`tawin.experiments.worker`, :mod:`tawin.experiments.results`) all ask :func:`stage_done`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

StageOutput = Literal["sft", "rl", "eval", "baseline", "cell"]
"""What a folder holds: an SFT or RL training stage, a beam-search evaluation, a `tawin baseline`
folder (or `tawin run`'s eval/sasrec/, eval/gru4rec/), or an experiment cell (or one of its named
evaluations, eval_<name>/)."""

DONE_MARKERS: dict[StageOutput, tuple[str, ...]] = {
    # The checkpoint a training stage hands on counts once its tawin.json is there: every load needs
    # it first, while manifest.json is absent from checkpoints written before manifests existed.
    "sft": ("summary.json", "best/tawin.json"),
    "rl": ("summary.json", "final/tawin.json"),
    "eval": ("metrics.json", "predictions.jsonl"),
    # predictions.jsonl came later than result.json: a folder without it is redone rather than
    # reported without the rows a paired comparison needs.
    "baseline": ("result.json", "metrics.json", "predictions.jsonl"),
    # Every cell writes predictions.jsonl before metrics.json (a baseline cell too), but diagnostics
    # are merged into a finished cell's metrics.json later and baseline cells made before baselines
    # wrote predictions hold none: metrics.json alone marks a cell done, and the report says "not
    # available" where a baseline's predictions are missing (delete such a cell's folder to redo it).
    "cell": ("metrics.json",),
}
"""The files, relative to the stage's folder, whose presence means the stage finished."""


def stage_done(folder: Path, kind: StageOutput) -> bool:
    """Whether `folder` holds the finished output of a stage of `kind` (every file of DONE_MARKERS[kind])."""
    return all((Path(folder) / marker).exists() for marker in DONE_MARKERS[kind])
