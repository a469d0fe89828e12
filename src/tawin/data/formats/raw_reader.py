"""Stage 1 — the one line reader behind every raw source (JSON lines or headed CSV).

A source is a :class:`RecordFields`: where its records keep the user, item, time and rating, and
whether its lines are JSON objects or CSV rows. :func:`read_interactions` and :func:`read_items`
turn any such file into :class:`RawInteraction` and :class:`RawItem` records with the same
validation, so a fix to one check reaches every source; :mod:`tawin.data.formats.raw` names the sources.

Files are read one line at a time (gzip is recognised by its magic bytes, not by the name) and a
progress display (:func:`tawin.runtime.progress_bar`) counts bytes of the file on disk. A malformed
line raises :class:`tawin.errors.DataError` naming the file, the line and the field; with ``skip``
it is counted in :class:`ReadStats` instead.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tawin.data.dataset import MAX_TIMESTAMP
from tawin.errors import DataError
from tawin.runtime import progress_bar

_DECODE = json.JSONDecoder().decode
SKIP_HINT = "To skip such lines and count them instead, pass skip_bad_lines=True (--skip-bad-lines)."


class RawInteraction(NamedTuple):
    user: str
    item: str
    timestamp: int  # unix seconds
    rating: float | None


class RawItem(NamedTuple):
    item: str
    title: str | None
    description: str | None


@dataclass
class ReadStats:
    """What one file contributed: non-blank lines read, lines skipped as malformed."""

    path: str
    lines: int = 0
    skipped: int = 0
    first_problem: str | None = None


@dataclass(frozen=True)
class RecordFields:
    """Where one source keeps each field of its interaction and metadata records."""

    user: str
    item: str
    time: str
    rating: str
    per_second: int  # 1: the time field is in seconds, 1000: milliseconds
    meta_item: str  # the item field of a metadata record
    csv_delimiter: str | None = None  # None: JSON lines; else a headed CSV with this delimiter
    drop_markup_titles: bool = False  # titles holding page markup ("<span id") count as missing

    @property
    def time_unit(self) -> str:
        return "seconds" if self.per_second == 1 else "milliseconds"


# ---------------------------------------------------------------------------- line access


@contextmanager
def _open_bytes(path: Path, progress: bool) -> Iterator[tuple[io.BufferedIOBase, Callable[[], None]]]:
    """Yield a binary line stream (gunzipped when needed) and a callback updating the bytes bar."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; pass the path of an existing raw file.")
    with (
        path.open("rb") as raw,
        progress_bar(path.stat().st_size, path.name, "B", enabled=progress, unit_scale=True) as bar,
    ):
        stream = io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
        yield stream, lambda: bar.update(raw.tell() - bar.n)


def _bad(stats: ReadStats, line: int, problem: str, fix: str, skip: bool) -> None:
    message = f"{stats.path}: line {line}: {problem}. {fix}"
    if not skip:
        raise DataError(f"{message} {SKIP_HINT}")
    stats.skipped += 1
    if stats.first_problem is None:
        stats.first_problem = message


def _json_records(path: Path, stats: ReadStats, skip: bool, progress: bool) -> Iterator[tuple[int, dict]]:
    line = 0
    with _open_bytes(path, progress) as (stream, tick):
        try:
            for line, text in enumerate(stream, start=1):
                if line % 8192 == 0:
                    tick()
                if not text.strip():
                    continue
                stats.lines += 1
                try:
                    record = _DECODE(text.decode("utf-8"))  # str skips json's encoding sniffing
                except ValueError as error:  # includes invalid UTF-8
                    _bad(stats, line, f"not valid JSON ({error})", "Each line must hold one JSON object.", skip)
                    continue
                if not isinstance(record, dict):
                    _bad(
                        stats,
                        line,
                        f"holds a JSON {type(record).__name__}, not an object",
                        "Each line must hold one JSON object.",
                        skip,
                    )
                    continue
                yield line, record
        except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
            raise DataError(
                f"{path}: after line {line}: the gzip stream is corrupt "
                f"or truncated ({error}); download the file again."
            ) from None
        tick()


