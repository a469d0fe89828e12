"""User mistakes in config files and Ctrl-C: both end a command in one line on stderr, never silently.

A YAML key written twice is refused (YAML would keep only the last block); `rl.target_k` must fit
in the RL group; SIGINT at any moment of `tawin run` (imports, a finaliser, training) exits with
130, one line, and a folder that the same command resumes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES, fails, snapshot, tiny_dataset

INTERRUPTED = "tawin: interrupted; rerun the same command to resume from the last checkpoint.\n"

TWO_SFT_BLOCKS = """\
sft:
  epochs: 1
rl:
  tau: 2.0
sft:
  lr: 1.0e-3
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------ a key written twice


@pytest.mark.parametrize(
    "command",
    [
        ["config", "show"],
        ["sft", "--out", "{out}"],
        ["run", "--out", "{out}"],
        ["eval", "--checkpoint", "popularity", "--out", "{out}"],
        ["rl", "--init", "{out}/no-checkpoint", "--out", "{out}"],
    ],
    ids=["config-show", "sft", "run", "eval", "rl"],
)
def test_a_section_written_twice_is_refused_naming_file_key_and_lines(command, tmp_path, capsys):
    config = write(tmp_path / "twice.yaml", TWO_SFT_BLOCKS)
    out = tmp_path / "out"
    # The impossible override (here and below) stops a command that misses the repetition at once,
    # instead of letting it train on the full dataset.
    argv = [part.format(out=out) for part in command] + ["--config", str(config), "--set", "sft.epochs=0"]
    fails(argv, capsys, r"twice\.yaml: `sft` is written twice \(lines 1 and 5\).* keeps only the last.*merge")
    assert not out.exists()


def test_a_field_written_twice_inside_a_section_names_its_dotted_path(tmp_path, capsys):
    config = write(
        tmp_path / "epochs.yaml", "sft:\n  epochs: 1\n  lr: 1.0e-3\n  epochs: 3\nrl:\n  tau: 2.0\n  tau: 3.0\n"
    )
    fails(
        ["config", "show", "--config", str(config)],
        capsys,
        r"epochs\.yaml: `sft\.epochs` is written twice \(lines 2 and 4\); `rl\.tau` is written twice \(lines 6 and 7\)",
    )
    # A key merged in with `<<` may be overridden on purpose: that is no repetition.
    from tawin.cli import main

    merged = write(tmp_path / "merged.yaml", "eval:\n  <<: {sample_size: 4, batch_size: 2}\n  sample_size: 8\n")
    assert main(["config", "show", "eval", "--config", str(merged)]) == 0
    shown = capsys.readouterr().out
    assert "  sample_size: 8\n" in shown and "  batch_size: 2\n" in shown


def test_baseline_and_experiment_yamls_refuse_a_repeated_key(tmp_path, capsys):
    baseline = write(tmp_path / "sasrec.yaml", "max_epochs: 1\nhidden: 16\nmax_epochs: 2\n")
    out = tmp_path / "baseline"
    fails(
        ["baseline", "sasrec", "--config", str(baseline), "--out", str(out), "--set", "max_epochs=0"],
        capsys,
        r"sasrec\.yaml: `max_epochs` is written twice \(lines 1 and 3\)",
    )
    assert not out.exists()
    experiment = write(
        tmp_path / "grid.yaml",
        textwrap.dedent("""\
        seeds: [0]
        methods:
          GRPO: {weighting: none}
          TAWin: {weighting: tawin}
          GRPO: {weighting: none, negatives: random}
        """),
    )
    fails(
        ["experiment", str(experiment), "--out", str(tmp_path / "grid"), "--set", "rl.max_steps=-1"],
        capsys,
        r"grid\.yaml: `methods\.GRPO` is written twice \(lines 3 and 5\)",
    )
    assert not (tmp_path / "grid").exists()


def test_a_repeated_key_in_a_saved_config_is_not_resumed(tmp_path, capsys):
    dataset = tiny_dataset(tmp_path / "data")
    out = tmp_path / "eval"
    argv = [
        "eval",
        "--checkpoint",
        "popularity",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--no-progress",
        "--beams",
        "4",
        "--set",
        "eval.ks=[1,2,4]",
    ]
    from tawin.cli import main

    assert main(argv) == 0
    capsys.readouterr()
    saved = out / "config.yaml"
    saved.write_text(saved.read_text() + "seed: 7\n")  # a second `seed:` after the saved one
    before = snapshot(out)
    fails(argv, capsys, r"config\.yaml is not a readable tawin config")
    assert snapshot(out) == before


# ------------------------------------------------------------------ rl.target_k and the group


