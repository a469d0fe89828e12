"""Orchestration — an output folder: its saved config, its lock, what `--overwrite` replaces, and a command's set-up.

Every command that writes a folder enters a :class:`RunFolder` first. The folder's identity is the
resolved config plus, where given, the provenance of its inputs (the dataset's and the checkpoint's
content hashes, :mod:`tawin.run.provenance`); both are saved as ``config.yaml``. Rerunning the same
command on the same folder resumes (finished stages are skipped, interrupted ones continue from
their last checkpoint); a folder whose identity differs is refused, naming what changed, unless
``--overwrite``. Settings that cannot change a result never block a resume (:mod:`tawin.run.config_changes`).

``--overwrite`` replaces nothing up front: the old contents are moved aside into ``.replaced/``
inside the folder, and put back if the new command fails (or is interrupted or killed) before it
has written its first checkpoint or result (:data:`RESULT_FILES`); they are deleted once the new
command finishes, or fails after that point (its output is then what a rerun resumes). Ctrl-C waits
for these moves to finish (:func:`~tawin.run.interrupts.deferred_interrupts`), so that a folder
never holds half of each run.

:func:`command_folder` is the set-up that `tawin run`, `sft`, `rl` and `eval` share: the model
checked, the session opened, the folder entered, resumable checkpoints and searches checked.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from tawin.checkpoint import atomic_write_text, check_resumable
from tawin.config import read_yaml, to_dict
from tawin.errors import ConfigError, UserError
from tawin.overrides import in_new_spelling
from tawin.run.config import DataConfig, PipelineConfig, Stage, dataset_path
from tawin.run.config_changes import blocking_changes, describe_change
from tawin.run.interrupts import deferred_interrupts
from tawin.run.provenance import checkpoint_provenance, dataset_provenance

if TYPE_CHECKING:
    from tawin.run.session import Session

FolderKind = Literal["run", "sft", "rl", "eval", "baseline", "experiment"]
"""What wrote the folder: saved as the `kind` key of config.yaml, so a folder never resumes another command."""

RESULT_FILES = frozenset(
    {"model.safetensors", "trainer.pt", "metrics.json", "summary.json", "results.json", "result.json"}
)
"""Files that mark a checkpoint or a result: once a new run has written one, an overwrite is final."""

ASIDE = ".replaced"


class RunFolder:
    """An output folder with its saved config and an exclusive lock against concurrent runs.

    Entering checks before it writes anything: the dataset named by ``config.data`` must exist,
    ``--out`` must not be a file, no other process may hold the folder's lock, and a saved
    ``config.yaml`` must match (unless `overwrite`), except in the top-level keys named in
    `extendable` (changes there add to the finished work rather than invalidate it) and in
    :data:`~tawin.run.config_changes.RESULT_NEUTRAL`; the saved config is then updated.
    `provenance` (a mapping of input name → ``{path, sha256}``) is part of the identity, paths
    excepted. Only then is ``config.yaml`` written. If the command then fails before producing
    anything else, the files this folder added (and the folder, if it created it) are removed
    again: no partial output. With `overwrite`, see the module docstring.
    """

    def __init__(
        self,
        path: Path,
        config,
        overwrite: bool = False,
        kind: FolderKind = "run",
        extendable: tuple[str, ...] = (),
        provenance: dict | None = None,
    ):
        self.path = Path(path)
        self.config = config
        self.overwrite = overwrite
        self.kind = kind
        self.extendable = extendable
        self.provenance = provenance
        self._lock = None
        self._created = False
        self._before: set[str] = set()
        self._created_root: Path | None = None
        self._aside: Path | None = None

    def __enter__(self) -> RunFolder:
        if int(os.environ.get("RANK", "0")) != 0:
            return self  # rank 0 alone checks, locks and writes the folder
        data = getattr(self.config, "data", None)
        if isinstance(data, DataConfig):
            dataset_path(data.dataset)  # a missing dataset fails before the folder is touched
        if self.path.exists() and not self.path.is_dir():
            raise UserError(
                f"--out {self.path} is a file, not a folder; choose another --out folder or remove the file."
            )
        resolved = {"kind": self.kind, **to_dict(self.config)}
        if self.provenance is not None:
            resolved["provenance"] = self.provenance
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
                    raise UserError(
                        f"--out {self.path}: cannot create the folder ({error.strerror}); choose a writable location."
                    ) from None
                self._acquire()
            if self._previous_differs(resolved):  # checked again under the lock
                self._set_aside()
            atomic_write_text(self.path / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def _acquire(self) -> None:
        lock_path = self.path / ".lock"
        try:
            self._lock = open(lock_path, "a")  # noqa: SIM115 (the lock is held until _release closes it, past this method)
        except OSError as error:
            raise UserError(
                f"--out {self.path}: cannot open {lock_path} ({error.strerror}); choose a writable --out folder."
            ) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise UserError(
                f"{self.path}: another tawin process is writing into this folder right now (it holds {lock_path}). "
                "Wait for it to finish or choose another --out folder."
            ) from None
        self._recover()

    def _previous_differs(self, resolved: dict) -> bool:
        """True when a saved run with another config may be replaced; raises when it may not."""
        saved = self.path / "config.yaml"
        if not saved.is_file():
            return False
        try:
            previous = read_yaml(saved)
        except ConfigError:
            previous = None
        if not isinstance(previous, dict):
            if self.overwrite:
                return True
            raise UserError(
                f"{saved} is not a readable tawin config, so {self.path} cannot be resumed safely. "
                "Choose another --out folder, or pass --overwrite to replace its contents."
            )
        # A folder of an earlier version saved settings under their earlier names: compare them under today's.
        previous = in_new_spelling(type(self.config), previous, [], warn=False)
        changed = blocking_changes(previous, resolved, self.config, self.extendable)
        if not changed:
            return False
        if not self.overwrite:
            raise UserError(self._refusal(previous, resolved, changed))
        return True

    def _refusal(self, previous: dict, resolved: dict, changed: set[str]) -> str:
        what = previous.get("kind", "run")
        if (
            "provenance" not in previous
            and self.provenance is not None
            and all(key.startswith("provenance.") for key in changed)
        ):
            return (
                f"{self.path} holds a {what} written before tawin recorded "
                "what a result is made from (its config.yaml has no "
                "provenance: dataset and checkpoint hashes), so it cannot be shown to match this command's inputs. "
                "Pass --overwrite to redo it, or choose another --out folder."
            )
        ordered = sorted(changed, key=lambda key: (key != "kind", not key.startswith("provenance."), key))
        shown = ", ".join(describe_change(previous, resolved, key) for key in ordered[:8])
        more = f" and {len(ordered) - 8} more" if len(ordered) > 8 else ""
        return (
            f"{self.path} holds a {what} with a different config (changed: {shown}{more}). "
            "Rerun with the same config to resume, choose another --out folder, or pass --overwrite to replace it."
        )

    # --- --overwrite: the old contents wait in .replaced/ until the new run has a checkpoint --------------

    @deferred_interrupts()  # Ctrl-C waits for these moves: half-moved contents would mix two runs
    def _set_aside(self) -> None:
        aside = self.path / ASIDE
        aside.mkdir()
        for child in self.path.iterdir():
            if child.name not in (".lock", ASIDE):
                os.replace(child, aside / child.name)
        self._aside = aside

    def _has_results(self) -> bool:
        """Whether the folder (outside .replaced/ and hidden staging folders) holds a checkpoint or result."""
        for entry in self.path.rglob("*"):
            parts = entry.relative_to(self.path).parts
            if entry.name in RESULT_FILES and not any(part.startswith(".") for part in parts):
                return True
        return False

    def _put_back(self) -> None:
        """Replace the folder's contents by what --overwrite set aside."""
        aside = self.path / ASIDE
        for child in self.path.iterdir():
            if child.name not in (".lock", ASIDE):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        for child in aside.iterdir():
            os.replace(child, self.path / child.name)
        aside.rmdir()

    @deferred_interrupts()
    def _recover(self) -> None:
        """Finish what a killed --overwrite left (under the lock): keep its new run if that got as far as
        a checkpoint, else put the old run back."""
        aside = self.path / ASIDE
        if self._aside is not None or not aside.is_dir():
            return
        if self._has_results():
            shutil.rmtree(aside)
        else:
            self._put_back()
        self._before = {child.name for child in self.path.iterdir()}

    @deferred_interrupts()
    def _release(self, failed: bool) -> None:
        if self._lock is not None and self.path.is_dir():
            if self._aside is not None:
                if failed and not self._has_results():
                    self._put_back()
                else:
                    shutil.rmtree(self._aside, ignore_errors=True)
                self._aside = None
            if failed:
                self._remove_additions()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _remove_additions(self) -> None:
        """No partial output: while this command wrote nothing but config.yaml and .lock, put the folder
        back as it was (it still holds the lock, so no other run is inside)."""
        present = {child.name for child in self.path.iterdir()}
        added = present - self._before
        if not added <= {"config.yaml", ".lock"}:
            return
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

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._release(failed=exc_type is not None)


