"""Stage 1 — reading and writing the canonical dataset folder (the ``tawin`` layout), with full validation.

Every check names the file, the row and the field, the rule that failed and how to fix it, and
raises :class:`tawin.errors.DataError` (exit code 2 from the CLI, no traceback).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tawin.data.dataset import MAX_HISTORY, MAX_TIMESTAMP, SPLITS, Dataset, Interactions, ItemTable
from tawin.data.formats.layout import LayoutNotFound
from tawin.data.formats.out_folder import replace_contents
from tawin.errors import DataError, UserError

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
    """Write `dataset` to `folder`: into a hidden folder first, then in place of the old contents, which
    are put back if that fails (:func:`tawin.data.formats.out_folder.replace_contents`).

    Whether an existing `folder` may be replaced is the caller's rule (`tawin data import`:
    :func:`tawin.data.formats.out_folder.check_dataset_out`). An OSError (a read-only or full disk, a file
    in the way) is a UserError naming the folder.
    """
    folder = Path(folder)
    try:
        replace_contents(folder, lambda staging: _write_dataset_files(dataset, staging))
    except OSError as error:
        reason = error.strerror or error
        raise UserError(f"--out {folder}: cannot write the dataset there ({reason}); choose an --out folder you can "
                        "write to, on a disk with free space. Its old contents, if any, are as they were.") from None
    return folder


def _write_dataset_files(dataset: Dataset, staging: Path) -> None:
    """items.parquet, one parquet file per split and dataset.json, into the empty folder `staging`."""
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


def _read_table(path: Path, required: tuple[str, ...], allow_empty: bool = False) -> pa.Table:
    if not path.is_file():
        what = "is a folder, not a file" if path.exists() else "file not found"
        raise DataError(
            f"{path}: {what}. A dataset folder needs items.parquet and "
            f"{', '.join(s + '.parquet' for s in SPLITS)}; create one with `tawin data import` "
            "or `tawin data prepare`."
        )
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({error}). Re-create it with `tawin data import` or `tawin data prepare`.") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        renames = []
        for column in missing:
            spare = [c for c in table.column_names if c not in ITEM_SCHEMA.names + SPLIT_SCHEMA.names]
            close = difflib.get_close_matches(column, spare, n=1, cutoff=0.6)
            if close:
                renames.append(f"'{close[0]}' → '{column}'")
        hint = f"rename {', '.join(renames)}" if renames else f"add the column(s) {missing}"
        raise DataError(
            f"{path}: wrong columns: missing {missing}, found {table.column_names}. The file needs the columns "
            f"{list(required)} (schema in `tawin.data.dataset`); {hint}."
        )
    if table.num_rows == 0 and not allow_empty:
        raise DataError(f"{path}: the file has no rows; a catalogue needs at least one item. Re-create the dataset.")
    return table


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _bad_type(path: Path, name: str, column: pa.ChunkedArray, rule: str, fix: str) -> DataError:
    values = column.to_pylist()
    row = next((i for i, v in enumerate(values) if v is not None), 0)
    example = f" (row {row} holds {values[row]!r})" if values else ""
    return DataError(f"{path}: field '{name}' has type {column.type}{example}; {rule}. {fix}")


def _check_ids(path: Path, name: str, values: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Ids are integers ≥ 0 (−1 pads histories in memory, so a negative id would vanish)."""
    negative = values < 0
    if negative.any():
        first = _first(negative)
        row = int(rows[first]) if rows is not None else first
        raise DataError(
            f"{path}: row {row}, field '{name}' = {int(values[first])} is negative ({int(negative.sum())} such value(s)); "
            "ids must be integers ≥ 0. Renumber the ids or drop the row."
        )


