"""Experiments — one experiment folder from its config to its report.

Every cell is validated against the dataset first; then the unfinished cells run (in this process,
or in ``--jobs`` worker processes, see :mod:`tawin.experiments.pool`), results.json is rewritten
after each, and report.md and the plots are written at the end. Every cell seeds itself, so the
results do not depend on ``--jobs``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tawin.experiments.grid import Cell, Experiment, expand_cells
from tawin.experiments.pool import run_in_processes
from tawin.experiments.report import write_report
from tawin.experiments.results import collect_results, needs_work
from tawin.experiments.topk_control import write_topk_control
from tawin.experiments.worker import CellWorker
from tawin.run.done import stage_done
from tawin.run.folder import RunFolder
from tawin.run.session import Session
from tawin.runtime import progress_bar

EXTENDABLE = ("diagnostics", "diagnostics_seeds", "report", "evals")
"""Experiment keys that may change on a finished folder: they add to its cells, never invalidate them."""


def run_experiment(
    experiment: Experiment, out: Path, overwrite: bool = False, progress: bool = True, log=print, jobs: int = 1
) -> dict:
    """Run every unfinished cell, rewriting results.json after each; then the report. Returns results.json's mapping."""
    out = Path(out)
    cells = expand_cells(experiment)
    # The dataset is loaded and every cell checked against it before the folder is touched.
    session = Session.open(experiment.base, progress)
    session.check(*(cell.config for cell in cells if cell.kind != "baseline"))
    for cell in cells:
        if cell.kind != "baseline":
            session.check_searches(cell.config, ("sft", "eval", "rl"))
    with RunFolder(out, experiment, overwrite, kind="experiment", extendable=EXTENDABLE):
        pending = [cell for cell in cells if needs_work(out, experiment, cell)]
        for cell in cells:
            if cell not in pending:
                log(f"skipped {cell.id}: metrics.json exists")
            elif stage_done(out / cell.id, "cell"):
                log(f"{cell.id}: finished; adding its diagnostics or further evaluations")
        bar = progress_bar(len(cells), "experiment", "cell", enabled=progress, initial=len(cells) - len(pending))
        say = (lambda text: bar.write(text, file=sys.stdout)) if progress else log
        started, finished = time.time(), 0

        def done(cell: Cell, seconds: float) -> None:
            nonlocal finished
            finished += 1
            collect_results(out, experiment, cells, write=True)
            bar.update(1)
            eta = (time.time() - started) / finished * (len(pending) - finished)
            say(
                f"[{len(cells) - len(pending) + finished}/{len(cells)}] "
                f"{cell.id} done in {seconds:.0f}s; ETA {_duration(eta)}"
            )

        if jobs <= 1 or len(pending) <= 1:
            worker = CellWorker(experiment, out, progress, say, session)
            for cell in pending:
                bar.set_postfix_str(cell.id)
                cell_started = time.time()
                worker.run(cell)
                done(cell, time.time() - cell_started)
            session.tracking.close()
        else:
            run_in_processes(experiment, out, pending, jobs, done)
        bar.close()
        results = collect_results(out, experiment, cells, write=True)
        for path in write_report(out, results) + write_topk_control(out, results):
            say(f"wrote {path}")
    return results


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.0f}s"
        if seconds < 90
        else f"{seconds / 60:.0f} min"
        if seconds < 5400
        else f"{seconds / 3600:.1f} h"
    )
