"""Benchmarks — the tuning grid of the classical baselines (SASRec, GRU4Rec) on VALID.

The LLM recommender is compared with SASRec and GRU4Rec tuned with at least the budget the LLM's
SFT gets: every combination of width and dropout below, each trained with early stopping on valid
NDCG@10 (`tawin baseline`, up to `max_epochs`, `patience` epochs without a gain). The table shows
valid numbers only; the setting with the best valid NDCG@10 per kind is what
`SequentialBaselineConfig` takes as its default. Test is never read here.

Each cell is a `tawin baseline` folder under --out; a rerun skips finished cells (resumable).

Command (about 2–3 CPU-minutes per cell on the full Industrial train split):
    python benchmarks/tune_baselines.py --out runs/tune-baselines
    python benchmarks/tune_baselines.py --out runs/tune-baselines-5k --latest-train-rows 5000
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from tawin.metrics.ranking import TOP_KS

KINDS = ("sasrec", "gru4rec")
GRID = {"hidden": (64, 128), "dropout": (0.2, 0.3, 0.5)}
KS = TOP_KS.reported


def cell_name(kind: str, settings: dict) -> str:
    return kind + "".join(f"-{key}{value}" for key, value in settings.items())


def run_cell(kind: str, settings: dict, out: Path, extra: list[str], latest_train_rows: int = 0) -> dict:
    """Valid metrics and epochs of one `tawin baseline` cell (trained unless its folder is finished)."""
    folder = out / cell_name(kind, settings)
    if not (folder / "result.json").exists():
        sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
        sets += [arg for item in extra for arg in ("--set", item)] + ["--latest-train-rows", str(latest_train_rows)]
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "tawin", "baseline", kind, "--out", str(folder), *sets],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"{folder} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        print(f"{folder.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    result = json.loads((folder / "result.json").read_text())
    return {"valid": result["valid"], "best_epoch": result.get("best_epoch"), "epochs": result.get("epochs")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder of the cells (resumable)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a SequentialBaselineConfig field applied to every cell (e.g. max_epochs=100)",
    )
    parser.add_argument(
        "--latest-train-rows", type=int, default=0, help="train on the latest N train rows only (0 = all)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = []
    for kind in args.kinds:
        for values in itertools.product(*GRID.values()):
            settings = dict(zip(GRID, values))
            rows.append((kind, settings, run_cell(kind, settings, out, args.set, args.latest_train_rows)))
    lines = [
        "| kind | hidden | dropout | best epoch | " + " | ".join(f"valid R@{k}" for k in KS) + " | valid NDCG@10 |",
        "|---|---:|---:|---:|" + "---:|" * (len(KS) + 1),
    ]
    best = {}
    for kind, settings, cell in rows:
        valid = cell["valid"]
        lines.append(
            f"| {kind} | {settings['hidden']} | {settings['dropout']} | {cell['best_epoch']} | "
            + " | ".join(f"{valid[f'recall@{k}']:.4f}" for k in KS)
            + f" | {valid['ndcg@10']:.4f} |"
        )
        if kind not in best or valid["ndcg@10"] > best[kind][1]["valid"]["ndcg@10"]:
            best[kind] = (settings, cell)
    print("\n".join(lines))
    for kind, (settings, cell) in best.items():
        print(f"best {kind} on valid NDCG@10: {settings} ({cell['valid']['ndcg@10']:.4f})")
    (out / "summary.json").write_text(
        json.dumps(
            {
                "grid": GRID,
                "extra": args.set,
                "latest_train_rows": args.latest_train_rows,
                "cells": [{"kind": k, **s, **c} for k, s, c in rows],
                "best": {k: s for k, (s, _) in best.items()},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
