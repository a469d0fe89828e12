"""Stage 4 — supervised fine-tuning: next-item generation, loss on the target item tokens only.

One readable loop: batch → forward → cross-entropy on item tokens → backward → clip → step →
log → (epoch end) evaluate on valid → keep the best checkpoint by NDCG@10 → early stop.
A rerun on the same output folder resumes from ``last/`` (model, optimizer, scheduler, RNG and
the position in the epoch), so an interrupted run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tawin.data.dataset import Dataset
from tawin.distributed import Dist
from tawin.eval.evaluate import beam_predictions, sample_rows
from tawin.models.batching import EncodedSplit, length_bucketed_batches, prompt_batch, sequence_batch
from tawin.models.build import Recommender
from tawin.runtime import autocast, maybe_compile
from tawin.sft.config import SFTConfig
from tawin.train_utils import JsonlLog, check_finite, save_best, save_training_state, start_or_resume


@dataclass
class RunContext:
    output_dir: Path
    seed: int
    device: torch.device
    bf16: bool
    progress_bars: bool = True
    log: Callable[[str], None] = print
    dist: Dist = field(default_factory=Dist)
    compile: bool = False


def sft_loss(model, codec, encoded: EncodedSplit, index_B: torch.Tensor, bf16: bool, dist: Dist,
             history_weight: float = 0.0, item_token_V: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Cross-entropy over the target item's tokens (EOS included), averaged over the GLOBAL batch.

    With `history_weight` > 0 (semantic IDs only; `item_token_V` marks the item tokens) the item
    tokens of the history are predicted too, each from the items before it, the way SASRec
    trains every position of a sequence; their token losses count `history_weight` times a
    target token's. Each process sums the loss of its share of `index_B` and divides by the
    global batch's weighted token count (× world size, since DDP averages gradients), so the
    update equals one process's. Returns (loss, tokens processed here).
    """
    device = next(model.parameters()).device
    global_weight = float(codec.target_len_N[encoded.target_R[index_B]].sum())
    if history_weight > 0:
        global_weight += history_weight * float(item_token_V[encoded.prompt_ids_RL[index_B]].sum())
    local_B = dist.shard(index_B)
    ids_BL, mask_BL = prompt_batch(encoded, local_B)
    batch = sequence_batch(ids_BL, mask_BL, codec, encoded.target_R[local_B].unsqueeze(1))
    with autocast(device, bf16):
        logits_BTV = model(
            input_ids=batch.input_ids_BT.to(device),
            attention_mask=batch.attention_mask_BT.to(device),
            position_ids=batch.position_ids_BT.to(device),
        ).logits.float()
    labels_BT = batch.labels_BT.to(device)
    loss_sum = F.cross_entropy(logits_BTV.flatten(0, 1), labels_BT.flatten(), ignore_index=-100, reduction="sum")
    if history_weight > 0:
        width = batch.prompt_width
        next_ids_BL = batch.input_ids_BT[:, 1:width]
        history_labels_BL = torch.where(item_token_V[next_ids_BL], next_ids_BL, -100).to(device)
        loss_sum = loss_sum + history_weight * F.cross_entropy(
            logits_BTV[:, : width - 1].flatten(0, 1), history_labels_BL.flatten(), ignore_index=-100, reduction="sum")
    return loss_sum * dist.world_size / global_weight, int(batch.attention_mask_BT.sum())


