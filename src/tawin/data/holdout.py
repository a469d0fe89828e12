"""Stage 1 — the train rows RL learns from, held out from SFT (`data.rl_holdout`).

RL on rows the SFT model has already fitted pushes down beams that outrank a target it has
memorised, which need not carry over to new users. Holding a share of the train rows out of SFT
gives RL prompts the policy has never been fitted on. Train rows are in the temporal order of
their targets (the split is a global temporal 8:1:1), so `latest` holds out the most recent
rows and `random` a seeded uniform share of them (to tell "unseen" apart from "recent").
"""

from __future__ import annotations

from typing import Literal

import numpy as np

HoldoutOrder = Literal["latest", "random"]


def holdout_rows(n_rows: int, fraction: float, order: HoldoutOrder = "latest", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split train rows 0..n_rows−1 into (SFT rows, RL rows), both sorted, disjoint, covering all.

    Args:
        n_rows: train rows R.
        fraction: share of them held out for RL, in [0, 1); 0 gives (all rows, all rows), since
            without a hold-out both stages use every train row.
        order: `latest` = the last ⌈fraction·R⌉ rows; `random` = a seeded uniform sample of that size.
        seed: seed of the `random` sample.
    Returns:
        int64 [R − H] and int64 [H].
    """
    every_R = np.arange(n_rows, dtype=np.int64)
    if fraction <= 0:
        return every_R, every_R
    held = int(np.ceil(fraction * n_rows))
    if order == "latest":
        rl_H = every_R[n_rows - held:]
    else:
        rl_H = np.sort(np.random.default_rng(seed).choice(n_rows, size=held, replace=False)).astype(np.int64)
    return np.setdiff1d(every_R, rl_H), rl_H
