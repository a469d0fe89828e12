"""RL stage — which train rows SFT and RL learn from: the one rule behind the ``rl.rows`` section.

Every caller asks :func:`split_train_rows`: the SFT and RL stages of `tawin run`, `tawin sft` and
`tawin rl`, each experiment cell, and the RL loop itself when it is handed no rows. The in-sample
evaluation (``eval.split: train`` with ``eval.sample_size``/``eval.sample_seed`` equal to
``rl.rows.sample_size``/``sample_seed``) scores the rows it picks because both draw with
:func:`tawin.data.protocol.sampling.sample_rows`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tawin.data.protocol.holdout import holdout_rows, latest_rows
from tawin.data.protocol.sampling import sample_rows
from tawin.rl.config import RLRows


class TrainRows(NamedTuple):
    """Row indices of the train split (after ``data.latest_train_rows``), sorted unless sampled."""

    sft: np.ndarray
    """int64 [S]: the rows SFT trains on (before SFT's own `sft.first_train_rows` and `sft.dedupe_windows`)."""
    rl: np.ndarray
    """int64 [R]: the rows RL draws its prompts from."""


def split_train_rows(n_rows: int, rows: RLRows, seed: int) -> TrainRows:
    """The train rows of each stage, in this order:

    1. the hold-out (``rows.holdout``, ``rows.holdout_order``): SFT keeps the other rows and RL
       learns from the held-out ones; without it both stages have every row;
    2. RL keeps the latest ⌈latest_share · R⌉ of its R rows (``rows.latest_share``; 0 = all);
    3. RL keeps the seeded sample of ``rows.sample_size`` of those (``rows.sample_seed``; 0 = all).

    Args:
        n_rows: rows of the train split.
        rows: the ``rl.rows`` section.
        seed: the run's seed, which draws a `random` hold-out.
    Returns:
        (SFT rows, RL rows).
    """
    sft_S, rl_R = holdout_rows(n_rows, rows.holdout, rows.holdout_order, seed)
    if rows.latest_share:
        rl_R = rl_R[latest_rows(len(rl_R), int(np.ceil(rows.latest_share * len(rl_R))))]
    if rows.sample_size:
        rl_R = rl_R[sample_rows(len(rl_R), rows.sample_size, rows.sample_seed)]
    return TrainRows(sft_S, rl_R)
