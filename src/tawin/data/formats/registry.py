"""Stage 1 — the dataset layouts tawin reads and writes, and `tawin data import`'s choice among them.

* ``tawin``, the canonical folder: read by :func:`~tawin.data.formats.canonical.load_dataset`,
  written by :func:`~tawin.data.formats.canonical.save_dataset`;
* ``minionerec-inter``: read by :func:`~tawin.data.formats.minionerec_inter.import_minionerec`;
* ``csv-splits``: read by :func:`~tawin.data.formats.csv_import.read_csv_layout` (ReRe's and
  MiniOneRec's CSVs, told apart by their header), written by
  :func:`~tawin.data.formats.rere_export.export_rere_csv` (ReRe's).

:func:`import_dataset` tries the layouts users bring (:data:`IMPORTED`), in order, and takes the
first the folder holds. Raw review logs are not datasets yet: :func:`tawin.data.formats.raw.read_source`
reads them into a log that :mod:`tawin.data.protocol.prepare` turns into one.
"""

from __future__ import annotations

from pathlib import Path

from tawin.data.dataset import Dataset
from tawin.data.formats.canonical import load_dataset, save_dataset
from tawin.data.formats.csv_import import read_csv_layout
from tawin.data.formats.layout import Layout, LayoutNotFound
from tawin.data.formats.minionerec_inter import import_minionerec
from tawin.data.formats.rere_export import export_rere_csv
from tawin.errors import DataError

TAWIN_FOLDER = Layout(
    "tawin",
    ("tawin dataset folder: items.parquet, train.parquet, valid.parquet, test.parquet and dataset.json",),
    read=load_dataset,
    write=save_dataset,
)
MINIONEREC_INTER = Layout(
    "minionerec-inter",
    (
        "MiniOneRec RecBole splits: minionerec/inter/<Name>.{train,valid,test}.inter "
        "with minionerec/index/<Name>.index.json "
        "and <Name>.item.json",
    ),
    read=import_minionerec,
)
CSV_SPLITS = Layout(
    "csv-splits",
    (
        "ReRe CSV splits: train/, valid/ and test/ holding one CSV "
        "each (or train.csv, valid.csv, test.csv) with the columns "
        "user_id, history_item_id, item_id, history_item_title, "
        "item_title (optionally item_asins, item_asin, timestamp), "
        "optionally info/<name>.txt and index/<Name>.index.json + <Name>.item.json",
        "MiniOneRec CSV splits: train/, valid/ and test/ CSVs with history_item_sid/item_sid columns, with "
        "index/<Name>.index.json and <Name>.item.json",
    ),
    read=read_csv_layout,
    write=export_rere_csv,
)

IMPORTED: tuple[Layout, ...] = (MINIONEREC_INTER, CSV_SPLITS)
"""The layouts `tawin data import` reads, in the order it tries them."""
LAYOUTS: tuple[str, ...] = tuple(text for layout in IMPORTED for text in layout.described)
"""The layouts `tawin data import` accepts, in words; the CSV ones may sit in SRC, SRC/rere or SRC/minionerec."""


def import_dataset(root: str | Path, name: str | None = None) -> Dataset:
    """Read whichever of :data:`IMPORTED` `root` holds (the first that matches, in that order).

    `name` picks the files when a folder holds several (a file-name prefix, e.g. the category).
    """
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "folder not found"
        raise DataError(f"{root}: {what}; pass the folder that holds the dataset files ({'; '.join(LAYOUTS)}).")
    partial = []
    for layout in IMPORTED:
        try:
            return layout.read(root, name)
        except LayoutNotFound as absent:
            partial += absent.found
    found = "; ".join(partial) if partial else "neither .inter files nor split CSVs"
    listed = " ".join(f"({number}) {layout}." for number, layout in enumerate(LAYOUTS, start=1))
    raise DataError(
        f"{root}: matches none of the accepted layouts (found {found}). "
        f"Accepted: {listed} Arrange the files as one of these."
    )
