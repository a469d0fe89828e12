"""Stage: RL — GRPO / ReRe / TAWin training.

The pure math, tensors in and tensors out, no model: ``rewards`` (binary and ReRe rank rewards) →
``advantages`` (GRPO group advantages, Lemma 3.1) → ``tawin`` (TAWin weights of the negatives) →
``loss`` (GRPO / DAPO / GSPO surrogates). ``config`` holds the settings (:class:`RLConfig`, with the
rows RL trains on in :class:`RLRows`) and ``rows`` the one rule that picks those rows. ``rollout``
(the policy's groups of candidates), ``step_batch`` (the groups one step trains on) and ``train``
(the loop) run the model: they import :mod:`tawin.models` and :mod:`tawin.decoding`. The names
below load on first use, so that reading :mod:`tawin.rl.config` does not import torch.
"""

from tawin.lazy import lazy_exports

_EXPORTS = {
    "group_advantages": "advantages",
    "RLConfig": "config",
    "RLRows": "config",
    "PolicyLoss": "config",
    "LossOutput": "loss",
    "select_loss": "loss",
    "binary_reward": "rewards",
    "rank_reward": "rewards",
    "split_train_rows": "rows",
    "tawin_raw_weights": "tawin",
    "tawin_weights": "tawin",
    "weight_entropy": "tawin",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
