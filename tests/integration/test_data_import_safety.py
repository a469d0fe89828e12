"""`tawin data import SRC --out DIR` never destroys files it did not write, and reads what it is given
(issue #22: the out folder and --overwrite, duplicate columns, copied items, byte-order marks, unwritable --out).

Each test builds its own small ReRe CSV or MiniOneRec .inter folder and goes through the CLI.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tawin.cli import main
from tawin.data.formats.canonical import load_dataset

from conftest import fails, minionerec_folder, snapshot, write_csv

TITLES = {10: "Glue", 11: "Tape", 12: "Drill", 13: "Saw", 99: "Hammer"}
ASINS = {10: "B010", 11: "B011", 12: "B012", 13: "B013", 99: "B099"}
SAMPLES = {  # split: [(user, history, target, timestamp)]
    "train": [("AXK9", [10], 11, 100), ("B77Q", [10, 11], 12, 200)],
    "valid": [("AXK9", [10, 11], 12, 300)],
    "test": [("B77Q", [10, 11, 12], 13, 400)],
}
HEADER = [
    "user_id",
    "item_asins",
    "item_asin",
    "history_item_id",
    "item_id",
    "history_item_title",
    "item_title",
    "timestamp",
]
TRAIN = Path("train") / "Toy_5.csv"
DATASET_FILES = {"items.parquet", "train.parquet", "valid.parquet", "test.parquet", "dataset.json"}


def rere_row(user: str, history: list[int], target: int, timestamp: int, titles=TITLES, asins=ASINS) -> dict:
    return {
        "user_id": user,
        "item_asins": repr([asins[i] for i in history]),
        "item_asin": asins[target],
        "history_item_id": repr(history),
        "item_id": target,
        "history_item_title": repr([titles[i] for i in history]),
        "item_title": titles[target],
        "timestamp": timestamp,
    }


def rere_folder(root: Path) -> Path:
    """ReRe CSV splits, no catalogue file: <split>/Toy_5.csv."""
    for split, samples in SAMPLES.items():
        write_csv(root / split / "Toy_5.csv", HEADER, [rere_row(*sample) for sample in samples])
    return root


def imports(capsys, source: Path, out: Path, *extra: str) -> str:
    """Run the import, which must succeed; its stdout."""
    code = main(["data", "import", str(source), "--out", str(out), *extra])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return printed.out


def entries(folder: Path) -> set[str]:
    return {child.name for child in folder.iterdir()}


# ------------------------------------------------------------------ 1. the --out folder


def test_a_folder_with_other_files_is_refused_a_dataset_folder_is_replaced(tmp_path, capsys):
    source, out = rere_folder(tmp_path / "src"), tmp_path / "out"
    imports(capsys, source, out)
    imports(capsys, source, out)  # a tawin dataset folder: rerunning the import updates it
    assert entries(out) == DATASET_FILES
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    fails(
        ["data", "import", str(source), "--out", str(out)],
        capsys,
        r"--out .*out exists and is neither empty nor a tawin dataset folder \(it holds notes\.txt, dataset\.json, "
        r"items\.parquet, test\.parquet, train\.parquet and 1 more\); .*so these would be lost\. "
        r".*pass --overwrite",
    )
    assert snapshot(out) == before
    (tmp_path / "file.txt").write_text("keep me")
    fails(
        ["data", "import", str(source), "--out", str(tmp_path / "file.txt")],
        capsys,
        r"--out .*file\.txt is a file, not a folder; choose another --out folder \(the file is left as it is\)",
    )
    assert (tmp_path / "file.txt").read_text() == "keep me" and entries(tmp_path) == {"src", "out", "file.txt"}


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
@pytest.mark.parametrize("where", ["source", "parent", "grandparent"])
def test_out_never_holds_the_source(tmp_path, capsys, where, overwrite):
    source = rere_folder(tmp_path / "data" / "src")
    out = {"source": source, "parent": source.parent, "grandparent": tmp_path}[where]
    before = snapshot(tmp_path)
    pattern = "is the source folder" if where == "source" else r"holds the source folder .*src"
    fails(
        ["data", "import", str(source), "--out", str(out), *overwrite],
        capsys,
        rf"--out .* {pattern}: the import replaces the contents of --out, which would delete the files being "
        r"imported \(--overwrite does not change that\)\. Choose an --out folder outside .*src\.",
    )
    assert snapshot(tmp_path) == before


def test_out_inside_the_source_holding_its_files(tmp_path, capsys):
    """The CSVs may sit in SRC/rere: --out SRC/rere holds them, so --overwrite is refused too."""
    source = tmp_path / "src"
    rere_folder(source / "rere")
    before = snapshot(source)
    fails(
        ["data", "import", str(source), "--out", str(source / "rere"), "--overwrite"],
        capsys,
        r"--out .*rere lies inside the source folder .*src and holds files that are not a tawin dataset "
        r"\(test/, train/, valid/\); they may be files being imported.*\(--overwrite does not change that\)",
    )
    assert snapshot(source) == before
    imports(capsys, source, source / "imported")  # a new folder inside the source is fine
    assert entries(source / "imported") == DATASET_FILES


def test_overwrite_replaces_the_contents_once_the_dataset_is_written(tmp_path, capsys):
    source, out = rere_folder(tmp_path / "src"), tmp_path / "out"
    (out / "old").mkdir(parents=True)
    (out / "old" / "run.log").write_text("old")
    (out / "notes.txt").write_text("mine")
    imports(capsys, source, out, "--overwrite")
    assert entries(out) == DATASET_FILES and entries(tmp_path) == {"src", "out"}
    assert load_dataset(out, require_sids=False).items.title == [TITLES[i] for i in range(10, 14)]


def test_overwrite_puts_the_old_contents_back_when_writing_fails(tmp_path, capsys, monkeypatch):
    source, out = rere_folder(tmp_path / "src"), tmp_path / "out"
    (out / "old").mkdir(parents=True)
    (out / "old" / "run.log").write_text("old")
    (out / "train.parquet").write_text("not a dataset")
    before = snapshot(out)
    real_replace, failed = os.replace, []

    def move_fails(src, dst, *args, **kwargs):  # the first move to out/train.parquet (the new file's) fails
        if Path(dst) == out / "train.parquet" and not failed:
            failed.append(src)
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", move_fails)
    fails(
        ["data", "import", str(source), "--out", str(out), "--overwrite"],
        capsys,
        r"--out .*out: cannot write the dataset there \(Input/output error\); .*Its old contents, if any, are as "
        r"they were",
    )
    assert failed and snapshot(out) == before
    assert entries(out) == {"old", "train.parquet"} and entries(tmp_path) == {"src", "out"}


def test_a_killed_overwrite_is_undone_by_the_next_import(tmp_path, capsys):
    """Killed (os._exit, as SIGKILL: no cleanup runs) while the new files move in: the next import puts the old back."""
    source, out = rere_folder(tmp_path / "src"), tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    script = (
        "import os, sys\nfrom pathlib import Path\nreal = os.replace\n"
        "def killed(src, dst, *args, **kwargs):\n"
        f"    if Path(dst) == Path({str(out)!r}) / 'train.parquet':\n        os._exit(9)\n"
        "    return real(src, dst, *args, **kwargs)\n"
        "os.replace = killed\nfrom tawin.cli import main\n"
        f"main(['data', 'import', {str(source)!r}, '--out', {str(out)!r}, '--overwrite'])\n"
    )
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 9
    assert "notes.txt" not in entries(out)  # the old contents wait aside
    fails(["data", "import", str(source), "--out", str(out)], capsys, r"it holds notes\.txt\)")
    assert snapshot(out) == before and entries(out) == {"notes.txt"}


# ------------------------------------------------------------------ 2. duplicate column names


def test_duplicate_column_in_a_split_csv(tmp_path, capsys):
    source = rere_folder(tmp_path / "src")
    write_csv(source / TRAIN, HEADER + ["item_id"], [rere_row(*sample) for sample in SAMPLES["train"]])  # item_id twice
    fails(
        ["data", "import", str(source), "--out", str(tmp_path / "out")],
        capsys,
        r"train/Toy_5\.csv: line 1, the header names the column 'item_id' twice \(columns 5 and 9\); only one of "
        r"them could be read\. Rename or remove one of the two columns\.",
    )
    assert not (tmp_path / "out").exists()


def test_duplicate_column_in_a_rere_csv_beside_inter_files(tmp_path, capsys):
    """The ReRe CSV that gives an .inter split its timestamps, with two timestamp columns."""
    source = minionerec_folder(tmp_path / "src")
    path = source / "rere" / "valid" / "Toy.csv"
    path.parent.mkdir(parents=True)
    path.write_text("timestamp,item_asin,item_asins,timestamp\n300,B012,\"['B010', 'B011']\",999\n")
    fails(
        ["data", "import", str(source), "--out", str(tmp_path / "out")],
        capsys,
        r"rere/valid/Toy\.csv: line 1, the header names the column 'timestamp' twice \(columns 1 and 4\)",
    )
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 3. an item id that copies another item


def test_history_item_seen_only_in_histories(tmp_path, capsys):
    """Without a catalogue file the CSVs are the catalogue: an id seen only in a history is an item of its own,
    but an id that repeats another item's ASIN (and title) would be a copy of it, so it is refused."""
    source = rere_folder(tmp_path / "src")
    rows = [rere_row("AXK9", [10], 11, 100), rere_row("B77Q", [10, 99], 12, 200)]
    write_csv(source / TRAIN, HEADER, rows)
    imports(capsys, source, tmp_path / "own")
    items = load_dataset(tmp_path / "own", require_sids=False).items
    assert items.item_id.tolist() == [10, 11, 12, 13, 99] and (items.title[-1], items.asin[-1]) == ("Hammer", "B099")
    copied = dict(rows[1], history_item_title=repr(["Glue", "Tape"]), item_asins=repr(["B010", "B011"]))
    write_csv(source / TRAIN, HEADER, [rows[0], copied])
    fails(
        ["data", "import", str(source), "--out", str(tmp_path / "copy")],
        capsys,
        r"train/Toy_5\.csv: line 3, field 'item_asins' gives item 99 the ASIN 'B011', but line 2 of "
        r"train/Toy_5\.csv gives that ASIN to item 11; an ASIN names one item, so one of the two item ids is wrong\. "
        r"Correct the id",
    )
    assert not (tmp_path / "copy").exists()


