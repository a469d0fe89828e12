"""Atomic writes and training checkpoints (model, optimizer, scheduler, RNG states, progress).

Every file is written to a temporary name in the same folder and renamed into place, so a crash
at any moment leaves either the previous complete checkpoint or the new one, never a torn file.
Files and folders get the permissions of any other output (0666/0777 less the umask): the
temporary names of ``tempfile`` would otherwise leave them private (0600/0700). torch loads only
in the functions that need it: the file helpers here serve `tawin data` too, which must start fast.

A checkpoint folder (:func:`writing_checkpoint`) ends with ``manifest.json``, the size and sha256
of each of its files, written last before the rename; every load checks it
(:func:`integrity_problem`), so bytes damaged after the write are refused rather than evaluated.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

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
    a torn or corrupt ``trainer.pt`` (every entry's CRC is checked) or ``model.safetensors``, or any
    file that differs from the folder's manifest (see :func:`integrity_problem`)."""
    folder = existing_folder(folder)  # what a resume would read, the copy set aside by a torn replace included
    if folder is None or not (folder / "trainer.pt").exists():
        return
    state, weights = folder / "trainer.pt", folder / "model.safetensors"
    fix = (
        f"Delete {folder} to restart this stage from its beginning "
        "(the other checkpoints stay), or choose another --out folder."
    )
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
    problem = integrity_problem(folder)
    if problem and folder.exists():
        raise UserError(f"{problem}. {fix}")


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


# ------------------------------------------------------------------ the manifest of a checkpoint folder

MANIFEST = "manifest.json"
"""In every checkpoint folder tawin writes: each other file's size and sha256. Not among the files of a
checkpoint's provenance hash (``tawin.run.provenance.CHECKPOINT_FILES``), so run folders keep their identity."""

TRAINING_STATE = "trainer.pt"
"""The optimizer, scheduler, RNG and progress of a resumable checkpoint; loading only the model never reads it."""


def hash_file_into(digest, path: Path) -> None:
    """Feed the bytes of `path` to `digest` (a hashlib object), 1 MiB at a time."""
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)


def file_sha256(path: Path) -> str:
    """The sha256 of `path`'s bytes, read once per version of the file: a checkpoint is checked
    before the output folder is touched and again when it loads, and a file whose size, change time
    and inode are the same has not been written in between."""
    stat = Path(path).stat()
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    hash_file_into(digest, Path(path))
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file under `folder` (subfolders included) in ``folder/manifest.json``."""
    folder = Path(folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path != folder / MANIFEST)
    entries = {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in files
    }
    (folder / MANIFEST).write_text(json.dumps({"format": 1, "files": entries}, indent=2) + "\n")


def integrity_problem(folder: Path, skip: tuple[str, ...] = ()) -> str | None:
    """Damage to the checkpoint `folder` that a readable structure hides ("<file>: <what>"), or None.

    With a manifest, every file it lists but `skip` must be there with its recorded size and sha256.
    A folder without one (written before tawin recorded checksums, or by ``save_recommender`` alone)
    is checked for what needs no record: every floating-point weight must be finite."""
    folder = Path(folder)
    if (folder / MANIFEST).exists():
        return _manifest_problem(folder, skip)
    for weights in sorted(folder.glob("*.safetensors")):
        problem = _nonfinite_weights(weights)
        if problem:
            return f"{problem} (the checkpoint has no {MANIFEST} of checksums, so only this could be checked)"
    return None


def check_intact(folder: Path, fix: str, skip: tuple[str, ...] = (TRAINING_STATE,)) -> None:
    """A UserError naming the damaged file and `fix` when :func:`integrity_problem` finds one."""
    problem = integrity_problem(folder, skip)
    if problem:
        raise UserError(f"{problem}. {fix}")


def _manifest_problem(folder: Path, skip: tuple[str, ...]) -> str | None:
    manifest = folder / MANIFEST
    try:
        entries = _manifest_entries(manifest)
    except FileNotFoundError:
        return None  # the folder was replaced meanwhile: the caller sees it is gone
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"{manifest}: not a readable checkpoint manifest ({' '.join(str(error).split())})"
    for name, entry in entries.items():
        if name in skip:
            continue
        path = folder / name
        if not path.is_file():
            return f"{path}: missing, but {MANIFEST} lists it"
        size = path.stat().st_size
        if size != entry["bytes"]:
            return f"{path}: {size} bytes, but {MANIFEST} recorded {entry['bytes']} when the checkpoint was written"
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            return (
                f"{path}: damaged or changed since the checkpoint was written (its sha256 is {digest[:12]}…, "
                f"{MANIFEST} recorded {entry['sha256'][:12]}…)"
            )
    return None


def _manifest_entries(manifest: Path) -> dict[str, dict]:
    """The manifest's files, each {"bytes": int, "sha256": hex}; a ValueError saying what is malformed."""
    saved = json.loads(manifest.read_text())
    entries = saved.get("files") if isinstance(saved, dict) else None
    if not isinstance(entries, dict):
        raise ValueError('it must hold {"files": {name: {"bytes": …, "sha256": …}}}')
    for name, entry in entries.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"{name!r} lies outside the checkpoint folder")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        ):
            raise ValueError(f'the entry of {name!r} must be {{"bytes": int, "sha256": 64 hex digits}}')
    return entries


