"""The one rule for the train rows of SFT and RL (`rl.rows`, :func:`split_train_rows`) picks exactly
the rows that the earlier code did, where `data.rl_holdout(_order)` split them in the stages and
`rl.latest_share`, `rl.max_rows`, `rl.sample_seed` cut RL's share inside the RL loop."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tawin.rl.config import RLRows
from tawin.rl.rows import split_train_rows


def earlier_rows(
    n_rows: int, holdout: float, order: str, latest_share: float, max_rows: int, sample_seed: int, seed: int
) -> tuple[list[int], list[int]]:
    """The earlier code, spelled out: the hold-out (in the stages), then RL's latest share and sample (in the loop)."""
    every = list(range(n_rows))
    if holdout <= 0:  # no hold-out: both stages were handed every row
        sft, rl = every, every
    else:
        held = math.ceil(holdout * n_rows)
        if order == "latest":
            rl = every[n_rows - held :]
        else:
            rl = sorted(int(i) for i in np.random.default_rng(seed).choice(n_rows, size=held, replace=False))
        sft = [row for row in every if row not in set(rl)]
    if latest_share:
        rl = sorted(rl)[len(rl) - math.ceil(latest_share * len(rl)) :]
    if 0 < max_rows < len(rl):
        picked = np.sort(np.random.default_rng(sample_seed).choice(len(rl), size=max_rows, replace=False))
        rl = [rl[i] for i in picked]
    return sft, rl


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 300),
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9]),
    st.sampled_from(["latest", "random"]),
    st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    st.sampled_from([0, 1, 7, 40, 1000]),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_the_rows_are_those_the_earlier_code_chose(
    n_rows, holdout, order, latest_share, sample_size, sample_seed, seed
):
    rows = RLRows(
        holdout=holdout,
        holdout_order=order,
        latest_share=latest_share,
        sample_size=sample_size,
        sample_seed=sample_seed,
    )
    sft_S, rl_R = split_train_rows(n_rows, rows, seed)
    assert (sft_S.tolist(), rl_R.tolist()) == earlier_rows(
        n_rows, holdout, order, latest_share, sample_size, sample_seed, seed
    )
    assert sft_S.dtype == rl_R.dtype == np.int64


def test_a_few_settings_by_hand():
    assert (
        split_train_rows(10, RLRows(), 0).sft.tolist()
        == split_train_rows(10, RLRows(), 0).rl.tolist()
        == list(range(10))
    )
    held = split_train_rows(10, RLRows(holdout=0.3), 0)
    assert held.sft.tolist() == list(range(7)) and held.rl.tolist() == [7, 8, 9]
    # the latest share cuts RL's own rows only; SFT keeps every row without a hold-out
    latest = split_train_rows(10, RLRows(latest_share=0.2), 0)
    assert latest.sft.tolist() == list(range(10)) and latest.rl.tolist() == [8, 9]
    # hold-out first (rows 5..9), then the latest 40% of those (8, 9), then one seeded row of them
    cut = split_train_rows(10, RLRows(holdout=0.5, latest_share=0.4, sample_size=1, sample_seed=3), 0)
    assert cut.sft.tolist() == list(range(5)) and len(cut.rl) == 1 and cut.rl[0] in (8, 9)
