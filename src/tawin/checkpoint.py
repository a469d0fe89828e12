"""Atomic writes and training checkpoints (model, optimizer, scheduler, RNG states, progress).

Every file is written to a temporary name in the same folder and renamed into place, so a crash
at any moment leaves either the previous complete checkpoint or the new one, never a torn file.
Files and folders get the permissions of any other output (0666/0777 less the umask): the
temporary names of ``tempfile`` would otherwise leave them private (0600/0700).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from tawin.errors import UserError


def umask() -> int:
    """The process's umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give `path` (and, for a folder, everything in it) the permissions a plain `open`/`mkdir` would."""
    path = Path(path)
    mask = umask()
    for entry in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not entry.is_symlink():
            os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~umask())
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
    the old folder is renamed aside first and removed only after the new one is in place.
    The new folder and its files get the umask's permissions (see :func:`follow_umask`)."""
    target = Path(target)
    follow_umask(staging)
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


def check_resumable(folder: Path) -> None:
    """A UserError when the resumable checkpoint `folder` (``last/``) exists but cannot be read back:
    a torn or corrupt ``trainer.pt`` (every entry's CRC is checked) or ``model.safetensors``."""
    folder = existing_folder(folder)  # what a resume would read, the copy set aside by a torn replace included
    if folder is None or not (folder / "trainer.pt").exists():
        return
    state, weights = folder / "trainer.pt", folder / "model.safetensors"
    fix = f"Delete {folder} to restart this stage from its beginning (the other checkpoints stay), or choose another --out folder."
    try:
        with zipfile.ZipFile(state) as archive:
            broken = archive.testzip()
    except FileNotFoundError:
        return  # replaced meanwhile (another process set it aside for --overwrite): nothing to resume
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"{state}: the resumable checkpoint is not readable ({error}). {fix}") from None
    if broken is not None:
        raise UserError(f"{state}: the resumable checkpoint is corrupt (entry {broken} fails its CRC check). {fix}")
    problem = safetensors_problem(weights)
    if problem and state.exists():
        raise UserError(f"{weights}: {problem}. {fix}")


def safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file `path` cannot be loaded (missing, empty, torn), or None when it can."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return "file not found"
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    try:
        with safe_open(str(path), "pt"):
            pass
    except (SafetensorError, OSError) as error:
        return f"not a readable safetensors file ({' '.join(str(error).split())}; {path.stat().st_size} bytes)"
    return None


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
