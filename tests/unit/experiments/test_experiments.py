"""Tests for tawin.experiments: YAML schema and validation, resumable grid runs, report and plots."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from tawin.errors import ConfigError
from tawin.experiments.results import collect_results
from tawin.experiments.worker import choose_anchor
from tawin.experiments.grid import expand_cells, load_experiment, parse_experiment, slug
from tawin.experiments.report import (
    anchor_sweep,
    bootstrap_statement,
    comparison_table,
    cost_table,
    diagnostics_table,
    gains_table,
    goal_statement,
    relative_gains,
    render_report,
    summarize,
    sweep_peaks,
    write_report,
)

from conftest import REPO, TINY_BASE

CONFIGS = REPO / "configs" / "experiments"


# --- schema -------------------------------------------------------------------------------------

def test_shipped_compare_config_expands_to_the_paper_grid():
    experiment = load_experiment(CONFIGS / "industrial-compare.yaml")
    cells = expand_cells(experiment)
    assert experiment.seeds == (0, 1, 2) and len(cells) == 3 * (6 + 3)
    by_label = {cell.label: cell for cell in cells if cell.seed == 0}
    assert by_label["SFT only"].kind == "sft"
    random, rere = by_label["GRPO (random negatives)"].config.rl, by_label["ReRe"].config.rl
    assert (random.negatives, random.reward, random.weighting) == ("random", "binary", "none")
    assert (rere.negatives, rere.reward, rere.weighting) == ("beam", "rank", "none")
    assert by_label["TAWin (σ*=2)"].config.rl.resolved_anchor == 2 and by_label["TAWin (σ*=4)"].config.rl.resolved_anchor == 4
    # The costly exact-score diagnostics run on seed 0 only (diagnostics_seeds: [0]).
    assert {cell.seed for cell in cells if cell.config.eval.diagnostics} == {0}
    assert all(cell.config.eval.diagnostics for cell in cells if cell.seed == 0)
    assert {c.name for c in cells if c.kind == "baseline"} == {"sasrec", "gru4rec", "popularity"}
    assert len({c.config.sft for c in cells}) == 1  # one SFT recipe: the per-seed checkpoint is shared


def test_shipped_anchor_sweep_config_covers_each_anchor():
    cells = expand_cells(load_experiment(CONFIGS / "industrial-anchor-sweep.yaml"))
    anchors = sorted(c.config.rl.anchor for c in cells if c.seed == 0 and c.kind == "rl")
    assert anchors == [0, 1, 2, 3, 4, 6, 8]
    assert {c.anchor_mode for c in cells if c.kind == "rl"} == {"grid"}
    assert "seed_0/tawin-a6" in {c.id for c in cells} and {c.seed for c in cells} == {0}


def test_anchor_auto_is_target_k_minus_one_and_overrides_route_by_key(tmp_path):
    data = {"base": {"rl": {"weighting": "tawin"}}, "methods": {"TAWin@5": {"target_k": 5, "anchor": None}}}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    experiment = load_experiment(path, ["seeds=[3, 4]", "rl.max_steps=7", "report.goal_k=5"])
    cells = expand_cells(experiment)
    assert [c.seed for c in cells] == [3, 4] and experiment.report.goal_k == 5
    assert all(c.config.rl.anchor == 4 and c.config.rl.max_steps == 7 and c.anchor_mode == "auto" for c in cells)


def test_diagnostics_seeds_choose_the_cells_that_get_diagnostics():
    data = {"seeds": [0, 1, 2], "methods": {"SFT only": None, "GRPO": {"negatives": "random"}}, "baselines": ["popularity"]}
    cells = expand_cells(parse_experiment({**data, "diagnostics": True, "diagnostics_seeds": [0, 2]}))
    assert {c.id for c in cells if c.config.eval.diagnostics} == {"seed_0/sft-only", "seed_0/grpo", "seed_0/popularity",
                                                                   "seed_2/sft-only", "seed_2/grpo", "seed_2/popularity"}
    assert all(c.config.eval.diagnostics for c in expand_cells(parse_experiment({**data, "diagnostics": True})))
    with pytest.raises(ConfigError, match=r"diagnostics_seeds=\[3\] must be among seeds=\[0, 1, 2\]"):
        parse_experiment({**data, "diagnostics": True, "diagnostics_seeds": [3]})


def test_every_problem_is_reported_at_once():
    data = {
        "base": {"seed": 1, "rl": {"group_size": 4}},
        "methods": {"GRPO": {"negatvies": "random"}, "TAWin": {"anchor": 5}, "Swept": {"anchor": {"best_on_valid": []}}},
        "anchors": [1, 2],
        "baselines": ["bpr"],
        "report": {"candidate": "Nope"},
    }
    with pytest.raises(ConfigError) as error:
        parse_experiment(data)
    message = str(error.value)
    for expected in ("base.seed", "did you mean 'negatives'", "anchors: the σ* list of an anchor grid sits in its method", "'bpr'",
                     "best_on_valid must list",
                     "report.candidate='Nope'"):
        assert expected in message, expected
    with pytest.raises(ConfigError, match=r"rl.anchor=5 lies outside the group's G−1=3 negatives"):
        parse_experiment({"base": {"rl": {"group_size": 4}}, "methods": {"TAWin": {"weighting": "tawin", "anchor": 5}}})
    with pytest.raises(ConfigError, match="share the folder name 'tawin-2'"):
        parse_experiment({"methods": {"TAWin (σ*=2)": {"anchor": 2}, "TAWin 2": {"anchor": 2}}})
    with pytest.raises(ConfigError, match="two cells are labelled 'TAWin \\(σ\\*=2\\)'"):
        parse_experiment({"methods": {"TAWin (σ*=2)": {"anchor": 2}, "TAWin": {"anchor": {"grid": [2]}}}})


def test_each_anchor_meaning_has_one_spelling():
    methods = {"fixed": {"anchor": 2}, "k-1": {"target_k": 5, "anchor": None}, "valid": {"anchor": {"best_on_valid": [1, 2]}},
               "grid": {"anchor": {"grid": [0, 3]}}}
    cells = expand_cells(parse_experiment({"base": {"rl": {"weighting": "tawin"}}, "methods": methods}))
    modes = {cell.name: (cell.anchor_mode, cell.config.rl.anchor, cell.candidates) for cell in cells}
    assert modes == {"fixed": ("config", 2, ()), "k-1": ("auto", 4, ()), "valid": ("best_on_valid", None, (1, 2)),
                     "grid-a0": ("grid", 0, ()), "grid-a3": ("grid", 3, ())}
    # The earlier spellings are refused, each with its replacement.
    for method, hint in (({"anchor": "auto"}, "anchor: null"), ({"anchor": {"auto": "sweep", "candidates": [1]}}, "anchor: {best_on_valid: "),
                         ({"sweep_anchor": True}, "anchor: {grid: "), ({"anchor": {"grid": [-1]}}, r"must be ≥ 0")):
        with pytest.raises(ConfigError, match=re.escape(hint) if "≥" not in hint else hint):
            parse_experiment({"methods": {"TAWin": method}})


def test_slug_and_anchor_choice():
    assert slug("TAWin (σ*=2)") == "tawin-2" and slug("GRPO (random negatives)") == "grpo-random-negatives"
    assert choose_anchor({1: 0.10, 2: 0.12, 4: 0.12}, target_k=3) == 2  # tie → nearest K−1
    assert choose_anchor({0: 0.2, 4: 0.2}, target_k=3) == 0  # equally near → smaller


# --- report on synthetic results ----------------------------------------------------------------

def _metrics(base: float, diag: bool = False) -> dict:
    metrics = {f"recall@{k}": base * (1 + k / 10) for k in (1, 3, 5, 10, 20)}
    metrics |= {f"ndcg@{k}": base * (1 + k / 20) for k in (1, 3, 5, 10, 20)}
    if diag:
        metrics |= {"auc": 0.9 + base, "opauc": 0.8 + base} | {f"wpauc@{k}": base * (1 + k / 10) for k in (1, 3, 5, 10)}
    return {**metrics, "n_rows": 100}


def synthetic_results(rere=(0.10, 0.12, 0.11), tawin=(0.13, 0.12, 0.14), diag=True) -> dict:
    cells = {}
    for seed in range(3):
        for label, method, values, anchor, mode in (("SFT only", "SFT only", (0.08, 0.09, 0.07), None, None),
                                                     ("ReRe", "ReRe", rere, None, None),
                                                     ("TAWin (σ*=2)", "TAWin (σ*=2)", tawin, 2, "config")):
            cells[f"seed_{seed}/{slug(label)}"] = {"seed": seed, "cell": slug(label), "label": label, "method": method, "kind": "rl",
                                                   "anchor": anchor, "anchor_mode": mode, "metrics": _metrics(values[seed], diag), "seconds": 10.0}
        for anchor in (0, 1, 2, 4):
            # Recall@K peaks at σ* = K − 1 by construction.
            metrics = {f"recall@{k}": 0.1 - 0.01 * abs(anchor - (k - 1)) + 0.001 * seed for k in (1, 3, 5)} | {"n_rows": 100}
            cells[f"seed_{seed}/sweep-a{anchor}"] = {"seed": seed, "cell": f"sweep-a{anchor}", "label": f"Sweep (σ*={anchor})", "method": "Sweep",
                                                     "kind": "rl", "anchor": anchor, "anchor_mode": "grid", "metrics": metrics}
    experiment = {"report": {"reference": "ReRe", "candidate": "TAWin (σ*=2)", "goal_k": 3, "goal_ratio": 1.045,
                             "bootstrap_resamples": 500, "ks": [1, 3, 5, 10], "sweep_ks": [1, 3, 5]},
                  "base": {"eval": {"split": "test", "num_beams": 50}}}
    return {"name": "synthetic", "experiment": experiment, "labels": ["SFT only", "ReRe", "TAWin (σ*=2)"],
            "n_cells": len(cells), "complete": True, "cells": cells}


def test_summary_is_mean_and_sample_std_over_seeds():
    summary = summarize(synthetic_results())
    assert list(summary)[:3] == ["SFT only", "ReRe", "TAWin (σ*=2)"]
    mean, std, n = summary["ReRe"]["recall@1"]
    values = np.array([0.10, 0.12, 0.11]) * 1.1
    assert n == 3 and mean == pytest.approx(values.mean()) and std == pytest.approx(values.std(ddof=1))
    table = comparison_table(summary)
    assert re.search(r"\| ReRe \| 0\.1210 ± 0\.0110 \|", table) and "| 3 |" in table


def test_gains_goal_and_bootstrap_statements():
    summary = summarize(synthetic_results())
    gains = relative_gains(summary, "ReRe")
    assert gains["TAWin (σ*=2)"]["recall@3"] == pytest.approx((0.13 / 0.11 - 1) * 100)
    assert "+18.2%" in gains_table(summary, "ReRe")
    met = goal_statement(summary, "TAWin (σ*=2)", "ReRe", 3, 1.045)
    assert "**met**" in met and "1.182×" in met
    not_met = goal_statement(summarize(synthetic_results(tawin=(0.11, 0.11, 0.11))), "TAWin (σ*=2)", "ReRe", 3, 1.045)
    assert "**not met**" in not_met and "0.1430" in not_met and "1.045 × 0.1430" in not_met
    assert "cannot be evaluated" in goal_statement(summary, "TAWin (σ*=9)", "ReRe")
    rng = np.random.default_rng(0)
    b = (rng.random(400) < 0.1).astype(float)
    a = np.maximum(b, (rng.random(400) < 0.05).astype(float))
    text = bootstrap_statement(a, b, "TAWin", "ReRe", 3, n_seeds=3, resamples=500)
    assert "Paired bootstrap over 400 eval rows" in text and "95% CI" in text and "excludes 0" in text


def test_diagnostics_and_anchor_sweep_sections():
    results = synthetic_results()
    table = diagnostics_table(summarize(results))
    assert "| method | AUC | OPAUC | WPAUC@1 | WPAUC@3 | WPAUC@5 | WPAUC@10 |" in table and "| SFT only |" in table
    assert diagnostics_table(summarize(synthetic_results(diag=False))) == ""
    points = anchor_sweep(results)["Sweep"]
    assert list(points) == [0, 1, 2, 4]
    peaks = sweep_peaks(points, (1, 3, 5))
    assert {k: p["peak"] for k, p in peaks.items()} == {1: 0, 3: 2, 5: 4} and all(p["within_1"] for p in peaks.values())
    report = render_report(results, paired=(np.ones(10), np.zeros(10), 3))
    for expected in ("mean ± std over seeds", "Relative gain over ReRe", "**met**", "Paired bootstrap", "## Diagnostics",
                     "Recall@3 peaks at σ* = 2", "within ±1 of K−1 ✓", "anchor_sweep.png", "rows per cell 100,"):
        assert expected in report, expected


def test_cost_table_keeps_the_diagnostics_apart():
    results = synthetic_results(diag=False)
    assert "| ReRe | 10 | 3 |" in cost_table(results)
    results["cells"]["seed_0/rere"]["diagnostics_seconds"] = 70.0  # seed 0's ReRe cell also ran them
    table = cost_table(results)
    assert "| method | mean s (train + eval) | cells | mean s (diagnostics) | cells |" in table
    assert "| ReRe | 10 | 3 | 70 | 1 |" in table and "| SFT only | 10 | 3 | — | 0 |" in table
    assert cost_table({"cells": {}}) == ""


def test_write_report_draws_every_plot(tmp_path):
    written = write_report(tmp_path, synthetic_results())
    assert {p.name for p in written} == {"report.md", "comparison.png", "diagnostics.png", "anchor_sweep.png"}
    for path in written[1:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_collect_results_records_the_resolved_anchor(tmp_path):
    experiment = parse_experiment({"methods": {"SFT": None, "TAWin auto": {"weighting": "tawin", "target_k": 5, "anchor": None}}})
    cells = expand_cells(experiment)
    for cell in cells:
        (tmp_path / cell.id).mkdir(parents=True)
        (tmp_path / cell.id / "metrics.json").write_text(json.dumps(_metrics(0.1)))
    results = collect_results(tmp_path, experiment, cells, write=True)
    entry = results["cells"]["seed_0/tawin-auto"]
    assert entry["anchor"] == 4 and entry["anchor_mode"] == "auto" and entry["config"]["rl"]["anchor"] == 4
    assert results["cells"]["seed_0/sft"]["anchor"] is None and results["complete"]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert "σ* = 4 = target_k − 1" in render_report(results)


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_experiment_runs_resumes_and_redoes_only_a_missing_cell(tmp_path, capsys, industrial_small):
    from tawin.cli import main
    from tawin.data.io import save_dataset

    # The full catalogue with few rows, so that tokenising the splits costs nothing.
    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "base": {**TINY_BASE, "data": {"dataset": str(data)}}, "seeds": [0], "baselines": ["popularity"],
        "methods": {"SFT only": None, "TAWin": {"weighting": "tawin", "target_k": 3, "anchor": {"best_on_valid": [1, 2]}}},
        "report": {"reference": "SFT only", "candidate": "TAWin", "bootstrap_resamples": 200},
    }, allow_unicode=True))
    out = tmp_path / "out"
    argv = ["experiment", str(config), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and set(results["cells"]) == {"seed_0/sft-only", "seed_0/tawin", "seed_0/popularity"}
    tawin = results["cells"]["seed_0/tawin"]
    assert tawin["anchor"] in (1, 2) and tawin["anchor_mode"] == "best_on_valid" and set(tawin["anchor_sweep"]["scores"]) == {"1", "2"}
    assert tawin["config"]["rl"]["anchor"] == tawin["anchor"] and tawin["config"]["seed"] == 0
    assert all(math.isfinite(e["metrics"]["recall@3"]) and e["metrics"]["n_rows"] == 16 for e in results["cells"].values())
    report = (out / "report.md").read_text()
    assert "Goal (TAWin mean Recall@3 ≥ 1.045 × SFT only's)" in report and "Paired bootstrap over 16 eval rows" in report
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
    assert "skipped seed_0/sft-only" in printed and "skipped seed_0/popularity" in printed and "skipped seed_0/tawin" not in printed
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
        assert metrics["diagnostics_rows"] == 4 and 0 <= metrics["auc"] <= 1 and metrics["wpauc@3"] == metrics["exact_recall@3"]
        assert {k: v for k, v in metrics.items() if k in tawin["metrics"]} == (tawin["metrics"] if cell == "tawin" else results["cells"]["seed_0/sft-only"]["metrics"])
        cell_json = json.loads((out / "seed_0" / cell / "cell.json").read_text())
        assert cell_json["diagnostics_seconds"] > 0
        if cell == "sft-only":  # the diagnostics' time is kept apart from the cell's own
            assert cell_json["seconds"] == results["cells"]["seed_0/sft-only"]["seconds"]
    report = (out / "report.md").read_text()
    assert "## Diagnostics" in report and (out / "diagnostics.png").exists() and "mean s (diagnostics)" in report
    # Anything beyond diagnostics and the report still needs the same config or --overwrite.
    assert main(argv + ["--set", "diagnostics=true", "--set", "base.rl.lr=0.5"]) == 2
    assert "different config (changed: base.rl.lr" in capsys.readouterr().err


def test_diagnostics_from_the_start_are_timed_apart(tmp_path, capsys, industrial_small):
    from tawin.cli import main
    from tawin.data.io import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "base": {**TINY_BASE, "data": {"dataset": str(data)}}, "seeds": [0], "baselines": [],
        "methods": {"SFT only": None}, "diagnostics": True, "report": {"reference": "SFT only", "candidate": "SFT only"},
    }, allow_unicode=True))
    out = tmp_path / "out"
    assert main(["experiment", str(config), "--out", str(out), "--no-progress"]) == 0
    entry = json.loads((out / "results.json").read_text())["cells"]["seed_0/sft-only"]
    assert entry["metrics"]["diagnostics_rows"] == 4 and 0 <= entry["metrics"]["auc"] <= 1
    assert entry["seconds"] > 0 and entry["diagnostics_seconds"] > 0
    assert "| SFT only |" in (out / "report.md").read_text().split("## Cost")[1]


@pytest.mark.slow
def test_parallel_cells_give_the_results_of_one_process(tmp_path, industrial_small):
    from tawin.cli import main
    from tawin.data.io import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "base": {**TINY_BASE, "data": {"dataset": str(data)}}, "seeds": [0, 1], "baselines": ["popularity"],
        "methods": {"SFT only": None, "GRPO": {"negatives": "beam", "weighting": "none"}},
        "report": {"reference": "SFT only", "candidate": "GRPO", "bootstrap_resamples": 200},
    }, allow_unicode=True))
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

    from tawin.data.io import save_dataset

    data = save_dataset(industrial_small, tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    slow_sft = {**TINY_BASE["sft"], "epochs": 50, "max_train_rows": 256, "log_every": 1}  # outlives the test unless stopped
    config.write_text(yaml.safe_dump({
        "name": "tiny", "base": {**TINY_BASE, "sft": slow_sft, "data": {"dataset": str(data)}}, "seeds": [0, 1],
        "methods": {"SFT only": None},
    }, allow_unicode=True))
    parent = subprocess.Popen([sys.executable, "-m", "tawin", "experiment", str(config), "--out", str(tmp_path / "out"),
                               "--no-progress", "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
