"""Which train rows a run learns from: the unique maximal windows (`sft.dedupe_windows`) and the
latest N rows (`data.latest_train_rows`, `tawin baseline --latest-train-rows`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tawin.data.dataset import MAX_HISTORY, Interactions
from tawin.data.protocol.holdout import holdout_rows, keep_latest_train_rows, latest_rows
from tawin.data.protocol.sampling import maximal_windows

from conftest import fails, tiny_dataset


def sequences(split: Interactions) -> list[tuple[int, tuple[int, ...]]]:
    """(user, history ⊕ [target]) of each row."""
    return [(int(split.user[r]), (*split.history(r), int(split.target[r]))) for r in range(len(split))]


def maximal_windows_reference(split: Interactions) -> list[int]:
    """Slow loop version: a row is dropped when its sequence is a prefix of another same-user row's
    history, or repeats the sequence of an earlier row of the same user."""
    rows = sequences(split)
    kept = []
    for a, (user, sequence) in enumerate(rows):
        covered = any(user == other_user and other[:-1][: len(sequence)] == sequence for other_user, other in rows)
        repeated = (user, sequence) in rows[:a]
        if not covered and not repeated:
            kept.append(a)
    return kept


def transitions(rows: list[tuple[int, tuple[int, ...]]]) -> set[tuple[int, tuple[int, ...], int]]:
    """Every (user, sequence prefix → next item) of the rows: what a prompt with a history loss trains."""
    return {(user, sequence[:k], sequence[k]) for user, sequence in rows for k in range(1, len(sequence))}


def kept(split: Interactions) -> np.ndarray:
    return maximal_windows(split.history_RH, split.history_len, split.target, split.user)


ITEMS = st.integers(0, 3)  # few items and users, so prefixes and repeats are common
ROWS = st.lists(st.tuples(st.integers(0, 2), st.lists(ITEMS, min_size=1, max_size=MAX_HISTORY), ITEMS), max_size=30)


def interactions(rows) -> Interactions:
    return Interactions.from_lists([u for u, _, _ in rows], [h for _, h, _ in rows], [t for _, _, t in rows])


@settings(max_examples=300, deadline=None)
@given(ROWS)
def test_kept_rows_train_exactly_the_transitions_of_all_rows_of_each_user(rows):
    split = interactions(rows)
    kept_K = kept(split)
    assert kept_K.tolist() == maximal_windows_reference(split)
    everything = sequences(split)
    selected = [everything[r] for r in kept_K]
    assert transitions(selected) == transitions(everything)
    # Minimal: no kept row is another's repeat or lies inside another kept row's prompt.
    assert len(set(selected)) == len(selected)
    for a, (user, sequence) in enumerate(selected):
        assert not any(
            b != a and user == other_user and other[:-1][: len(sequence)] == sequence
            for b, (other_user, other) in enumerate(selected)
        )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(ITEMS, min_size=2, max_size=25), min_size=1, max_size=4))
def test_sliding_windows_keep_the_longest_window_of_each_start(users):
    """Each user's sequence cut like the shipped splits: history ≤ 10 items → the next one."""
    rows = [
        (user, sequence[max(0, t - MAX_HISTORY) : t], sequence[t])
        for user, sequence in enumerate(users)
        for t in range(1, len(sequence))
    ]
    split = interactions(rows)
    kept_K, everything = kept(split), sequences(split)
    # A user with ≤ 11 items keeps one window; a longer one keeps each full-width window.
    assert len(kept_K) == sum(1 if len(s) <= MAX_HISTORY + 1 else len(s) - MAX_HISTORY for s in users) - repeats(rows)
    assert transitions([everything[r] for r in kept_K]) == transitions(everything)


def repeats(rows) -> int:
    """Full-width windows that repeat an earlier one of the same user (e.g. one item bought 12 times)."""
    full = [(u, tuple(h), t) for u, h, t in rows if len(h) == MAX_HISTORY]
    return len(full) - len(set(full))


def test_the_shipped_train_split_shrinks_to_its_unique_maximal_sequences(industrial):
    train = industrial.split("train")
    kept_K, everything = kept(train), sequences(train)
    assert (len(train), len(kept_K)) == (36_259, 8_940)
    assert transitions([everything[r] for r in kept_K]) == transitions(everything)


def test_windows_of_different_users_never_cover_each_other():
    split = interactions([(1, [5], 6), (2, [5, 6, 7], 8), (1, [5, 6], 7)])
    assert kept(split).tolist() == [1, 2]


# ------------------------------------------------------------------ the latest N train rows


@pytest.mark.parametrize("n_rows, count", [(10, 3), (10, 10), (10, 12), (5, 1)])
def test_latest_rows_are_the_last_rows_and_define_the_latest_holdout(n_rows, count):
    assert latest_rows(n_rows, count).tolist() == list(range(max(0, n_rows - count), n_rows))
    assert holdout_rows(n_rows, 0.3, "latest")[1].tolist() == latest_rows(n_rows, int(np.ceil(0.3 * n_rows))).tolist()


def test_keep_latest_train_rows_cuts_train_only(industrial_small):
    cut = keep_latest_train_rows(industrial_small, 40)
    train = industrial_small.split("train")
    assert cut.split("train").row.tolist() == list(range(len(train) - 40, len(train)))
    assert (cut.split("train").target == train.target[-40:]).all()
    assert cut.split("valid") is industrial_small.split("valid") and cut.split("test") is industrial_small.split("test")
    assert keep_latest_train_rows(industrial_small, 0) is industrial_small
    assert keep_latest_train_rows(industrial_small, len(train)) is industrial_small


# ------------------------------------------------------------------ config checks


def test_dedupe_windows_without_a_history_loss_is_refused():
    from tawin.sft.config import SFTConfig

    assert SFTConfig(dedupe_windows=True, history_loss_weight=1.0).check() == []
    [problem] = SFTConfig(dedupe_windows=True).check()
    assert "sft.dedupe_windows" in problem and "sft.history_loss_weight" in problem


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (
            ["sft", "--set", "sft.dedupe_windows=true"],
            r"sft\.dedupe_windows=true .*sft\.history_loss_weight=0.*set sft\.history_loss_weight",
        ),
        (["sft", "--set", "data.latest_train_rows=-1"], r"data\.latest_train_rows=-1 must be ≥ 0"),
        (["run", "--set", "data.latest_train_rows=-5"], r"data\.latest_train_rows=-5 must be ≥ 0"),
        (["baseline", "popularity", "--latest-train-rows", "-1"], r"--latest-train-rows -1 must be ≥ 0"),
    ],
)
def test_bad_train_row_options_exit_2_and_leave_no_folder(tmp_path, capsys, argv, pattern):
    data = tiny_dataset(tmp_path / "data")
    out = tmp_path / "out"
    fails([*argv, "--out", str(out), "--dataset", str(data)], capsys, pattern)
    assert not out.exists()