def test_target_k_beyond_the_group_is_refused_with_an_explicit_anchor(tmp_path, capsys):
    fails(
        ["config", "show", "--set", "rl.group_size=8", "--set", "rl.anchor=2", "--set", "rl.target_k=10"],
        capsys,
        r"rl\.target_k=10 must be ≤ G−1=7: TAWin targets Recall@K through the window at rank K−1=9 among the group's "
        r"G−1 negatives \(ranks 0\.\.6\); lower rl\.target_k to ≤ 7 or raise rl\.group_size to ≥ 11",
    )
    experiment = write(
        tmp_path / "grid.yaml", "base: {rl: {group_size: 4}}\nmethods:\n  TAWin: {anchor: 1, target_k: 5}\n"
    )
    fails(["experiment", str(experiment), "--out", str(tmp_path / "grid")], capsys, r"rl\.target_k=5 must be ≤ G−1=3")


# ------------------------------------------------------------------ Ctrl-C

RUN = TINY_OVERRIDES + [
    "threads=1",
    "sft.first_train_rows=256",
    "sft.epochs=1",
    "sft.batch_size=8",
    "sft.save_every=2",
    "sft.eval_rows=8",
    "rl.max_steps=2",
    "rl.batch_size=4",
    "rl.group_size=8",
    "rl.eval_rows=4",
    "rl.negatives=random",
    "eval.sample_size=16",
    "eval.num_beams=10",
    "eval.ks=[1,3,5,10]",
]


def start_run(out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tawin", "run", "--out", str(out), "--no-progress"]
    for override in RUN:
        argv += ["--set", override]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def interrupt(process: subprocess.Popen, when) -> None:
    """SIGINT once `when()` holds; assert the command ends with 130 and only the one line."""
    deadline = time.time() + 300
    while not when() and time.time() < deadline:
        if process.poll() is not None:
            pytest.fail("the run ended before it could be interrupted")
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert (process.returncode, err) == (130, INTERRUPTED), (process.returncode, err[-3000:])


@pytest.mark.slow
def test_ctrl_c_at_any_moment_exits_130_in_one_line_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    # In the imports that building the parser pulls in (torch, transformers), then loading the data.
    for seconds in (0.3, 1.0, 2.0):
        started = time.time()
        interrupt(start_run(out), lambda started=started, seconds=seconds: time.time() - started >= seconds)
    # During SFT, once it has written a checkpoint: the rerun continues from it.
    trainer_state = out / "sft" / "last" / "trainer.pt"
    interrupt(start_run(out), trainer_state.exists)
    assert not (out / "sft" / "summary.json").exists()
    process = start_run(out)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert (out / "results.json").exists() and (out / "rl" / "final" / "model.safetensors").exists()


FINALISER = """
import os, signal, sys, time

import tawin.run.commands as commands
from tawin.cli import main


class SwallowsInterrupts:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100_000):  # the KeyboardInterrupt is raised in here, where Python only prints it
            pass


def config_show(args):
    SwallowsInterrupts()
    for _ in range(200):
        time.sleep(0.01)
    print("went on after the interrupt")
    return 0


commands.cmd_config_show = config_show
sys.exit(main(["config", "show"]))
"""


def test_ctrl_c_swallowed_by_a_finaliser_still_ends_the_command(tmp_path):
    """An interrupt raised inside a __del__ (regex's Group.__del__ at transformers' import) must not be lost."""
    script = write(tmp_path / "finaliser.py", FINALISER)
    process = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert (process.returncode, process.stderr) == (130, INTERRUPTED), (process.returncode, process.stderr)
    assert "went on" not in process.stdout


def live_members(group: int) -> list[int]:
    """Live (non-zombie) processes of the process group `group`, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == group and state != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_ctrl_c_stops_an_experiment_and_its_workers_in_one_line(tmp_path, industrial_small):
    """Ctrl-C in a terminal signals the whole process group: the workers leave it to their parent."""
    import yaml

    from tawin.data.formats.canonical import save_dataset

    from conftest import TINY_BASE

    data = save_dataset(industrial_small, tmp_path / "data")
    slow_sft = {
        **TINY_BASE["sft"],
        "epochs": 50,
        "first_train_rows": 256,
        "log_every": 1,
    }  # outlives the test unless stopped
    config = write(
        tmp_path / "tiny.yaml",
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": {**TINY_BASE, "sft": slow_sft, "data": {"dataset": str(data)}},
                "seeds": [0, 1],
                "methods": {"SFT only": None},
            }
        ),
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tawin",
            "experiment",
            str(config),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            "--jobs",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    logs = [tmp_path / "out" / f"seed_{seed}" / "sft" / "log.jsonl" for seed in (0, 1)]
    try:
        deadline = time.time() + 300
        while not all(log.exists() for log in logs) and time.time() < deadline and process.poll() is None:
            time.sleep(0.1)  # both workers are training
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
        assert (process.returncode, err) == (130, INTERRUPTED), (process.returncode, err[-3000:])
        deadline = time.time() + 15
        while live_members(process.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not live_members(process.pid), "workers outlived the interrupted experiment"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
