"""Experiments — one cell from start to finish: resolve → train → evaluate → write cell.json.

A :class:`CellWorker` runs cells in one process on one shared :class:`~tawin.run.session.Session`
(the dataset is loaded once; encodings are shared wherever the tokenizer is the same). Before each
stage the global RNGs are seeded from the cell's seed, as a fresh `tawin run` would, so a cell's
numbers do not depend on which cells ran before it in the process, nor on ``--jobs``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tawin.checkpoint import atomic_write_json, seed_everything
from tawin.data.dataset import Dataset
from tawin.eval.evaluate import Predictions
from tawin.experiments.evals import eval_folder
from tawin.experiments.grid import Cell, Experiment
from tawin.experiments.results import (
    CellRecord,
    candidate_folder,
    cell_checkpoint,
    missing_evals,
    needs_diagnostics,
    read_cell,
    seed_sft_folder,
    write_cell,
)
from tawin.run.config import PipelineConfig
from tawin.run.done import stage_done
from tawin.run.pipeline import rl_label
from tawin.run.session import Session
from tawin.run.stages import eval_stage, popularity_stage, rl_stage, sft_stage


class CellWorker:
    """Trains and evaluates cells; the Session is opened on first need unless one is given."""

    def __init__(
        self,
        experiment: Experiment,
        out: Path,
        progress: bool,
        log: Callable[[str], None],
        session: Session | None = None,
    ):
        self.experiment, self.out, self.progress, self.log = experiment, Path(out), progress, log
        self._session = session

    def session(self, config: PipelineConfig) -> Session:
        """The shared Session, with the global RNGs seeded for `config` (like a fresh `tawin run`)."""
        if self._session is None:
            self._session = Session.open(config, self.progress)
        seed_everything(config.seed)
        return self._session

    def run(self, cell: Cell) -> None:
        """Train and evaluate the cell (unless finished), then add its diagnostics (if asked and missing)."""
        folder = self.out / cell.id
        # A redone cell (e.g. its metrics.json deleted) adds to the seconds it had already spent.
        record = read_cell(folder) or CellRecord()
        if not stage_done(folder, "cell"):
            if cell.kind == "baseline":
                self.baseline(cell, folder, record)
            else:
                self.train_and_evaluate(cell, folder, record)
        if needs_diagnostics(self.out, cell):
            started = time.time()
            self.add_diagnostics(cell, folder, record)
            record.diagnostics_seconds = (record.diagnostics_seconds or 0) + time.time() - started
            write_cell(folder, record)
        for named in missing_evals(self.out, self.experiment, cell):
            started = time.time()
            self.log(f"{cell.id}: evaluating {named.name} on {named.eval.split}")
            config = replace(cell.config, eval=named.eval)
            eval_stage(
                self.session(config), config, cell_checkpoint(self.out, cell, record), eval_folder(folder, named.name)
            )
            record.seconds += time.time() - started
            write_cell(folder, record)

    def train_and_evaluate(self, cell: Cell, folder: Path, record: CellRecord) -> None:
        """An LLM cell: its checkpoint (the seed's SFT, or RL on it), then the beam-search evaluation."""
        started = time.time()
        if cell.kind == "sft":
            checkpoint = self.sft(cell.config, cell.sft)
        elif cell.anchor_mode == "best_on_valid":
            record.settings = self.best_on_valid(cell)
            checkpoint = cell_checkpoint(self.out, cell, record)
        else:
            checkpoint = self.rl(cell.config, folder / "rl", cell.sft)
        record.seconds += time.time() - started
        write_cell(folder, record)  # cell.json before metrics.json: metrics.json marks the cell done
        started = time.time()
        self.log(f"{cell.id}: evaluating on {cell.config.eval.split}")
        plain = replace(
            cell.config, eval=replace(cell.config.eval, diagnostics=False)
        )  # the diagnostics are timed apart
        eval_stage(self.session(plain), plain, checkpoint, folder)
        record.seconds += time.time() - started
        write_cell(folder, record)

    def add_diagnostics(self, cell: Cell, folder: Path, record: CellRecord) -> None:
        """Exact-score diagnostics of a finished cell's checkpoint, merged into its metrics.json."""
        from tawin.eval.diagnostics import diagnostics

        session = self.session(cell.config)
        recommender = session.load(cell_checkpoint(self.out, cell, record))
        evaluation = cell.config.resolved_eval
        self.log(f"{cell.id}: diagnostics on {evaluation.diagnostics_rows or 'all'} {evaluation.split} rows")
        encoded = session.encoded(recommender, evaluation.split, cell.config.model.max_prompt_tokens)
        found = diagnostics(recommender, encoded, evaluation, progress=self.progress)
        session.tracking.log_evaluation(
            cell.config, found, evaluation.split, folder, cell_checkpoint(self.out, cell, record)
        )
        atomic_write_json(folder / "metrics.json", {**json.loads((folder / "metrics.json").read_text()), **found})

    def sft(self, config: PipelineConfig, name: str = "sft") -> Path:
        """The seed's shared SFT checkpoint `seed_S/<name>/` (trained, resumed, or reused when finished)."""
        folder = seed_sft_folder(self.out, config.seed, name)
        if stage_done(folder, "sft"):
            return folder / "best"
        self.log(f"seed_{config.seed}: SFT → {folder}")
        return sft_stage(self.session(config), config, folder)

    def rl(self, config: PipelineConfig, folder: Path, sft: str = "sft") -> Path:
        """RL with `config` from the seed's SFT checkpoint `sft` (trained, resumed, or reused when finished)."""
        if stage_done(folder, "rl"):
            return folder / "final"
        init = self.sft(config, sft)
        self.log(f"seed_{config.seed}: RL {rl_label(config)} → {folder}")
        return rl_stage(self.session(config), config, init, folder)

    def best_on_valid(self, cell: Cell) -> dict:
        """Train each σ* candidate, score valid Recall@target_k, keep the best (ties: nearest K−1).

        Returns the cell's settings: the chosen σ* and every candidate's valid score."""
        k = cell.config.rl.target_k
        scores = {}
        for anchor in cell.candidates:
            config = replace(cell.config, rl=replace(cell.config.rl, anchor=anchor))
            candidate = candidate_folder(self.out, cell, anchor)
            final = self.rl(config, candidate / "rl", cell.sft)
            valid = replace(config, eval=replace(config.eval, split="valid", diagnostics=False))
            scores[anchor] = eval_stage(self.session(valid), valid, final, candidate / "valid")[f"recall@{k}"]
        best = choose_anchor(scores, k)
        self.log(
            f"{cell.id}: valid Recall@{k} by σ*: "
            + ", ".join(f"{a}: {s:.4f}" for a, s in scores.items())
            + f" → σ*={best}"
        )
        return {
            "anchor": best,
            "anchor_sweep": {"metric": f"valid/recall@{k}", "scores": {str(a): s for a, s in scores.items()}},
        }

    def baseline(self, cell: Cell, folder: Path, record: CellRecord) -> None:
        """Popularity, or SASRec/GRU4Rec trained per seed; scored on the LLM cells' eval rows, with
        their predictions.jsonl (for the report's paired bootstrap) written before metrics.json."""
        started = time.time()
        session = self.session(cell.config)
        if cell.name == "popularity":
            popularity_stage(session, cell.config, folder)
            record.settings, metrics = {}, None
        else:
            record.settings, metrics, predictions = self.sequential_baseline(cell, session)
        record.seconds += time.time() - started
        write_cell(folder, record)  # cell.json before metrics.json, as for the LLM cells
        if metrics is not None:
            predictions.write_jsonl(folder / "predictions.jsonl")
            atomic_write_json(folder / "metrics.json", metrics)
            session.tracking.log_evaluation(cell.config, metrics, cell.config.eval.split, folder)

    def sequential_baseline(self, cell: Cell, session: Session) -> tuple[dict, dict, Predictions]:
        """(settings, metrics, predictions on the eval rows) of SASRec or GRU4Rec trained with the
        cell's seed; the predictions rank eval.num_beams items per row, as the LLM cells' do."""
        from tawin.baselines.sequential import run_baseline

        dataset, evaluation = session.dataset, cell.config.eval
        rows = evaluation.evaluated_rows(len(dataset.splits[evaluation.split]))
        splits = {**dataset.splits, evaluation.split: dataset.splits[evaluation.split].take(rows)}
        self.log(f"{cell.id}: training {cell.label}")
        result, predictions = run_baseline(
            cell.name,
            Dataset(dataset.name, dataset.items, splits, dataset.meta),
            replace(self.experiment.baseline, seed=cell.seed),
            ks=evaluation.ks,
            log=None,
            top=evaluation.num_beams,
        )
        settings = {"baseline": {k: result[k] for k in ("epochs", "best_epoch", "config")}, "valid": result["valid"]}
        return settings, result[evaluation.split], predictions[evaluation.split]


def choose_anchor(scores: dict[int, float], target_k: int) -> int:
    """argmax σ* of the valid score; ties go to the σ* nearest the theory's K − 1, then the smaller."""
    return max(scores, key=lambda a: (scores[a], -abs(a - (target_k - 1)), -a))
