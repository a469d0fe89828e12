"""Stage — RL from the SFT checkpoint: GRPO / ReRe / TAWin with beam, random or sampled negatives.

The loop, one policy update per rollout:

    prompts → rollout (G candidates each; maybe the target injected) → rewards r
    → (informative batches: redraw prompts until `batch_size` groups have a non-zero advantage)
    → GRPO advantages A = (r − mean)/(std + ε) → (TAWin) A_i ← A_i · w̄_i for negatives
    → token log-probs of the policy and the reference → GRPO/DAPO/GSPO loss + β·KL
    (+ the SFT term) → backward → clip → step → (maybe sync the reference) → log
    → maybe evaluate on valid (keep the best, stop early) / save.

Logged per step (namespaced): train/loss, train/kl, train/clip_fraction, train/sft_loss,
rollout/reward, rollout/target_in_group (the policy's own groups, before any injection),
rollout/informative_share (groups with a non-zero advantage among those drawn), rollout/draws
(prompt batches drawn), tawin/weight_entropy, train/tokens_per_s; eval/recall@K on valid.

RL trains without dropout (:func:`~tawin.models.dropout.disable_dropout`, as TRL does), whatever
the model's `*_dropout` settings that SFT used; the checkpoints it writes keep those settings.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from tawin.data.dataset import Dataset
from tawin.data.protocol.sampling import sample_rows
from tawin.decoding.tree import needs_float_mask
from tawin.errors import ConfigError
from tawin.eval.evaluate import beam_predictions
from tawin.metrics.ranking import TOP_KS
from tawin.models.batching import EncodedSplit
from tawin.models.build import RecommenderLM
from tawin.models.dropout import disable_dropout
from tawin.models.loss import sft_loss
from tawin.rl.advantages import group_advantages
from tawin.rl.config import RLConfig
from tawin.rl.loss import select_loss
from tawin.rl.rewards import REWARDS
from tawin.rl.rollout import group_logprobs
from tawin.rl.rows import split_train_rows
from tawin.rl.step_batch import StepBatch, draw_stats, draw_step_batch
from tawin.rl.tawin import tawin_weights, weight_entropy
from tawin.runtime import autocast, maybe_compile, progress_bar
from tawin.train_utils import (
    JsonlLog,
    Progress,
    RunContext,
    load_weights_into,
    optimizer_step,
    save_best,
    save_training_state,
    start_or_resume,
)


def rl_step_loss(
    policy, reference, rollout, config: RLConfig, bf16: bool, float_mask: bool = False
) -> tuple[torch.Tensor, dict]:
    """Rewards → advantages (→ TAWin) → policy loss for one rollout; returns (loss, stats)."""
    device = rollout.items_BG.device
    with autocast(device, bf16):
        logp_new_BGT = group_logprobs(
            policy,
            rollout.prompt_ids_BL,
            rollout.prompt_mask_BL,
            rollout.tokens_BGT,
            rollout.token_mask_BGT,
            float_mask,
        )
        with torch.no_grad():
            logp_ref_BGT = group_logprobs(
                reference,
                rollout.prompt_ids_BL,
                rollout.prompt_mask_BL,
                rollout.tokens_BGT,
                rollout.token_mask_BGT,
                float_mask,
            )
    rewards_BG = REWARDS[config.reward](rollout.is_target_BG)
    advantages_BG = group_advantages(rewards_BG)
    # Negatives are ordered by the policy's score: the beam order for beams, else log π(Y|H).
    scores_BG = rollout.rollout_scores_BG if rollout.rollout_scores_BG is not None else logp_new_BGT.detach().sum(-1)
    entropy = torch.tensor(float("nan"))
    if config.weighting == "tawin":
        weights_BG = tawin_weights(scores_BG, ~rollout.is_target_BG, config.resolved_anchor, config.tau, config.budget)
        advantages_BG = advantages_BG * weights_BG.to(advantages_BG.dtype)
        entropy = weight_entropy(weights_BG, ~rollout.is_target_BG).mean()
    out = select_loss(config.loss)(
        logp_new_BGT,
        logp_new_BGT.detach(),
        logp_ref_BGT,
        rollout.token_mask_BGT,
        advantages_BG,
        clip_eps_low=config.clip_eps_low,
        clip_eps_high=config.clip_eps_high,
        kl_beta=config.kl_beta,
    )
    stats = {
        "train/kl": float(out.kl),
        "train/clip_fraction": float(out.clip_fraction),
        "rollout/reward": float(rewards_BG.mean()),
        "rollout/target_in_group": float(rollout.is_target_BG.any(-1).float().mean()),
        "tawin/weight_entropy": float(entropy),
    }
    return out.loss, stats


@torch.no_grad()
def mix_into_reference(reference: torch.nn.Module, policy: torch.nn.Module, alpha: float) -> None:
    """TRL's reference sync: θ_ref ← α·θ_policy + (1 − α)·θ_ref, parameter by parameter."""
    for ref_param, policy_param in zip(reference.parameters(), policy.parameters()):
        ref_param.mul_(1.0 - alpha).add_(policy_param.detach().to(ref_param.dtype), alpha=alpha)


