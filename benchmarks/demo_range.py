"""Benchmarks — the demo on several seeds: the numbers a user should expect from `make demo`.

Runs `tawin run --config configs/demo.yaml --seed S` for each seed (resumable: a finished seed is
read back, a cut one resumes), then writes, for the README and `make demo`:

- `benchmarks/results/demo/seeds.json`: every seed's test table, its stage costs and wall-clock,
  the machine (CPU model, precision), the commit and the date;
- the paired bootstrap of RL − SFT, RL − SASRec and RL − GRU4Rec over the test rows (per-row
  metric averaged over the seeds), in `seeds.json` under `rl_minus_sft`, `rl_minus_sasrec` and
  `rl_minus_gru4rec`: per metric the bootstrap's record, or a "not available: …" line where a seed's
  eval folder holds no predictions.jsonl (SASRec and GRU4Rec in runs made before they wrote one);
- `benchmarks/results/demo/expected.json`: per method and metric, the range a run on another CPU
  should land in — [min over seeds − SE, max over seeds + SE], where SE = √(m(1−m)/n) at the mean
  m over seeds and n test rows (exact for Recall@K, an upper bound for NDCG@K since each row's
  NDCG lies in [0, 1]). bf16 kernels differ between CPUs, so another machine's run behaves like
  another draw of the same training: the seeds measure that spread, and one standard error of the
  test split widens it for the few seeds there are (the CPU-to-CPU difference of one seed, measured
  once between an AMD EPYC and an Intel Xeon, was at most .0044 on Recall@K, about one SE).

`make demo` passes the expected ranges to `tawin run --expect`, which prints whether each number
of the run lies inside.

Command (about 10 CPU-minutes per seed on 2 cores; run it on an otherwise idle machine, since it
also records the wall-clock):
    python benchmarks/demo_range.py --out runs/demo-seeds [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

from tawin.metrics.ranking import TOP_KS

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
RESULTS = REPO / "benchmarks" / "results" / "demo"
METRICS = [*(f"recall@{k}" for k in TOP_KS.reported), "ndcg@10"]
TEST_ROWS = 4533
REFERENCES = {"sft": "SFT", "sasrec": "SASRec", "gru4rec": "GRU4Rec"}
"""eval/ folder of a run → its label: each is compared with eval/rl/ and recorded as `rl_minus_<folder>`."""


def run_seed(seed: int, out: Path) -> dict:
    """One seed's demo; its output goes to OUT/seed_S.log as `make demo > demo.log 2>&1` would write it."""
    folder = out / f"seed_{seed}"
    if not (folder / "results.json").exists():
        command = [
            sys.executable,
            "-m",
            "tawin",
            "run",
            "--config",
            str(DEMO),
            "--seed",
            str(seed),
            "--out",
            str(folder),
        ]
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"seed_{seed}.log", "a", encoding="utf-8") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise SystemExit(f"seed {seed} failed ({done.returncode}): see {out / f'seed_{seed}.log'}")
    return json.loads((folder / "results.json").read_text())


def made_at(out: Path) -> tuple[str, str]:
    """(commit, date) of the code that ran the seeds: recorded in OUT/commit.txt when the first seed
    starts, so a later rewrite of the record (e.g. resumed seeds) keeps them."""
    record = out / "commit.txt"
    if not record.exists():
        out.mkdir(parents=True, exist_ok=True)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        record.write_text(f"{head.stdout.strip()} {datetime.date.today().isoformat()}\n")
    commit, date = record.read_text().split()
    return commit, date


