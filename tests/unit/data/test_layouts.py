"""tawin.data.formats.registry: one reader/writer per layout behind one interface; tawin.data's exports
and the old module paths of tawin/data/."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import tawin.data
from tawin.data.formats.layout import LayoutNotFound
from tawin.data.formats.registry import CSV_SPLITS, IMPORTED, MINIONEREC_INTER, TAWIN_FOLDER, import_dataset

from conftest import minionerec_folder, tiny_dataset


@pytest.mark.parametrize("layout", [TAWIN_FOLDER, MINIONEREC_INTER, CSV_SPLITS], ids=lambda layout: layout.name)
def test_each_reader_says_when_a_folder_lacks_its_layout(tmp_path, layout):
    with pytest.raises(LayoutNotFound):
        layout.read(tmp_path)


def test_import_tries_the_imported_layouts_in_order(tmp_path):
    """A folder holding the .inter layout is read by its reader, whatever else lies beside it."""
    root = minionerec_folder(tmp_path / "src")
    assert import_dataset(root).meta == MINIONEREC_INTER.read(root).meta
    assert [layout.name for layout in IMPORTED] == ["minionerec-inter", "csv-splits"]


def test_written_layouts_read_back(tmp_path):
    """What a layout's writer writes, its reader reads back: the canonical folder and the CSV splits."""
    original = TAWIN_FOLDER.read(tiny_dataset(tmp_path / "tiny"))
    TAWIN_FOLDER.write(original, tmp_path / "copy")
    CSV_SPLITS.write(original, tmp_path / "csv")
    for folder, layout in ((tmp_path / "copy", TAWIN_FOLDER), (tmp_path / "csv", CSV_SPLITS)):
        again = layout.read(folder)
        assert again.items.item_id.tolist() == original.items.item_id.tolist() and again.items.sid == original.items.sid
        for split in original.splits:
            assert np.array_equal(again.splits[split].history_RH, original.splits[split].history_RH)
            assert np.array_equal(again.splits[split].target, original.splits[split].target)


def test_public_names_load_from_tawin_data():
    for name in tawin.data.__all__:
        assert getattr(tawin.data, name) is not None
    assert tawin.data.load_dataset is TAWIN_FOLDER.read


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("tawin.data.io", "tawin.data.formats.canonical"),
        ("tawin.data.prepare", "tawin.data.protocol.prepare"),
        ("tawin.data.importers", "tawin.data.formats.registry"),
    ],
)
def test_old_module_paths_name_the_new_ones(old, new):
    with pytest.raises(ModuleNotFoundError, match=rf"^{old} has moved to {new}"):
        importlib.import_module(old)
