"""tawin.data.formats.csv_splits / csv_import / rere_export: CSV splits in, ReRe CSVs out.

Small ReRe and MiniOneRec files are written by the tests; the round trip uses the shipped
Industrial dataset; two tests read the real CSVs under ../shared/data when they are there.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tawin.cli import main
from tawin.data.dataset import SPLITS
from tawin.data.formats.canonical import load_dataset, save_dataset
from tawin.data.formats.csv_splits import RERE_COLUMNS
from tawin.data.formats.registry import LAYOUTS, import_dataset
from tawin.data.formats.rere_export import export_rere_csv
from tawin.errors import DataError

from conftest import MINIONEREC_COLUMNS, REPO, fails, tiny_dataset, write_csv

INDUSTRIAL = REPO / "src" / "tawin" / "resources" / "datasets" / "industrial"
SHARED = REPO.parent / "shared" / "data" / "Industrial_and_Scientific"
TITLES = {10: "Glue, 8 oz", 11: "Duct 'Tape'", 12: "Drill", 13: "Saw"}
ASINS = {10: "B010", 11: "B011", 12: "B012", 13: "B013"}
SAMPLES = {  # split: [(user, history, target, timestamp)]
    "train": [("AXK9", [10], 11, 100), ("B77Q", [10, 11], 12, 200)],
    "valid": [("AXK9", [10, 11], 12, 300)],
    "test": [("B77Q", [10, 11, 12], 13, "")],
}
SIDS = {10: ["<a_1>", "<b_1>"], 11: ["<a_1>", "<b_2>"], 12: ["<a_2>", "<b_1>"], 13: ["<a_2>", "<b_2>"]}


def rere_row(user: str, history: list[int], target: int, timestamp) -> dict:
    return {
        "user_id": user,
        "item_asins": repr([ASINS[i] for i in history]),
        "item_asin": ASINS[target],
        "history_item_id": repr(history),
        "item_id": target,
        "history_item_title": repr([TITLES[i] for i in history]),
        "item_title": TITLES[target],
        "history_rating": repr([5.0] * len(history)),
        "rating": 4.0,
        "history_timestamp": repr([1] * len(history)),
        "timestamp": timestamp,
    }


RERE_HEADER = list(rere_row("u", [10], 11, 1))


def rere_folder(root: Path, as_files: bool = False) -> Path:
    """ReRe's data/Amazon layout: <split>/Toy_5_2016-10-2018-11.csv (or <split>.csv)."""
    for split, samples in SAMPLES.items():
        path = root / f"{split}.csv" if as_files else root / split / "Toy_5_2016-10-2018-11.csv"
        write_csv(path, RERE_HEADER, [rere_row(*s) for s in samples])
    return root


def minionerec_folder(root: Path) -> Path:
    """MiniOneRec's data/Amazon layout without .inter files: CSV splits + index/Toy.{index,item}.json."""
    for split, samples in SAMPLES.items():
        rows = [
            {
                "user_id": f"A{n}",
                "history_item_title": repr([TITLES[i] for i in h]),
                "item_title": TITLES[t],
                "history_item_id": repr(h),
                "item_id": t,
                "history_item_sid": repr(["".join(SIDS[i]) for i in h]),
                "item_sid": "".join(SIDS[t]),
            }
            for n, (_, h, t, _) in enumerate(samples, start=7)
        ]
        write_csv(root / split / "Toy_5_2016-10-2018-11.csv", MINIONEREC_COLUMNS, rows)
    (root / "index").mkdir()
    (root / "index" / "Toy.index.json").write_text(json.dumps({str(i): s for i, s in SIDS.items()}))
    (root / "index" / "Toy.item.json").write_text(
        json.dumps({str(i): {"title": t, "description": f"about {i}"} for i, t in TITLES.items()})
    )
    return root


def edit_line(path: Path, line: int, old: str, new: str) -> None:
    lines = path.read_text().split("\n")
    assert old in lines[line - 1], (old, lines[line - 1])
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines))


