"""Stage 1 — steps 5–7 of the data protocol: dense ids, samples in global order, the split.

The steps and their config fields are listed in :mod:`tawin.data.protocol.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from tawin.data.dataset import Interactions
from tawin.data.protocol.prepare_config import PrepareConfig


def split_sizes(n: int, ratio: tuple[int, int, int] = (8, 1, 1)) -> tuple[int, int, int]:
    """(n_train, n_valid, n_test) = (⌊n·a/s⌋, ⌊n·(a+b)/s⌋ − n_train, rest), s = a+b+c."""
    a, b, c = ratio
    total = a + b + c
    n_train = n * a // total
    n_valid = n * (a + b) // total - n_train
    return n_train, n_valid, n - n_train - n_valid


def number_by_first_appearance(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids 0.. in order of first appearance: (id of each entry [E], code of each id [U])."""
    unique, first = np.unique(codes, return_index=True)
    code_of_id = unique[np.argsort(first, kind="stable")]
    id_of_code = np.zeros(int(codes.max()) + 1 if codes.size else 0, dtype=np.int64)
    id_of_code[code_of_id] = np.arange(code_of_id.size)
    return id_of_code[codes], code_of_id


@dataclass(frozen=True)
class Samples:
    """S samples in global order: target time, then user id, then position in the sequence."""

    user_S: np.ndarray  # int64 [S]
    target_S: np.ndarray  # int64 [S] item id
    time_S: np.ndarray  # int64 [S] unix seconds of the target
    position_S: np.ndarray  # int64 [S] index of the target in its user's sequence (≥ 1)
    last_S: np.ndarray  # int64 [S] index of the user's last interaction
    history_S: list[list[int]]  # [S] the previous ≤ max_history items, oldest first


def build_samples(user_E: np.ndarray, item_E: np.ndarray, time_E: np.ndarray, max_history: int) -> Samples:
    """Sequence each user's interactions (given in file order) by time and cut them into samples."""
    n = user_E.size
    by_user = np.lexsort((np.arange(n), time_E, user_E))  # per user by time; ties keep file order
    user, item, time = user_E[by_user], item_E[by_user], time_E[by_user]
    first = np.searchsorted(user, user, side="left")
    position = np.arange(n) - first
    last = np.searchsorted(user, user, side="right") - 1 - first
    targets = np.flatnonzero(position >= 1)
    targets = targets[np.lexsort((position[targets], user[targets], time[targets]))]
    starts = targets - np.minimum(position[targets], max_history)
    histories = [item[s:t].tolist() for s, t in zip(starts, targets)]
    return Samples(user[targets], item[targets], time[targets], position[targets], last[targets], histories)


def split_samples(samples: Samples, method: str, ratio: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Indices into `samples` of each split, each in the global order."""
    n = samples.user_S.size
    if method == "temporal":
        n_train, n_valid, _ = split_sizes(n, ratio)
        order = np.arange(n)
        return {
            "train": order[:n_train],
            "valid": order[n_train : n_train + n_valid],
            "test": order[n_train + n_valid :],
        }
    from_end = samples.last_S - samples.position_S
    return {
        "train": np.flatnonzero(from_end >= 2),
        "valid": np.flatnonzero(from_end == 1),
        "test": np.flatnonzero(from_end == 0),
    }


def _date(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def make_splits(samples: Samples, config: PrepareConfig) -> tuple[dict[str, Interactions], dict[str, dict]]:
    """Step 7: the split tables and their summary (size, users, mean history, target time span)."""
    splits, summary = {}, {}
    for split, rows in split_samples(samples, config.split, config.split_ratio).items():
        histories = [samples.history_S[i] for i in rows]
        times = samples.time_S[rows]
        splits[split] = Interactions.from_lists(
            samples.user_S[rows].tolist(), histories, samples.target_S[rows].tolist(), times.tolist()
        )
        summary[split] = {
            "samples": int(rows.size),
            "users": int(np.unique(samples.user_S[rows]).size),
            "mean_history": round(float(np.mean([len(h) for h in histories])), 3) if histories else 0.0,
            "first_target": _date(times.min()) if rows.size else None,
            "last_target": _date(times.max()) if rows.size else None,
        }
    return splits, summary
