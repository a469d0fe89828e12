"""Stage 6 — the groups one RL step trains on: the next prompt batch of the epoch order, rolled out.

The train rows are shuffled once per epoch (seeded by the run's seed and the epoch) and cut into
prompt batches of `rl.batch_size`; the rollout of draw d is seeded by (seed, d), so a resumed run
draws the same groups. With `rl.informative_batches` (a research lever) further batches are drawn
until `batch_size` groups have a non-zero advantage, or `rl.max_draws_per_step` is reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tawin.models.batching import EncodedSplit, prompt_batch
from tawin.models.build import RecommenderLM
from tawin.rl.config import RLConfig
from tawin.rl.rewards import REWARDS
from tawin.rl.rollout import Rollout, concat_groups, make_rollout
from tawin.train_utils import Progress, RunContext


def informative_groups(rewards_BG: torch.Tensor) -> torch.Tensor:
    """bool [B]: groups whose rewards are not all equal, i.e. with a non-zero GRPO advantage."""
    return rewards_BG.amax(dim=-1) > rewards_BG.amin(dim=-1)


@dataclass
class StepBatch:
    """The groups one step trains on, and what drawing them cost."""

    rollout: Rollout
    rows_B: torch.Tensor  # int64 train-row indices of the groups (global batch)
    draws: int  # prompt batches rolled out
    groups_drawn: int
    informative_drawn: int
    found_drawn: int  # groups whose target the policy found itself (before any injection)
    prompt_tokens: int


def draw_step_batch(
    policy,
    recommender: RecommenderLM,
    train: EncodedSplit,
    rows_R: torch.Tensor,
    config: RLConfig,
    run: RunContext,
    progress: Progress,
    draws_per_epoch: int,
    draws_total: int,
) -> StepBatch:
    """Roll out the next prompt batch(es) of the epoch order: one batch, or with
    `informative_batches` further ones until `batch_size` informative groups (or the draw cap)."""
    kept: list[tuple[torch.Tensor, Rollout]] = []
    drawn = informative = found = tokens = draws = 0
    while True:
        draw = progress.batches_drawn
        epoch, position = divmod(draw, draws_per_epoch)
        order = torch.randperm(len(rows_R), generator=torch.Generator().manual_seed(run.seed * 100_003 + 7919 + epoch))
        global_B = rows_R[order[position * config.batch_size : (position + 1) * config.batch_size]]
        index_B = run.dist.shard(global_B)
        share = (len(global_B), len(index_B) * run.dist.rank)
        # Rollout randomness is a function of (seed, draw) so a resumed run draws the same groups.
        generator = torch.Generator().manual_seed(run.seed * 1_000_003 + draw)
        ids_BL, mask_BL = prompt_batch(train, index_B)
        target_B = train.target_R[index_B].to(run.device)
        rollout = make_rollout(
            policy,
            recommender.codec,
            ids_BL.to(run.device),
            mask_BL.to(run.device),
            target_B,
            config.negatives,
            config.group_size,
            generator,
            config.sample_temperature,
            share,
            inject_target=config.inject_target,
        )
        progress.batches_drawn, draws = draw + 1, draws + 1
        tokens += int(mask_BL.sum())
        found += int(rollout.target_found_B.sum())
        drawn += len(index_B)
        if not config.informative_batches:
            return StepBatch(rollout, global_B, draws, drawn, drawn, found, tokens)
        keep_B = informative_groups(REWARDS[config.reward](rollout.is_target_BG))
        informative += int(keep_B.sum())
        kept.append((index_B[keep_B.cpu()], rollout.select(keep_B)))
        have = sum(len(rows) for rows, _ in kept)
        if have >= config.batch_size or draws >= config.max_draws_per_step or progress.batches_drawn >= draws_total:
            break
    rows_B = torch.cat([rows for rows, _ in kept])[: config.batch_size]
    if len(rows_B) == 0:  # nothing informative within the cap: train on the last draw (KL term only)
        return StepBatch(rollout, index_B, draws, drawn, informative, found, tokens)
    ids_BL, mask_BL = prompt_batch(train, rows_B)
    rollout = concat_groups([r for _, r in kept], ids_BL.to(run.device), mask_BL.to(run.device), len(rows_B))
    return StepBatch(rollout, rows_B, draws, drawn, informative, found, tokens)


def draw_stats(batch: StepBatch, config: RLConfig) -> dict:
    """What drawing the step's groups cost and found, logged when the draws are not plain (informative
    batches, or the target injected): rollout/target_in_group, rollout/informative_share, rollout/draws."""
    if not config.informative_batches and not config.inject_target:
        return {}
    return {
        "rollout/target_in_group": batch.found_drawn / max(1, batch.groups_drawn),
        "rollout/informative_share": batch.informative_drawn / max(1, batch.groups_drawn),
        "rollout/draws": float(batch.draws),
    }