@pytest.mark.parametrize("as_files", [False, True], ids=["split-folders", "split-files"])
def test_rere_csv_splits(tmp_path, as_files):
    dataset = import_dataset(rere_folder(tmp_path, as_files))
    items = dataset.items
    assert items.item_id.tolist() == [10, 11, 12, 13] and items.title == [TITLES[i] for i in range(10, 14)]
    assert items.asin == [ASINS[i] for i in range(10, 14)] and items.sid == [()] * 4
    train, test = dataset.split("train"), dataset.split("test")
    assert train.user.tolist() == [0, 1] and dataset.split("valid").user.tolist() == [0] and test.user.tolist() == [1]
    assert [train.history(i) for i in range(2)] == [[10], [10, 11]] and train.target.tolist() == [11, 12]
    assert train.timestamp.tolist() == [100, 200] and test.timestamp.tolist() == [-1]
    assert dataset.meta["sid_source"] is None and "first appearance" in dataset.meta["user_ids"]
    assert dataset.name == ("train" if as_files else "Toy_5_2016-10-2018-11")
    back = load_dataset(save_dataset(dataset, tmp_path / "out"), require_sids=False)
    assert back.items.title == items.title and back.split("valid").target.tolist() == [12]


def test_rere_info_file_completes_the_catalogue(tmp_path):
    root = rere_folder(tmp_path)
    (root / "info").mkdir()
    (root / "info" / "Toy_5_2016-10-2018-11.txt").write_text(
        "".join(f"{t}\t{i}\n" for i, t in TITLES.items()) + "Unused\t14\n"
    )
    items = import_dataset(root).items
    assert items.item_id.tolist() == [10, 11, 12, 13, 14] and items.title[-1] == "Unused" and items.asin[-1] is None


def test_minionerec_csv_splits_with_index(tmp_path):
    dataset = import_dataset(minionerec_folder(tmp_path))
    assert (
        dataset.name == "Toy"
        and dataset.split("train").user.tolist() == [7, 8]
        and dataset.split("test").user.tolist() == [7]
    )
    assert dataset.items.sid == [tuple(SIDS[i]) for i in range(10, 14)] and dataset.items.description[0] == "about 10"
    assert dataset.split("test").history(0) == [10, 11, 12] and dataset.split("test").timestamp.tolist() == [-1]
    assert load_dataset(save_dataset(dataset, tmp_path / "out")).items.title == [TITLES[i] for i in range(10, 14)]


def test_minionerec_csv_splits_need_the_index(tmp_path):
    root = minionerec_folder(tmp_path)
    shutil.rmtree(root / "index")
    with pytest.raises(
        DataError, match=r"MiniOneRec CSVs carry no catalogue, and no <Name>\.index\.json was found in .*index"
    ):
        import_dataset(root)


TRAIN = "train/Toy_5_2016-10-2018-11.csv"
BAD_LINES = [  # (line, old text, new text, message)
    (
        3,
        '"[10, 11]"',
        '"[10, x1]"',
        r"line 3, field 'history_item_id' holds '\[10, x1\]'; expected a Python list literal",
    ),
    (3, '"[10, 11]"', '"[10, -1]"', r"line 3, field 'history_item_id' holds '-1'; item ids must be integers ≥ 0"),
    (
        2,
        "[10],11",
        "[],11",
        r"line 2, field 'history_item_id' holds '\[\]'; every sample needs at least one history item",
    ),
    (2, "[10],11", "[10],1.5", r"line 2, field 'item_id' holds '1.5'; item ids must be integers ≥ 0"),
    (
        2,
        "['Glue, 8 oz']",
        "['Glue, 8 oz', 'Saw']",
        r"line 2, field 'history_item_title' .* has 2 entries but 'history_item_id' has 1",
    ),
    (2, ",100", ",1e5", r"line 2, field 'timestamp' holds '1e5'; expected an integer \(unix seconds\)"),
    (3, ",200", ",200,7", r"line 3 has 12 comma-separated field\(s\) but the header has 11; quote any field"),
    (1, "user_id", "uid", r"line 1, the header .* lacks the column\(s\) \['user_id'\]"),
    (
        3,
        ",Drill,",
        ",Drill bit,",
        r"line 2, field 'item_title' gives item 12 the title 'Drill', "
        r"but line 3 of train/Toy_5.*\.csv gives it 'Drill bit'; "
        r"an item id must have one title",
    ),
    (
        3,
        "'B011']",
        "'B099']",
        r"line 3, field 'item_asins' gives item 11 the ASIN 'B099', but line 2 of train/Toy_5.*\.csv gives it 'B011'",
    ),
]


