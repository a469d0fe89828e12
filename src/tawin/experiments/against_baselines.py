"""Experiments — report.md's "Against the classical baselines": the candidate − each baseline.

For the report's candidate against every baseline of the experiment (``baselines:``, in their
order: SASRec, GRU4Rec, Popularity as labelled), one row per metric — Recall@K for each K of
``report.ks`` and NDCG@10 — with both means, the difference, its 95% interval and one-sided p from
:func:`tawin.metrics.paired_bootstrap` over eval rows. Per-row values are averaged over seeds on the
rows every seed of both sides holds (:func:`~tawin.experiments.summaries.seed_averaged_pairs`), as
for the other paired bootstraps of the report. A baseline whose cells hold no predictions.jsonl
(made before baselines wrote them) is reported as not available rather than left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tawin.experiments.grid import BASELINE_LABELS
from tawin.experiments.summaries import label_predictions, seed_averaged_pairs

Pairs = dict[str, tuple[np.ndarray, np.ndarray, int]]
"""metric → (candidate per-row values [R], baseline per-row values [R], seeds), on common rows."""

NDCG_K = 10
"""The K of the NDCG row beside the Recall@K rows."""


def compared_metrics(ks: tuple[int, ...], num_beams: int | None) -> tuple[str, ...]:
    """recall@K for each K of `ks`, then ndcg@10; those past the ranked lists' length dropped."""
    metrics = (*(f"recall@{k}" for k in ks), f"ndcg@{NDCG_K}")
    return tuple(m for m in dict.fromkeys(metrics) if num_beams is None or int(m.split("@")[1]) <= num_beams)


def against_baselines(out: Path, results: dict, candidate: str, metrics: tuple[str, ...]) -> dict[str, Pairs | str]:
    """Baseline label → the candidate's and its per-row `metrics`, or the line saying why they are
    not available; empty when the experiment has no baselines."""
    candidate_paths, _ = label_predictions(out, results, candidate)
    found: dict[str, Pairs | str] = {}
    for name in results.get("experiment", {}).get("baselines", []):
        label = BASELINE_LABELS[name]
        paths, missing = label_predictions(out, results, label)
        if missing:
            found[label] = (
                f"Not available: {label} cells wrote no predictions.jsonl (made before baselines wrote "
                f"predictions; delete those cells' folders and rerun the experiment): {', '.join(missing)}."
            )
        elif not paths:
            found[label] = f"Not available: no finished {label} cells yet."
        elif not candidate_paths:
            found[label] = f"Not available: no predictions.jsonl of {candidate} yet."
        else:
            pairs = seed_averaged_pairs(candidate_paths, paths, metrics)
            found[label] = (
                pairs if pairs is not None else f"Not available: no eval rows common to {candidate} and {label}."
            )
    return found


def baselines_section(found: dict[str, Pairs | str], candidate: str, resamples: int = 10000) -> list[str]:
    """The report section's lines: one table of every baseline with pairs, then a line per reason
    others are not available; nothing when `found` is empty."""
    from tawin.metrics import paired_bootstrap

    if not found:
        return []
    lines = [
        "## Against the classical baselines",
        "",
        f"{candidate} − each baseline: paired bootstrap over the eval rows every seed of both holds "
        f"(per-row values averaged over seeds, {resamples} resamples; one-sided p = share of resamples "
        f"in which {candidate} does not gain).",
        "",
    ]
    tables = {label: pairs for label, pairs in found.items() if not isinstance(pairs, str)}
    if tables:
        lines += [
            f"| baseline | metric | {candidate} mean | baseline mean | difference | 95% CI | one-sided p "
            "| CI excludes 0 |",
            "|---|---|---:|---:|---:|---|---:|---|",
        ]
        for label, pairs in tables.items():
            for metric, (a_R, b_R, _) in pairs.items():
                r = paired_bootstrap(a_R, b_R, n_resamples=resamples, seed=0)
                excludes = "yes" if r["ci_low"] > 0 or r["ci_high"] < 0 else "no"
                name = metric.replace("recall", "Recall").replace("ndcg", "NDCG")
                lines.append(
                    f"| {label} | {name} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['mean_diff']:+.4f} | "
                    f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['p_value']:.3f} | {excludes} |"
                )
        lines += ["", "Compared: " + "; ".join(_extent(label, pairs) for label, pairs in tables.items()) + ".", ""]
    for reason in dict.fromkeys(reason for reason in found.values() if isinstance(reason, str)):
        lines += [reason, ""]
    return lines


def _extent(label: str, pairs: Pairs) -> str:
    """ "SASRec: 4533 rows, 3 seeds" — the rows and seeds behind a baseline's rows of the table."""
    a_R, _, seeds = next(iter(pairs.values()))
    return f"{label}: {len(a_R)} rows, {seeds} seed(s)"
