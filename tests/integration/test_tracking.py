"""Experiment tracking (`report_to`): what the trackers receive equals what log.jsonl and metrics.json hold.

TensorBoard is read back with its own event reader after a short `tawin run` (SFT + RL + popularity)
and a tiny `tawin experiment`; wandb (offline mode, its transaction log read back) and MLflow (a file
store) are exercised through the same sink. A missing tracker package is one error, before any work.
"""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tawin.cli import main
from tawin.errors import ConfigError
from tawin.run.config import PipelineConfig
from tawin.tracking import Tracking
from tawin.train_utils import JsonlLog

from conftest import TINY_MODEL, TINY_OVERRIDES

FAST = TINY_OVERRIDES + [
    "threads=1",
    "sft.epochs=1",
    "sft.first_train_rows=64",
    "sft.eval_rows=8",
    "sft.eval_beams=10",
    "sft.batch_size=16",
    "sft.warmup_steps=1",
    "sft.log_every=1",
    "rl.max_steps=3",
    "rl.batch_size=2",
    "rl.group_size=4",
    "rl.eval_rows=4",
    "rl.log_every=1",
    "rl.eval_every=2",
    "rl.weighting=tawin",
    "rl.anchor=1",
    "eval.sample_size=8",
    "eval.num_beams=10",
    "eval.batch_size=8",
    "eval.ks=1,3,5,10",
]


def jsonl_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """log.jsonl's metrics: namespaced key → [(step, value)], the values rounded to float32 as
    TensorBoard stores them; NaNs (e.g. tawin/weight_entropy before a TAWin step) are not sent."""
    found: dict[str, list] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if "/" in key and isinstance(value, (int, float)) and math.isfinite(value):
                found.setdefault(key, []).append((record["step"], float(np.float32(value))))
    return found


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of one TensorBoard run folder, read by TensorBoard itself."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def eval_scalars(metrics_json: Path, split: str, step: int) -> dict[str, list[tuple[int, float]]]:
    metrics = json.loads(metrics_json.read_text())
    return {f"eval/{split}/{key}": [(step, float(np.float32(value)))] for key, value in metrics.items()}


def is_timestamp(name: str) -> bool:
    try:
        return float(name) > 0
    except ValueError:
        return False


def hparams(folder: Path) -> dict:
    """The hyper-parameters Accelerate's TensorBoard tracker saved beside the run (hparams.yml)."""
    [path] = folder.glob("*/hparams.yml")
    return yaml.safe_load(path.read_text())