@pytest.mark.parametrize(
    ("line", "old", "new", "pattern"),
    BAD_LINES,
    ids=[
        "id-literal",
        "negative-id",
        "empty-history",
        "target-id",
        "title-list",
        "timestamp",
        "fields",
        "header",
        "title",
        "asin",
    ],
)
def test_rere_bad_lines(tmp_path, line, old, new, pattern):
    """Each broken cell of train/ is reported with its file and line (the title clash on valid's line 2)."""
    root = rere_folder(tmp_path)
    edit_line(root / TRAIN, line, old, new)
    with pytest.raises(DataError, match=r"Toy_5_2016-10-2018-11\.csv: " + pattern):
        import_dataset(root)


def test_item_outside_the_catalogue_and_renumbered_index(tmp_path):
    root = rere_folder(tmp_path)
    (root / "info").mkdir()
    (root / "info" / "Toy.txt").write_text("".join(f"{t}\t{i}\n" for i, t in TITLES.items() if i != 13))
    with pytest.raises(
        DataError, match=r"test/Toy_5.*\.csv: line 2, field 'item_id' refers to item 13, which is not in Toy\.txt"
    ):
        import_dataset(root)
    shutil.rmtree(root / "info")
    minionerec_folder(tmp_path / "m")
    shutil.copytree(tmp_path / "m" / "index", root / "index")
    (root / "index" / "Toy.item.json").write_text(json.dumps({str(i): {"title": TITLES[23 - i]} for i in TITLES}))
    with pytest.raises(
        DataError,
        match=r"line 2, field 'history_item_title' gives item 10 the title 'Glue, 8 oz', but Toy\.index\.json or "
        r"Toy\.item\.json gives it 'Saw'; .*\(ReRe's own ids are not MiniOneRec's\)",
    ):
        import_dataset(root)


def test_layout_errors(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: folder not found"):
        import_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError,
        match=(
            r"empty: matches none of the accepted layouts \(found "
            r"neither \.inter files nor split CSVs\)\. Accepted: \(1\)"
        ),
    ):
        import_dataset(tmp_path / "empty")
    root = rere_folder(tmp_path / "partial")
    shutil.rmtree(root / "train")
    with pytest.raises(DataError, match=r"partial has valid/Toy.*\.csv, test/Toy.*\.csv but no train split") as error:
        import_dataset(root)
    assert all(layout in str(error.value) for layout in LAYOUTS)
    minionerec_folder(tmp_path / "mixed")
    shutil.copy(
        root / "valid" / "Toy_5_2016-10-2018-11.csv", tmp_path / "mixed" / "valid" / "Toy_5_2016-10-2018-11.csv"
    )
    with pytest.raises(
        DataError,
        match=(
            r"train/Toy.*\.csv is a minionerec CSV, .*valid/Toy.*\.csv "
            r"is a rere CSV.* must come from the same source"
        ),
    ):
        import_dataset(tmp_path / "mixed")
    shutil.copy(root / "test" / "Toy_5_2016-10-2018-11.csv", root / "test" / "Toy_5_2014.csv")
    with pytest.raises(
        DataError, match=r"test: holds 2 \*\.csv files \(Toy_5_2014\.csv, Toy_5_2016-10-2018-11\.csv\); pass --name"
    ):
        import_dataset(root)


@pytest.fixture(scope="module")
def industrial():
    return load_dataset(INDUSTRIAL)


def assert_same_splits(a, b) -> None:
    for split in SPLITS:
        x, y = a.split(split), b.split(split)
        for field in ("row", "user", "history_RH", "history_len", "target", "timestamp"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field), err_msg=f"{split}.{field}")


