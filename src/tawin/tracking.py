"""Experiment tracking: every logged scalar of SFT, RL and evaluation sent to TensorBoard, Weights &
Biases or MLflow through Accelerate's tracker classes (`accelerate.tracking`), beside ``log.jsonl``.

One tracker run per model: the folder that trained it (``<run>/sft``, ``<run>/rl``, an experiment's
``seed_S/sft`` or ``seed_S/<cell>/rl``), or an evaluation's own folder when no training folder of
the same run precedes it (popularity, a baseline cell, ``tawin eval`` of a foreign checkpoint).
That folder's path is the run's name and the resolved config, flattened to dotted keys, its
hyper-parameters. Runs are grouped by the run folder (the one holding ``config.yaml``): for
``tawin experiment`` that is the experiment, so each cell is one run of the experiment's group.

* tensorboard: ``<run folder>/tracking/tensorboard/<model folder relative to it>/``;
* wandb: project ``$WANDB_PROJECT`` (default ``tawin``), ``group`` = the experiment's name or the
  run folder, files under ``$WANDB_DIR`` (default ``<run folder>/tracking``);
* mlflow: ``$MLFLOW_TRACKING_URI`` (mlflow's own default when unset); the MLflow experiment is the
  group. MLflow allows no ``@`` in a metric's name, so ``recall@5`` is sent as ``recall_at_5``.

A command's :class:`Tracking` (held by its :class:`~tawin.run.session.Session`) opens the runs. A
training loop receives the run of its model (``RunContext.tracker``) and hands it to its
:class:`tawin.train_utils.JsonlLog`: each key with a namespace (``train/loss``,
``rollout/target_in_group``, ``eval/recall@3``…) whose value is a finite number goes out with the
record's ``step``. Evaluation metrics go as ``eval/<split>/<metric>``
(:meth:`Tracking.log_evaluation`). Only the main process (``RANK`` 0) tracks.

A :class:`Tracking` keeps one run open at a time (trackers such as wandb and mlflow keep one active
run per process); opening another closes it. The command closes the last one when it ends, or, if
it never does (an experiment's worker process), the process's exit does.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from tawin.config import to_dict

TrackerName = Literal["tensorboard", "wandb", "mlflow", "none"]
"""A tracker `report_to` may name; `none` = none (log.jsonl only)."""
INSTALL_HINT = "pip install 'tawin[tracking]'"
"""The extra that installs every tracker package."""
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def wanted_trackers(report_to) -> tuple[str, ...]:
    """The trackers `report_to` asks for (without `none`), in its order."""
    return tuple(name for name in report_to if name != "none")


def check_report_to(report_to) -> list[str]:
    """Problems of a `report_to` list: `none` beside a tracker, a repeat, a tracker package missing.

    The package check is Accelerate's own (`filter_trackers` keeps the trackers whose package is
    installed), so an error here means Accelerate could not log there either."""
    problems = []
    names = list(report_to)
    if "none" in names and len(names) > 1:
        problems.append(f"report_to={names} lists `none` beside trackers; give the trackers alone, or [none] for none")
    if len(set(names)) != len(names):
        problems.append(f"report_to={names} repeats a tracker; list each once")
    wanted = [
        name for name in dict.fromkeys(wanted_trackers(names)) if name in _PACKAGES
    ]  # others: the Literal's error
    if wanted:
        from accelerate.tracking import filter_trackers

        available = {getattr(found, "value", str(found)) for found in filter_trackers(wanted, logging_dir=".")}
        missing = [name for name in wanted if name not in available]
        if missing:
            packages = " and ".join(f"the {_PACKAGES[name]} package" for name in missing)
            problems.append(
                f"report_to={names} needs {packages}, which is not installed; install the trackers with "
                f"`{INSTALL_HINT}` (or `pip install {' '.join(_PACKAGES[name] for name in missing)}`), "
                "or drop them from report_to"
            )
    return problems


def flat_hparams(config) -> dict[str, bool | int | float | str]:
    """The config as hyper-parameters: nested sections flattened to dotted keys (`rl.anchor`); values
    that are not a bool, number or string (lists, null) as their JSON text."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value
        else:
            flat[prefix] = json.dumps(value)

    walk("", to_dict(config) if not isinstance(config, dict) else config)
    return flat


