"""`tawin experiment CONFIG --out DIR`: run a grid of methods × seeds (× σ*), then write the report.

Layout of DIR (rerun the same command to resume; a cell whose metrics.json exists is skipped)::

    config.yaml             the resolved experiment (RunFolder: locked; a different one is refused)
    results.json            every finished cell: metrics, resolved config, anchor choice, seconds
    report.md, comparison.png, diagnostics.png, anchor_sweep.png
    seed_S/sft/             the seed's one SFT checkpoint (best/, last/, summary.json)
    seed_S/<cell>/          rl/ (checkpoints; sweep/anchor_A/ for an anchor sweep), cell.json,
                            predictions.jsonl, metrics.json (written last: the cell's done-marker)

Resumption below the cell level is the stages' own: SFT and RL continue from their ``last/``
checkpoints, and a finished stage (its summary.json present) is not rerun.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module for every command: keep torch & co. lazy
    from tawin.experiments.grid import Cell, Experiment
    from tawin.pipeline import PipelineConfig


def add_experiment_parser(commands) -> None:
    """Register `tawin experiment` on the CLI's subparsers."""
    p = commands.add_parser("experiment", help="a grid of methods × seeds (× σ*) sharing one SFT per seed → results.json, report.md, plots")
    p.add_argument("config", help="experiment YAML (see configs/experiments/)")
    p.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override: seeds=[0], report.goal_k=5, … for experiment keys; anything else (rl.max_steps=2) goes to base")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.add_argument("--overwrite", action="store_true", help="replace an experiment with a different config in --out")
    p.add_argument("--jobs", type=int, default=1,
                   help="cells run at once, each in its own process (CPU threads are split between them unless "
                        "threads is set); the results are those of --jobs 1")
    p.set_defaults(func=cmd_experiment)


def cmd_experiment(args) -> int:
    from tawin.experiments.grid import load_experiment

    from tawin.errors import ConfigError

    if args.jobs < 1:
        raise ConfigError(f"--jobs={args.jobs} must be ≥ 1 (cells run at once)")
    experiment = load_experiment(args.config, args.set)
    results = run_experiment(experiment, Path(args.out), overwrite=args.overwrite, progress=not args.no_progress, jobs=args.jobs)
    print(f"{len(results['cells'])} cells finished; wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'report.md'}")
    return 0


def run_experiment(experiment: Experiment, out: Path, overwrite: bool = False, progress: bool = True, log=print,
                   jobs: int = 1) -> dict:
    """Run every unfinished cell, rewriting results.json after each; then the report.

    With `jobs` > 1 the cells run in that many worker processes: first every seed's shared SFT
    checkpoint (and the baselines), then the cells that start from them. Every cell seeds itself,
    so the results do not depend on `jobs`.
    """
    from tqdm.auto import tqdm

    from tawin.experiments.grid import expand_cells
    from tawin.experiments.report import write_report
    from tawin.pipeline import RunFolder

    out = Path(out)
    cells = expand_cells(experiment)
    # Diagnostics and the report can change on a finished experiment: the cells stay valid.
    with RunFolder(out, experiment, overwrite, kind="experiment", extendable=("diagnostics", "diagnostics_seeds", "report")):
        pending = [cell for cell in cells if not (out / cell.id / "metrics.json").exists() or _lacks_diagnostics(out, cell)]
        for cell in cells:
            if cell not in pending:
                log(f"skipped {cell.id}: metrics.json exists")
            elif (out / cell.id / "metrics.json").exists():
                log(f"{cell.id}: finished; adding its diagnostics")
        bar = tqdm(total=len(cells), initial=len(cells) - len(pending), desc="experiment", unit="cell", disable=not progress, file=sys.stderr)
        say = (lambda text: tqdm.write(text, file=sys.stdout)) if progress else log
        started, finished = time.time(), 0

        def done(cell: Cell, seconds: float) -> None:
            nonlocal finished
            finished += 1
            collect_results(out, experiment, cells, write=True)
            bar.update(1)
            eta = (time.time() - started) / finished * (len(pending) - finished)
            say(f"[{len(cells) - len(pending) + finished}/{len(cells)}] {cell.id} done in {seconds:.0f}s; ETA {_duration(eta)}")

        if jobs <= 1 or len(pending) <= 1:
            worker = CellWorker(experiment, out, progress, say)
            for cell in pending:
                bar.set_postfix_str(cell.id)
                cell_started = time.time()
                worker.run(cell)
                done(cell, time.time() - cell_started)
        else:
            _run_in_processes(experiment, out, pending, jobs, done)
        bar.close()
        results = collect_results(out, experiment, cells, write=True)
        for path in write_report(out, results):
            say(f"wrote {path}")
    return results


