"""Stage 6 — supervised fine-tuning: next-item generation, loss on the target item tokens only.

One readable loop: batch → forward → cross-entropy on item tokens → backward → clip → step →
log → (epoch end) evaluate on valid → keep the best checkpoint by NDCG@10 → early stop.
A rerun on the same output folder resumes from ``last/`` (model, optimizer, scheduler, RNG and
the position in the epoch), so an interrupted run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from tawin.data.dataset import Dataset
from tawin.data.protocol.sampling import maximal_windows, sample_rows
from tawin.eval.evaluate import beam_predictions
from tawin.metrics.ranking import TOP_KS
from tawin.models.batching import EncodedSplit, length_bucketed_batches
from tawin.models.build import RecommenderLM
from tawin.models.loss import sft_loss
from tawin.runtime import maybe_compile, progress_bar
from tawin.sft.config import SFTConfig
from tawin.train_utils import (
    JsonlLog,
    Progress,
    RunContext,
    optimizer_step,
    save_best,
    save_training_state,
    start_or_resume,
)

__all__ = ["RunContext", "sft_loss", "sft_rows", "train_sft"]


def train_sft(
    recommender: RecommenderLM,
    dataset: Dataset,
    train: EncodedSplit,
    valid: EncodedSplit,
    config: SFTConfig,
    run: RunContext,
    rows: np.ndarray | None = None,
) -> dict:
    """SFT on the train rows :func:`sft_rows` picks from `rows` (row indices of `train`; None = all
    of them, e.g. fewer when some are held out for RL)."""
    out = Path(run.output_dir)
    model = recommender.model.to(run.device)
    model.train()
    trained = maybe_compile(run.dist.wrap(model), run.compile)
    rows_R = sft_rows(train, config, rows)
    steps_per_epoch = -(-len(rows_R) // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    optimizer, scheduler, progress = _start_or_resume(out, recommender, config, total_steps, run)
    log = JsonlLog(out / "log.jsonl", run.tracker)
    valid_rows = sample_rows(len(valid), config.eval_rows, run.seed)
    vocabulary = model.get_input_embeddings().num_embeddings
    item_token_V = recommender.codec.item_token_mask(vocabulary) if config.history_loss_weight > 0 else None
    loss_options = dict(
        history_weight=config.history_loss_weight, item_token_V=item_token_V, label_smoothing=config.label_smoothing
    )
    log_train_rows(train, rows_R, recommender.codec.target_len_N, item_token_V, progress.global_step, log, run)
    started, first_step = time.time(), progress.global_step

    while progress.epoch < config.epochs and progress.bad_epochs < config.patience:
        generator = torch.Generator().manual_seed(run.seed * 100_003 + progress.epoch)
        batches = [rows_R[b] for b in length_bucketed_batches(train.prompt_len_R[rows_R], config.batch_size, generator)]
        title = f"sft epoch {progress.epoch + 1}/{config.epochs}"
        bar = progress_bar(steps_per_epoch, title, "step", enabled=run.progress_bars, initial=progress.step_in_epoch)
        window = {"tokens": 0, "start": time.time()}
        for step in range(progress.step_in_epoch, steps_per_epoch):
            index_B = batches[step]
            loss, n_tokens = sft_loss(trained, recommender.codec, train, index_B, run.bf16, run.dist, **loss_options)
            optimizer_step(
                loss, model.parameters(), optimizer, scheduler, config.max_grad_norm, progress.global_step, "sft"
            )
            progress.step_in_epoch, progress.global_step = step + 1, progress.global_step + 1
            window["tokens"] += n_tokens
            bar.update(1)
            if progress.global_step % config.log_every == 0 and run.dist.is_main:
                window = _log_step(loss, progress, scheduler, window, log, run, bar, total_steps, started, first_step)
            if progress.global_step % config.save_every == 0 and step + 1 < steps_per_epoch:
                save_training_state(out / "last", recommender, optimizer, scheduler, progress, run.dist)
        bar.close()
        _validate_epoch(recommender, dataset, valid, valid_rows, config, progress, log, run, started)
        progress.epoch, progress.step_in_epoch = progress.epoch + 1, 0
        save_training_state(out / "last", recommender, optimizer, scheduler, progress, run.dist)

    summary = {
        "best_epoch": progress.best_epoch,
        "best_valid_ndcg@10": progress.best_metric,
        "history": progress.history,
    }
    return {**summary, "seconds": time.time() - started}


def _start_or_resume(
    out: Path, recommender: RecommenderLM, config: SFTConfig, total_steps: int, run: RunContext
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, Progress]:
    """:func:`~tawin.train_utils.start_or_resume` with SFT's schedule, saying where a resumed run goes on."""
    optimizer, scheduler, progress, resumed = start_or_resume(
        out,
        recommender,
        recommender.model.parameters(),
        config.lr,
        config.weight_decay,
        config.warmup_steps,
        total_steps,
    )
    if resumed:
        run.log(f"sft: resuming from {out / 'last'} at epoch {progress.epoch + 1}, step {progress.step_in_epoch}")
    return optimizer, scheduler, progress


