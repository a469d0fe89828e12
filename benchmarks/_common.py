"""Benchmarks — what the speed scripts share: process set-up, the row sample, timing, and the
library's RL step as the benchmarks (and `gpu_paper.py`'s probe) run it.

Import this module before torch: it puts the CLI's OpenMP settings
(:data:`tawin.runtime.OPENMP_SETTINGS`) in place unless the environment sets its own. On a machine
shared with other jobs, OpenMP workers that spin-wait long at every parallel region lose their
core to other processes, and each small op then waits a scheduler slice (measured here: clip +
AdamW of the default model took 6.7 s instead of 40 ms at 2 threads).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from tawin.runtime import use_openmp_settings  # imports no torch

use_openmp_settings()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tawin.data.dataset import Dataset, Interactions  # noqa: E402
from tawin.decoding.tree import needs_float_mask  # noqa: E402
from tawin.items.codec import ItemCodec  # noqa: E402
from tawin.rl.config import RLConfig  # noqa: E402
from tawin.rl.rollout import Rollout, make_rollout  # noqa: E402
from tawin.rl.train import rl_step_loss  # noqa: E402
from tawin.train_utils import adamw_warmup_cosine, optimizer_step  # noqa: E402

DATASET = "src/tawin/resources/datasets/industrial"
"""The shipped Industrial_and_Scientific dataset, relative to the repository root."""


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose description is the first paragraph of the script's docstring,
    with the options every benchmark has: --threads, --seed, --device."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the row sample and the model weights")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where both sides run (default cpu); both sides share the device",
    )
    return parser


def common_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the shared options (each with the fix)."""
    problems = [] if args.threads >= 1 else [f"--threads={args.threads} must be ≥ 1"]
    if args.device == "cuda" and not torch.cuda.is_available():
        problems.append("--device=cuda but torch sees no CUDA GPU; drop --device or run on a GPU machine")
    return problems


def setup(args: argparse.Namespace) -> torch.device:
    """Threads, fp32 matmuls without TF32 (both sides compute the same numbers), quieter warnings."""
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    # transformers 5.24 deprecates the `past_key_values` argument that beam.py passes; once is enough.
    warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
    return torch.device(args.device)


def sample_split(dataset: Dataset, split: str, n_rows: int, seed: int) -> Interactions:
    """A seeded random sample of `n_rows` rows of `split` (all of them if fewer), in row order."""
    rows = dataset.splits[split]
    chosen = np.random.default_rng(seed).choice(len(rows), size=min(n_rows, len(rows)), replace=False)
    return rows.take(np.sort(chosen))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(fn(), wall seconds, CPU seconds of this process summed over its threads), the device's
    queued work finished inside the timed span."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def versions(*names: str) -> dict[str, str | None]:
    """Installed version of each distribution (None where it is missing)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class StepTimes:
    """Seconds of each phase of one RL step."""

    rollout: float
    loss_forward: float
    backward_and_step: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


class LibraryRLStep:
    """One step of :func:`tawin.rl.train.train_rl` on given prompts, through the library's own
    functions: ``make_rollout`` → ``rl_step_loss`` (rewards → advantages → TAWin → policy loss + KL)
    → ``optimizer_step`` (NaN guard, backward, clip, AdamW, scheduler). Without train_rl's prompt
    order, informative redraws, logging and checkpoints, which the benchmarks time apart or not at all.

    The reference is a frozen copy of the policy as given; the optimizer and schedule are train_rl's
    (:func:`tawin.train_utils.adamw_warmup_cosine`, warm-up over ``rl.warmup_ratio`` of `total_steps`)."""

    def __init__(
        self, policy: torch.nn.Module, codec: ItemCodec, config: RLConfig, total_steps: int, bf16: bool = False
    ):
        self.policy, self.codec, self.config, self.bf16 = policy, codec, config, bf16
        self.device = next(policy.parameters()).device
        self.reference = copy.deepcopy(policy).eval().requires_grad_(False)
        self.optimizer, self.scheduler = adamw_warmup_cosine(
            policy.parameters(), config.lr, config.weight_decay, int(config.warmup_ratio * total_steps), total_steps
        )
        self.float_mask = needs_float_mask(policy)
        self.step = 0

    def __call__(
        self, ids_BL: torch.Tensor, mask_BL: torch.Tensor, target_B: torch.Tensor, generator: torch.Generator
    ) -> tuple[StepTimes, Rollout]:
        """Roll out, score and update once on these prompts; (seconds per phase, the rollout)."""
        marks = [time.perf_counter()]
        self.policy.eval()
        rollout = make_rollout(
            self.policy,
            self.codec,
            ids_BL.to(self.device),
            mask_BL.to(self.device),
            target_B.to(self.device),
            self.config.negatives,
            self.config.group_size,
            generator,
            self.config.sample_temperature,
            inject_target=self.config.inject_target,
        )
        self.policy.train()
        synchronize(self.device)
        marks.append(time.perf_counter())
        loss, _ = rl_step_loss(self.policy, self.reference, rollout, self.config, self.bf16, self.float_mask)
        synchronize(self.device)
        marks.append(time.perf_counter())
        optimizer_step(
            loss, self.policy.parameters(), self.optimizer, self.scheduler, self.config.max_grad_norm, self.step, "rl"
        )
        synchronize(self.device)
        marks.append(time.perf_counter())
        self.step += 1
        return StepTimes(*(b - a for a, b in zip(marks, marks[1:]))), rollout
