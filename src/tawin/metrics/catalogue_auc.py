r"""Stage metrics — AUC, one-way partial AUC, WPAUC and Recall/NDCG over the whole catalogue.

All functions are pure, vectorised over rows, and take

    scores    float [B, N]  a score f_{u,i} for every catalogue item (e.g. log π_θ(Y_i | H_u))
    positive  bool  [B, N]  the row's positives; n⁺_b ≥ 1 and n⁻_b = N − n⁺_b ≥ 1 per row

and return float64 [B] (one value per row; average over rows yourself). Rows may have different
n⁺, so everything is done with one sort per row plus cumulative tie-group bookkeeping and
masks, never a loop over rows or a B × n⁺ × n⁻ pair tensor. Cost: O(B·N log N) time, O(B·N) memory.

Formulas (1[·] the indicator, ties between a positive and a negative count ½):

    AUC_b        = 1/(n⁺ n⁻) · Σ_{p∈P} Σ_{q∈N} ( 1[s_p > s_q] + ½·1[s_p = s_q] )
                   (Mann–Whitney U with average ranks: U = Σ_{p∈P} rank_p − n⁺(n⁺+1)/2)
    WPAUC_b(α,d) = same sum with q restricted to the window W(α,d) of negatives whose 1-based
                   descending-score rank among the negatives lies in (⌈α·n⁻⌉, ⌈(α+d)·n⁻⌉],
                   divided by n⁺·|W|          (paper, Definition "Windowed partial AUC")
    OPAUC_b(β)   = WPAUC_b(0, β)              (top ⌈β·n⁻⌉ negatives; β = max_fpr)
    Recall@K_b   = |P ∩ top-K| / n⁺
    NDCG@K_b     = Σ_{p∈P∩top-K} 1/log2(rank_p + 1)  /  Σ_{r=1}^{min(n⁺,K)} 1/log2(r + 1)

How this maps to training objectives (PAPER.md):
  * Lemma 3.1 — GRPO with a binary reward is a linear surrogate of the group's AUC; with negatives
    drawn uniformly from the catalogue it targets full ``auc``.
  * Lemma 3.2 / Prop. 3.3 — beam-search negatives are the top-scoring ones, so the objective is
    one-way partial AUC, ``partial_auc(max_fpr=β)`` with β ≈ (G−1)/n⁻.
  * Lemma 3.5 — with n⁺ = 1, α = (K−1)/n⁻ and d = 1/n⁻ the window holds only the K-th negative and
    ``wpauc`` equals ``recall_at_k(K)`` exactly (for tie-free scores); TAWin smooths this window.

Ties:
  * positive vs negative: ½ (AUC, OPAUC, WPAUC).
  * negatives at a window edge: the window is defined on a (stable) descending sort of the
    negatives, but tied negatives have equal scores and so compare identically with every
    positive — WPAUC does not depend on how they are ordered.
  * Recall@K / NDCG@K: the expectation over a uniformly random order within each group of tied
    scores (McSherry & Najork, ECIR 2008). An item with g items scoring strictly higher and t items
    (itself included) scoring equal occupies each rank g+1 … g+t with probability 1/t, so it counts
    as in the top K with weight clip(K − g, 0, t)/t. This is deterministic, gives a constant-score
    model the chance value K/N (an optimistic rule would give it Recall@1 = 1), and is the same
    "ties count as a coin flip" convention as the ½ in AUC. For tie-free scores it is the plain
    top-K count, and Lemma 3.5 holds exactly. With ties the two can differ: a positive tied with
    the K-th negative gets WPAUC ½, while its tie-averaged recall is the fraction of its tie
    group's ranks that lie within K (e.g. 1/4 for a group of four tied items starting at rank K).

Window edges use ⌈x⌉ of x = α·n⁻ after snapping x to the nearest integer when it lies within 1e-9
(relative) of one, so α = (K−1)/n⁻ gives exactly K−1 despite floating point. An empty window
(⌈α·n⁻⌉ = ⌈(α+d)·n⁻⌉, possible when d·n⁻ < 1 and α > 0) yields NaN for that row.
"""

from __future__ import annotations

import torch

_CEIL_RTOL = 1e-9


