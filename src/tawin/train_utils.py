"""Pieces shared by the SFT and RL loops: schedule, resumable checkpoints, logging, NaN guard."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tawin.checkpoint import atomic_write_json, existing_folder, replace_folder, rng_state, set_rng_state, staging_folder
from tawin.errors import UserError
from tawin.models.build import Recommender, save_recommender


class NumericalError(UserError):
    """A loss or gradient became NaN/inf; the last good checkpoint is kept."""


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
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
            f"{stage} step {step}: the {what} is {value.detach().float().cpu().tolist()} (not finite). Training stopped; "
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


def save_training_state(folder: Path, recommender: Recommender, optimizer, scheduler, progress: Progress, dist=None) -> None:
    """Atomically write model + optimizer + scheduler + RNG + progress to `folder` (rank 0 only)."""
    if dist is not None and not dist.is_main:
        dist.barrier()
        return
    staging = staging_folder(folder)
    save_recommender(recommender, staging)
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(), "progress": progress.__dict__},
        staging / "trainer.pt",
    )
    replace_folder(staging, folder)
    if dist is not None:
        dist.barrier()


def start_or_resume(out: Path, recommender: Recommender, parameters, lr: float, weight_decay: float,
                    warmup_steps: int, total_steps: int) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, Progress, bool]:
    """AdamW with warm-up and cosine decay over `total_steps`, restored with the weights and the
    progress from ``out/last`` when there is one: (optimizer, scheduler, progress, resumed)."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    scheduler = warmup_cosine(optimizer, warmup_steps, total_steps)
    progress = resume(out, recommender, optimizer, scheduler)
    return optimizer, scheduler, progress or Progress(), progress is not None


def resume(out: Path, recommender: Recommender, optimizer, scheduler) -> Progress | None:
    """Progress of the last checkpoint in `out` (weights, optimizer, scheduler, RNG restored), or None."""
    last = existing_folder(Path(out) / "last")
    if last is None or not (last / "trainer.pt").exists():
        return None
    return load_training_state(last, recommender, optimizer, scheduler)


def load_training_state(folder: Path, recommender: Recommender, optimizer, scheduler) -> Progress:
    from safetensors.torch import load_file

    state = torch.load(folder / "trainer.pt", weights_only=False)
    weights = load_file(str(folder / "model.safetensors"))
    recommender.model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return Progress(**state["progress"])


def save_best(folder: Path, recommender: Recommender, info: dict, dist=None) -> None:
    if dist is None or dist.is_main:
        staging = staging_folder(folder)
        save_recommender(recommender, staging)
        atomic_write_json(staging / "best.json", info)
        replace_folder(staging, folder)
    if dist is not None:
        dist.barrier()


class JsonlLog:
    """Appends one JSON object per line; the file is the run's machine-readable log."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
