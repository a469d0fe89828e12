"""`tawin run` with the classical sequential baselines as stages (issue #23): `sasrec` and `gru4rec`
train on the run's own train rows, are scored on eval.split by the LLM's metric code and Ks, and
each adds a row to the results table and to the cost table, in RUN/eval/<name>/. Their numbers are
those of `tawin baseline` with the same seed and data; a rerun skips a finished one.

The shipped catalogue with 256/64/64 rows: SASRec and GRU4Rec stop early at their default
settings within ~15 epochs there (about a second each on one thread).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tawin.cli import main
from tawin.eval.evaluate import Predictions
from tawin.metrics.ranking import TOP_KS

from conftest import fails, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = 3
"""The run's seed (not the baselines' default 0), so that the baselines are seen to take it."""
LATEST = 96
LABELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}


@pytest.fixture(scope="module")
def small(tmp_path_factory, industrial_small) -> Path:
    from tawin.data.formats.canonical import save_dataset

    return save_dataset(industrial_small, tmp_path_factory.mktemp("data") / "small")


def run_argv(out: Path, dataset: Path, *settings: str, stages: str = "popularity,sasrec,gru4rec") -> list[str]:
    argv = ["run", "--out", str(out), "--dataset", str(dataset), "--no-progress"]
    for setting in ("threads=1", f"seed={SEED}", f"stages=[{stages}]", *settings):
        argv += ["--set", setting]
    return argv


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small, one_thread) -> Path:
    """A `tawin run` of popularity, SASRec and GRU4Rec on the test split (every row, the default Ks)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(run_argv(out, small)) == 0
    return out


def read(path: Path):
    return json.loads(path.read_text())


def test_the_baselines_are_rows_of_the_results_and_cost_tables(finished):
    results = read(finished / "results.json")
    assert list(results["results"]) == ["Popularity", "SASRec", "GRU4Rec"]
    assert [record["stage"] for record in results["stages"]] == ["load data", "popularity", "sasrec", "gru4rec"]
    report = (finished / "results.md").read_text()
    for kind, label in LABELS.items():
        folder = finished / "eval" / kind
        metrics, result = read(folder / "metrics.json"), read(folder / "result.json")
        assert results["results"][label] == metrics == result["test"]
        assert metrics["n_rows"] == 64 and {"recall@20", "ndcg@20"} <= set(metrics)
        assert result["train_rows"] == 256 and result["config"]["seed"] == SEED
        assert f"| {label} | {metrics['recall@1']:.4f} |" in report
        assert f"| {kind} | " in report  # its wall-clock in the cost table
        # predictions.jsonl: every evaluated row, eval.num_beams (default 50) items, and the metrics.
        predictions = Predictions.read_jsonl(folder / "predictions.jsonl")
        assert predictions.items_RK.shape == (64, 50) and predictions.metrics(TOP_KS.scored) == metrics
        np.testing.assert_array_equal(predictions.row_R, np.arange(64))
    assert results["results"]["SASRec"]["recall@10"] > 0  # the equality checks below compare real numbers


def test_the_metrics_are_those_of_tawin_baseline_with_the_same_seed_and_data(finished, small, tmp_path):
    for kind in LABELS:
        alone = tmp_path / kind
        assert main(["baseline", kind, "--dataset", str(small), "--out", str(alone), "--set", f"seed={SEED}"]) == 0
        assert read(finished / "eval" / kind / "metrics.json") == read(alone / "metrics.json")
        # predictions.jsonl holds test (beside metrics.json), predictions_valid.jsonl valid; 50 items
        # each, as eval.num_beams and baseline.eval_top both default to 50.
        same = (finished / "eval" / kind / "predictions.jsonl").read_text()
        assert (alone / "predictions.jsonl").read_text() == same
        valid = Predictions.read_jsonl(alone / "predictions_valid.jsonl")
        assert valid.metrics(TOP_KS.scored) == read(alone / "result.json")["valid"] and len(valid.row_R) == 64


