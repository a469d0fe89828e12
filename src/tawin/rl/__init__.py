"""Stage: RL — the pure math of GRPO / ReRe / TAWin training (rewards, advantages, weights, losses).

``rewards`` (binary and ReRe rank rewards) → ``advantages`` (GRPO group advantages, Lemma 3.1) →
``tawin`` (TAWin weights of the negatives) → ``loss`` (GRPO / DAPO / GSPO surrogates). Everything
here is tensors in, tensors out; no model or transformers import.
"""

from tawin.rl.advantages import group_advantages
from tawin.rl.loss import LossOutput, PolicyLoss, select_loss
from tawin.rl.rewards import binary_reward, rank_reward
from tawin.rl.tawin import (
    apply_weights,
    check_tawin_settings,
    tawin_raw_weights,
    tawin_weights,
    weight_entropy,
)

__all__ = [
    "LossOutput",
    "PolicyLoss",
    "apply_weights",
    "binary_reward",
    "check_tawin_settings",
    "group_advantages",
    "rank_reward",
    "select_loss",
    "tawin_raw_weights",
    "tawin_weights",
    "weight_entropy",
]
