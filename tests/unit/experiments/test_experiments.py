"""Tests for tawin.experiments: YAML schema and validation, report and plots (no cell runs; those are in
tests/integration/test_experiment_runs.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from tawin.errors import ConfigError
from tawin.experiments.grid import expand_cells, slug
from tawin.experiments.parse import load_experiment, parse_experiment
from tawin.experiments.report import render_report, write_report
from tawin.experiments.results import collect_results
from tawin.experiments.summaries import (
    anchor_sweep,
    bootstrap_statement,
    comparison_table,
    cost_table,
    diagnostics_table,
    gains_table,
    goal_statement,
    relative_gains,
    summarize,
    sweep_peaks,
)
from tawin.experiments.worker import choose_anchor

from conftest import REPO

CONFIGS = REPO / "configs" / "experiments"


# --- schema -------------------------------------------------------------------------------------


def test_shipped_compare_config_expands_to_the_paper_grid():
    experiment = load_experiment(CONFIGS / "industrial-compare.yaml")
    cells = expand_cells(experiment)
    assert experiment.seeds == (0, 1, 2) and len(cells) == 3 * (9 + 3)
    by_label = {cell.label: cell for cell in cells if cell.seed == 0}
    assert by_label["SFT only"].kind == "sft"
    random, rere = by_label["GRPO (random negatives)"].config.rl, by_label["ReRe"].config.rl
    assert (random.negatives, random.reward, random.weighting) == ("random", "binary", "none")
    assert (rere.negatives, rere.reward, rere.weighting) == ("beam", "rank", "none")
    assert (
        by_label["TAWin (σ*=2)"].config.rl.resolved_anchor == 2
        and by_label["TAWin (σ*=4)"].config.rl.resolved_anchor == 4
    )
    # The costly exact-score diagnostics run on seed 0 only (diagnostics_seeds: [0]).
    assert {cell.seed for cell in cells if cell.config.eval.diagnostics} == {0}
    assert all(cell.config.eval.diagnostics for cell in cells if cell.seed == 0)
    assert {c.name for c in cells if c.kind == "baseline"} == {"sasrec", "gru4rec", "popularity"}
    assert len({c.config.sft for c in cells}) == 1  # one SFT recipe, on two row sets:
    assert {c.sft for c in cells} == {"sft", "sft-rl-holdout-0-2"}
    # The recipe: every RL method on the latest 20% of the train rows, from SFT on all of them;
    # the controls use every row, or the latest 20% held out of their own SFT.
    held_out, every_row = (
        by_label["TAWin (σ*=2), RL rows held out of SFT"],
        by_label["TAWin (σ*=2), RL on every train row"],
    )
    assert all(
        c.config.rl.rows.latest_share == 0.2 and c.sft == "sft"
        for c in by_label.values()
        if c.kind == "rl" and c not in (held_out, every_row)
    )
    assert (
        every_row.config.rl.rows.latest_share == 0 and every_row.sft == "sft" and every_row.config.rl.rows.holdout == 0
    )
    assert (
        held_out.config.rl.rows.holdout == 0.2
        and held_out.sft == by_label["SFT on the earliest 80%"].sft == "sft-rl-holdout-0-2"
    )
    assert experiment.report.sft_reference == "SFT only" and [e.eval.split for e in experiment.evals] == ["valid"]


def test_shipped_anchor_sweep_config_covers_each_anchor():
    cells = expand_cells(load_experiment(CONFIGS / "industrial-anchor-sweep.yaml"))
    anchors = sorted(c.config.rl.anchor for c in cells if c.seed == 0 and c.kind == "rl")
    assert anchors == [0, 1, 2, 3, 4, 6, 8]
    assert {c.anchor_mode for c in cells if c.kind == "rl"} == {"grid"}
    assert "seed_0/tawin-a6" in {c.id for c in cells} and {c.seed for c in cells} == {0, 1}


def test_anchor_auto_is_target_k_minus_one_and_overrides_route_by_key(tmp_path):
    data = {"base": {"rl": {"weighting": "tawin"}}, "methods": {"TAWin@5": {"target_k": 5, "anchor": None}}}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    experiment = load_experiment(path, ["seeds=[3, 4]", "rl.max_steps=7", "report.goal_k=5"])
    cells = expand_cells(experiment)
    assert [c.seed for c in cells] == [3, 4] and experiment.report.goal_k == 5
    assert all(c.config.rl.anchor == 4 and c.config.rl.max_steps == 7 and c.anchor_mode == "auto" for c in cells)


def test_diagnostics_seeds_choose_the_cells_that_get_diagnostics():
    data = {
        "seeds": [0, 1, 2],
        "methods": {"SFT only": None, "GRPO": {"negatives": "random"}},
        "baselines": ["popularity"],
    }
    cells = expand_cells(parse_experiment({**data, "diagnostics": True, "diagnostics_seeds": [0, 2]}))
    assert {c.id for c in cells if c.config.eval.diagnostics} == {
        "seed_0/sft-only",
        "seed_0/grpo",
        "seed_0/popularity",
        "seed_2/sft-only",
        "seed_2/grpo",
        "seed_2/popularity",
    }
    assert all(c.config.eval.diagnostics for c in expand_cells(parse_experiment({**data, "diagnostics": True})))
    with pytest.raises(ConfigError, match=r"diagnostics_seeds=\[3\] must be among seeds=\[0, 1, 2\]"):
        parse_experiment({**data, "diagnostics": True, "diagnostics_seeds": [3]})


def test_every_problem_is_reported_at_once():
    data = {
        "base": {"seed": 1, "rl": {"group_size": 4}},
        "methods": {
            "GRPO": {"negatvies": "random"},
            "TAWin": {"anchor": 5},
            "Swept": {"anchor": {"best_on_valid": []}},
        },
        "anchors": [1, 2],
        "baselines": ["bpr"],
        "report": {"candidate": "Nope"},
    }
    with pytest.raises(ConfigError) as error:
        parse_experiment(data)
    message = str(error.value)
    for expected in (
        "base.seed",
        "did you mean 'negatives'",
        "anchors: the σ* list of an anchor grid sits in its method",
        "'bpr'",
        "best_on_valid must list",
        "report.candidate='Nope'",
    ):
        assert expected in message, expected
    with pytest.raises(ConfigError, match=r"rl.anchor=5 lies outside the group's G−1=3 negatives"):
        parse_experiment({"base": {"rl": {"group_size": 4}}, "methods": {"TAWin": {"weighting": "tawin", "anchor": 5}}})
    with pytest.raises(ConfigError, match="share the folder name 'tawin-2'"):
        parse_experiment({"methods": {"TAWin (σ*=2)": {"anchor": 2}, "TAWin 2": {"anchor": 2}}})
    with pytest.raises(ConfigError, match="two cells are labelled 'TAWin \\(σ\\*=2\\)'"):
        parse_experiment({"methods": {"TAWin (σ*=2)": {"anchor": 2}, "TAWin": {"anchor": {"grid": [2]}}}})


def test_each_anchor_meaning_has_one_spelling():
    methods = {
        "fixed": {"anchor": 2},
        "k-1": {"target_k": 5, "anchor": None},
        "valid": {"anchor": {"best_on_valid": [1, 2]}},
        "grid": {"anchor": {"grid": [0, 3]}},
    }
    cells = expand_cells(parse_experiment({"base": {"rl": {"weighting": "tawin"}}, "methods": methods}))
    modes = {cell.name: (cell.anchor_mode, cell.config.rl.anchor, cell.candidates) for cell in cells}
    assert modes == {
        "fixed": ("config", 2, ()),
        "k-1": ("auto", 4, ()),
        "valid": ("best_on_valid", None, (1, 2)),
        "grid-a0": ("grid", 0, ()),
        "grid-a3": ("grid", 3, ()),
    }
    # The earlier spellings are refused, each with its replacement.
    for method, hint in (
        ({"anchor": "auto"}, "anchor: null"),
        ({"anchor": {"auto": "sweep", "candidates": [1]}}, "anchor: {best_on_valid: "),
        ({"sweep_anchor": True}, "anchor: {grid: "),
        ({"anchor": {"grid": [-1]}}, r"must be ≥ 0"),
    ):
        with pytest.raises(ConfigError, match=re.escape(hint) if "≥" not in hint else hint):
            parse_experiment({"methods": {"TAWin": method}})


def test_a_methods_own_hold_out_gets_its_own_sft_folder_per_seed():
    experiment = parse_experiment(
        {
            "base": {"rl": {"rows": {"holdout": 0.2}}},
            "seeds": [0, 1],
            "methods": {
                "SFT on 80%": None,
                "SFT on every row": {"sft_only": True, "rows": {"holdout": 0}},
                "TAWin": {"weighting": "tawin"},
                "TAWin, random hold-out": {"weighting": "tawin", "rows": {"holdout_order": "random"}},
                "TAWin, every row": {"weighting": "tawin", "rows": {"holdout": 0.0}},
            },
            "report": {"candidate": "TAWin", "sft_reference": "SFT on every row"},
        }
    )
    cells = {(c.seed, c.label): c for c in expand_cells(experiment)}
    assert cells[0, "SFT on 80%"].sft == cells[0, "TAWin"].sft == "sft"
    assert cells[0, "SFT on every row"].sft == cells[0, "TAWin, every row"].sft == "sft-rl-holdout-0"
    assert cells[1, "TAWin, random hold-out"].sft == "sft-rl-holdout-order-random"
    assert cells[0, "SFT on every row"].config.rl.rows.holdout == 0 and cells[0, "TAWin"].config.rl.rows.holdout == 0.2
    assert (
        cells[1, "TAWin, random hold-out"].config.rl.rows.holdout_order == "random"
        and cells[1, "TAWin, random hold-out"].config.seed == 1
    )
    from tawin.experiments.results import cell_checkpoint, seed_sft_folder

    assert (
        cell_checkpoint("out", cells[1, "SFT on every row"], None)
        == seed_sft_folder("out", 1, "sft-rl-holdout-0") / "best"
    )
    # The dataset is shared by every cell; a bad hold-out, RL settings on an SFT-only method and an
    # unknown report label are named.
    with pytest.raises(ConfigError) as error:
        parse_experiment(
            {
                "methods": {
                    "A": {"sft_only": True, "data": {"dataset": "other"}, "rows": {"holdout": 1.5}},
                    "C": {"sft_only": True, "rows": {"latest_share": 0.5}},
                },
                "report": {"sft_reference": "B"},
            }
        )
    for expected in (
        "methods[A].data={'dataset': 'other'}: every cell of an experiment shares base.data",
        "methods[A]: rl.rows.holdout=1.5 must lie in [0, 1)",
        "methods[C]: sft_only takes no RL overrides but the hold-out",
        "report.sft_reference='B' is not a method",
    ):
        assert expected in str(error.value), expected


def test_report_against_the_sft_reference_and_further_evaluations():
    results = synthetic_results()
    for entry in results["cells"].values():
        entry["evals"] = {"valid": {k: v / 2 if k != "n_rows" else v for k, v in entry["metrics"].items()}}
    results["experiment"]["evals"] = [{"name": "valid", "eval": {"split": "valid", "num_beams": 20}}]
    results["experiment"]["report"]["sft_reference"] = "SFT only"
    report = render_report(results, paired_sft=(np.ones(10), np.zeros(10), 3))
    against = report.split("## Against SFT only")[1]
    assert "TAWin (σ*=2) − SFT only = +1.0000" in against and "excludes 0" in against
    assert "| TAWin (σ*=2) |" in against.split("Paired bootstrap")[0]
    valid = report.split("## Evaluation `valid`: split `valid`, 20 beams")[1]
    rere_valid = np.mean([0.10, 0.12, 0.11]) * 1.1 / 2  # the valid metrics, not test's
    assert f"| ReRe | {rere_valid:.4f} ±" in valid


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
        for label, method, values, anchor, mode in (
            ("SFT only", "SFT only", (0.08, 0.09, 0.07), None, None),
            ("ReRe", "ReRe", rere, None, None),
            ("TAWin (σ*=2)", "TAWin (σ*=2)", tawin, 2, "config"),
        ):
            cells[f"seed_{seed}/{slug(label)}"] = {
                "seed": seed,
                "cell": slug(label),
                "label": label,
                "method": method,
                "kind": "rl",
                "anchor": anchor,
                "anchor_mode": mode,
                "metrics": _metrics(values[seed], diag),
                "seconds": 10.0,
            }
        for anchor in (0, 1, 2, 4):
            # Recall@K peaks at σ* = K − 1 by construction.
            metrics = {f"recall@{k}": 0.1 - 0.01 * abs(anchor - (k - 1)) + 0.001 * seed for k in (1, 3, 5)} | {
                "n_rows": 100
            }
            cells[f"seed_{seed}/sweep-a{anchor}"] = {
                "seed": seed,
                "cell": f"sweep-a{anchor}",
                "label": f"Sweep (σ*={anchor})",
                "method": "Sweep",
                "kind": "rl",
                "anchor": anchor,
                "anchor_mode": "grid",
                "metrics": metrics,
            }
    experiment = {
        "report": {
            "reference": "ReRe",
            "candidate": "TAWin (σ*=2)",
            "goal_k": 3,
            "goal_ratio": 1.045,
            "bootstrap_resamples": 500,
            "ks": [1, 3, 5, 10],
            "sweep_ks": [1, 3, 5],
        },
        "base": {"eval": {"split": "test", "num_beams": 50}},
    }
    return {
        "name": "synthetic",
        "experiment": experiment,
        "labels": ["SFT only", "ReRe", "TAWin (σ*=2)"],
        "n_cells": len(cells),
        "complete": True,
        "cells": cells,
    }


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
    for expected in (
        "mean ± std over seeds",
        "Relative gain over ReRe",
        "**met**",
        "Paired bootstrap",
        "## Diagnostics",
        "Recall@3 peaks at σ* = 2",
        "within ±1 of K−1 ✓",
        "anchor_sweep.png",
        "rows per cell 100,",
    ):
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
    experiment = parse_experiment(
        {"methods": {"SFT": None, "TAWin auto": {"weighting": "tawin", "target_k": 5, "anchor": None}}}
    )
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