def test_industrial_round_trip_through_rere_csv(industrial, tmp_path):
    folder = export_rere_csv(industrial, tmp_path / "rere")
    with (folder / "test" / "Industrial_and_Scientific.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == list(RERE_COLUMNS)
    back = import_dataset(folder)
    assert back.name == industrial.name and len(back.items) == 3686
    np.testing.assert_array_equal(back.items.item_id, industrial.items.item_id)
    assert back.items.title == industrial.items.title and back.items.asin == industrial.items.asin
    assert back.items.sid == industrial.items.sid and back.items.description == industrial.items.description
    assert_same_splits(industrial, back)
    shutil.rmtree(folder / "index")  # the CSVs alone: everything but the SIDs and descriptions
    bare = import_dataset(folder)
    assert bare.items.title == industrial.items.title and bare.items.asin == industrial.items.asin
    assert bare.items.sid == [()] * 3686 and bare.meta["user_ids"] == "the CSV user ids"
    assert_same_splits(industrial, bare)


def test_cli_export_import_and_bad_line(tmp_path, capsys):
    source = tiny_dataset(tmp_path / "tiny")
    assert (
        main(
            [
                "data",
                "export",
                str(source),
                "--out",
                str(tmp_path / "csv"),
                "--stem",
                "Tiny_5_2016-10-2018-11",
                "--no-index",
            ]
        )
        == 0
    )
    assert (
        not (tmp_path / "csv" / "index").exists()
        and (tmp_path / "csv" / "info" / "Tiny_5_2016-10-2018-11.txt").is_file()
    )
    assert main(["data", "import", str(tmp_path / "csv"), "--out", str(tmp_path / "imported")]) == 0
    assert "tawin items build-sids" in capsys.readouterr().out
    imported = load_dataset(tmp_path / "imported", require_sids=False)
    assert imported.name == "Tiny_5_2016-10-2018-11" and imported.items.sid == [()] * 4
    assert imported.items.title == ["ten", "eleven", "twelve", "thirteen"]
    assert_same_splits(load_dataset(source), imported)
    root = rere_folder(tmp_path / "bad")
    edit_line(root / TRAIN, 3, '"[10, 11]"', '"[10, 11"')
    fails(
        ["data", "import", str(root), "--out", str(tmp_path / "never")],
        capsys,
        r"Toy_5_2016-10-2018-11\.csv: line 3, field 'history_item_id'",
    )
    assert not (tmp_path / "never").exists()
    fails(
        ["data", "export", str(INDUSTRIAL), "--out", str(root)],
        capsys,
        r"bad: exists and is not an empty folder; the export never overwrites",
    )


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the real CSVs in ../shared/data")
def test_real_rere_and_minionerec_csvs(tmp_path):
    """ReRe's and MiniOneRec's own valid/test CSVs (valid doubling as train, as no train CSV is shipped)."""
    for source in ("rere", "minionerec"):
        for split, origin in (("train", "valid"), ("valid", "valid"), ("test", "test")):
            (tmp_path / source / split).mkdir(parents=True)
            shutil.copy(next((SHARED / source / origin).glob("*.csv")), tmp_path / source / split)
    shutil.copytree(SHARED / "rere" / "info", tmp_path / "rere" / "info")
    shutil.copytree(SHARED / "minionerec" / "index", tmp_path / "minionerec" / "index")
    rere = import_dataset(tmp_path / "rere")
    assert len(rere.items) == 3686 and len(rere.split("test")) == 4533 and (rere.split("test").timestamp > 1.5e9).all()
    minionerec = import_dataset(tmp_path / "minionerec")
    inter = import_dataset(SHARED)
    assert len(minionerec.items) == 3686 and minionerec.items.sid == inter.items.sid
    for split in ("valid", "test"):
        for field in ("user", "history_RH", "target"):
            np.testing.assert_array_equal(getattr(minionerec.split(split), field), getattr(inter.split(split), field))
        # ReRe numbers items its own way; row i is the same sample, so the titles agree.
        titles = {int(i): t for i, t in zip(rere.items.item_id, rere.items.title)}
        inter_titles = {int(i): t for i, t in zip(inter.items.item_id, inter.items.title)}
        assert [titles[int(t)] for t in rere.split(split).target] == [
            inter_titles[int(t)] for t in inter.split(split).target
        ]
