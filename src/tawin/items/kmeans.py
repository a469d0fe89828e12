"""Stage 2 — residual k-means (RQ-KMeans), the quantiser behind the built semantic IDs.

An item's semantic ID is L codes ``(c_1, ..., c_L)``; residual k-means builds them level by level:

    r_0 = x,   c_l = argmin_k || r_{l-1} - C_l[k] ||²,   r_l = r_{l-1} - C_l[c_l],

where codebook C_l (K × D) is fitted by Lloyd's k-means (seeded k-means++ start) on the level's
residuals r_{l-1}, so x ≈ Σ_l C_l[c_l] and the reconstruction error ||r_l||² falls with l.
A level may replace the argmin by a Sinkhorn-balanced assignment (every code gets ≈ N/K items,
as in MiniOneRec's RQ-VAE, whose last level uses Sinkhorn); :class:`tawin.items.sids.SIDConfig`
balances levels 2..L by default.

Deviation from the paper: MiniOneRec's SIDs come from an RQ-VAE over Qwen embeddings; residual
k-means needs no training and is deterministic, the same family as the RQ-KMeans tokenisers of
OneRec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_ASSIGN_CHUNK = 65536  # rows per distance block: bounds memory at chunk × K floats


@dataclass(frozen=True)
class ResidualCodebooks:
    """The fitted quantiser. x_n ≈ Σ_l codebooks[l][codes_NL[n, l]]."""

    codes_NL: np.ndarray  # int64 [N, L]
    codebooks: list[np.ndarray]  # L × float32 [K, D], K = min(codebook_size, N)
    residual_sq: list[float]  # L: mean_n ||r_l||² after each level (the reconstruction error)


def _nearest(x_ND: torch.Tensor, c_KD: torch.Tensor, x_sq_N: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin_k ||x_n - c_k||² and that squared distance per row ([N] int64, [N] float).

    ``x_sq_N`` = ||x_n||², passed in because it is fixed across Lloyd steps.
    """
    c_sq_K = (c_KD * c_KD).sum(1)
    assign, dist = [], []
    for start in range(0, x_ND.shape[0], _ASSIGN_CHUNK):
        x = x_ND[start : start + _ASSIGN_CHUNK]
        d_NK = torch.addmm(c_sq_K[None, :], x, c_KD.T, alpha=-2.0)
        best, index = d_NK.min(1)
        assign.append(index)
        dist.append((best + x_sq_N[start : start + _ASSIGN_CHUNK]).clamp_min(0.0))
    return torch.cat(assign), torch.cat(dist)


def _kmeans_pp_init(x_ND: torch.Tensor, k: int, generator: torch.Generator, x_sq_N: torch.Tensor) -> torch.Tensor:
    """k-means++ seeding: each new centre is drawn with probability ∝ D(x)², seeded."""
    n = x_ND.shape[0]

    def sq_dist_to(index: int) -> torch.Tensor:
        return (x_sq_N - 2.0 * (x_ND @ x_ND[index]) + x_sq_N[index]).clamp_min(0.0)

    first = int(torch.randint(n, (1,), generator=generator))
    centres = [first]
    d2_N = sq_dist_to(first)
    for _ in range(1, k):
        weights = d2_N.double().cpu()
        if float(weights.sum()) <= 0.0:  # fewer distinct points than k: fill with unused points
            weights = torch.ones(n, dtype=torch.float64)
            weights[centres] = 0.0
        centres.append(int(torch.multinomial(weights, 1, generator=generator)))
        d2_N = torch.minimum(d2_N, sq_dist_to(centres[-1]))
    return x_ND[centres].clone()