def _lacks_diagnostics(out: Path, cell: Cell) -> bool:
    """A finished LLM cell whose config asks for diagnostics that its metrics.json does not hold."""
    path = out / cell.id / "metrics.json"
    return cell.kind != "baseline" and cell.config.eval.diagnostics and path.exists() and "auc" not in json.loads(path.read_text())


def _run_in_processes(experiment: Experiment, out: Path, pending: list[Cell], jobs: int, done) -> None:
    """Phase 1: each seed's SFT checkpoint and the baselines; phase 2: the cells built on the SFTs.

    On an error or Ctrl-C the workers are stopped at once rather than left to finish their cells
    (finished cells and the last checkpoints stay, so a rerun resumes); a worker whose parent dies
    (SIGKILL, a closed terminal) stops itself too (see `_exit_with_parent`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    llm_cells = [cell for cell in pending if cell.kind != "baseline"]
    first_of_seed = {cell.seed: cell for cell in reversed(llm_cells)}  # every LLM cell of a seed shares its SFT config
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(experiment, out, jobs, os.getpid()))
    try:
        sfts = [pool.submit(_worker_sft, first_of_seed[seed]) for seed in sorted(first_of_seed)]
        running = [pool.submit(_worker_cell, cell) for cell in pending if cell.kind == "baseline"]
        for future in sfts:
            future.result()  # re-raises a worker's error here
        running += [pool.submit(_worker_cell, cell) for cell in llm_cells]
        for future in as_completed(running):
            done(*future.result())
    except BaseException:
        # Cancelling a future does not stop a running cell; ProcessPoolExecutor has no public way
        # to stop its workers before Python 3.14, hence the private process table.
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        for process in workers:
            process.join(timeout=10)
        raise
    pool.shutdown()


_WORKER: "CellWorker | None" = None


def _start_worker(experiment: Experiment, out: Path, jobs: int, parent_pid: int) -> None:
    """Worker process set-up: its share of the CPU threads (unless `threads` is set) and a CellWorker."""
    import torch

    from tawin.runtime import quiet_libraries

    global _WORKER
    _exit_with_parent(parent_pid)
    quiet_libraries()  # a spawned worker does not inherit the parent's logging settings
    if experiment.base.threads == 0 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    _WORKER = CellWorker(experiment, out, progress=False, log=lambda text: print(text, flush=True))


def _exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """Exit this process once `parent_pid` is gone: a killed `tawin experiment` takes its workers
    with it instead of leaving them to train on (checkpoints make the cut cell resumable)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_sft(cell: Cell) -> None:
    _WORKER.sft(cell.config)


def _worker_cell(cell: Cell) -> tuple[Cell, float]:
    started = time.time()
    _WORKER.run(cell)
    return cell, time.time() - started


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def collect_results(out: Path, experiment: Experiment, cells: list[Cell], write: bool = False) -> dict:
    """results.json: every cell with a metrics.json, its resolved config and its cell.json extras."""
    from tawin.config import to_dict

    entries = {}
    for cell in cells:
        folder = out / cell.id
        if not (folder / "metrics.json").exists():
            continue
        extras = json.loads((folder / "cell.json").read_text()) if (folder / "cell.json").exists() else {}
        config = cell.config
        if cell.kind == "rl" and extras.get("anchor") is not None:
            config = replace(config, rl=replace(config.rl, anchor=extras["anchor"]))
        rl = config.rl
        anchor = rl.resolved_anchor if cell.kind == "rl" and rl.weighting == "tawin" else None
        entries[cell.id] = {
            "seed": cell.seed, "cell": cell.name, "label": cell.label, "method": cell.method, "kind": cell.kind,
            "anchor": anchor, "anchor_mode": cell.anchor_mode if anchor is not None else None,
            **extras, "config": to_dict(config), "metrics": json.loads((folder / "metrics.json").read_text()),
        }
    labels = list(dict.fromkeys(cell.label for cell in cells))
    results = {"name": experiment.name, "experiment": to_dict(experiment), "labels": labels,
               "n_cells": len(cells), "complete": len(entries) == len(cells), "cells": entries}
    if write:
        atomic_write_json(out / "results.json", results)
    return results


