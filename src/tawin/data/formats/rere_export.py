"""Stage 1 — write a dataset as ReRe CSV splits, for ReRe's code or a trip back through `tawin data import`.

The folder follows ReRe's ``data/Amazon`` layout::

    train/<stem>.csv, valid/<stem>.csv, test/<stem>.csv   the columns of csv_splits.RERE_COLUMNS
    info/<stem>.txt                                       title \\t item_id, one item a line, in id order
    index/<name>.index.json, <name>.item.json             SIDs and descriptions (when every item has SIDs)

Item ids are the dataset's own (for the shipped data MiniOneRec's, not ReRe's), users their
integer ids. Unknown timestamps and ASINs are blank cells (``None`` inside a list). Ratings and
history timestamps, which the canonical dataset does not hold, are not written. ReRe's scripts
look for ``train/<category>*.csv``, ``valid/<category>*11.csv`` and ``info/<category>*.txt``, so
pick a `stem` that fits, e.g. ``Industrial_and_Scientific_5_2016-10-2018-11``.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

from tawin.checkpoint import replace_folder
from tawin.data.dataset import Dataset, Interactions
from tawin.data.formats.csv_splits import RERE_COLUMNS
from tawin.errors import DataError


def _rows(split: Interactions, title: list[str], asin: list[str | None], position: dict[int, int]):
    """One dict of RERE_COLUMNS per sample of `split`."""
    for i in range(len(split)):
        history = split.history(i)
        target = position[int(split.target[i])]
        yield {
            "user_id": int(split.user[i]),
            "item_asins": repr([asin[position[item]] for item in history]),
            "item_asin": asin[target] or "",
            "history_item_id": repr(history),
            "item_id": int(split.target[i]),
            "history_item_title": repr([title[position[item]] for item in history]),
            "item_title": title[target],
            "timestamp": "" if split.timestamp[i] < 0 else int(split.timestamp[i]),
        }


def _check_titles(dataset: Dataset) -> None:
    bad = next((n for n, t in enumerate(dataset.items.title) if "\t" in t or "\n" in t or "\r" in t), None)
    if bad is not None:
        raise DataError(
            f"item {int(dataset.items.item_id[bad])} has the title "
            f"{dataset.items.title[bad][:80]!r}, which holds a tab or line break; "
            "ReRe's info file keeps one 'title<TAB>item_id' a line. Replace those characters in the title first."
        )


def _write_index(dataset: Dataset, folder: Path) -> None:
    items = dataset.items
    folder.mkdir()
    sids = {str(int(i)): list(s) for i, s in zip(items.item_id, items.sid)}
    info = {
        str(int(i)): {"title": t, "description": d or ""}
        for i, t, d in zip(items.item_id, items.title, items.description)
    }
    (folder / f"{dataset.name}.index.json").write_text(json.dumps(sids) + "\n")
    (folder / f"{dataset.name}.item.json").write_text(json.dumps(info, ensure_ascii=False) + "\n")


def export_rere_csv(dataset: Dataset, folder: str | Path, stem: str | None = None, with_index: bool = True) -> Path:
    """Write `dataset` to `folder` as ReRe CSV splits (layout in the module docstring).

    Args:
        stem: file name of the CSVs and the info file, without suffix (default: the dataset name).
        with_index: also write ``index/<name>.index.json``/``.item.json`` when every item has
            SIDs, so a re-import keeps SIDs and descriptions (else rebuild them with
            `tawin items build-sids`).
    Returns the folder. It is written beside its final place and moved there at the end; a
    folder that exists and is not empty is an error (it may be the CSVs being converted).
    """
    folder = Path(folder)
    stem = stem or dataset.name
    if folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
        raise DataError(
            f"{folder}: exists and is not an empty folder; the export never "
            "overwrites files, so pass a new folder or remove this one."
        )
    _check_titles(dataset)
    items = dataset.items
    position = items.index_of
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, split in dataset.splits.items():
            (staging / name).mkdir()
            with (staging / name / f"{stem}.csv").open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(RERE_COLUMNS), lineterminator="\n")
                writer.writeheader()
                writer.writerows(_rows(split, items.title, items.asin, position))
        (staging / "info").mkdir()
        lines = "".join(f"{title}\t{int(item)}\n" for item, title in sorted(zip(items.item_id.tolist(), items.title)))
        (staging / "info" / f"{stem}.txt").write_text(lines, encoding="utf-8")
        if with_index and len(items) and all(items.sid):
            _write_index(dataset, staging / "index")
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