def train_rl(
    recommender: RecommenderLM,
    dataset: Dataset,
    train: EncodedSplit,
    valid: EncodedSplit,
    config: RLConfig,
    run: RunContext,
    rows: np.ndarray | None = None,
) -> dict:
    """RL on the train rows `rows` (None: those :func:`~tawin.rl.rows.split_train_rows` picks under
    `config.rows` and the run's seed, as the stages pass them); returns steps, valid metrics, seconds."""
    out = Path(run.output_dir)
    policy = recommender.model.to(run.device)
    disable_dropout(policy)  # the ratio π/π_old must compare the log-probs of one deterministic policy
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    chosen = split_train_rows(len(train), config.rows, run.seed).rl if rows is None else rows
    rows_R = torch.as_tensor(chosen, dtype=torch.long)
    draws_per_epoch, draws_total, total_steps = _step_budget(config, len(rows_R), run)
    trained = maybe_compile(run.dist.wrap(policy), run.compile)
    float_mask = needs_float_mask(policy)
    optimizer, scheduler, progress = _start_or_resume(out, recommender, policy, reference, config, total_steps, run)
    parameters = list(policy.parameters())
    log = JsonlLog(out / "log.jsonl", run.tracker)
    valid_rows = sample_rows(len(valid), config.eval_rows, run.seed)
    started = time.time()
    bar = progress_bar(total_steps, "rl", "step", enabled=run.progress_bars, initial=progress.global_step)
    window = {"tokens": 0, "start": time.time()}
    if config.eval_every and progress.global_step == 0:  # the starting point of the valid curve: the init checkpoint
        _evaluate_valid(recommender, dataset, valid, valid_rows, progress, log, run, config, out)
    while progress.global_step < total_steps and progress.batches_drawn < draws_total:
        policy.eval()
        batch = draw_step_batch(policy, recommender, train, rows_R, config, run, progress, draws_per_epoch, draws_total)
        policy.train()
        loss, stats = rl_step_loss(trained, reference, batch.rollout, config, run.bf16, float_mask)
        if config.sft_loss_weight > 0:  # research lever: the SFT cross-entropy on the step's prompts as a term
            loss, stats = _add_sft_term(loss, stats, trained, recommender, train, batch.rows_B, config, run)
        optimizer_step(loss, parameters, optimizer, scheduler, config.max_grad_norm, progress.global_step, "rl")
        progress.global_step += 1
        if config.ref_sync_every and progress.global_step % config.ref_sync_every == 0:
            mix_into_reference(reference, policy, config.ref_sync_alpha)
        window["tokens"] += batch.prompt_tokens + int(batch.rollout.token_mask_BGT.sum())
        bar.update(1)
        progress.history.append({"step": progress.global_step, **_step_stats(stats, loss, batch, config, run)})
        finished = progress.global_step == total_steps or progress.batches_drawn >= draws_total
        if run.dist.is_main and (progress.global_step % config.log_every == 0 or finished):
            window = _log_steps(progress, config, log, run, bar, scheduler, window, total_steps, started)
        if config.eval_every and progress.global_step % config.eval_every == 0 and not finished:
            _evaluate_valid(recommender, dataset, valid, valid_rows, progress, log, run, config, out)
            finished = _out_of_patience(progress, config, run)
        if progress.global_step % config.save_every == 0 or finished:
            extra = _resume_extra(reference, config)
            save_training_state(out / "last", recommender, optimizer, scheduler, progress, run.dist, extra)
        if finished:
            break
    bar.close()
    metrics = _evaluate_valid(recommender, dataset, valid, valid_rows, progress, log, run, config, out)
    return {**_save_final(recommender, progress, metrics, config, run, out), "seconds": time.time() - started}


