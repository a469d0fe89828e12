"""Tests of tawin.data.formats.raw (readers) and tawin.data.protocol.prepare (the protocol: filtering,
splitting) on small raw files."""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tawin.data.dataset import SPLITS
from tawin.data.formats.canonical import load_dataset
from tawin.data.protocol.filtering import k_core_filter
from tawin.data.protocol.prepare import (
    PrepareConfig,
    add_prepare_arguments,
    format_summary,
    prepare_dataset,
    prepare_main,
)
from tawin.data.protocol.splitting import build_samples, split_sizes
from tawin.errors import ConfigError, DataError

SOURCES = ["amazon2018", "amazon2023", "csv"]
KEEP_ALL = PrepareConfig(k_core=1, min_items=0, window_start=None, window_end=None)
"""Every rule off except the title rule: tests switch on the rule they exercise."""


def utc(year: int, month: int, day: int = 1, second: int = 0) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) + second


T0 = utc(2018, 1, 1)


def write_lines(path: Path, lines: list[str], gz: bool) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_raw(tmp_path: Path, source: str, events, titles: dict, descriptions: dict | None = None) -> tuple[Path, Path]:
    """Raw files of `source`. events: (user, item, unix seconds); titles: item → title, None for
    a metadata line without a title; items missing from `titles` get no metadata line."""
    descriptions = descriptions or {}
    if source == "amazon2018":
        reviews = [
            json.dumps(
                {"reviewerID": u, "asin": i, "overall": 4.0, "unixReviewTime": t, "reviewText": "ok", "vote": "2"}
            )
            for u, i, t in events
        ]
        meta = [
            json.dumps(
                {
                    "asin": i,
                    **({"title": t} if t is not None else {}),
                    "description": descriptions.get(i, []),
                    "brand": "B",
                    "category": ["Industrial"],
                }
            )
            for i, t in titles.items()
        ]
        return write_lines(tmp_path / "Cat_5.json.gz", reviews, True), write_lines(
            tmp_path / "meta_Cat.json.gz", meta, True
        )
    if source == "amazon2023":
        reviews = [
            json.dumps(
                {"user_id": u, "parent_asin": i, "asin": i + "-x", "rating": 5.0, "timestamp": t * 1000, "text": "ok"}
            )
            for u, i, t in events
        ]
        meta = [
            json.dumps(
                {
                    "parent_asin": i,
                    **({"title": t} if t is not None else {}),
                    "description": descriptions.get(i, []),
                    "store": "S",
                }
            )
            for i, t in titles.items()
        ]
        return write_lines(tmp_path / "Cat.jsonl", reviews, False), write_lines(
            tmp_path / "meta_Cat.jsonl.gz", meta, True
        )
    log, items = tmp_path / "log.csv", tmp_path / "items.csv"
    with log.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "timestamp", "rating"])
        writer.writerows((u, i, t, 3) for u, i, t in events)
    with items.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "title", "description"])
        writer.writerows((i, t or "", descriptions.get(i, "")) for i, t in titles.items())
    return log, items


def run(tmp_path, events, titles=None, config=KEEP_ALL, source="csv", **kwargs):
    titles = titles if titles is not None else {i: f"title of {i}" for _, i, _ in events}
    log, items = write_raw(tmp_path, source, events, titles, kwargs.pop("descriptions", None))
    return prepare_dataset(source, log, items, config, progress=False, **kwargs)


def rows(dataset, split=None) -> list[tuple[str, list[str], str]]:
    """(user index, history asins, target asin) of a split, or of train+valid+test in order."""
    asin = dataset.items.asin
    out = []
    for name in [split] if split else SPLITS:
        part = dataset.split(name)
        out += [
            (int(part.user[i]), [asin[x] for x in part.history(i)], asin[int(part.target[i])]) for i in range(len(part))
        ]
    return out


# ---------------------------------------------------------------------------- sources


