"""Stage — RL from the SFT checkpoint: GRPO / ReRe / TAWin with beam, random or sampled negatives.

The loop, one policy update per rollout:

    prompts → rollout (G candidates each) → rewards r → GRPO advantages A = (r − mean)/(std + ε)
    → (TAWin) A_i ← A_i · w̄_i for negatives → token log-probs of the policy and the frozen
    reference → GRPO/DAPO/GSPO loss + β·KL → backward → clip → step → log → maybe save/evaluate.

Logged per step (namespaced): train/loss, train/kl, rollout/reward, rollout/target_in_group,
tawin/weight_entropy, train/tokens_per_s.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tawin.data.dataset import Dataset
from tawin.decoding.beam import needs_float_mask
from tawin.errors import ConfigError
from tawin.eval.evaluate import beam_predictions, sample_rows
from tawin.models.batching import EncodedSplit, prompt_batch
from tawin.models.build import Recommender
from tawin.rl.advantages import group_advantages
from tawin.rl.config import RLConfig
from tawin.rl.loss import select_loss
from tawin.rl.rewards import binary_reward, rank_reward
from tawin.rl.rollout import group_logprobs, make_rollout
from tawin.rl.tawin import tawin_weights, weight_entropy
from tawin.runtime import autocast, maybe_compile
from tawin.sft.train import RunContext
from tawin.train_utils import JsonlLog, check_finite, save_best, save_training_state, start_or_resume

REWARDS = {"binary": binary_reward, "rank": rank_reward}


def rl_step_loss(policy, reference, rollout, config: RLConfig, bf16: bool, float_mask: bool = False) -> tuple[torch.Tensor, dict]:
    """Rewards → advantages (→ TAWin) → policy loss for one rollout; returns (loss, stats)."""
    device = rollout.items_BG.device
    with autocast(device, bf16):
        logp_new_BGT = group_logprobs(policy, rollout.prompt_ids_BL, rollout.prompt_mask_BL, rollout.tokens_BGT, rollout.token_mask_BGT, float_mask)
        with torch.no_grad():
            logp_ref_BGT = group_logprobs(reference, rollout.prompt_ids_BL, rollout.prompt_mask_BL, rollout.tokens_BGT, rollout.token_mask_BGT, float_mask)
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
        logp_new_BGT, logp_new_BGT.detach(), logp_ref_BGT, rollout.token_mask_BGT, advantages_BG,
        clip_eps_low=config.clip_eps_low, clip_eps_high=config.clip_eps_high, kl_beta=config.kl_beta,
    )
    stats = {
        "train/kl": float(out.kl),
        "train/clip_fraction": float(out.clip_fraction),
        "rollout/reward": float(rewards_BG.mean()),
        "rollout/target_in_group": float(rollout.is_target_BG.any(-1).float().mean()),
        "tawin/weight_entropy": float(entropy),
    }
    return out.loss, stats


def train_rl(recommender: Recommender, dataset: Dataset, train: EncodedSplit, valid: EncodedSplit,
             config: RLConfig, run: RunContext) -> dict:
    out = Path(run.output_dir)
    policy = recommender.model.to(run.device)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    if config.batch_size % run.dist.world_size:
        raise ConfigError(f"rl.batch_size={config.batch_size} must be divisible by the {run.dist.world_size} processes so every "
                          "process scores the same number of groups; change rl.batch_size or --num_processes")
    trained = maybe_compile(run.dist.wrap(policy), run.compile)
    float_mask = needs_float_mask(policy)
    n_rows = len(train)
    steps_per_epoch = n_rows // config.batch_size
    total_steps = config.epochs * steps_per_epoch if config.max_steps <= 0 else min(config.max_steps, config.epochs * steps_per_epoch)
    optimizer, scheduler, progress, resumed = start_or_resume(out, recommender, policy.parameters(), config.lr, config.weight_decay,
                                                              int(config.warmup_ratio * total_steps), total_steps)
    if resumed:
        run.log(f"rl: resuming from {out / 'last'} at step {progress.global_step}/{total_steps}")
    log = JsonlLog(out / "log.jsonl")
    valid_rows = sample_rows(len(valid), config.eval_rows, run.seed)
    started = time.time()
    bar = tqdm(total=total_steps, initial=progress.global_step, desc="rl", disable=not run.progress_bars, unit="step", leave=False)
    window = {"tokens": 0, "start": time.time()}
    if config.eval_every and progress.global_step == 0:  # the starting point of the valid curve: the init checkpoint
        _evaluate_valid(recommender, dataset, valid, valid_rows, progress, log, run, config)
    while progress.global_step < total_steps:
        epoch = progress.global_step // steps_per_epoch
        step_in_epoch = progress.global_step % steps_per_epoch
        order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(run.seed * 100_003 + 7919 + epoch))
        global_B = order[step_in_epoch * config.batch_size : (step_in_epoch + 1) * config.batch_size]
        index_B = run.dist.shard(global_B)
        share = (len(global_B), len(index_B) * run.dist.rank)
        # Rollout randomness is a function of (seed, step) so a resumed run draws the same groups.
        generator = torch.Generator().manual_seed(run.seed * 1_000_003 + progress.global_step)
        ids_BL, mask_BL = prompt_batch(train, index_B)
        policy.eval()
        rollout = make_rollout(policy, recommender.codec, ids_BL.to(run.device), mask_BL.to(run.device), train.target_R[index_B].to(run.device),
                               config.negatives, config.group_size, generator, config.sample_temperature, share)
        policy.train()
        loss, stats = rl_step_loss(trained, reference, rollout, config, run.bf16, float_mask)
        check_finite(loss.detach(), "loss", progress.global_step, "rl")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
        check_finite(grad_norm, "gradient norm", progress.global_step, "rl")
        optimizer.step()
        scheduler.step()
        progress.global_step += 1
        window["tokens"] += int(mask_BL.sum()) + int(rollout.token_mask_BGT.sum())
        bar.update(1)
        stats["train/loss"] = float(loss.detach())
        if run.dist.enabled:  # log the mean over processes, as one process would see it
            everyone = run.dist.gather([stats])
            stats = {k: sum(s[k] for s in everyone) / len(everyone) for k in stats}
        progress.history.append({"step": progress.global_step, **stats})
        if run.dist.is_main and (progress.global_step % config.log_every == 0 or progress.global_step == total_steps):
            recent = progress.history[-config.log_every:]
            summary = {k: sum(h[k] for h in recent) / len(recent) for k in recent[0] if k != "step"}
            summary["train/tokens_per_s"] = window["tokens"] / max(1e-9, time.time() - window["start"])
            log.write({"stage": "rl", "step": progress.global_step, "train/lr": scheduler.get_last_lr()[0], **summary})
            bar.set_postfix(loss=f"{summary['train/loss']:.4f}", hit=f"{summary['rollout/target_in_group']:.2f}")
            window = {"tokens": 0, "start": time.time()}
        if config.eval_every and progress.global_step % config.eval_every == 0 and progress.global_step < total_steps:
            _evaluate_valid(recommender, dataset, valid, valid_rows, progress, log, run, config)
        if progress.global_step % config.save_every == 0 or progress.global_step == total_steps:
            save_training_state(out / "last", recommender, optimizer, scheduler, progress, run.dist)
    bar.close()
    metrics = _evaluate_valid(recommender, dataset, valid, valid_rows, progress, log, run, config)
    save_best(out / "final", recommender, {"step": progress.global_step, "valid": metrics}, run.dist)
    return {"steps": progress.global_step, "valid": metrics, "seconds": time.time() - started}


def _evaluate_valid(recommender, dataset, valid, rows, progress, log, run, config) -> dict:
    predictions = beam_predictions(recommender, dataset, valid, rows, max(20, config.group_size), 32,
                                   progress=run.progress_bars, desc="rl valid", dist=run.dist)
    metrics = predictions.metrics((1, 3, 5, 10))
    if not run.dist.is_main:
        return metrics
    log.write({"stage": "rl", "step": progress.global_step, **{f"eval/{k}": v for k, v in metrics.items()}})
    run.log(f"rl step {progress.global_step}: valid recall@3 {metrics['recall@3']:.4f}  recall@10 {metrics['recall@10']:.4f}  ndcg@10 {metrics['ndcg@10']:.4f}")
    return metrics
