"""What `tawin recommend` and `tawin.Recommender.recommend` accept (issue #22, items 2, 8, 9).

The output file is checked before any ranking and never replaces the input or, without
--overwrite, an existing file; the Python API refuses histories and K of other forms with the
`tawin.errors` types; an empty history is named as such; a history cut to the latest
MAX_HISTORY items says so once per call. A freshly initialised tiny model on the 4-item tiny
dataset: nothing trains.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import tawin
from tawin.cli import main
from tawin.errors import DataError, UserError

from conftest import fails, tiny_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, dataset) -> Path:
    from conftest import tiny_model_checkpoint

    return tiny_model_checkpoint(dataset, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def recommender(checkpoint, dataset) -> tawin.Recommender:
    return tawin.Recommender.from_checkpoint(checkpoint, dataset=str(dataset))


@pytest.fixture()
def no_ranking(monkeypatch):
    """Fail the test if the beam search starts: the checks must come before the work."""

    def ranked(*args, **kwargs):
        raise AssertionError("ranked before the output was checked")

    monkeypatch.setattr("tawin.run.recommend.beam_predictions", ranked)


def recommend(checkpoint, dataset, *flags: str) -> list[str]:
    return ["recommend", "--checkpoint", str(checkpoint), "--dataset", str(dataset), "--k", "2", *flags]


def histories_file(folder: Path, *histories: list[int]) -> Path:
    path = folder / "histories.jsonl"
    path.write_text("".join(json.dumps(history) + "\n" for history in histories))
    return path


# ------------------------------------------------------------------ --output


def test_an_unwritable_output_is_refused_before_ranking(checkpoint, dataset, tmp_path, capsys, no_ranking):
    source = histories_file(tmp_path, [10, 11])
    (tmp_path / "blocker").write_text("a file, not a folder")
    target = tmp_path / "blocker" / "o.jsonl"
    fails(
        recommend(checkpoint, dataset, "--input", str(source), "--output", str(target)),
        capsys,
        r"--output .*blocker/o\.jsonl: .*blocker is a file, not a folder; pass --output a path in a folder",
    )


def test_a_folder_without_write_permission_is_refused_before_ranking(
    checkpoint, dataset, tmp_path, capsys, no_ranking, monkeypatch
):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # root may write anywhere, so the denial is simulated
    source = histories_file(tmp_path, [10, 11])
    fails(
        recommend(checkpoint, dataset, "--input", str(source), "--output", str(tmp_path / "new" / "o.jsonl")),
        capsys,
        r"--output .*o\.jsonl: cannot write a file in .*new \(Permission denied\); "
        r"pass --output a path in a folder you can write to",
    )
    assert not (tmp_path / "new").exists()  # the folder made for it is removed again


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_ranking(checkpoint, dataset, tmp_path, capsys, no_ranking):
    source = histories_file(tmp_path, [10, 11])
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        fails(
            recommend(checkpoint, dataset, "--input", str(source), "--output", str(locked / "o.jsonl")),
            capsys,
            r"cannot write a file in .*locked \(Permission denied\)",
        )
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_the_output_is_never_the_input(spelling, overwrite, checkpoint, dataset, tmp_path, capsys, no_ranking):
    source = histories_file(tmp_path, [10, 11])
    target = tmp_path / f"{spelling}.jsonl"
    if spelling == "same":
        target = source
    elif spelling == "dotted":
        target = tmp_path / "." / ".." / tmp_path.name / source.name
    elif spelling in ("symlink", "hardlink"):
        (target.symlink_to if spelling == "symlink" else target.hardlink_to)(source)
    fails(
        recommend(checkpoint, dataset, "--input", str(source), "--output", str(target), *overwrite),
        capsys,
        r"--output .* is the --input file .*histories\.jsonl: writing it would replace the histories; "
        r"pass another --output",
    )
    assert source.read_text() == "[10, 11]\n"


def test_an_existing_output_is_kept_unless_overwrite(checkpoint, dataset, tmp_path, capsys, no_ranking, monkeypatch):
    source = histories_file(tmp_path, [10, 11])
    target = tmp_path / "recs.jsonl"
    target.write_text("yesterday's recommendations\n")
    fails(
        recommend(checkpoint, dataset, "--input", str(source), "--output", str(target)),
        capsys,
        r"--output .*recs\.jsonl exists; pass --overwrite to replace it .* or another --output path",
    )
    # With --overwrite, a run that fails while ranking still leaves the old file and no temporary one.
    with pytest.raises(AssertionError, match="ranked before"):
        main(recommend(checkpoint, dataset, "--input", str(source), "--output", str(target), "--overwrite"))
    assert target.read_text() == "yesterday's recommendations\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["histories.jsonl", "recs.jsonl"]
    monkeypatch.undo()
    assert main(recommend(checkpoint, dataset, "--input", str(source), "--output", str(target), "--overwrite")) == 0
    assert [json.loads(line)["history"] for line in target.read_text().splitlines()] == [[10, 11]]


def test_the_help_says_what_happens_to_the_output(capsys):
    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    recommend_help = " ".join(capsys.readouterr().out.split())
    assert "never the --input file" in recommend_help
    assert "--overwrite replace an existing --output file (without it, one is refused)" in recommend_help


# ------------------------------------------------------------------ empty and long histories


def test_an_empty_history_is_named_as_such(checkpoint, dataset, tmp_path, capsys, recommender):
    empty = r"the history is empty, and a prompt needs at least one item; pass 1 or more known item ids"
    fails(recommend(checkpoint, dataset, "--history", ","), capsys, rf"--history: {empty}")
    source = histories_file(tmp_path, [10], [])
    fails(
        recommend(checkpoint, dataset, "--input", str(source), "--output", str(tmp_path / "o.jsonl")),
        capsys,
        rf"histories\.jsonl: line 2, field 'history': {empty}",
    )
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(DataError, match=rf"history 1: {empty}"):
        recommender.recommend([[10], []], k=2)


def test_a_long_history_is_cut_with_one_warning_on_stderr(checkpoint, dataset, tmp_path, capsys):
    assert main(recommend(checkpoint, dataset, "--history", ",".join(["10", "11", "12"] * 5))) == 0
    err = capsys.readouterr().err
    assert err == (
        "tawin: warning: the history has 15 items: each prompt keeps only the latest 10, the most a "
        "training row holds, so the older items do not count.\n"
    )
    source = histories_file(tmp_path, [10, 11] * 6, [12], [13] * 10_000)
    assert main(recommend(checkpoint, dataset, "--input", str(source), "--output", str(tmp_path / "o.jsonl"))) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("tawin: warning: 2 of 3 histories are longer than 10 items (up to 10000)")


def test_the_api_warns_once_per_call_and_keeps_the_latest_items(recommender):
    with pytest.warns(UserWarning) as caught:
        ranked = recommender.recommend([[10, 11, 12, 13] * 2500, [11] * 20, [12]], k=2)
    assert [str(w.message) for w in caught] == [
        "2 of 3 histories are longer than 10 items (up to 10000): each prompt keeps only the latest 10, the most a "
        "training row holds, so the older items do not count."
    ]
    assert caught[0].filename == __file__  # it points at the caller
    assert ranked[0].history == [12, 13] + [10, 11, 12, 13] * 2 and ranked[1].history == [11] * 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recommender.recommend([[10] * 10], k=2)


# ------------------------------------------------------------------ the Python API's input forms


@pytest.mark.parametrize(
    ("histories", "pattern"),
    [
        (None, r"histories: got None; pass one history as a list of integer item ids, oldest first, e\.g\. \[117, "),
        ("10", r"histories: got the text '10' \(item ids are integers: convert text with int\(\.\.\.\)\)"),
        (
            (h for h in [[10]]),
            r"histories: got a generator, which has no length and is read once \(pass list\(\.\.\.\) ",
        ),
        ({10, 11}, r"histories: got a set; pass one history as a list"),
        ([[True]], r"history 0, position 0: got True \(bool\), not an item id"),
        ([[10], [11, "12"]], r"history 1, position 1: got the text '12' .*, not an item id"),
        ([10, 11.0], r"history 0, position 1: got 11\.0 \(float\), not an item id"),
        ([[10], 11], r"history 1: got an int; pass one history as a list"),
        (
            np.array([[10.0, 11.0]]),
            r"history 0: a 1-D numpy array of float64; .* \(or a 1-D or 2-D integer numpy array\)",
        ),
        (np.array([True, False]), r"history 0: a 1-D numpy array of bool"),
        (np.zeros((1, 1, 1), dtype=np.int64), r"histories: a 3-D numpy array"),
    ],
)
def test_the_api_refuses_other_forms(histories, pattern, recommender):
    with pytest.raises(DataError, match=pattern):
        recommender.recommend(histories, k=2)


@pytest.mark.parametrize(
    ("k", "pattern"),
    [
        ("3", r"k='3' \(str\) must be an integer in \[1, 4\], e\.g\. k=4"),
        (True, r"k=True \(bool\) must be an integer in \[1, 4\]"),
        (2.0, r"k=2\.0 \(float\) must be an integer in \[1, 4\]"),
    ],
)
def test_the_api_refuses_a_k_that_is_not_an_integer(k, pattern, recommender):
    with pytest.raises(UserError, match=pattern):
        recommender.recommend([[10, 11]], k=k)


def test_the_api_accepts_one_history_lists_of_them_and_integer_arrays(recommender):
    expected = recommender.recommend([[10, 11], [12]], k=3)
    assert [r.items for r in recommender.recommend([10, 11], k=3)] == [expected[0].items]
    for one in ((10, 11), np.array([10, 11]), [np.array([10, 11], dtype=np.int32)], [[np.int64(10), 11]]):
        assert recommender.recommend(one, k=np.int64(3))[0].items == expected[0].items, one
    several = recommender.recommend(np.array([[10, 11], [11, 12]]), k=3)
    assert several[0].items == expected[0].items and several[0].history == [10, 11]
    assert recommender.recommend([], k=3) == []
