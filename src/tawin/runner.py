"""What each CLI subcommand does: load, build, train/evaluate, write outputs, print a table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from tawin.checkpoint import atomic_write_json, atomic_write_text
from tawin.data.dataset import Dataset
from tawin.data.io import load_dataset
from tawin.distributed import init_distributed
from tawin.eval.evaluate import Predictions, evaluate, sample_rows
from tawin.models.batching import EncodedSplit, encode_split
from tawin.models.build import Recommender, build_recommender, load_recommender
from tawin.pipeline import REPORT_KS, PipelineConfig, RunFolder, StageTimer, dataset_path, results_table, setup_runtime
from tawin.rl.train import train_rl
from tawin.sft.train import RunContext, train_sft


class Session:
    """Dataset + runtime for one command; splits are tokenised once and cached."""

    def __init__(self, config: PipelineConfig, progress: bool = True):
        self.config = config
        self.progress = progress
        self.device, self.bf16 = setup_runtime(config)
        self.dist = init_distributed(self.device)
        self.progress = progress and self.dist.is_main
        self.dataset: Dataset = load_dataset(dataset_path(config.data.dataset))
        self._encoded: dict[tuple[int, str], EncodedSplit] = {}

    def encoded(self, recommender: Recommender, split: str) -> EncodedSplit:
        key = (self.config.model, split)  # the tokenizer is a function of the model config and the items
        if key not in self._encoded:
            self._encoded[key] = encode_split(self.dataset.splits[split], self.dataset.items, recommender.codec,
                                              recommender.tokenizer, self.config.model.max_prompt_tokens)
        return self._encoded[key]

    def context(self, out: Path) -> RunContext:
        log = print if self.dist.is_main else (lambda *_: None)
        return RunContext(Path(out), self.config.seed, self.device, self.bf16, progress_bars=self.progress, log=log, dist=self.dist,
                          compile=self.config.compile)

    def load(self, checkpoint: str | Path) -> Recommender:
        recommender = load_recommender(checkpoint, self.dataset.items)
        recommender.model.to(self.device)
        return recommender


def sft_stage(session: Session, out: Path) -> Path:
    """Train from scratch (or from a pretrained LM); returns the best checkpoint folder."""
    config = session.config
    if (out / "summary.json").exists() and (out / "best" / "tawin.json").exists():
        return out / "best"  # finished earlier: resuming a pipeline skips it
    recommender = build_recommender(config.model, session.dataset.items, seed=config.seed)
    recommender.model.to(session.device)
    result = train_sft(recommender, session.dataset, session.encoded(recommender, "train"), session.encoded(recommender, "valid"),
                       config.sft, session.context(out))
    if session.dist.is_main:
        atomic_write_json(out / "summary.json", result)
    session.dist.barrier()
    return out / "best"


def rl_stage(session: Session, init: Path, out: Path) -> Path:
    if (out / "summary.json").exists() and (out / "final" / "tawin.json").exists():
        return out / "final"
    recommender = session.load(init)
    result = train_rl(recommender, session.dataset, session.encoded(recommender, "train"), session.encoded(recommender, "valid"),
                      session.config.rl, session.context(out))
    if session.dist.is_main:
        atomic_write_json(out / "summary.json", result)
    session.dist.barrier()
    return out / "final"


def eval_stage(session: Session, checkpoint: Path, out: Path) -> dict:
    if (out / "metrics.json").exists() and (out / "predictions.jsonl").exists():
        return json.loads((out / "metrics.json").read_text())
    recommender = session.load(checkpoint)
    encoded = session.encoded(recommender, session.config.eval.split)
    metrics = evaluate(recommender, session.dataset, encoded, session.config.eval, out, progress=session.progress, dist=session.dist)["metrics"]
    session.dist.barrier()
    return metrics


def popularity_stage(session: Session, out: Path) -> dict:
    """Most frequent train targets, ranked for every row and scored by the same metric code."""
    from tawin.baselines.popularity import popularity_ranking

    config = session.config.eval
    split = session.dataset.splits[config.split]
    rows = sample_rows(len(split), config.max_rows, config.sample_seed)
    train_targets = session.dataset.splits["train"].target
    ranked = popularity_ranking(session.dataset.splits["train"], len(rows), config.num_beams, session.dataset.items.item_id)
    # Scores are log train frequencies (add-one smoothed), so predictions.jsonl stays informative.
    seen, counts = np.unique(train_targets, return_counts=True)
    frequency = dict(zip(seen.tolist(), counts.tolist()))
    scores = np.log(np.array([[frequency.get(i, 0) + 1 for i in ranked[0]]], dtype=np.float64) / (len(train_targets) + len(seen)))
    predictions = Predictions(split.row[rows], split.user[rows], split.target[rows], ranked,
                              np.repeat(scores, len(rows), axis=0).astype(np.float32))
    metrics = predictions.metrics(config.ks)
    if session.dist.is_main:
        predictions.write_jsonl(out / "predictions.jsonl")
        atomic_write_json(out / "metrics.json", metrics)
    session.dist.barrier()
    return metrics


def run_pipeline(config: PipelineConfig, out: Path, overwrite: bool = False, progress: bool = True, log=print) -> dict:
    """`tawin run`: the configured stages, resumable, then a results table."""
    out = Path(out)
    started = time.time()
    timer = StageTimer()
    session = timer.run("load data", Session, config, progress)  # a bad dataset fails before the folder is touched
    with RunFolder(out, config, overwrite, kind="run"):
        results: dict[str, dict] = {}
        sft_best = out / "sft" / "best"
        if "sft" in config.stages:
            sft_best = timer.run("sft", sft_stage, session, out / "sft")
            if "eval" in config.stages:
                results["SFT"] = timer.run("eval sft", eval_stage, session, sft_best, out / "eval" / "sft")
        if "rl" in config.stages:
            rl_final = timer.run("rl", rl_stage, session, sft_best, out / "rl")
            if "eval" in config.stages:
                results[rl_label(config)] = timer.run("eval rl", eval_stage, session, rl_final, out / "eval" / "rl")
        if "popularity" in config.stages:
            results["Popularity"] = timer.run("popularity", popularity_stage, session, out / "eval" / "popularity")
        total = time.time() - started
        if session.dist.is_main:
            report = render_report(config, results, timer, total)
            atomic_write_text(out / "results.md", report)
            atomic_write_json(out / "results.json", {"results": results, "stages": timer.records, "total_seconds": round(total, 1)})
            log(report)
    return results


def rl_label(config: PipelineConfig) -> str:
    rl = config.rl
    if rl.weighting == "tawin":
        return f"TAWin (σ*={rl.resolved_anchor}, τ={rl.tau:g}, {rl.negatives})"
    if rl.reward == "rank":
        return "ReRe (beam, rank reward)"
    return f"GRPO ({rl.negatives} negatives)"


def render_report(config: PipelineConfig, results: dict, timer: StageTimer, total: float) -> str:
    split = config.eval.split
    lines = [f"## Results on {config.data.dataset} / {split} ({config.eval.num_beams} beams, full catalogue)", ""]
    if results:
        first = next(iter(results.values()))
        ks = tuple(k for k in REPORT_KS if all(f"recall@{k}" in m for m in results.values())) or tuple(config.eval.ks)
        lines += [results_table(results, ks), "", f"rows evaluated: {first['n_rows']}", ""]
    lines += ["## Cost of each stage", "", timer.table(), "", f"total wall-clock: {total:.0f} s ({total / 60:.1f} min)"]
    return "\n".join(lines) + "\n"
