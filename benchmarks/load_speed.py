"""Benchmarks — tawin beside another busy process: how much slower `tawin eval` and an RL step get.

A laptop with a browser open, CI, or `tawin experiment --jobs 2` share the CPU with tawin. A fair
slowdown is the share of the CPU the other work takes: with one busy single-threaded process on 2
cores, at most about 2×. OpenMP workers that spin-wait between parallel regions do far worse: each
small op waits for a worker whose core the other process holds (measured before the fix: 8× for
evaluation, 40× for RL steps).

Each case runs the real CLI in a subprocess, so that what the CLI sets before torch loads (the
OpenMP wait policy) is what is measured:
- eval: `tawin eval` of --rows test rows with --beams beams; the seconds of ranking are the
  command's wall-clock with --rows rows minus its wall-clock with 1 row (start-up and loading);
- rl: `tawin rl` for --rl-steps steps of the demo's RL (G = 16, 16 prompts a step), logging every
  step; the seconds per step are the median gap between consecutive step records of `log.jsonl`.
Each is timed alone and beside `python -c "while True: pass"`, alternating, --repeats times; the
medians are reported, with busy/alone per variant. Variants are environment settings of the
child process, side by side in one run:
- cli: the CLI as it is (it chooses the OpenMP wait policy unless the environment does);
- spin: GOMP_SPINCOUNT=300000, libgomp's default spin when no policy is set, which is what the CLI
  ran with before it chose its own (it set the policy after torch had loaded);
- more with --variant NAME=VAR=VALUE[,VAR=VALUE...]; `set:FIELD=VALUE` adds a config override
  (e.g. --variant spin30k=GOMP_SPINCOUNT=30000 --variant one-thread=set:threads=1).

The checkpoint: --checkpoint, or a default-model SFT on 512 train rows made in a temporary folder
(how well it ranks does not change what a beam-search step costs).

Command (about 10 minutes on 2 cores with the defaults):
    python benchmarks/load_speed.py --out benchmarks/results/load_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
VARIANTS = {"cli": {}, "spin": {"GOMP_SPINCOUNT": "300000"}}


def tawin(args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of `python -m tawin ARGS` in a child with `env` added (the OpenMP variables of
    this process removed first, so that only the variant's settings apply); the variant's `set:`
    entries become `--set` overrides of the command."""
    child = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    child |= {k: v for k, v in env.items() if not k.startswith("set:")}
    sets = [arg for k, v in env.items() if k.startswith("set:") for arg in ("--set", f"{k[4:]}={v}")]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tawin", *args, *sets], env=child, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"tawin {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def fresh(folder: Path) -> Path:
    """`folder`, emptied: a run folder with the same settings would resume (and time nothing)."""
    shutil.rmtree(folder, ignore_errors=True)
    return folder


class Busy:
    """One single-threaded busy process while the block runs (or none)."""

    def __init__(self, on: bool):
        self.on, self.process = on, None

    def __enter__(self):
        if self.on:
            self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def eval_seconds(checkpoint: str, rows: int, beams: int, env: dict[str, str], work: Path) -> float:
    """Seconds `tawin eval` spends ranking `rows` rows: wall(rows) − wall(1 row)."""

    def wall(n: int) -> float:
        out = fresh(work / f"eval-{n}")
        return tawin(
            [
                "eval",
                "--config",
                str(DEMO),
                "--checkpoint",
                checkpoint,
                "--out",
                str(out),
                "--beams",
                str(beams),
                "--set",
                f"eval.sample_size={n}",
                "--no-progress",
            ],
            env,
        )

    return wall(rows) - wall(1)


def rl_step_seconds(checkpoint: str, steps: int, env: dict[str, str], work: Path) -> float:
    """Median seconds between consecutive RL step records of `tawin rl` (start-up excluded)."""
    out = fresh(work / "rl")
    tawin(
        [
            "rl",
            "--config",
            str(DEMO),
            "--init",
            checkpoint,
            "--out",
            str(out),
            "--no-progress",
            "--set",
            f"rl.max_steps={steps}",
            "--set",
            "rl.log_every=1",
            "--set",
            "rl.eval_every=0",
            "--set",
            "rl.eval_rows=16",
        ],
        env,
    )
    times = [
        json.loads(line)["time"] for line in (out / "log.jsonl").read_text().splitlines() if '"train/loss"' in line
    ]
    return statistics.median(b - a for a, b in zip(times, times[1:]))


def make_checkpoint(work: Path) -> str:
    out = work / "sft"
    tawin(
        [
            "sft",
            "--config",
            str(DEMO),
            "--out",
            str(out),
            "--set",
            "sft.first_train_rows=512",
            "--set",
            "sft.epochs=1",
            "--no-progress",
        ],
        {},
    )
    return str(out / "best")


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition("=")
    env = dict(item.split("=", 1) for item in settings.split(",") if item)
    if not name or not env:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: write NAME=VAR=VALUE[,VAR=VALUE]")
    return name, env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="model folder (default: a short SFT made in a temporary folder)")
    parser.add_argument("--rows", type=int, default=400, help="test rows ranked per evaluation (default 400)")
    parser.add_argument("--beams", type=int, default=50, help="beams of the evaluation (default 50)")
    parser.add_argument("--rl-steps", type=int, default=12, help="RL steps per run (default 12)")
    parser.add_argument("--repeats", type=int, default=3, help="alone/busy pairs per variant (default 3)")
    parser.add_argument("--variant", action="append", type=parse_variant, default=[], help="NAME=VAR=VALUE[,VAR=VALUE]")
    parser.add_argument("--only", nargs="+", help="run only these variants")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    args.variants = VARIANTS | dict(args.variant)
    if args.only:
        args.variants = {name: args.variants[name] for name in args.only}
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    timings: dict[str, dict[str, list[float]]] = {
        v: {k: [] for k in ("eval_alone", "eval_busy", "rl_alone", "rl_busy")} for v in args.variants
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint or make_checkpoint(work)
        for repeat in range(args.repeats):
            for name, env in args.variants.items():
                for busy in (False, True):
                    label = "busy" if busy else "alone"
                    with Busy(busy):
                        timings[name][f"eval_{label}"].append(
                            eval_seconds(checkpoint, args.rows, args.beams, env, work)
                        )
                        timings[name][f"rl_{label}"].append(rl_step_seconds(checkpoint, args.rl_steps, env, work))
                    print(
                        f"repeat {repeat + 1}/{args.repeats} {name} {label}: "
                        f"eval {timings[name][f'eval_{label}'][-1]:.2f} s, "
                        f"rl step {timings[name][f'rl_{label}'][-1]:.3f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    result = {
        "machine": machine(),
        "rows": args.rows,
        "beams": args.beams,
        "rl_steps": args.rl_steps,
        "repeats": args.repeats,
        "variants": {name: {"env": env, **summarise(timings[name])} for name, env in args.variants.items()},
    }
    print(table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def summarise(times: dict[str, list[float]]) -> dict:
    medians = {key: statistics.median(values) for key, values in times.items()}
    return {
        "median_s": medians,
        "runs_s": times,
        "eval_busy_over_alone": medians["eval_busy"] / medians["eval_alone"],
        "rl_busy_over_alone": medians["rl_busy"] / medians["rl_alone"],
    }


def table(result: dict) -> str:
    lines = [
        "| variant | eval alone (s) | eval busy (s) | busy/alone | RL step alone (s) | RL step busy (s) | busy/alone |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["variants"].items():
        m = row["median_s"]
        lines.append(
            f"| {name} | {m['eval_alone']:.2f} | {m['eval_busy']:.2f} | {row['eval_busy_over_alone']:.2f}× | "
            f"{m['rl_alone']:.3f} | {m['rl_busy']:.3f} | {row['rl_busy_over_alone']:.2f}× |"
        )
    return "\n".join(lines)


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {"cpu": model, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}


if __name__ == "__main__":
    main()
