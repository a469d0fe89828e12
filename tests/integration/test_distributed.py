"""Two processes (torch DDP over gloo, through Accelerate) train and evaluate as one process does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_OVERRIDES

COMMON = TINY_OVERRIDES + [
    "seed=5",
    "threads=1",
    "precision=fp32",  # N processes equal one to float32 rounding; bf16 autocast rounds each shard apart
    "sft.first_train_rows=96",
    "sft.batch_size=16",
    "sft.epochs=1",
    "sft.eval_rows=16",
    "sft.warmup_steps=2",
    "sft.lr=3e-3",
    "rl.max_steps=3",
    "rl.batch_size=4",
    "rl.group_size=8",
    "rl.eval_rows=8",
    "rl.negatives=random",
    "rl.lr=1e-3",
    "eval.sample_size=40",
    "eval.num_beams=20",
    "eval.batch_size=8",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tawin(args: list[str], processes: int) -> None:
    launcher = (
        [sys.executable, "-m", "tawin"]
        if processes == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={processes}",
            f"--master_port={free_port()}",
            "-m",
            "tawin",
        ]
    )
    argv = launcher + args + ["--no-progress"]
    for override in COMMON:
        argv += ["--set", override]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert left.keys() == right.keys()
    for name in left:
        torch.testing.assert_close(left[name], right[name], atol=2e-5, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    tawin(["sft", "--out", str(one / "sft")], 1)
    tawin(["sft", "--out", str(two / "sft")], 2)
    assert_same_weights(one / "sft" / "last", two / "sft" / "last")

    tawin(["rl", "--init", str(one / "sft" / "best"), "--out", str(one / "rl")], 1)
    tawin(["rl", "--init", str(one / "sft" / "best"), "--out", str(two / "rl")], 2)
    assert_same_weights(one / "rl" / "final", two / "rl" / "final")

    tawin(["eval", "--checkpoint", str(one / "rl" / "final"), "--out", str(one / "eval")], 1)
    tawin(["eval", "--checkpoint", str(one / "rl" / "final"), "--out", str(two / "eval")], 2)
    assert (one / "eval" / "metrics.json").read_text() == (two / "eval" / "metrics.json").read_text()
    assert (one / "eval" / "predictions.jsonl").read_text() == (two / "eval" / "predictions.jsonl").read_text()