class CellWorker:
    """Trains and evaluates cells; the dataset is loaded (and tokenised) once, on first need."""

    def __init__(self, experiment: Experiment, out: Path, progress: bool, log):
        self.experiment, self.out, self.progress, self.log = experiment, Path(out), progress, log
        self._session = None

    def session(self, config: PipelineConfig):
        """The shared Session, switched to `config` (seeded like a fresh `tawin run`)."""
        from tawin.checkpoint import seed_everything

        if self._session is None:
            self._session = _SharedSession(config, self.progress)
        self._session.config = config
        seed_everything(config.seed)
        return self._session

    def run(self, cell: Cell) -> None:
        """Train and evaluate the cell (unless finished), then add its diagnostics (if asked and missing).

        cell.json records ``seconds`` (training and evaluation) and ``diagnostics_seconds`` apart: on
        a CPU the exact-score diagnostics cost many times the rest, and may run for some seeds only."""
        folder = self.out / cell.id
        # A redone cell (e.g. its metrics.json deleted) adds to the seconds it had already spent.
        extras: dict = json.loads((folder / "cell.json").read_text()) if (folder / "cell.json").exists() else {}
        spent, diagnostics_spent = extras.pop("seconds", 0), extras.pop("diagnostics_seconds", None)

        def record() -> None:
            timings = {"seconds": round(spent, 1)} | ({} if diagnostics_spent is None else {"diagnostics_seconds": round(diagnostics_spent, 1)})
            atomic_write_json(folder / "cell.json", {**extras, **timings})

        if not (folder / "metrics.json").exists():
            started = time.time()
            if cell.kind == "baseline":
                extras = self.baseline(cell, folder)
            else:
                if cell.kind == "sft":
                    checkpoint = self.sft(cell.config)
                elif cell.anchor_mode == "sweep":
                    checkpoint, extras = self.anchor_sweep(cell, folder)
                else:
                    checkpoint = self.rl(cell.config, folder / "rl")
                # cell.json before metrics.json: metrics.json marks the cell done.
                spent += time.time() - started
                record()
                started = time.time()
                from tawin.runner import eval_stage

                self.log(f"{cell.id}: evaluating on {cell.config.eval.split}")
                # The diagnostics are added below, timed on their own.
                plain = replace(cell.config, eval=replace(cell.config.eval, diagnostics=False))
                eval_stage(self.session(plain), checkpoint, folder)
            spent += time.time() - started
            record()
        if _lacks_diagnostics(self.out, cell):
            started = time.time()
            self.add_diagnostics(cell, folder)
            diagnostics_spent = (diagnostics_spent or 0) + time.time() - started
            record()

    def add_diagnostics(self, cell: Cell, folder: Path) -> None:
        """Exact-score diagnostics of a finished cell's checkpoint, merged into its metrics.json."""
        from tawin.eval.diagnostics import diagnostics

        if cell.kind == "sft":
            checkpoint = self.out / f"seed_{cell.seed}" / "sft" / "best"
        elif cell.anchor_mode == "sweep":
            anchor = json.loads((folder / "cell.json").read_text())["anchor"]
            checkpoint = folder / "sweep" / f"anchor_{anchor}" / "rl" / "final"
        else:
            checkpoint = folder / "rl" / "final"
        session = self.session(cell.config)
        recommender = session.load(checkpoint)
        self.log(f"{cell.id}: diagnostics on {cell.config.eval.diagnostics_rows or 'all'} {cell.config.eval.split} rows")
        found = diagnostics(recommender, session.encoded(recommender, cell.config.eval.split), cell.config.eval, progress=self.progress)
        atomic_write_json(folder / "metrics.json", {**json.loads((folder / "metrics.json").read_text()), **found})

    def sft(self, config: PipelineConfig) -> Path:
        """The seed's shared SFT checkpoint (trained, resumed, or reused when finished)."""
        from tawin.runner import sft_stage

        folder = self.out / f"seed_{config.seed}" / "sft"
        if (folder / "summary.json").exists() and (folder / "best").exists():
            return folder / "best"
        self.log(f"seed_{config.seed}: SFT → {folder}")
        return sft_stage(self.session(config), folder)

    def rl(self, config: PipelineConfig, folder: Path) -> Path:
        from tawin.runner import rl_label, rl_stage

        if (folder / "summary.json").exists() and (folder / "final").exists():
            return folder / "final"
        init = self.sft(config)
        self.log(f"seed_{config.seed}: RL {rl_label(config)} → {folder}")
        return rl_stage(self.session(config), init, folder)

    def anchor_sweep(self, cell: Cell, folder: Path) -> tuple[Path, dict]:
        """Train each σ* candidate, score valid Recall@target_k, keep the best (ties: nearest K−1)."""
        from tawin.runner import eval_stage

        k = cell.config.rl.target_k
        scores = {}
        for anchor in cell.candidates:
            config = replace(cell.config, rl=replace(cell.config.rl, anchor=anchor))
            final = self.rl(config, folder / "sweep" / f"anchor_{anchor}" / "rl")
            valid = replace(config, eval=replace(config.eval, split="valid", diagnostics=False))
            metrics = eval_stage(self.session(valid), final, folder / "sweep" / f"anchor_{anchor}" / "valid")
            scores[anchor] = metrics[f"recall@{k}"]
        best = choose_anchor(scores, k)
        self.log(f"{cell.id}: valid Recall@{k} by σ*: " + ", ".join(f"{a}: {s:.4f}" for a, s in scores.items()) + f" → σ*={best}")
        extras = {"anchor": best, "anchor_sweep": {"metric": f"valid/recall@{k}", "scores": {str(a): s for a, s in scores.items()}}}
        return folder / "sweep" / f"anchor_{best}" / "rl" / "final", extras

    def baseline(self, cell: Cell, folder: Path) -> dict:
        """Popularity, or SASRec/GRU4Rec trained per seed; scored on the LLM cells' eval rows."""
        from tawin.runner import popularity_stage

        session = self.session(cell.config)
        if cell.name == "popularity":
            popularity_stage(session, folder)
            return {}
        from tawin.baselines.sequential import run_baseline
        from tawin.data.dataset import Dataset
        from tawin.eval.evaluate import sample_rows

        dataset, evaluation = session.dataset, cell.config.eval
        rows = sample_rows(len(dataset.splits[evaluation.split]), evaluation.max_rows, evaluation.sample_seed)
        splits = {**dataset.splits, evaluation.split: dataset.splits[evaluation.split].take(rows)}
        self.log(f"{cell.id}: training {cell.label}")
        result = run_baseline(cell.name, Dataset(dataset.name, dataset.items, splits, dataset.meta),
                              replace(self.experiment.baseline, seed=cell.seed), ks=evaluation.ks, log=None)
        extras = {"baseline": {k: result[k] for k in ("epochs", "best_epoch", "config")}, "valid": result["valid"]}
        atomic_write_json(folder / "cell.json", extras)
        atomic_write_json(folder / "metrics.json", result[evaluation.split])
        return extras


def choose_anchor(scores: dict[int, float], target_k: int) -> int:
    """argmax σ* of the valid score; ties go to the σ* nearest the theory's K − 1, then the smaller."""
    return max(scores, key=lambda a: (scores[a], -abs(a - (target_k - 1)), -a))


def atomic_write_json(path: Path, data) -> None:
    from tawin.checkpoint import atomic_write_json as write

    write(path, data)


def _SharedSession(config: PipelineConfig, progress: bool):
    from tawin.runner import Session

    class SharedSession(Session):
        """Caches tokenised splits per (model config, split): every cell of an experiment shares one
        tokenizer, while `Session.encoded` keys on the tokenizer object and so would re-tokenise
        (~6 s for train) after each checkpoint load."""

        def encoded(self, recommender, split: str):
            key = (self.config.model, split)
            if key not in self._encoded:
                self._encoded[key] = super().encoded(recommender, split)
            return self._encoded[key]

    return SharedSession(config, progress)