def test_amazon2018_end_to_end(tmp_path):
    events = [("u2", "B", T0 + 5), ("u1", "A", T0 + 1), ("u1", "B", T0 + 2), ("u2", "C", T0 + 3), ("u1", "C", T0 + 4)]
    titles = {"A": "Alpha  &amp; Co", "B": "Beta", "C": "Gamma", "Z": "unused"}
    out = tmp_path / "out"
    dataset, summary = run(
        tmp_path, events, titles, source="amazon2018", out=out, descriptions={"A": ["first", "second"], "B": "plain"}
    )

    assert dataset.name == "Cat"
    assert dataset.items.asin == ["B", "A", "C"], "items numbered by first appearance in file order"
    assert dataset.items.title == ["Beta", "Alpha & Co", "Gamma"]
    assert dataset.items.description == ["plain", "first second", None]
    assert all(sid == () for sid in dataset.items.sid)
    # u2 is user 0 (first line); u1: A(+1) B(+2) C(+4); u2: C(+3) B(+5)
    assert rows(dataset) == [(1, ["A"], "B"), (1, ["A", "B"], "C"), (0, ["C"], "B")]
    stamps = np.concatenate([dataset.split(s).timestamp for s in SPLITS])
    assert stamps.tolist() == [T0 + 2, T0 + 4, T0 + 5]
    assert summary["read"] == {**summary["read"], "interactions": 5, "users": 2, "items": 3, "bad_lines_skipped": 0}

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["prepare"]["raw_files"] == {"interactions": "Cat_5.json.gz", "items": "meta_Cat.json.gz"}
    assert meta["prepare"]["config"]["k_core"] == 1 and meta["prepare"]["source"] == "amazon2018"
    assert "Ni, Jiacheng Li, Julian McAuley" in meta["attribution"]
    assert pq.read_table(out / "users.parquet").column("raw_id").to_pylist() == ["u2", "u1"]
    with pytest.raises(DataError, match="build-sids"):
        load_dataset(out)  # SIDs come from the next step


def test_amazon2023_reads_parent_asin_and_milliseconds(tmp_path):
    events = [("u1", "P1", T0 + 10), ("u1", "P2", T0 + 20)]
    dataset, summary = run(tmp_path, events, source="amazon2023", descriptions={"P1": ["Made", "of steel"]})
    assert dataset.items.asin == ["P1", "P2"] and dataset.items.description[0] == "Made of steel"
    assert dataset.split("test").timestamp.tolist() == [T0 + 20], "ms → s"
    assert summary["raw_files"] == {"interactions": "Cat.jsonl", "items": "meta_Cat.jsonl.gz"}


def test_csv_with_configured_columns_delimiter_and_unit(tmp_path):
    log, items = tmp_path / "log.tsv.gz", tmp_path / "items.tsv"
    write_lines(log, ["ts\tuid\tiid", f"{(T0 + 1) * 1000}\tx\ti1", f"{(T0 + 2) * 1000}\tx\ti2", ""], True)
    write_lines(items, ["iid\ttitle", "i1\tOne", "i2\tTwo"], False)
    config = replace(
        KEEP_ALL,
        csv_user_column="uid",
        csv_item_column="iid",
        csv_time_column="ts",
        csv_delimiter="\t",
        csv_time_unit="ms",
    )
    dataset, _ = prepare_dataset("csv", log, items, config, progress=False)
    assert rows(dataset) == [(0, ["i1"], "i2")] and dataset.items.title == ["One", "Two"]
    assert dataset.split("test").timestamp.tolist() == [T0 + 2]


def test_csv_header_without_the_configured_columns(tmp_path):
    log, items = write_raw(tmp_path, "csv", [("u", "a", T0)], {"a": "A"})
    with pytest.raises(
        DataError, match=r"log\.csv: line 1: the header .* lacks column\(s\) \['when'\].*csv_time_column"
    ):
        prepare_dataset("csv", log, items, replace(KEEP_ALL, csv_time_column="when"), progress=False)


# ---------------------------------------------------------------------------- rules


@pytest.mark.parametrize("source", SOURCES)
def test_title_rule(tmp_path, source):
    twenty, twentyone = " ".join(["w"] * 20), " ".join(["w"] * 21)
    titles = {"ok": twenty, "long": twentyone, "untitled": None}  # "nometa" has no metadata line
    events = [("u", item, T0 + k) for k, item in enumerate(["ok", "long", "untitled", "nometa", "ok"])]
    dataset, summary = run(tmp_path, events, titles, source=source)
    assert dataset.items.asin == ["ok"] and rows(dataset) == [(0, ["ok"], "ok")]
    title = summary["rules"][0]
    assert (title["items_without_title"], title["items_title_too_long"], title["items_without_metadata"]) == (2, 1, 1)
    assert (title["interactions_dropped"], title["items_dropped"]) == (3, 3)

    dataset, summary = run(tmp_path, events, titles, config=replace(KEEP_ALL, max_title_words=None), source=source)
    assert len(dataset.items) == 4 and summary["rules"][0]["interactions_dropped"] == 0
    assert dataset.items.title[dataset.items.asin.index("nometa")] == ""


