"""Orchestration — an output folder: its saved config, its lock, and what `--overwrite` replaces.

Every command that writes a folder enters a :class:`RunFolder` first. The resolved config is saved
as ``config.yaml``; rerunning the same command on the same folder resumes (finished stages are
skipped, interrupted ones continue from their last checkpoint); a folder holding a run with a
different config is refused, naming the changed keys, unless ``--overwrite``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Literal

import yaml

from tawin.checkpoint import atomic_write_text
from tawin.config import to_dict
from tawin.errors import UserError
from tawin.run.config import DataConfig, dataset_path

FolderKind = Literal["run", "sft", "rl", "eval", "experiment"]
"""What wrote the folder: saved as the `kind` key of config.yaml, so a folder never resumes another command."""


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

    def __init__(self, path: Path, config, overwrite: bool = False, kind: FolderKind = "run", extendable: tuple[str, ...] = ()):
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
