"""Pieces shared by the SFT and RL loops: the run context, one optimizer step, schedule, resumable
checkpoints, logging, NaN guard. The SFT loss, which RL adds as a term, is :mod:`tawin.models.loss`."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tawin.checkpoint import (
    atomic_write_json,
    check_intact,
    existing_folder,
    rng_state,
    save_torch,
    set_rng_state,
    writing_checkpoint,
)
from tawin.distributed import Dist
from tawin.errors import UserError
from tawin.models.build import DAMAGED_FIX, RecommenderLM, save_recommender
from tawin.tracking import TrackerRun


@dataclass
class RunContext:
    """Where and how one training stage runs: output folder, seed, device, precision, logging."""

    output_dir: Path
    seed: int
    device: torch.device
    bf16: bool
    progress_bars: bool = True
    log: Callable[[str], None] = print
    dist: Dist = field(default_factory=Dist)
    compile: bool = False
    tracker: TrackerRun | None = None
    """The tracker run (``report_to``) that the loop's log.jsonl records also go to; None = none."""


def optimizer_step(
    loss: torch.Tensor, parameters, optimizer, scheduler, max_grad_norm: float, step: int, stage: str
) -> torch.Tensor:
    """One update of every training loop: NaN guard → zero grads → backward → clip by global norm
    (NaN guard) → optimizer and scheduler step. Returns the gradient norm before clipping."""
    parameters = list(parameters)
    check_finite(loss.detach(), "loss", step, stage)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    check_finite(grad_norm, "gradient norm", step, stage)
    optimizer.step()
    scheduler.step()
    return grad_norm


class NumericalError(UserError):
    """A loss or gradient became NaN/inf; the last good checkpoint is kept."""


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak learning rate, then cosine decay to zero at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_finite(value: torch.Tensor, what: str, step: int, stage: str) -> None:
    if not torch.isfinite(value).all():
        raise NumericalError(
            f"{stage} step {step}: the {what} is "
            f"{value.detach().float().cpu().tolist()} (not finite). Training stopped; "
            "the last good checkpoint is kept. Lower the learning rate, raise warm-up, or check the data."
        )


@dataclass
class Progress:
    """Where a run stands; saved with every checkpoint so a rerun continues from there."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_metric: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    batches_drawn: int = 0
    """RL: prompt batches rolled out so far (more than the steps under informative batches)."""
    extra: dict = field(default_factory=dict)
    """State a loop saved beside the model through `save_training_state(extra=…)`."""


def save_training_state(
    folder: Path,
    recommender: RecommenderLM,
    optimizer,
    scheduler,
    progress: Progress,
    dist=None,
    extra: dict | None = None,
) -> None:
    """Atomically write model + optimizer + scheduler + RNG + progress to `folder` (rank 0 only).
    `extra` holds further state a loop needs to resume (e.g. a synced reference model's weights)."""
    if dist is not None and not dist.is_main:
        dist.barrier()
        return
    with writing_checkpoint(folder) as staging:
        save_recommender(recommender, staging)
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "progress": {k: v for k, v in progress.__dict__.items() if k != "extra"},
        }
        if extra:
            state["extra"] = extra
        save_torch(state, staging / "trainer.pt")
    if dist is not None:
        dist.barrier()


def adamw_warmup_cosine(
    parameters, lr: float, weight_decay: float, warmup_steps: int, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer and schedule of every training loop: AdamW (decoupled weight decay on every
    parameter) with linear warm-up over `warmup_steps` and cosine decay to zero at `total_steps`."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    return optimizer, warmup_cosine(optimizer, warmup_steps, total_steps)


def start_or_resume(
    out: Path,
    recommender: RecommenderLM,
    parameters,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, Progress, bool]:
    """:func:`adamw_warmup_cosine`, restored with the weights and the progress from ``out/last`` when
    there is one: (optimizer, scheduler, progress, resumed)."""
    optimizer, scheduler = adamw_warmup_cosine(parameters, lr, weight_decay, warmup_steps, total_steps)
    progress = resume(out, recommender, optimizer, scheduler)
    return optimizer, scheduler, progress or Progress(), progress is not None


def resume(out: Path, recommender: RecommenderLM, optimizer, scheduler) -> Progress | None:
    """Progress of the last checkpoint in `out` (weights, optimizer, scheduler, RNG restored), or None."""
    last = existing_folder(Path(out) / "last")
    if last is None or not (last / "trainer.pt").exists():
        return None
    return load_training_state(last, recommender, optimizer, scheduler)


def load_weights_into(recommender: RecommenderLM, folder: Path) -> None:
    """Put the weights saved in `folder` (a checkpoint of the same model, checked against its manifest)
    into `recommender`."""
    from safetensors.torch import load_file

    check_intact(folder, DAMAGED_FIX)
    recommender.model.load_state_dict(load_file(str(Path(folder) / "model.safetensors")), strict=False)


def load_training_state(folder: Path, recommender: RecommenderLM, optimizer, scheduler) -> Progress:
    state = torch.load(folder / "trainer.pt", weights_only=False)
    load_weights_into(recommender, folder)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return Progress(**{**state["progress"], "extra": state.get("extra", {})})


def save_best(folder: Path, recommender: RecommenderLM, info: dict, dist=None) -> None:
    if dist is None or dist.is_main:
        with writing_checkpoint(folder) as staging:
            save_recommender(recommender, staging)
            atomic_write_json(staging / "best.json", info)
    if dist is not None:
        dist.barrier()


class JsonlLog:
    """Appends one JSON object per line; the file is the run's machine-readable log.

    With a `tracker` run (`report_to`, see :mod:`tawin.tracking`), each record's namespaced scalars
    go there too, at the record's `step`: the trackers see what the file holds."""

    def __init__(self, path: Path, tracker: TrackerRun | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tracker = tracker

    def write(self, record: dict) -> None:
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.tracker is not None:
            self.tracker.log_record(record)
