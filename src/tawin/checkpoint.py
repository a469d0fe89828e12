"""Atomic writes and training checkpoints (model, optimizer, scheduler, RNG states, progress).

Every file is written to a temporary name in the same folder and renamed into place, so a crash
at any moment leaves either the previous complete checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def replace_folder(staging: Path, target: Path) -> None:
    """Move a fully written `staging` folder to `target`, replacing it atomically enough:
    the old folder is renamed aside first and removed only after the new one is in place."""
    target = Path(target)
    if target.exists():
        aside = target.with_name(f".{target.name}.old")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(target, aside)
        os.replace(staging, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staging, target)


def existing_folder(target: Path) -> Path | None:
    """`target`, or the copy `replace_folder` set aside if a crash hit between its two renames."""
    target = Path(target)
    if target.exists():
        return target
    aside = target.with_name(f".{target.name}.old")
    return aside if aside.exists() else None


def staging_folder(target: Path) -> Path:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp.", dir=target.parent))


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
