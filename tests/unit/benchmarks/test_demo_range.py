"""benchmarks/demo_range.py without training: on finished synthetic seed folders (results.json and
each eval folder's predictions.jsonl), seeds.json holds the paired bootstrap of RL − SFT, RL − SASRec
and RL − GRU4Rec in one shape on the rows every file holds, a baseline whose predictions.jsonl some
seed lacks (runs made before baselines wrote them) is recorded as not available, and the lines are
printed after the table."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO, write_ranked_predictions

sys.path.insert(0, str(REPO / "benchmarks"))
import demo_range as bench  # noqa: E402

RL_NAME = "TAWin (σ*=2, τ=1, beam)"
ROWS = 4
RANK_OF_TARGET = {"rl": 0, "sft": 2, "sasrec": None, "gru4rec": 7}
"""Where each eval folder puts the target in every row's list (None: absent): RL − SFT is 1 at
Recall@1 and 0 at Recall@3, RL − GRU4Rec is 1 at Recall@5 and 0 at Recall@10, RL − SASRec 1 everywhere."""
REFERENCE_KEYS = ("rl_minus_sft", "rl_minus_sasrec", "rl_minus_gru4rec")


def write_seed(out, seed: int, without: tuple[str, ...] = ()) -> None:
    """A finished `tawin run` of the demo: results.json (every method at .1 + .02·seed) and each eval
    folder's predictions.jsonl but those in `without`; seed 1's SFT predictions lack the last row."""
    folder = out / f"seed_{seed}"
    for stage in RANK_OF_TARGET:
        if stage not in without:
            rows = range(ROWS - 1) if (stage, seed) == ("sft", 1) else range(ROWS)
            write_ranked_predictions(folder / "eval" / stage / "predictions.jsonl", rows, RANK_OF_TARGET[stage])
    metrics = {**{m: 0.1 + 0.02 * seed for m in bench.METRICS}, "n_rows": ROWS}
    results = {method: metrics for method in ("SFT", RL_NAME, "Popularity", "SASRec", "GRU4Rec")}
    (folder / "results.json").write_text(json.dumps({"results": results, "stages": [], "total_seconds": 550.0}))


def test_rl_minus_each_reference_has_one_shape_on_the_common_rows(tmp_path):
    for seed in (0, 1):
        write_seed(tmp_path, seed)
    found = {key: bench.rl_minus(tmp_path, [0, 1], key.removeprefix("rl_minus_")) for key in REFERENCE_KEYS}

    fields = set(found["rl_minus_sft"]["recall@1"])
    assert {"mean_diff", "ci_low", "ci_high", "p_value", "n_rows"} <= fields
    for key in REFERENCE_KEYS:
        assert list(found[key]) == bench.METRICS
        assert all(set(result) == fields for result in found[key].values())
    assert found["rl_minus_sft"]["recall@1"]["n_rows"] == ROWS - 1  # the rows every file holds
    assert found["rl_minus_sasrec"]["recall@1"]["n_rows"] == ROWS
    assert found["rl_minus_sft"]["recall@1"]["mean_diff"] == pytest.approx(1.0)
    assert found["rl_minus_sft"]["recall@3"]["mean_diff"] == pytest.approx(0.0)
    assert found["rl_minus_gru4rec"]["recall@5"]["mean_diff"] == pytest.approx(1.0)
    assert found["rl_minus_gru4rec"]["recall@10"]["mean_diff"] == pytest.approx(0.0)
    assert found["rl_minus_sasrec"]["ndcg@10"]["mean_diff"] == pytest.approx(1.0)


def test_a_baseline_without_predictions_in_some_seed_is_not_available(tmp_path):
    write_seed(tmp_path, 0)
    write_seed(tmp_path, 1, without=("sasrec",))  # a run made before SASRec wrote predictions.jsonl
    found = bench.rl_minus(tmp_path, [0, 1], "sasrec")
    assert isinstance(found, str) and found.startswith("not available: no seed_1/eval/sasrec/predictions.jsonl")
    assert "seed_0" not in found
    assert isinstance(bench.rl_minus(tmp_path, [0, 1], "gru4rec"), dict)


def test_main_records_the_three_bootstraps_and_prints_them_last(tmp_path, monkeypatch, capsys):
    out, results = tmp_path / "runs", tmp_path / "results"
    write_seed(out, 0)
    write_seed(out, 1, without=("gru4rec",))
    (out / "commit.txt").write_text("abc1234 2026-12-08\n")  # as made_at records it when the first seed starts
    monkeypatch.setattr(bench, "RESULTS", results)
    bench.main(["--out", str(out), "--seeds", "0", "1"])  # both seeds finished: nothing runs

    record = json.loads((results / "seeds.json").read_text())
    assert [key for key in record if key.startswith("rl_minus_")] == list(REFERENCE_KEYS)
    assert set(record["rl_minus_sasrec"]) == set(record["rl_minus_sft"]) == set(bench.METRICS)
    assert record["rl_minus_gru4rec"].startswith("not available: no seed_1/eval/gru4rec/predictions.jsonl")
    assert (record["commit"], record["date"]) == ("abc1234", "2026-12-08")
    assert set(json.loads((results / "expected.json").read_text())["ranges"]) == set(record["seeds"]["0"]["results"])

    printed = capsys.readouterr().out.splitlines()
    tail = printed[-(2 * len(bench.METRICS) + 2) :]
    assert tail[0] == "RL − SFT recall@1: +1.0000 [+1.0000, +1.0000]"
    assert tail[len(bench.METRICS)].startswith("RL − SASRec recall@1: +1.0000")
    assert tail[-2].startswith("RL − GRU4Rec: not available: ")
    assert tail[-1].startswith("wrote ")
    assert not (out / "seed_0.log").exists()