@pytest.mark.slow
def test_tensorboard_holds_every_logged_scalar_of_sft_rl_and_evaluation(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--out", str(out), "--no-progress", "--set", "report_to=tensorboard"]
    for override in FAST:
        argv += ["--set", override]
    assert main(argv) == 0
    board = out / "tracking" / "tensorboard"
    # One run per model (add_hparams writes a timestamp-named sub-run beside each, as torch does).
    runs = {
        p.parent.relative_to(board).as_posix()
        for p in board.glob("**/events.out.tfevents.*")
        if not is_timestamp(p.parent.name)
    }
    assert runs == {"sft", "rl", "eval/popularity"}
    for stage in ("sft", "rl"):
        logged = jsonl_scalars(out / stage / "log.jsonl")
        steps = [step for values in logged.values() for step, _ in values]
        expected = {**logged, **eval_scalars(out / "eval" / stage / "metrics.json", "test", max(steps))}
        assert tensorboard_scalars(board / stage) == expected
        saved = hparams(board / stage)
        assert saved["model.hidden_size"] == TINY_MODEL["hidden_size"] and saved["rl.group_size"] == 4
        assert saved["report_to"] == '["tensorboard"]' and saved["eval.ks"] == "[1, 3, 5, 10]"
    rl_keys = set(jsonl_scalars(out / "rl" / "log.jsonl"))
    assert {
        "train/loss",
        "train/kl",
        "train/lr",
        "rollout/reward",
        "rollout/target_in_group",
        "tawin/weight_entropy",
        "eval/recall@3",
        "eval/ndcg@10",
    } <= rl_keys
    assert {"train/loss", "train/lr", "train/tokens_per_s", "eval/recall@10"} <= set(
        jsonl_scalars(out / "sft" / "log.jsonl")
    )
    assert tensorboard_scalars(board / "eval" / "popularity") == eval_scalars(
        out / "eval" / "popularity" / "metrics.json", "test", 0
    )


@pytest.mark.slow
def test_experiment_logs_each_cell_as_a_run_of_its_group(tmp_path, industrial_small):
    from tawin.data.formats.canonical import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    base = {
        "threads": 1,
        "report_to": ["tensorboard"],
        "data": {"dataset": str(data)},
        "model": dict(TINY_MODEL),
        "sft": {
            "epochs": 1,
            "first_train_rows": 64,
            "eval_rows": 4,
            "eval_beams": 10,
            "batch_size": 32,
            "log_every": 1,
        },
        "rl": {"max_steps": 2, "batch_size": 2, "group_size": 4, "eval_rows": 4, "log_every": 1},
        "eval": {"sample_size": 8, "num_beams": 10, "batch_size": 8, "ks": [1, 3, 5, 10]},
    }
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": base,
                "seeds": [0],
                "baselines": ["popularity"],
                "methods": {"SFT only": None, "GRPO": {"negatives": "beam"}},
                "report": {"reference": "SFT only", "candidate": "GRPO"},
            }
        )
    )
    out = tmp_path / "out"
    assert main(["experiment", str(config), "--out", str(out), "--no-progress"]) == 0
    board = out / "tracking" / "tensorboard"
    # The seed's SFT model is the SFT cell's run; the RL cell and the baseline are runs of their own.
    for run, cell, log in (
        ("seed_0/sft", "seed_0/sft-only", "seed_0/sft/log.jsonl"),
        ("seed_0/grpo/rl", "seed_0/grpo", "seed_0/grpo/rl/log.jsonl"),
        ("seed_0/popularity", "seed_0/popularity", None),
    ):
        logged = jsonl_scalars(out / log) if log else {}
        step = max((s for values in logged.values() for s, _ in values), default=0)
        assert tensorboard_scalars(board / run) == {
            **logged,
            **eval_scalars(out / cell / "metrics.json", "test", step),
        }, run


def test_a_missing_tracker_package_is_one_error_before_any_work(tmp_path, monkeypatch, capsys):
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--no-progress", "--set", "report_to=wandb,mlflow"]) == 2
    error = capsys.readouterr().err
    assert "the wandb package and the mlflow package, which is not installed" in error
    assert "pip install 'tawin[tracking]'" in error and not out.exists()
    experiment = tmp_path / "experiment.yaml"  # the same rule for an experiment's base config
    experiment.write_text(
        yaml.safe_dump({"name": "tiny", "base": {"report_to": ["tensorboard"]}, "methods": {"SFT only": None}})
    )
    assert main(["experiment", str(experiment), "--out", str(tmp_path / "exp"), "--no-progress"]) == 2
    assert (
        "report_to=['tensorboard'] needs the tensorboard package" in capsys.readouterr().err
        and not (tmp_path / "exp").exists()
    )


def test_report_to_rules():
    assert PipelineConfig().check() == [] and PipelineConfig(report_to=("none",)).check() == []
    assert Tracking().open(PipelineConfig(report_to=("none",)), Path("unused")) is None
    problems = PipelineConfig(report_to=("none", "tensorboard", "tensorboard")).check()
    assert any("lists `none` beside trackers" in p for p in problems) and any(
        "repeats a tracker" in p for p in problems
    )
    from tawin.config import load_config

    with pytest.raises(
        ConfigError, match=r"report_to\[0\]='tensorbord' is not one of .* \(did you mean 'tensorboard'\?\)"
    ):
        load_config(PipelineConfig, None, ["report_to=tensorbord"])


def test_a_log_reaches_only_the_tracker_run_it_was_given(tmp_path):
    """No process-wide open run: a JsonlLog without a tracker writes its file alone, even while a run
    of its folder is open, and two Trackings are independent."""
    pytest.importorskip("tensorboard")
    folder = tmp_path / "rl"
    config = PipelineConfig(report_to=("tensorboard",))
    tracking = Tracking()
    tracker = tracking.open(config, folder)
    assert Tracking().run is None and tracking.open(config, folder) is tracker
    JsonlLog(folder / "log.jsonl").write({"stage": "rl", "step": 1, "train/loss": 0.5})
    JsonlLog(folder / "log.jsonl", tracker).write({"stage": "rl", "step": 2, "train/loss": 0.25})
    tracking.close()
    assert tracking.run is None
    assert tensorboard_scalars(folder / "tracking" / "tensorboard") == {"train/loss": [(2, 0.25)]}
    assert len((folder / "log.jsonl").read_text().splitlines()) == 2


