"""The configured pipeline: dataset → model → SFT → evaluation → RL → evaluation → results table.

`PipelineConfig` is the one config file of a run (each stage reads its own section). The
resolved config is saved as ``config.yaml`` in the output folder; rerunning the same command on
the same folder resumes (finished stages are skipped, interrupted ones continue from their last
checkpoint); a folder holding a run with a different config is refused unless ``--overwrite``.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
import yaml

from tawin.checkpoint import atomic_write_json, atomic_write_text, seed_everything
from tawin.config import to_dict
from tawin.data.dataset import Dataset
from tawin.errors import ConfigError, UserError
from tawin.eval.config import EvalConfig
from tawin.models.build import ModelConfig
from tawin.rl.config import RLConfig
from tawin.runtime import Device, Precision, pick_device, use_bf16
from tawin.sft.config import SFTConfig

SHIPPED = Path(__file__).resolve().parent / "resources" / "datasets"
Stage = Literal["sft", "rl", "eval", "popularity"]
REPORT_KS = (1, 3, 5, 10)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "industrial"
    """A shipped dataset name (`industrial`) or the path of a dataset folder."""


@dataclass(frozen=True)
class PipelineConfig:
    seed: int = 0
    """Seed of every random choice (model init, data order, rollouts, samples)."""
    device: Device = "auto"
    """`auto` picks CUDA when present, else CPU."""
    precision: Precision = "auto"
    """`auto` = bf16 autocast where the hardware supports it (CUDA with bf16, CPUs with AVX512-BF16/AMX)."""
    threads: int = 0
    """CPU threads for torch (0 = torch's default)."""
    stages: tuple[Stage, ...] = ("sft", "eval", "rl", "popularity")
    """What `tawin run` does, in order; `eval` evaluates every trained model on eval.split."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def dataset_path(name_or_path: str) -> Path:
    shipped = SHIPPED / name_or_path
    if (shipped / "items.parquet").exists():
        return shipped
    path = Path(name_or_path)
    if path.exists():
        return path
    names = sorted(p.name for p in SHIPPED.iterdir() if p.is_dir())
    raise ConfigError(f"data.dataset={name_or_path!r} is neither a shipped dataset ({', '.join(names)}) nor an existing folder; "
                      "pass one of those names or the path of a folder made by `tawin data import`/`tawin data prepare`.")


def setup_runtime(config: PipelineConfig) -> tuple[torch.device, bool]:
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    return device, use_bf16(config.precision, device)


class RunFolder:
    """An output folder with its saved config and an exclusive lock against concurrent runs."""

    def __init__(self, path: Path, config, overwrite: bool = False, kind: str = "run"):
        self.path = Path(path)
        self.config = config
        self.overwrite = overwrite
        self.kind = kind
        self._lock = None

    def __enter__(self) -> "RunFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{self.path}: another tawin process is writing into this folder right now (it holds {self.path / '.lock'}). "
                            "Wait for it to finish or choose another --out folder.") from None
        saved = self.path / "config.yaml"
        resolved = {"kind": self.kind, **to_dict(self.config)}
        if saved.exists():
            previous = yaml.safe_load(saved.read_text())
            if previous != resolved:
                if not self.overwrite:
                    changed = sorted(_diff_keys(previous, resolved))
                    raise UserError(f"{self.path} holds a {previous.get('kind', 'run')} with a different config (changed: {', '.join(changed[:8])}). "
                                    "Rerun with the same config to resume, choose another --out folder, or pass --overwrite to replace it.")
                for child in self.path.iterdir():
                    if child.name != ".lock":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
        atomic_write_text(saved, yaml.safe_dump(resolved, sort_keys=False))
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


def _diff_keys(a, b, prefix="") -> set[str]:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return {prefix or "(root)"} if a != b else set()
    keys = set()
    for key in set(a) | set(b):
        keys |= _diff_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
    return keys


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class StageTimer:
    records: list = field(default_factory=list)

    def run(self, name: str, function, *args, **kwargs):
        started = time.time()
        result = function(*args, **kwargs)
        self.records.append({"stage": name, "seconds": round(time.time() - started, 1), "peak_rss_mb": round(peak_rss_mb())})
        return result

    def table(self) -> str:
        lines = ["| stage | wall-clock (s) | peak RSS so far (MB) |", "|---|---:|---:|"]
        lines += [f"| {r['stage']} | {r['seconds']:.1f} | {r['peak_rss_mb']} |" for r in self.records]
        return "\n".join(lines)


def results_table(results: dict[str, dict], ks=REPORT_KS) -> str:
    """Markdown table: one row per method, Recall@K and NDCG@K columns."""
    header = "| method | " + " | ".join(f"Recall@{k}" for k in ks) + " | " + " | ".join(f"NDCG@{k}" for k in ks) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(ks))]
    for method, metrics in results.items():
        cells = [f"{metrics[f'recall@{k}']:.4f}" for k in ks] + [f"{metrics[f'ndcg@{k}']:.4f}" for k in ks]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