def _balanced(
    x_ND: torch.Tensor, c_KD: torch.Tensor, x_sq_N: torch.Tensor, epsilon: float, v_K: torch.Tensor, iters: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sinkhorn-balanced assignment: the hard rounding of the entropic transport plan

        P_nk = u_n v_k exp(-||x_n - c_k||² / (ε E)),   Σ_k P_nk = 1,   Σ_n P_nk = N/K,

    with E = mean_n ||x_n||² (so ε is scale-free), i.e. a_n = argmax_k v_k exp(-d_nk / (ε E)).
    ``v_K`` (float64) warm-starts the column scaling from the previous Lloyd step, so a few
    iterations suffice. Returns (assignment [N], its squared distance [N], v_K).
    """
    n, k = x_ND.shape[0], c_KD.shape[0]
    d_NK = torch.addmm((c_KD * c_KD).sum(1)[None, :], x_ND, c_KD.T, alpha=-2.0).add_(x_sq_N[:, None]).clamp_min_(0.0)
    logits_NK = d_NK.double().div_(-epsilon * float(x_sq_N.mean().clamp_min(1e-12)))
    kernel_NK = logits_NK.sub_(logits_NK.max(1, keepdim=True).values).exp_()  # row max 1: no overflow
    for _ in range(iters):
        u_N = 1.0 / (kernel_NK @ v_K).clamp_min(1e-300)
        v_K = (n / k) / (kernel_NK.T @ u_N).clamp_min(1e-300)
    assign_N = kernel_NK.mul_(v_K[None, :]).argmax(1)
    return assign_N, d_NK.gather(1, assign_N[:, None]).squeeze(1), v_K


def _means(x_ND: torch.Tensor, assign_N: torch.Tensor, centroids_KD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster means (empty clusters keep their centroid) and the indices of empty clusters."""
    k = centroids_KD.shape[0]
    counts_K = torch.bincount(assign_N, minlength=k)
    sums_KD = torch.zeros_like(centroids_KD).index_add_(0, assign_N, x_ND)
    filled = counts_K > 0
    means_KD = torch.where(filled[:, None], sums_KD / counts_K.clamp_min(1)[:, None].to(x_ND.dtype), centroids_KD)
    return means_KD, torch.nonzero(~filled).flatten()


def kmeans(
    x_ND: torch.Tensor, k: int, generator: torch.Generator, iters: int, epsilon: float = 0.0, sinkhorn_iters: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from a k-means++ start; with ``epsilon > 0`` the assignment is balanced.

    Plain (ε = 0): empty clusters are re-seeded with the points farthest from their centres
    (largest first, ties by position), and the returned assignment is the argmin over the
    returned centroids. Balanced (ε > 0): each step assigns with :func:`_balanced`, and the
    returned centroids are the means of the returned assignment, so the level's error never
    exceeds the input's energy. Returns (centroids float [k, D], assignment int64 [N]).
    """
    x_sq_N = (x_ND * x_ND).sum(1)
    centroids_KD = _kmeans_pp_init(x_ND, k, generator, x_sq_N)
    v_K = torch.ones(k, dtype=torch.float64, device=x_ND.device)

    def assign(c_KD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal v_K
        if epsilon <= 0.0:
            return _nearest(x_ND, c_KD, x_sq_N)
        assign_N, dist_N, v_K = _balanced(x_ND, c_KD, x_sq_N, epsilon, v_K, sinkhorn_iters)
        return assign_N, dist_N

    assign_N, dist_N = assign(centroids_KD)
    for _ in range(iters):
        centroids_KD, empty = _means(x_ND, assign_N, centroids_KD)
        if empty.numel():
            farthest = torch.argsort(dist_N, descending=True, stable=True)[: empty.numel()]
            centroids_KD[empty[: farthest.numel()]] = x_ND[farthest]
        new_assign_N, dist_N = assign(centroids_KD)
        converged = bool(torch.equal(new_assign_N, assign_N)) and not empty.numel()
        assign_N = new_assign_N
        if converged:
            break
    if epsilon > 0.0:
        centroids_KD, _ = _means(x_ND, assign_N, centroids_KD)
    return centroids_KD, assign_N


def fit_residual_kmeans(
    embeddings_ND: np.ndarray,
    levels: int,
    codebook_size: int,
    seed: int,
    iters: int,
    epsilons: tuple[float, ...] | None = None,
    sinkhorn_iters: int = 10,
    device: str = "cpu",
) -> ResidualCodebooks:
    """Residual k-means: level 1 clusters the embeddings, level l the residuals of level l-1.

    Args:
        embeddings_ND: float [N, D] item embeddings.
        levels: L; codebook_size: K (capped at N); seed: k-means++ seed; iters: Lloyd steps per level.
        epsilons: per-level Sinkhorn temperature ε_l (0 = plain nearest-centroid k-means);
            None = all plain.
        sinkhorn_iters: Sinkhorn iterations per Lloyd step on balanced levels.
    Returns:
        :class:`ResidualCodebooks` with codes int64 [N, L].
    """
    n = int(embeddings_ND.shape[0])
    assert n > 0, "residual k-means needs at least one item"
    epsilons = tuple(epsilons) if epsilons is not None else (0.0,) * levels
    assert len(epsilons) == levels, "one epsilon per level"
    k = min(codebook_size, n)
    generator = torch.Generator().manual_seed(seed)
    residual_ND = torch.as_tensor(np.asarray(embeddings_ND, dtype=np.float32), device=device).clone()
    codes, codebooks, residual_sq = [], [], []
    for epsilon in epsilons:
        centroids_KD, assign_N = kmeans(residual_ND, k, generator, iters, epsilon, sinkhorn_iters)
        residual_ND = residual_ND - centroids_KD[assign_N]
        codes.append(assign_N.cpu())
        codebooks.append(centroids_KD.cpu().numpy())
        residual_sq.append(float((residual_ND * residual_ND).sum(1).mean()))
    return ResidualCodebooks(torch.stack(codes, 1).numpy().astype(np.int64), codebooks, residual_sq)
