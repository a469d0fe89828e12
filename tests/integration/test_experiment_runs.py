"""`tawin experiment` end to end on a tiny grid: resumable runs, diagnostics added later, parallel
cells equal to one process, workers stopped with their killed parent (tawin.experiments)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml

from conftest import TINY_BASE


@pytest.mark.slow
def test_experiment_runs_resumes_and_redoes_only_a_missing_cell(tmp_path, capsys, industrial_small):
    from tawin.cli import main
    from tawin.data.formats.canonical import save_dataset

    # The full catalogue with few rows, so that tokenising the splits costs nothing.
    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": {**TINY_BASE, "data": {"dataset": str(data)}},
                "seeds": [0],
                "baselines": ["popularity"],
                "methods": {
                    "SFT only": None,
                    "TAWin": {"weighting": "tawin", "target_k": 3, "anchor": {"best_on_valid": [1, 2]}},
                },
                "report": {"reference": "SFT only", "candidate": "TAWin", "bootstrap_resamples": 200},
            },
            allow_unicode=True,
        )
    )
    out = tmp_path / "out"
    argv = ["experiment", str(config), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and set(results["cells"]) == {"seed_0/sft-only", "seed_0/tawin", "seed_0/popularity"}
    tawin = results["cells"]["seed_0/tawin"]
    assert (
        tawin["anchor"] in (1, 2)
        and tawin["anchor_mode"] == "best_on_valid"
        and set(tawin["anchor_sweep"]["scores"]) == {"1", "2"}
    )
    assert tawin["config"]["rl"]["anchor"] == tawin["anchor"] and tawin["config"]["seed"] == 0
    assert all(
        math.isfinite(e["metrics"]["recall@3"]) and e["metrics"]["n_rows"] == 16 for e in results["cells"].values()
    )
    report = (out / "report.md").read_text()
    assert (
        "Goal (TAWin mean Recall@3 ≥ 1.045 × SFT only's)" in report and "Paired bootstrap over 16 eval rows" in report
    )
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    trained = sorted(out.glob("seed_0/**/model.safetensors"))  # sft best/last + each candidate's final/last
    assert len([p for p in trained if "sft" in p.parts]) == 2 and len([p for p in trained if "sweep" in p.parts]) == 4
    capsys.readouterr()

    def mtimes():
        return {p: p.stat().st_mtime_ns for p in trained + sorted(out.glob("seed_0/*/metrics.json"))}

    before = mtimes()
    assert main(argv) == 0  # resume: every cell is done, nothing is retrained or re-evaluated
    printed = capsys.readouterr().out
    assert all(f"skipped {cell}: metrics.json exists" in printed for cell in results["cells"])
    assert mtimes() == before

    (out / "seed_0" / "tawin" / "metrics.json").unlink()  # an interruption inside one cell
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "skipped seed_0/sft-only" in printed
        and "skipped seed_0/popularity" in printed
        and "skipped seed_0/tawin" not in printed
    )
    after = mtimes()
    redone = out / "seed_0" / "tawin" / "metrics.json"
    assert redone.exists() and all(after[p] == t for p, t in before.items() if p != redone)
    assert json.loads((out / "results.json").read_text())["cells"]["seed_0/tawin"]["metrics"] == tawin["metrics"]

    # Diagnostics added to the finished experiment: each LLM cell's checkpoint is scored, nothing is retrained.
    assert main(argv + ["--set", "diagnostics=true"]) == 0
    printed = capsys.readouterr().out
    assert "seed_0/tawin: finished; adding its diagnostics" in printed and "skipped seed_0/popularity" in printed
    assert all(p.stat().st_mtime_ns == after[p] for p in trained)
    for cell in ("sft-only", "tawin"):
        metrics = json.loads((out / "seed_0" / cell / "metrics.json").read_text())
        assert (
            metrics["diagnostics_rows"] == 4
            and 0 <= metrics["auc"] <= 1
            and metrics["wpauc@3"] == metrics["exact_recall@3"]
        )
        assert {k: v for k, v in metrics.items() if k in tawin["metrics"]} == (
            tawin["metrics"] if cell == "tawin" else results["cells"]["seed_0/sft-only"]["metrics"]
        )
        cell_json = json.loads((out / "seed_0" / cell / "cell.json").read_text())
        assert cell_json["diagnostics_seconds"] > 0
        if cell == "sft-only":  # the diagnostics' time is kept apart from the cell's own
            assert cell_json["seconds"] == results["cells"]["seed_0/sft-only"]["seconds"]
    report = (out / "report.md").read_text()
    assert "## Diagnostics" in report and (out / "diagnostics.png").exists() and "mean s (diagnostics)" in report
    # Anything beyond diagnostics and the report still needs the same config or --overwrite.
    assert main(argv + ["--set", "diagnostics=true", "--set", "base.rl.lr=0.5"]) == 2
    assert "different config (changed: base.rl.lr" in capsys.readouterr().err


def test_methods_with_their_own_hold_out_train_and_start_from_their_own_sft(
    tmp_path, capsys, industrial_small, monkeypatch
):
    import tawin.experiments.worker as worker
    import tawin.run.stages as stages
    from tawin.cli import main
    from tawin.data.formats.canonical import save_dataset

    seen = []  # (stage, folder, rows) of every training loop the cells ran

    def recording(stage, loop):
        def wrapper(recommender, dataset, train, valid, config, run, rows=None):
            seen.append(
                (stage, Path(run.output_dir).relative_to(out).as_posix(), None if rows is None else rows.tolist())
            )
            return loop(recommender, dataset, train, valid, config, run, rows=rows)

        return wrapper

    monkeypatch.setattr(stages, "train_sft", recording("sft", stages.train_sft))
    monkeypatch.setattr(stages, "train_rl", recording("rl", stages.train_rl))
    inits = []  # (RL folder, the checkpoint it started from)
    rl_stage = worker.rl_stage

    def recording_rl_stage(session, config, init, folder):
        inits.append((Path(folder).relative_to(out).as_posix(), Path(init).relative_to(out).as_posix()))
        return rl_stage(session, config, init, folder)

    monkeypatch.setattr(worker, "rl_stage", recording_rl_stage)
    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": {
                    **TINY_BASE,
                    "data": {"dataset": str(data)},
                    "rl": {**TINY_BASE["rl"], "rows": {"holdout": 0.25}},
                },
                "seeds": [0],
                "methods": {
                    "SFT on 75%": None,
                    "SFT on every row": {"sft_only": True, "rows": {"holdout": 0}},
                    "TAWin, held out": {"weighting": "tawin"},
                    "TAWin, latest 25% seen": {"weighting": "tawin", "rows": {"latest_share": 0.25, "holdout": 0}},
                },
                "evals": {"valid": {"split": "valid"}},
                "report": {
                    "reference": "TAWin, latest 25% seen",
                    "candidate": "TAWin, held out",
                    "sft_reference": "SFT on every row",
                    "bootstrap_resamples": 200,
                },
            },
            allow_unicode=True,
        )
    )
    out = tmp_path / "out"
    assert main(["experiment", str(config), "--out", str(out), "--no-progress"]) == 0
    n_train = len(industrial_small.splits["train"])
    held = n_train // 4  # ⌈0.25 · n⌉ for the n_train of industrial_small, a multiple of 4
    every, sft_rows, held_rows = list(range(n_train)), list(range(n_train - held)), list(range(n_train - held, n_train))
    # Two SFT runs, each once, on its own rows; each RL cell starts from its method's SFT.
    assert sorted(seen) == sorted(
        [
            ("sft", "seed_0/sft", sft_rows),
            ("sft", "seed_0/sft-rl-holdout-0", every),
            ("rl", "seed_0/tawin-held-out/rl", held_rows),
            ("rl", "seed_0/tawin-latest-25-seen/rl", held_rows),
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and results["cells"]["seed_0/sft-on-every-row"]["config"]["rl"]["rows"]["holdout"] == 0
    assert sorted(inits) == [
        ("seed_0/tawin-held-out/rl", "seed_0/sft/best"),
        ("seed_0/tawin-latest-25-seen/rl", "seed_0/sft-rl-holdout-0/best"),
    ]
    assert all(entry["evals"]["valid"]["n_rows"] == 16 for entry in results["cells"].values())
    report = (out / "report.md").read_text()
    assert "## Against SFT on every row" in report and "TAWin, held out − SFT on every row" in report
    assert "## Evaluation `valid`: split `valid`" in report


def test_diagnostics_from_the_start_are_timed_apart(tmp_path, capsys, industrial_small):
    from tawin.cli import main
    from tawin.data.formats.canonical import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": {**TINY_BASE, "data": {"dataset": str(data)}},
                "seeds": [0],
                "baselines": [],
                "methods": {"SFT only": None},
                "diagnostics": True,
                "report": {"reference": "SFT only", "candidate": "SFT only"},
            },
            allow_unicode=True,
        )
    )
    out = tmp_path / "out"
    assert main(["experiment", str(config), "--out", str(out), "--no-progress"]) == 0
    entry = json.loads((out / "results.json").read_text())["cells"]["seed_0/sft-only"]
    assert entry["metrics"]["diagnostics_rows"] == 4 and 0 <= entry["metrics"]["auc"] <= 1
    assert entry["seconds"] > 0 and entry["diagnostics_seconds"] > 0
    assert "| SFT only |" in (out / "report.md").read_text().split("## Cost")[1]


@pytest.mark.slow
def test_parallel_cells_give_the_results_of_one_process(tmp_path, industrial_small):
    from tawin.cli import main
    from tawin.data.formats.canonical import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": {**TINY_BASE, "data": {"dataset": str(data)}},
                "seeds": [0, 1],
                "baselines": ["popularity"],
                "methods": {"SFT only": None, "GRPO": {"negatives": "beam", "weighting": "none"}},
                "report": {"reference": "SFT only", "candidate": "GRPO", "bootstrap_resamples": 200},
            },
            allow_unicode=True,
        )
    )
    metrics = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        assert main(["experiment", str(config), "--out", str(out), "--no-progress", "--jobs", str(jobs)]) == 0
        results = json.loads((out / "results.json").read_text())
        assert results["complete"] and len(results["cells"]) == 6
        metrics[jobs] = {cell: entry["metrics"] for cell, entry in results["cells"].items()}
        assert (out / "report.md").exists()
    assert metrics[2] == metrics[1]


def _children(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is `pid`, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_killing_the_parent_stops_its_workers(tmp_path, industrial_small):
    import signal
    import subprocess
    import sys
    import time

    from tawin.data.formats.canonical import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    slow_sft = {
        **TINY_BASE["sft"],
        "epochs": 50,
        "first_train_rows": 256,
        "log_every": 1,
    }  # outlives the test unless stopped
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": {**TINY_BASE, "sft": slow_sft, "data": {"dataset": str(data)}},
                "seeds": [0, 1],
                "methods": {"SFT only": None},
            },
            allow_unicode=True,
        )
    )
    parent = subprocess.Popen(
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / "out" / "seed_0" / "sft" / "log.jsonl").exists():
            time.sleep(0.5)  # a worker is training
        workers = _children(parent.pid)
        assert len(workers) >= 2, "the experiment should have started its worker processes"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "workers outlived their killed parent"
    finally:
        parent.kill()
        for pid in _children(parent.pid):
            os.kill(pid, signal.SIGKILL)
