"""RL stage — policy losses: GRPO, DAPO and GSPO clipped surrogates with a k3 KL penalty.

All take per-token tensors of the candidates' item tokens, shaped [B, G, L] (B prompts, G
candidates, L tokens, right-padded), and per-sequence advantages A_BG (GRPO advantages, with the
TAWin weights already folded in — which is why TAWin applies unchanged to all three losses).

With r_t = exp(logp_new_t − logp_old_t) and ε_low, ε_high the clip range:

* GRPO (Shao et al. 2024): ℓ_t = −min(r_t A, clip(r_t, 1−ε_low, 1+ε_high) A); mean over each
  sequence's valid tokens, then mean over sequences.
* DAPO (Yu et al. 2025): the same token term with asymmetric clipping ("clip-higher", ε_high
  commonly 0.28), averaged over all valid tokens of the batch (token-level loss), so long
  sequences weigh in proportion to their length.
* GSPO (Zheng et al. 2025): a sequence ratio s = exp((1/|y|) Σ_t (logp_new_t − logp_old_t))
  (length-normalised), ℓ = −min(s A, clip(s, 1−ε_low, 1+ε_high) A), mean over sequences. The GSPO
  paper uses a far narrower clip range (ε ≈ 3e-4, 4e-4) than token-level losses.

KL to the frozen reference (k3 estimator, Schulman 2020), per token with d = logp_ref − logp_new:
k3 = exp(d) − d − 1 ≥ 0, averaged like the policy term (per sequence then over sequences for GRPO
and GSPO; over all tokens for DAPO). loss = policy_loss + β · kl. The paper uses β = 1e-3; DAPO as
published drops the KL term (β = 0), which callers may pass.

Sequences with no valid token are left out of the means (denominators are clamped to 1).
``logp_old`` is the rollout-time log-prob, detached; with one update per rollout it equals
``logp_new.detach()``, so every ratio is 1 and all three losses give the plain policy gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import torch

from tawin.errors import ConfigError
from tawin.rl.config import PolicyLoss


@dataclass(frozen=True)
class LossOutput:
    """A policy loss and its parts; only ``loss`` carries gradient."""

    loss: torch.Tensor
    """Scalar to backpropagate: policy_loss + β · kl."""
    policy_loss: torch.Tensor
    """Scalar, detached: the clipped surrogate term."""
    kl: torch.Tensor
    """Scalar, detached: mean k3 KL to the reference, aggregated like the policy term."""
    clip_fraction: torch.Tensor
    """Scalar, detached: fraction of valid tokens (GSPO: sequences) whose clipped branch is
    active, i.e. r < 1−ε_low with A < 0 or r > 1+ε_high with A > 0."""


def _k3_kl(logp_new_BGL: torch.Tensor, logp_ref_BGL: torch.Tensor) -> torch.Tensor:
    """k3_BGL = exp(d) − d − 1 with d = logp_ref − logp_new."""
    d_BGL = logp_ref_BGL - logp_new_BGL
    return torch.exp(d_BGL) - d_BGL - 1.0


def _clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(−min(r·A, clip(r, 1−ε_low, 1+ε_high)·A), clipped-branch-active mask), elementwise."""
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = -torch.minimum(ratio * advantages, clipped * advantages)
    active = ((ratio < 1.0 - eps_low) & (advantages < 0)) | ((ratio > 1.0 + eps_high) & (advantages > 0))
    return loss, active