def _log_step(
    loss: torch.Tensor,
    progress: Progress,
    scheduler,
    window: dict,
    log: JsonlLog,
    run: RunContext,
    bar,
    total_steps: int,
    started: float,
    first_step: int,
) -> dict:
    """The log record of this step (and, with --no-progress, a log line instead of the bar's figures);
    returns the next token window."""
    rate = window["tokens"] / max(1e-9, time.time() - window["start"])
    record = {"stage": "sft", "step": progress.global_step, "epoch": progress.epoch + 1}
    record.update({"train/loss": round(float(loss.detach()), 5), "train/lr": scheduler.get_last_lr()[0]})
    log.write({**record, "train/tokens_per_s": round(rate)})
    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", tok_s=f"{rate:.0f}")
    if not run.progress_bars:  # --no-progress: a log line instead of the bar
        elapsed = time.time() - started
        eta = elapsed / max(1, progress.global_step - first_step) * (total_steps - progress.global_step)
        run.log(
            f"sft step {progress.global_step}/{total_steps}: loss {float(loss.detach()):.4f}  {rate:.0f} tokens/s  "
            f"[{elapsed:.0f}s, ETA {eta:.0f}s]"
        )
    return {"tokens": 0, "start": time.time()}


def _validate_epoch(
    recommender: RecommenderLM,
    dataset: Dataset,
    valid: EncodedSplit,
    valid_rows: np.ndarray,
    config: SFTConfig,
    progress: Progress,
    log: JsonlLog,
    run: RunContext,
    started: float,
) -> None:
    """The end of an epoch: score the valid rows; keep the model in ``best/`` when NDCG@10 improved,
    else count one more epoch without improvement (early stopping's counter)."""
    predictions = beam_predictions(
        recommender,
        dataset,
        valid,
        valid_rows,
        config.eval_beams,
        32,
        progress=run.progress_bars,
        desc="sft valid",
        dist=run.dist,
    )
    metrics = predictions.metrics(TOP_KS.reported)
    improved = metrics["ndcg@10"] > progress.best_metric
    progress.history.append({"epoch": progress.epoch + 1, **{f"valid/{k}": v for k, v in metrics.items()}})
    if run.dist.is_main:
        log.write(
            {
                "stage": "sft",
                "epoch": progress.epoch + 1,
                "step": progress.global_step,
                **{f"eval/{k}": v for k, v in metrics.items()},
            }
        )
        run.log(
            f"sft epoch {progress.epoch + 1}: valid recall@10 {metrics['recall@10']:.4f}  "
            f"ndcg@10 {metrics['ndcg@10']:.4f}{'  (best)' if improved else ''}  [{time.time() - started:.0f}s]"
        )
    if improved:
        progress.best_metric, progress.best_epoch, progress.bad_epochs = metrics["ndcg@10"], progress.epoch + 1, 0
        save_best(Path(run.output_dir) / "best", recommender, {"epoch": progress.epoch + 1, "valid": metrics}, run.dist)
    else:
        progress.bad_epochs += 1


def sft_rows(train: EncodedSplit, config: SFTConfig, rows: np.ndarray | None = None) -> torch.Tensor:
    """The train-row indices SFT trains on, in order: `rows` (None = all), the first
    `sft.first_train_rows` of those, then (`sft.dedupe_windows`) their unique maximal sequences."""
    rows_R = torch.arange(len(train)) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    if config.first_train_rows > 0:
        rows_R = rows_R[: config.first_train_rows]
    if config.dedupe_windows:
        split = train.rows.take(rows_R.numpy())
        kept_K = maximal_windows(split.history_RH, split.history_len, split.target, split.user)
        rows_R = rows_R[torch.from_numpy(kept_K)]
    return rows_R


def log_train_rows(
    train: EncodedSplit,
    rows_R: torch.Tensor,
    target_len_N: torch.Tensor,
    item_token_V: torch.Tensor | None,
    step: int,
    log: JsonlLog,
    run: RunContext,
) -> None:
    """Record what one epoch trains on: rows, tokens processed (prompts + target items with EOS) and
    tokens in the loss (target items, plus the history's item tokens when they have a loss weight)."""
    target_tokens = int(target_len_N[train.target_R[rows_R]].sum())
    tokens = int(train.prompt_len_R[rows_R].sum()) + target_tokens
    history_tokens = 0 if item_token_V is None else int(item_token_V[train.prompt_ids_RL[rows_R]].sum())
    loss_tokens = target_tokens + history_tokens
    if run.dist.is_main:
        log.write(
            {
                "stage": "sft",
                "step": step,
                "train/rows": len(rows_R),
                "train/tokens_per_epoch": tokens,
                "train/loss_tokens_per_epoch": loss_tokens,
            }
        )
    run.log(f"sft: {len(rows_R)} train rows, {tokens} tokens per epoch ({loss_tokens} in the loss)")