def write_records(folder: Path, tracker) -> None:
    """What an RL loop writes: a step-0 valid evaluation, two logged steps (one NaN), a final evaluation."""
    log = JsonlLog(folder / "log.jsonl", tracker)
    log.write({"stage": "rl", "step": 0, "eval/recall@3": 0.25, "eval/n_rows": 4})
    log.write({"stage": "rl", "step": 1, "train/loss": 0.5, "train/lr": 1e-5, "tawin/weight_entropy": float("nan")})
    log.write({"stage": "rl", "step": 2, "train/loss": 0.125, "train/lr": 2e-5, "tawin/weight_entropy": 0.75})
    log.write({"stage": "rl", "step": 2, "eval/recall@3": 0.5, "eval/n_rows": 4})


def wandb_records(path: Path):
    """The records of a wandb offline run file (wandb's transaction log: LevelDB log blocks of 32 KiB,
    each record a 7-byte header — CRC, length, type — then a piece of a Record protobuf)."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (kind == 0 and length == 0):  # block padding
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_run_is_named_by_the_cell_grouped_by_the_experiment(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_RUN_GROUP", "WANDB_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    experiment = tmp_path / "exp"
    experiment.mkdir()
    (experiment / "config.yaml").write_text(yaml.safe_dump({"kind": "experiment", "name": "tiny"}))
    folder = experiment / "seed_0" / "tawin" / "rl"
    config = PipelineConfig(report_to=("wandb",))
    tracking = Tracking()
    write_records(folder, tracking.open(config, folder))
    tracking.log_evaluation(
        config, {"recall@5": 0.375, "n_rows": 8}, "test", experiment / "seed_0" / "tawin", folder / "final"
    )
    tracking.close()
    [path] = (experiment / "tracking" / "wandb").glob("offline-run-*/run-*.wandb")
    # wandb's writer process may still be flushing the file when finish() returns (seen rarely: a file
    # without its run record); wait for it, at most 10 s, before reading every record.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(r.WhichOneof("record_type") == "run" for r in wandb_records(path)):
        time.sleep(0.2)
    rows, run, hyper = {}, None, {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            values = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
            }
            rows.setdefault(record.history.step.num, {}).update(
                {k: v for k, v in values.items() if not k.startswith("_")}
            )
        elif kind == "run":
            run = record.run
        elif kind == "config":
            hyper.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert (run.display_name, run.run_group, run.project) == (str(folder), "tiny", "tawin")
    assert rows == {
        0: {"eval/recall@3": 0.25, "eval/n_rows": 4},
        1: {"train/loss": 0.5, "train/lr": 1e-5},
        2: {
            "train/loss": 0.125,
            "train/lr": 2e-5,
            "tawin/weight_entropy": 0.75,
            "eval/recall@3": 0.5,
            "eval/n_rows": 4,
            "eval/test/recall@5": 0.375,
            "eval/test/n_rows": 8,
        },
    }
    assert hyper["rl.anchor"] == "null" and hyper["report_to"] == '["wandb"]' and hyper["seed"] == 0


def test_mlflow_run_in_a_file_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow ≥ 3.7 refuses file stores without it
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_TAGS", "MLFLOW_NESTED_RUN"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "run"
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump({"kind": "run"}))
    folder = root / "rl"
    config = PipelineConfig(report_to=("mlflow",))
    tracking = Tracking()
    write_records(folder, tracking.open(config, folder))
    tracking.log_evaluation(config, {"recall@5": 0.375, "n_rows": 8}, "test", root / "eval" / "rl", folder / "final")
    tracking.close()
    [run] = mlflow.search_runs(experiment_names=[str(root)], output_format="list")
    client = mlflow.tracking.MlflowClient()

    def history(key):
        return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))

    assert run.info.run_name == str(folder) and run.info.status == "FINISHED"
    assert history("train/loss") == [(1, 0.5), (2, 0.125)] and history("tawin/weight_entropy") == [(2, 0.75)]
    assert history("eval/recall_at_3") == [(0, 0.25), (2, 0.5)] and history("eval/test/recall_at_5") == [(2, 0.375)]
    assert run.data.params["rl.group_size"] == "16" and run.data.params["report_to"] == '["mlflow"]'
