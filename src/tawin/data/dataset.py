"""Stage 1 — the canonical dataset: one item table and one interaction table per split.

On disk a dataset is a folder::

    dataset.json            name, description, attribution, counts (written by `tawin data import`)
    items.parquet           item_id:int64, title:str, description:str|null, asin:str|null,
                            sid:list<str> (semantic-ID tokens, e.g. ["<a_12>", "<b_7>", "<c_201>"])
    train.parquet           row:int64, user:int64, history:list<int64> (1..10 item ids, oldest
    valid.parquet           first), target:int64, timestamp:int64|null (unix seconds of the target)
    test.parquet

`row` is the row index within its split (0..R-1, in file order); predictions refer to it.
In memory the same data lives in :class:`Dataset` with numpy arrays; histories are right-padded
to a fixed width with ``PAD_ITEM`` so that batches are plain tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SPLITS: tuple[str, ...] = ("train", "valid", "test")
Split = Literal["train", "valid", "test"]
ItemRepresentation = Literal["sid", "title"]
"""Which column of the catalogue a model generates: the semantic-ID tokens or the title's tokens."""
MAX_HISTORY = 10
PAD_ITEM = -1
MAX_TIMESTAMP = 253_402_300_799
"""9999-12-31T23:59:59Z in unix seconds: the latest target time a dataset may hold (−1 = unknown)."""


@dataclass(frozen=True)
class ItemTable:
    """The catalogue. Arrays are aligned: entry n describes item ``item_id[n]``."""

    item_id: np.ndarray  # int64 [N], unique
    title: list[str]  # [N]
    description: list[str | None]  # [N]
    asin: list[str | None]  # [N]
    sid: list[tuple[str, ...]]  # [N] semantic-ID tokens; () when not built yet

    def __len__(self) -> int:
        return int(self.item_id.shape[0])

    @property
    def index_of(self) -> dict[int, int]:
        """Map item id -> position in the table."""
        return {int(item): position for position, item in enumerate(self.item_id)}

    def with_sids(self, sid: list[tuple[str, ...]]) -> ItemTable:
        assert len(sid) == len(self), "one SID sequence per item"
        return ItemTable(self.item_id, self.title, self.description, self.asin, list(sid))


@dataclass(frozen=True)
class Interactions:
    """One split: R samples of (history -> target). Histories are item ids, oldest first."""

    row: np.ndarray  # int64 [R], 0..R-1
    user: np.ndarray  # int64 [R]
    history_RH: np.ndarray  # int64 [R, MAX_HISTORY], right-padded with PAD_ITEM
    history_len: np.ndarray  # int64 [R], 1..MAX_HISTORY
    target: np.ndarray  # int64 [R]
    timestamp: np.ndarray  # int64 [R], -1 where unknown

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def history(self, i: int) -> list[int]:
        return [int(x) for x in self.history_RH[i, : self.history_len[i]]]

    def take(self, indices: np.ndarray) -> Interactions:
        """A subset of rows; `row` keeps the original row indices."""
        return Interactions(
            self.row[indices],
            self.user[indices],
            self.history_RH[indices],
            self.history_len[indices],
            self.target[indices],
            self.timestamp[indices],
        )

    @staticmethod
    def from_lists(
        user: list[int],
        history: list[list[int]],
        target: list[int],
        timestamp: list[int | None] | None = None,
    ) -> Interactions:
        n_rows = len(target)
        history_RH = np.full((n_rows, MAX_HISTORY), PAD_ITEM, dtype=np.int64)
        history_len = np.zeros(n_rows, dtype=np.int64)
        for i, items in enumerate(history):
            items = list(items)[-MAX_HISTORY:]
            history_RH[i, : len(items)] = items
            history_len[i] = len(items)
        stamps = np.full(n_rows, -1, dtype=np.int64)
        if timestamp is not None:
            stamps[:] = [-1 if t is None else int(t) for t in timestamp]
        return Interactions(
            row=np.arange(n_rows, dtype=np.int64),
            user=np.asarray(user, dtype=np.int64),
            history_RH=history_RH,
            history_len=history_len,
            target=np.asarray(target, dtype=np.int64),
            timestamp=stamps,
        )


@dataclass(frozen=True)
class Dataset:
    """A catalogue plus its train/valid/test splits."""

    name: str
    items: ItemTable
    splits: dict[str, Interactions]
    meta: dict = field(default_factory=dict)

    def split(self, name: str) -> Interactions:
        return self.splits[name]
