"""Stage 1 — `tawin data show`: what a dataset folder holds, in a few lines.

Works on any folder `tawin data import`/`prepare` wrote, before `tawin items build-sids` too: the
catalogue (and whether its semantic IDs are built), then per split its rows, users, mean history
length, the time span of its targets, and how many histories were longer than the 10 items a
prompt keeps (loading keeps each one's latest 10, as the paper's sliding window does).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tawin.data.dataset import MAX_HISTORY
from tawin.data.formats.canonical import load_dataset
from tawin.data.formats.canonical_tables import raw_history_lengths


def dataset_summary(folder: str | Path) -> str:
    """The summary lines of the dataset folder `folder` (DataError when it is not a valid dataset)."""
    folder = Path(folder)
    dataset = load_dataset(folder, allow_empty_splits=True, require_sids=False)
    items = dataset.items
    built = sum(1 for sid in items.sid if sid)
    if built == len(items):
        sids = f"semantic IDs of {len(items.sid[0])} tokens"
    else:
        sids = (
            f"semantic IDs for {built} of {len(items)} items" if built else "no semantic IDs yet"
        ) + f" (build them with `tawin items build-sids {folder} --out DIR`)"
    lines = [f"{dataset.name}: {len(items)} items, {sids}"]
    for name, split in dataset.splits.items():
        lengths = raw_history_lengths(folder / f"{name}.parquet")
        cut = int((lengths > MAX_HISTORY).sum())
        mean = f"{split.history_len.mean():.2f}" if len(split) else "-"
        line = (
            f"  {name:5}: {len(split):6} rows, {len(set(split.user.tolist())):5} "
            f"users, mean history {mean}, {_span(split.timestamp)}"
        )
        if cut:
            line += (
                f"; {cut} histories were longer than {MAX_HISTORY} items (up to "
                f"{int(lengths.max())}) and are cut to their latest {MAX_HISTORY}"
            )
        lines.append(line)
    return "\n".join(lines)


def _span(timestamp: np.ndarray) -> str:
    """'targets 2018-01-02 → 2018-10-31' (UTC), with how many targets have no time."""
    known = timestamp[timestamp >= 0]
    if not len(known):
        return "no target times"
    text = f"targets {_date(known.min())} → {_date(known.max())}"
    unknown = len(timestamp) - len(known)
    return text + (f" ({unknown} without a time)" if unknown else "")


def _date(seconds: int) -> str:
    return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%d")
