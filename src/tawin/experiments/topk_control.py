"""Experiments — the Top-K control summary: Recall@K against σ*, in-sample and on the main split.

Theorem 3.4 / Lemma 3.5 are optimisation claims: on the prompts RL trains on, TAWin's window at
σ* = K − 1 should lift Recall@K most. An experiment with an anchor grid (`anchor: {grid: […]}`)
and a further evaluation named ``in_sample`` (the RL prompts, ``split: train``) gets, beside its
report, ``summary.json``::

    {"anchors": [0, 1, 2, 4, 8],
     "in_sample": {"recall@1": [...], "recall@3": [...], "recall@5": [...]},   # aligned with anchors
     "test": {...}, "sft": {"in_sample": {...}, "test": {...}}, "rere": {"in_sample": {...}, "test": {...}},
     "rows": N, "passes": P}

(means over seeds; "test" is the main evaluation's split, "rere" the report's reference method),
``topk_control.md`` (tables with seed spread, where each Recall@K peaks, and paired bootstrap
intervals of TAWin(σ* = K − 1) − reference per K) and ``topk_control.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tawin.checkpoint import atomic_write_json, atomic_write_text
from tawin.experiments.plots import _pyplot
from tawin.experiments.summaries import (
    anchor_sweep,
    comparison_table,
    evaluation_view,
    mean_std,
    paired_rows,
    summarize,
    sweep_peaks,
)
from tawin.metrics.bootstrap import paired_bootstrap
from tawin.metrics.ranking import TOP_KS

IN_SAMPLE = "in_sample"


def _means(summary: dict, label: str | None, ks) -> dict:
    stats = summary.get(label, {}) if label else {}
    return {f"recall@{k}": stats[f"recall@{k}"][0] for k in ks if f"recall@{k}" in stats}


def topk_summary(results: dict, ks=TOP_KS.swept) -> dict | None:
    """summary.json's mapping, or None when the experiment has no anchor grid evaluated in-sample."""
    inside, main = evaluation_view(results, IN_SAMPLE), results
    sweeps_in, sweeps_main = anchor_sweep(inside), anchor_sweep(main)
    if not sweeps_in:
        return None
    method = next(iter(sweeps_in))
    points_in, points_main = sweeps_in[method], sweeps_main.get(method, {})
    anchors = sorted(points_in)
    sft = next((e["label"] for e in results["cells"].values() if e["kind"] == "sft"), None)
    reference = results.get("experiment", {}).get("report", {}).get("reference")
    summary_in, summary_main = summarize(inside), summarize(main)
    grid_cell = next(e for e in inside["cells"].values() if e.get("anchor_mode") == "grid")

    def curve(points: dict) -> dict:
        return {f"recall@{k}": [points.get(a, {}).get(f"recall@{k}", (float("nan"),))[0] for a in anchors] for k in ks}

    return {
        "anchors": anchors,
        "in_sample": curve(points_in),
        "test": curve(points_main),
        "sft": {"in_sample": _means(summary_in, sft, ks), "test": _means(summary_main, sft, ks)},
        "rere": {"in_sample": _means(summary_in, reference, ks), "test": _means(summary_main, reference, ks)},
        "rows": int(grid_cell["metrics"]["n_rows"]),
        "passes": int(grid_cell["config"]["rl"]["epochs"]),
    }


def _peaks_lines(points: dict, ks) -> list[str]:
    lines = []
    for k, peak in sweep_peaks(points, ks).items():
        mark = "within ±1 of K−1 ✓" if peak["within_1"] else "NOT within ±1 of K−1 ✗"
        lines.append(f"- Recall@{k} peaks at σ* = {peak['peak']} ({peak['value']:.4f}); K−1 = {k - 1}: {mark}.")
    return lines


