"""The documentation's figures, drawn from the library's own functions.

    python docs/figures.py [--out docs/figures]

writes

* ``tawin_weights.png``: TAWin's mass-normalised weights w̄ over the 15 negatives of a 16-candidate
  group (``tawin.rl.tawin_weights``), for several anchors σ* at τ = 1 and for several τ at σ* = 2;
* ``wpauc_window.png``: which negatives each objective compares the positive with (AUC, one-way
  partial AUC, WPAUC), and the four metrics of ``tawin.metrics`` for one positive as it moves down
  the ranking, where WPAUC(α = (K−1)/n⁻, d = 1/n⁻) and Recall@K fall on the same step (Lemma 3.5).

The PNGs are committed; rerun this script when the functions or the pictures change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from tawin.metrics import auc, partial_auc, recall_at_k, wpauc  # noqa: E402
from tawin.rl import tawin_weights  # noqa: E402

GROUP_SIZE = 16
"""G, the RL default: one target and G − 1 = 15 negatives when the target is in the group."""
ANCHORS = (0, 2, 4, 8)
TAUS = (0.25, 1.0, 4.0, 1e4)
DPI = 110


def group_weights(anchor: float, tau: float, budget: float = 1.0) -> torch.Tensor:
    """w̄ of the negatives of one group whose target is the top candidate, in negative-rank order.

    Scores fall with the candidate's position, so candidate g + 1 is the negative of rank σ = g."""
    scores_BG = -torch.arange(GROUP_SIZE, dtype=torch.float64).unsqueeze(0)
    is_negative_BG = torch.ones(1, GROUP_SIZE, dtype=torch.bool)
    is_negative_BG[0, 0] = False
    return tawin_weights(scores_BG, is_negative_BG, anchor=anchor, tau=tau, budget=budget)[0, 1:]


def draw_tawin_weights(path: Path) -> None:
    ranks = range(GROUP_SIZE - 1)
    figure, (by_anchor, by_tau) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for anchor in ANCHORS:
        by_anchor.plot(ranks, group_weights(anchor, tau=1.0), marker="o", markersize=3.5, label=f"σ* = {anchor}")
    by_anchor.set_title("anchors σ* (τ = 1, budget 1)")
    for tau in TAUS:
        label = "τ = 10⁴ (uniform: beam GRPO)" if tau >= 1e3 else f"τ = {tau:g}"
        by_tau.plot(ranks, group_weights(2, tau=tau), marker="o", markersize=3.5, label=label)
    by_tau.set_title("temperatures τ (σ* = 2, budget 1)")
    for axes in (by_anchor, by_tau):
        axes.set_xlabel("σ: rank among the group's negatives (0 = top beam)")
        axes.set_xticks(list(ranks))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    by_anchor.set_ylabel("TAWin weight w̄ (mean 1 over the negatives)")
    figure.suptitle(f"TAWin weights of a group of G = {GROUP_SIZE} beams (tawin.rl.tawin_weights)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def draw_windows(axes, n_negatives: int, k: int, top: int) -> None:
    """The negatives each objective compares the positive with, as spans of descending rank."""
    rows = [
        ("AUC", 1, n_negatives, "every negative"),
        ("one-way partial AUC", 1, top, f"top {top} = G − 1 negatives (beam)"),
        (f"WPAUC((K−1)/n⁻, 1/n⁻), K = {k}", k, k, f"only negative {k} (= K)"),
    ]
    for y, (_, first, last, note) in enumerate(reversed(rows)):
        axes.barh(y, last - first + 1, left=first - 0.5, height=0.55, color=f"C{2 - y}", alpha=0.75)
        axes.text(last + 1.5, y, note, va="center", fontsize=8)
    axes.set_yticks(range(len(rows)), [row[0] for row in reversed(rows)], fontsize=9)
    axes.set_xlim(0, n_negatives * 1.5)
    axes.set_xlabel(f"rank of a negative by descending score (1 … n⁻ = {n_negatives})")
    axes.set_title("which negatives each objective counts")


def metrics_by_rank(n_items: int, k: int, top: int) -> dict[str, list[float]]:
    """AUC, OPAUC, WPAUC and Recall@K of one positive placed at each rank of an n-item catalogue."""
    n_negatives = n_items - 1
    scores_BN = -torch.arange(n_items, dtype=torch.float64).repeat(n_items, 1)
    positive_BN = torch.eye(n_items, dtype=torch.bool)
    return {
        "AUC": auc(scores_BN, positive_BN).tolist(),
        f"partial AUC (max FPR {top}/n⁻)": partial_auc(scores_BN, positive_BN, top / n_negatives).tolist(),
        f"WPAUC((K−1)/n⁻, 1/n⁻), K = {k}": wpauc(
            scores_BN, positive_BN, (k - 1) / n_negatives, 1 / n_negatives
        ).tolist(),
        f"Recall@{k}": recall_at_k(scores_BN, positive_BN, k).tolist(),
    }


def draw_wpauc_window(path: Path, n_items: int = 40, k: int = 3) -> None:
    top = GROUP_SIZE - 1
    figure, (windows, curves) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.1, 1]})
    draw_windows(windows, n_items - 1, k, top)
    ranks = list(range(1, n_items + 1))
    styles = {"AUC": "-", "partial": "-", "WPAUC": "-", "Recall": "--"}
    for name, values in metrics_by_rank(n_items, k, top).items():
        style = next(s for prefix, s in styles.items() if name.startswith(prefix))
        curves.step(ranks, values, where="mid", linestyle=style, linewidth=2.2 if style == "--" else 1.6, label=name)
    curves.set_xlabel(f"rank of the one positive in a catalogue of {n_items} items")
    curves.set_ylabel("value for that row")
    curves.set_title(f"one row: WPAUC = Recall@{k} (Lemma 3.5)")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "figures", help="folder for the PNGs")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    draw_tawin_weights(out / "tawin_weights.png")
    draw_wpauc_window(out / "wpauc_window.png")
    print(f"wrote {out / 'tawin_weights.png'} and {out / 'wpauc_window.png'}")


if __name__ == "__main__":
    main()
