"""benchmarks/small_data.py (issue #23) without training: the commands it would run parse and load,
a command runs once into its log with its wall-clock kept, and the summary of finished seed folders
(synthetic metrics, predictions and config.yaml files) gives the means, the bootstrap of RL − SFT,
RL − SASRec and RL − GRU4Rec on the rows every file holds, and table.md."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import yaml

from tawin.baselines.sequential import SequentialBaselineConfig
from tawin.cli import build_parser
from tawin.config import load_config
from tawin.run.config import PipelineConfig

from conftest import REPO, write_ranked_predictions

sys.path.insert(0, str(REPO / "benchmarks"))
import small_data as bench  # noqa: E402

RL_NAME = "TAWin (σ*=2, τ=1, beam)"
ROWS = 4
RANK_OF_TARGET = {"rl": 0, "sft": 2, "sasrec": None, "gru4rec": 7}
"""Where each side puts the target in every row's list (None: absent): RL − SFT is 1 at Recall@1
and 0 at Recall@3, RL − GRU4Rec is 1 at Recall@5 and 0 at Recall@10, RL − SASRec 1 everywhere."""
SMALL_DATA = {"max_train_rows": 10000, "overrides": ["sft.epochs=10", "model.embedding_dropout=0.2"]}


def metrics(value: float) -> dict:
    return {**{m: value for m in bench.METRICS}, "ndcg@20": 0.5, "n_rows": ROWS}


def write_seed(out, seed: int, small_data=SMALL_DATA, epochs: int = 10) -> None:
    """A finished seed: the LLM run (SFT metric .1 + .02·seed, RL .2 + .02·seed), the baselines (.05
    + .02·seed); seed 1's SFT predictions lack the last row."""
    folder = out / f"seed_{seed}"
    llm = folder / "llm"
    for side, value in (("sft", 0.1), ("rl", 0.2)):
        rows = range(ROWS - 1) if (side, seed) == ("sft", 1) else range(ROWS)
        write_ranked_predictions(llm / "eval" / side / "predictions.jsonl", rows, RANK_OF_TARGET[side])
        (llm / "eval" / side / "metrics.json").write_text(json.dumps(metrics(value + 0.02 * seed)))
    results = {"SFT": metrics(0.1), RL_NAME: metrics(0.2)}
    (llm / "results.json").write_text(json.dumps({"results": results, "stages": [{"stage": "sft", "seconds": 9.0}]}))
    config = {
        "kind": "run",
        "device": "cpu",
        "precision": "fp32",
        "data": {"dataset": "industrial", "latest_train_rows": 5000},
        "model": {"embedding_dropout": 0.2},
        "sft": {"epochs": epochs},
        "small_data": small_data,
    }
    (llm / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for kind, hidden in (("sasrec", 128), ("gru4rec", 64)):
        write_ranked_predictions(folder / kind / "predictions.jsonl", range(ROWS), RANK_OF_TARGET[kind])
        (folder / kind / "metrics.json").write_text(json.dumps(metrics(0.05 + 0.02 * seed)))
        sequential = {**dataclasses.asdict(SequentialBaselineConfig()), "hidden": hidden, "dropout": 0.3, "seed": seed}
        (folder / kind / "config.yaml").write_text(yaml.safe_dump({"kind": "baseline", "sequential": sequential}))
    (folder / "wall_clock.json").write_text(json.dumps({"llm": 600.0 + 60 * seed, "sasrec": 60.0, "gru4rec": 120.0}))


MADE = {"machine": "Test CPU, 2 cores", "precision": "LLM fp32", "commit": "abc1234", "date": "2026-12-08"}


def test_summary_means_bootstrap_and_table(tmp_path):
    for seed in (0, 1):
        write_seed(tmp_path, seed)
    record, table = bench.summarise(tmp_path, [0, 1], {**MADE, "command": "python benchmarks/small_data.py"})

    rl = f"SFT + {RL_NAME}"
    assert list(record["means"]) == ["SFT", rl, "SASRec (tuned on 5k)", "GRU4Rec (tuned on 5k)"]
    assert record["means"]["SFT"]["recall@1"] == pytest.approx(0.11)
    assert record["means"][rl]["ndcg@10"] == pytest.approx(0.21)
    assert record["means"]["GRU4Rec (tuned on 5k)"]["recall@10"] == pytest.approx(0.06)
    assert {key for key in record if key.startswith("rl_minus_")} == {
        "rl_minus_sft",
        "rl_minus_sasrec",
        "rl_minus_gru4rec",
    }
    assert all(
        set(record[key]) == set(bench.METRICS) for key in ("rl_minus_sft", "rl_minus_sasrec", "rl_minus_gru4rec")
    )
    assert record["rl_minus_sft"]["recall@1"]["n_rows"] == ROWS - 1  # the rows every file holds
    assert record["rl_minus_sft"]["recall@1"]["mean_diff"] == pytest.approx(1.0)
    assert record["rl_minus_sft"]["recall@3"]["mean_diff"] == pytest.approx(0.0)
    assert record["rl_minus_gru4rec"]["recall@5"]["mean_diff"] == pytest.approx(1.0)
    assert record["rl_minus_gru4rec"]["recall@10"]["mean_diff"] == pytest.approx(0.0)
    assert record["rl_minus_sasrec"]["ndcg@10"]["mean_diff"] == pytest.approx(1.0)

    seed_1 = record["seeds"]["1"]
    assert seed_1["wall_clock_seconds"] == {"llm": 660.0, "sasrec": 60.0, "gru4rec": 120.0}
    assert seed_1["baseline_settings"] == {
        "sasrec": {"hidden": 128, "dropout": 0.3},
        "gru4rec": {"hidden": 64, "dropout": 0.3},
    }
    assert seed_1["small_data"]["applied"] and seed_1["small_data"]["effective"] == {
        "sft.epochs": 10,
        "model.embedding_dropout": 0.2,
    }
    assert set(seed_1["methods"]["SFT"]) == {*bench.METRICS, "n_rows"}

    for text in (
        "Test CPU, 2 cores",
        "LLM fp32",
        "abc1234",
        "2026-12-08",
        "2 seeds (0, 1)",
        "python benchmarks/small_data.py",
    ):
        assert text in table
    assert "| Recall@1 | Recall@3 | Recall@5 | Recall@10 | NDCG@10 |" in table
    assert "| SFT | 0.1100 ± 0.0141 |" in table and "| GRU4Rec (tuned on 5k) | 0.0600 ± 0.0141 |" in table
    assert "| RL − SFT | +1.0000 [+1.0000, +1.0000] | +0.0000 [+0.0000, +0.0000] |" in table
    assert "above SASRec (tuned on 5k)'s at 5 of 5 metrics (interval above 0 at 5)" in table
    assert "above GRU4Rec (tuned on 5k)'s at 4 of 5 metrics (interval above 0 at 4)" in table
    assert (
        "applied (5,000 train rows ≤ small_data.max_train_rows=10,000): sft.epochs=10, model.embedding_dropout=0.2"
        in table
    )
    assert "LLM run (SFT → eval → RL → eval) 10.5 min" in table


def test_a_variant_that_did_not_run_is_reported_as_such(tmp_path):
    write_seed(tmp_path, 0, epochs=2)  # the run's config.yaml has the main recipe's epochs
    _, table = bench.summarise(tmp_path, [0], {**MADE, "command": "c"})
    assert "did not apply" in table and "0.1000 ± —" in table


def test_main_reads_finished_seeds_back_and_writes_the_record(tmp_path, capsys):
    out, results = tmp_path / "runs", tmp_path / "results"
    for seed in (0, 1):
        write_seed(out, seed)
    (out / "commit.txt").write_text("abc1234 2026-12-08\n")  # as made_at records it when the first seed starts
    bench.main(["--out", str(out), "--seeds", "0", "1", "--results", str(results)])  # nothing left to run

    record = json.loads((results / "seeds.json").read_text())
    assert (record["commit"], record["date"]) == ("abc1234", "2026-12-08")
    assert record["precision"] == "LLM fp32 (precision: fp32 on cpu), baselines fp32" and "cores" in record["machine"]
    assert record["command"] == f"python benchmarks/small_data.py --out {out} --seeds 0 1"
    assert (results / "table.md").read_text() in capsys.readouterr().out
    assert not (out / "seed_0" / "llm.log").exists()


def test_the_commands_parse_and_load_with_the_tuned_settings(tmp_path):
    settings = bench.tuned_settings()
    assert set(settings) == {"sasrec", "gru4rec"} and all({"hidden", "dropout"} <= set(s) for s in settings.values())
    parser = build_parser()
    llm = parser.parse_args(bench.llm_command(2, tmp_path / "llm")[3:])
    config = load_config(PipelineConfig, llm.config, llm.set)
    assert (config.data.latest_train_rows, config.stages, llm.seed, llm.no_progress) == (
        5000,
        ("sft", "eval", "rl"),
        2,
        True,
    )
    for kind in bench.BASELINES:
        args = parser.parse_args(bench.baseline_command(kind, settings[kind], 2, tmp_path / kind)[3:])
        sequential = load_config(SequentialBaselineConfig, None, args.set)
        assert (args.kind, args.latest_train_rows, sequential.seed) == (kind, 5000, 2)
        assert (sequential.hidden, sequential.dropout) == (settings[kind]["hidden"], settings[kind]["dropout"])


def test_a_tuning_record_for_other_data_is_refused(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"latest_train_rows": 0, "best": {"sasrec": {}, "gru4rec": {}}}))
    with pytest.raises(SystemExit, match="latest_train_rows=0"):
        bench.tuned_settings(path)


def test_a_command_runs_once_into_its_log_and_counts_every_attempt(tmp_path):
    done = tmp_path / "done"
    failing = [sys.executable, "-c", "import sys; print('cut'); sys.exit(3)"]
    with pytest.raises(SystemExit, match="failed \\(3\\)"):
        bench.run_logged("llm", failing, tmp_path, done)
    finishing = [sys.executable, "-c", f"print('ok'); open({str(done)!r}, 'w')"]
    bench.run_logged("llm", finishing, tmp_path, done)
    bench.run_logged("llm", failing, tmp_path, done)  # finished: not run again
    assert (tmp_path / "llm.log").read_text() == "cut\nok\n"
    assert json.loads((tmp_path / "wall_clock.json").read_text())["llm"] > 0
