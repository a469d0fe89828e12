"""Stage 1 — fixed seeded subsets of a split's rows.

Evaluation, the exact diagnostics, validation during SFT and RL, and the experiment grid all draw
their row subsets here, so one seed names the same rows everywhere.
"""

from __future__ import annotations

import numpy as np


def sample_rows(n_rows: int, max_rows: int, seed: int) -> np.ndarray:
    """A fixed seeded subset of row indices (sorted), or all rows when max_rows is 0 or ≥ n."""
    if max_rows <= 0 or max_rows >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))
