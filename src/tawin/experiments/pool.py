"""Experiments — `--jobs N`: cells in N worker processes, stopped with their parent.

Phase 1 trains each seed's shared SFT checkpoint (and the baselines, which need none); phase 2
runs the cells that start from those checkpoints. Each worker process takes tasks from one queue
(:class:`Workers`) with its own :class:`~tawin.experiments.worker.CellWorker` (the dataset loaded
once per process), which its task loop holds, and its share of the CPU threads. On an error or
Ctrl-C the workers are stopped at once rather than left to finish their cells (finished cells and
the last checkpoints stay, so a rerun resumes), and a worker whose parent dies (SIGKILL, a closed
terminal) stops itself too. Workers ignore Ctrl-C, which a terminal sends to every process of the
group: the parent alone reacts, so the command ends in its one line.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from tqdm import tqdm  # the base class: its lock serves tqdm.auto's bars too

from tawin.experiments.grid import Cell, Experiment
from tawin.experiments.worker import CellWorker
from tawin.run.interrupts import sigint_blocked

TaskKind = Literal["sft", "cell"]
"""A worker's task: train a seed's shared SFT checkpoint, or run a cell."""


def run_in_processes(
    experiment: Experiment, out: Path, pending: list[Cell], jobs: int, done: Callable[[Cell, float], None]
) -> None:
    """Run `pending` in `jobs` spawned processes; `done(cell, seconds)` is called here as each finishes."""
    llm_cells = [cell for cell in pending if cell.kind != "baseline"]
    # One SFT run per (seed, SFT folder): the first cell that names it trains it.
    first_of_sft = {(cell.seed, cell.sft): cell for cell in reversed(llm_cells)}
    workers = Workers(experiment, out, jobs, processes=min(jobs, len(first_of_sft) + len(pending)))
    try:
        for key in sorted(first_of_sft):
            workers.submit("sft", first_of_sft[key])
        for cell in pending:
            if cell.kind == "baseline":
                workers.submit("cell", cell)
        while workers.outstanding:
            kind, cell, seconds = workers.next_result()  # re-raises a worker's error here
            if kind == "sft":
                # A seed's cells are queued as soon as their SFT checkpoint exists, so no worker idles
                # while another SFT is still training.
                for waiting in llm_cells:
                    if (waiting.seed, waiting.sft) == (cell.seed, cell.sft):
                        workers.submit("cell", waiting)
            else:
                done(cell, seconds)
    except BaseException:
        workers.stop()
        raise
    workers.close()


class WorkerTraceback(Exception):
    """Where a worker process raised the error that the parent re-raises (shown as its cause)."""

    def __str__(self) -> str:
        return self.args[0]


class Workers:
    """Spawned processes that take tasks from one queue, each with a CellWorker of its own."""

    def __init__(self, experiment: Experiment, out: Path, jobs: int, processes: int):
        context = multiprocessing.get_context("spawn")
        self.tasks, self.results = context.Queue(), context.Queue()
        self.submitted: dict[int, tuple[TaskKind, Cell]] = {}
        """The tasks not finished yet, by id."""
        self._ids = itertools.count()
        # Started with SIGINT blocked, which they inherit, so that Ctrl-C (sent to the whole process
        # group) reaches this process alone, which stops them (see stop()).
        with sigint_blocked():
            self.processes = [
                context.Process(
                    target=_serve,
                    args=(experiment, out, jobs, os.getpid(), self.tasks, self.results),
                    name=f"tawin-worker-{index}",
                )
                for index in range(processes)
            ]
            for process in self.processes:
                process.start()

    @property
    def outstanding(self) -> int:
        return len(self.submitted)

    def submit(self, kind: TaskKind, cell: Cell) -> None:
        task_id = next(self._ids)
        self.submitted[task_id] = (kind, cell)
        self.tasks.put((task_id, kind, cell))

    def next_result(self) -> tuple[TaskKind, Cell, float]:
        """The next finished task: (kind, cell, seconds); a worker's error is raised here."""
        while True:
            try:
                task_id, seconds, error = self.results.get(timeout=1.0)
                break
            except queue.Empty:
                if dead := [process for process in self.processes if not process.is_alive()]:
                    raise RuntimeError(
                        f"the worker process {dead[0].name} ended (exit code {dead[0].exitcode}) before its "
                        "cells were done; rerun the same command to resume"
                    ) from None
        kind, cell = self.submitted.pop(task_id)
        if error is not None:
            failure, where = error
            raise failure from WorkerTraceback(where)
        return kind, cell, seconds

    def close(self) -> None:
        """Let every worker finish (they exit normally, so their exit handlers run)."""
        for _ in self.processes:
            self.tasks.put(None)
        for process in self.processes:
            process.join()

    def stop(self) -> None:
        """End every worker at once: finished cells and the last checkpoints stay, so a rerun resumes."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        self.tasks.cancel_join_thread()  # tasks no worker will read must not hold this process at exit


def _serve(experiment: Experiment, out: Path, jobs: int, parent_pid: int, tasks, results) -> None:
    """A worker process: its set-up, then each task from `tasks` until None, its outcome to `results`."""
    worker = _start_worker(experiment, out, jobs, parent_pid)
    for task_id, kind, cell in iter(tasks.get, None):
        started = time.time()
        try:
            if kind == "sft":
                worker.sft(cell.config, cell.sft)
            else:
                worker.run(cell)
            results.put((task_id, time.time() - started, None))
        except Exception as error:
            results.put((task_id, 0.0, _sendable(error)))


def _sendable(error: Exception) -> tuple[Exception, str]:
    """(the error, or a RuntimeError naming it when it cannot be pickled; its traceback text)."""
    where = "".join(traceback.format_exception(error))
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        error = RuntimeError(f"{type(error).__name__} in a worker process: {error}")
    return error, where


def _start_worker(experiment: Experiment, out: Path, jobs: int, parent_pid: int) -> CellWorker:
    """Worker process set-up: its share of the CPU threads (unless `threads` is set); returns its CellWorker."""
    import torch

    from tawin.runtime import quiet_libraries

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops this worker on Ctrl-C (see Workers.stop)
    # The parent stops a worker with SIGTERM, which skips its exit handlers: tqdm's default
    # multiprocessing lock would stay registered, and be reported as a leaked semaphore.
    tqdm.set_lock(threading.RLock())
    _exit_with_parent(parent_pid)
    quiet_libraries()  # a spawned worker does not inherit the parent's logging settings
    if experiment.base.threads == 0 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    return CellWorker(experiment, out, progress=False, log=lambda text: print(text, flush=True))


def _exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """Exit this process once `parent_pid` is gone: a killed `tawin experiment` takes its workers
    with it instead of leaving them to train on (checkpoints make the cut cell resumable)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