def scalars(record: dict) -> dict[str, float | int]:
    """The record's metrics: namespaced keys (`train/loss`) with a finite number as value. Bookkeeping
    keys (`time`, `stage`, `step`, `epoch`) have no namespace; a NaN (e.g. `tawin/weight_entropy`
    without TAWin weighting) is left out."""
    return {
        key: value
        for key, value in record.items()
        if "/" in key and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def mlflow_key(key: str) -> str:
    """`eval/recall@5` → `eval/recall_at_5`: MLflow names allow letters, digits, `_ - . : /` and spaces."""
    return re.sub(r"[^\w\-. :/]", "_", key.replace("@", "_at_"))


@dataclass(frozen=True)
class Location:
    """Where a model's tracker run sits: its folder, the run folder above it, and the group."""

    folder: Path
    """The model's folder (its path, as given, is the run's name)."""
    root: Path
    """The run folder: the nearest folder at or above `folder` whose config.yaml has a `kind`."""
    group: str
    """The experiment's name for `tawin experiment`, else the run folder's path."""

    @property
    def relative(self) -> str:
        """`folder` relative to `root` (`.` when they are the same folder)."""
        return Path(os.path.relpath(self.folder.resolve(), self.root.resolve())).as_posix()

    @classmethod
    def of(cls, folder: Path) -> Location:
        folder = Path(folder)
        for candidate in [folder, *folder.parents]:
            saved = _saved_config(candidate)
            if saved is not None:
                group = str(saved.get("name") or candidate) if saved.get("kind") == "experiment" else str(candidate)
                return cls(folder, candidate, group)
        return cls(folder, folder, str(folder))


def _saved_config(folder: Path) -> dict | None:
    """A RunFolder's saved config.yaml in `folder` (a mapping with `kind`), else None."""
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return saved if isinstance(saved, dict) and "kind" in saved else None


class TrackerRun:
    """One open run in each of the configured trackers, for one model's folder."""

    def __init__(self, location: Location, trackers: list[tuple[str, Any]]):
        self.location = location
        self.trackers = trackers
        """(tracker name, started `accelerate.tracking.GeneralTracker`) pairs, in `report_to`'s order."""
        self.names = tuple(name for name, _ in trackers)
        self.key = location.folder.resolve()

    def store_config(self, config) -> None:
        """The config as the run's hyper-parameters (see :func:`flat_hparams`)."""
        values = flat_hparams(config)
        for _, tracker in self.trackers:
            tracker.store_init_configuration(values)

    def log(self, values: dict[str, float | int], step: int) -> None:
        if not values:
            return
        for name, tracker in self.trackers:
            tracker.log({mlflow_key(k): v for k, v in values.items()} if name == "mlflow" else values, step=step)

    def log_record(self, record: dict) -> None:
        """A log.jsonl record's metrics (:func:`scalars`) at its `step`; a record without a step is not sent."""
        if "step" in record:
            self.log(scalars(record), int(record["step"]))

    def close(self) -> None:
        for _, tracker in self.trackers:
            tracker.finish()
        self.trackers = []


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class Tracking:
    """The tracker runs of one command: at most one open at a time (see the module docstring)."""

    def __init__(self):
        self.run: TrackerRun | None = None
        """The open run, if any."""
        self._closes_at_exit = False

    def open(self, config, folder: Path) -> TrackerRun | None:
        """The tracker run of the model trained or evaluated in `folder`, opened with `config` as its
        hyper-parameters unless it is open already (another open run is closed first). None when
        `config.report_to` names no tracker, or off the main process."""
        names = wanted_trackers(config.report_to)
        if not names or not _is_main():
            return None
        if self.run is not None and self.run.key == Path(folder).resolve() and self.run.names == names:
            return self.run
        self.close()
        location = Location.of(Path(folder))
        run = TrackerRun(location, [(name, _start_tracker(name, location)) for name in dict.fromkeys(names)])
        run.store_config(config)
        self.run = run
        if not self._closes_at_exit:
            # Registered after the trackers started, so it runs before their own exit hooks (atexit is LIFO).
            atexit.register(self.close)
            self._closes_at_exit = True
        return run

    def close(self) -> None:
        """Finish the open tracker run, if any (TensorBoard writers closed, wandb/mlflow runs ended)."""
        run, self.run = self.run, None
        if run is not None:
            run.close()

    def log_evaluation(self, config, metrics: dict, split: str, out: Path, checkpoint: Path | None = None) -> None:
        """An evaluation's metrics (metrics.json: `recall@5`, `n_rows`, diagnostics…) as
        `eval/<split>/<metric>`, in the run of the evaluated model (:func:`evaluated_folder`), at its
        training's last step. Nothing without trackers or off the main process."""
        if not wanted_trackers(config.report_to) or not _is_main():
            return
        folder = evaluated_folder(checkpoint, out)
        run = self.open(config, folder)
        run.log(scalars({f"eval/{split}/{key}": value for key, value in metrics.items()}), last_step(folder))


def _start_tracker(name: str, location: Location):
    """Accelerate's tracker `name`, started for `location` (see the module docstring for where it writes)."""
    from accelerate import PartialState
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    PartialState()  # Accelerate's trackers need its process state (main-process checks, their logger)
    tracking_dir = location.root / "tracking"
    if name == "tensorboard":
        tracker = TensorBoardTracker(location.relative, tracking_dir / "tensorboard")
    elif name == "wandb":
        options = {"name": str(location.folder), "group": location.group}
        if not os.environ.get("WANDB_DIR"):
            tracking_dir.mkdir(parents=True, exist_ok=True)
            options["dir"] = str(tracking_dir)
        tracker = WandBTracker(os.environ.get("WANDB_PROJECT") or "tawin", **options)
    else:
        tracker = MLflowTracker(experiment_name=location.group, run_name=str(location.folder))
    tracker.start()
    return tracker


def evaluated_folder(checkpoint: Path | None, out: Path) -> Path:
    """Whose run an evaluation joins: the checkpoint's training folder (holding log.jsonl) when it
    belongs to the same run folder as the evaluation's `out`, else `out` itself."""
    if checkpoint is not None:
        trained = Path(checkpoint).parent
        if (trained / "log.jsonl").is_file() and Location.of(trained).root.resolve() == Location.of(
            Path(out)
        ).root.resolve():
            return trained
    return Path(out)


def last_step(folder: Path) -> int:
    """The largest `step` in `folder`/log.jsonl (0 without one): where a model's evaluation is logged."""
    path = Path(folder) / "log.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.strip()]
    return int(max(steps, default=0))