def _masked_sum(values: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Σ of values where mask (bool); `where`, not `*`, so inf/NaN in padding cannot leak."""
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum() if dim is None else kept.sum(dim=dim)


def _sequence_mean(values_BGL: torch.Tensor, mask_BGL: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's valid tokens, then over sequences that have any: a scalar."""
    n_tokens_BG = mask_BGL.sum(dim=-1).to(values_BGL.dtype)
    per_seq_BG = _masked_sum(values_BGL, mask_BGL, dim=-1) / torch.clamp(n_tokens_BG, min=1.0)
    has_tokens_BG = n_tokens_BG > 0
    return _masked_sum(per_seq_BG, has_tokens_BG) / torch.clamp(has_tokens_BG.sum(), min=1)


def _token_mean(values_BGL: torch.Tensor, mask_BGL: torch.Tensor) -> torch.Tensor:
    """Mean over all valid tokens of the batch: a scalar."""
    return _masked_sum(values_BGL, mask_BGL) / torch.clamp(mask_BGL.sum(), min=1)


def _check_shapes(logp_new_BGL, logp_old_BGL, logp_ref_BGL, mask_BGL, advantages_BG) -> None:
    shape = logp_new_BGL.shape
    assert logp_old_BGL.shape == shape and logp_ref_BGL.shape == shape, "logp shapes differ"
    assert mask_BGL.shape == shape, f"mask {tuple(mask_BGL.shape)} vs logp {tuple(shape)}"
    assert advantages_BG.shape == shape[:-1], "advantages must be [B, G] of logp's [B, G, L]"


def _token_level_loss(
    logp_new_BGL, logp_old_BGL, logp_ref_BGL, mask_BGL, advantages_BG, clip_eps_low, clip_eps_high, kl_beta, reduce
) -> LossOutput:
    """Token-level clipped surrogate + β·k3, averaged by `reduce` (GRPO: per sequence; DAPO: per token)."""
    _check_shapes(logp_new_BGL, logp_old_BGL, logp_ref_BGL, mask_BGL, advantages_BG)
    mask_BGL = mask_BGL != 0
    ratio_BGL = torch.exp(logp_new_BGL - logp_old_BGL.detach())
    token_loss_BGL, active_BGL = _clipped_surrogate(ratio_BGL, advantages_BG.unsqueeze(-1), clip_eps_low, clip_eps_high)
    policy_loss = reduce(token_loss_BGL, mask_BGL)
    kl = reduce(_k3_kl(logp_new_BGL, logp_ref_BGL.detach()), mask_BGL)
    clip_fraction = _token_mean(active_BGL.to(logp_new_BGL.dtype), mask_BGL)
    return LossOutput(policy_loss + kl_beta * kl, policy_loss.detach(), kl.detach(), clip_fraction)


def grpo_loss(
    logp_new_BGL: torch.Tensor,
    logp_old_BGL: torch.Tensor,
    logp_ref_BGL: torch.Tensor,
    mask_BGL: torch.Tensor,
    advantages_BG: torch.Tensor,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.2,
    kl_beta: float = 1e-3,
) -> LossOutput:
    """GRPO: mean_seq[ mean_{t∈seq}( −min(r_t A, clip(r_t, 1−ε_low, 1+ε_high) A) + β k3_t ) ].

    Args:
        logp_new_BGL: float [B, G, L], policy log-probs of the candidates' tokens (with grad).
        logp_old_BGL: float [B, G, L], rollout-time log-probs (no grad).
        logp_ref_BGL: float [B, G, L], reference-model log-probs (no grad).
        mask_BGL: bool or 0/1 float [B, G, L], true on valid tokens.
        advantages_BG: float [B, G].
        clip_eps_low, clip_eps_high: ε of the clip range [1−ε_low, 1+ε_high].
        kl_beta: β of the k3 KL penalty.
    Returns:
        :class:`LossOutput`.
    """
    return _token_level_loss(
        logp_new_BGL,
        logp_old_BGL,
        logp_ref_BGL,
        mask_BGL,
        advantages_BG,
        clip_eps_low,
        clip_eps_high,
        kl_beta,
        _sequence_mean,
    )


def dapo_loss(
    logp_new_BGL: torch.Tensor,
    logp_old_BGL: torch.Tensor,
    logp_ref_BGL: torch.Tensor,
    mask_BGL: torch.Tensor,
    advantages_BG: torch.Tensor,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.28,
    kl_beta: float = 1e-3,
) -> LossOutput:
    """DAPO: (1/Σ mask) Σ_{b,g,t valid} ( −min(r_t A, clip(r_t, 1−ε_low, 1+ε_high) A) + β k3_t ).

    Token-level normalisation by the batch's total number of valid tokens. Args and return as
    :func:`grpo_loss`.
    """
    return _token_level_loss(
        logp_new_BGL,
        logp_old_BGL,
        logp_ref_BGL,
        mask_BGL,
        advantages_BG,
        clip_eps_low,
        clip_eps_high,
        kl_beta,
        _token_mean,
    )


def gspo_loss(
    logp_new_BGL: torch.Tensor,
    logp_old_BGL: torch.Tensor,
    logp_ref_BGL: torch.Tensor,
    mask_BGL: torch.Tensor,
    advantages_BG: torch.Tensor,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.2,
    kl_beta: float = 1e-3,
) -> LossOutput:
    """GSPO: mean_seq[ −min(s A, clip(s, 1−ε_low, 1+ε_high) A) ] + β · mean_seq mean_t k3_t,
    with s_BG = exp((1/|y|) Σ_{t valid} (logp_new_t − logp_old_t)).

    Args and return as :func:`grpo_loss`; ``clip_fraction`` counts sequences.
    """
    _check_shapes(logp_new_BGL, logp_old_BGL, logp_ref_BGL, mask_BGL, advantages_BG)
    mask_BGL = mask_BGL != 0
    n_tokens_BG = mask_BGL.sum(dim=-1).to(logp_new_BGL.dtype)
    log_ratio_BGL = logp_new_BGL - logp_old_BGL.detach()
    log_ratio_BG = _masked_sum(log_ratio_BGL, mask_BGL, dim=-1) / torch.clamp(n_tokens_BG, min=1.0)
    seq_loss_BG, active_BG = _clipped_surrogate(torch.exp(log_ratio_BG), advantages_BG, clip_eps_low, clip_eps_high)
    has_tokens_BG = n_tokens_BG > 0
    n_seqs = torch.clamp(has_tokens_BG.sum(), min=1)
    policy_loss = _masked_sum(seq_loss_BG, has_tokens_BG) / n_seqs
    kl = _sequence_mean(_k3_kl(logp_new_BGL, logp_ref_BGL.detach()), mask_BGL)
    clip_fraction = _masked_sum(active_BG.to(logp_new_BGL.dtype), has_tokens_BG) / n_seqs
    return LossOutput(policy_loss + kl_beta * kl, policy_loss.detach(), kl.detach(), clip_fraction)


LossFn = Callable[..., LossOutput]

POLICY_LOSSES: dict[PolicyLoss, LossFn] = {"grpo": grpo_loss, "dapo": dapo_loss, "gspo": gspo_loss}
"""The function of each choice of ``rl.loss``."""


def select_loss(name: PolicyLoss) -> LossFn:
    """The loss function for ``name`` ("grpo", "dapo" or "gspo"); ConfigError otherwise."""
    if name not in POLICY_LOSSES:
        choices = ", ".join(repr(choice) for choice in get_args(PolicyLoss))
        raise ConfigError(f"loss={name!r} is not a known policy loss; choose one of {choices}")
    return POLICY_LOSSES[name]