def _check_inputs(scores: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate shapes/values; return (scores as float, n_pos_B int64)."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [B, N], got shape {tuple(scores.shape)}")
    if positive.shape != scores.shape:
        raise ValueError(f"positive must have the shape of scores {tuple(scores.shape)}, got {tuple(positive.shape)}")
    if positive.dtype != torch.bool:
        raise ValueError(f"positive must be a bool tensor, got {positive.dtype}")
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores contain NaN; rank metrics need an order on every item")
    n_pos_B = positive.sum(dim=1)
    n_items = scores.shape[1]
    bad_B = (n_pos_B == 0) | (n_pos_B == n_items)
    if bool(bad_B.any()):
        rows = torch.nonzero(bad_B).flatten()[:5].tolist()
        raise ValueError(
            f"every row needs at least one positive and one negative; rows {rows} (first 5) have "
            f"{'none' if int(n_pos_B[rows[0]]) == 0 else 'only'} positives"
        )
    return scores, n_pos_B


def _as_row_tensor(x: float | torch.Tensor, like: torch.Tensor, name: str) -> torch.Tensor:
    """A float or [B] tensor as float64 [B] on ``like``'s device."""
    x_B = torch.as_tensor(x, dtype=torch.float64, device=like.device)
    if x_B.ndim > 1 or (x_B.ndim == 1 and x_B.shape[0] != like.shape[0]):
        raise ValueError(f"{name} must be a float or a [B={like.shape[0]}] tensor, got {tuple(x_B.shape)}")
    return x_B.expand(like.shape[0])


def _robust_ceil(x: torch.Tensor) -> torch.Tensor:
    """⌈x⌉ as int64, treating x within 1e-9 (relative) of an integer as that integer."""
    nearest = torch.round(x)
    snap = (x - nearest).abs() <= _CEIL_RTOL * x.abs().clamp(min=1.0)
    return torch.where(snap, nearest, torch.ceil(x)).to(torch.int64)


def _sorted_counts(scores: torch.Tensor, positive: torch.Tensor) -> dict[str, torch.Tensor]:
    """One ascending sort per row, then tie-group bookkeeping in O(N), all in sorted order.

    Returns [B, N] tensors indexed by sorted position j (item i = the j-th smallest of its row):
        pos:            bool, whether item i is a positive
        lt, le:         int64, #items with score < s_i and ≤ s_i (ranks lt+1 … le are i's tie group)
        neg_lt, neg_le: int64, the same counts over the row's negatives only
    """
    asc_BN, order_BN = scores.sort(dim=1)
    pos_BN = positive.gather(1, order_BN)
    n_items = scores.shape[1]
    j_N = torch.arange(n_items, device=scores.device)
    new_value_BN = asc_BN[:, 1:] != asc_BN[:, :-1]
    true_B1 = torch.ones_like(new_value_BN[:, :1])
    is_start_BN = torch.cat([true_B1, new_value_BN], dim=1)
    is_end_BN = torch.cat([new_value_BN, true_B1], dim=1)
    lt_BN = torch.where(is_start_BN, j_N, 0).cummax(dim=1).values
    le_BN = torch.where(is_end_BN, j_N + 1, n_items).flip(1).cummin(dim=1).values.flip(1)
    # pos_before[:, j] = #positives among the j smallest; #positives with s < s_i = pos_before[lt].
    pos_before_BN1 = torch.nn.functional.pad(pos_BN.cumsum(dim=1), (1, 0))
    neg_lt_BN = lt_BN - pos_before_BN1.gather(1, lt_BN)
    neg_le_BN = le_BN - pos_before_BN1.gather(1, le_BN)
    return {"pos": pos_BN, "lt": lt_BN, "le": le_BN, "neg_lt": neg_lt_BN, "neg_le": neg_le_BN}