def _add_sft_term(
    loss: torch.Tensor,
    stats: dict,
    policy,
    recommender: RecommenderLM,
    train: EncodedSplit,
    rows_B: torch.Tensor,
    config: RLConfig,
    run: RunContext,
) -> tuple[torch.Tensor, dict]:
    """`loss` + rl.sft_loss_weight × the SFT cross-entropy of the rows' targets (logged as train/sft_loss)."""
    term, _ = sft_loss(policy, recommender.codec, train, rows_B, run.bf16, run.dist)
    return loss + config.sft_loss_weight * term, {**stats, "train/sft_loss": float(term.detach())}


def _step_stats(stats: dict, loss: torch.Tensor, batch: StepBatch, config: RLConfig, run: RunContext) -> dict:
    """The step's log figures: the loss's terms, the loss, what drawing the groups cost; with several
    processes their mean, as one process would see it."""
    stats = {**stats, "train/loss": float(loss.detach()), **draw_stats(batch, config)}
    if run.dist.enabled:
        everyone = run.dist.gather([stats])
        stats = {k: sum(s[k] for s in everyone) / len(everyone) for k in stats}
    return stats


def _out_of_patience(progress: Progress, config: RLConfig, run: RunContext) -> bool:
    """Whether `patience` evaluations in a row found no better valid recall@target_k (then it says so)."""
    if not (config.patience and progress.bad_epochs >= config.patience):
        return False
    run.log(
        f"rl: stopping early at step {progress.global_step}: {config.patience} evaluations without a better "
        f"valid recall@{config.target_k}"
    )
    return True


def _step_budget(config: RLConfig, n_rows: int, run: RunContext) -> tuple[int, int, int]:
    """(prompt batches per epoch, prompt batches in all, optimizer steps) of RL on `n_rows` train
    rows; a ConfigError when the batch does not fit the processes or the rows."""
    if config.batch_size % run.dist.world_size:
        raise ConfigError(
            f"rl.batch_size={config.batch_size} must be divisible by the {run.dist.world_size} processes so every "
            "process scores the same number of groups; change rl.batch_size or --num_processes"
        )
    if config.informative_batches and run.dist.enabled:
        raise ConfigError(
            "rl.informative_batches=true runs in one process only (which groups are kept would differ per process); "
            "set rl.informative_batches=false or run without accelerate/torchrun"
        )
    draws_per_epoch = n_rows // config.batch_size
    if draws_per_epoch < 1:
        raise ConfigError(
            f"RL has {n_rows} train rows, fewer than rl.batch_size={config.batch_size}; "
            "lower rl.batch_size or select more rows in rl.rows (sample_size, latest_share, holdout)"
        )
    draws_total = config.epochs * draws_per_epoch
    return draws_per_epoch, draws_total, draws_total if config.max_steps <= 0 else min(config.max_steps, draws_total)


def _start_or_resume(
    out: Path, recommender: RecommenderLM, policy, reference, config: RLConfig, total_steps: int, run: RunContext
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, Progress]:
    """:func:`~tawin.train_utils.start_or_resume` with RL's schedule; a resumed run also gets back
    its synced reference model and its count of prompt batches drawn."""
    optimizer, scheduler, progress, resumed = start_or_resume(
        out,
        recommender,
        policy.parameters(),
        config.lr,
        config.weight_decay,
        int(config.warmup_ratio * total_steps),
        total_steps,
    )
    if resumed:
        run.log(f"rl: resuming from {out / 'last'} at step {progress.global_step}/{total_steps}")
        if "reference" in progress.extra:
            reference.load_state_dict(progress.extra["reference"])
        progress.batches_drawn = progress.batches_drawn or progress.global_step  # checkpoints from before batches_drawn
    return optimizer, scheduler, progress


