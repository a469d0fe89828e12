"""Stage 1 — the tables of the canonical dataset folder: their schema, and reading ``items.parquet``
and a split file with full validation (:mod:`tawin.data.formats.canonical` reads and writes the folder).

Every check names the file, the row and the field, the rule that failed and how to fix it, and
raises :class:`tawin.errors.DataError` (exit code 2 from the CLI, no traceback).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tawin.data.dataset import MAX_HISTORY, MAX_TIMESTAMP, SPLITS, Interactions, ItemTable
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
        raise DataError(
            f"{path}: not a readable parquet file ({error}). Re-create "
            "it with `tawin data import` or `tawin data prepare`."
        ) from None
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
            f"{path}: row {row}, field '{name}' = {int(values[first])} "
            f"is negative ({int(negative.sum())} such value(s)); "
            "ids must be integers ≥ 0. Renumber the ids or drop the row."
        )


def _to_int64(path: Path, name: str, array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Integers as int64; unsigned values past the int64 range are an error, not a wrap-around."""
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype == np.uint64 and values.size and values.max() > np.iinfo(np.int64).max:
        first = _first(values > np.iinfo(np.int64).max)
        raise DataError(
            f"{path}: row {first}, field '{name}' = {int(values[first])} "
            "does not fit in int64; renumber the ids from 0."
        )
    return values.astype(np.int64)


def _int_column(table: pa.Table, name: str, path: Path, allow_null: bool = False, is_id: bool = True) -> np.ndarray:
    column = table.column(name)
    if not pa.types.is_integer(column.type):
        raise _bad_type(
            path,
            name,
            column,
            "it must hold integers (int64)",
            f"Write '{name}' as int64 (e.g. pa.array(values, pa.int64())).",
        )
    if column.null_count:
        if not allow_null:
            row = _first(column.is_null().to_numpy(zero_copy_only=False))
            raise DataError(
                f"{path}: row {row}, field '{name}' is empty (null); "
                "every row needs a value. Fill it in or drop the row."
            )
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
    if not (
        (pa.types.is_list(sid_column.type) or pa.types.is_large_list(sid_column.type))
        and (pa.types.is_string(sid_column.type.value_type) or pa.types.is_large_string(sid_column.type.value_type))
    ):
        raise _bad_type(
            path,
            "sid",
            sid_column,
            "it must be a list of token strings such as ['<a_1>', '<b_2>', '<c_3>']",
            "Rebuild the semantic IDs with `tawin items build-sids`.",
        )
    sids = [tuple(s) if s is not None else () for s in sid_column.to_pylist()]
    if require_sids:
        _check_sids(path, item_id, sids)
    else:
        blank = next((i for i, s in enumerate(sids) if any(not t for t in s)), None)
        if blank is not None:
            raise DataError(
                f"{path}: row {blank} (item_id {int(item_id[blank])}), field "
                f"'sid' = {list(sids[blank])} holds an empty or null token."
            )
    return ItemTable(
        item_id, titles, _optional_strings(table, "description", path), _optional_strings(table, "asin", path), sids
    )


def _check_unique_ids(path: Path, item_id: np.ndarray) -> None:
    """Every item id names one row of the catalogue."""
    unique, counts = np.unique(item_id, return_counts=True)
    if (counts > 1).any():
        duplicate = int(unique[counts > 1][0])
        rows = np.flatnonzero(item_id == duplicate)[:2].tolist()
        raise DataError(
            f"{path}: rows {rows}, field 'item_id' = {duplicate} is "
            f"duplicated ({int((counts > 1).sum())} duplicated id(s)); "
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
            f"{path}: row {blank} (item_id {int(item_id[blank])}), field "
            f"'sid' = {list(sids[blank])} holds an empty or null token; "
            "every semantic-ID token must be a non-empty string. Rebuild them with `tawin items build-sids`."
        )
    depths = {len(s) for s in sids}
    if len(depths) > 1:
        common = max(depths, key=lambda d: sum(len(s) == d for s in sids))
        odd = next(i for i, s in enumerate(sids) if len(s) != common)
        raise DataError(
            f"{path}: row {odd} (item_id {int(item_id[odd])}), field "
            f"'sid' has {len(sids[odd])} tokens while most items "
            f"have {common}; semantic IDs must all have the same depth. Rebuild them with `tawin items build-sids`."
        )
    seen: dict[tuple[str, ...], int] = {}
    for row, sid in enumerate(sids):
        if sid in seen:
            raise DataError(
                f"{path}: rows [{seen[sid]}, {row}] (item_ids {int(item_id[seen[sid]])} "
                f"and {int(item_id[row])}), field 'sid' = {list(sid)} "
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
    lengths, flat, row_of = _read_histories(table, path)
    known = np.unique(np.fromiter((int(i) for i in known_items), dtype=np.int64))
    for name, ids, rows in (("target", target, np.arange(len(target))), ("history", flat, row_of)):
        unknown = np.flatnonzero(~np.isin(ids, known))
        if unknown.size:
            first = unknown[0]
            raise DataError(
                f"{path}: row {int(rows[first])}, field '{name}' refers to item {int(ids[first])}, which is not in "
                f"items.parquet ({unknown.size} such reference(s)). Add the item to items.parquet or drop the row."
            )
    history_RH, history_len = _latest_items(flat, lengths)
    return Interactions(np.arange(len(user), dtype=np.int64), user, history_RH, history_len, target, timestamp)


def _read_histories(table: pa.Table, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `history` column, checked (a list of item ids ≥ 0, never empty, no nulls), flattened:
    (length of each row int64 [R], every row's items in order int64 [Σ lengths], row of each item)."""
    history_column = table.column("history")
    if not (
        (pa.types.is_list(history_column.type) or pa.types.is_large_list(history_column.type))
        and pa.types.is_integer(history_column.type.value_type)
    ):
        raise _bad_type(
            path,
            "history",
            history_column,
            "it must be a list of integer item ids, oldest first",
            "Write 'history' as list<int64>.",
        )
    combined = history_column.combine_chunks()
    lengths = pc.list_value_length(combined).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    bad = np.flatnonzero(lengths == 0)
    if bad.size:
        raise DataError(
            f"{path}: row {int(bad[0])}, field 'history' is empty "
            f"({bad.size} such row(s)); every sample needs at least one "
            "history item. Drop the row or add its earlier items."
        )
    values = pc.list_flatten(combined)
    row_of = pc.list_parent_indices(combined).to_numpy(zero_copy_only=False).astype(np.int64)
    if values.null_count:
        first = _first(values.is_null().to_numpy(zero_copy_only=False))
        raise DataError(
            f"{path}: row {int(row_of[first])}, field 'history' holds a null item "
            "id; every history entry must be an item id. Fix or drop the row."
        )
    flat = _to_int64(path, "history", values)
    _check_ids(path, "history", flat, row_of)
    return lengths, flat, row_of


def _latest_items(flat: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's most recent MAX_HISTORY items, as the paper's sliding window keeps them:
    (int64 [R, MAX_HISTORY] right-padded with −1, int64 [R] lengths)."""
    ends = np.cumsum(lengths)
    starts = np.maximum(ends - MAX_HISTORY, ends - lengths)
    history_len = ends - starts
    history_RH = np.full((len(lengths), MAX_HISTORY), -1, dtype=np.int64)
    column_index = np.arange(MAX_HISTORY)
    take = column_index[None, :] < history_len[:, None]
    history_RH[take] = flat[(starts[:, None] + column_index[None, :])[take]]
    return history_RH, history_len.astype(np.int64)
