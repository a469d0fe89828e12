"""Experiments — report.md and plots from results.json.

The summaries and tables it is made of are in :mod:`tawin.experiments.summaries` (the candidate
against each classical baseline in :mod:`tawin.experiments.against_baselines`); the plots
(comparison.png, diagnostics.png, anchor_sweep.png) are drawn by :mod:`tawin.experiments.plots`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tawin.experiments.against_baselines import against_baselines, baselines_section, compared_metrics
from tawin.experiments.plots import plot_anchor_sweep, plot_comparison, plot_diagnostics
from tawin.experiments.summaries import (
    anchor_choices,
    anchor_sweep,
    bootstrap_statement,
    comparison_table,
    cost_table,
    diagnostics_table,
    evals_sections,
    gains_table,
    goal_statement,
    paired_rows,
    summarize,
    sweep_section,
)
from tawin.metrics.ranking import TOP_KS


def render_report(
    results: dict,
    paired: tuple[np.ndarray, np.ndarray, int] | None = None,
    paired_sft: tuple[np.ndarray, np.ndarray, int] | None = None,
    baselines: dict | None = None,
) -> str:
    """report.md as a string; `paired` / `paired_sft` = :func:`paired_rows` output for the candidate
    against report.reference / report.sft_reference; `baselines` = :func:`against_baselines` output
    (the candidate against each classical baseline; None or empty: no such section)."""
    spec = results.get("experiment", {}).get("report", {})
    ks = tuple(spec.get("ks", TOP_KS.reported))
    summary = summarize(results)
    lines = _header(results)
    if summary:
        lines += ["## Recall@K and NDCG@K (mean ± std over seeds)", "", comparison_table(summary, ks), ""]
        lines += ["![comparison](comparison.png)", ""]
    lines += _reference_sections(summary, spec, ks, paired, paired_sft)
    if baselines and spec.get("candidate"):
        lines += baselines_section(baselines, spec["candidate"], spec.get("bootstrap_resamples", 10000))
    lines += evals_sections(results, ks)
    lines += _diagnostics_section(results, summary)
    if sweeps := anchor_sweep(results):
        lines += ["## Anchor sweep (each Recall@K should peak near σ* = K − 1)", ""]
        for method, points in sweeps.items():
            lines += [sweep_section(method, points, tuple(spec.get("sweep_ks", TOP_KS.swept))), ""]
        lines += ["![anchor sweep](anchor_sweep.png)", ""]
    if choices := anchor_choices(results):
        lines += ["## Anchors chosen automatically", "", choices, ""]
    if cost := cost_table(results):
        lines += [
            "## Cost (wall-clock per cell)",
            "",
            "A seed's shared SFT counts in the first cell that needed it when the cells run in one process; "
            "with `--jobs N` the SFT runs train first and count in no cell (each one's `seconds` is in its "
            "seed_S/sft*/summary.json).",
            "",
            cost,
            "",
        ]
    return "\n".join(lines)


def _header(results: dict) -> list[str]:
    """The title, and how many cells finished on which split, rows and beams."""
    evaluation = results.get("experiment", {}).get("base", {}).get("eval", {})
    n_rows = sorted({e["metrics"].get("n_rows") for e in results["cells"].values()} - {None})
    return [
        f"# {results.get('name', 'experiment')}",
        "",
        f"{len(results['cells'])}/{results.get('n_cells', len(results['cells']))} cells finished"
        f"{'' if results.get('complete', True) else ' (incomplete: rerun the same command to finish)'}; "
        f"split `{evaluation.get('split', 'test')}`, rows per cell {_counts(n_rows)}, "
        f"{evaluation.get('num_beams', '?')} beams over the full catalogue.",
        "",
    ]


def _reference_sections(summary: dict, spec: dict, ks: tuple[int, ...], paired, paired_sft) -> list[str]:
    """The candidate against report.reference (gains, goal, paired bootstrap) and report.sft_reference."""
    reference, candidate = spec.get("reference"), spec.get("candidate")
    k, ratio, resamples = spec.get("goal_k", 3), spec.get("goal_ratio", 1.045), spec.get("bootstrap_resamples", 10000)
    lines = []
    if reference in summary:
        lines += [f"## Relative gain over {reference} (mean vs mean)", "", gains_table(summary, reference, ks), ""]
    if reference and candidate:
        lines += ["## Goal", "", goal_statement(summary, candidate, reference, k, ratio), ""]
        lines += ["## Paired bootstrap", ""]
        if paired is not None:
            lines += [bootstrap_statement(*paired[:2], candidate, reference, k, paired[2], resamples), ""]
        else:
            lines += [
                f"Not available: no common eval rows in predictions.jsonl of {candidate} and {reference} yet.",
                "",
            ]
    if (sft_reference := spec.get("sft_reference")) and candidate:
        lines += [f"## Against {sft_reference}", ""]
        if sft_reference in summary and candidate in summary:
            pair = {label: summary[label] for label in (sft_reference, candidate)}
            lines += [gains_table(pair, sft_reference, ks), ""]
        if paired_sft is not None:
            lines += [bootstrap_statement(*paired_sft[:2], candidate, sft_reference, k, paired_sft[2], resamples), ""]
        else:
            lines += [f"Not available: no common eval rows of {candidate} and {sft_reference} yet.", ""]
    return lines


def _diagnostics_section(results: dict, summary: dict) -> list[str]:
    """AUC, OPAUC and WPAUC@K of the labels that have them; nothing when none has."""
    table = diagnostics_table(summary)
    if not table:
        return []
    cells = results["cells"].values()
    rows = sorted({e["metrics"]["diagnostics_rows"] for e in cells if "diagnostics_rows" in e["metrics"]})
    return [
        "## Diagnostics (exact full-catalogue scores; SFT = before RL)",
        "",
        f"Every catalogue item scored exactly on a fixed seeded sample of {_counts(rows)} eval rows.",
        "",
        table,
        "",
        "![diagnostics](diagnostics.png)",
        "",
    ]


def _counts(values: list[int]) -> str:
    """Row counts for prose: "4533", or "16, 64" where cells differ; "?" when none is known."""
    return ", ".join(str(v) for v in values) or "?"


def write_report(out: Path, results: dict) -> list[Path]:
    """Write report.md and the plots that have data into `out`; returns the paths written."""
    from tawin.checkpoint import atomic_write_text

    out = Path(out)
    spec = results.get("experiment", {}).get("report", {})
    reference, candidate = spec.get("reference"), spec.get("candidate")
    paired = paired_rows(out, results, candidate, reference, spec.get("goal_k", 3)) if reference and candidate else None
    sft_reference = spec.get("sft_reference")
    paired_sft = (
        paired_rows(out, results, candidate, sft_reference, spec.get("goal_k", 3))
        if sft_reference and candidate
        else None
    )
    num_beams = results.get("experiment", {}).get("base", {}).get("eval", {}).get("num_beams")
    metrics = compared_metrics(tuple(spec.get("ks", TOP_KS.reported)), num_beams)
    baselines = against_baselines(out, results, candidate, metrics) if candidate else None
    atomic_write_text(out / "report.md", render_report(results, paired, paired_sft, baselines))
    written = [out / "report.md"]
    summary = summarize(results)
    if summary:
        plot_comparison(
            summary, out / "comparison.png", tuple(spec.get("ks", TOP_KS.reported)), results.get("name", "")
        )
        written.append(out / "comparison.png")
    if diagnostics_table(summary):
        plot_diagnostics(summary, out / "diagnostics.png")
        written.append(out / "diagnostics.png")
    if sweeps := anchor_sweep(results):
        sweep_ks = tuple(spec.get("sweep_ks", TOP_KS.swept))
        sft_only = [entry["metrics"] for entry in results["cells"].values() if entry.get("kind") == "sft"]
        before_rl = {
            k: float(np.mean([m[f"recall@{k}"] for m in sft_only]))
            for k in sweep_ks
            if sft_only and all(f"recall@{k}" in m for m in sft_only)
        }
        plot_anchor_sweep(sweeps, out / "anchor_sweep.png", sweep_ks, before_rl)
        written.append(out / "anchor_sweep.png")
    return written
