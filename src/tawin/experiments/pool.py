"""Experiments — `--jobs N`: cells in N worker processes, stopped with their parent.

Phase 1 trains each seed's shared SFT checkpoint (and the baselines, which need none); phase 2
runs the cells that start from those checkpoints. Each worker process holds one
:class:`~tawin.experiments.worker.CellWorker` and its share of the CPU threads. On an error or
Ctrl-C the workers are stopped at once rather than left to finish their cells (finished cells and
the last checkpoints stay, so a rerun resumes), and a worker whose parent dies (SIGKILL, a closed
terminal) stops itself too. Workers ignore Ctrl-C, which a terminal sends to every process of the
group: the parent alone reacts, so the command ends in its one line.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from tqdm import tqdm  # the base class: its lock serves tqdm.auto's bars too

from tawin.experiments.grid import Cell, Experiment
from tawin.experiments.worker import CellWorker
from tawin.run.interrupts import sigint_blocked

_WORKER: CellWorker | None = None
"""The worker process's CellWorker, made by `_start_worker`."""


def run_in_processes(experiment: Experiment, out: Path, pending: list[Cell], jobs: int,
                     done: Callable[[Cell, float], None]) -> None:
    """Run `pending` in `jobs` spawned processes; `done(cell, seconds)` is called here as each finishes."""
    llm_cells = [cell for cell in pending if cell.kind != "baseline"]
    # One SFT run per (seed, SFT folder): the first cell that names it trains it.
    first_of_sft = {(cell.seed, cell.sft): cell for cell in reversed(llm_cells)}
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(experiment, out, jobs, os.getpid()))

    def submit(function, cell: Cell):
        # A submit may start a worker process: it inherits SIGINT blocked, so that Ctrl-C (sent to
        # the whole process group) reaches this process alone, which stops the workers below.
        with sigint_blocked():
            return pool.submit(function, cell)

    try:
        sfts = {submit(_worker_sft, first_of_sft[key]): key for key in sorted(first_of_sft)}
        running = [submit(_worker_cell, cell) for cell in pending if cell.kind == "baseline"]
        # A seed's cells are queued as soon as their SFT checkpoint exists, so no worker idles
        # while another SFT is still training.
        for future in as_completed(sfts):
            future.result()  # re-raises a worker's error here
            running += [submit(_worker_cell, cell) for cell in llm_cells if (cell.seed, cell.sft) == sfts[future]]
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
            if process.is_alive():
                process.kill()
                process.join()
        # The pool's manager thread closes its pipes once it sees the workers gone; at interpreter
        # exit Python writes to them unless that has finished ("Exception ignored … Bad file descriptor").
        pool.shutdown(wait=True)
        raise
    pool.shutdown()


def _start_worker(experiment: Experiment, out: Path, jobs: int, parent_pid: int) -> None:
    """Worker process set-up: its share of the CPU threads (unless `threads` is set) and a CellWorker."""
    import torch

    from tawin.runtime import quiet_libraries

    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops this worker on Ctrl-C (see run_in_processes)
    # The parent stops a worker with SIGTERM, which skips its exit handlers: tqdm's default
    # multiprocessing lock would stay registered, and be reported as a leaked semaphore.
    tqdm.set_lock(threading.RLock())
    _exit_with_parent(parent_pid)
    quiet_libraries()  # a spawned worker does not inherit the parent's logging settings
    if experiment.base.threads == 0 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    _WORKER = CellWorker(experiment, out, progress=False, log=lambda text: print(text, flush=True))


def _exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """Exit this process once `parent_pid` is gone: a killed `tawin experiment` takes its workers
    with it instead of leaving them to train on (checkpoints make the cut cell resumable)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_sft(cell: Cell) -> None:
    _WORKER.sft(cell.config, cell.sft)


def _worker_cell(cell: Cell) -> tuple[Cell, float]:
    started = time.time()
    _WORKER.run(cell)
    return cell, time.time() - started
