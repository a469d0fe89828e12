"""Stage 1 — the paper's data protocol: a raw review log → a canonical dataset (SIDs still empty).

This is the processing of the D3 → ReRe → MiniOneRec lineage that produced the TAWin paper's
splits, applied to a log read by :mod:`tawin.data.raw`. In order (config fields in brackets):

1. **Title rule** [max_title_words]: drop every interaction with an item that has no title (no
   metadata line, or an empty title) or a title of more than 20 whitespace-separated words.
2. **Time window** [window_start, window_end]: keep interactions with ``start ≤ t < end``, where
   ``start`` is 00:00:00 UTC on the first day of ``window_start`` and ``end`` is 00:00:00 UTC on the
   first day of the month *after* ``window_end`` (so ``"2018-11"`` keeps all of November 2018).
3. **k-core** [k_core]: remove users and items with fewer than k interactions (repeats count),
   recount, and repeat until nothing is removed (:func:`k_core_filter`).
4. **Window extension** [min_items]: while fewer than ``min_items`` items survive 1–3, move the
   window start back one year and redo 2–3, until the window starts at or before the earliest
   interaction. Every attempt is recorded in the summary.
5. **Ids**: users and items are numbered 0..U−1 and 0..N−1 in order of first appearance among the
   kept interactions, read in file order; the raw item id is kept as ``asin`` and the raw user ids
   are written to ``users.parquet`` (user, raw_id) next to the dataset.
6. **Samples**: each user's interactions are sorted by time (stable: ties keep file order); every
   interaction after the first is a sample whose history is the previous ≤ ``max_history`` items.
   All samples are sorted by target time; ties go by user id, then by position in the sequence
   (the order in which D3 generates them, so its stable sort gives the same order).
7. **Split** [split, split_ratio]: ``temporal`` cuts that order 8:1:1 with
   ``n_train = ⌊8n/10⌋``, ``n_valid = ⌊9n/10⌋ − n_train`` (D3's ``int(0.8n)``, ``int(0.9n)``;
   Industrial: 36,259 / 4,532 / 4,533 of 45,324); ``leave_one_out`` sends each user's last sample
   to test, the second to last to valid and the rest to train, each split in the same order.

Deviations from D3's ``process.py``: the window end is exclusive at the month after ``window_end``
in UTC (D3: ``t ≤`` the first second of ``window_end`` in local time); item ids follow first
appearance (D3 shuffles them with ``random.seed(42)``); the extension stops at the earliest
interaction (D3: at 1996); titles are HTML-unescaped with whitespace collapsed and their words
counted with ``str.split()`` (D3 replaces only ``&quot;``/``&amp;``, strips quotes, counts
``split(" ")`` and also drops one-character titles).
None of these changes the Industrial split (``tests/test_data_prepare_industrial.py``).

The written folder has empty SIDs, so :func:`tawin.data.io.load_dataset` refuses it until
``tawin items build-sids <folder>`` has filled them.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tawin.config import load_config, to_dict
from tawin.data.dataset import MAX_HISTORY, SPLITS, Dataset, Interactions, ItemTable
from tawin.data.io import save_dataset
from tawin.data.raw import SOURCE_NAMES, CsvFormat, RawLog, Source, read_source
from tawin.errors import ConfigError, DataError

USERS_FILE = "users.parquet"
ATTRIBUTION = {
    "amazon2018": "Amazon Review Data (2018): Jianmo Ni, Jiacheng Li, Julian McAuley, EMNLP 2019. Research use; cite the paper.",
    "amazon2023": "Amazon Reviews 2023: Yupeng Hou et al., 'Bridging Language and Items for Retrieval and Recommendation', 2024. Research use; cite the paper.",
    "csv": "user-supplied interaction log",
}
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class PrepareConfig:
    """The protocol of ``tawin data prepare``; the defaults are the paper's (D3's)."""

    max_title_words: int | None = 20
    """Drop items whose title has more than this many words (``str.split()``) and items without a
    title. None turns the rule off: untitled items are kept with an empty title."""
    window_start: str | None = "2017-10"
    """First month of the time window, ``YYYY-MM`` (UTC, inclusive). None: no lower bound."""
    window_end: str | None = "2018-11"
    """Last month of the window, ``YYYY-MM``, inclusive: interactions before 00:00 UTC on the first
    day of the next month are kept. None: no upper bound."""
    min_items: int = 10_000
    """While fewer items survive, move ``window_start`` back one year (down to the earliest
    interaction) and redo window + k-core. 0 disables. D3's value; Industrial ends with 3,686
    items, so its window reaches back to its first review."""
    k_core: int = 5
    """k of the iterative k-core on users and items (interactions, repeats included). 1 keeps all."""
    max_history: int = MAX_HISTORY
    """Items of a sample's history: the previous ≤ max_history interactions of the user (≤ 10,
    the width of the canonical format)."""
    split: Literal["temporal", "leave_one_out"] = "temporal"
    """``temporal``: the global temporal split by target time (the paper's). ``leave_one_out``:
    per user, last sample → test, second to last → valid, the rest → train (TIGER, LC-Rec)."""
    split_ratio: tuple[int, int, int] = (8, 1, 1)
    """train:valid:test weights (a, b, c) of the temporal split, s = a+b+c:
    ``n_train = ⌊n·a/s⌋``, ``n_valid = ⌊n·(a+b)/s⌋ − n_train``, ``n_test`` the rest."""
    skip_bad_lines: bool = False
    """Skip malformed raw lines and count them in the summary instead of stopping at the first."""
    csv_user_column: str = "user"
    """csv source: column of the user id."""
    csv_item_column: str = "item"
    """csv source: column of the item id, in the log and in the item table."""
    csv_time_column: str = "timestamp"
    """csv source: column of the unix time (see csv_time_unit)."""
    csv_rating_column: str = "rating"
    """csv source: optional rating column (ignored when absent from the header)."""
    csv_delimiter: str = ","
    """csv source: field delimiter of the log and the item table (one character; "\\t" for TSV)."""
    csv_time_unit: Literal["s", "ms"] = "s"
    """csv source: unit of the time column, seconds or milliseconds."""

    def check(self) -> list[str]:
        """Every problem of the config (empty when it is usable)."""
        problems = []

        def integer(name: str, low: int, high: int | None, fix: str) -> None:
            value = getattr(self, name)
            if value is None and name == "max_title_words":
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
                bound = f"an integer in [{low}, {high}]" if high is not None else f"an integer ≥ {low}"
                problems.append(f"{name}={value!r} must be {bound} ({fix})")

        integer("max_title_words", 1, None, "the paper uses 20; None turns the title rule off")
        integer("min_items", 0, None, "the paper uses 10000; 0 never moves the window start")
        integer("k_core", 1, None, "the paper uses 5; 1 keeps every user and item")
        integer("max_history", 1, MAX_HISTORY, f"the canonical format holds at most {MAX_HISTORY} history items")
        months = {name: getattr(self, name) for name in ("window_start", "window_end")}
        for name, value in months.items():
            if value is not None and not (isinstance(value, str) and _MONTH.match(value)):
                problems.append(f"{name}={value!r} must be a month 'YYYY-MM' (e.g. '2017-10') or None (no bound)")
        if all(isinstance(v, str) and _MONTH.match(v) for v in months.values()) and self.window_start > self.window_end:
            problems.append(f"window_start={self.window_start!r} is after window_end={self.window_end!r}; swap them")
        if self.split not in ("temporal", "leave_one_out"):
            problems.append(f"split={self.split!r} must be 'temporal' (the paper's global temporal split) or 'leave_one_out'")
        ratio = self.split_ratio
        if not (isinstance(ratio, tuple) and len(ratio) == 3 and all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in ratio) and ratio[0] > 0):
            problems.append(f"split_ratio={ratio!r} must be three integers ≥ 0 (train, valid, test) with train > 0, e.g. (8, 1, 1)")
        if not isinstance(self.skip_bad_lines, bool):
            problems.append(f"skip_bad_lines={self.skip_bad_lines!r} must be true or false")
        columns = [self.csv_user_column, self.csv_item_column, self.csv_time_column]
        if not all(isinstance(c, str) and c.strip() for c in columns + [self.csv_rating_column]):
            problems.append(f"csv column names {columns + [self.csv_rating_column]} must be non-empty strings; name the header's columns")
        elif len(set(columns)) < 3:
            problems.append(f"csv_user_column, csv_item_column, csv_time_column = {columns} must be three different columns of the header")
        if not (isinstance(self.csv_delimiter, str) and len(self.csv_delimiter) == 1):
            problems.append(f"csv_delimiter={self.csv_delimiter!r} must be one character (',' or '\\t')")
        if self.csv_time_unit not in ("s", "ms"):
            problems.append(f"csv_time_unit={self.csv_time_unit!r} must be 's' or 'ms'")
        return problems

    def csv_format(self) -> CsvFormat:
        return CsvFormat(self.csv_user_column, self.csv_item_column, self.csv_time_column, self.csv_rating_column, self.csv_delimiter, self.csv_time_unit)


# ---------------------------------------------------------------------------- pure steps


def k_core_filter(user_E: np.ndarray, item_E: np.ndarray, keep_E: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Iterative k-core on the kept interactions.

    Each round counts the kept interactions of every user and item and drops all interactions of
    users and items with fewer than ``k``; it stops when a round drops nothing. The result is the
    largest sub-log in which every user and item has ≥ k interactions (order of removal does not
    matter). Returns (keep mask bool [E], number of rounds that dropped something).
    """
    keep = keep_E.copy()
    n_users = int(user_E.max()) + 1 if user_E.size else 0
    n_items = int(item_E.max()) + 1 if item_E.size else 0
    rounds = 0
    while True:
        per_user = np.bincount(user_E[keep], minlength=n_users)
        per_item = np.bincount(item_E[keep], minlength=n_items)
        drop = keep & ((per_user[user_E] < k) | (per_item[item_E] < k))
        if not drop.any():
            return keep, rounds
        keep &= ~drop
        rounds += 1


def split_sizes(n: int, ratio: tuple[int, int, int] = (8, 1, 1)) -> tuple[int, int, int]:
    """(n_train, n_valid, n_test) = (⌊n·a/s⌋, ⌊n·(a+b)/s⌋ − n_train, rest), s = a+b+c."""
    a, b, c = ratio
    total = a + b + c
    n_train = n * a // total
    n_valid = n * (a + b) // total - n_train
    return n_train, n_valid, n - n_train - n_valid


def number_by_first_appearance(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids 0.. in order of first appearance: (id of each entry [E], code of each id [U])."""
    unique, first = np.unique(codes, return_index=True)
    code_of_id = unique[np.argsort(first, kind="stable")]
    id_of_code = np.zeros(int(codes.max()) + 1 if codes.size else 0, dtype=np.int64)
    id_of_code[code_of_id] = np.arange(code_of_id.size)
    return id_of_code[codes], code_of_id


@dataclass(frozen=True)
class Samples:
    """S samples in global order: target time, then user id, then position in the sequence."""

    user_S: np.ndarray  # int64 [S]
    target_S: np.ndarray  # int64 [S] item id
    time_S: np.ndarray  # int64 [S] unix seconds of the target
    position_S: np.ndarray  # int64 [S] index of the target in its user's sequence (≥ 1)
    last_S: np.ndarray  # int64 [S] index of the user's last interaction
    history_S: list[list[int]]  # [S] the previous ≤ max_history items, oldest first


def build_samples(user_E: np.ndarray, item_E: np.ndarray, time_E: np.ndarray, max_history: int) -> Samples:
    """Sequence each user's interactions (given in file order) by time and cut them into samples."""
    n = user_E.size
    by_user = np.lexsort((np.arange(n), time_E, user_E))  # per user by time; ties keep file order
    user, item, time = user_E[by_user], item_E[by_user], time_E[by_user]
    first = np.searchsorted(user, user, side="left")
    position = np.arange(n) - first
    last = np.searchsorted(user, user, side="right") - 1 - first
    targets = np.flatnonzero(position >= 1)
    targets = targets[np.lexsort((position[targets], user[targets], time[targets]))]
    starts = targets - np.minimum(position[targets], max_history)
    histories = [item[s:t].tolist() for s, t in zip(starts, targets)]
    return Samples(user[targets], item[targets], time[targets], position[targets], last[targets], histories)


def split_samples(samples: Samples, method: str, ratio: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Indices into `samples` of each split, each in the global order."""
    n = samples.user_S.size
    if method == "temporal":
        n_train, n_valid, _ = split_sizes(n, ratio)
        order = np.arange(n)
        return {"train": order[:n_train], "valid": order[n_train : n_train + n_valid], "test": order[n_train + n_valid :]}
    from_end = samples.last_S - samples.position_S
    return {"train": np.flatnonzero(from_end >= 2), "valid": np.flatnonzero(from_end == 1), "test": np.flatnonzero(from_end == 0)}


# ---------------------------------------------------------------------------- the protocol


def _month_start(year: int, month: int) -> int:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return int(datetime(year, month, 1, tzinfo=timezone.utc).timestamp())


def _month(text: str) -> tuple[int, int]:
    year, month = text.split("-")
    return int(year), int(month)


def _date(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _distinct(codes: np.ndarray, mask: np.ndarray) -> int:
    return int(np.unique(codes[mask]).size)


@dataclass(frozen=True)
class Prepared:
    """The outcome of :func:`prepare_log`."""

    dataset: Dataset  # SIDs empty
    summary: dict  # see format_summary
    user_names: list[str]  # [U] raw id of user u


def _choose_window(log: RawLog, titled_E: np.ndarray, config: PrepareConfig) -> tuple[np.ndarray, np.ndarray, int, dict]:
    """Steps 2–4: returns (in-window mask [E], kept mask [E], k-core rounds, window summary)."""
    time = log.time_E
    end = None
    if config.window_end:
        end_year, end_month = _month(config.window_end)
        end = _month_start(end_year, end_month + 1)  # first second after the window_end month
    before_end = titled_E & (time < end) if end is not None else titled_E
    earliest = int(time[before_end].min()) if before_end.any() else None
    start = _month(config.window_start) if config.window_start else None
    attempts = []
    while True:
        start_ts = _month_start(*start) if start else None
        windowed = before_end & (time >= start_ts) if start_ts is not None else before_end
        kept, rounds = k_core_filter(log.user_E, log.item_E, windowed, config.k_core)
        n_items = _distinct(log.item_E, kept)
        attempts.append({"window_start": f"{start[0]:04d}-{start[1]:02d}" if start else None, "items": n_items})
        if n_items >= config.min_items or start_ts is None or earliest is None or start_ts <= earliest:
            break
        start = (start[0] - 1, start[1])
    window = {
        "start": attempts[-1]["window_start"],
        "end": config.window_end,
        "start_unix": start_ts,
        "end_unix_exclusive": end,
        "moved_back_years": len(attempts) - 1,
        "attempts": attempts,
    }
    return windowed, kept, rounds, window


def _filter(log: RawLog, config: PrepareConfig) -> tuple[np.ndarray, list[dict], dict]:
    """Steps 1–4: returns (kept mask bool [E], what each rule dropped, window summary)."""
    everything = np.ones(log.user_E.size, dtype=bool)
    missing_I = np.array([t is None for t in log.title_I], dtype=bool)
    too_long_I = np.array([t is not None and len(t.split()) > (config.max_title_words or 0) for t in log.title_I], dtype=bool)
    if config.max_title_words is None:
        missing_I[:] = too_long_I[:] = False
    titled = ~(missing_I | too_long_I)[log.item_E] if log.item_E.size else everything
    windowed, kept, rounds, window = _choose_window(log, titled, config)

    def rule(name: str, before: np.ndarray, after: np.ndarray, **extra) -> dict:
        return dict(
            rule=name,
            interactions_dropped=int(before.sum() - after.sum()),
            users_dropped=_distinct(log.user_E, before) - _distinct(log.user_E, after),
            items_dropped=_distinct(log.item_E, before) - _distinct(log.item_E, after),
            **extra,
        )

    rules = [
        rule("title", everything, titled, max_title_words=config.max_title_words, items_without_title=int(missing_I.sum()),
             items_title_too_long=int(too_long_I.sum()), items_without_metadata=int((~log.has_metadata_I).sum())),
        rule("window", titled, windowed),
        rule("k_core", windowed, kept, k=config.k_core, rounds=rounds),
    ]
    return kept, rules, window


def _make_splits(samples: Samples, config: PrepareConfig) -> tuple[dict[str, Interactions], dict[str, dict]]:
    """Step 7: the split tables and their summary (size, users, mean history, target time span)."""
    splits, summary = {}, {}
    for split, rows in split_samples(samples, config.split, config.split_ratio).items():
        histories = [samples.history_S[i] for i in rows]
        times = samples.time_S[rows]
        splits[split] = Interactions.from_lists(samples.user_S[rows].tolist(), histories, samples.target_S[rows].tolist(), times.tolist())
        summary[split] = {
            "samples": int(rows.size),
            "users": int(np.unique(samples.user_S[rows]).size),
            "mean_history": round(float(np.mean([len(h) for h in histories])), 3) if histories else 0.0,
            "first_target": _date(times.min()) if rows.size else None,
            "last_target": _date(times.max()) if rows.size else None,
        }
    return splits, summary


def prepare_log(log: RawLog, config: PrepareConfig, name: str, source: str = "", raw_files: dict | None = None) -> Prepared:
    """Apply the protocol (module doc, steps 1–7) to a log; nothing is written."""
    problems = config.check()
    if problems:
        raise ConfigError("invalid PrepareConfig: " + "; ".join(problems) + ".")
    kept, rules, window = _filter(log, config)
    if not kept.any():
        dropped = ", ".join(f"{r['rule']} dropped {r['interactions_dropped']:,}" for r in rules)
        raise DataError(
            f"{name}: no interaction survives the protocol ({log.user_E.size:,} read; {dropped}). Check that the metadata "
            "file matches the reviews (item ids), widen window_start/window_end, lower k_core, or set max_title_words=None."
        )
    index = np.flatnonzero(kept)  # file order
    user_E, user_codes = number_by_first_appearance(log.user_E[index])
    item_E, item_codes = number_by_first_appearance(log.item_E[index])
    splits, split_summary = _make_splits(build_samples(user_E, item_E, log.time_E[index], config.max_history), config)
    items = ItemTable(
        item_id=np.arange(item_codes.size, dtype=np.int64),
        title=[log.title_I[c] or "" for c in item_codes],
        description=[log.description_I[c] for c in item_codes],
        asin=[log.item_names[c] for c in item_codes],
        sid=[()] * item_codes.size,
    )
    files = [{"path": s.path, "lines": s.lines, "bad_lines_skipped": s.skipped, "first_problem": s.first_problem} for s in log.stats]
    summary = {
        "name": name,
        "source": source,
        "raw_files": raw_files or {},
        "read": {"interactions": int(log.user_E.size), "users": len(log.user_names), "items": len(log.item_names),
                 "bad_lines_skipped": sum(s.skipped for s in log.stats), "files": files},
        "rules": rules,
        "window": window,
        "kept": {"interactions": int(index.size), "users": int(user_codes.size), "items": int(item_codes.size)},
        "split": config.split,
        "split_ratio": list(config.split_ratio),
        "splits": split_summary,
    }
    meta = {
        "description": f"{name}: prepared from {source or 'a raw log'} by `tawin data prepare` (TAWin/D3 protocol); semantic IDs not built yet",
        "attribution": ATTRIBUTION.get(source, ""),
        "sid_source": None,
        "users_file": USERS_FILE,
        "next_step": "tawin items build-sids <this folder>",
        "prepare": {"source": source, "raw_files": raw_files or {}, "config": to_dict(config), "summary": summary},
    }
    return Prepared(Dataset(name=name, items=items, splits=splits, meta=meta), summary, [log.user_names[c] for c in user_codes])


def default_name(path: str | Path) -> str:
    """``Industrial_and_Scientific_5.json.gz`` → ``Industrial_and_Scientific``."""
    name = Path(path).name
    for suffix in (".gz", ".json", ".jsonl", ".csv", ".tsv", ".txt"):
        name = name.removesuffix(suffix)
    return name.removesuffix("_5") or "dataset"


def prepare_dataset(
    source: Source,
    interactions: str | Path,
    items: str | Path | None = None,
    config: PrepareConfig = PrepareConfig(),
    *,
    out: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
) -> tuple[Dataset, dict]:
    """Read a raw source, apply the protocol and (with `out`) write the dataset folder.

    Args:
        source: "amazon2018", "amazon2023" or "csv".
        interactions: the review file / interaction log (gzip or plain).
        items: the metadata file / item table; needed unless ``config.max_title_words`` is None.
        out: folder to write (via :func:`save_dataset`, plus ``users.parquet``); None: write nothing.
    Returns:
        (dataset with empty SIDs, summary dict; see :func:`format_summary`). The next step is
        ``tawin items build-sids <out>``; ``load_dataset`` refuses the folder until then.
    """
    problems = config.check()
    if source not in SOURCE_NAMES:
        problems.append(f"source={source!r} must be one of {list(SOURCE_NAMES)}")
    for label, path in (("interactions", interactions), ("items", items)):
        if path is not None and not Path(path).is_file():
            problems.append(f"{label} file {path} not found; pass the path of an existing file")
    if items is None and config.max_title_words is not None:
        problems.append(
            f"no item metadata given while max_title_words={config.max_title_words}: every item would lack a title and be "
            "dropped; pass the metadata file / item table (--items), or set max_title_words=None to keep untitled items"
        )
    if problems:
        raise ConfigError("cannot prepare the dataset: " + "; ".join(problems) + ".")
    log = read_source(source, interactions, items, csv_format=config.csv_format(), skip_bad_lines=config.skip_bad_lines, progress=progress)
    raw_files = {"interactions": Path(interactions).name, "items": Path(items).name if items is not None else None}
    prepared = prepare_log(log, config, name or default_name(interactions), source, raw_files)
    if out is not None:
        folder = save_dataset(prepared.dataset, out)
        users = pa.table({"user": pa.array(np.arange(len(prepared.user_names)), pa.int64()), "raw_id": pa.array(prepared.user_names, pa.string())})
        pq.write_table(users, folder / USERS_FILE, compression="zstd")
    return prepared.dataset, prepared.summary


# ---------------------------------------------------------------------------- reporting and CLI


def format_summary(summary: dict) -> str:
    """A printable table of a :func:`prepare_dataset` summary."""
    read, kept, window = summary["read"], summary["kept"], summary["window"]
    files = ", ".join(f for f in summary["raw_files"].values() if f)
    lines = [
        f"{summary['name']}: prepared from {summary['source'] or 'raw log'}" + (f" ({files})" if files else ""),
        f"{'read':<34}{read['interactions']:>14,} interactions {read['users']:>10,} users {read['items']:>9,} items"
        f"   {read['bad_lines_skipped']:,} bad line(s) skipped",
    ]
    for r in summary["rules"]:
        if r["rule"] == "title":
            label = f"title (none {r['items_without_title']:,}, >{r['max_title_words']} words {r['items_title_too_long']:,})"
        elif r["rule"] == "window":
            label = f"window [{window['start'] or '-∞'}, {window['end'] or '∞'}]"
        else:
            label = f"{r['k']}-core ({r['rounds']} rounds)"
        lines.append(f"  {label:<32}{-r['interactions_dropped']:>14,} interactions {-r['users_dropped']:>10,} users {-r['items_dropped']:>9,} items")
    lines.append(f"{'kept':<34}{kept['interactions']:>14,} interactions {kept['users']:>10,} users {kept['items']:>9,} items")
    span = f"{window['start'] or 'earliest'} .. {window['end'] or 'latest'} (inclusive months, UTC)"
    if window["moved_back_years"]:
        first = window["attempts"][0]
        span += f"; start moved back {window['moved_back_years']} year(s) from {first['window_start']} (items per attempt: " + ", ".join(
            f"{a['window_start']}→{a['items']:,}" for a in window["attempts"]) + ")"
    lines.append(f"{'window used':<34}{span}")
    ratio = ":".join(map(str, summary["split_ratio"])) if summary["split"] == "temporal" else "per user"
    lines.append(f"split {summary['split']} {ratio:<16}{'samples':>11} {'users':>10} {'mean history':>13}   first target .. last target (UTC)")
    for split in SPLITS:
        s = summary["splits"][split]
        lines.append(f"  {split:<32}{s['samples']:>11,} {s['users']:>10,} {s['mean_history']:>13.2f}   {s['first_target'] or '-'} .. {s['last_target'] or '-'}")
    lines.append("next step: tawin items build-sids <folder>  (semantic IDs are empty until then)")
    return "\n".join(lines)


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tawin data prepare`` (see :func:`prepare_main`)."""
    parser.add_argument("source", choices=SOURCE_NAMES, help="raw format: amazon2018, amazon2023 or csv")
    parser.add_argument("interactions", help="review file / interaction log (.json.gz, .jsonl[.gz], .csv[.gz])")
    parser.add_argument("--items", help="metadata file / item table (needed unless max_title_words=null)")
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--name", help="dataset name (default: from the interaction file name)")
    parser.add_argument("--config", help="YAML file of PrepareConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a PrepareConfig field, e.g. k_core=10")
    parser.add_argument("--skip-bad-lines", action="store_true", help="skip and count malformed lines (= --set skip_bad_lines=true)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def prepare_main(args: argparse.Namespace) -> int:
    """``tawin data prepare``: defaults < --config YAML < --set; prints the summary table."""
    overrides = list(args.set) + (["skip_bad_lines=true"] if args.skip_bad_lines else [])
    config = load_config(PrepareConfig, args.config, overrides)
    _, summary = prepare_dataset(args.source, args.interactions, args.items, config, out=args.out, name=args.name, progress=not args.no_progress)
    print(format_summary(summary).replace("<folder>", str(args.out)))
    return 0
