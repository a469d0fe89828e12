"""The in-sample mechanism experiment: RL on a fixed seeded set of train prompts, every cell
scored on those prompts (`evals: in_sample`) and on test, summarised in summary.json."""

from __future__ import annotations

import json

import yaml

from tawin.experiments.grid import expand_cells
from tawin.experiments.parse import load_experiment
from tawin.rl.rows import split_train_rows

from conftest import REPO, TINY_BASE


def test_shipped_topk_control_config_trains_and_scores_the_same_prompts():
    experiment = load_experiment(REPO / "configs" / "experiments" / "industrial-topk-control.yaml")
    (in_sample,) = experiment.evals
    assert in_sample.name == "in_sample" and in_sample.eval.split == "train"
    rows = experiment.base.rl.rows
    assert (in_sample.eval.sample_size, in_sample.eval.sample_seed) == (
        rows.sample_size,
        rows.sample_seed,
    ) and rows.sample_size > 0
    # the rows the in-sample evaluation scores are those the one rule gives RL (the same seeded sampler)
    for n_train in (5000, 36259):
        for seed in experiment.seeds:
            assert in_sample.eval.evaluated_rows(n_train).tolist() == split_train_rows(n_train, rows, seed).rl.tolist()
    anchors = sorted(c.config.rl.anchor for c in expand_cells(experiment) if c.anchor_mode == "grid" and c.seed == 0)
    assert anchors == [0, 1, 2, 4, 8] and len(experiment.seeds) >= 3


def test_topk_control_experiment_writes_the_summary_and_adds_evals_later(tmp_path, capsys, industrial_small):
    from tawin.cli import main
    from tawin.data.formats.canonical import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    spec = {
        "name": "tiny-topk",
        "base": {
            **TINY_BASE,
            "data": {"dataset": str(data)},
            "rl": {**TINY_BASE["rl"], "rows": {"sample_size": 8, "sample_seed": 1}, "epochs": 2, "max_steps": 0},
        },
        "seeds": [0],
        "methods": {
            "SFT only": None,
            "ReRe": {"negatives": "beam", "reward": "rank", "weighting": "none"},
            "TAWin": {"weighting": "tawin", "anchor": {"grid": [0, 2]}},
        },
        "report": {"reference": "ReRe"},
    }
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(spec, allow_unicode=True))
    out = tmp_path / "out"
    argv = ["experiment", str(config), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert not (out / "summary.json").exists()  # no in-sample evaluation yet
    trained = {p: p.stat().st_mtime_ns for p in out.glob("seed_0/**/model.safetensors")}
    spec["evals"] = {"in_sample": {"split": "train", "sample_size": 8, "sample_seed": 1}}
    config.write_text(yaml.safe_dump(spec, allow_unicode=True))
    capsys.readouterr()
    assert main(argv) == 0  # added to the finished cells: scored, not retrained
    assert "adding its diagnostics or further evaluations" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in trained} == trained
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"anchors", "in_sample", "test", "sft", "rere", "rows", "passes"}
    assert summary["anchors"] == [0, 2] and summary["rows"] == 8 and summary["passes"] == 2
    for part in ("in_sample", "test"):
        assert set(summary[part]) == {"recall@1", "recall@3", "recall@5"} and all(
            len(v) == 2 for v in summary[part].values()
        )
        assert set(summary["sft"][part]) == set(summary["rere"][part]) == {"recall@1", "recall@3", "recall@5"}
    results = json.loads((out / "results.json").read_text())
    cell = results["cells"]["seed_0/tawin-a2"]
    assert summary["in_sample"]["recall@3"][1] == cell["evals"]["in_sample"]["recall@3"]
    assert summary["test"]["recall@3"][1] == cell["metrics"]["recall@3"]
    predictions = [
        json.loads(line) for line in (out / "seed_0" / "tawin-a2" / "eval_in_sample" / "predictions.jsonl").open()
    ]
    from tawin.data.protocol.sampling import sample_rows

    assert sorted(p["row"] for p in predictions) == sorted(sample_rows(256, 8, 1).tolist())  # the RL prompts
    report = (out / "topk_control.md").read_text()
    assert (
        "## In-sample" in report
        and "peaks at σ*" in report
        and (out / "topk_control.png").read_bytes()[:4] == b"\x89PNG"
    )