def test_window_bounds_are_start_inclusive_end_month_inclusive(tmp_path):
    end = utc(2018, 3, 1)  # window_end "2018-02" keeps all of February
    events = [("u", "early", T0 - 1), ("u", "a", T0), ("u", "b", end - 1), ("u", "late", end)]
    dataset, summary = run(tmp_path, events, config=replace(KEEP_ALL, window_start="2018-01", window_end="2018-02"))
    assert rows(dataset) == [(0, ["a"], "b")]
    assert summary["window"] == {
        **summary["window"],
        "start_unix": T0,
        "end_unix_exclusive": end,
        "moved_back_years": 0,
    }
    assert summary["rules"][1]["interactions_dropped"] == 2


def test_window_start_moves_back_a_year_while_too_few_items(tmp_path):
    events = [
        ("u1", "a", utc(2018, 2)),
        ("u1", "b", utc(2018, 3)),
        ("u2", "c", utc(2017, 5)),
        ("u2", "a", utc(2018, 4)),
        ("u3", "d", utc(2015, 6)),
        ("u3", "b", utc(2018, 5)),
    ]
    config = replace(KEEP_ALL, window_start="2018-01", window_end="2018-12", min_items=4)
    dataset, summary = run(tmp_path, events, config=config)
    window = summary["window"]
    assert [(a["window_start"], a["items"]) for a in window["attempts"]] == [
        ("2018-01", 2),
        ("2017-01", 3),
        ("2016-01", 3),
        ("2015-01", 4),
    ]
    assert (window["start"], window["moved_back_years"], window["start_unix"]) == ("2015-01", 3, utc(2015, 1))
    assert len(dataset.items) == 4
    assert dataset.meta["prepare"]["summary"]["window"]["start"] == "2015-01"

    # Too few items even with everything: stop once the start precedes the earliest interaction.
    _, summary = run(tmp_path, events, config=replace(config, min_items=100))
    assert summary["window"]["start"] == "2015-01" and summary["window"]["attempts"][-1]["items"] == 4
    assert "start moved back 3 year(s) from 2018-01" in format_summary(summary)


def test_k_core_removals_cascade(tmp_path):
    """u_bad (4) goes → X drops to 4 → v1 drops to 4 → Y drops to 4; four rounds, then stable."""
    core_users, core_items = [f"c{n}" for n in range(5)], list("ABCDE")
    baskets = {u: core_items for u in core_users}
    baskets |= {"u_bad": ["X", "A", "B", "C"], "v1": ["X", "Y", "A", "B", "C"]}
    baskets |= {f"v{n}": ["X"] + core_items for n in (2, 3, 4)} | {f"w{n}": ["Y"] + core_items for n in range(4)}
    clock = iter(range(T0, T0 + 1000))
    events = [(u, item, next(clock)) for u, items in baskets.items() for item in items]
    dataset, summary = run(tmp_path, events, config=replace(KEEP_ALL, k_core=5))
    k_core = summary["rules"][2]
    assert (k_core["rounds"], k_core["users_dropped"], k_core["items_dropped"], k_core["interactions_dropped"]) == (
        4,
        2,
        2,
        16,
    )
    assert sorted(dataset.items.asin) == core_items
    assert summary["kept"]["users"] == 5 + 3 + 4
    counts = np.bincount(np.concatenate([dataset.split(s).target for s in SPLITS]), minlength=5)
    assert counts.sum() == len(events) - 16 - 12, "one sample per kept interaction but each user's first"


