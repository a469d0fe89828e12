"""Stage: RL — GRPO / ReRe / TAWin training.

The pure math: ``rewards`` (binary and ReRe rank rewards) → ``advantages`` (GRPO group
advantages, Lemma 3.1) → ``tawin`` (TAWin weights of the negatives) → ``loss`` (GRPO / DAPO /
GSPO surrogates), tensors in and tensors out. ``rollout`` (the policy's groups of candidates) and
``train`` (the loop) use the model. The names below load on first use, so that reading
:mod:`tawin.rl.config` does not import torch.
"""

from tawin.lazy import lazy_exports

_EXPORTS = {
    "group_advantages": "advantages",
    "PolicyLoss": "config",
    "LossOutput": "loss",
    "select_loss": "loss",
    "binary_reward": "rewards",
    "rank_reward": "rewards",
    "tawin_raw_weights": "tawin",
    "tawin_weights": "tawin",
    "weight_entropy": "tawin",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