def _csv_records(
    path: Path, delimiter: str, required: list[str], stats: ReadStats, skip: bool, progress: bool
) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a headed CSV file as {column: value}; checks the header names `required`."""
    csv.field_size_limit(sys.maxsize)  # descriptions can be long
    with _open_bytes(path, progress) as (stream, tick):
        reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""), delimiter=delimiter)
        try:
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in required if name not in header]
            if missing:
                raise DataError(
                    f"{path}: line 1: the header {header} lacks column(s) {missing} (delimiter {delimiter!r}). "
                    "Name the columns in the header, or set csv_user_column / csv_item_column / csv_time_column / "
                    "csv_delimiter to match the file."
                )
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as error:
                    stats.lines += 1
                    _bad(stats, reader.line_num, f"not valid CSV ({error})", "Fix the quoting of this row.", skip)
                    continue
                if reader.line_num % 8192 == 0:
                    tick()
                if not any(value.strip() for value in row):
                    continue
                stats.lines += 1
                if len(row) != len(header):
                    _bad(
                        stats,
                        reader.line_num,
                        f"has {len(row)} fields but the header has {len(header)}",
                        f"Every row needs the columns {header}.",
                        skip,
                    )
                    continue
                yield reader.line_num, dict(zip(header, row))
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path}: after line {reader.line_num}: not UTF-8 text ({error}); convert the file to UTF-8."
            ) from None
        except (OSError, EOFError) as error:
            raise DataError(
                f"{path}: after line {reader.line_num}: the gzip stream is corrupt or truncated ({error})."
            ) from None
        tick()


def _records(
    path: Path, fields: RecordFields, csv_columns: list[str], stats: ReadStats, skip: bool, progress: bool
) -> Iterator[tuple[int, dict]]:
    """(line number, record) of a JSON-lines file, or of a CSV file whose header has `csv_columns`."""
    if fields.csv_delimiter is None:
        return _json_records(path, stats, skip, progress)
    return _csv_records(path, fields.csv_delimiter, csv_columns, stats, skip, progress)


# ---------------------------------------------------------------------------- field parsing


def _identifier(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None


def _seconds(value, per_second: int) -> int | None:
    """Unix time from an int, a finite float or a numeric string; None when not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, int):
        return value // per_second
    if isinstance(value, float) and math.isfinite(value):
        return int(value // per_second)
    return None


_NOT_A_NUMBER = object()


def _rating(value) -> float | None | object:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return _NOT_A_NUMBER
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _NOT_A_NUMBER
    return number if math.isfinite(number) else _NOT_A_NUMBER


def clean_text(value) -> str | None:
    """Join lists, unescape HTML entities, collapse whitespace; empty → None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = " ".join(str(part) for part in value if part is not None)
    text = " ".join(html.unescape(str(value)).split())
    return text or None


# ---------------------------------------------------------------------------- records


def read_interactions(
    path: Path, fields: RecordFields, stats: ReadStats, skip: bool, progress: bool
) -> Iterator[RawInteraction]:
    """The valid interactions of a review file / interaction log, in file order (lazily)."""
    required = [fields.user, fields.item, fields.time]
    unit = fields.time_unit
    is_csv = fields.csv_delimiter is not None
    if is_csv:
        missing_rule, need = "empty", f"Every row needs {required}."
        time_fix, rating_fix = f"It must be unix time in {unit} (csv_time_unit).", "Ratings must be numbers (or empty)."
    else:
        missing_rule = "missing, empty or not a string/integer"
        need = f"Every review needs '{fields.user}', '{fields.item}' and '{fields.time}' (unix {unit})."
        time_fix, rating_fix = f"It must be unix time in {unit}.", "Ratings must be numbers (or absent)."
    for line, record in _records(path, fields, required, stats, skip, progress):
        user = _identifier(record.get(fields.user))
        item = _identifier(record.get(fields.item))
        # A CSV cell is text, so a blank one is missing; a JSON time keeps its type (int or float).
        raw_time = _identifier(record[fields.time]) if is_csv else record.get(fields.time)
        missing = [name for name, value in zip(required, (user, item, raw_time)) if value is None]
        if missing:
            _bad(stats, line, f"field(s) {missing} {missing_rule}", need, skip)
            continue
        timestamp = _seconds(raw_time, fields.per_second)
        if timestamp is None:
            _bad(stats, line, f"field '{fields.time}' = {raw_time!r} is not a number", time_fix, skip)
            continue
        if not 0 <= timestamp <= MAX_TIMESTAMP:
            _bad(
                stats,
                line,
                f"field '{fields.time}' = {raw_time!r} is not a time between 1970 and 9999 in {unit}",
                time_fix,
                skip,
            )
            continue
        rating = _rating(record.get(fields.rating))
        if rating is _NOT_A_NUMBER:
            _bad(
                stats,
                line,
                f"field '{fields.rating}' = {record.get(fields.rating)!r} is not a number",
                rating_fix,
                skip,
            )
            continue
        yield RawInteraction(user, item, timestamp, rating)


def read_items(path: Path, fields: RecordFields, stats: ReadStats, skip: bool, progress: bool) -> Iterator[RawItem]:
    """The metadata records (item, title, description) of a metadata file / item table (lazily)."""
    if fields.csv_delimiter is None:
        no_item, item_fix = (
            f"field '{fields.meta_item}' missing or empty",
            f"Every metadata line needs '{fields.meta_item}'.",
        )
    else:
        no_item, item_fix = f"field '{fields.meta_item}' empty", "Every item row needs an item id."
    for line, record in _records(path, fields, [fields.meta_item, "title"], stats, skip, progress):
        item = _identifier(record.get(fields.meta_item))
        if item is None:
            _bad(stats, line, no_item, item_fix, skip)
            continue
        title = clean_text(record.get("title"))
        if fields.drop_markup_titles and title is not None and "<span id" in title:
            title = None
        yield RawItem(item, title, clean_text(record.get("description")))