def slow_k_core(pairs: list[tuple[int, int]], k: int) -> list[bool]:
    """Remove one under-k user or item at a time until none is left."""
    alive = [True] * len(pairs)
    while True:
        for side in (0, 1):
            counts: dict[int, int] = {}
            for pair, keep in zip(pairs, alive):
                if keep:
                    counts[pair[side]] = counts.get(pair[side], 0) + 1
            weak = next((node for node, c in counts.items() if c < k), None)
            if weak is not None:
                alive = [keep and pair[side] != weak for pair, keep in zip(pairs, alive)]
                break
        else:
            return alive


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=60), st.integers(1, 4))
def test_k_core_filter_matches_slow_loop(pairs, k):
    user = np.array([p[0] for p in pairs], dtype=np.int64)
    item = np.array([p[1] for p in pairs], dtype=np.int64)
    keep, _ = k_core_filter(user, item, np.ones(len(pairs), dtype=bool), k)
    assert keep.tolist() == slow_k_core(pairs, k)


def test_timestamp_ties_keep_file_order(tmp_path):
    # u2 appears first in the file, so it is user 0. u1's P and Q share a time: file order wins
    # within the user; equal target times across users go by user id, then position.
    events = [("u2", "S", T0), ("u1", "P", T0 + 10), ("u1", "Q", T0 + 10), ("u1", "R", T0 + 5), ("u2", "T", T0 + 10)]
    dataset, _ = run(tmp_path, events)
    assert rows(dataset) == [(0, ["S"], "T"), (1, ["R"], "P"), (1, ["R", "P"], "Q")]
    swapped = [events[0], events[2], events[1], events[3], events[4]]
    dataset, _ = run(tmp_path, swapped)
    assert rows(dataset) == [(0, ["S"], "T"), (1, ["R"], "Q"), (1, ["R", "Q"], "P")]


def test_history_holds_the_previous_ten_items_at_most(tmp_path):
    items = [f"i{n:02d}" for n in range(15)]
    events = [("u", item, T0 + n) for n, item in enumerate(items)]
    dataset, _ = run(tmp_path, events)
    assert [h for _, h, _ in rows(dataset)] == [items[max(0, n - 10) : n] for n in range(1, 15)]
    assert [t for _, _, t in rows(dataset)] == items[1:]
    dataset, _ = run(tmp_path, events, config=replace(KEEP_ALL, max_history=3))
    assert rows(dataset)[-1] == (0, items[11:14], items[14])


def test_build_samples_orders_by_target_time_user_and_position():
    samples = build_samples(np.array([1, 0, 1, 0, 1]), np.array([5, 6, 7, 8, 9]), np.array([3, 1, 2, 2, 2]), 10)
    # user 1 sorted: 7(t2) 9(t2) 5(t3); user 0: 6(t1) 8(t2)
    assert samples.target_S.tolist() == [8, 9, 5] and samples.user_S.tolist() == [0, 1, 1]
    assert samples.history_S == [[6], [7], [7, 9]] and samples.position_S.tolist() == [1, 1, 2]


def test_temporal_split_sizes_and_boundaries(tmp_path):
    rng = random.Random(7)
    events = [
        (f"u{u}", f"i{rng.randrange(12)}", T0 + rng.randrange(40)) for u in range(9) for _ in range(rng.randrange(3, 9))
    ]
    dataset, summary = run(tmp_path, events)
    n = sum(summary["splits"][s]["samples"] for s in SPLITS)
    assert n == len(events) - 9
    assert [len(dataset.split(s)) for s in SPLITS] == [int(0.8 * n), int(0.9 * n) - int(0.8 * n), n - int(0.9 * n)]
    times = [dataset.split(s).timestamp for s in SPLITS]
    assert all((np.diff(t) >= 0).all() for t in times), "each split sorted by target time"
    assert times[1].min() >= times[0].max() and times[2].min() >= times[1].max()


@given(st.integers(0, 10**7))
def test_split_rounding_is_d3s_int_of_float(n):
    assert split_sizes(n) == (int(0.8 * n), int(0.9 * n) - int(0.8 * n), n - int(0.9 * n))


def test_split_rounding_reproduces_industrial():
    assert split_sizes(45_324) == (36_259, 4_532, 4_533)


