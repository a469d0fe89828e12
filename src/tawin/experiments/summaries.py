"""Experiments — summaries of results.json and the tables and statements report.md is made of.

Summaries are pure functions of the results mapping (see :func:`tawin.experiments.results.collect_results`):

    mean_K = (1/S) Σ_s m_s,   std_K = sqrt(Σ_s (m_s − mean_K)² / (S − 1))   (sample std; "—" for S = 1)
    gain over a reference = (mean / mean_ref − 1) · 100 %
    goal: mean Recall@K(candidate) ≥ ratio · mean Recall@K(reference)

The paired bootstrap (:func:`tawin.metrics.paired_bootstrap`) resamples eval rows: per-row
Recall@K is read from each seed's predictions.jsonl and averaged over seeds per row, so the
interval reflects row sampling (the spread over seeds is the ± in the tables).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tawin.experiments.plots import DIAGNOSTICS, Stats
from tawin.metrics.ranking import TOP_KS


def summarize(results: dict) -> dict[str, dict[str, Stats]]:
    """label → metric → (mean, sample std, seeds) over the label's finished cells, in report order.

    Each metric is summarised over the cells that have it: diagnostics may cover fewer seeds."""
    runs: dict[str, list[dict]] = {}
    for entry in results["cells"].values():
        runs.setdefault(entry["label"], []).append(entry["metrics"])
    order = [label for label in results.get("labels", []) if label in runs] + [
        label for label in runs if label not in results.get("labels", [])
    ]
    summary = {}
    for label in order:
        metrics = runs[label]
        keys = dict.fromkeys(key for m in metrics for key in m if key != "n_rows")
        summary[label] = {key: _stats([m[key] for m in metrics if key in m]) for key in keys}
    return summary


def _stats(values) -> Stats:
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), std, len(values)


def mean_std(stats: Stats, digits: int = 4) -> str:
    mean, std, _ = stats
    return f"{mean:.{digits}f} ± " + ("—" if math.isnan(std) else f"{std:.{digits}f}")


def comparison_table(summary: dict, ks=TOP_KS.reported) -> str:
    """Markdown: one row per method, Recall@K and NDCG@K as mean ± std, and the number of seeds."""
    names = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]
    lines = [
        "| method | " + " | ".join(n.replace("recall", "Recall").replace("ndcg", "NDCG") for n in names) + " | seeds |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for label, stats in summary.items():
        cells = [mean_std(stats[n]) if n in stats else "" for n in names]
        seeds = next(iter(stats.values()))[2] if stats else 0
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {seeds} |")
    return "\n".join(lines)


def relative_gains(summary: dict, reference: str, ks=TOP_KS.reported) -> dict[str, dict[str, float]]:
    """label → metric → (mean / mean_reference − 1) · 100 (NaN where the reference's mean is 0)."""
    ref = summary[reference]
    gains = {}
    for label, stats in summary.items():
        if label == reference:
            continue
        gains[label] = {}
        for name in [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]:
            if name in stats and name in ref:
                gains[label][name] = (stats[name][0] / ref[name][0] - 1) * 100 if ref[name][0] else float("nan")
    return gains


def gains_table(summary: dict, reference: str, ks=TOP_KS.reported) -> str:
    names = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]
    lines = [
        "| method | " + " | ".join(n.replace("recall", "Recall").replace("ndcg", "NDCG") for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, gains in relative_gains(summary, reference, ks).items():
        lines.append(
            f"| {label} | "
            + " | ".join("—" if math.isnan(gains.get(n, float("nan"))) else f"{gains[n]:+.1f}%" for n in names)
            + " |"
        )
    return "\n".join(lines)


def goal_statement(summary: dict, candidate: str, reference: str, k: int = 3, ratio: float = 1.045) -> str:
    """One plain sentence: is mean Recall@k of `candidate` ≥ ratio × that of `reference`?"""
    metric = f"recall@{k}"
    goal = f"{candidate} mean Recall@{k} ≥ {ratio:g} × {reference}'s"
    missing = [label for label in (candidate, reference) if metric not in summary.get(label, {})]
    if missing:
        return f"Goal ({goal}): cannot be evaluated yet — no finished cells with Recall@{k} for {', '.join(missing)}."
    a, b = summary[candidate][metric][0], summary[reference][metric][0]
    verdict = "met" if a >= ratio * b else "not met"
    achieved = (
        f"{a / b:.3f}× {reference}, {(a / b - 1) * 100:+.1f}%" if b else f"{reference} scores 0, so any value meets it"
    )
    return f"Goal ({goal}): **{verdict}** — {candidate} {a:.4f} vs {ratio:g} × {b:.4f} = {ratio * b:.4f} ({achieved})."


def bootstrap_statement(a_R, b_R, candidate: str, reference: str, k: int, n_seeds: int, resamples: int = 10000) -> str:
    """The paired bootstrap of per-row Recall@k (candidate − reference) in one paragraph."""
    from tawin.metrics import paired_bootstrap

    result = paired_bootstrap(np.asarray(a_R), np.asarray(b_R), n_resamples=resamples, seed=0)
    excludes = result["ci_low"] > 0 or result["ci_high"] < 0
    gain = "—" if math.isnan(result["relative_gain"]) else f"{result['relative_gain'] * 100:+.1f}%"
    return (
        f"Paired bootstrap over {result['n_rows']} eval rows (per-row Recall@{k} averaged over {n_seeds} seed(s), "
        f"{result['n_resamples']} resamples): {candidate} − {reference} = {result['mean_diff']:+.4f} "
        f"[{result['confidence']:.0%} CI {result['ci_low']:+.4f}, {result['ci_high']:+.4f}], relative {gain}, "
        f"one-sided p = {result['p_value']:.3f}; the interval {'excludes' if excludes else 'includes'} 0."
    )


def paired_rows(
    out: Path, results: dict, candidate: str, reference: str, k: int, evaluation: str = ""
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Per-row Recall@k of both labels on the rows every seed of both evaluated, averaged over
    seeds; `evaluation` names a further evaluation (its eval_<name>/ predictions) instead of the main one."""
    (candidate_paths, _), (reference_paths, _) = (
        label_predictions(out, results, label, evaluation) for label in (candidate, reference)
    )
    return seed_averaged_pair(candidate_paths, reference_paths, f"recall@{k}")


def label_predictions(out: Path, results: dict, label: str, evaluation: str = "") -> tuple[list[Path], list[str]]:
    """The predictions.jsonl files of the label's finished cells (their main evaluation, or the
    further evaluation `evaluation` in eval_<name>/), and the ids of the cells without one."""
    cells = [cell_id for cell_id, entry in sorted(results["cells"].items()) if entry["label"] == label]
    paths = {
        cell_id: Path(out) / cell_id / (f"eval_{evaluation}" if evaluation else "") / "predictions.jsonl"
        for cell_id in cells
    }
    return [p for p in paths.values() if p.exists()], [cell_id for cell_id, p in paths.items() if not p.exists()]


def seed_averaged_pair(
    candidate_paths: list[Path], reference_paths: list[Path], metric: str
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(a_R, b_R, seeds): per-row `metric` (``recall@K`` or ``ndcg@K``) of two systems, each from its
    seeds' predictions.jsonl files, averaged over its seeds on the rows every file holds; None when a
    side has no file or no row is common."""
    pairs = seed_averaged_pairs(candidate_paths, reference_paths, (metric,))
    return None if pairs is None else pairs[metric]


def seed_averaged_pairs(
    candidate_paths: list[Path], reference_paths: list[Path], metrics: tuple[str, ...]
) -> dict[str, tuple[np.ndarray, np.ndarray, int]] | None:
    """:func:`seed_averaged_pair` for several metrics at once (each file read once): metric →
    (a_R, b_R, seeds), all on the same rows; None when a side has no file or no row is common.

    Raises:
        ConfigError: a metric's K exceeds the items per row of a file."""
    from tawin.eval.evaluate import Predictions
    from tawin.metrics import per_row_topk

    ks = sorted({int(metric.split("@")[1]) for metric in metrics})
    per_side = []
    for paths in (candidate_paths, reference_paths):
        if not paths:
            return None
        seeds = []  # per seed: row → {metric: value}
        for path in paths:
            predictions = Predictions.read_jsonl(path)
            values = per_row_topk(predictions.items_RK, predictions.target_R, ks)
            seeds.append({row: {m: values[m][i] for m in metrics} for i, row in enumerate(predictions.row_R.tolist())})
        per_side.append(seeds)
    rows = sorted(set.intersection(*(set(seed) for seeds in per_side for seed in seeds)))
    if not rows:
        return None
    n_seeds = min(len(candidate_paths), len(reference_paths))
    return {
        metric: tuple(np.array([np.mean([seed[r][metric] for seed in seeds]) for r in rows]) for seeds in per_side)
        + (n_seeds,)
        for metric in metrics
    }


def diagnostics_table(summary: dict) -> str:
    """AUC, OPAUC and WPAUC@K (mean ± std) of every label that has them; empty string if none."""
    rows = {label: stats for label, stats in summary.items() if "auc" in stats}
    if not rows:
        return ""
    columns = [(key, name) for key, name in DIAGNOSTICS if any(key in stats for stats in rows.values())]
    lines = [
        "| method | " + " | ".join(name for _, name in columns) + " | seeds |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for label, stats in rows.items():
        lines.append(
            f"| {label} | "
            + " | ".join(mean_std(stats[key]) if key in stats else "" for key, _ in columns)
            + f" | {stats['auc'][2]} |"
        )
    return "\n".join(lines)


def anchor_sweep(results: dict) -> dict[str, dict[int, dict[str, Stats]]]:
    """method → σ* → metric → stats, from the cells of `anchor: {grid: […]}` methods (anchor_mode grid)."""
    runs: dict[str, dict[int, list[dict]]] = {}
    for entry in results["cells"].values():
        if entry.get("anchor_mode") == "grid":
            runs.setdefault(entry["method"], {}).setdefault(int(entry["anchor"]), []).append(entry["metrics"])
    return {
        method: {
            anchor: {
                key: _stats([m[key] for m in metrics])
                for key in metrics[0]
                if key != "n_rows" and all(key in m for m in metrics)
            }
            for anchor, metrics in sorted(by_anchor.items())
        }
        for method, by_anchor in runs.items()
    }


def sweep_peaks(points: dict[int, dict[str, Stats]], ks=TOP_KS.swept) -> dict[int, dict]:
    """K → {"peak": argmax σ* of mean Recall@K, "value", "expected": K−1, "within_1": |peak − (K−1)| ≤ 1}."""
    peaks = {}
    for k in ks:
        scored = {anchor: stats[f"recall@{k}"][0] for anchor, stats in points.items() if f"recall@{k}" in stats}
        if scored:
            peak = max(scored, key=lambda a: (scored[a], -a))
            peaks[k] = {"peak": peak, "value": scored[peak], "expected": k - 1, "within_1": abs(peak - (k - 1)) <= 1}
    return peaks


def sweep_section(method: str, points: dict[int, dict[str, Stats]], ks=TOP_KS.swept) -> str:
    names = [f"recall@{k}" for k in ks]
    lines = [
        f"### {method}",
        "",
        "| σ* | " + " | ".join(f"Recall@{k}" for k in ks) + " |",
        "|---:|" + "---:|" * len(ks),
    ]
    for anchor, stats in points.items():
        lines.append(f"| {anchor} | " + " | ".join(mean_std(stats[n]) if n in stats else "" for n in names) + " |")
    lines.append("")
    peaks = sweep_peaks(points, ks)
    for k, peak in peaks.items():
        verdict = "within ±1 of K−1 ✓" if peak["within_1"] else "NOT within ±1 of K−1 ✗"
        lines.append(
            f"- Recall@{k} peaks at σ* = {peak['peak']} ({peak['value']:.4f}); K−1 = {peak['expected']}: {verdict}."
        )
    order = [peaks[k]["peak"] for k in ks if k in peaks]
    if len(order) > 1:
        moves = all(a <= b for a, b in zip(order, order[1:]))
        lines.append(
            "- The peak "
            f"{'moves to larger σ* (or stays) as K grows' if moves else 'does not move monotonically with K'}: "
            f"{order}."
        )
    return "\n".join(lines)


def anchor_choices(results: dict) -> str:
    """Per seed, σ* chosen by `anchor: null` (theory: target_k − 1) or `anchor: {best_on_valid: […]}` (valid)."""
    lines = []
    for cell_id, entry in sorted(results["cells"].items()):
        if entry.get("anchor_mode") == "auto":
            lines.append(f"- {cell_id} ({entry['label']}): σ* = {entry['anchor']} = target_k − 1 (theory, Lemma 3.5).")
        elif entry.get("anchor_mode") == "best_on_valid":
            sweep = entry.get("anchor_sweep", {})
            scores = ", ".join(f"σ*={a}: {s:.4f}" for a, s in sweep.get("scores", {}).items())
            lines.append(
                f"- {cell_id} ({entry['label']}): σ* = {entry['anchor']} "
                f"chosen by {sweep.get('metric', 'valid')} ({scores})."
            )
    return "\n".join(lines)


def evaluation_view(results: dict, evaluation: str) -> dict:
    """`results` with each cell's metrics replaced by those of its evaluation `evaluation` (cells
    without it dropped)."""
    cells = {
        cell_id: {**entry, "metrics": entry["evals"][evaluation]}
        for cell_id, entry in results["cells"].items()
        if evaluation in entry.get("evals", {})
    }
    return {**results, "cells": cells}


def evals_sections(results: dict, ks=TOP_KS.reported) -> list[str]:
    """One Recall/NDCG table per further evaluation (``evals:``), e.g. the valid split beside test."""
    lines = []
    for named in results.get("experiment", {}).get("evals", []):
        if summary := summarize(evaluation_view(results, named["name"])):
            lines += [
                f"## Evaluation `{named['name']}`: split `{named['eval']['split']}`, "
                f"{named['eval']['num_beams']} beams (mean ± std over seeds)",
                "",
                comparison_table(summary, ks),
                "",
            ]
    return lines


def cost_table(results: dict) -> str:
    """Mean wall-clock per cell by label: training and evaluation, and apart from them the exact-score
    diagnostics (far costlier on a CPU, and run for some seeds only); empty string if no cell has timings."""
    work, diagnostics = {}, {}
    for entry in results["cells"].values():
        if "seconds" in entry:
            work.setdefault(entry["label"], []).append(entry["seconds"])
        if "diagnostics_seconds" in entry:
            diagnostics.setdefault(entry["label"], []).append(entry["diagnostics_seconds"])
    if not work:
        return ""
    if not diagnostics:
        return "\n".join(
            ["| method | mean s | cells |", "|---|---:|---:|"]
            + [f"| {label} | {np.mean(v):.0f} | {len(v)} |" for label, v in work.items()]
        )
    rows = [
        f"| {label} | {np.mean(v):.0f} | {len(v)} | "
        + (f"{np.mean(diagnostics[label]):.0f} | {len(diagnostics[label])} |" if label in diagnostics else "— | 0 |")
        for label, v in work.items()
    ]
    return "\n".join(
        ["| method | mean s (train + eval) | cells | mean s (diagnostics) | cells |", "|---|---:|---:|---:|---:|"]
        + rows
    )