def _log_steps(
    progress: Progress,
    config: RLConfig,
    log: JsonlLog,
    run: RunContext,
    bar,
    scheduler,
    window: dict,
    total_steps: int,
    started: float,
) -> dict:
    """One log record averaging the steps since the last one; returns the next token window."""
    recent = progress.history[-config.log_every :]
    summary = {k: sum(h[k] for h in recent) / len(recent) for k in recent[0] if k != "step"}
    summary["train/tokens_per_s"] = window["tokens"] / max(1e-9, time.time() - window["start"])
    log.write({"stage": "rl", "step": progress.global_step, "train/lr": scheduler.get_last_lr()[0], **summary})
    bar.set_postfix(loss=f"{summary['train/loss']:.4f}", hit=f"{summary['rollout/target_in_group']:.2f}")
    if not run.progress_bars:
        elapsed = time.time() - started
        eta = elapsed / max(1, progress.global_step) * (total_steps - progress.global_step)
        run.log(
            f"rl step {progress.global_step}/{total_steps}: loss {summary['train/loss']:.4f}  "
            f"target in group {summary['rollout/target_in_group']:.2f}  [{elapsed:.0f}s, ETA {eta:.0f}s]"
        )
    return {"tokens": 0, "start": time.time()}


def _save_final(
    recommender: RecommenderLM, progress: Progress, metrics: dict, config: RLConfig, run: RunContext, out: Path
) -> dict:
    """final/ = the last model, or with `select_best` the best one on valid (its step and metrics)."""
    result = {"steps": progress.global_step, "valid": metrics}
    if config.select_best and (out / "best" / "best.json").exists():
        best = json.loads((out / "best" / "best.json").read_text())
        load_weights_into(recommender, out / "best")
        result = {"steps": progress.global_step, "valid": best["valid"], "best_step": best["step"]}
        run.log(f"rl: final/ is the step-{best['step']} checkpoint, the best on valid recall@{config.target_k}")
    save_best(
        out / "final",
        recommender,
        {"step": result.get("best_step", progress.global_step), "valid": result["valid"]},
        run.dist,
    )
    return result


def _resume_extra(reference: torch.nn.Module, config: RLConfig) -> dict | None:
    """A synced reference is part of the run's state: save it so a resume continues from it."""
    return {"reference": reference.state_dict()} if config.ref_sync_every else None


def _evaluate_valid(recommender, dataset, valid, rows, progress, log, run, config, out) -> dict:
    """Valid Recall/NDCG on the fixed row sample; tracks the best Recall@target_k for
    `select_best` (saving it to best/) and `patience` (counting evaluations without a gain)."""
    ks = tuple(sorted({*TOP_KS.reported, config.target_k}))
    predictions = beam_predictions(
        recommender,
        dataset,
        valid,
        rows,
        max(20, config.group_size, config.target_k),
        32,
        progress=run.progress_bars,
        desc="rl valid",
        dist=run.dist,
    )
    metrics = predictions.metrics(ks)
    if config.select_best or config.patience:
        score = metrics[f"recall@{config.target_k}"]
        if score > progress.best_metric:
            # Progress's SFT-named fields serve RL too: best_epoch holds the best step, bad_epochs the
            # evaluations without a gain.
            progress.best_metric, progress.best_epoch, progress.bad_epochs = score, progress.global_step, 0
            if config.select_best:
                save_best(out / "best", recommender, {"step": progress.global_step, "valid": metrics}, run.dist)
        else:
            progress.bad_epochs += 1
    if not run.dist.is_main:
        return metrics
    log.write({"stage": "rl", "step": progress.global_step, **{f"eval/{k}": v for k, v in metrics.items()}})
    run.log(
        f"rl step {progress.global_step}: valid recall@3 {metrics['recall@3']:.4f}  "
        f"recall@10 {metrics['recall@10']:.4f}  ndcg@10 {metrics['ndcg@10']:.4f}"
    )
    return metrics
