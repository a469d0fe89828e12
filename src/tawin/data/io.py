"""Stage 1 — reading and writing the canonical dataset folder, with full validation.

Every check names the file, the row and the field, the rule that failed and how to fix it, and
raises :class:`tawin.errors.DataError` (exit code 2 from the CLI, no traceback).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tawin.data.dataset import MAX_HISTORY, SPLITS, Dataset, Interactions, ItemTable
from tawin.errors import DataError

ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("asin", pa.string()),
        ("sid", pa.list_(pa.string())),
    ]
)
SPLIT_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("user", pa.int64()),
        ("history", pa.list_(pa.int64())),
        ("target", pa.int64()),
        ("timestamp", pa.int64()),
    ]
)
REQUIRED_ITEM_COLUMNS = ("item_id", "title", "sid")
REQUIRED_SPLIT_COLUMNS = ("user", "history", "target")


def save_dataset(dataset: Dataset, folder: str | Path) -> Path:
    """Write `dataset` to `folder` atomically (a temporary sibling folder, then a rename)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        items = dataset.items
        table = pa.table(
            {
                "item_id": pa.array(items.item_id, pa.int64()),
                "title": pa.array(items.title, pa.string()),
                "description": pa.array(items.description, pa.string()),
                "asin": pa.array(items.asin, pa.string()),
                "sid": pa.array([list(s) for s in items.sid], pa.list_(pa.string())),
            },
            schema=ITEM_SCHEMA,
        )
        pq.write_table(table, staging / "items.parquet", compression="zstd", compression_level=19)
        for name, split in dataset.splits.items():
            histories = [split.history(i) for i in range(len(split))]
            stamps = [None if t < 0 else int(t) for t in split.timestamp]
            table = pa.table(
                {
                    "row": pa.array(split.row, pa.int64()),
                    "user": pa.array(split.user, pa.int64()),
                    "history": pa.array(histories, pa.list_(pa.int64())),
                    "target": pa.array(split.target, pa.int64()),
                    "timestamp": pa.array(stamps, pa.int64()),
                },
                schema=SPLIT_SCHEMA,
            )
            pq.write_table(table, staging / f"{name}.parquet", compression="zstd", compression_level=19)
        meta = dict(dataset.meta)
        meta.update(
            name=dataset.name,
            n_items=len(dataset.items),
            rows={name: len(split) for name, split in dataset.splits.items()},
            format="tawin-dataset/1",
        )
        (staging / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            backup = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(folder, backup)
            os.replace(staging, folder)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _read_table(path: Path, required: tuple[str, ...]) -> pa.Table:
    if not path.exists():
        raise DataError(
            f"{path}: file not found. A dataset folder needs items.parquet and "
            f"{', '.join(s + '.parquet' for s in SPLITS)}; create one with `tawin data import` "
            "or `tawin data prepare`."
        )
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({error}). Re-create it with `tawin data import`.") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {table.column_names}. "
            f"The file needs the columns {list(required)} (see `tawin data --help` for the schema)."
        )
    return table


def _int_column(table: pa.Table, name: str, path: Path, allow_null: bool = False) -> np.ndarray:
    column = table.column(name)
    if not pa.types.is_integer(column.type):
        raise DataError(f"{path}: field '{name}' has type {column.type}; it must hold integers (int64).")
    values = column.to_numpy(zero_copy_only=False)
    if not allow_null and column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: row {row}, field '{name}' is empty; every row needs a value.")
    if allow_null:
        values = column.fill_null(-1).to_numpy()
    return values.astype(np.int64)