def cpu_model() -> str:
    """The CPU's model name, with the bf16 units that decide what `precision: auto` does on it."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "CPU")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    units = [label for flag, label in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    return f"{name} with {'/'.join(units)}" if units else f"{name} (no bf16 units)"


def expected_ranges(per_seed: dict[int, dict]) -> dict[str, dict[str, list[float]]]:
    """Method → metric → [min − SE, max + SE] over the seeds (module docstring)."""
    methods = next(iter(per_seed.values()))["results"]
    ranges: dict[str, dict[str, list[float]]] = {}
    for method in methods:
        ranges[method] = {}
        for metric in METRICS:
            values = [run["results"][method][metric] for run in per_seed.values()]
            mean = sum(values) / len(values)
            standard_error = math.sqrt(mean * (1 - mean) / TEST_ROWS)
            ranges[method][metric] = [
                round(max(0.0, min(values) - standard_error), 4),
                round(max(values) + standard_error, 4),
            ]
    return ranges


def rl_minus(out: Path, seeds: list[int], reference: str) -> dict[str, dict] | str:
    """Metric → paired bootstrap of RL − `reference` (an eval/ folder of REFERENCES) over the test rows
    every seed's predictions.jsonl of both holds, per-row metric averaged over the seeds; or the line
    saying why not, since runs made before SASRec and GRU4Rec wrote predictions.jsonl lack theirs."""
    paths = {
        stage: [out / f"seed_{s}" / "eval" / stage / "predictions.jsonl" for s in seeds] for stage in ("rl", reference)
    }
    missing = [str(path.relative_to(out)) for side in paths.values() for path in side if not path.exists()]
    if missing:
        return (
            f"not available: no {', '.join(missing)} under {out} (runs made before that stage wrote "
            "predictions.jsonl); `tawin run --config configs/demo.yaml --seed S --out OUT/seed_S` again redoes only "
            "the stages lacking their output"
        )
    found = paired_bootstraps(paths["rl"], paths[reference])
    if found is None:
        return f"not available: eval/rl and eval/{reference} share no test row in their predictions.jsonl under {out}"
    return found


def paired_bootstraps(rl_paths: list[Path], reference_paths: list[Path]) -> dict[str, dict] | None:
    """Metric → paired bootstrap of RL − reference on the rows every file holds, each side's per-row
    metric averaged over its seeds' predictions.jsonl; None when no row is common."""
    from tawin.experiments.summaries import seed_averaged_pairs
    from tawin.metrics import paired_bootstrap

    pairs = seed_averaged_pairs(rl_paths, reference_paths, tuple(METRICS))
    return None if pairs is None else {metric: paired_bootstrap(a_R, b_R) for metric, (a_R, b_R, _) in pairs.items()}


def bootstrap_lines(seeds_record: dict) -> list[str]:
    """One line per metric of each `rl_minus_<folder>` (mean difference [interval]), or its
    not-available line."""
    lines = []
    for folder, label in REFERENCES.items():
        found = seeds_record[f"rl_minus_{folder}"]
        if isinstance(found, str):
            lines.append(f"RL − {label}: {found}")
            continue
        for metric, result in found.items():
            lines.append(
                f"RL − {label} {metric}: {result['mean_diff']:+.4f} [{result['ci_low']:+.4f}, {result['ci_high']:+.4f}]"
            )
    return lines


def table(per_seed: dict[int, dict]) -> str:
    lines = ["| method | seed | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for seed, run in per_seed.items():
        for method, metrics in run["results"].items():
            lines.append(f"| {method} | {seed} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder of the seeds' runs (resumable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--precision",
        default="bf16 autocast (precision: auto on a CPU with bf16 units)",
        help="how the runs computed, as the results should say it",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    commit, date = made_at(out)  # before the first seed runs
    per_seed = {seed: run_seed(seed, out) for seed in args.seeds}
    machine = f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores, {args.precision}"
    made_by = (
        f"{len(per_seed)} seeds ({', '.join(map(str, per_seed))}) of `make demo` on {machine}, commit {commit}, "
        f"{date}; each range is [min over seeds − SE, max over seeds + SE], "
        f"SE = √(m(1−m)/{TEST_ROWS}) at the seeds' mean m (benchmarks/demo_range.py)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    seeds_record = {
        "machine": machine,
        "commit": commit,
        "date": date,
        "command": "tawin run --config configs/demo.yaml --seed S --out runs/demo-seeds/seed_S",
        "seeds": {str(seed): run for seed, run in per_seed.items()},
        **{f"rl_minus_{folder}": rl_minus(out, list(per_seed), folder) for folder in REFERENCES},
    }
    (RESULTS / "seeds.json").write_text(json.dumps(seeds_record, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "expected.json").write_text(
        json.dumps({"made_by": made_by, "ranges": expected_ranges(per_seed)}, indent=2, ensure_ascii=False) + "\n"
    )
    print(table(per_seed))
    print("\n".join(f"seed {seed}: {run['total_seconds']:.0f} s" for seed, run in per_seed.items()))
    print("\n".join(bootstrap_lines(seeds_record)))
    print(f"wrote {RESULTS / 'seeds.json'} and {RESULTS / 'expected.json'}")


if __name__ == "__main__":
    main()
