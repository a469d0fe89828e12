"""Orchestration — the one config file of a run: dataset → model → SFT → evaluation → RL → evaluation.

`PipelineConfig` holds one section per stage (each stage reads its own) plus the runtime fields
shared by all. Rules within one section are the section's own ``check()``; rules across sections
are :meth:`PipelineConfig.check`; rules that need the dataset are :meth:`PipelineConfig.check_dataset`,
run when the :class:`~tawin.run.session.Session` loads it, before any training.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import ClassVar, Literal

from tawin.data.dataset import Dataset
from tawin.errors import ConfigError
from tawin.eval.config import EvalConfig
from tawin.models.config import ModelConfig
from tawin.overrides import field_types, parse_override, renamed_path
from tawin.rl.config import RLConfig
from tawin.runtime import Device, Precision
from tawin.sft.config import SFTConfig
from tawin.tracking import TrackerName, check_report_to

SHIPPED = Path(__file__).resolve().parents[1] / "resources" / "datasets"
Stage = Literal["sft", "rl", "eval", "popularity", "sasrec", "gru4rec"]


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "industrial"
    """A shipped dataset name (`industrial`) or the path of a dataset folder."""
    latest_train_rows: int = 0
    """Keep only the latest N train rows (train rows are in target-time order; 0 = all) for every
    stage that learns from train: SFT, RL (`rl.rows` picks among the kept rows), popularity and an
    experiment's baselines (`tawin baseline --latest-train-rows N` for one on its own). Valid and
    test are unchanged: a small-data run. `sft.first_train_rows` keeps the first N, for SFT only."""

    def check(self) -> list[str]:
        problems = (
            []
            if self.dataset.strip()
            else ["data.dataset is empty; pass a shipped dataset name such as 'industrial' or a dataset folder"]
        )
        if self.latest_train_rows < 0:
            problems.append(
                f"data.latest_train_rows={self.latest_train_rows} must be ≥ 0 (the latest train rows kept; 0 = all)"
            )
        return problems


SMALL_DATA_FIXED = {
    "small_data": "the variant cannot change the rule that chooses it",
    "data": "data decides the train row count that chooses the variant",
    "seed": "the seed is set per run or per experiment cell, not by the data size",
}
"""The settings a small-data override may not name, each with the reason."""


@dataclass(frozen=True)
class SmallDataConfig:
    """The documented small-data variant of the recipe: other settings for a small train split,
    chosen from its size when a command loads the config (:mod:`tawin.run.small_data`)."""

    max_train_rows: int = 0
    """Train splits of at most this many rows (counted after `data.latest_train_rows`) get
    `overrides`; 0 = never. The run folder's config.yaml holds the values that applied."""
    overrides: tuple[str, ...] = ()
    """`section.field=value` entries in the syntax of `--set`, applied in order on top of the YAML
    file when the variant applies, e.g. [sft.epochs=10, model.embedding_dropout=0.2]; a setting
    that `--set` gives keeps its `--set` value. `data.*`, `seed` and `small_data.*` are not allowed."""

    def check(self) -> list[str]:
        problems = (
            [
                f"small_data.max_train_rows={self.max_train_rows} must be ≥ 0 "
                "(the largest train split that gets small_data.overrides; 0 = never)"
            ]
            if self.max_train_rows < 0
            else []
        )
        return problems + [problem for entry in self.overrides if (problem := _small_data_entry_problem(entry))]


def _small_data_entry_problem(entry: str) -> str | None:
    """Why the small-data override `entry` cannot apply (it does not parse, names no setting of the
    run config, or names one the variant may not change); None when it names a setting."""
    where = f"small_data.overrides entry {entry!r}"
    try:
        keys, _ = parse_override(entry)
    except ConfigError as error:
        return f"{where}: {error}"
    keys = renamed_path(PipelineConfig, keys)
    if keys[0] in SMALL_DATA_FIXED:
        return f"{where} sets {'.'.join(keys)}, which small_data may not change ({SMALL_DATA_FIXED[keys[0]]}); drop it"
    section = PipelineConfig
    for depth, key in enumerate(keys):
        names = field_types(section)
        path = ".".join(keys[: depth + 1])
        if key not in names:
            close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
            hint = (
                f"did you mean '{'.'.join([*keys[:depth], close[0]])}'?"
                if close
                else f"valid keys: {', '.join(sorted(names))}"
            )
            return f"{where}: {path} is no setting of the run config ({hint}); name one, e.g. sft.epochs=10"
        section = names[key]
        if depth < len(keys) - 1 and not is_dataclass(section):
            return f"{where}: {path} is a single value, not a section; name a setting, e.g. sft.epochs=10"
    return None


