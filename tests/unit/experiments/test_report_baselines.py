"""Tests for report.md's "Against the classical baselines" (tawin.experiments.against_baselines) on
small synthetic experiment folders: results.json-like mappings plus each cell's predictions.jsonl."""

from __future__ import annotations

import numpy as np

from tawin.eval.evaluate import Predictions
from tawin.experiments.against_baselines import against_baselines, baselines_section, compared_metrics
from tawin.experiments.report import render_report, write_report
from tawin.experiments.summaries import seed_averaged_pair, seed_averaged_pairs
from tawin.metrics import paired_bootstrap

CANDIDATE = "TAWin (σ*=2)"
N_ROWS, BEAMS = 40, 12
METRICS = ("recall@1", "recall@3", "recall@5", "recall@10", "ndcg@10")


def ranks(seed: int, every: int) -> np.ndarray:
    """1-based rank of the target per row (0 = not in the list): rank 1 on every `every`-th row, rank
    4 on the rows after those, missing elsewhere; shifted by the seed so seeds differ."""
    rank_R = np.zeros(N_ROWS, np.int64)
    rank_R[(np.arange(N_ROWS) + seed) % every == 0] = 1
    rank_R[(np.arange(N_ROWS) + seed) % every == 1] = 4
    return rank_R


def write_predictions(path, rank_R: np.ndarray, rows: np.ndarray | None = None) -> None:
    """predictions.jsonl whose targets (1000 + row) sit at `rank_R` among filler items."""
    rows = np.arange(N_ROWS) if rows is None else rows
    target_R = 1000 + rows
    items_RK = np.tile(np.arange(1, BEAMS + 1), (len(rows), 1))
    for i, rank in enumerate(rank_R[rows]):
        if rank:
            items_RK[i, rank - 1] = target_R[i]
    scores_RK = -np.tile(np.arange(BEAMS, dtype=np.float32), (len(rows), 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Predictions(rows, rows, target_R, items_RK, scores_RK).write_jsonl(path)


def experiment(out, baselines=("sasrec", "gru4rec", "popularity"), seeds=(0, 1)) -> dict:
    """A finished two-seed experiment: the candidate beats SASRec, GRU4Rec's cells predate
    predictions, Popularity's seed 1 scored only the first 30 rows."""
    cells = {}
    for seed in seeds:
        for label, every, kind in ((CANDIDATE, 2, "rl"), ("SASRec", 4, "baseline"), ("GRU4Rec", 3, "baseline")):
            cell_id = f"seed_{seed}/{label.lower().split()[0]}"
            cells[cell_id] = {
                "seed": seed,
                "label": label,
                "kind": kind,
                "metrics": {"recall@1": 0.1, "n_rows": N_ROWS},
            }
            if label != "GRU4Rec":
                write_predictions(out / cell_id / "predictions.jsonl", ranks(seed, every))
        cells[f"seed_{seed}/popularity"] = {"seed": seed, "label": "Popularity", "kind": "baseline", "metrics": {}}
        rows = np.arange(30 if seed else N_ROWS)
        write_predictions(out / f"seed_{seed}/popularity/predictions.jsonl", ranks(0, 10), rows)
    return {
        "name": "synthetic",
        "experiment": {
            "baselines": list(baselines),
            "base": {"eval": {"split": "test", "num_beams": BEAMS}},
            "report": {"candidate": CANDIDATE, "ks": [1, 3, 5, 10], "bootstrap_resamples": 300},
        },
        "labels": [CANDIDATE, "SASRec", "GRU4Rec", "Popularity"],
        "cells": cells,
    }


def per_row(rank_R: np.ndarray, metric: str) -> np.ndarray:
    k = int(metric.split("@")[1])
    hit_R = (rank_R >= 1) & (rank_R <= k)
    return hit_R / (np.log2(np.maximum(rank_R, 1) + 1) if metric.startswith("ndcg") else 1.0)


def test_metrics_are_the_report_ks_and_ndcg_at_10_within_the_beams():
    assert compared_metrics((1, 3, 5, 10), 20) == METRICS
    assert compared_metrics((1, 10), None) == ("recall@1", "recall@10", "ndcg@10")
    assert compared_metrics((1, 3, 5), 5) == ("recall@1", "recall@3", "recall@5")  # no NDCG@10 in 5 items


def test_several_metrics_at_once_equal_one_at_a_time(tmp_path):
    experiment(tmp_path)
    candidate = [tmp_path / f"seed_{s}/tawin/predictions.jsonl" for s in (0, 1)]
    reference = [tmp_path / f"seed_{s}/popularity/predictions.jsonl" for s in (0, 1)]
    pairs = seed_averaged_pairs(candidate, reference, METRICS)
    for metric in METRICS:
        one = seed_averaged_pair(candidate, reference, metric)
        np.testing.assert_array_equal(pairs[metric][0], one[0])
        np.testing.assert_array_equal(pairs[metric][1], one[1])
        assert pairs[metric][2] == one[2] == 2
        assert len(one[0]) == 30  # the rows both popularity seeds hold


def test_each_baseline_with_predictions_gets_its_rows_and_one_without_a_line(tmp_path):
    found = against_baselines(tmp_path, experiment(tmp_path), CANDIDATE, METRICS)
    assert list(found) == ["SASRec", "GRU4Rec", "Popularity"]
    a, b, seeds = found["SASRec"]["ndcg@10"]
    expected_a = np.mean([per_row(ranks(s, 2), "ndcg@10") for s in (0, 1)], axis=0)
    expected_b = np.mean([per_row(ranks(s, 4), "ndcg@10") for s in (0, 1)], axis=0)
    np.testing.assert_allclose(a, expected_a)
    np.testing.assert_allclose(b, expected_b)
    assert seeds == 2
    assert found["GRU4Rec"] == (
        "Not available: GRU4Rec cells wrote no predictions.jsonl (made before baselines wrote predictions; "
        "delete those cells' folders and rerun the experiment): seed_0/gru4rec, seed_1/gru4rec."
    )

    lines = baselines_section(found, CANDIDATE, resamples=300)
    text = "\n".join(lines)
    assert lines[0] == "## Against the classical baselines"
    table = [line for line in lines if line.startswith("| SASRec |") or line.startswith("| Popularity |")]
    assert [line.split(" | ")[:2] for line in table] == [
        [f"| {label}", name]
        for label in ("SASRec", "Popularity")
        for name in ("Recall@1", "Recall@3", "Recall@5", "Recall@10", "NDCG@10")
    ]
    r = paired_bootstrap(expected_a, expected_b, n_resamples=300, seed=0)
    excludes = "yes" if r["ci_low"] > 0 or r["ci_high"] < 0 else "no"
    assert (
        f"| SASRec | NDCG@10 | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['mean_diff']:+.4f} | "
        f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['p_value']:.3f} | {excludes} |"
    ) in text
    assert "SASRec: 40 rows, 2 seed(s); Popularity: 30 rows, 2 seed(s)." in text
    assert "| GRU4Rec |" not in text and found["GRU4Rec"] in text


def test_the_candidate_beats_the_weaker_baselines_with_an_interval_above_zero(tmp_path):
    results = experiment(tmp_path)
    found = against_baselines(tmp_path, results, CANDIDATE, METRICS)
    report = render_report(results, baselines=found)
    section = report.split("## Against the classical baselines")[1]
    sasrec_recall_1 = next(line for line in section.splitlines() if line.startswith("| SASRec | Recall@1 |"))
    # Rank 1 on every 2nd row against every 4th: +0.25 Recall@1, the interval above 0.
    assert "| +0.2500 |" in sasrec_recall_1 and sasrec_recall_1.endswith("| yes |")


def test_the_section_is_absent_without_baselines_and_says_once_when_the_candidate_has_no_predictions(tmp_path):
    results = experiment(tmp_path, baselines=())
    assert against_baselines(tmp_path, results, CANDIDATE, METRICS) == {}
    assert "Against the classical baselines" not in render_report(results, baselines={})
    results = experiment(tmp_path)
    for seed in (0, 1):
        (tmp_path / f"seed_{seed}/tawin/predictions.jsonl").unlink()
    text = "\n".join(baselines_section(against_baselines(tmp_path, results, CANDIDATE, METRICS), CANDIDATE))
    assert text.count(f"Not available: no predictions.jsonl of {CANDIDATE} yet.") == 1
    assert "| baseline |" not in text and "GRU4Rec cells wrote no predictions.jsonl" in text


def test_write_report_adds_the_section(tmp_path):
    results = experiment(tmp_path, seeds=(0,))
    for entry in results["cells"].values():
        entry["metrics"] = {f"recall@{k}": 0.1 for k in (1, 3, 5, 10)} | {"ndcg@10": 0.1, "n_rows": N_ROWS}
    write_report(tmp_path, results)
    report = (tmp_path / "report.md").read_text()
    assert "## Against the classical baselines" in report and "| SASRec | NDCG@10 |" in report
    assert "SASRec: 40 rows, 1 seed(s)" in report