def test_leave_one_out(tmp_path):
    sequences = {"a": ["1", "2", "3", "4", "5"], "b": ["6", "7", "8"], "c": ["9", "1"]}
    events = [(u, item, T0 + 10 * n + k) for k, (u, seq) in enumerate(sequences.items()) for n, item in enumerate(seq)]
    dataset, summary = run(tmp_path, events, config=replace(KEEP_ALL, split="leave_one_out"))
    assert rows(dataset, "test") == [(2, ["9"], "1"), (1, ["6", "7"], "8"), (0, ["1", "2", "3", "4"], "5")]
    assert rows(dataset, "valid") == [(1, ["6"], "7"), (0, ["1", "2", "3"], "4")]
    assert rows(dataset, "train") == [(0, ["1"], "2"), (0, ["1", "2"], "3")]
    assert summary["split"] == "leave_one_out"
    assert "per user" in format_summary(summary)


def test_nothing_survives(tmp_path):
    with pytest.raises(DataError, match=r"no interaction survives .*k_core dropped 2.*lower k_core"):
        run(tmp_path, [("u", "a", T0), ("u", "b", T0 + 1)], config=replace(KEEP_ALL, k_core=5))


# ---------------------------------------------------------------------------- malformed input

GOOD18 = json.dumps({"reviewerID": "u", "asin": "a", "overall": 5.0, "unixReviewTime": T0})
GOOD23 = json.dumps({"user_id": "u", "parent_asin": "a", "rating": 5, "timestamp": T0 * 1000})
MALFORMED = [
    ("amazon2018", [GOOD18, GOOD18, '{"reviewerID": "u", "asin": '], 3, r"not valid JSON"),
    ("amazon2018", [GOOD18, json.dumps({"reviewerID": "u", "unixReviewTime": T0})], 2, r"\['asin'\] missing"),
    (
        "amazon2018",
        [GOOD18, GOOD18, GOOD18, json.dumps({"reviewerID": "u", "asin": "b", "unixReviewTime": "yesterday"})],
        4,
        r"'unixReviewTime' = 'yesterday' is not a number",
    ),
    (
        "amazon2018",
        [json.dumps({"reviewerID": "u", "asin": "b", "unixReviewTime": T0, "overall": "great"}), GOOD18],
        1,
        r"'overall' = 'great' is not a number",
    ),
    ("amazon2023", [GOOD23, "[1, 2]"], 2, r"JSON list, not an object"),
    ("amazon2023", [GOOD23, json.dumps({"parent_asin": "a", "timestamp": 1})], 2, r"\['user_id'\] missing"),
    ("csv", ["user,item,timestamp", "u,a,1", "u,b,noon"], 3, r"'timestamp' = 'noon' is not a number"),
    ("csv", ["user,item,timestamp", "u,a", "u,b,2"], 2, r"has 2 fields but the header has 3"),
    ("csv", ["user,item,timestamp", "u,,2", "u,b,2"], 2, r"\['item'\] empty"),
]


def write_malformed(tmp_path, source, lines):
    if source == "csv":
        log = write_lines(tmp_path / "log.csv", lines, False)
        items = write_lines(tmp_path / "items.csv", ["item,title", "a,A", "b,B"], False)
    else:
        log = write_lines(tmp_path / "reviews.json.gz", lines, True)
        key = "asin" if source == "amazon2018" else "parent_asin"
        items = write_lines(tmp_path / "meta.json.gz", [json.dumps({key: i, "title": i.upper()}) for i in "ab"], True)
    return log, items


@pytest.mark.parametrize(("source", "lines", "line", "problem"), MALFORMED)
def test_malformed_line_names_file_line_and_field(tmp_path, source, lines, line, problem):
    log, items = write_malformed(tmp_path, source, lines)
    with pytest.raises(DataError, match=rf"{log.name}: line {line}: .*{problem}.*skip_bad_lines=True"):
        prepare_dataset(source, log, items, KEEP_ALL, progress=False)


@pytest.mark.parametrize(("source", "lines", "line", "problem"), MALFORMED)
def test_skip_bad_lines_counts_them(tmp_path, source, lines, line, problem):
    log, items = write_malformed(tmp_path, source, lines + lines[1:] if source == "csv" else lines + lines)
    dataset, summary = prepare_dataset(source, log, items, replace(KEEP_ALL, skip_bad_lines=True), progress=False)
    assert summary["read"]["bad_lines_skipped"] == 2
    assert summary["read"]["files"][0]["bad_lines_skipped"] == 2
    assert f"line {line}:" in summary["read"]["files"][0]["first_problem"]
    assert summary["read"]["interactions"] == summary["read"]["files"][0]["lines"] - 2
    assert "2 bad line(s) skipped" in format_summary(summary)


