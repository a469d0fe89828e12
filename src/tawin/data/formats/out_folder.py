"""Stage 1 — the `--out` folder of a dataset: when `tawin data import` may replace it, and replacing it safely.

:func:`check_dataset_out` says when the import may write into a folder, before any input is read:

* never when `--out` is a file, the source folder or a folder above it (the files being imported
  are in it), or a folder inside the source that holds anything but a dataset (they may be in it);
  ``--overwrite`` does not change that;
* a missing or empty folder, or a tawin dataset folder holding only :data:`DATASET_FILES`, is
  replaced without asking: rerunning an import updates its output;
* any other folder only with ``--overwrite``. Like `tawin data export` (which refuses every
  non-empty folder), the import deletes no file it did not write unless told to.

:func:`replace_contents` writes the new contents into a hidden folder inside `--out`, then moves the
old contents aside into another hidden folder and the new ones into place, as `--overwrite` does
for run folders (:mod:`tawin.run.folder`). The old contents are deleted only once every new file is
in place and put back if anything fails. A command killed half-way leaves the hidden folders; the
next write into the folder (or check of it) finishes the job: it keeps the new dataset if all of
it had arrived, else it puts the old contents back. Working inside the folder, rather than renaming
it, keeps its permissions and works for `--out .` and for a mount point.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tawin.checkpoint import follow_umask
from tawin.data.dataset import SPLITS
from tawin.errors import UserError

DATASET_FILES = frozenset({"items.parquet", "dataset.json", *(f"{split}.parquet" for split in SPLITS)})
"""What `tawin data import` writes: a folder holding nothing else is replaced without --overwrite."""

WRITING, REPLACING, REPLACED = ".tawin-writing.", ".tawin-replacing.", ".tawin-replaced."
"""Name prefixes of the hidden folders inside `--out` while it is replaced: the new files being written;
the old contents while they are moved aside; the old contents once all of them are aside."""


def _ours(entry: Path) -> bool:
    return entry.name.startswith((WRITING, REPLACING, REPLACED))


def is_dataset_folder(folder: Path) -> bool:
    """Whether `folder` holds a tawin dataset (its ``dataset.json`` says so) and no other file."""
    entries = {child.name for child in folder.iterdir()}
    if "dataset.json" not in entries or not entries <= DATASET_FILES:
        return False
    try:
        meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and str(meta.get("format", "")).startswith("tawin-dataset/")


def _listing(folder: Path) -> str:
    """The first few entries of `folder`, those that are not a dataset's first (they are what would be lost)."""
    children = sorted(folder.iterdir(), key=lambda child: (child.name in DATASET_FILES, child.name))
    names = [child.name + ("/" if child.is_dir() else "") for child in children]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def check_dataset_out(out: Path, source: Path, overwrite: bool) -> None:
    """Raise a UserError unless `tawin data import SOURCE --out OUT` may write (and replace) `out`.

    The rules are in the module docstring. A folder left half-replaced by a killed import is put
    right first (:func:`finish_interrupted`), so that the check sees what the user had.
    """
    out, source = Path(out), Path(source)
    try:
        _check(out, source, overwrite)
    except OSError as error:
        raise UserError(
            f"--out {out}: cannot look into it ({error.strerror or error}); choose an --out folder you can "
            "read and write."
        ) from None


def _check(out: Path, source: Path, overwrite: bool) -> None:
    real_out, real_source = out.resolve(), source.resolve()
    if real_out == real_source or real_source.is_relative_to(real_out):
        where = "is the source folder" if real_out == real_source else f"holds the source folder {source}"
        raise UserError(
            f"--out {out} {where}: the import replaces the contents of --out, which would delete the files "
            f"being imported (--overwrite does not change that). Choose an --out folder outside {source}."
        )
    existing = next(folder for folder in [real_out, *real_out.parents] if folder.exists())
    if not existing.is_dir():
        where = "is a file, not a folder" if existing == real_out else f"cannot be made: {existing} is a file"
        raise UserError(f"--out {out} {where}; choose another --out folder (the file is left as it is).")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"--out {out}: cannot write in {existing} (permission denied or a read-only disk); "
            "choose an --out folder in a place you can write to."
        )
    finish_interrupted(real_out)
    if existing != real_out or not any(real_out.iterdir()) or is_dataset_folder(real_out):
        return
    if real_out.is_relative_to(real_source):
        raise UserError(
            f"--out {out} lies inside the source folder {source} and holds files that are not a tawin "
            f"dataset ({_listing(out)}); they may be files being imported, which replacing the contents "
            "would delete (--overwrite does not change that). Choose an empty or new --out folder."
        )
    if not overwrite:
        raise UserError(
            f"--out {out} exists and is neither empty nor a tawin dataset folder (it holds "
            f"{_listing(out)}); the import replaces its contents, so these would be lost. Choose a new "
            "--out folder, or pass --overwrite to replace them (they are kept aside until the new dataset "
            "is written, and put back if writing fails)."
        )


def replace_contents(folder: Path, write: Callable[[Path], None]) -> None:
    """Make `write(staging)` fill a hidden, empty folder, then replace `folder`'s contents by it (module doc).

    `folder` and its missing parents are created; if `write` fails they are removed again.
    """
    folder = Path(os.path.abspath(folder))
    created = next((p for p in [*reversed(folder.parents), folder] if not p.exists()), None)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        finish_interrupted(folder)
        staging = Path(tempfile.mkdtemp(prefix=WRITING, dir=folder))
        try:
            write(staging)
            follow_umask(staging)
            _move_in(folder, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        while created is not None and folder.is_relative_to(created) and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
        raise


def _move_in(folder: Path, staging: Path) -> None:
    """Move the old entries of `folder` aside, the new ones from `staging` in, then delete the old ones."""
    keep = Path(tempfile.mkdtemp(prefix=REPLACING, dir=folder))
    try:
        for entry in list(folder.iterdir()):
            if not _ours(entry):
                os.replace(entry, keep / entry.name)
        keep = keep.rename(folder / (REPLACED + keep.name[len(REPLACING) :]))
        for entry in list(staging.iterdir()):
            os.replace(entry, folder / entry.name)
    except BaseException:
        _put_back(folder, keep)
        raise
    shutil.rmtree(keep, ignore_errors=True)


def _put_back(folder: Path, keep: Path) -> None:
    """Move the old entries from `keep` back into `folder`, removing the new ones that had arrived."""
    if keep.name.startswith(REPLACED):  # every old entry was aside, so the others are new
        for entry in list(folder.iterdir()):
            if not _ours(entry):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in keep.iterdir():
        os.replace(entry, folder / entry.name)
    keep.rmdir()


def finish_interrupted(folder: Path) -> None:
    """Finish a :func:`replace_contents` that was killed: keep the new dataset if all of it had arrived,
    else put the old contents back; then delete the hidden folders."""
    if not folder.is_dir():
        return
    arrived = {entry.name for entry in folder.iterdir() if not _ours(entry)}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(REPLACING) or (entry.name.startswith(REPLACED) and not arrived >= DATASET_FILES):
            _put_back(folder, entry)
    for entry in list(folder.iterdir()):
        if _ours(entry):
            shutil.rmtree(entry)
