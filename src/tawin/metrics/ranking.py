"""Stage metrics — Recall@K and NDCG@K from ranked lists (beam-search outputs, baselines), and the cut-offs K.

Each row r has one target item t_r (the next item, n⁺ = 1) and a ranked list of B item ids
(best first), e.g. the B beams of constrained beam search. With the 1-based rank
ρ_r = min{j : ranked[r, j] = t_r} (∞ when t_r is absent):

    Recall@K = (1/R) Σ_r [ρ_r ≤ K]                  (= HR@K with one positive)
    NDCG@K   = (1/R) Σ_r [ρ_r ≤ K] / log2(ρ_r + 1)   (IDCG = 1 with one positive)

Every K comes from one hit matrix ``hit_RB`` (RecBole style): ``recall@K`` is its cumulative sum
at column K−1 and ``ndcg@K`` the cumulative sum of ``hit_RB / log2(j + 2)``. A list shorter than
K cannot be scored at K (the paper's predecessors silently reported K = 50 from fewer beams), so
``max(ks) > B`` is a :class:`~tawin.errors.ConfigError`. :data:`TOP_KS` holds the cut-offs tawin
scores and the subsets its tables and sweeps show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tawin.errors import ConfigError


@dataclass(frozen=True)
class CutOffs:
    """The cut-offs K of the Top-K metrics, with the subset each part of tawin uses: the one place
    that decides which K are scored and which are shown."""

    scored: tuple[int, ...] = (1, 3, 5, 10, 20)
    """Every K an evaluation scores by default (``eval.ks``): the keys of metrics.json."""
    reported: tuple[int, ...] = (1, 3, 5, 10)
    """The columns of the results tables and reports, the K of the diagnostics' WPAUC@K, and the
    K that SFT's and RL's validation log."""
    swept: tuple[int, ...] = (1, 3, 5)
    """The Recall@K curves of a σ* sweep (each should peak near σ* = K − 1)."""


TOP_KS = CutOffs()
"""tawin's cut-offs: ``TOP_KS.scored``, ``TOP_KS.reported``, ``TOP_KS.swept``."""


def hit_matrix(ranked_items_RB: np.ndarray, targets_R: np.ndarray) -> np.ndarray:
    """Where each row's ranked list first hits its target.

    Args:
        ranked_items_RB: int [R, B], item ids best first. Padding ids (e.g. -1) never match a
            real target.
        targets_R: int [R], the one positive item per row.

    Returns:
        bool [R, B]: ``hit_RB[r, j]`` is True iff ``ranked_items_RB[r, j] == targets_R[r]`` and j is
        the first such position, so each row holds at most one True (rank = first match).
    """
    ranked_items_RB = np.asarray(ranked_items_RB)
    targets_R = np.asarray(targets_R)
    if ranked_items_RB.ndim != 2:
        raise ValueError(f"ranked_items_RB must be 2-D [R, B], got shape {ranked_items_RB.shape}")
    if targets_R.shape != (ranked_items_RB.shape[0],):
        raise ValueError(
            f"targets_R must have shape ({ranked_items_RB.shape[0]},) to match ranked_items_RB "
            f"{ranked_items_RB.shape}, got {targets_R.shape}"
        )
    match_RB = ranked_items_RB == targets_R[:, None]
    return match_RB & (np.cumsum(match_RB, axis=1) == 1)


def _check_ks(ks: Sequence[int], num_ranked: int) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ConfigError("ks is empty; give at least one cutoff K, e.g. ks=(1, 3, 5)")
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1]
    if bad:
        raise ConfigError(f"ks={list(ks)}: every K must be a positive integer; fix {bad}")
    too_big = sorted({int(k) for k in ks if k > num_ranked})
    if too_big:
        names = ", ".join(f"K={k}" for k in too_big)
        verb = "is" if len(too_big) == 1 else "are"
        raise ConfigError(
            f"{names} {verb} larger than the {num_ranked} ranked items per row; raise num_beams "
            f"to at least {too_big[-1]} or drop K"
        )
    return tuple(int(k) for k in ks)


def per_row_topk(
    ranked_items_RB: np.ndarray, targets_R: np.ndarray, ks: Sequence[int] = TOP_KS.scored
) -> dict[str, np.ndarray]:
    """Per-row Recall@K and NDCG@K (for paired bootstrap and per-segment analysis).

    recall@K[r] = [ρ_r ≤ K];  ndcg@K[r] = [ρ_r ≤ K] / log2(ρ_r + 1), ρ_r the 1-based first rank of
    the target in row r (see the module docstring).

    Args:
        ranked_items_RB: int [R, B], item ids best first.
        targets_R: int [R], one target per row.
        ks: cutoffs, each 1 ≤ K ≤ B.

    Returns:
        ``{"recall@K": float64 [R], "ndcg@K": float64 [R]}`` for each K in ``ks``.

    Raises:
        ConfigError: a K is not a positive integer or exceeds B.
    """
    hit_RB = hit_matrix(ranked_items_RB, targets_R)
    ks = _check_ks(ks, hit_RB.shape[1])
    discount_B = 1.0 / np.log2(np.arange(hit_RB.shape[1], dtype=np.float64) + 2.0)
    cum_hit_RB = np.cumsum(hit_RB, axis=1, dtype=np.float64)
    cum_dcg_RB = np.cumsum(hit_RB * discount_B, axis=1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = cum_hit_RB[:, k - 1]
        out[f"ndcg@{k}"] = cum_dcg_RB[:, k - 1]
    return out


def topk_metrics(
    ranked_items_RB: np.ndarray, targets_R: np.ndarray, ks: Sequence[int] = TOP_KS.scored
) -> dict[str, float]:
    """Mean Recall@K and NDCG@K over rows, every K from one hit matrix.

    Args:
        ranked_items_RB: int [R, B], item ids best first.
        targets_R: int [R], one target per row.
        ks: cutoffs, each 1 ≤ K ≤ B.

    Returns:
        ``{"recall@K": float, "ndcg@K": float, ..., "n_rows": R}``; the means are NaN when R = 0.

    Raises:
        ConfigError: a K is not a positive integer or exceeds B, e.g. "K=20 is larger than the 10
            ranked items per row; raise num_beams to at least 20 or drop K".
    """
    per_row = per_row_topk(ranked_items_RB, targets_R, ks)
    n_rows = int(np.asarray(targets_R).shape[0])
    out: dict[str, float] = {
        name: float(values_R.mean()) if n_rows else float("nan") for name, values_R in per_row.items()
    }
    out["n_rows"] = n_rows
    return out
