"""Progress written to a log (stderr not a terminal, as in `make demo > demo.log 2>&1`): plain lines, few of them."""

from __future__ import annotations

import re

import pytest

from tawin import runtime
from tawin.cli import main

from conftest import TINY_OVERRIDES

TINY_RUN = TINY_OVERRIDES + [
    "threads=1",
    "sft.epochs=1",
    "sft.first_train_rows=256",
    "sft.eval_rows=16",
    "sft.batch_size=32",
    "rl.max_steps=2",
    "rl.batch_size=4",
    "rl.group_size=8",
    "rl.eval_rows=8",
    "eval.sample_size=24",
    "eval.num_beams=20",
    "eval.batch_size=8",
]
LINE = re.compile(r"^(?P<desc>.+): (?:step|batch) (?P<n>\d+)/(?P<total>\d+) \(\d+%\) \[")


def displays(stderr: str) -> list[tuple[str, int, list[int]]]:
    """(desc, total, counts shown) of each progress display, in order: a display ends where its count stops rising."""
    found: list[tuple[str, int, list[int]]] = []
    for line in stderr.splitlines():
        if match := LINE.match(line):
            desc, n, total = match["desc"], int(match["n"]), int(match["total"])
            if found and found[-1][0] == desc and found[-1][1] == total and n > found[-1][2][-1]:
                found[-1][2].append(n)
            else:
                found.append((desc, total, [n]))
    return found


@pytest.mark.slow
def test_a_run_logged_to_a_file_writes_plain_progress_lines_a_tenth_apart(tmp_path, capfd, monkeypatch):
    # Without the time rule every display would write a line per step; the share rule alone must hold them back.
    monkeypatch.setattr(runtime, "PLAIN_PROGRESS_SECONDS", 0.0)
    argv = ["run", "--out", str(tmp_path / "run")]
    for override in TINY_RUN:
        argv += ["--set", override]
    assert main(argv) == 0
    stderr = capfd.readouterr().err
    assert "\r" not in stderr
    shown = displays(stderr)
    assert {"sft epoch 1/1", "sft valid", "eval", "rl", "rl valid"} <= {desc for desc, _, _ in shown}
    for desc, total, counts in shown:
        assert len(counts) <= 11, (desc, counts)  # at most one line per tenth, plus the final count
        gaps = [b - a for a, b in zip(counts, counts[1:-1])]
        assert all(gap >= total / 10 for gap in gaps), (desc, counts)
        assert counts[-1] == total, (desc, counts)