def auc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Per-row ROC AUC over all positive × negative pairs, ties ½.

    AUC_b = U_b / (n⁺ n⁻) with the Mann–Whitney statistic
    U_b = Σ_{p∈P} rank_p − n⁺(n⁺+1)/2, rank_p the 1-based ascending average rank of s_p in row b
    (tied items share the mean of their ranks), which equals Σ_{p,q} 1[s_p > s_q] + ½·1[s_p = s_q].

    Args:
        scores: float [B, N], one score per catalogue item.
        positive: bool [B, N], ≥ 1 positive and ≥ 1 negative per row.

    Returns:
        float64 [B] in [0, 1].
    """
    scores, n_pos_B = _check_inputs(scores, positive)
    n_pos = n_pos_B.to(torch.float64)
    n_neg = scores.shape[1] - n_pos
    counts = _sorted_counts(scores, positive)
    avg_rank_BN = (counts["lt"] + counts["le"] + 1).to(torch.float64) / 2.0
    u_B = torch.where(counts["pos"], avg_rank_BN, 0.0).sum(dim=1) - n_pos * (n_pos + 1.0) / 2.0
    return u_B / (n_pos * n_neg)


def wpauc(
    scores: torch.Tensor,
    positive: torch.Tensor,
    alpha: float | torch.Tensor,
    d: float | torch.Tensor,
) -> torch.Tensor:
    """Per-row Windowed Partial AUC, WPAUC(α, d) (paper, Definition "Windowed partial AUC").

    Rank the negatives of row b by descending score (1-based, stable), keep those with rank in
    W = (lo, hi], lo = ⌈α·n⁻⌉, hi = min(⌈(α+d)·n⁻⌉, n⁻), and return
        WPAUC_b = 1/(n⁺·|W|) · Σ_{p∈P} Σ_{q∈W} ( 1[s_p > s_q] + ½·1[s_p = s_q] ).
    α = 0, d = 1 gives ``auc``; α = 0 gives ``partial_auc(max_fpr=d)``; with n⁺ = 1,
    α = (K−1)/n⁻, d = 1/n⁻ (window = the K-th negative) it equals ``recall_at_k(K)`` for tie-free
    scores (Lemma 3.5). Tied negatives at the window edge compare identically with every positive,
    so their order does not matter. A row whose window is empty returns NaN.

    Args:
        scores: float [B, N], one score per catalogue item.
        positive: bool [B, N], ≥ 1 positive and ≥ 1 negative per row.
        alpha: window start α ≥ 0 as a fraction of n⁻ (float, or float [B] for per-row windows).
        d: window width d > 0 with α + d ≤ 1 (float or float [B]).

    Returns:
        float64 [B] in [0, 1] (NaN where the window is empty).
    """
    scores, n_pos_B = _check_inputs(scores, positive)
    alpha_B = _as_row_tensor(alpha, scores, "alpha")
    d_B = _as_row_tensor(d, scores, "d")
    if bool((alpha_B < 0).any() | (d_B <= 0).any() | (alpha_B + d_B > 1 + _CEIL_RTOL).any()):
        raise ValueError(
            f"need alpha >= 0, d > 0 and alpha + d <= 1 (fractions of the negatives); got alpha={alpha}, d={d}"
        )
    n_neg_B = scores.shape[1] - n_pos_B
    lo_B = _robust_ceil(alpha_B * n_neg_B).clamp(max=n_neg_B)
    hi_B = torch.minimum(_robust_ceil((alpha_B + d_B) * n_neg_B), n_neg_B)
    lo_B1, hi_B1 = lo_B[:, None], hi_B[:, None]

    # Descending ranks 1..gt hold negatives above s_p, gt+1..ge ties, ge+1..n⁻ negatives below.
    counts = _sorted_counts(scores, positive)
    ge_BN = n_neg_B[:, None] - counts["neg_lt"]
    gt_BN = n_neg_B[:, None] - counts["neg_le"]
    below_BN = (hi_B1 - torch.maximum(lo_B1, ge_BN)).clamp(min=0)
    tied_BN = (torch.minimum(hi_B1, ge_BN) - torch.maximum(lo_B1, gt_BN)).clamp(min=0)
    wins_BN = below_BN.to(torch.float64) + 0.5 * tied_BN.to(torch.float64)
    wins_B = torch.where(counts["pos"], wins_BN, 0.0).sum(dim=1)
    pairs_B = (n_pos_B * (hi_B - lo_B)).to(torch.float64)
    return torch.where(pairs_B > 0, wins_B / pairs_B.clamp(min=1.0), torch.nan)


def partial_auc(scores: torch.Tensor, positive: torch.Tensor, max_fpr: float) -> torch.Tensor:
    """Per-row one-way partial AUC OPAUC(β), β = ``max_fpr``, normalised to [0, 1].

    OPAUC_b(β) = 1/(n⁺·m) · Σ_{p∈P} Σ_{q ∈ top-m negatives} ( 1[s_p > s_q] + ½·1[s_p = s_q] ),
    m = ⌈β·n⁻⌉ ≥ 1 — the fraction of pairs won against the highest-scoring negatives, i.e. AUC
    restricted to FPR ∈ [0, β] (Lemma 3.2: beam negatives, β ≈ (G−1)/n⁻). Equals
    ``wpauc(scores, positive, 0, max_fpr)``. This is the unnormalised-by-chance form (not the
    McClish-standardised one that ``sklearn.roc_auc_score(max_fpr=…)`` reports).

    Args:
        scores: float [B, N], one score per catalogue item.
        positive: bool [B, N], ≥ 1 positive and ≥ 1 negative per row.
        max_fpr: β in (0, 1].

    Returns:
        float64 [B] in [0, 1].
    """
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr={max_fpr} must lie in (0, 1]")
    return wpauc(scores, positive, 0.0, max_fpr)


def _check_k(k: int, n_items: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_items:
        raise ValueError(f"k={k!r} must be an integer in [1, N={n_items}]")


def _above_and_tied(scores: torch.Tensor, positive: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """What the top-K metrics need of each item, in sorted order (see :func:`_sorted_counts`).

    Returns (is positive bool [B, N], g = #items scoring strictly above int64 [B, N],
    t = size of its tie group, itself included, int64 [B, N], n⁺ int64 [B]).
    """
    scores, n_pos_B = _check_inputs(scores, positive)
    _check_k(k, scores.shape[1])
    counts = _sorted_counts(scores, positive)
    return counts["pos"], scores.shape[1] - counts["le"], counts["le"] - counts["lt"], n_pos_B


def recall_at_k(scores: torch.Tensor, positive: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row Recall@K over the whole catalogue, ties averaged.

    Recall@K_b = |P ∩ top-K| / n⁺ (top K by descending score). Ties: an item with g items strictly
    above and t items (itself included) equal to it counts clip(K − g, 0, t)/t — its probability
    of landing in the top K under a uniformly random order of the tie (see the module docstring).
    For tie-free scores and n⁺ = 1 this is 1[#negatives scoring higher ≤ K−1], which equals
    ``wpauc(scores, positive, (K−1)/n⁻, 1/n⁻)`` exactly (Lemma 3.5).

    Args:
        scores: float [B, N], one score per catalogue item.
        positive: bool [B, N], ≥ 1 positive and ≥ 1 negative per row.
        k: cutoff, 1 ≤ K ≤ N.

    Returns:
        float64 [B] in [0, 1].
    """
    is_pos_BN, above_BN, tie_BN, n_pos_B = _above_and_tied(scores, positive, k)
    in_top_BN = (k - above_BN).clamp(min=0).minimum(tie_BN).to(torch.float64) / tie_BN
    return torch.where(is_pos_BN, in_top_BN, 0.0).sum(dim=1) / n_pos_B.to(torch.float64)