def _to_int64(path: Path, name: str, array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Integers as int64; unsigned values past the int64 range are an error, not a wrap-around."""
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype == np.uint64 and values.size and values.max() > np.iinfo(np.int64).max:
        first = _first(values > np.iinfo(np.int64).max)
        raise DataError(f"{path}: row {first}, field '{name}' = {int(values[first])} does not fit in int64; renumber the ids from 0.")
    return values.astype(np.int64)


def _int_column(table: pa.Table, name: str, path: Path, allow_null: bool = False, is_id: bool = True) -> np.ndarray:
    column = table.column(name)
    if not pa.types.is_integer(column.type):
        raise _bad_type(path, name, column, "it must hold integers (int64)", f"Write '{name}' as int64 (e.g. pa.array(values, pa.int64())).")
    if column.null_count:
        if not allow_null:
            row = _first(column.is_null().to_numpy(zero_copy_only=False))
            raise DataError(f"{path}: row {row}, field '{name}' is empty (null); every row needs a value. Fill it in or drop the row.")
        column = column.fill_null(-1)
    values = _to_int64(path, name, column)
    if is_id:
        _check_ids(path, name, values)
    return values


def _string_column(table: pa.Table, name: str, path: Path) -> list[str | None]:
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type)):
        raise _bad_type(path, name, column, "it must hold strings", f"Write '{name}' as a string column.")
    return column.to_pylist()


def load_items(path: Path, require_sids: bool = True) -> ItemTable:
    """Read and validate ``items.parquet``: unique ids ≥ 0, titles, semantic IDs of one depth.

    With ``require_sids=False`` (before `tawin items build-sids`) the ``sid`` column may be absent
    or hold empty lists, which become ``()``; everything else is checked as usual.
    """
    path = Path(path)
    required = REQUIRED_ITEM_COLUMNS if require_sids else tuple(c for c in REQUIRED_ITEM_COLUMNS if c != "sid")
    table = _read_table(path, required)
    if "sid" not in table.column_names:
        table = table.append_column("sid", pa.array([[]] * table.num_rows, pa.list_(pa.string())))
    item_id = _int_column(table, "item_id", path)
    _check_unique_ids(path, item_id)
    titles = [t if t is not None else "" for t in _string_column(table, "title", path)]
    sid_column = table.column("sid")
    if not ((pa.types.is_list(sid_column.type) or pa.types.is_large_list(sid_column.type))
            and (pa.types.is_string(sid_column.type.value_type) or pa.types.is_large_string(sid_column.type.value_type))):
        raise _bad_type(
            path, "sid", sid_column, "it must be a list of token strings such as ['<a_1>', '<b_2>', '<c_3>']",
            "Rebuild the semantic IDs with `tawin items build-sids`.",
        )
    sids = [tuple(s) if s is not None else () for s in sid_column.to_pylist()]
    if require_sids:
        _check_sids(path, item_id, sids)
    else:
        blank = next((i for i, s in enumerate(sids) if any(not t for t in s)), None)
        if blank is not None:
            raise DataError(f"{path}: row {blank} (item_id {int(item_id[blank])}), field 'sid' = {list(sids[blank])} holds an empty or null token.")
    return ItemTable(item_id, titles, _optional_strings(table, "description", path), _optional_strings(table, "asin", path), sids)


def _check_unique_ids(path: Path, item_id: np.ndarray) -> None:
    """Every item id names one row of the catalogue."""
    unique, counts = np.unique(item_id, return_counts=True)
    if (counts > 1).any():
        duplicate = int(unique[counts > 1][0])
        rows = np.flatnonzero(item_id == duplicate)[:2].tolist()
        raise DataError(
            f"{path}: rows {rows}, field 'item_id' = {duplicate} is duplicated ({int((counts > 1).sum())} duplicated id(s)); "
            "every item needs a unique id. Drop or renumber the duplicate rows."
        )


def _check_sids(path: Path, item_id: np.ndarray, sids: list[tuple[str, ...]]) -> None:
    """Built semantic IDs: every item has one, of non-empty tokens, all of one depth, no two alike."""
    empty = [i for i, s in enumerate(sids) if len(s) == 0]
    if empty:
        raise DataError(
            f"{path}: row {empty[0]} (item_id {int(item_id[empty[0]])}), field 'sid' is empty; every item needs "
            f"semantic-ID tokens ({len(empty)} item(s) lack them). Build them with `tawin items build-sids`."
        )
    blank = next((i for i, s in enumerate(sids) if any(not t for t in s)), None)
    if blank is not None:
        raise DataError(
            f"{path}: row {blank} (item_id {int(item_id[blank])}), field 'sid' = {list(sids[blank])} holds an empty or null token; "
            "every semantic-ID token must be a non-empty string. Rebuild them with `tawin items build-sids`."
        )
    depths = {len(s) for s in sids}
    if len(depths) > 1:
        common = max(depths, key=lambda d: sum(len(s) == d for s in sids))
        odd = next(i for i, s in enumerate(sids) if len(s) != common)
        raise DataError(
            f"{path}: row {odd} (item_id {int(item_id[odd])}), field 'sid' has {len(sids[odd])} tokens while most items "
            f"have {common}; semantic IDs must all have the same depth. Rebuild them with `tawin items build-sids`."
        )
    seen: dict[tuple[str, ...], int] = {}
    for row, sid in enumerate(sids):
        if sid in seen:
            raise DataError(
                f"{path}: rows [{seen[sid]}, {row}] (item_ids {int(item_id[seen[sid]])} and {int(item_id[row])}), field 'sid' = {list(sid)} "
                "is the same for both items, so decoding could not tell them apart; rebuild the semantic IDs with "
                "`tawin items build-sids` (it adds a disambiguation level)."
            )
        seen[sid] = row


def _optional_strings(table: pa.Table, name: str, path: Path) -> list[str | None]:
    return _string_column(table, name, path) if name in table.column_names else [None] * table.num_rows


def _check_timestamps(path: Path, timestamp: np.ndarray) -> None:
    """Target times are unix seconds up to MAX_TIMESTAMP (a negative value or null = unknown)."""
    bad = timestamp > MAX_TIMESTAMP
    if bad.any():
        first = _first(bad)
        value = int(timestamp[first])
        hint = " It looks like milliseconds: divide by 1000." if value // 1000 <= MAX_TIMESTAMP else ""
        raise DataError(
            f"{path}: row {first}, field 'timestamp' = {value} lies after the year 9999 in unix seconds "
            f"({int(bad.sum())} such value(s)); write seconds since 1970-01-01 UTC, or null when unknown.{hint}"
        )


def raw_history_lengths(path: Path) -> np.ndarray:
    """The history length of each row of a split file as stored, before loading keeps the latest MAX_HISTORY."""
    column = pq.read_table(path, columns=["history"]).column("history").combine_chunks()
    return pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def load_split(path: Path, known_items: set[int] | np.ndarray) -> Interactions:
    """Read and validate one split: ids ≥ 0, non-empty histories, every item in the catalogue."""
    # An empty split is legal on disk (a tiny `tawin data prepare` run can leave one); the stage
    # that needs its rows says so.
    table = _read_table(path, REQUIRED_SPLIT_COLUMNS, allow_empty=True)
    user = _int_column(table, "user", path)
    target = _int_column(table, "target", path)
    if "timestamp" in table.column_names:
        timestamp = _int_column(table, "timestamp", path, allow_null=True, is_id=False)
        _check_timestamps(path, timestamp)
    else:
        timestamp = np.full(len(user), -1, np.int64)
    history_column = table.column("history")
    if not ((pa.types.is_list(history_column.type) or pa.types.is_large_list(history_column.type))
            and pa.types.is_integer(history_column.type.value_type)):
        raise _bad_type(path, "history", history_column, "it must be a list of integer item ids, oldest first",
                        "Write 'history' as list<int64>.")
    combined = history_column.combine_chunks()
    lengths = pc.list_value_length(combined).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    bad = np.flatnonzero(lengths == 0)
    if bad.size:
        raise DataError(
            f"{path}: row {int(bad[0])}, field 'history' is empty ({bad.size} such row(s)); every sample needs at least one "
            "history item. Drop the row or add its earlier items."
        )
    values = pc.list_flatten(combined)
    row_of = pc.list_parent_indices(combined).to_numpy(zero_copy_only=False).astype(np.int64)
    if values.null_count:
        first = _first(values.is_null().to_numpy(zero_copy_only=False))
        raise DataError(f"{path}: row {int(row_of[first])}, field 'history' holds a null item id; every history entry must be an item id. Fix or drop the row.")
    flat = _to_int64(path, "history", values)
    _check_ids(path, "history", flat, row_of)
    known = np.unique(np.fromiter((int(i) for i in known_items), dtype=np.int64))
    for name, ids, rows in (("target", target, np.arange(len(target))), ("history", flat, row_of)):
        unknown = np.flatnonzero(~np.isin(ids, known))
        if unknown.size:
            first = unknown[0]
            raise DataError(
                f"{path}: row {int(rows[first])}, field '{name}' refers to item {int(ids[first])}, which is not in "
                f"items.parquet ({unknown.size} such reference(s)). Add the item to items.parquet or drop the row."
            )
    # Keep the most recent MAX_HISTORY items, as the paper's sliding window does.
    ends = np.cumsum(lengths)
    starts = np.maximum(ends - MAX_HISTORY, ends - lengths)
    history_len = ends - starts
    history_RH = np.full((len(user), MAX_HISTORY), -1, dtype=np.int64)
    column_index = np.arange(MAX_HISTORY)
    take = column_index[None, :] < history_len[:, None]
    history_RH[take] = flat[(starts[:, None] + column_index[None, :])[take]]
    return Interactions(np.arange(len(user), dtype=np.int64), user, history_RH, history_len.astype(np.int64), target, timestamp)


def load_dataset(folder: str | Path, allow_empty_splits: bool = False, require_sids: bool = True) -> Dataset:
    """Read and validate a canonical dataset folder (see :mod:`tawin.data.dataset`).

    Training and evaluation need rows in every split, so an empty split is an error unless
    `allow_empty_splits` (for inspecting a dataset, e.g. `tawin data show`). With
    ``require_sids=False`` the items may lack semantic IDs (see :func:`load_items`), as they do
    before `tawin items build-sids`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a dataset folder" if folder.exists() else "dataset folder not found"
        raise DataError(f"{folder}: {what}. Pass a folder made by `tawin data import` or `tawin data prepare`, or 'industrial' for the shipped dataset.")
    needed = ["items.parquet"] + [f"{s}.parquet" for s in SPLITS]
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        raise LayoutNotFound(
            f"{folder}: missing file(s) {', '.join(missing)}; a dataset folder needs items.parquet and the train, valid and test "
            "splits (train.parquet, valid.parquet, test.parquet). Restore them or re-create the folder with `tawin data import` or `tawin data prepare`."
        )
    items = load_items(folder / "items.parquet", require_sids)
    splits = {name: load_split(folder / f"{name}.parquet", items.item_id) for name in SPLITS}
    empty = [name for name, split in splits.items() if len(split) == 0]
    if empty and not allow_empty_splits:
        raise DataError(
            f"{folder / (empty[0] + '.parquet')}: the file has no rows (empty split(s): {', '.join(empty)}); training and "
            "evaluation need samples in train, valid and test. Re-create the dataset with more data or a different split."
        )
    meta_path = folder / "dataset.json"
    meta = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{meta_path}: not valid JSON ({error}); fix the file or delete it (it only holds the name and counts).") from None
        if not isinstance(meta, dict):
            raise DataError(f"{meta_path}: must hold a JSON object such as {{\"name\": \"industrial\"}}, not a {type(meta).__name__}; fix or delete it.")
    return Dataset(name=meta.get("name", folder.name), items=items, splits=splits, meta=meta)
