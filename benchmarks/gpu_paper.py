"""The paper's regime on one GPU (issue #18), driven by `benchmarks/gpu_paper.sh`: SFT once, then
SFT only / GRPO (beam negatives) / ReRe / TAWin (σ* = 2) from that checkpoint, each evaluated on
test, every stage sized to a time budget and stopped at it.

    python benchmarks/gpu_paper.py run --config configs/paper/smollm2-title-industrial.yaml --out DIR
    python benchmarks/gpu_paper.py run --dry-run --out DIR        # CPU rehearsal: the tiny model, a few steps and rows
    python benchmarks/gpu_paper.py add-benchmarks DIR             # decode.json / rl_step.json of DIR into its report

`run`: the methods are an experiment grid (:data:`METHODS`, one seed) over the config file, run
cell by cell by the experiment's own :class:`~tawin.experiments.worker.CellWorker` in one process
(one session: the dataset is loaded and each split encoded once). First a probe times one unit
of each stage's work (`gpu_paper_plan.py`) and the plan sizes SFT (epochs or train rows), RL
(steps) and the evaluations (test rows, the same rows for every method) to their budgets; the
plan and each stage's estimate are printed before the stages start. A stage still running at its
budget is stopped (SIGALRM): a stopped SFT or RL run stands in with its last checkpoint where it
wrote one, a stopped evaluation leaves its method out, and the report says which. Outputs in DIR:
``report.md`` (the plan, each stage's budget / estimate / seconds / whether it was stopped, then
the experiment report: Recall/NDCG table, gains over ReRe, the goal line, the paired bootstrap),
``results.json`` (the same as data, with every method's metrics under ``methods``),
``comparison.png`` and ``logs.tar.gz`` (every stage's log.jsonl, summary.json, cell.json,
metrics.json and predictions.jsonl; each cell's resolved config is in results.json). Checkpoints
stay in --work.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

METHODS = {
    "SFT only": None,
    "GRPO (beam negatives)": {"negatives": "beam", "reward": "binary", "weighting": "none"},
    "ReRe": {"negatives": "beam", "reward": "rank", "weighting": "none"},
    "TAWin (σ*=2)": {"negatives": "beam", "reward": "binary", "weighting": "tawin", "target_k": 3, "anchor": 2},
}
"""The compared methods, in the syntax of an experiment YAML (as configs/experiments/industrial-compare.yaml)."""
REPORT = {"reference": "ReRe", "candidate": "TAWin (σ*=2)", "goal_k": 3, "goal_ratio": 1.045, "ks": [1, 3, 5, 10]}
DEFAULT_CONFIG = "configs/paper/smollm2-title-industrial.yaml"
TINY_MODEL = [
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.num_kv_heads=2",
    "model.intermediate_size=64",
]
"""The tiny built-in model of the test suite (tests/conftest.py TINY_OVERRIDES)."""
DRY_RUN_OVERRIDES = [
    "model.name_or_path=null",
    "model.item_repr=sid",
    "model.max_prompt_tokens=128",
    *TINY_MODEL,
    "device=cpu",
    "precision=fp32",
    "threads=1",
    "sft.batch_size=16",
    "sft.lr=2e-3",
    "sft.eval_rows=8",
    "sft.eval_beams=10",
    "rl.batch_size=4",
    "rl.eval_rows=4",
    "eval.batch_size=16",
]
"""`--dry-run`: the paper config on the CPU with the tiny model (the sizes come from the caps below)."""
DRY_RUN_CAPS = {"sft_rows": 64, "rl_steps": 2, "eval_rows": 16}
BUDGETS_S = {"probe": 45, "sft": 100, "eval": 25, "rl": 35}
"""Default budget of each stage in seconds (eval and rl: each run); with the benchmarks' 40 + 50 s
(gpu_paper.sh) and the imports, the whole script takes under 8 minutes on one H200."""


class BudgetExceeded(BaseException):
    """Raised by SIGALRM when a stage reaches its budget (a BaseException: library code that
    catches Exception cannot swallow it)."""


@contextmanager
def budget(seconds: float):
    """Raise BudgetExceeded in the main thread once `seconds` of wall-clock have passed."""

    def alarm(signum, frame):
        raise BudgetExceeded(f"stopped at its budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class StageRecord:
    stage: str
    budget_s: float
    estimate_s: float | None
    seconds: float = 0.0
    stopped_at_budget: bool = False
    error: str | None = None
    note: str = ""


@dataclass
class Stages:
    """Runs stages under their budgets and keeps what happened to each."""

    log: Callable[[str], None]
    records: list[StageRecord] = field(default_factory=list)

    def run(self, name: str, budget_s: float, estimate_s: float | None, fn) -> StageRecord:
        record = StageRecord(name, budget_s, estimate_s)
        self.log(
            f"== {name}: budget {budget_s:.0f} s" + (f", estimate {estimate_s:.1f} s" if estimate_s is not None else "")
        )
        started = time.perf_counter()
        try:
            with budget(budget_s):
                fn()
        except BudgetExceeded:
            record.stopped_at_budget = True
        except Exception as error:  # one failed stage must not cost the others: it is reported
            record.error = f"{type(error).__name__}: {' '.join(str(error).split())[:600]}"
            traceback.print_exc()
        finally:
            _free_memory()
        record.seconds = round(time.perf_counter() - started, 1)
        outcome = (
            "STOPPED at its budget"
            if record.stopped_at_budget
            else f"FAILED ({record.error})"
            if record.error
            else "done"
        )
        self.log(f"== {name}: {outcome} after {record.seconds:.1f} s{'; ' + record.note if record.note else ''}")
        self.records.append(record)
        return record


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_grid(config_path: Path, overrides: list[str]):
    """The experiment (METHODS × one seed) over the pipeline config file with `overrides`."""
    import yaml

    from tawin.config import merge_override, parse_override
    from tawin.experiments.parse import parse_experiment

    base = yaml.safe_load(config_path.read_text()) or {}
    for text in overrides:
        keys, value = parse_override(text)
        merge_override(base, keys, value)
    seed = base.pop("seed", 0)
    data = {
        "name": f"The paper's regime on one GPU: {config_path.name}",
        "base": base,
        "seeds": [seed],
        "methods": METHODS,
        "report": REPORT,
    }
    return parse_experiment(data, where=str(config_path))


WORK_MARK = ".gpu-paper-work"


def fresh_work_folder(work: Path) -> None:
    """An empty `work` folder: one this script made earlier is emptied (every run measures afresh),
    any other non-empty folder is refused."""
    if work.exists() and any(work.iterdir()):
        if not (work / WORK_MARK).exists():
            sys.exit(f"--work {work} is not empty and was not made by gpu_paper.py; pass an empty or new folder")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARK).write_text("made by benchmarks/gpu_paper.py; emptied by its next run\n")


def promote_last(sft_folder: Path) -> str | None:
    """A stopped SFT run: best/ of an earlier finished epoch, or else its last checkpoint copied
    to best/, becomes the SFT checkpoint (summary.json says so); None when there is neither."""
    from tawin.checkpoint import atomic_write_json

    best, last = sft_folder / "best", sft_folder / "last"
    if (best / "tawin.json").exists():
        note = "best/ of its last finished epoch is the SFT checkpoint"
    elif (last / "tawin.json").exists():
        shutil.copytree(last, best, ignore=shutil.ignore_patterns("trainer.pt"), dirs_exist_ok=True)
        note = "its last checkpoint (last/, copied to best/) is the SFT checkpoint"
    else:
        return None
    atomic_write_json(sft_folder / "summary.json", {"stopped_at_budget": True, "note": note})
    return note


def run_grid(experiment, session, work: Path, plan, budgets, stages: Stages, log) -> None:
    """SFT once, then each method: RL (if any) and its evaluation, every stage under its budget,
    all in `session` (the probe's: its encodings are reused)."""
    from tawin.experiments.grid import expand_cells
    from tawin.experiments.results import seed_sft_folder
    from tawin.experiments.worker import CellWorker
    from tawin.run.stages import eval_stage

    cells = expand_cells(experiment)
    worker = CellWorker(experiment, work, progress=False, log=log, session=session)
    sft_folder = seed_sft_folder(work, cells[0].seed)
    sft = stages.run("sft", budgets.sft, plan.estimate_s["sft"], lambda: worker.sft(cells[0].config))
    if sft.stopped_at_budget:
        sft.note = promote_last(sft_folder) or ""
    if sft.error or (sft.stopped_at_budget and not sft.note):
        sft.note = "no SFT checkpoint: nothing was trained further or evaluated"
        log(sft.note)
        return
    for cell in cells:
        folder = work / cell.id
        checkpoint = None  # None: the cell's own (the SFT checkpoint or rl/final/), through CellWorker.run
        if cell.kind == "rl":
            rl = stages.run(
                f"rl {cell.label}",
                budgets.rl,
                plan.estimate_s["rl"],
                lambda cell=cell, folder=folder: worker.rl(cell.config, folder / "rl"),
            )
            if rl.error:
                continue
            if rl.stopped_at_budget:
                checkpoint = folder / "rl" / "last"
                if not (checkpoint / "tawin.json").exists():
                    rl.note = "no checkpoint yet: not evaluated"
                    continue
                rl.note = "its last checkpoint (rl/last/) is evaluated"

        def evaluate(cell=cell, folder=folder, checkpoint=checkpoint):
            if checkpoint is None:
                return worker.run(cell)
            plain = replace(cell.config, eval=replace(cell.config.eval, diagnostics=False))
            eval_stage(worker.session(plain), plain, checkpoint, folder)

        stages.run(f"eval {cell.label}", budgets.eval, plan.estimate_s["eval"], evaluate)


def cmd_run(args) -> int:
    from gpu_paper_plan import Budgets, Caps, plan_sizes, probe
    from gpu_paper_report import RunState, write_outputs

    from tawin.run.session import Session
    from tawin.runtime import quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    fresh_work_folder(work)
    overrides = (DRY_RUN_OVERRIDES if args.dry_run else []) + list(args.set)
    budgets = Budgets(args.probe_s, args.sft_s, args.eval_s, args.rl_s)
    log = _logger(started)
    log(
        f"budgets: probe {budgets.probe:.0f} s, SFT {budgets.sft:.0f} "
        f"s, 4 × eval {budgets.eval:.0f} s, 3 × RL {budgets.rl:.0f} s "
        f"= {budgets.total():.0f} s at most"
    )
    experiment = load_grid(Path(args.config), overrides)
    config = replace(experiment.base, seed=experiment.seeds[0])
    session = Session.open(config, progress=False)
    stages, measured = Stages(log), {}

    def measure():
        measured["rates"] = probe(session, config, _tawin_rl(experiment), work)

    stages.run("probe", budgets.probe, None, measure)
    state = RunState(args.config, args.dry_run, overrides, stages.records, 0.0)
    if "rates" not in measured:
        state.seconds = time.perf_counter() - started
        write_outputs(out, work, state)
        return 1
    n_rows = {name: len(split) for name, split in session.dataset.splits.items()}
    plan = plan_sizes(
        measured["rates"], budgets, config, n_rows, args.margin, Caps(**DRY_RUN_CAPS) if args.dry_run else Caps()
    )
    log("rates (s): " + ", ".join(f"{k} {v:.4g}" for k, v in asdict(measured["rates"]).items()))
    log(
        f"plan: SFT {plan.sft_epochs} epoch(s) × {plan.sft_steps} "
        f"steps (first_train_rows {plan.sft_max_train_rows or 'all'}), "
        f"RL {plan.rl_steps} steps, eval {plan.eval_rows or 'all'} test rows"
    )
    log(
        f"estimates (s): SFT {plan.estimate_s['sft']:.1f}, each RL "
        f"{plan.estimate_s['rl']:.1f}, each eval {plan.estimate_s['eval']:.1f}; "
        f"total {plan.estimate_s['sft'] + 3 * plan.estimate_s['rl'] + 4 * plan.estimate_s['eval']:.1f}"
    )
    for stage in ("sft", "rl", "eval"):
        if plan.estimate_s[stage] > getattr(budgets, stage):
            log(
                f"WARNING: {stage} needs {plan.estimate_s[stage]:.0f} s at its smallest size, over its budget of "
                f"{getattr(budgets, stage):.0f} s: it will be stopped there"
            )
    experiment = load_grid(Path(args.config), overrides + plan.overrides())
    run_grid(experiment, session, work, plan, budgets, stages, log)
    state.config, state.experiment, state.rates, state.plan, state.n_rows = (
        config,
        experiment,
        measured["rates"],
        plan,
        n_rows,
    )
    state.seconds = time.perf_counter() - started
    results = write_outputs(out, work, state)
    failed = [r.stage for r in stages.records if r.error]
    log(f"wrote {out}: {len(results['methods'])} methods evaluated" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed or not results["methods"] else 0


def _tawin_rl(experiment):
    """The RL config of the TAWin cell (what the probe's RL step runs)."""
    from tawin.experiments.grid import expand_cells

    return next(cell.config.rl for cell in expand_cells(experiment) if cell.label == REPORT["candidate"])


def _logger(started: float):
    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    return log


def cmd_add_benchmarks(args) -> int:
    from gpu_paper_report import add_benchmarks

    add_benchmarks(
        Path(args.out),
        {"decode": args.decode_rc, "rl_step": args.rl_step_rc},
        {"decode": args.decode_note, "rl_step": args.rl_step_note},
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="probe, plan, SFT, RL and evaluations, report")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=f"pipeline config (default {DEFAULT_CONFIG})")
    run.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override a config field (repeatable)"
    )
    run.add_argument("--out", required=True, help="report.md, results.json, comparison.png, logs.tar.gz")
    run.add_argument(
        "--work", default="/tmp/tawin-gpu-paper", help="checkpoints and stage folders (default /tmp/tawin-gpu-paper)"
    )
    run.add_argument(
        "--dry-run", action="store_true", help="CPU rehearsal: the tiny built-in model, a few steps and rows"
    )
    for stage, what in (("probe", "the probe"), ("sft", "SFT"), ("eval", "each evaluation"), ("rl", "each RL run")):
        run.add_argument(
            f"--{stage}-s",
            type=float,
            default=BUDGETS_S[stage],
            help=f"budget of {what} in s (default {BUDGETS_S[stage]})",
        )
    run.add_argument("--margin", type=float, default=0.8, help="share of each budget the plan fills (default 0.8)")
    run.set_defaults(handler=cmd_run)
    bench = commands.add_parser("add-benchmarks", help="put decode.json and rl_step.json of OUT into its report")
    bench.add_argument("out")
    bench.add_argument("--decode-rc", type=int, default=None, help="exit status of decode_speed.py (None = not run)")
    bench.add_argument("--rl-step-rc", type=int, default=None, help="exit status of rl_step_speed.py (None = not run)")
    bench.add_argument("--decode-note", default="", help="why decode_speed.py has no result, if it was not run")
    bench.add_argument("--rl-step-note", default="", help="why rl_step_speed.py has no result, if it was not run")
    bench.set_defaults(handler=cmd_add_benchmarks)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(arguments.handler(arguments))