@contextmanager
def command_folder(
    config: PipelineConfig,
    out: Path,
    kind: FolderKind,
    *,
    overwrite: bool,
    progress: bool,
    checkpoints: dict[str, str | Path] | None = None,
    resumable: tuple[str, ...] = (),
    searches: tuple[Stage, ...] = (),
    timed: Callable[[str], AbstractContextManager] = lambda name: nullcontext(),
) -> Iterator[Session]:
    """The set-up of every command that trains or evaluates into `out` (`tawin run`, `sft`, `rl`, `eval`):

    1. a model the command builds (``model.name_or_path``) is found; a command that loads
       `checkpoints` instead has already checked them against the config
       (:func:`tawin.run.commands.with_checkpoint_model`);
    2. the session is opened: the dataset loaded, and `config` checked against it (timed as
       ``load data`` by `timed`);
    3. the :class:`RunFolder` of `kind` is entered, its identity holding the content hash of the
       dataset and of each of `checkpoints` (name → folder, or ``popularity``);
    4. each checkpoint folder of `resumable` (relative to `out`) is checked to resume from;
    5. the beam searches of the stages in `searches` are checked against the catalogue.

    Steps 1 and 2 fail before `out` is touched. Yields the session; the tracker run it left open
    is closed on the way out."""
    from tawin.models.pretrained import check_model_source
    from tawin.run.session import Session

    checkpoints = checkpoints or {}
    if not checkpoints and config.model.name_or_path is not None:
        check_model_source(config.model.name_or_path)
    with timed("load data"):
        session = Session.open(config, progress)
    provenance = {
        "dataset": dataset_provenance(config.data.dataset),
        **{name: checkpoint_provenance(folder) for name, folder in checkpoints.items()},
    }
    with RunFolder(out, config, overwrite, kind=kind, provenance=provenance):
        for folder in resumable:
            check_resumable(Path(out) / folder)
        if searches:
            session.check_searches(config, searches)
        try:
            yield session
        finally:
            session.tracking.close()
