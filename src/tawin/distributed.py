"""Multi-process training and evaluation through Hugging Face Accelerate (torch DDP underneath).

Launch any command with ``accelerate launch --num_processes N -m tawin …`` (or ``torchrun
--nproc_per_node N -m tawin …``). Batch sizes in the configs are GLOBAL: each optimizer step takes
the same rows as a single process would, every process computes its contiguous share, DDP
all-reduces the gradients, and the loss is normalised by the global token count so the update
equals the single-process one: to float32 rounding in fp32. Under bf16 autocast (which
``precision: auto`` picks on CPUs with bf16 units, e.g. AVX512-BF16) each process's weight
gradients leave the bf16 matmuls rounded to bf16 before DDP adds them in float32, and
round(a) + round(b) is not round(a + b): the update then agrees with one process's only to bf16
rounding (about 2^-8 of each gradient), even in one process summing two halves of a batch.
Evaluation deals whole batches to processes round-robin (each
batch is computed exactly as in one process) and merges predictions on rank 0, which alone writes
files. A single process uses no process group at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    accelerator: object | None = None
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, index_B: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of a global batch (shares differ by at most one row)."""
        if not self.enabled:
            return index_B
        return index_B.tensor_split(self.world_size)[self.rank]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.prepare_model(model) if self.enabled else model

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.unwrap_model(model) if self.enabled else model

    def gather(self, items: list) -> list:
        """Concatenate every process's list (in rank order) on all processes."""
        if not self.enabled:
            return items
        from accelerate.utils import gather_object

        return gather_object(items)

    def barrier(self) -> None:
        if self.enabled:
            self.accelerator.wait_for_everyone()


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> Dist:
    """A Dist for this process: Accelerate's state when launched with several processes."""
    if launched_world_size() <= 1:
        return Dist()
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=device.type == "cpu")
    return Dist(accelerator, accelerator.process_index, accelerator.num_processes)
