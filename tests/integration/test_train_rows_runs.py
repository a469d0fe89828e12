"""The train rows every stage sees: `data.latest_train_rows` for SFT, RL, popularity and an
experiment's baselines, `tawin baseline --latest-train-rows`, and what SFT logs it trains on
(`sft.dedupe_windows`). Tiny model, a few steps; the folder's identity includes the row option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tawin.cli import main
from tawin.eval.evaluate import Predictions

from conftest import TINY_BASE, TINY_OVERRIDES, fails, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

LATEST = 96
FAST = [
    *TINY_OVERRIDES,
    "threads=1",
    "sft.epochs=1",
    "sft.eval_rows=8",
    "sft.eval_beams=10",
    "sft.batch_size=32",
    "rl.max_steps=2",
    "rl.batch_size=4",
    "rl.group_size=8",
    "rl.eval_rows=4",
    "eval.sample_size=16",
    "eval.num_beams=10",
    "eval.ks=1,3,5,10",
]


@pytest.fixture()
def small(tmp_path, industrial_small) -> Path:
    from tawin.data.formats.canonical import save_dataset

    return save_dataset(industrial_small, tmp_path / "data")


@pytest.fixture()
def seen(monkeypatch) -> dict[str, list]:
    """Stage → the train `row` numbers it was handed (SFT/RL: the encoded split; baselines: the dataset)."""
    import tawin.baselines.sequential as sequential
    import tawin.run.baseline as baseline
    import tawin.run.stages as stages

    found: dict[str, list] = {}

    def loop(name, real):
        def wrapper(recommender, dataset, train, valid, config, run, rows=None):
            found[name] = train.rows.row.tolist()
            return real(recommender, dataset, train, valid, config, run, rows=rows)

        return wrapper

    def on_dataset(name, real):
        def wrapper(kind_or_dataset, *args, **kwargs):
            dataset = kind_or_dataset if name == "popularity" else args[0]
            found[name] = dataset.split("train").row.tolist()
            return real(kind_or_dataset, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(stages, "train_sft", loop("sft", stages.train_sft))
    monkeypatch.setattr(stages, "train_rl", loop("rl", stages.train_rl))
    for module in (stages, baseline):  # `tawin run`'s stage and `tawin baseline popularity`
        monkeypatch.setattr(module, "popularity_predictions", on_dataset("popularity", module.popularity_predictions))
    monkeypatch.setattr(sequential, "train_baseline", on_dataset("sequential", sequential.train_baseline))
    return found


def sft_data_record(folder: Path) -> dict:
    return next(json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if "train/rows" in line)


def test_a_run_trains_every_stage_on_the_latest_rows_and_refuses_to_resume_on_others(
    tmp_path, capsys, industrial_small, small, seen
):
    from tawin.data.protocol.sampling import maximal_windows

    out = tmp_path / "run"
    argv = [
        "run",
        "--out",
        str(out),
        "--dataset",
        str(small),
        "--no-progress",
        "--set",
        "stages=[sft,rl,popularity]",
        "--set",
        f"data.latest_train_rows={LATEST}",
        "--set",
        "sft.history_loss_weight=1",
        "--set",
        "sft.dedupe_windows=true",
    ]
    for override in FAST:
        argv += ["--set", override]
    assert main(argv) == 0
    n_train = len(industrial_small.splits["train"])
    latest = list(range(n_train - LATEST, n_train))
    assert seen == {"sft": latest, "rl": latest, "popularity": latest}
    # SFT logs what it trains on: the unique maximal windows among the kept rows.
    train = industrial_small.splits["train"].take(latest)
    windows = maximal_windows(train.history_RH, train.history_len, train.target, train.user)
    record = sft_data_record(out / "sft")
    assert 0 < record["train/rows"] == len(windows) < LATEST
    assert record["train/tokens_per_epoch"] > record["train/loss_tokens_per_epoch"] > 0
    tokens = record["train/tokens_per_epoch"]
    assert f"sft: {len(windows)} train rows, {tokens} tokens per epoch" in capsys.readouterr().out
    # A folder trained on the latest 96 rows never resumes as a run on all of them.
    before = snapshot(out)
    fails([*argv, "--set", "data.latest_train_rows=0"], capsys, r"data\.latest_train_rows: 96 → 0")
    assert snapshot(out) == before


def test_sft_logs_its_rows_and_tokens_without_deduplication(tmp_path, capsys, small):
    out = tmp_path / "sft"
    argv = ["sft", "--out", str(out), "--dataset", str(small), "--no-progress", "--set", "sft.first_train_rows=64"]
    for override in FAST:
        argv += ["--set", override]
    assert main(argv) == 0
    record = sft_data_record(out)
    assert record["train/rows"] == 64 and record["step"] == 0
    assert record["train/tokens_per_epoch"] > record["train/loss_tokens_per_epoch"] > 0
    assert "sft: 64 train rows" in capsys.readouterr().out


def test_tawin_baseline_trains_on_the_latest_rows_and_keeps_them_in_its_identity(
    tmp_path, capsys, industrial_small, small, seen
):
    n_train = len(industrial_small.splits["train"])
    out = tmp_path / "gru4rec"
    argv = [
        "baseline",
        "gru4rec",
        "--dataset",
        str(small),
        "--out",
        str(out),
        "--latest-train-rows",
        str(LATEST),
        "--set",
        "max_epochs=1",
        "--set",
        "hidden=8",
    ]
    assert main(argv) == 0
    assert seen["sequential"] == list(range(n_train - LATEST, n_train))
    assert yaml.safe_load((out / "config.yaml").read_text())["latest_train_rows"] == LATEST
    before, _ = snapshot(out), capsys.readouterr()
    fails([*argv[:-6], "--latest-train-rows", "50", *argv[-4:]], capsys, r"latest_train_rows: 96 → 50")
    assert snapshot(out) == before
    assert (
        main(
            [
                "baseline",
                "popularity",
                "--dataset",
                str(small),
                "--out",
                str(tmp_path / "pop"),
                "--latest-train-rows",
                "10",
            ]
        )
        == 0
    )
    assert seen["popularity"] == list(range(n_train - 10, n_train))


def test_an_experiment_gives_its_baselines_the_rows_of_its_llm_cells(tmp_path, industrial_small, small, seen):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": {**TINY_BASE, "data": {"dataset": str(small), "latest_train_rows": LATEST}},
                "seeds": [0],
                "methods": {"SFT only": None},
                "baselines": ["gru4rec", "popularity"],
                "baseline": {"max_epochs": 1, "hidden": 8},
                "report": {"candidate": "SFT only", "bootstrap_resamples": 100},
            }
        )
    )
    assert main(["experiment", str(config), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    n_train = len(industrial_small.splits["train"])
    latest = list(range(n_train - LATEST, n_train))
    assert seen == {"sft": latest, "sequential": latest, "popularity": latest}
    # The baseline cells wrote predictions.jsonl on the LLM cell's rows, which the report sets against them.
    out = tmp_path / "out"
    rows = Predictions.read_jsonl(out / "seed_0" / "sft-only" / "predictions.jsonl").row_R
    for cell in ("gru4rec", "popularity"):
        predictions = Predictions.read_jsonl(out / "seed_0" / cell / "predictions.jsonl")
        assert np.array_equal(predictions.row_R, rows)
        metrics = json.loads((out / "seed_0" / cell / "metrics.json").read_text())
        assert predictions.metrics(TINY_BASE["eval"]["ks"]) == metrics
    section = (out / "report.md").read_text().split("## Against the classical baselines")[1]
    assert "| GRU4Rec | Recall@1 |" in section and "| Popularity | NDCG@10 |" in section
    assert f"GRU4Rec: {len(rows)} rows, 1 seed(s)" in section