def _nonfinite_weights(path: Path) -> str | None:
    from safetensors import safe_open

    problem = safetensors_problem(path)
    if problem:
        return f"{path}: {problem}"
    import torch

    with safe_open(str(path), "pt") as weights:
        for name in weights.keys():  # noqa: SIM118 (a safetensors file handle, not a dict: it has keys() but no iteration)
            tensor = weights.get_tensor(name)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return f"{path}: the weights {name!r} hold NaN or infinite values, so the file is damaged"
    return None


# ------------------------------------------------------------------ writing a checkpoint folder

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def writing_checkpoint(target: Path) -> Iterator[Path]:
    """Write the checkpoint folder `target` atomically: the body fills the staging folder it is given,
    then its manifest is written and it is renamed into place.

    On any failure the staging folder is removed and `target` (the previous checkpoint) stays as it
    was; an OS error (a full disk above all) becomes a UserError naming the folder and the fix."""
    target = Path(target)
    staging = None
    try:
        staging = staging_folder(target)
        yield staging
        write_manifest(staging)
        replace_folder(staging, target)
    except Exception as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        failure = _write_failure(target, error)
        if failure is None:
            raise
        raise failure from error
    except BaseException:  # an interrupt: no half-written folder is left behind either
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise


def save_torch(state: dict, path: Path) -> None:
    """`torch.save` through a Python file, so that a full disk surfaces as OSError(ENOSPC): torch's own
    file writer reports only "unexpected pos"."""
    import torch

    with open(path, "wb") as stream:
        torch.save(state, stream)


def _write_failure(target: Path, error: Exception) -> UserError | None:
    """The user-facing error for a checkpoint write that the machine refused, or None for anything else."""
    code = _os_errno(error)
    if code is None:
        return None
    kept = "The previous checkpoint there is kept" if existing_folder(target) else "Nothing was written there"
    rerun = "rerun the same command: it resumes from the stage's last checkpoint, if it wrote one"
    if code in DISK_FULL:
        return UserError(
            f"{target}: the checkpoint could not be written: the disk is full ({os.strerror(code)}; "
            f"{_free_space(target)} free now). {kept}, and no temporary files are left behind. "
            f"Free some space on that disk, then {rerun}."
        )
    reason = " ".join(str(error).split())
    return UserError(
        f"{target}: the checkpoint could not be written ({reason}). {kept}, and no temporary files are "
        f"left behind. Fix the cause (permissions, a read-only or failing disk), then {rerun}."
    )


def _os_errno(error: Exception) -> int | None:
    """The errno of a failed write: an OSError's, the "(os error N)" that Rust's I/O errors end with
    (safetensors and tokenizers raise them as text), or that of the OSError torch's writer hit before
    its RuntimeError."""
    if isinstance(error, OSError):
        return error.errno
    match = re.search(r"\(os error (\d+)\)", str(error))
    if match:
        return int(match.group(1))
    if isinstance(error, RuntimeError) and isinstance(error.__context__, OSError):
        return error.__context__.errno
    return None


def _free_space(target: Path) -> str:
    folder = Path(target).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB"
    except OSError:
        return "unknown space"


def rng_state() -> dict:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    import torch

    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
