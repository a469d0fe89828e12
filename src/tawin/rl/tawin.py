"""RL stage — TAWin: Threshold-Adjusted Windowed reweighting of a group's negatives (paper §TAWin).

For each group (one prompt, G candidates) with negatives N:

1. σ_i = 0-based rank of negative i among the group's negatives by descending policy score
   (stable: ties keep group order; for beams this is beam order).
2. x_i = −|σ_i − σ*|, σ* the anchor (σ* = K−1 targets Recall@K).
3. w_i = min(1, exp((x_i − λ)/τ)) with λ the unique threshold such that Σ_{i∈N} w_i = budget
   (a soft top-``budget`` of x, i.e. a soft window around rank σ*). If budget ≥ |N|, all w_i = 1.
4. Mass normalisation w̄_i = w_i · |N| / Σ_j w_j (mean 1 over the negatives).
5. The negative's advantage is multiplied by w̄_i; positives keep weight 1.

Limits: τ → ∞ gives w_i = budget/|N| for every negative, so w̄ ≡ 1 — uniform weights, i.e. plain
beam-negative GRPO, which optimises one-way partial AUC (OPAUC, Prop. 3.3). τ → 0 with budget 1
gives the hard window: all weight on the negative ranked σ* (w̄ = |N| there, 0 elsewhere), i.e.
WPAUC with α = (K−1)/n⁻, d = 1/n⁻, which equals Recall@K for one positive (Lemma 3.5). By the
Lemma 3.1 algebra, (1/G) Σ_m Ã_m s_m with Ã = A·w̄ equals c · (1/|N|) Σ_i w̄_i (s⁺ − s_i),
c = √(G−1)/G: a pairwise surrogate whose negatives concentrate around rank σ* — a smoothed WPAUC.

Solving λ (exact, sort-based, vectorised): sort x descending, x_(0) ≥ x_(1) ≥ …. If the top m
saturate at 1, then λ_m = τ · log(Σ_{k≥m} exp(x_(k)/τ) / (budget − m)) for m < budget. Each
h_m(λ) = m + Σ_{k≥m} exp((x_(k) − λ)/τ) bounds f(λ) = Σ_i min(1, exp((x_i − λ)/τ)) from above and
is strictly decreasing, so λ_m ≥ λ* for every m, with equality at the true number of saturated
weights: λ* = min_{m < min(budget, |N|)} λ_m. No consistency test, hence no rounding trouble at
ties. Computed in float64 with a suffix log-sum-exp, so τ from 1e-3 to 1e4 is stable.

The paper leaves budget for n⁺ = 1 implicit; we default to 1 (the window's size, one negative).
"""

from __future__ import annotations

import math

import torch


def negative_ranks(scores_BG: torch.Tensor, is_negative_BG: torch.Tensor) -> torch.Tensor:
    """σ_BG: 0-based rank of each negative among its group's negatives by descending score.

    σ_i = #{j ∈ N : s_j > s_i or (s_j = s_i and j < i)} (stable ties). Positives get −1.

    Args:
        scores_BG: float [B, G], the policy's scores (e.g. summed log-probs).
        is_negative_BG: bool [B, G].
    Returns:
        int64 [B, G].
    """
    s_BG1, s_B1G = scores_BG.unsqueeze(-1), scores_BG.unsqueeze(-2)
    position_G = torch.arange(scores_BG.shape[-1], device=scores_BG.device)
    earlier_GG = position_G.unsqueeze(0) < position_G.unsqueeze(1)  # [i, j]: j before i
    outranks_BGG = (s_B1G > s_BG1) | ((s_B1G == s_BG1) & earlier_GG)
    sigma_BG = (outranks_BGG & is_negative_BG.unsqueeze(-2)).sum(dim=-1)
    return torch.where(is_negative_BG, sigma_BG, torch.full_like(sigma_BG, -1))


def _solve_threshold(x_BG: torch.Tensor, n_neg_B: torch.Tensor, tau: float, budget: float) -> torch.Tensor:
    """λ_B with Σ_i min(1, exp((x_i − λ)/τ)) = budget; x float64 with −inf on non-negatives.

    Returns +inf for groups where no m < min(budget, |N|) exists (no negatives)."""
    x_sorted_BG = torch.sort(x_BG, dim=-1, descending=True).values
    z_BG = x_sorted_BG / tau
    suffix_lse_BG = torch.logcumsumexp(z_BG.flip(-1), dim=-1).flip(-1)  # log Σ_{k≥m} exp(z_k)
    m_G = torch.arange(x_BG.shape[-1], device=x_BG.device, dtype=torch.float64)
    valid_BG = (m_G < budget) & (m_G < n_neg_B.unsqueeze(-1))
    log_rest_G = torch.log(torch.clamp(budget - m_G, min=1e-300))
    lambda_BG = tau * (suffix_lse_BG - log_rest_G)
    lambda_BG = torch.where(valid_BG, lambda_BG, torch.full_like(lambda_BG, math.inf))
    return lambda_BG.min(dim=-1).values