def test_bad_metadata_line(tmp_path):
    log = write_lines(tmp_path / "r.json.gz", [GOOD18, GOOD18], True)
    meta = write_lines(
        tmp_path / "meta.json.gz", [json.dumps({"asin": "a", "title": "A"}), json.dumps({"title": "no id"})], True
    )
    with pytest.raises(DataError, match=r"meta\.json\.gz: line 2: field 'asin' missing"):
        prepare_dataset("amazon2018", log, meta, KEEP_ALL, progress=False)


def test_truncated_gzip(tmp_path):
    log = tmp_path / "r.json.gz"
    log.write_bytes(gzip.compress((GOOD18 + "\n").encode() * 1000)[:-30])
    meta = write_lines(tmp_path / "meta.json", [json.dumps({"asin": "a", "title": "A"})], False)
    with pytest.raises(DataError, match=r"r\.json\.gz: after line \d+: the gzip stream is corrupt or truncated"):
        prepare_dataset("amazon2018", log, meta, KEEP_ALL, progress=False)


# ---------------------------------------------------------------------------- config and CLI


def test_config_problems_are_reported_together(tmp_path):
    log, items = write_raw(tmp_path, "csv", [("u", "a", T0)], {"a": "A"})
    config = PrepareConfig(k_core=0, window_start="2017-13", max_history=11, split="random", split_ratio=(0, 1, 1))
    with pytest.raises(ConfigError) as error:
        prepare_dataset("csv", log, items, config, progress=False)
    for text in ("k_core=0", "window_start='2017-13'", "max_history=11", "split='random'", "split_ratio=(0, 1, 1)"):
        assert text in str(error.value)
    with pytest.raises(
        ConfigError,
        match=r"k_core=0 must be .*the paper uses 5.*window_start='2019-01' is after window_end='2018-11'; swap",
    ):
        prepare_dataset("csv", log, items, PrepareConfig(k_core=0, window_start="2019-01"), progress=False)


def test_inputs_are_checked_before_reading(tmp_path):
    log, _ = write_raw(tmp_path, "csv", [("u", "a", T0)], {"a": "A"})
    with pytest.raises(ConfigError, match=r"no item metadata given while max_title_words=20.*max_title_words=None"):
        prepare_dataset("csv", log, None, KEEP_ALL, progress=False)
    with pytest.raises(ConfigError) as error:
        prepare_dataset("yelp", log, tmp_path / "missing.json", KEEP_ALL, progress=False)
    assert "source='yelp' must be one of" in str(error.value) and "missing.json not found" in str(error.value)


def test_prepare_main_yaml_then_set_overrides(tmp_path, capsys):
    log, items = write_raw(
        tmp_path,
        "csv",
        [("u", "a", T0), ("u", "b", T0 + 1), ("v", "a", T0 + 2), ("v", "c", T0 + 3)],
        {"a": "A", "b": "B", "c": "C"},
    )
    (tmp_path / "prepare.yaml").write_text(
        "k_core: 1\nmin_items: 0\nwindow_start: 2000-01\nwindow_end: null\nsplit: temporal\n"
    )
    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    out = tmp_path / "ds"
    args = parser.parse_args(
        [
            "csv",
            str(log),
            "--items",
            str(items),
            "--out",
            str(out),
            "--name",
            "tiny",
            "--config",
            str(tmp_path / "prepare.yaml"),
            "--set",
            "split=leave_one_out",
            "--skip-bad-lines",
            "--no-progress",
        ]
    )
    assert prepare_main(args) == 0
    printed = capsys.readouterr().out
    assert f"tawin items build-sids {out}" in printed and "kept" in printed
    meta = json.loads((out / "dataset.json").read_text())
    config = meta["prepare"]["config"]
    assert (
        config["k_core"],
        config["window_start"],
        config["window_end"],
        config["split"],
        config["skip_bad_lines"],
    ) == (1, "2000-01", None, "leave_one_out", True)
    assert meta["name"] == "tiny" and meta["rows"] == {"train": 0, "valid": 0, "test": 2}

    bad = parser.parse_args(["csv", str(log), "--items", str(items), "--out", str(out), "--set", "k_cor=3"])
    with pytest.raises(ConfigError, match="did you mean 'k_core'"):
        prepare_main(bad)
