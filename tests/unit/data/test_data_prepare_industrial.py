"""The protocol rebuilds the shipped Industrial_and_Scientific splits from a reconstruction of their log.

Reconstruction. The shipped train/valid/test rows, concatenated in that order, are the D3
samples sorted by target time. A user's rows chain: the first has a one-item history (the user's
first review), every later row's history is the previous ≤ 10 items of the sequence, and
first history + all targets is the user's whole 5-core sequence (checked below). Each review then
gets a timestamp:

* ``synthetic``: the target of global row j at BASE + (U + j)·STEP and the first review of the
  user with k-th first row at BASE + k·STEP — every time distinct and increasing in row order.
  The CSV rows are shuffled, so only the timestamps carry the order.
* ``shipped``: valid/test targets keep their real (day-granular, heavily tied) timestamps and the
  train targets and first reviews get distinct synthetic times before the first valid one. The CSV
  lists users in the shipped user-id order, each user's reviews in sequence order — which exercises
  the tie rule (equal target times go by user first appearance in file order, then position): the
  shipped user ids turn out to be exactly that order.

The protocol then runs with the paper's defaults (PrepareConfig()). Everything survives, as it
must: the log is already D3's output, so every user and item has ≥ 5 reviews (checked), every
title has ≤ 20 words (checked), and since 3,686 items < min_items = 10,000 the window start moves
back a year at a time from 2017-10 until it precedes the first synthetic review, exactly as D3 went
back to its earliest data; the window end (2018-12-01 exclusive) lies after the last test review
(2018-09-28). The produced splits must equal the shipped ones row for row: same sizes
(36,259 / 4,532 / 4,533 by the ⌊8n/10⌋, ⌊9n/10⌋ rounding), users (mapped through users.parquet),
histories and targets (mapped back through the raw id kept as ``asin``).
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tawin.data.dataset import SPLITS
from tawin.data.formats.canonical import load_dataset
from tawin.data.protocol.prepare import PrepareConfig, prepare_dataset

from conftest import REPO

INDUSTRIAL = REPO / "src" / "tawin" / "resources" / "datasets" / "industrial"
BASE = int(datetime(2006, 1, 1, tzinfo=UTC).timestamp())
STEP = 600  # seconds between consecutive synthetic reviews


@pytest.fixture(scope="module")
def shipped():
    return load_dataset(INDUSTRIAL)


def raw_item_ids(dataset) -> list[str]:
    """The ASIN where the shipped table knows it (145 train-only items lack one), else a made-up id."""
    return [asin or f"item-{int(i)}" for i, asin in zip(dataset.items.item_id, dataset.items.asin)]


def reconstruct(dataset):
    """Rows in global order as (user, history, target, split, timestamp) and each user's sequence."""
    rows = []
    for split in SPLITS:
        part = dataset.split(split)
        for i in range(len(part)):
            rows.append((int(part.user[i]), part.history(i), int(part.target[i]), split, int(part.timestamp[i])))
    sequences: dict[int, list[int]] = {}
    for user, history, target, _, _ in rows:
        if user not in sequences:
            assert len(history) == 1, "a user's first row holds only the first review"
            sequences[user] = [history[0]]
        assert history == sequences[user][-10:], "rows must chain across train → valid → test"
        sequences[user].append(target)
    last_row = {user: (history, target) for user, history, target, _, _ in rows}
    for user, (history, target) in last_row.items():  # the last row's history + target is the tail
        assert history + [target] == sequences[user][-len(history) - 1 :]
        assert len(history) == min(10, len(sequences[user]) - 1)
    return rows, sequences


def write_log(tmp_path: Path, dataset, scheme: str) -> tuple[Path, Path]:
    rows, sequences = reconstruct(dataset)
    raw_item = raw_item_ids(dataset)
    title = dict(zip(dataset.items.item_id.tolist(), dataset.items.title))
    assert min(len(s) for s in sequences.values()) >= 5, "every user has ≥ 5 reviews"
    assert min(Counter(i for s in sequences.values() for i in s).values()) >= 5, "every item has ≥ 5 reviews"
    assert max(len(t.split()) for t in title.values()) <= 20, "every title has ≤ 20 words"

    first_valid_time = next(t for *_, split, t in rows if split == "valid")
    order_of_users = list(dict.fromkeys(user for user, *_ in rows))  # by first row
    times: dict[int, list[int]] = {u: [BASE + k * STEP] for k, u in enumerate(order_of_users)}
    for j, (user, _, _, split, shipped_time) in enumerate(rows):
        synthetic = BASE + (len(order_of_users) + j) * STEP
        times[user].append(shipped_time if scheme == "shipped" and split != "train" else synthetic)
    if scheme == "shipped":
        assert BASE + (len(order_of_users) + len(rows)) * STEP < first_valid_time, "synthetic train times precede valid"

    events = [(f"U{u}", raw_item[item], t) for u in sorted(sequences) for item, t in zip(sequences[u], times[u])]
    if scheme == "synthetic":
        random.Random(0).shuffle(events)
    log, items = tmp_path / "industrial_log.csv", tmp_path / "industrial_items.csv"
    with log.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "timestamp"])
        writer.writerows(events)
    with items.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "title", "description"])
        writer.writerows((raw_item[i], title[i], "") for i in dataset.items.item_id.tolist())
    return log, items


@pytest.mark.parametrize("scheme", ["synthetic", "shipped"])
def test_protocol_reproduces_shipped_industrial_splits(tmp_path, shipped, scheme):
    log, items = write_log(tmp_path, shipped, scheme)
    out = tmp_path / "industrial"
    produced, summary = prepare_dataset("csv", log, items, PrepareConfig(), out=out, progress=False)

    assert {s: len(produced.split(s)) for s in SPLITS} == {"train": 36_259, "valid": 4_532, "test": 4_533}
    assert summary["kept"] == {"interactions": 53_018, "users": 7_694, "items": 3_686}
    assert all(r["interactions_dropped"] == 0 for r in summary["rules"])
    window = summary["window"]
    assert window["attempts"][0]["window_start"] == "2017-10" and window["start"] == "2005-10"
    assert window["moved_back_years"] == 12 and window["end_unix_exclusive"] == int(
        datetime(2018, 12, 1, tzinfo=UTC).timestamp()
    )

    shipped_id_of_raw = {raw: i for i, raw in enumerate(raw_item_ids(shipped))}
    item_map = np.array([shipped_id_of_raw[raw] for raw in produced.items.asin])  # produced id → shipped id
    raw_users = pq.read_table(out / "users.parquet").column("raw_id").to_pylist()
    user_map = np.array([int(raw[1:]) for raw in raw_users])  # produced id → shipped id
    if scheme == "shipped":
        assert (user_map == np.arange(user_map.size)).all(), "user ids = first appearance in file order = shipped ids"
    for split in SPLITS:
        want, got = shipped.split(split), produced.split(split)
        assert (user_map[got.user] == want.user).all(), split
        assert (item_map[got.target] == want.target).all(), split
        assert (got.history_len == want.history_len).all(), split
        padded = got.history_RH >= 0
        assert (item_map[got.history_RH[padded]] == want.history_RH[padded]).all(), split
        if scheme == "shipped" and split != "train":
            assert (got.timestamp == want.timestamp).all(), split