# ------------------------------------------------------------------ 4. a byte-order mark at the start of a file


def add_bom(path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


@pytest.mark.parametrize("layout", ["rere-csv", "rere-info-txt", "inter", "index-json"])
def test_byte_order_mark(tmp_path, capsys, layout):
    if layout.startswith("rere"):
        source = rere_folder(tmp_path / "src")
        (source / "info").mkdir()
        (source / "info" / "Toy_5.txt").write_text("".join(f"{TITLES[i]}\t{i}\n" for i in range(10, 14)))
        add_bom(source / TRAIN if layout == "rere-csv" else source / "info" / "Toy_5.txt")
        titles = [TITLES[i] for i in range(10, 14)]
    else:
        source = minionerec_folder(tmp_path / "src")
        add_bom(source / "minionerec" / ("inter/Toy.train.inter" if layout == "inter" else "index/Toy.index.json"))
        titles = [f"item {i}" for i in range(10, 14)]
    imports(capsys, source, tmp_path / "out")
    dataset = load_dataset(tmp_path / "out", require_sids=False)
    assert dataset.items.title == titles
    assert dataset.split("train").target.tolist() == ([11, 12] if layout.startswith("rere") else [11])


# ------------------------------------------------------------------ 5. an --out that cannot be written


def test_out_under_a_file(tmp_path, capsys):
    source = rere_folder(tmp_path / "src")
    (tmp_path / "some_file.txt").write_text("keep me")
    fails(
        ["data", "import", str(source), "--out", str(tmp_path / "some_file.txt" / "sub")],
        capsys,
        r"--out .*some_file\.txt/sub cannot be made: .*some_file\.txt is a file; choose another --out folder",
    )
    assert (tmp_path / "some_file.txt").read_text() == "keep me"


def test_write_error_names_the_folder(tmp_path, capsys, monkeypatch):
    """A disk that refuses the write (read-only, full): exit 2 naming --out; a dataset folder it would replace
    is untouched, and a folder it was to create is removed again."""
    import pyarrow.parquet as pq

    source, out = rere_folder(tmp_path / "src"), tmp_path / "out"
    imports(capsys, source, out)
    before = snapshot(out)

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(pq, "write_table", refused)
    fails(
        ["data", "import", str(source), "--out", str(out)],
        capsys,
        r"--out .*out: cannot write the dataset there \(Permission denied\); choose an --out folder you can write to",
    )
    assert snapshot(out) == before and entries(out) == DATASET_FILES
    fails(
        ["data", "import", str(source), "--out", str(tmp_path / "new" / "data")],
        capsys,
        r"new/data: cannot write the dataset there",
    )
    assert entries(tmp_path) == {"src", "out"}
    assert json.loads((out / "dataset.json").read_text())["format"] == "tawin-dataset/1"
