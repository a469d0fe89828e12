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
    compile: bool = False
    """`torch.compile` the model's training forward in SFT and RL (worth it on GPUs; on CPU the
    first steps pay minutes of compilation)."""
    stages: tuple[Stage, ...] = ("sft", "eval", "rl", "popularity")
    """What `tawin run` does, in order; `eval` evaluates every trained model on eval.split."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check(self) -> list[str]:
        problems = []
        if self.threads < 0:
            problems.append(f"threads={self.threads} must be ≥ 0 (0 = torch's default)")
        if not self.stages:
            problems.append("stages is empty; list what `tawin run` should do, e.g. [sft, eval, rl, popularity]")
        elif len(set(self.stages)) != len(self.stages):
            problems.append(f"stages={list(self.stages)} repeats a stage; list each once")
        if self.sft.history_loss_weight > 0 and self.model.item_repr != "sid":
            problems.append(f"sft.history_loss_weight={self.sft.history_loss_weight} needs model.item_repr: sid (a title's tokens "
                            "cannot be told apart from prompt text); set it to 0 for titles")
        return problems


def dataset_path(name_or_path: str) -> Path:
    """The folder of a shipped dataset name or a dataset folder path; ConfigError otherwise."""
    shipped = SHIPPED / name_or_path
    if (shipped / "items.parquet").exists():
        return shipped
    path = Path(name_or_path)
    if path.is_dir():
        return path
    names = sorted(p.name for p in SHIPPED.iterdir() if p.is_dir())
    what = "is a file, not a dataset folder" if path.exists() else "is neither a shipped dataset"
    raise ConfigError(f"data.dataset={name_or_path!r} {what} ({', '.join(names)}) nor an existing folder; "
                      "pass one of those names or the path of a folder made by `tawin data import`/`tawin data prepare`.")


def setup_runtime(config: PipelineConfig) -> tuple[torch.device, bool]:
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = pick_device(config.device)
    return device, use_bf16(config.precision, device)


class RunFolder:
    """An output folder with its saved config and an exclusive lock against concurrent runs.

    Entering checks before it writes anything: the dataset named by ``config.data`` must exist,
    ``--out`` must not be a file, no other process may hold the folder's lock, and a saved
    ``config.yaml`` must match (unless `overwrite`), except in the top-level keys named in
    `extendable`: changes there add to the finished work rather than invalidate it, and the saved
    config is updated. Only then is ``config.yaml`` written. If the
    command then fails with a :class:`UserError` before producing anything else, the files this
    folder added (and the folder, if it created it) are removed again: no partial output.
    """

    def __init__(self, path: Path, config, overwrite: bool = False, kind: str = "run", extendable: tuple[str, ...] = ()):
        self.path = Path(path)
        self.config = config
        self.overwrite = overwrite
        self.kind = kind
        self.extendable = extendable
        self._lock = None
        self._created = False
        self._before: set[str] = set()
        self._created_root: Path | None = None

    def __enter__(self) -> "RunFolder":
        if int(os.environ.get("RANK", "0")) != 0:
            return self  # rank 0 alone checks, locks and writes the folder
        data = getattr(self.config, "data", None)
        if isinstance(data, DataConfig):
            dataset_path(data.dataset)  # a missing dataset fails before the folder is touched
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} is a file, not a folder; choose another --out folder or remove the file.")
        resolved = {"kind": self.kind, **to_dict(self.config)}
        self._created = not self.path.exists()
        self._created_root = next((p for p in [*reversed(self.path.parents), self.path] if not p.exists()), None)
        self._before = {child.name for child in self.path.iterdir()} if not self._created else set()
        try:
            if ".lock" in self._before:
                self._acquire()
            self._previous_differs(resolved)  # refuse before creating anything
            if self._lock is None:
                try:
                    self.path.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise UserError(f"--out {self.path}: cannot create the folder ({error.strerror}); choose a writable location.") from None
                self._acquire()
            if self._previous_differs(resolved):  # checked again under the lock
                for child in self.path.iterdir():
                    if child.name != ".lock":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            atomic_write_text(self.path / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def _acquire(self) -> None:
        lock_path = self.path / ".lock"
        try:
            self._lock = open(lock_path, "a")
        except OSError as error:
            raise UserError(f"--out {self.path}: cannot open {lock_path} ({error.strerror}); choose a writable --out folder.") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise UserError(f"{self.path}: another tawin process is writing into this folder right now (it holds {lock_path}). "
                            "Wait for it to finish or choose another --out folder.") from None

    def _previous_differs(self, resolved: dict) -> bool:
        """True when a saved run with another config may be replaced; raises when it may not."""
        saved = self.path / "config.yaml"
        if not saved.is_file():
            return False
        try:
            previous = yaml.safe_load(saved.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            previous = None
        if not isinstance(previous, dict):
            if self.overwrite:
                return True
            raise UserError(f"{saved} is not a readable tawin config, so {self.path} cannot be resumed safely. "
                            "Choose another --out folder, or pass --overwrite to replace its contents.")
        if previous == resolved:
            return False
        changed = _diff_keys(previous, resolved)
        if all(key.split(".")[0] in self.extendable for key in changed):
            return False
        if not self.overwrite:
            changed = sorted(changed, key=lambda key: (key != "kind", key))
            shown = ", ".join(f"{key}: {_show(_lookup(previous, key))} → {_show(_lookup(resolved, key))}" for key in changed[:8])
            more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
            raise UserError(f"{self.path} holds a {previous.get('kind', 'run')} with a different config (changed: {shown}{more}). "
                            "Rerun with the same config to resume, choose another --out folder, or pass --overwrite to replace it.")
        return True

    def _release(self, failed: bool) -> None:
        if failed and self._lock is not None and self.path.is_dir():
            # No partial output: while this command wrote nothing but config.yaml and .lock, put
            # the folder back as it was (it still holds the lock, so no other run is inside).
            present = {child.name for child in self.path.iterdir()}
            added = present - self._before
            if added <= {"config.yaml", ".lock"}:
                for name in added:
                    (self.path / name).unlink(missing_ok=True)
                if self._created:
                    folder = self.path
                    while True:  # also the parent folders that this run created
                        try:
                            folder.rmdir()
                        except OSError:
                            break
                        if folder == self._created_root:
                            break
                        folder = folder.parent
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._release(failed=exc_type is not None and issubclass(exc_type, UserError))


_UNSET = object()


def _lookup(tree, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key, _UNSET) if isinstance(tree, dict) else _UNSET
    return tree


def _show(value) -> str:
    text = "(unset)" if value is _UNSET else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _diff_keys(a, b, prefix="") -> set[str]:
    """Dotted paths of the leaves that differ (a section missing on one side counts as empty)."""
    if isinstance(a, dict) or isinstance(b, dict):
        a = a if isinstance(a, dict) else {}
        b = b if isinstance(b, dict) else {}
        keys = set()
        for key in set(a) | set(b):
            keys |= _diff_keys(a.get(key, _UNSET), b.get(key, _UNSET), f"{prefix}.{key}" if prefix else key)
        return keys
    return {prefix or "(root)"} if a != b else set()


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
