"""Benchmarks — the demo recipe on small data (issue #23): the LLM and the tuned SASRec and GRU4Rec
trained on the latest 5,000 Industrial train rows, scored on the same test split, several seeds.

For each seed S, into OUT/seed_S (resumable: a finished command is read back, a cut one resumes,
since every `tawin` command resumes its own folder):

- `llm/`: `tawin run --config configs/demo.yaml --seed S --set data.latest_train_rows=5000 --set
  stages=[sft,eval,rl]`. Nothing else of the recipe is set here: the config's `small_data` section
  picks the small-data variant from the train split's size (docs/training.md, "Small data"), and
  the run's config.yaml holds the values that ran;
- `sasrec/`, `gru4rec/`: `tawin baseline KIND --latest-train-rows 5000 --set seed=S` with each
  kind's setting chosen on valid on the same 5,000 rows (`best` of
  benchmarks/results/tuning/baselines-5k.json, made by `tune_baselines.py --latest-train-rows 5000`).

Each command's output goes to OUT/seed_S/NAME.log; its wall-clock, summed over its attempts, to
OUT/seed_S/wall_clock.json. Then the script writes into --results:

- `seeds.json`: per seed and method the test metrics, the wall-clocks, the baselines' settings and
  the small-data settings in force (read from each folder's config.yaml); the machine, precision,
  commit and date (recorded when the first seed starts); the paired bootstrap of RL − SFT, RL −
  SASRec and RL − GRU4Rec at every metric (per-row metric averaged over the seeds on the test rows
  every predictions.jsonl holds, :func:`tawin.experiments.summaries.seed_averaged_pairs`);
- `table.md`: the mean over seeds of each method, then the bootstrap.

Command (about 30 CPU-minutes for 3 seeds on 2 cores; run it on an otherwise idle machine, since it
records the wall-clock):
    python benchmarks/small_data.py --out runs/small-data [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from demo_range import cpu_model, made_at, paired_bootstraps

from tawin.metrics.ranking import TOP_KS

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
TUNING = REPO / "benchmarks" / "results" / "tuning" / "baselines-5k.json"
RESULTS = REPO / "benchmarks" / "results" / "small-data"
TRAIN_ROWS = 5000
"""The latest train rows every method trains on (issue #23); valid and test are unchanged."""
METRICS = [*(f"recall@{k}" for k in TOP_KS.reported), "ndcg@10"]
BASELINES = ("sasrec", "gru4rec")
SFT = "SFT"


def llm_command(seed: int, folder: Path) -> list[str]:
    """The demo recipe on the latest TRAIN_ROWS train rows: SFT → test eval → RL → test eval."""
    return [
        *(sys.executable, "-m", "tawin", "run", "--config", str(DEMO), "--seed", str(seed)),
        *("--set", f"data.latest_train_rows={TRAIN_ROWS}", "--set", "stages=[sft,eval,rl]"),
        *("--out", str(folder), "--no-progress"),
    ]


def baseline_command(kind: str, settings: dict, seed: int, folder: Path) -> list[str]:
    """`tawin baseline KIND` on the latest TRAIN_ROWS train rows with the given settings and seed."""
    sets = [arg for key, value in {**settings, "seed": seed}.items() for arg in ("--set", f"{key}={value}")]
    return [
        *(sys.executable, "-m", "tawin", "baseline", kind, "--latest-train-rows", str(TRAIN_ROWS)),
        *sets,
        *("--out", str(folder)),
    ]


def tuned_settings(path: Path = TUNING) -> dict[str, dict]:
    """Kind → its setting with the best valid NDCG@10 on TRAIN_ROWS rows (`best` of the tuning record)."""
    record = json.loads(path.read_text())
    if record.get("latest_train_rows") != TRAIN_ROWS or not all(kind in record.get("best", {}) for kind in BASELINES):
        raise SystemExit(
            f"{path} must be `tune_baselines.py --latest-train-rows {TRAIN_ROWS}`'s summary.json with a `best` "
            f"setting for {', '.join(BASELINES)}; it has latest_train_rows={record.get('latest_train_rows')} and "
            f"best for {sorted(record.get('best', {}))}. Rerun the tuning or pass --tuning."
        )
    return {kind: record["best"][kind] for kind in BASELINES}


def run_logged(name: str, command: list[str], seed_folder: Path, done: Path) -> None:
    """Run `command` unless `done` exists, its output appended to SEED/NAME.log and its wall-clock
    added to SEED/wall_clock.json (also when it fails, so a resumed command counts every attempt)."""
    if done.exists():
        return
    seed_folder.mkdir(parents=True, exist_ok=True)
    log_path = seed_folder / f"{name}.log"
    started = time.perf_counter()
    try:
        with open(log_path, "a", encoding="utf-8") as log:
            finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    finally:
        clocks_path = seed_folder / "wall_clock.json"
        clocks = json.loads(clocks_path.read_text()) if clocks_path.exists() else {}
        clocks[name] = round(clocks.get(name, 0.0) + time.perf_counter() - started, 3)
        clocks_path.write_text(json.dumps(clocks, indent=2) + "\n")
    if finished.returncode != 0:
        raise SystemExit(f"{name} of {seed_folder.name} failed ({finished.returncode}): see {log_path}")


def run_seed(seed: int, out: Path, settings: dict[str, dict]) -> None:
    """The LLM run and each baseline of one seed; finished ones are skipped."""
    folder = out / f"seed_{seed}"
    run_logged("llm", llm_command(seed, folder / "llm"), folder, folder / "llm" / "results.json")
    for kind in BASELINES:
        command = baseline_command(kind, settings[kind], seed, folder / kind)
        run_logged(kind, command, folder, folder / kind / "metrics.json")  # metrics.json: the done-marker


def baseline_label(kind: str) -> str:
    from tawin.run.pipeline import SEQUENTIAL_LABELS

    return f"{SEQUENTIAL_LABELS[kind]} (tuned on {TRAIN_ROWS // 1000}k)"


def small_data_in_force(config: dict) -> dict:
    """What the LLM run's config.yaml says of the small-data variant: its rule, its entries, the
    value each entry's setting had in the run, and whether every entry's value is the one that ran
    (true when the variant applied)."""
    from tawin.overrides import parse_override, renamed_path
    from tawin.run.config import PipelineConfig

    small = config.get("small_data") or {"max_train_rows": 0, "overrides": []}
    effective, applied = {}, bool(small["overrides"])
    for entry in small["overrides"]:
        keys, value = parse_override(entry)
        keys = renamed_path(PipelineConfig, keys)
        found = config
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        effective[".".join(keys)] = found
        applied = applied and found == value
    return {
        "train_rows": config["data"]["latest_train_rows"],
        "max_train_rows": small["max_train_rows"],
        "overrides": list(small["overrides"]),
        "effective": effective,
        "applied": applied,
    }


def baseline_settings(config: dict) -> dict:
    """The SequentialBaselineConfig fields of a baseline folder's config.yaml that differ from the
    defaults, the seed aside (the tuned width and dropout)."""
    from tawin.baselines.sequential import SequentialBaselineConfig

    defaults = dataclasses.asdict(SequentialBaselineConfig())
    return {key: value for key, value in config["sequential"].items() if key != "seed" and defaults[key] != value}


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def read_seed(folder: Path) -> dict:
    """One seed's record from its finished folders: test metrics per method, the RL method's name,
    the wall-clocks, the LLM run's stage costs, the baselines' settings and the small-data variant."""
    llm = folder / "llm"
    rl_method = next(name for name in json.loads((llm / "results.json").read_text())["results"] if name != SFT)
    metrics = {
        SFT: json.loads((llm / "eval" / "sft" / "metrics.json").read_text()),
        f"{SFT} + {rl_method}": json.loads((llm / "eval" / "rl" / "metrics.json").read_text()),
    }
    metrics |= {baseline_label(kind): json.loads((folder / kind / "metrics.json").read_text()) for kind in BASELINES}
    clocks_path = folder / "wall_clock.json"
    return {
        "methods": {method: {m: values[m] for m in [*METRICS, "n_rows"]} for method, values in metrics.items()},
        "rl_method": rl_method,
        "wall_clock_seconds": json.loads(clocks_path.read_text()) if clocks_path.exists() else {},
        "llm_stages": json.loads((llm / "results.json").read_text())["stages"],
        "baseline_settings": {kind: baseline_settings(read_yaml(folder / kind / "config.yaml")) for kind in BASELINES},
        "small_data": small_data_in_force(read_yaml(llm / "config.yaml")),
    }


def prediction_paths(out: Path, seeds: list[int]) -> dict[str, list[Path]]:
    """Side of a comparison → its seeds' test predictions.jsonl."""
    where = {"rl": Path("llm/eval/rl"), "sft": Path("llm/eval/sft"), **{kind: Path(kind) for kind in BASELINES}}
    return {side: [out / f"seed_{s}" / path / "predictions.jsonl" for s in seeds] for side, path in where.items()}


def bootstraps(out: Path, seeds: list[int]) -> dict[str, dict[str, dict]]:
    """`rl_minus_X` → metric → paired bootstrap of RL − X (X = sft and each baseline) over the test
    rows every file holds, each side's per-row metric averaged over the seeds."""
    paths = prediction_paths(out, seeds)
    found = {}
    for reference in ("sft", *BASELINES):
        bootstraps = paired_bootstraps(paths["rl"], paths[reference])
        if bootstraps is None:
            raise SystemExit(f"RL and {reference} share no test row in their predictions.jsonl under {out}")
        found[f"rl_minus_{reference}"] = bootstraps
    return found


def summarise(out: Path, seeds: list[int], made: dict) -> tuple[dict, str]:
    """(seeds.json, table.md) from the seeds' finished folders under `out`; `made` holds machine,
    precision, commit, date and command. Reads files only, runs nothing."""
    per_seed = {str(seed): read_seed(out / f"seed_{seed}") for seed in seeds}
    methods = list(next(iter(per_seed.values()))["methods"])
    means = {
        method: {m: float(np.mean([run["methods"][method][m] for run in per_seed.values()])) for m in METRICS}
        for method in methods
    }
    record = {**made, "train_rows": TRAIN_ROWS, "seeds": per_seed, "means": means, **bootstraps(out, seeds)}
    return record, table_markdown(record)


def table_markdown(record: dict) -> str:
    """table.md: a header naming how the numbers were made, the mean ± std over seeds of each
    method, the wall-clocks, then the paired bootstrap of RL − each other method."""
    from tawin.experiments.summaries import mean_std

    seeds = record["seeds"]
    first = next(iter(seeds.values()))
    names = [m.replace("recall", "Recall").replace("ndcg", "NDCG") for m in METRICS]
    lines = [
        f"# Small data: the latest {TRAIN_ROWS:,} Industrial train rows",
        "",
        f"Test split ({first['methods'][SFT]['n_rows']:,} rows, full catalogue), mean ± std over {len(seeds)} seeds "
        f"({', '.join(seeds)}); every method trained on the latest {TRAIN_ROWS:,} train rows, valid and test "
        f"unchanged. {record['machine']}; {record['precision']}; commit {record['commit']}, {record['date']}. "
        f"Made by `{record['command']}`.",
        "",
        small_data_line(first["small_data"]),
        "",
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for method in record["means"]:
        cells = [mean_std(seed_stats([run["methods"][method][m] for run in seeds.values()])) for m in METRICS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", wall_clock_line(seeds), "", *bootstrap_lines(record)]
    return "\n".join(lines) + "\n"


def seed_stats(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample std — NaN for one seed —, seeds), as the experiment reports show them."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return float(np.mean(values)), std, len(values)


def small_data_line(small: dict) -> str:
    entries = ", ".join(f"{key}={value}" for key, value in small["effective"].items())
    if small["applied"]:
        return (
            f"The small-data variant of the recipe applied ({small['train_rows']:,} train rows ≤ "
            f"small_data.max_train_rows={small['max_train_rows']:,}): {entries}."
        )
    return (
        f"The small-data variant did not apply (small_data.max_train_rows={small['max_train_rows']:,}, "
        f"entries {small['overrides'] or 'none'}): the LLM ran the main recipe."
    )


def wall_clock_line(seeds: dict) -> str:
    names = dict.fromkeys(name for run in seeds.values() for name in run["wall_clock_seconds"])
    parts = []
    for name in names:
        values = [run["wall_clock_seconds"][name] for run in seeds.values() if name in run["wall_clock_seconds"]]
        label = "LLM run (SFT → eval → RL → eval)" if name == "llm" else baseline_label(name)
        parts.append(f"{label} {np.mean(values) / 60:.1f} min")
    return "Wall-clock per seed (mean): " + (", ".join(parts) if parts else "not recorded") + "."


def bootstrap_lines(record: dict) -> list[str]:
    """The RL − X table (mean difference [95% interval]) and, per X, whether RL's mean is above at
    every metric and at how many metrics the interval lies above zero."""
    rl = f"{SFT} + {next(iter(record['seeds'].values()))['rl_method']}"
    references = {"sft": SFT, **{kind: baseline_label(kind) for kind in BASELINES}}
    names = [m.replace("recall", "Recall").replace("ndcg", "NDCG") for m in METRICS]
    some = record["rl_minus_sft"][METRICS[0]]
    lines = [
        f"Paired bootstrap of RL − X, RL = {rl}, over the {some['n_rows']:,} test rows every predictions.jsonl "
        f"holds (per-row metric averaged over the seeds; {some['n_resamples']:,} resamples, "
        f"{some['confidence']:.0%} interval):",
        "",
        "| RL − X | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    verdicts = []
    for key, label in references.items():
        found = record[f"rl_minus_{key}"]
        cells = [f"{r['mean_diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" for r in map(found.get, METRICS)]
        lines.append(f"| RL − {label} | " + " | ".join(cells) + " |")
        above = sum(found[m]["mean_diff"] > 0 for m in METRICS)
        sure = sum(found[m]["ci_low"] > 0 for m in METRICS)
        verdicts.append(f"- above {label}'s at {above} of {len(METRICS)} metrics (interval above 0 at {sure})")
    return [*lines, "", "RL's mean is", *verdicts]


def machine_and_precision(out: Path, seeds: list[int]) -> tuple[str, str]:
    """The CPU (model, bf16 units, cores) and how the LLM computed there (its config's precision and
    device, resolved by the library's rule); the baselines compute in fp32."""
    from tawin.runtime import pick_device, use_bf16

    config = read_yaml(out / f"seed_{seeds[0]}" / "llm" / "config.yaml")
    device = pick_device(config["device"])
    llm = "bf16 autocast" if use_bf16(config["precision"], device) else "fp32"
    machine = f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores"
    return machine, f"LLM {llm} (precision: {config['precision']} on {device.type}), baselines fp32"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder of the seeds' runs (resumable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--results", type=Path, default=RESULTS, help="where seeds.json and table.md go")
    parser.add_argument("--tuning", type=Path, default=TUNING, help="tune_baselines.py's summary.json on 5k rows")
    args = parser.parse_args(argv)
    out = Path(args.out)
    settings = tuned_settings(args.tuning)
    commit, date = made_at(out)  # before the first seed runs
    for seed in args.seeds:
        run_seed(seed, out, settings)
    machine, precision = machine_and_precision(out, args.seeds)
    command = f"python benchmarks/small_data.py --out {args.out} --seeds {' '.join(map(str, args.seeds))}"
    made = {"machine": machine, "precision": precision, "commit": commit, "date": date, "command": command}
    record, table = summarise(out, args.seeds, made)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "seeds.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    (args.results / "table.md").write_text(table)
    print(table)
    print(f"wrote {args.results / 'seeds.json'} and {args.results / 'table.md'}")


if __name__ == "__main__":
    main()
