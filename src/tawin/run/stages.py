"""Orchestration — one function per stage: SFT, RL, evaluation, popularity, SASRec/GRU4Rec.

Each stage takes the session (dataset, runtime, encodings), its config and its output folder, and
is resumable: a stage whose outputs are complete returns them without work, an interrupted one
continues from its last checkpoint. With several processes, rank 0 alone writes the stage's files
and every process waits for it at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from tawin.baselines import BaselineKind
from tawin.baselines.popularity import popularity_predictions
from tawin.baselines.sequential import SequentialBaselineConfig, run_baseline
from tawin.checkpoint import atomic_write_json
from tawin.eval.evaluate import evaluate
from tawin.models.build import build_recommender
from tawin.rl.rows import split_train_rows
from tawin.rl.train import train_rl
from tawin.run.config import PipelineConfig
from tawin.run.done import stage_done
from tawin.run.session import Session
from tawin.sft.train import train_sft


def sft_stage(session: Session, config: PipelineConfig, out: Path) -> Path:
    """Train from scratch (or from a pretrained LM); returns the best checkpoint folder."""
    if stage_done(out, "sft"):
        return out / "best"  # finished earlier: resuming a pipeline skips it
    recommender = build_recommender(config.model, session.dataset.items, seed=config.seed)
    recommender.model.to(session.device)
    _train(session, config, out, recommender, train_sft, config.sft, stage="sft")
    return out / "best"


def rl_stage(session: Session, config: PipelineConfig, init: Path, out: Path) -> Path:
    """RL from the checkpoint `init`; returns the final checkpoint folder."""
    if stage_done(out, "rl"):
        return out / "final"
    _train(session, config, out, session.load(init), train_rl, config.rl, stage="rl")
    return out / "final"


def _train(
    session: Session, config: PipelineConfig, out: Path, recommender, loop, stage_config, stage: Literal["sft", "rl"]
) -> None:
    """Run a training loop (`train_sft` or `train_rl`) on the train rows of its `stage` under
    ``rl.rows`` (:func:`~tawin.rl.rows.split_train_rows`), then write summary.json."""
    tokens = config.model.max_prompt_tokens
    train = session.encoded(recommender, "train", tokens)
    rows = getattr(split_train_rows(len(train), config.rl.rows, config.seed), stage)
    tracker = session.tracking.open(config, out)  # report_to: the loop's log.jsonl records go to this model's run too
    result = loop(
        recommender,
        session.dataset,
        train,
        session.encoded(recommender, "valid", tokens),
        stage_config,
        session.context(config, out, tracker),
        rows=rows,
    )
    if session.dist.is_main:
        atomic_write_json(out / "summary.json", result)
    session.dist.barrier()


def eval_stage(session: Session, config: PipelineConfig, checkpoint: Path, out: Path) -> dict:
    """Beam-search evaluation of `checkpoint` on eval.split: metrics.json, predictions.jsonl; returns the metrics."""
    if stage_done(out, "eval"):
        return json.loads((out / "metrics.json").read_text())
    recommender = session.load(checkpoint)
    evaluation = config.resolved_eval
    encoded = session.encoded(recommender, evaluation.split, config.model.max_prompt_tokens)
    metrics = evaluate(
        recommender, session.dataset, encoded, evaluation, out, progress=session.progress, dist=session.dist
    )["metrics"]
    session.tracking.log_evaluation(config, metrics, evaluation.split, out, checkpoint)
    session.dist.barrier()
    return metrics


def popularity_stage(session: Session, config: PipelineConfig, out: Path) -> dict:
    """Most frequent train targets, ranked for every evaluated row and scored by the same metric code."""
    evaluation = config.eval
    predictions = popularity_predictions(
        session.dataset,
        evaluation.split,
        config.eval.evaluated_rows(len(session.dataset.splits[config.eval.split])),
        evaluation.num_beams,
    )
    metrics = predictions.metrics(evaluation.ks)
    if session.dist.is_main:
        predictions.write_jsonl(out / "predictions.jsonl")
        atomic_write_json(out / "metrics.json", metrics)
        session.tracking.log_evaluation(config, metrics, evaluation.split, out)
    session.dist.barrier()
    return metrics


def sequential_baseline_stage(session: Session, config: PipelineConfig, kind: BaselineKind, out: Path) -> dict:
    """SASRec or GRU4Rec, trained and scored as `tawin baseline` does; returns the metrics.

    Settings: the :class:`~tawin.baselines.sequential.SequentialBaselineConfig` defaults with `seed`
    = the run's seed (the pipeline config has no section for them; `tawin baseline --set` tunes
    them). It learns from the session's train rows (``data.latest_train_rows`` applied) with early
    stopping on every valid row, on the CPU whatever `device` is, with the run's `threads`; it is
    then scored on eval.split's evaluated rows (``eval.sample_size``, ``eval.sample_seed``) at
    ``eval.ks`` by the LLM's metric code. Writes result.json (metrics, epochs, settings),
    predictions.jsonl (the evaluated rows' top ``eval.num_beams`` items with their log-probabilities,
    in the LLM evaluation's format, for paired comparisons), then metrics.json. Every process trains
    the same model, so none waits minutes at a barrier."""
    if stage_done(out, "baseline"):
        return json.loads((out / "metrics.json").read_text())
    evaluation = config.eval
    log = print if session.dist.is_main else None
    result, predictions = run_baseline(
        kind,
        session.dataset,
        SequentialBaselineConfig(seed=config.seed),
        ks=evaluation.ks,
        log=log,
        evaluate_on={evaluation.split: evaluation.evaluated_rows(len(session.dataset.splits[evaluation.split]))},
        top=evaluation.num_beams,
    )
    metrics = result[evaluation.split]
    if session.dist.is_main:
        atomic_write_json(out / "result.json", result)
        predictions[evaluation.split].write_jsonl(out / "predictions.jsonl")
        atomic_write_json(out / "metrics.json", metrics)  # written last: the stage's done-marker
        session.tracking.log_evaluation(config, metrics, evaluation.split, out)
    session.dist.barrier()
    return metrics
