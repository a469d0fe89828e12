"""Orchestration — one function per stage: SFT, RL, evaluation, popularity.

Each stage takes the session (dataset, runtime, encodings), its config and its output folder, and
is resumable: a stage whose outputs are complete returns them without work, an interrupted one
continues from its last checkpoint. With several processes, rank 0 alone writes the stage's files
and every process waits for it at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from tawin.baselines.popularity import popularity_predictions
from tawin.checkpoint import atomic_write_json
from tawin.data.sampling import sample_rows
from tawin.eval.evaluate import evaluate
from tawin.models.build import build_recommender
from tawin.rl.train import train_rl
from tawin.run.config import PipelineConfig
from tawin.run.session import Session
from tawin.sft.train import train_sft
from tawin.tracking import log_evaluation, open_run


def sft_stage(session: Session, config: PipelineConfig, out: Path) -> Path:
    """Train from scratch (or from a pretrained LM); returns the best checkpoint folder."""
    if (out / "summary.json").exists() and (out / "best" / "tawin.json").exists():
        return out / "best"  # finished earlier: resuming a pipeline skips it
    recommender = build_recommender(config.model, session.dataset.items, seed=config.seed)
    recommender.model.to(session.device)
    tokens = config.model.max_prompt_tokens
    train = session.encoded(recommender, "train", tokens)
    sft_rows = config.data.split_train_rows(len(train), config.seed)[0] if config.data.rl_holdout else None
    open_run(config, out)  # report_to: the loop's log.jsonl records go to this model's tracker run too
    result = train_sft(recommender, session.dataset, train, session.encoded(recommender, "valid", tokens), config.sft,
                       session.context(config, out), rows=sft_rows)
    if session.dist.is_main:
        atomic_write_json(out / "summary.json", result)
    session.dist.barrier()
    return out / "best"


def rl_stage(session: Session, config: PipelineConfig, init: Path, out: Path) -> Path:
    """RL from the checkpoint `init`; returns the final checkpoint folder."""
    if (out / "summary.json").exists() and (out / "final" / "tawin.json").exists():
        return out / "final"
    recommender = session.load(init)
    tokens = config.model.max_prompt_tokens
    train = session.encoded(recommender, "train", tokens)
    rl_rows = config.data.split_train_rows(len(train), config.seed)[1] if config.data.rl_holdout else None
    open_run(config, out)  # report_to: the loop's log.jsonl records go to this model's tracker run too
    result = train_rl(recommender, session.dataset, train, session.encoded(recommender, "valid", tokens), config.rl,
                      session.context(config, out), rows=rl_rows)
    if session.dist.is_main:
        atomic_write_json(out / "summary.json", result)
    session.dist.barrier()
    return out / "final"


def eval_stage(session: Session, config: PipelineConfig, checkpoint: Path, out: Path) -> dict:
    """Beam-search evaluation of `checkpoint` on eval.split: metrics.json, predictions.jsonl; returns the metrics."""
    if (out / "metrics.json").exists() and (out / "predictions.jsonl").exists():
        return json.loads((out / "metrics.json").read_text())
    recommender = session.load(checkpoint)
    evaluation = config.resolved_eval
    encoded = session.encoded(recommender, evaluation.split, config.model.max_prompt_tokens)
    metrics = evaluate(recommender, session.dataset, encoded, evaluation, out, progress=session.progress, dist=session.dist)["metrics"]
    log_evaluation(config, metrics, evaluation.split, out, checkpoint)
    session.dist.barrier()
    return metrics


def popularity_stage(session: Session, config: PipelineConfig, out: Path) -> dict:
    """Most frequent train targets, ranked for every evaluated row and scored by the same metric code."""
    evaluation = config.eval
    rows = sample_rows(len(session.dataset.splits[evaluation.split]), evaluation.max_rows, evaluation.sample_seed)
    predictions = popularity_predictions(session.dataset, evaluation.split, rows, evaluation.num_beams)
    metrics = predictions.metrics(evaluation.ks)
    if session.dist.is_main:
        predictions.write_jsonl(out / "predictions.jsonl")
        atomic_write_json(out / "metrics.json", metrics)
        log_evaluation(config, metrics, evaluation.split, out)
    session.dist.barrier()
    return metrics
