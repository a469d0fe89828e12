"""Stage 1 — the latest train rows: those every stage keeps, and those RL learns from, held out from SFT.

RL on rows the SFT model has already fitted pushes down beams that outrank a target it has
memorised, which need not carry over to new users. Holding a share of the train rows out of SFT
gives RL prompts the policy has never been fitted on. Train rows are in the temporal order of
their targets (the split is a global temporal 8:1:1), so `latest` holds out the most recent
rows and `random` a seeded uniform share of them (to tell "unseen" apart from "recent").

`data.latest_train_rows` keeps only the latest N train rows for every stage (a small-data run
with the same valid and test); :func:`latest_rows` is the one definition of "latest" for both.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tawin.data.dataset import Dataset

HoldoutOrder = Literal["latest", "random"]


def holdout_rows(
    n_rows: int, fraction: float, order: HoldoutOrder = "latest", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
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
        rl_H = latest_rows(n_rows, held)
    else:
        rl_H = np.sort(np.random.default_rng(seed).choice(n_rows, size=held, replace=False)).astype(np.int64)
    return np.setdiff1d(every_R, rl_H), rl_H


def latest_rows(n_rows: int, count: int) -> np.ndarray:
    """The last `count` of rows 0..n_rows−1, the most recent ones (train rows are in target-time
    order): int64 [min(count, n_rows)], sorted."""
    return np.arange(max(0, n_rows - count), n_rows, dtype=np.int64)


def keep_latest_train_rows(dataset: Dataset, count: int) -> Dataset:
    """`dataset` with only its latest `count` train rows (0, or ≥ the rows there are = all of them);
    valid and test unchanged. The kept rows keep their `row` numbers in the full split."""
    train = dataset.split("train")
    if count <= 0 or count >= len(train):
        return dataset
    kept = train.take(latest_rows(len(train), count))
    return Dataset(dataset.name, dataset.items, {**dataset.splits, "train": kept}, dataset.meta)