def _bootstrap_lines(
    out: Path, results: dict, method: str, reference: str | None, anchors: list[int], ks, evaluation: str
) -> list[str]:
    """Paired bootstrap over rows (per-row Recall@K averaged over seeds) of TAWin(σ* = K−1) − reference."""
    lines = []
    for k in ks:
        candidate = f"{method} (σ*={k - 1})"
        if reference is None or k - 1 not in anchors:
            continue
        paired = paired_rows(out, results, candidate, reference, k, evaluation)
        if paired is None:
            continue
        a_R, b_R, seeds = paired
        test = paired_bootstrap(a_R, b_R, n_resamples=10000, seed=0)
        side = "above 0" if test["ci_low"] > 0 else "below 0" if test["ci_high"] < 0 else "includes 0"
        lines.append(
            f"- Recall@{k}: {candidate} − {reference} = {test['mean_diff']:+.4f} "
            f"[95% CI {test['ci_low']:+.4f}, {test['ci_high']:+.4f}, {side}] over {len(a_R)} rows × {seeds} seed(s); "
            f"ratio {1 + test['relative_gain']:.3f}×."
        )
    return lines


def render_topk_control(out: Path, results: dict, summary: dict) -> str:
    inside = evaluation_view(results, IN_SAMPLE)
    method = next(iter(anchor_sweep(inside)))
    reference = results.get("experiment", {}).get("report", {}).get("reference")
    split = results.get("experiment", {}).get("base", {}).get("eval", {}).get("split", "test")
    anchors = summary["anchors"]
    lines = [
        f"# {results.get('name', 'experiment')}: Top-K control",
        "",
        f"RL ran {summary['passes']} passes over the same "
        f"{summary['rows']} train prompts; every cell is scored on those "
        f"prompts (in-sample) and on {split}. Means ± std over seeds.",
        "",
    ]
    for title, view_results, evaluation in (
        ("In-sample (the prompts RL trained on)", inside, IN_SAMPLE),
        (f"{split} (new users)", results, ""),
    ):
        sweep = anchor_sweep(view_results).get(method, {})
        lines += [
            f"## {title}",
            "",
            comparison_table(summarize(view_results), TOP_KS.reported),
            "",
            "| σ* | " + " | ".join(f"Recall@{k}" for k in TOP_KS.swept) + " |",
            "|---:|" + "---:|" * len(TOP_KS.swept),
        ]
        lines += [
            f"| {a} | " + " | ".join(mean_std(sweep[a][f"recall@{k}"]) for k in TOP_KS.swept) + " |"
            for a in anchors
            if a in sweep
        ]
        lines += [""] + _peaks_lines(sweep, TOP_KS.swept)
        lines += _bootstrap_lines(out, view_results, method, reference, anchors, TOP_KS.swept, evaluation) + [""]
    return "\n".join(lines) + "\n"


def plot_topk_control(summary: dict, path: Path) -> None:
    """Recall@K against σ* in-sample and on test; SFT dashed, the reference dotted at each K's colour."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    anchors = np.array(summary["anchors"])
    for ax, part in zip(axes, ("in_sample", "test")):
        for k_key, values in summary[part].items():
            k = int(k_key.split("@")[1])
            (line,) = ax.plot(anchors, values, marker="o", label=f"Recall@{k}")
            ax.axvline(k - 1, linestyle=":", color=line.get_color(), alpha=0.5)
            if k_key in summary["sft"][part]:
                ax.axhline(
                    summary["sft"][part][k_key],
                    linestyle="--",
                    color=line.get_color(),
                    alpha=0.6,
                    label=f"Recall@{k}, SFT",
                )
            if k_key in summary["rere"][part]:
                ax.axhline(
                    summary["rere"][part][k_key],
                    linestyle="-.",
                    color=line.get_color(),
                    alpha=0.6,
                    label=f"Recall@{k}, reference",
                )
        ax.set_xticks(anchors)
        ax.set_xlabel("anchor σ* (0-based rank among the group's negatives; vertical: K − 1)")
        ax.set_ylabel("mean over seeds")
        ax.set_title(
            ("in-sample: the RL prompts" if part == "in_sample" else "test: new users")
            + f" ({summary['rows']} rows)" * (part == "in_sample")
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_topk_control(out: Path, results: dict) -> list[Path]:
    """summary.json, topk_control.md and topk_control.png when the experiment has what they need."""
    summary = topk_summary(results)
    if summary is None:
        return []
    out = Path(out)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "topk_control.md", render_topk_control(out, results, summary))
    plot_topk_control(summary, out / "topk_control.png")
    return [out / "summary.json", out / "topk_control.md", out / "topk_control.png"]
