"""End-to-end: `tawin run` on the shipped data with a tiny model, outputs and their contracts."""

from __future__ import annotations

import json

import pytest
import yaml

from tawin.cli import main

from conftest import TINY_OVERRIDES

FAST = TINY_OVERRIDES + [
    "sft.epochs=1",
    "sft.first_train_rows=256",
    "sft.eval_rows=16",
    "sft.batch_size=32",
    "sft.warmup_steps=2",
    "rl.max_steps=2",
    "rl.batch_size=4",
    "rl.group_size=8",
    "rl.eval_rows=8",
    "eval.sample_size=24",
    "eval.num_beams=20",
    "eval.batch_size=8",
]


def run_cli(*args):
    argv = list(args) + ["--set", "threads=1"]
    for override in FAST:
        argv += ["--set", override]
    return main(argv + (["--no-progress"] if args[0] != "recommend" else []))


@pytest.mark.slow
def test_run_writes_metrics_predictions_and_table(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("run", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "| SFT |" in printed and "| Popularity |" in printed and "TAWin" in printed
    for method in ("sft", "rl", "popularity"):
        metrics = json.loads((out / "eval" / method / "metrics.json").read_text())
        assert set(metrics) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (1, 3, 5, 10, 20)} | {"n_rows"}
        assert metrics["n_rows"] == 24
        lines = (out / "eval" / method / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == 24
        record = json.loads(lines[0])
        assert set(record) == {"row", "user", "target", "items", "scores"}
        assert len(record["items"]) == 20 and len(set(record["items"])) == 20
        assert record["scores"] == sorted(record["scores"], reverse=True)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["hidden_size"] == 32 and saved["eval"]["num_beams"] == 20
    assert (out / "results.md").exists() and "peak RSS" in (out / "results.md").read_text()
    # `tawin recommend` shows titled top-K items for a history, from the same checkpoint.
    capsys.readouterr()
    assert run_cli("recommend", "--checkpoint", str(out / "sft" / "best"), "--history", "117,118", "--k", "5") == 0
    shown = capsys.readouterr().out
    assert "top-5 next items" in shown and shown.count("logp=") == 5
    assert run_cli("recommend", "--checkpoint", str(out / "sft" / "best"), "--history", "999999") == 2
    assert "not in the catalogue" in capsys.readouterr().err
    # Re-running the same command resumes: every stage is already done and nothing changes.
    before = (out / "eval" / "rl" / "predictions.jsonl").read_bytes()
    assert run_cli("run", "--out", str(out)) == 0
    assert (out / "eval" / "rl" / "predictions.jsonl").read_bytes() == before


def test_eval_popularity_and_recommend(tmp_path, capsys):
    out = tmp_path / "pop"
    assert (
        main(["eval", "--checkpoint", "popularity", "--out", str(out), "--set", "eval.sample_size=50", "--no-progress"])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_rows"] == 50 and 0 <= metrics["recall@10"] <= 1


def test_eval_popularity_and_the_popularity_baseline_agree(tmp_path, capsys):
    """`tawin eval --checkpoint popularity` and `tawin baseline popularity` share one path: same test metrics."""
    assert main(["eval", "--checkpoint", "popularity", "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    assert main(["baseline", "popularity", "--out", str(tmp_path / "baseline")]) == 0
    from_eval = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert json.loads((tmp_path / "baseline" / "metrics.json").read_text()) == from_eval
    assert (
        from_eval["n_rows"] == 4533 and len((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()) == 4533
    )
