"""Stage 1 — the settings of the paper's data protocol (`tawin data prepare`; see
:mod:`tawin.data.protocol.prepare`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from tawin.data.dataset import MAX_HISTORY
from tawin.data.formats.raw_reader import RecordFields

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
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < low
                or (high is not None and value > high)
            ):
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
            problems.append(
                f"split={self.split!r} must be 'temporal' (the paper's global temporal split) or 'leave_one_out'"
            )
        ratio = self.split_ratio
        if not (
            isinstance(ratio, tuple)
            and len(ratio) == 3
            and all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in ratio)
            and ratio[0] > 0
        ):
            problems.append(
                f"split_ratio={ratio!r} must be three integers ≥ 0 (train, valid, test) with train > 0, e.g. (8, 1, 1)"
            )
        if not isinstance(self.skip_bad_lines, bool):
            problems.append(f"skip_bad_lines={self.skip_bad_lines!r} must be true or false")
        columns = [self.csv_user_column, self.csv_item_column, self.csv_time_column]
        if not all(isinstance(c, str) and c.strip() for c in columns + [self.csv_rating_column]):
            problems.append(
                f"csv column names {columns + [self.csv_rating_column]} "
                "must be non-empty strings; name the header's columns"
            )
        elif len(set(columns)) < 3:
            problems.append(
                "csv_user_column, csv_item_column, csv_time_column = "
                f"{columns} must be three different columns of the header"
            )
        if not (isinstance(self.csv_delimiter, str) and len(self.csv_delimiter) == 1):
            problems.append(f"csv_delimiter={self.csv_delimiter!r} must be one character (',' or '\\t')")
        if self.csv_time_unit not in ("s", "ms"):
            problems.append(f"csv_time_unit={self.csv_time_unit!r} must be 's' or 'ms'")
        return problems

    def csv_fields(self) -> RecordFields:
        """Where the csv source finds each field; the item table shares the log's item column."""
        per_second = 1000 if self.csv_time_unit == "ms" else 1
        return RecordFields(
            self.csv_user_column,
            self.csv_item_column,
            self.csv_time_column,
            self.csv_rating_column,
            per_second,
            self.csv_item_column,
            self.csv_delimiter,
        )