def ndcg_at_k(scores: torch.Tensor, positive: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row NDCG@K over the whole catalogue with binary relevance, ties averaged.

    NDCG@K_b = DCG / IDCG, DCG = Σ_{p∈P, rank_p ≤ K} 1/log2(rank_p + 1),
    IDCG = D(min(n⁺, K)) with D(r) = Σ_{j=1}^{r} 1/log2(j + 1). Ties: an item with g items strictly
    above and t items (itself included) equal to it takes each rank g+1 … g+t with probability 1/t,
    contributing (D(min(g+t, K)) − D(min(g, K))) / t. With n⁺ = 1, NDCG@K ≤ Recall@K.

    Takes ``scores`` float [B, N], ``positive`` bool [B, N] and ``k`` as :func:`recall_at_k`
    does, and returns float64 [B] in [0, 1].
    """
    is_pos_BN, above_BN, tie_BN, n_pos_B = _above_and_tied(scores, positive, k)
    n_items = above_BN.shape[1]
    ranks = torch.arange(1, n_items + 1, dtype=torch.float64, device=above_BN.device)
    discount = 1.0 / torch.log2(ranks + 1.0)
    cum_discount = torch.cat([ranks.new_zeros(1), torch.cumsum(discount, dim=0)])  # D(0..N)
    gain_BN = (cum_discount[(above_BN + tie_BN).clamp(max=k)] - cum_discount[above_BN.clamp(max=k)]) / tie_BN
    dcg_B = torch.where(is_pos_BN, gain_BN, 0.0).sum(dim=1)
    return dcg_B / cum_discount[n_pos_B.clamp(max=k)]
