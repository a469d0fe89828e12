"""Stage metrics — paired bootstrap for comparing two systems on the same evaluation rows.

Given per-row metric values a_r (system A, e.g. TAWin) and b_r (system B, e.g. ReRe) on the same
R rows (e.g. ``per_row_topk(...)["recall@3"]``), the paired differences δ_r = a_r − b_r are
resampled with replacement: for resample s, δ̄*_s = (1/R) Σ_r δ_{I_{s,r}}, I_{s,r} ~ U{0..R−1}.

    mean_diff      = δ̄ = mean(a) − mean(b)
    relative_gain  = mean(a) / mean(b) − 1          (NaN when mean(b) = 0)
    ci_low/ci_high = percentiles (1−c)/2 and (1+c)/2 of δ̄*   (percentile bootstrap, c = confidence)
    p_value        = (1/S) Σ_s 1[δ̄*_s ≤ 0]          (one-sided: evidence that A beats B)

Resampling is vectorised in chunks of resamples so that the index matrix stays ≲ 4M entries.
"""

from __future__ import annotations

import numpy as np

_MAX_CHUNK_ENTRIES = 1 << 22


def paired_bootstrap(
    a_R: np.ndarray,
    b_R: np.ndarray,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Paired percentile bootstrap of mean(a) − mean(b).

    Args:
        a_R: float [R], per-row metric of system A.
        b_R: float [R], per-row metric of system B on the same rows, same order.
        n_resamples: S ≥ 1, number of bootstrap resamples.
        confidence: c in (0, 1), coverage of the interval.
        seed: seed of ``numpy.random.default_rng``; results are deterministic given (seed, R, S).

    Returns:
        ``{"mean_a", "mean_b", "mean_diff", "relative_gain", "ci_low", "ci_high", "p_value",
        "n_rows", "n_resamples", "confidence"}`` (see the module docstring for the formulas).
    """
    a_R = np.asarray(a_R, dtype=np.float64)
    b_R = np.asarray(b_R, dtype=np.float64)
    if a_R.ndim != 1 or a_R.shape != b_R.shape:
        raise ValueError(f"a_R and b_R must be 1-D of equal length, got {a_R.shape} and {b_R.shape}")
    n_rows = a_R.shape[0]
    if n_rows == 0:
        raise ValueError("paired_bootstrap needs at least one row")
    is_int = isinstance(n_resamples, (int, np.integer)) and not isinstance(n_resamples, bool)
    if not is_int or n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples!r} must be a positive integer")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie in (0, 1)")

    diff_R = a_R - b_R
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CHUNK_ENTRIES // n_rows)
    means_S = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx_CR = rng.integers(0, n_rows, size=(stop - start, n_rows))
        means_S[start:stop] = diff_R[idx_CR].mean(axis=1)

    mean_a, mean_b = float(a_R.mean()), float(b_R.mean())
    tail = (1.0 - confidence) / 2.0
    ci_low, ci_high = np.quantile(means_S, [tail, 1.0 - tail])
    return {
        "mean_a": mean_a,
        "mean_b": mean_b,
        "mean_diff": float(diff_R.mean()),
        "relative_gain": mean_a / mean_b - 1.0 if mean_b != 0 else float("nan"),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "p_value": float(np.mean(means_S <= 0.0)),
        "n_rows": n_rows,
        "n_resamples": int(n_resamples),
        "confidence": float(confidence),
    }