@dataclass(frozen=True)
class PipelineConfig:
    RENAMED: ClassVar[dict[str, str]] = {
        "data.rl_holdout": "rl.rows.holdout",
        "data.rl_holdout_order": "rl.rows.holdout_order",
    }
    """Old spellings that still load (see :mod:`tawin.overrides`); each section lists its own."""

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
    """What `tawin run` does, run in this order whatever the list's: sft, rl, popularity, sasrec,
    gru4rec; `eval` evaluates every trained LLM on eval.split. The classical baselines `popularity`,
    `sasrec` and `gru4rec` learn from the same train rows as the LLM and are scored on the same
    eval rows and Ks, each as a row of the results table (folders eval/<name>/). SASRec and GRU4Rec
    train with the SequentialBaselineConfig defaults and the run's `seed`, on the CPU (a few
    CPU-minutes each on Industrial); tune them with `tawin baseline`."""
    report_to: tuple[TrackerName, ...] = ()
    """Experiment trackers that receive every scalar of log.jsonl and every evaluation's metrics:
    `tensorboard` (event files in <run folder>/tracking/tensorboard/), `wandb`, `mlflow`; empty or
    [none] = log.jsonl only. One tracker run per trained model, named by its folder, with this
    config as hyper-parameters (README "Tracking" lists the keys). Needs `pip install 'tawin[tracking]'`."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    small_data: SmallDataConfig = field(default_factory=SmallDataConfig)
    """Other settings for a small train split, applied when a command loads the config (docs:
    Training, "Small data")."""

    @property
    def resolved_eval(self) -> EvalConfig:
        """The eval section with what it leaves to other sections filled in: OPAUC's G = rl.group_size."""
        return self.eval.resolved(self.rl.group_size)

    def check(self) -> list[str]:
        problems = check_report_to(self.report_to)
        if self.threads < 0:
            problems.append(f"threads={self.threads} must be ≥ 0 (0 = torch's default)")
        for name, seed in (("seed", self.seed), ("eval.sample_seed", self.eval.sample_seed)):
            if not 0 <= seed < 2**32:
                problems.append(f"{name}={seed} must lie in [0, 2^32 − 1] (the range numpy's seeding accepts)")
        if not self.stages:
            problems.append("stages is empty; list what `tawin run` should do, e.g. [sft, eval, rl, popularity]")
        elif len(set(self.stages)) != len(self.stages):
            problems.append(f"stages={list(self.stages)} repeats a stage; list each once")
        if self.sft.history_loss_weight > 0 and self.model.item_repr != "sid":
            problems.append(
                f"sft.history_loss_weight={self.sft.history_loss_weight} needs model.item_repr: sid (a title's tokens "
                "cannot be told apart from prompt text); set it to 0 for titles"
            )
        return problems

    def check_dataset(self, dataset: Dataset) -> list[str]:
        """The rules that need the dataset (the diagnostics against the catalogue size)."""
        return self.resolved_eval.check_catalogue(len(dataset.items))

    def search_problems(self, n_items: int, stages: tuple[Stage, ...]) -> list[str]:
        """A beam search or a group of `stages` that would need more distinct items than the N =
        `n_items` of the catalogue (checked once the folder is known to be this run's, so that a
        refusal about the folder itself comes first)."""
        searches = {
            "sft": [("sft.eval_beams", self.sft.eval_beams)],
            "eval": [("eval.num_beams", self.resolved_eval.num_beams)],
            "rl": [("rl.group_size", self.rl.group_size)],
        }
        return [
            f"{name}={value} exceeds the catalogue's {n_items} items "
            f"(a search returns distinct items); set {name} ≤ {n_items}"
            for stage in stages
            for name, value in searches.get(stage, [])
            if value > n_items
        ]


def dataset_path(name_or_path: str) -> Path:
    """The folder of a shipped dataset name or a dataset folder path; ConfigError otherwise."""
    if not name_or_path.strip():  # Path("") is the working directory, never meant as a dataset
        raise ConfigError(
            "data.dataset is empty; pass a shipped dataset name such as 'industrial' or a dataset folder."
        )
    shipped = SHIPPED / name_or_path
    if (shipped / "items.parquet").exists():
        return shipped
    path = Path(name_or_path)
    if path.is_dir():
        return path
    names = sorted(p.name for p in SHIPPED.iterdir() if p.is_dir())
    what = "is a file, not a dataset folder" if path.exists() else "is neither a shipped dataset"
    raise ConfigError(
        f"data.dataset={name_or_path!r} {what} ({', '.join(names)}) nor an existing folder; "
        "pass one of those names or the path of a folder made by `tawin data import`/`tawin data prepare`."
    )
