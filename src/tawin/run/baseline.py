"""Orchestration — `tawin baseline popularity|sasrec|gru4rec --out DIR` in a run folder.

The folder follows the rules of every other command (:class:`~tawin.run.folder.RunFolder`): its
``config.yaml`` records the method, the dataset, the train rows kept (``--latest-train-rows``, as
``data.latest_train_rows`` does for the LLM) and (SASRec/GRU4Rec) the resolved
:class:`~tawin.baselines.sequential.SequentialBaselineConfig`, plus the dataset's content hash; a
folder holding another baseline, or the same one with other settings or data, is refused unless
``--overwrite``; a finished folder (``result.json``, ``predictions.jsonl`` and ``metrics.json``) is
not recomputed, and one written before baselines wrote predictions is computed again.

The folder holds, like an evaluation's, ``metrics.json`` (test) beside ``predictions.jsonl`` (the
test rows' ranked items and scores in the LLM evaluation's format,
:class:`~tawin.eval.evaluate.Predictions`), plus ``predictions_valid.jsonl`` for the valid rows and
``result.json`` (the metrics of both splits; SASRec/GRU4Rec add epochs and training time). The
lists hold ``eval_top`` items (SASRec/GRU4Rec) or max(K) items (popularity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tawin.baselines import BaselineName
from tawin.baselines.popularity import popularity_predictions
from tawin.baselines.sequential import SequentialBaselineConfig, for_kind, run_baseline
from tawin.checkpoint import atomic_write_json
from tawin.data.formats.canonical import load_dataset
from tawin.data.protocol.holdout import keep_latest_train_rows
from tawin.errors import ConfigError
from tawin.eval.evaluate import Predictions
from tawin.metrics.ranking import TOP_KS
from tawin.run.config import dataset_path
from tawin.run.done import stage_done
from tawin.run.folder import RunFolder
from tawin.run.provenance import dataset_provenance


@dataclass(frozen=True)
class BaselineRun:
    """What a baseline folder's result depends on (saved as its config.yaml)."""

    method: BaselineName
    """popularity (no settings), sasrec or gru4rec."""
    dataset: str
    """A shipped dataset name or a dataset folder."""
    latest_train_rows: int = 0
    """Train on the latest N train rows only (0 = all); valid and test unchanged."""
    sequential: SequentialBaselineConfig | None = None
    """SASRec/GRU4Rec settings; null for popularity."""


def baseline_run(
    method: BaselineName,
    dataset: str,
    sequential: SequentialBaselineConfig | None,
    settings_given: bool,
    latest_train_rows: int = 0,
) -> BaselineRun:
    """The run's settings, checked: popularity takes none, the others a valid config."""
    if method == "popularity":
        if settings_given:
            raise ConfigError(
                "tawin baseline popularity has no settings (it ranks "
                "items by their train frequency): drop --config and --set."
            )
        sequential = None
    else:
        sequential = sequential or SequentialBaselineConfig()
        for_kind(sequential, method)  # a bad setting fails before the folder is touched
    if not dataset:
        raise ConfigError("--dataset is empty; pass a shipped dataset name such as 'industrial' or a dataset folder.")
    if latest_train_rows < 0:
        raise ConfigError(
            f"--latest-train-rows {latest_train_rows} must be ≥ 0 (the latest train rows kept; 0 = all of them)."
        )
    dataset_path(dataset)  # a missing dataset fails before the folder is touched
    return BaselineRun(method, dataset, latest_train_rows, sequential)


def run_baseline_folder(run: BaselineRun, out: Path, overwrite: bool = False) -> dict:
    """Train (SASRec/GRU4Rec) and evaluate on valid and test into `out`; returns {"valid": metrics,
    "test": metrics, …}. Writes result.json, predictions_valid.jsonl, predictions.jsonl (test), then
    metrics.json (test), the folder's done-marker."""
    out = Path(out)
    # A bad dataset fails before the folder is touched.
    data = keep_latest_train_rows(load_dataset(dataset_path(run.dataset)), run.latest_train_rows)
    with RunFolder(out, run, overwrite, kind="baseline", provenance={"dataset": dataset_provenance(run.dataset)}):
        if stage_done(out, "baseline"):
            return json.loads((out / "result.json").read_text())
        if run.method == "popularity":
            predictions = {split: _popularity(data, split) for split in ("valid", "test")}
            result = {split: found.metrics(TOP_KS.scored) for split, found in predictions.items()}
        else:
            result, predictions = run_baseline(run.method, data, run.sequential)
            result = {k: v for k, v in result.items() if k != "config"}
        atomic_write_json(out / "result.json", result)
        predictions["valid"].write_jsonl(out / "predictions_valid.jsonl")
        predictions["test"].write_jsonl(out / "predictions.jsonl")
        atomic_write_json(out / "metrics.json", result["test"])  # written last: the folder's done-marker
    return result


def _popularity(data, split: str) -> Predictions:
    """The popularity list for every row of `split`, max(K) items long (as `evaluate_popularity` scores it)."""
    return popularity_predictions(data, split, np.arange(len(data.split(split))), max(TOP_KS.scored))