def train_sft(recommender: Recommender, dataset: Dataset, train: EncodedSplit, valid: EncodedSplit,
              config: SFTConfig, run: RunContext) -> dict:
    out = Path(run.output_dir)
    model = recommender.model.to(run.device)
    model.train()
    trained = maybe_compile(run.dist.wrap(model), run.compile)
    n_rows = len(train) if config.max_train_rows <= 0 else min(len(train), config.max_train_rows)
    steps_per_epoch = -(-n_rows // config.batch_size)
    optimizer, scheduler, progress, resumed = start_or_resume(out, recommender, model.parameters(), config.lr, config.weight_decay,
                                                              config.warmup_steps, config.epochs * steps_per_epoch)
    if resumed:
        run.log(f"sft: resuming from {out / 'last'} at epoch {progress.epoch + 1}, step {progress.step_in_epoch}")
    log = JsonlLog(out / "log.jsonl")
    valid_rows = sample_rows(len(valid), config.eval_rows, run.seed)
    item_token_V = recommender.codec.item_token_mask(model.get_input_embeddings().num_embeddings) if config.history_loss_weight > 0 else None
    started = time.time()

    while progress.epoch < config.epochs and progress.bad_epochs < config.patience:
        batches = length_bucketed_batches(train.prompt_len_R[:n_rows], config.batch_size,
                                          torch.Generator().manual_seed(run.seed * 100_003 + progress.epoch))
        bar = tqdm(total=steps_per_epoch, initial=progress.step_in_epoch, desc=f"sft epoch {progress.epoch + 1}/{config.epochs}",
                   disable=not run.progress_bars, unit="step", leave=False)
        window_tokens, window_start = 0, time.time()
        for step in range(progress.step_in_epoch, steps_per_epoch):
            index_B = batches[step]
            loss, n_tokens = sft_loss(trained, recommender.codec, train, index_B, run.bf16, run.dist,
                                      config.history_loss_weight, item_token_V)
            check_finite(loss.detach(), "loss", progress.global_step, "sft")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            check_finite(grad_norm, "gradient norm", progress.global_step, "sft")
            optimizer.step()
            scheduler.step()
            progress.step_in_epoch, progress.global_step = step + 1, progress.global_step + 1
            window_tokens += n_tokens
            bar.update(1)
            if progress.global_step % config.log_every == 0 and run.dist.is_main:
                rate = window_tokens / max(1e-9, time.time() - window_start)
                record = {"stage": "sft", "step": progress.global_step, "epoch": progress.epoch + 1,
                          "train/loss": round(float(loss.detach()), 5), "train/lr": scheduler.get_last_lr()[0], "train/tokens_per_s": round(rate)}
                log.write(record)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", tok_s=f"{rate:.0f}")
                window_tokens, window_start = 0, time.time()
            if progress.global_step % config.save_every == 0 and step + 1 < steps_per_epoch:
                save_training_state(out / "last", recommender, optimizer, scheduler, progress, run.dist)
        bar.close()

        predictions = beam_predictions(recommender, dataset, valid, valid_rows, config.eval_beams, 32,
                                       progress=run.progress_bars, desc="sft valid", dist=run.dist)
        metrics = predictions.metrics((1, 5, 10))
        improved = metrics["ndcg@10"] > progress.best_metric
        progress.history.append({"epoch": progress.epoch + 1, **{f"valid/{k}": v for k, v in metrics.items()}})
        if run.dist.is_main:
            log.write({"stage": "sft", "epoch": progress.epoch + 1, "step": progress.global_step, **{f"eval/{k}": v for k, v in metrics.items()}})
            run.log(f"sft epoch {progress.epoch + 1}: valid recall@10 {metrics['recall@10']:.4f}  "
                    f"ndcg@10 {metrics['ndcg@10']:.4f}{'  (best)' if improved else ''}  [{time.time() - started:.0f}s]")
        if improved:
            progress.best_metric, progress.best_epoch, progress.bad_epochs = metrics["ndcg@10"], progress.epoch + 1, 0
            save_best(out / "best", recommender, {"epoch": progress.epoch + 1, "valid": metrics}, run.dist)
        else:
            progress.bad_epochs += 1
        progress.epoch, progress.step_in_epoch = progress.epoch + 1, 0
        save_training_state(out / "last", recommender, optimizer, scheduler, progress, run.dist)

    return {"best_epoch": progress.best_epoch, "best_valid_ndcg@10": progress.best_metric, "history": progress.history,
            "seconds": time.time() - started}
