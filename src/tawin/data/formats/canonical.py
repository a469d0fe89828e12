"""Stage 1 — reading and writing the canonical dataset folder (the ``tawin`` layout), with full validation.

The folder's files and their schema are in :mod:`tawin.data.dataset`; its tables are read and
checked by :mod:`tawin.data.formats.canonical_tables`. Every check names the file, the row and the
field, the rule that failed and how to fix it, and raises :class:`tawin.errors.DataError` (exit
code 2 from the CLI, no traceback).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tawin.data.dataset import SPLITS, Dataset
from tawin.data.formats.canonical_tables import ITEM_SCHEMA, SPLIT_SCHEMA, load_items, load_split
from tawin.data.formats.layout import LayoutNotFound
from tawin.data.formats.out_folder import replace_contents
from tawin.errors import DataError, UserError


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
        raise UserError(
            f"--out {folder}: cannot write the dataset there ({reason}); choose an --out folder you can "
            "write to, on a disk with free space. Its old contents, if any, are as they were."
        ) from None
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


def load_dataset(folder: str | Path, allow_empty_splits: bool = False, require_sids: bool = True) -> Dataset:
    """Read and validate a canonical dataset folder (see :mod:`tawin.data.dataset`).

    Training and evaluation need rows in every split, so an empty split is an error unless
    `allow_empty_splits` (for inspecting a dataset, e.g. `tawin data show`). With
    ``require_sids=False`` the items may lack semantic IDs, as they do before `tawin items build-sids`
    (see :func:`~tawin.data.formats.canonical_tables.load_items`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a dataset folder" if folder.exists() else "dataset folder not found"
        raise DataError(
            f"{folder}: {what}. Pass a folder made by `tawin data import` or "
            "`tawin data prepare`, or 'industrial' for the shipped dataset."
        )
    needed = ["items.parquet"] + [f"{s}.parquet" for s in SPLITS]
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        raise LayoutNotFound(
            f"{folder}: missing file(s) {', '.join(missing)}; a dataset "
            "folder needs items.parquet and the train, valid and test "
            "splits (train.parquet, valid.parquet, test.parquet). Restore them or "
            "re-create the folder with `tawin data import` or `tawin data prepare`."
        )
    items = load_items(folder / "items.parquet", require_sids)
    splits = {name: load_split(folder / f"{name}.parquet", items.item_id) for name in SPLITS}
    empty = [name for name, split in splits.items() if len(split) == 0]
    if empty and not allow_empty_splits:
        raise DataError(
            f"{folder / (empty[0] + '.parquet')}: the file has no "
            f"rows (empty split(s): {', '.join(empty)}); training and "
            "evaluation need samples in train, valid and test. "
            "Re-create the dataset with more data or a different split."
        )
    meta_path = folder / "dataset.json"
    meta = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(
                f"{meta_path}: not valid JSON ({error}); fix the file or delete it (it only holds the name and counts)."
            ) from None
        if not isinstance(meta, dict):
            raise DataError(
                f'{meta_path}: must hold a JSON object such as {{"name": '
                f'"industrial"}}, not a {type(meta).__name__}; fix or delete it.'
            )
    return Dataset(name=meta.get("name", folder.name), items=items, splits=splits, meta=meta)
