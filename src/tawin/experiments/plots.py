"""Experiments — the plots of report.md (matplotlib's Agg backend, no display needed).

comparison.png (Recall/NDCG@K per method), diagnostics.png (AUC, OPAUC, WPAUC@K) and
anchor_sweep.png (Recall@K against σ*, each K's curve expected to peak near σ* = K − 1).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tawin.metrics.ranking import TOP_KS

"""Recall@K curves of the anchor sweep: each should peak near σ* = K − 1."""
DIAGNOSTICS = (("auc", "AUC"), ("opauc", "OPAUC")) + tuple((f"wpauc@{k}", f"WPAUC@{k}") for k in TOP_KS.reported)
Stats = tuple[float, float, int]  # (mean, std, number of seeds)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grouped_bars(ax, summary: dict, keys: list[str], names: list[str]) -> None:
    width = 0.8 / max(1, len(summary))
    x = np.arange(len(keys))
    for i, (label, stats) in enumerate(summary.items()):
        means = [stats[k][0] if k in stats else np.nan for k in keys]
        errors = [0 if k not in stats or math.isnan(stats[k][1]) else stats[k][1] for k in keys]
        ax.bar(x + (i - (len(summary) - 1) / 2) * width, means, width, yerr=errors, capsize=2, label=label)
    ax.set_xticks(x, names)
    ax.grid(axis="y", alpha=0.3)


def _legend_below(ax, n: int) -> None:
    ax.legend(fontsize=8, ncol=min(4, max(1, n)), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)


def plot_comparison(summary: dict, path: Path, ks=TOP_KS.reported, title: str = "") -> None:
    """Grouped bars of Recall@K per method with ± std error bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(14, max(7, 2 + 0.3 * len(ks) * len(summary))), 4.8))
    _grouped_bars(ax, summary, [f"recall@{k}" for k in ks], [f"Recall@{k}" for k in ks])
    ax.set_ylabel("mean over seeds (± std)")
    ax.set_title(title or "Recall@K by method")
    _legend_below(ax, len(summary))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_diagnostics(summary: dict, path: Path) -> None:
    """Grouped bars in three panels, each on its own scale: AUC, OPAUC (both zoomed to their
    values, since methods differ in the second or third decimal) and WPAUC@K (near Recall@K)."""
    plt = _pyplot()
    rows = {label: stats for label, stats in summary.items() if "auc" in stats}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1, 3]})
    for ax, group in zip(axes, (DIAGNOSTICS[:1], DIAGNOSTICS[1:2], DIAGNOSTICS[2:])):
        _grouped_bars(ax, rows, [k for k, _ in group], [n for _, n in group])
    for ax, (key, _) in zip(axes[:2], DIAGNOSTICS[:2]):
        values = [stats[key][0] for stats in rows.values() if key in stats]
        if values:
            spread = max(max(values) - min(values), 1e-3 * max(abs(v) for v in values), 1e-4)
            ax.set_ylim(bottom=min(values) - spread, top=max(values) + spread)
    axes[0].set_ylabel("mean over seeds (± std)")
    _legend_below(axes[2], len(rows))
    fig.suptitle("Diagnostics on exact full-catalogue scores (SFT = before RL)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_anchor_sweep(sweeps: dict, path: Path, ks=TOP_KS.swept, before_rl: dict[int, float] | None = None) -> None:
    """Recall@K against σ* (mean ± std band), with the theory's σ* = K − 1 dotted and, where
    given, each Recall@K of the SFT checkpoint before RL (`before_rl`: K → mean) dashed."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sweeps), figsize=(6.5 * len(sweeps), 4.2), squeeze=False)
    for ax, (method, points) in zip(axes[0], sweeps.items()):
        anchors = np.array(list(points))
        for k in ks:
            stats = [points[a].get(f"recall@{k}", (np.nan, np.nan, 0)) for a in anchors]
            mean = np.array([s[0] for s in stats])
            std = np.nan_to_num(np.array([s[1] for s in stats]))
            (line,) = ax.plot(anchors, mean, marker="o", label=f"Recall@{k}")
            ax.fill_between(anchors, mean - std, mean + std, alpha=0.15, color=line.get_color())
            ax.axvline(k - 1, linestyle=":", color=line.get_color(), alpha=0.8)
            if before_rl and k in before_rl:
                ax.axhline(
                    before_rl[k], linestyle="--", color=line.get_color(), alpha=0.6, label=f"Recall@{k}, SFT only"
                )
        ax.set_xticks(anchors)
        ax.set_xlabel("anchor σ* (0-based rank among the group's negatives)")
        ax.set_ylabel("mean over seeds (± std)")
        ax.set_title(f"{method}: Recall@K vs σ* (dotted: σ* = K − 1)" + (", dashed: before RL" if before_rl else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
