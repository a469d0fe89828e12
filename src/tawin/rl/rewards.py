"""RL stage — rewards of a rollout group (paper §Setting; ReRe's rank reward).

A group is ``[B, G]``: B prompts, G candidate items each, in beam order (descending policy score)
when they come from beam search. ``is_target_BG[b, g]`` is True where candidate g of prompt b is
prompt b's target item (matched by item id, never by text).

* :func:`binary_reward` — the paper's reward, r = 1[item = target].
* :func:`rank_reward` — ReRe's (Tan et al., arXiv 2510.12211): binary plus a rank penalty on the
  negatives of groups that contain the target,

      r_i = −(1/log2(i+2)) / Σ_{j=0}^{G−1} 1/log2(j+2)    (i = 0-based group position),

  so that negatives the policy ranks high are pushed down harder. Groups without the target get
  all-zero rewards, as with the binary reward.
"""

from __future__ import annotations

import torch


def binary_reward(is_target_BG: torch.Tensor) -> torch.Tensor:
    """r_BG = 1 where the candidate is the target item, else 0.

    Args:
        is_target_BG: bool [B, G].
    Returns:
        float [B, G] (the default float dtype).
    """
    return is_target_BG.to(torch.get_default_dtype())


def rank_penalty(group_size: int) -> torch.Tensor:
    """ReRe's per-position penalty p_i = −(1/log2(i+2)) / Σ_{j=0}^{G−1} 1/log2(j+2).

    Returns:
        float [G]; Σ_i p_i = −1 and p_0 < p_1 < … < 0.
    """
    discount_G = 1.0 / torch.log2(torch.arange(group_size, dtype=torch.float64) + 2.0)
    return (-discount_G / discount_G.sum()).to(torch.get_default_dtype())


def rank_reward(is_target_BG: torch.Tensor) -> torch.Tensor:
    """ReRe's rank reward: r = 1 for the target; for the negative at group position i of a group
    that contains the target, r = −(1/log2(i+2)) / Σ_{j=0}^{G−1} 1/log2(j+2); 0 elsewhere.

    Args:
        is_target_BG: bool [B, G], candidates in beam order.
    Returns:
        float [B, G].
    """
    group_size = is_target_BG.shape[-1]
    penalty_G = rank_penalty(group_size).to(is_target_BG.device)
    has_target_B1 = is_target_BG.any(dim=-1, keepdim=True)
    negative_in_hit_group_BG = has_target_B1 & ~is_target_BG
    reward_BG = binary_reward(is_target_BG)
    return reward_BG + negative_in_hit_group_BG.to(reward_BG.dtype) * penalty_G


REWARDS = {"binary": binary_reward, "rank": rank_reward}
"""The reward function of each ``rl.reward`` choice."""