def load_items(path: Path) -> ItemTable:
    table = _read_table(path, REQUIRED_ITEM_COLUMNS)
    item_id = _int_column(table, "item_id", path)
    negative = np.flatnonzero(item_id < 0)
    if negative.size:
        raise DataError(f"{path}: row {int(negative[0])}, field 'item_id' = {int(item_id[negative[0]])} is negative; item ids must be integers >= 0.")
    unique, first_index, counts = np.unique(item_id, return_index=True, return_counts=True)
    if (counts > 1).any():
        duplicate = int(unique[counts > 1][0])
        rows = np.flatnonzero(item_id == duplicate)[:2].tolist()
        raise DataError(f"{path}: rows {rows}, field 'item_id' = {duplicate} is duplicated; every item needs a unique id.")
    title_column = table.column("title")
    if not pa.types.is_string(title_column.type) and not pa.types.is_large_string(title_column.type):
        raise DataError(f"{path}: field 'title' has type {title_column.type}; it must hold strings.")
    titles = title_column.to_pylist()
    sid_column = table.column("sid")
    if not pa.types.is_list(sid_column.type):
        raise DataError(f"{path}: field 'sid' has type {sid_column.type}; it must be a list of token strings such as ['<a_1>', '<b_2>', '<c_3>'].")
    sids = [tuple(s) if s is not None else () for s in sid_column.to_pylist()]
    empty = [i for i, s in enumerate(sids) if len(s) == 0]
    if empty:
        raise DataError(
            f"{path}: row {empty[0]} (item_id {int(item_id[empty[0]])}), field 'sid' is empty; every item needs "
            f"semantic-ID tokens ({len(empty)} item(s) lack them). Build them with `tawin items build-sids`."
        )
    depths = {len(s) for s in sids}
    if len(depths) > 1:
        common = max(depths, key=lambda d: sum(len(s) == d for s in sids))
        odd = next(i for i, s in enumerate(sids) if len(s) != common)
        raise DataError(
            f"{path}: row {odd} (item_id {int(item_id[odd])}), field 'sid' has {len(sids[odd])} tokens while most items "
            f"have {common}; semantic IDs must all have the same depth. Rebuild them with `tawin items build-sids`."
        )
    def optional_strings(name: str) -> list[str | None]:
        return table.column(name).to_pylist() if name in table.column_names else [None] * len(item_id)
    titles = [t if t is not None else "" for t in titles]
    return ItemTable(item_id, titles, optional_strings("description"), optional_strings("asin"), sids)


def load_split(path: Path, known_items: set[int] | np.ndarray) -> Interactions:
    table = _read_table(path, REQUIRED_SPLIT_COLUMNS)
    user = _int_column(table, "user", path)
    target = _int_column(table, "target", path)
    timestamp = _int_column(table, "timestamp", path, allow_null=True) if "timestamp" in table.column_names else np.full(len(user), -1, np.int64)
    history_column = table.column("history")
    if not (pa.types.is_list(history_column.type) and pa.types.is_integer(history_column.type.value_type)):
        raise DataError(f"{path}: field 'history' has type {history_column.type}; it must be a list of integer item ids.")
    combined = history_column.combine_chunks()
    offsets = combined.offsets.to_numpy()
    flat = combined.values.to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = np.diff(offsets)
    nulls = combined.is_null().to_numpy(zero_copy_only=False)
    bad = np.flatnonzero((lengths == 0) | nulls)
    if bad.size:
        raise DataError(f"{path}: row {int(bad[0])}, field 'history' is empty; every sample needs at least one history item (drop the row or add its earlier items).")
    known = np.asarray(sorted(int(i) for i in known_items), dtype=np.int64)
    for name, values, row_of in (
        ("target", target, np.arange(len(target))),
        ("history", flat, np.repeat(np.arange(len(lengths)), lengths)),
    ):
        position = np.searchsorted(known, values).clip(max=len(known) - 1)
        unknown = np.flatnonzero(known[position] != values)
        if unknown.size:
            first = unknown[0]
            raise DataError(
                f"{path}: row {int(row_of[first])}, field '{name}' refers to item {int(values[first])}, which is not in "
                f"items.parquet ({unknown.size} such reference(s)). Add the item to the item table or drop the row."
            )
    # Keep the most recent MAX_HISTORY items, as the paper's sliding window does.
    starts = np.maximum(offsets[1:] - MAX_HISTORY, offsets[:-1])
    history_len = offsets[1:] - starts
    history_RH = np.full((len(user), MAX_HISTORY), -1, dtype=np.int64)
    column_index = np.arange(MAX_HISTORY)
    take = column_index[None, :] < history_len[:, None]
    history_RH[take] = flat[(starts[:, None] + column_index[None, :])[take]]
    return Interactions(np.arange(len(user), dtype=np.int64), user, history_RH, history_len.astype(np.int64), target, timestamp)


def load_dataset(folder: str | Path) -> Dataset:
    """Read and validate a canonical dataset folder (see :mod:`tawin.data.dataset`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found. Pass a folder made by `tawin data import`, or 'industrial' for the shipped dataset.")
    missing = [s for s in SPLITS if not (folder / f"{s}.parquet").exists()]
    if missing:
        raise DataError(f"{folder}: split file(s) {', '.join(m + '.parquet' for m in missing)} missing; a dataset needs train, valid and test splits.")
    items = load_items(folder / "items.parquet")
    splits = {name: load_split(folder / f"{name}.parquet", items.item_id) for name in SPLITS}
    meta_path = folder / "dataset.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return Dataset(name=meta.get("name", folder.name), items=items, splits=splits, meta=meta)
