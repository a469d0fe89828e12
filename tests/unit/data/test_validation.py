"""Dataset loading errors: every broken file stops with one DataError naming file, row and field.

Each test starts from a valid tiny dataset (4 items, 3 splits) written by `save_dataset`, breaks
one thing by rewriting a parquet file, and checks the message with ``pytest.raises(match=...)``.
The `.inter` importer's errors carry line numbers instead of rows.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tawin.data.dataset import MAX_HISTORY
from tawin.data.formats.canonical import load_dataset
from tawin.data.formats.minionerec_inter import import_minionerec, read_inter
from tawin.errors import DataError

from conftest import minionerec_folder, rewrite, tiny_dataset, write_inter


@pytest.fixture()
def dataset(tmp_path) -> Path:
    return tiny_dataset(tmp_path / "tiny")


def test_valid_tiny_dataset_loads(dataset):
    loaded = load_dataset(dataset)
    assert loaded.name == "tiny"
    assert loaded.items.item_id.tolist() == [10, 11, 12, 13]
    assert [loaded.splits["test"].history(i) for i in range(1)] == [[10, 11, 12]]
    assert loaded.splits["train"].timestamp.tolist() == [100, 200]


def test_long_history_keeps_the_latest_items(dataset):
    long = [10, 11, 12, 13] * 3
    rewrite(dataset, "train.parquet", history=pa.array([long, [10]], pa.list_(pa.int64())))
    train = load_dataset(dataset).splits["train"]
    assert train.history(0) == long[-MAX_HISTORY:]
    assert train.history(1) == [10]


# ---------------------------------------------------------------- unknown items, empty histories


def test_unknown_item_in_history(dataset):
    rewrite(dataset, "train.parquet", history=pa.array([[10], [10, 99]], pa.list_(pa.int64())))
    with pytest.raises(
        DataError,
        match=r"train\.parquet: row 1, field 'history' refers to item 99, which is not in items\.parquet.*Add the item",
    ):
        load_dataset(dataset)


def test_unknown_item_as_target(dataset):
    rewrite(dataset, "valid.parquet", target=pa.array([77], pa.int64()))
    with pytest.raises(
        DataError, match=r"valid\.parquet: row 0, field 'target' refers to item 77, which is not in items\.parquet"
    ):
        load_dataset(dataset)


def test_empty_history(dataset):
    rewrite(dataset, "test.parquet", history=pa.array([[]], pa.list_(pa.int64())))
    with pytest.raises(DataError, match=r"test\.parquet: row 0, field 'history' is empty .*at least one history item"):
        load_dataset(dataset)


def test_null_history(dataset):
    rewrite(dataset, "train.parquet", history=pa.array([[10], None], pa.list_(pa.int64())))
    with pytest.raises(DataError, match=r"train\.parquet: row 1, field 'history' is empty"):
        load_dataset(dataset)


def test_null_item_inside_a_history(dataset):
    rewrite(dataset, "train.parquet", history=pa.array([[10], [10, None]], pa.list_(pa.int64())))
    with pytest.raises(DataError, match=r"train\.parquet: row 1, field 'history' holds a null item id"):
        load_dataset(dataset)


def test_null_target(dataset):
    rewrite(dataset, "train.parquet", target=pa.array([11, None], pa.int64()))
    with pytest.raises(
        DataError, match=r"train\.parquet: row 1, field 'target' is empty \(null\); every row needs a value"
    ):
        load_dataset(dataset)


# ------------------------------------------------------------------------------ item table


def test_duplicate_item_ids(dataset):
    rewrite(dataset, "items.parquet", item_id=pa.array([10, 11, 11, 13], pa.int64()))
    with pytest.raises(
        DataError, match=r"items\.parquet: rows \[1, 2\], field 'item_id' = 11 is duplicated.*unique id"
    ):
        load_dataset(dataset)


def test_item_without_semantic_ids(dataset):
    rewrite(dataset, "items.parquet", sid=pa.array([["<a_1>", "<b_1>"], [], ["<a_2>", "<b_1>"], ["<a_2>", "<b_2>"]]))
    with pytest.raises(
        DataError, match=r"items\.parquet: row 1 \(item_id 11\), field 'sid' is empty.*tawin items build-sids"
    ):
        load_dataset(dataset)


def test_semantic_id_with_a_null_token(dataset):
    rewrite(
        dataset,
        "items.parquet",
        sid=pa.array([["<a_1>", None], ["<a_1>", "<b_2>"], ["<a_2>", "<b_1>"], ["<a_2>", "<b_2>"]]),
    )
    with pytest.raises(
        DataError, match=r"items\.parquet: row 0 \(item_id 10\), field 'sid' .* holds an empty or null token"
    ):
        load_dataset(dataset)


def test_semantic_ids_of_inconsistent_depth(dataset):
    rewrite(
        dataset, "items.parquet", sid=pa.array([["<a_1>", "<b_1>"], ["<a_1>", "<b_2>"], ["<a_2>"], ["<a_2>", "<b_2>"]])
    )
    with pytest.raises(
        DataError,
        match=r"items\.parquet: row 2 \(item_id 12\), field 'sid' has 1 tokens while most items have 2; .*same depth",
    ):
        load_dataset(dataset)


def test_two_items_with_the_same_semantic_id(dataset):
    rewrite(
        dataset,
        "items.parquet",
        sid=pa.array([["<a_1>", "<b_1>"], ["<a_1>", "<b_2>"], ["<a_1>", "<b_2>"], ["<a_2>", "<b_2>"]]),
    )
    with pytest.raises(
        DataError, match=r"items\.parquet: rows \[1, 2\] \(item_ids 11 and 12\), field 'sid' .* same for both items"
    ):
        load_dataset(dataset)


# ------------------------------------------------------------------------------ types and ids


@pytest.mark.parametrize(
    ("file", "column", "values", "pattern"),
    [
        (
            "items.parquet",
            "item_id",
            pa.array([10.0, 11.5, 12.0, 13.0]),
            r"items\.parquet: field 'item_id' has type double \(row 0 holds 10\.0\); it must hold integers \(int64\)",
        ),
        (
            "train.parquet",
            "user",
            pa.array(["u1", "u2"]),
            r"train\.parquet: field 'user' has type string \(row 0 holds 'u1'\); it must hold integers",
        ),
        (
            "train.parquet",
            "target",
            pa.array(["11", "12"]),
            r"train\.parquet: field 'target' has type string \(row 0 holds '11'\); it must hold integers",
        ),
        (
            "train.parquet",
            "timestamp",
            pa.array(["monday", "tuesday"]),
            r"train\.parquet: field 'timestamp' has type string \(row 0 holds 'monday'\); it must hold integers",
        ),
        (
            "valid.parquet",
            "history",
            pa.array([["10", "11"]]),
            r"valid\.parquet: field 'history' has type list<element: string> "
            r"\(row 0 holds \['10', '11'\]\); it must be a list of integer item ids",
        ),
        (
            "valid.parquet",
            "history",
            pa.array([10]),
            r"valid\.parquet: field 'history' has type int64 .*it must be a list of integer item ids",
        ),
        (
            "items.parquet",
            "title",
            pa.array([1, 2, 3, 4]),
            r"items\.parquet: field 'title' has type int64 \(row 0 holds 1\); it must hold strings",
        ),
        (
            "items.parquet",
            "sid",
            pa.array(["<a_1><b_1>", "x", "y", "z"]),
            r"items\.parquet: field 'sid' has type string .*it must be a list of token strings",
        ),
        (
            "items.parquet",
            "sid",
            pa.array([[1, 1], [1, 2], [2, 1], [2, 2]]),
            r"items\.parquet: field 'sid' has type list<element: int64> .*it must be a list of token strings",
        ),
    ],
    ids=[
        "item_id-float",
        "user-string",
        "target-string",
        "timestamp-string",
        "history-strings",
        "history-scalar",
        "title-int",
        "sid-string",
        "sid-ints",
    ],
)
def test_bad_types(dataset, file, column, values, pattern):
    rewrite(dataset, file, **{column: values})
    with pytest.raises(DataError, match=pattern):
        load_dataset(dataset)


@pytest.mark.parametrize(
    ("file", "column", "values", "pattern"),
    [
        (
            "items.parquet",
            "item_id",
            pa.array([10, -11, 12, 13], pa.int64()),
            r"items\.parquet: row 1, field 'item_id' = -11 is negative",
        ),
        (
            "train.parquet",
            "user",
            pa.array([1, -2], pa.int64()),
            r"train\.parquet: row 1, field 'user' = -2 is negative",
        ),
        (
            "train.parquet",
            "target",
            pa.array([-11, 12], pa.int64()),
            r"train\.parquet: row 0, field 'target' = -11 is negative",
        ),
        (
            "train.parquet",
            "history",
            pa.array([[10], [10, -1]], pa.list_(pa.int64())),
            r"train\.parquet: row 1, field 'history' = -1 is negative",
        ),
    ],
    ids=["item_id", "user", "target", "history"],
)
def test_negative_ids(dataset, file, column, values, pattern):
    rewrite(dataset, file, **{column: values})
    with pytest.raises(DataError, match=pattern + r".*ids must be integers ≥ 0"):
        load_dataset(dataset)


def test_unsigned_id_past_int64(dataset):
    rewrite(dataset, "train.parquet", user=pa.array([1, 2**63 + 5], pa.uint64()))
    with pytest.raises(
        DataError, match=r"train\.parquet: row 1, field 'user' = 9223372036854775813 does not fit in int64"
    ):
        load_dataset(dataset)


# ------------------------------------------------------------------------- files and columns


@pytest.mark.parametrize("missing", ["valid.parquet", "items.parquet"])
def test_missing_file(dataset, missing):
    (dataset / missing).unlink()
    with pytest.raises(
        DataError,
        match=(
            rf"tiny: missing file\(s\) {missing}; a dataset folder "
            r"needs items\.parquet and the train, valid and test splits"
        ),
    ):
        load_dataset(dataset)


def test_missing_splits_are_listed_together(dataset):
    (dataset / "valid.parquet").unlink()
    (dataset / "test.parquet").unlink()
    with pytest.raises(DataError, match=r"missing file\(s\) valid\.parquet, test\.parquet"):
        load_dataset(dataset)


def test_missing_folder(tmp_path):
    with pytest.raises(
        DataError, match=r"nowhere: dataset folder not found\. Pass a folder made by `tawin data import`"
    ):
        load_dataset(tmp_path / "nowhere")


def test_folder_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"file: is a file, not a dataset folder"):
        load_dataset(tmp_path / "file")


def test_renamed_column_suggests_the_rename(dataset):
    table = pq.read_table(dataset / "train.parquet")
    pq.write_table(table.rename_columns(["row", "user", "hist", "target", "timestamp"]), dataset / "train.parquet")
    with pytest.raises(
        DataError, match=r"train\.parquet: wrong columns: missing \['history'\], found .*rename 'hist' → 'history'"
    ):
        load_dataset(dataset)


def test_missing_column(dataset):
    rewrite(dataset, "items.parquet", sid=None)
    with pytest.raises(
        DataError, match=r"items\.parquet: wrong columns: missing \['sid'\].*add the column\(s\) \['sid'\]"
    ):
        load_dataset(dataset)


def test_item_table_without_rows(dataset):
    pq.write_table(pq.read_table(dataset / "items.parquet").slice(0, 0), dataset / "items.parquet")
    with pytest.raises(DataError, match=r"items\.parquet: the file has no rows; a catalogue needs at least one item"):
        load_dataset(dataset)


def test_empty_split(dataset):
    pq.write_table(pq.read_table(dataset / "valid.parquet").slice(0, 0), dataset / "valid.parquet")
    with pytest.raises(
        DataError,
        match=r"valid\.parquet: the file has no rows \(empty split\(s\): valid\); training and evaluation need samples",
    ):
        load_dataset(dataset)
    assert len(load_dataset(dataset, allow_empty_splits=True).splits["valid"]) == 0


def test_not_a_parquet_file(dataset):
    (dataset / "valid.parquet").write_text("row,user,history\n")
    with pytest.raises(DataError, match=r"valid\.parquet: not a readable parquet file"):
        load_dataset(dataset)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [("{", r"dataset\.json: not valid JSON"), ("[1, 2]", r"dataset\.json: must hold a JSON object")],
)
def test_bad_dataset_json(dataset, text, pattern):
    (dataset / "dataset.json").write_text(text)
    with pytest.raises(DataError, match=pattern):
        load_dataset(dataset)


# ------------------------------------------------------------------------------ .inter importer


def test_read_inter_valid(tmp_path):
    users, histories, targets = read_inter(write_inter(tmp_path / "x.inter", "1\t10 11\t12\r\n2\t10\t11\n"))
    assert (users, histories, targets) == ([1, 2], [[10, 11], [10]], [12, 11])


def test_inter_wrong_header(tmp_path):
    path = write_inter(tmp_path / "x.inter", "1\t10\t11\n", header="user\thistory\ttarget\n")
    with pytest.raises(
        DataError, match=r"x\.inter: line 1 header is \['user', 'history', 'target'\]; expected \['user_id:token'"
    ):
        read_inter(path)


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (
            "1\t10\t11\n2\t10 x7\t11\n",
            r"line 3, field 'item_id_list' holds 'x7', which is not a non-negative integer id",
        ),
        ("1\t10\t11\nu2\t10\t11\n", r"line 3, field 'user_id' holds 'u2'"),
        ("1\t10\t1.5\n", r"line 2, field 'item_id' holds '1\.5'"),
        (
            "1\t10\t-4\n",
            r"line 2, field 'item_id' holds '-4', which is not a non-negative integer id; ids must be integers ≥ 0",
        ),
    ],
    ids=["history", "user", "target-float", "target-negative"],
)
def test_inter_non_integer_ids(tmp_path, body, pattern):
    path = write_inter(tmp_path / "x.inter", body)
    with pytest.raises(DataError, match=r"x\.inter: " + pattern):
        read_inter(path)


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (
            "1\t10\t11\n2\t10 11\n",
            r"x\.inter: line 3 has 2 tab-separated field\(s\) .*expected 3 \(user_id, item_id_list, item_id\)",
        ),
        ("1 10 11\n", r"x\.inter: line 2 has 1 tab-separated field\(s\) \('1 10 11'\); expected 3"),
        ("1\t10\t11\t5\n", r"x\.inter: line 2 has 4 tab-separated field\(s\)"),
    ],
    ids=["too-few", "spaces", "too-many"],
)
def test_inter_wrong_field_count(tmp_path, body, pattern):
    path = write_inter(tmp_path / "x.inter", body)
    with pytest.raises(DataError, match=pattern):
        read_inter(path)


def test_inter_empty_history(tmp_path):
    path = write_inter(tmp_path / "x.inter", "1\t10\t11\n2\t\t11\n")
    with pytest.raises(DataError, match=r"x\.inter: line 3, field 'item_id_list' is empty"):
        read_inter(path)


def test_inter_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"x\.inter: file not found; expected a RecBole \.inter split"):
        read_inter(tmp_path / "x.inter")


def test_import_minionerec_valid(tmp_path):
    dataset = import_minionerec(minionerec_folder(tmp_path))
    assert dataset.name == "Toy" and len(dataset.items) == 4


def test_import_unknown_item(tmp_path):
    root = minionerec_folder(tmp_path, "1\t10 55\t11\n")
    with pytest.raises(
        DataError, match=r"Toy\.train\.inter: line 2, field 'item_id_list' refers to item 55, which is in neither"
    ):
        import_minionerec(root)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("{not json", r"Toy\.index\.json: not valid JSON"),
        ('{"ten": ["<a_1>"]}', r"Toy\.index\.json: key 'ten' is not an integer item id"),
        (
            '{"10": "<a_1><b_1>"}',
            r"Toy\.index\.json: item 10 has semantic ID '<a_1><b_1>'; each entry must be a list of token strings",
        ),
    ],
    ids=["json", "key", "value"],
)
def test_import_bad_index_json(tmp_path, text, pattern):
    root = minionerec_folder(tmp_path)
    (root / "minionerec" / "index" / "Toy.index.json").write_text(text)
    with pytest.raises(DataError, match=pattern):
        import_minionerec(root)


def test_items_without_sids_load_when_not_required(dataset):
    from tawin.data.formats.canonical_tables import load_items

    rewrite(dataset, "items.parquet", sid=None)
    items = load_items(dataset / "items.parquet", require_sids=False)
    assert items.sid == [()] * 4 and items.item_id.tolist() == [10, 11, 12, 13]
    rewrite(dataset, "items.parquet", item_id=pa.array([10, 10, 12, 13], pa.int64()))
    with pytest.raises(DataError, match=r"rows \[0, 1\], field 'item_id' = 10 is duplicated"):
        load_items(dataset / "items.parquet", require_sids=False)