def test_a_rerun_skips_the_finished_baselines_and_redoes_an_unfinished_one(finished, small, tmp_path, monkeypatch):
    import tawin.run.stages as stages

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = {kind: snapshot(out / "eval" / kind) for kind in LABELS}
    trained: list[str] = []
    real = stages.run_baseline

    def spy(kind, *args, **kwargs):
        trained.append(kind)
        return real(kind, *args, **kwargs)

    monkeypatch.setattr(stages, "run_baseline", spy)
    assert main(run_argv(out, small)) == 0
    assert trained == []
    assert {kind: snapshot(out / "eval" / kind) for kind in LABELS} == before
    earlier = {record["stage"]: record for record in read(finished / "results.json")["stages"]}
    for record in read(out / "results.json")["stages"]:
        if record["stage"] in LABELS:
            assert record == {**earlier[record["stage"]], "earlier": True}
    # A folder without its done-marker is trained again, to the same numbers; so is one made before
    # baselines wrote predictions.jsonl.
    (out / "eval" / "gru4rec" / "metrics.json").unlink()
    (out / "eval" / "sasrec" / "predictions.jsonl").unlink()
    assert main(run_argv(out, small)) == 0
    assert trained == ["sasrec", "gru4rec"]
    for kind in LABELS:
        for name in ("metrics.json", "predictions.jsonl"):
            assert (out / "eval" / kind / name).read_text() == (finished / "eval" / kind / name).read_text()


def test_the_baselines_learn_from_the_latest_train_rows(small, tmp_path):
    out = tmp_path / "run"
    assert main(run_argv(out, small, f"data.latest_train_rows={LATEST}", stages="sasrec,gru4rec")) == 0
    for kind in LABELS:
        assert read(out / "eval" / kind / "result.json")["train_rows"] == LATEST
        alone = tmp_path / kind
        assert (
            main(
                [
                    "baseline",
                    kind,
                    "--dataset",
                    str(small),
                    "--out",
                    str(alone),
                    "--latest-train-rows",
                    str(LATEST),
                    "--set",
                    f"seed={SEED}",
                ]
            )
            == 0
        )
        assert read(out / "eval" / kind / "metrics.json") == read(alone / "metrics.json")


def test_the_baselines_are_scored_on_the_evaluated_rows_at_the_eval_ks(small, industrial_small, tmp_path):
    from tawin.baselines.sequential import SequentialBaselineConfig, evaluate_baseline, train_baseline
    from tawin.data.dataset import Dataset
    from tawin.data.protocol.sampling import sample_rows

    out = tmp_path / "run"
    settings = ("eval.split=valid", "eval.sample_size=16", "eval.sample_seed=5", "eval.ks=1,5", "eval.num_beams=10")
    assert main(run_argv(out, small, *settings, stages="popularity,gru4rec")) == 0
    metrics = read(out / "eval" / "gru4rec" / "metrics.json")
    assert read(out / "results.json")["results"]["GRU4Rec"] == metrics
    assert read(out / "eval" / "popularity" / "metrics.json")["n_rows"] == metrics["n_rows"] == 16
    # The reference: early stopping on every valid row, scores on the 16 rows of the LLM's sample.
    model, _ = train_baseline("gru4rec", industrial_small, SequentialBaselineConfig(seed=SEED), log=None)
    rows = sample_rows(64, 16, 5)
    assert not np.array_equal(rows, np.arange(16))
    sampled = Dataset(
        "sampled",
        industrial_small.items,
        {**industrial_small.splits, "valid": industrial_small.splits["valid"].take(rows)},
        {},
    )
    assert metrics == evaluate_baseline(model, sampled, "valid", ks=(1, 5))[0]


def test_a_misspelt_stage_is_refused_with_the_closest_name(small, tmp_path, capsys):
    fails(
        run_argv(tmp_path / "run", small, stages="popularity,sasrek"),
        capsys,
        r"stages\[1\]='sasrek' is not one of \[.*'gru4rec'\] \(did you mean 'sasrec'\?\)",
    )
    assert not (tmp_path / "run").exists()