def tawin_raw_weights(
    scores_BG: torch.Tensor,
    is_negative_BG: torch.Tensor,
    anchor: float,
    tau: float,
    budget: float = 1.0,
) -> torch.Tensor:
    """w_BG before mass normalisation: w_i = min(1, exp((x_i − λ)/τ)), x_i = −|σ_i − σ*|,
    Σ_{i∈N} w_i = min(budget, |N|) per group. Positives get 1.

    Args:
        scores_BG: float [B, G], policy scores; only their order within each group matters
            (no gradient flows through the weights).
        is_negative_BG: bool [B, G].
        anchor: σ*, 0-based rank among the negatives at the window's centre.
        tau: τ > 0, temperature of the truncated exponential.
        budget: total weight of the negatives (> 0).
    Returns:
        [B, G] in [0, 1], dtype of ``scores_BG`` (default float dtype if it is not floating).
    """
    if not tau > 0:
        raise ValueError(f"tau={tau} must be > 0")
    if not budget > 0:
        raise ValueError(f"budget={budget} must be > 0")
    out_dtype = scores_BG.dtype if scores_BG.is_floating_point() else torch.get_default_dtype()
    scores_BG = scores_BG.detach()
    sigma_BG = negative_ranks(scores_BG, is_negative_BG).to(torch.float64)
    x_BG = -(sigma_BG - float(anchor)).abs()
    x_BG = torch.where(is_negative_BG, x_BG, torch.full_like(x_BG, -math.inf))
    n_neg_B = is_negative_BG.sum(dim=-1)
    lambda_B1 = _solve_threshold(x_BG, n_neg_B, float(tau), float(budget)).unsqueeze(-1)
    w_BG = torch.exp(torch.clamp((x_BG - lambda_B1) / tau, max=0.0))
    saturated_B1 = (n_neg_B <= budget).unsqueeze(-1)  # budget ≥ |N|: every negative gets 1
    w_BG = torch.where(is_negative_BG & ~saturated_B1, w_BG, torch.ones_like(w_BG))
    return w_BG.to(out_dtype)


def tawin_weights(
    scores_BG: torch.Tensor,
    is_negative_BG: torch.Tensor,
    anchor: float,
    tau: float,
    budget: float = 1.0,
) -> torch.Tensor:
    """w̄_BG: TAWin weights after mass normalisation, w̄_i = w_i · |N| / Σ_{j∈N} w_j.

    Mean 1 over each group's negatives; positives 1; a group without negatives is all 1.
    Args as :func:`tawin_raw_weights`. Returns [B, G] ≥ 0.
    """
    w_BG = tawin_raw_weights(scores_BG, is_negative_BG, anchor, tau, budget).to(torch.float64)
    neg_BG = is_negative_BG.to(torch.float64)
    n_neg_B1 = neg_BG.sum(dim=-1, keepdim=True)
    mass_B1 = (w_BG * neg_BG).sum(dim=-1, keepdim=True)
    w_bar_BG = w_BG * n_neg_B1 / torch.clamp(mass_B1, min=1e-300)
    w_bar_BG = torch.where(is_negative_BG, w_bar_BG, torch.ones_like(w_bar_BG))
    out_dtype = scores_BG.dtype if scores_BG.is_floating_point() else torch.get_default_dtype()
    return w_bar_BG.to(out_dtype)


def weight_entropy(weights_BG: torch.Tensor, is_negative_BG: torch.Tensor) -> torch.Tensor:
    """H_B = −Σ_{i∈N} p_i log p_i with p_i = w̄_i / Σ_{j∈N} w̄_j (0 log 0 = 0), in nats.

    Scale-invariant, so raw or normalised weights give the same value. log|N| for uniform
    weights, 0 for the hard window; 0 for groups without negatives. Logged as
    ``tawin/weight_entropy`` (mean over the batch).

    Args:
        weights_BG: float [B, G] ≥ 0.
        is_negative_BG: bool [B, G].
    Returns:
        float [B].
    """
    w_BG = torch.where(is_negative_BG, weights_BG.detach(), torch.zeros_like(weights_BG))
    p_BG = w_BG / torch.clamp(w_BG.sum(dim=-1, keepdim=True), min=torch.finfo(w_BG.dtype).tiny)
    plogp_BG = torch.where(p_BG > 0, p_BG * torch.log(p_BG), torch.zeros_like(p_BG))
    return 0.0 - plogp_BG.sum(dim=-1)  # 0.0 − x, not −x: no −0.0 for a hard window
