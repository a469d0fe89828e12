"""Orchestration — the small-data variant of the recipe, chosen from the size of the train split.

A config's ``small_data`` section (:class:`~tawin.run.config.SmallDataConfig`) names settings in
the syntax of ``--set`` that replace the main recipe's when the train split holds at most
``small_data.max_train_rows`` rows (after ``data.latest_train_rows``): they win over the YAML file
(its main recipe is what they replace) but not over ``--set``, whose values the user asked for on
purpose. Commands apply them where they load a config
(:func:`tawin.run.commands.load_pipeline_config`, :func:`tawin.experiments.parse.parse_experiment`),
before any folder is written, so that every run folder's config.yaml holds the values that ran; the
same command on the same data computes the same config again, so a folder resumes. The
``small_data`` section itself never blocks a resume (:data:`tawin.run.config_changes.RESULT_NEUTRAL`):
what it changes is in the other sections.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import pyarrow.parquet as pq

from tawin.config import build_config, to_dict, validate
from tawin.errors import ConfigError, DataError
from tawin.overrides import apply_overrides, renamed_path
from tawin.run.config import PipelineConfig, SmallDataConfig, dataset_path


def sized_for_train_rows(
    config: PipelineConfig, n_train_rows: int, given: Sequence[str] = ()
) -> tuple[PipelineConfig, tuple[str, ...]]:
    """`config` with ``small_data.overrides`` applied in order when 0 < `n_train_rows` ≤
    ``small_data.max_train_rows``, and the entries applied; else `config` unchanged and ().

    `given` are the ``--set`` overrides of the command line (shorthand flags included), already in
    `config`: the user asked for those values on purpose, so they win over the entries, which win
    over the YAML file. An entry for a setting they give (or inside a section they give) is skipped
    (:func:`kept_from_command_line` names them); one they give a setting inside of (an entry that
    sets a whole section) applies, and they are applied again after it.

    The result is validated as a loaded config is: an entry that names no setting, gives a value of
    the wrong type or makes a rule fail that `config` passes is one ConfigError naming
    ``small_data.overrides`` and the entry.
    """
    small = config.small_data
    if not applies(small, n_train_rows):
        return config, ()
    entries = tuple(entry for entry in small.overrides if not _covered(entry, given))
    problems = small.check()
    for entry in () if problems else entries:  # each entry on its own, so a bad value names its entry
        found: list[str] = []
        data = to_dict(config)
        apply_overrides(PipelineConfig, data, [entry], found)
        if not found:
            build_config(PipelineConfig, data, "", found)
        problems += [f"small_data.overrides entry {entry!r}: {problem}" for problem in found]
    sized = config
    if entries and not problems:
        data = to_dict(config)
        inside = [text for text in given if any(_covered(text, [entry]) for entry in entries)]
        apply_overrides(PipelineConfig, data, [*entries, *inside], problems)
        sized = build_config(PipelineConfig, data, "", problems)
    if sized is not None and not problems:
        before = set(validate(config))
        problems += [
            f"small_data.overrides [{', '.join(_entries_named(entries, rule))}]: {rule}"
            for rule in validate(sized)
            if rule not in before
        ]
    if problems:
        raise ConfigError(
            f"invalid small-data variant ({n_train_rows:,} train rows ≤ small_data.max_train_rows="
            f"{small.max_train_rows:,}): " + "; ".join(p.rstrip().rstrip(".") for p in problems) + ". Fix these "
            "entries of small_data.overrides, or set small_data.max_train_rows: 0 to keep the main recipe."
        )
    return sized, entries


def applies(small: SmallDataConfig, n_train_rows: int) -> bool:
    """Whether a train split of `n_train_rows` rows gets the small-data variant `small`."""
    return 0 < n_train_rows <= small.max_train_rows and bool(small.overrides)


def kept_from_command_line(config: PipelineConfig, given: Sequence[str]) -> tuple[str, ...]:
    """The settings of `given` (``--set`` overrides) that win over an entry of
    ``config.small_data.overrides`` in :func:`sized_for_train_rows`: each sets the entry's setting,
    a section that holds it, or a setting inside the section the entry sets; as the command line
    spelt them."""
    entries = config.small_data.overrides
    kept = (
        text.split("=", 1)[0].strip()
        for text in given
        if any(_covered(entry, [text]) or _covered(text, [entry]) for entry in entries)
    )
    return tuple(dict.fromkeys(kept))


def _covered(text: str, by: Sequence[str]) -> bool:
    """Whether an override in `by` sets the setting `text` names, or a section that holds it (both
    in their new spelling, so an old spelling matches the new one; the values are not read)."""
    keys = _setting(text)
    return any(keys[: len(outer)] == outer for outer in map(_setting, by))


def _setting(text: str) -> tuple[str, ...]:
    """The dotted path that the override `text` sets, in its new spelling (:mod:`tawin.overrides`)."""
    return tuple(renamed_path(PipelineConfig, text.split("=", 1)[0].strip().split(".")))


def _entries_named(entries: tuple[str, ...], rule: str) -> tuple[str, ...]:
    """The entries whose setting the failed `rule` names (every entry when it names none of them)."""
    named = tuple(entry for entry in entries if entry.split("=", 1)[0].strip() in rule)
    return named or entries


def train_row_count(config: PipelineConfig) -> int:
    """Rows of the dataset's train split after ``data.latest_train_rows``, read from the parquet
    metadata of train.parquet (the dataset is not loaded; it is validated when a session opens it)."""
    path = dataset_path(config.data.dataset) / "train.parquet"
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as error:  # pyarrow raises several types for missing or corrupt files
        raise DataError(
            f"{path}: the train split cannot be read ({error}), so small_data.max_train_rows cannot be "
            "compared with its size. Re-create the dataset with `tawin data import` or `tawin data prepare`."
        ) from None
    latest = config.data.latest_train_rows
    return min(latest, rows) if latest > 0 else rows


def with_small_data(config: PipelineConfig, given: Sequence[str] = ()) -> PipelineConfig:
    """`config` sized for its dataset's train split (:func:`sized_for_train_rows`; `given` are the
    ``--set`` overrides already in it, which win over the entries); says so in one line on stderr
    when the variant applies. The dataset is read only when ``small_data`` is on."""
    if config.small_data.max_train_rows <= 0 or not config.small_data.overrides:
        return config
    n_train_rows = train_row_count(config)
    sized, applied = sized_for_train_rows(config, n_train_rows, given)
    kept = kept_from_command_line(config, given) if applies(config.small_data, n_train_rows) else ()
    if (applied or kept) and int(os.environ.get("RANK", "0")) == 0:
        print(small_data_note(n_train_rows, config.small_data.max_train_rows, applied, kept), file=sys.stderr)
    return sized


def small_data_note(
    n_train_rows: int, max_train_rows: int, applied: tuple[str, ...], kept: tuple[str, ...] = ()
) -> str:
    """The line that says the small-data variant applies (the entries `applied`, and the settings
    `kept` from ``--set`` over an entry), and how to keep the main recipe."""
    so = ", ".join(applied) if applied else "no entry of small_data.overrides applies"
    kept_note = f"{', '.join(kept)} kept from --set; " if kept else ""
    return (
        f"tawin: small data: {n_train_rows:,} train rows ≤ small_data.max_train_rows={max_train_rows:,}, "
        f"so {so} ({kept_note}set small_data.max_train_rows: 0 to keep the main recipe)"
    )
