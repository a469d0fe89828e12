"""`tawin run --expect FILE`: after the table, each number against the range another machine measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tawin.cli import main
from tawin.run.expected import Expectation, compare, read_expectation

POPULARITY_ONLY = [
    "--set",
    "stages=[popularity]",
    "--set",
    "eval.sample_size=200",
    "--set",
    "threads=1",
    "--no-progress",
]


def write(path, ranges, made_by="3 seeds, test"):
    path.write_text(json.dumps({"made_by": made_by, "ranges": ranges}))
    return path


def test_run_prints_each_number_inside_or_outside_its_range(tmp_path, capsys):
    main(["run", "--out", str(tmp_path / "run"), *POPULARITY_ONLY])
    recall3 = json.loads((tmp_path / "run" / "results.json").read_text())["results"]["Popularity"]["recall@3"]
    capsys.readouterr()
    inside = write(tmp_path / "inside.json", {"Popularity": {"recall@3": [recall3 - 0.01, recall3 + 0.01]}})
    assert main(["run", "--out", str(tmp_path / "run"), "--expect", str(inside), *POPULARITY_ONLY]) == 0
    printed = capsys.readouterr().out
    assert f"recall@3 {recall3:.4f} in [" in printed and "All 1 numbers lie inside the expected ranges." in printed

    outside = write(
        tmp_path / "outside.json",
        {"Popularity": {"recall@3": [recall3 + 0.01, recall3 + 0.02]}, "SFT": {"recall@3": [0.0, 1.0]}},
    )
    assert main(["run", "--out", str(tmp_path / "run"), "--expect", str(outside), *POPULARITY_ONLY]) == 0
    printed = capsys.readouterr().out
    assert "OUTSIDE" in printed and "1 of 1 numbers lie outside" in printed
    assert "SFT: not in this run's table (missing, not checked)" in printed


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "not a readable JSON file"),
        (json.dumps({"ranges": {}}), "needs a non-empty object 'ranges'"),
        (json.dumps({"ranges": {"SFT": {"recall@3": [0.2, 0.1]}}}), r"low ≤ high"),
        (json.dumps({"ranges": {"SFT": {"recall@3": [0.1, "x"]}}}), r"must be \[low, high\]"),
    ],
)
def test_a_bad_expectation_file_fails_before_any_work(tmp_path, capsys, content, message):
    path = tmp_path / "expected.json"
    if content is not None:
        path.write_text(content)
    assert main(["run", "--out", str(tmp_path / "run"), "--expect", str(path), *POPULARITY_ONLY]) == 2
    err = capsys.readouterr().err
    assert "--expect" in err and re.search(message, err), err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_compare_counts_only_numbers_the_run_has():
    expectation = Expectation(
        "m", {"A": {"recall@1": (0.1, 0.2), "ndcg@10": (0.0, 0.05)}, "B": {"recall@1": (0.0, 1.0)}}
    )
    lines, inside, checked = compare({"A": {"recall@1": 0.15, "ndcg@10": 0.06}}, expectation)
    assert (inside, checked) == (1, 2)
    assert lines[0] == "  A: recall@1 0.1500 in [0.1000, 0.2000]; ndcg@10 0.0600 OUTSIDE [0.0000, 0.0500]"
    assert "B: not in this run's table" in lines[1]


def test_the_demo_expectation_file_reads(tmp_path):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "demo" / "expected.json"
    if not path.exists():
        pytest.skip("the demo's expected ranges are not committed yet")
    expectation = read_expectation(path)
    assert {"SFT", "Popularity"} <= set(expectation.ranges) and expectation.made_by
