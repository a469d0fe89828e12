"""Reliability: a run killed with SIGKILL mid-way and resumed ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES

COMMON = TINY_OVERRIDES + [
    "seed=3",
    "threads=1",
    "sft.first_train_rows=320",
    "sft.batch_size=16",
    "sft.epochs=2",
    "sft.save_every=4",
    "sft.eval_rows=16",
    "sft.warmup_steps=3",
    "rl.max_steps=8",
    "rl.batch_size=4",
    "rl.group_size=8",
    "rl.save_every=2",
    "rl.eval_rows=8",
    "rl.negatives=random",
]


def tawin(args: list[str], out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tawin", *args, "--out", str(out), "--no-progress"]
    for override in COMMON:
        argv += ["--set", override]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-2000:]


def kill_after_checkpoint(process: subprocess.Popen, trainer_state: Path, min_step: int) -> None:
    """SIGKILL once a resumable checkpoint past `min_step` exists (or fail if the run ends first)."""
    import torch

    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail("the run finished before it could be interrupted; lower save_every")
        try:
            if (
                trainer_state.exists()
                and torch.load(trainer_state, weights_only=False)["progress"]["global_step"] >= min_step
            ):
                break
        except Exception:  # the file is being replaced; look again
            pass
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()


def weights(folder: Path) -> bytes:
    return (folder / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_sft_and_rl_resume_after_sigkill_match_uninterrupted(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    finish(tawin(["sft"], straight / "sft"))
    process = tawin(["sft"], killed / "sft")
    kill_after_checkpoint(process, killed / "sft" / "last" / "trainer.pt", min_step=4)
    assert not (killed / "sft" / "summary.json").exists()
    finish(tawin(["sft"], killed / "sft"))
    assert weights(straight / "sft" / "best") == weights(killed / "sft" / "best")
    assert (
        json.loads((straight / "sft" / "summary.json").read_text())["history"]
        == json.loads((killed / "sft" / "summary.json").read_text())["history"]
    )

    finish(tawin(["rl", "--init", str(straight / "sft" / "best")], straight / "rl"))
    process = tawin(["rl", "--init", str(straight / "sft" / "best")], killed / "rl")
    kill_after_checkpoint(process, killed / "rl" / "last" / "trainer.pt", min_step=2)
    finish(tawin(["rl", "--init", str(straight / "sft" / "best")], killed / "rl"))
    assert weights(straight / "rl" / "final") == weights(killed / "rl" / "final")
    straight_summary = json.loads((straight / "rl" / "summary.json").read_text())
    killed_summary = json.loads((killed / "rl" / "summary.json").read_text())
    assert straight_summary["valid"] == killed_summary["valid"]


@pytest.mark.slow
def test_same_config_twice_gives_identical_metrics(tmp_path):
    quick = [
        "--set",
        "sft.first_train_rows=64",
        "--set",
        "sft.epochs=1",
        "--set",
        "stages=[sft,eval]",
        "--set",
        "eval.sample_size=16",
        "--set",
        "eval.num_beams=20",
    ]
    for name in ("a", "b"):
        finish(tawin(["run", *quick], tmp_path / name))
    metrics = [(tmp_path / name / "eval" / "sft" / "metrics.json").read_text() for name in ("a", "b")]
    assert metrics[0] == metrics[1]
    predictions = [(tmp_path / name / "eval" / "sft" / "predictions.jsonl").read_text() for name in ("a", "b")]
    assert predictions[0] == predictions[1]
