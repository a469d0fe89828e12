"""Stage 1 — streaming readers for raw review logs: Amazon 2018, Amazon 2023 and a generic CSV.

Each source has an interaction reader yielding :class:`RawInteraction` (user, item, timestamp in
unix seconds, rating or None) and a metadata reader yielding :class:`RawItem` (item, title,
description). :func:`read_source` collects one source into compact arrays (:class:`RawLog`) for
the protocol in :mod:`tawin.data.prepare`.

Files are read one line at a time (gzip is recognised by its magic bytes, not by the name), only
the needed fields are kept, and a tqdm bar counts bytes of the file on disk, so multi-GB review
files never have to fit in memory as JSON. Metadata is read after the reviews and only the items
that occur in the reviews are kept.

A malformed line (invalid JSON, a missing field, a non-numeric time or rating) raises
:class:`tawin.errors.DataError` naming the file, the line and the field; with
``skip_bad_lines=True`` it is counted in :class:`ReadStats` and skipped instead.

Field mapping (everything else on a line is ignored):

=============  =====================  =====================  =============================
source         user / item            time                   metadata (item, title, descr.)
=============  =====================  =====================  =============================
amazon2018     reviewerID / asin      unixReviewTime (s)     asin, title, description
amazon2023     user_id / parent_asin  timestamp (ms → s)     parent_asin, title, description
csv            configurable           configurable (s, ms)   item column, title, description
=============  =====================  =====================  =============================

Text clean-up of titles and descriptions: lists are joined with spaces, HTML entities are
unescaped (``&amp;`` → ``&``), runs of whitespace collapse to one space, and empty text is None.
Amazon 2018 titles holding page markup (``<span id``) count as missing, as in the D3 script.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import math
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from tqdm import tqdm

from tawin.errors import DataError

Source = Literal["amazon2018", "amazon2023", "csv"]
SOURCE_NAMES: tuple[str, ...] = ("amazon2018", "amazon2023", "csv")
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
class CsvFormat:
    """Column names and conventions of a CSV interaction log (see PrepareConfig.csv_*)."""

    user: str = "user"
    item: str = "item"
    timestamp: str = "timestamp"
    rating: str = "rating"
    delimiter: str = ","
    time_unit: Literal["s", "ms"] = "s"


@dataclass
class RawLog:
    """One source in memory: E interactions in file order plus metadata of their I items.

    Codes are dense integers in order of first appearance in the interaction file.
    """

    user_names: list[str]  # [U] raw user id of code u
    item_names: list[str]  # [I] raw item id of code i
    user_E: np.ndarray  # int64 [E] user code of each interaction
    item_E: np.ndarray  # int64 [E]
    time_E: np.ndarray  # int64 [E] unix seconds
    rating_E: np.ndarray  # float64 [E], NaN where the file has no rating
    title_I: list[str | None]  # [I] None: no metadata line, or no usable title
    description_I: list[str | None]  # [I]
    has_metadata_I: np.ndarray  # bool [I] whether a metadata line names the item
    stats: list[ReadStats] = field(default_factory=list)


# ---------------------------------------------------------------------------- line access


@contextmanager
def _open_bytes(path: Path, progress: bool) -> Iterator[tuple[io.BufferedIOBase, Callable[[], None]]]:
    """Yield a binary line stream (gunzipped when needed) and a callback updating the bytes bar."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; pass the path of an existing raw file.")
    with path.open("rb") as raw, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, disable=not progress, leave=False
    ) as bar:
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
                    _bad(stats, line, f"holds a JSON {type(record).__name__}, not an object", "Each line must hold one JSON object.", skip)
                    continue
                yield line, record
        except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: after line {line}: the gzip stream is corrupt or truncated ({error}); download the file again.") from None
        tick()


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


# ---------------------------------------------------------------------------- JSON-lines sources


@dataclass(frozen=True)
class _JsonFields:
    user: str
    item: str
    time: str
    rating: str
    per_second: int  # 1: the time field is in seconds, 1000: milliseconds
    meta_item: str


AMAZON2018 = _JsonFields("reviewerID", "asin", "unixReviewTime", "overall", 1, "asin")
AMAZON2023 = _JsonFields("user_id", "parent_asin", "timestamp", "rating", 1000, "parent_asin")


def _json_interactions(path: Path, fields: _JsonFields, stats: ReadStats, skip: bool, progress: bool) -> Iterator[RawInteraction]:
    unit = "seconds" if fields.per_second == 1 else "milliseconds"
    need = f"Every review needs '{fields.user}', '{fields.item}' and '{fields.time}' (unix {unit})."
    for line, record in _json_records(path, stats, skip, progress):
        user = _identifier(record.get(fields.user))
        item = _identifier(record.get(fields.item))
        raw_time = record.get(fields.time)
        missing = [name for name, value in ((fields.user, user), (fields.item, item), (fields.time, raw_time)) if value is None]
        if missing:
            _bad(stats, line, f"field(s) {missing} missing, empty or not a string/integer", need, skip)
            continue
        timestamp = _seconds(raw_time, fields.per_second)
        if timestamp is None:
            _bad(stats, line, f"field '{fields.time}' = {raw_time!r} is not a number", f"It must be unix time in {unit}.", skip)
            continue
        rating = _rating(record.get(fields.rating))
        if rating is _NOT_A_NUMBER:
            _bad(stats, line, f"field '{fields.rating}' = {record.get(fields.rating)!r} is not a number", "Ratings must be numbers (or absent).", skip)
            continue
        yield RawInteraction(user, item, timestamp, rating)


def _json_items(path: Path, fields: _JsonFields, stats: ReadStats, skip: bool, progress: bool) -> Iterator[RawItem]:
    for line, record in _json_records(path, stats, skip, progress):
        item = _identifier(record.get(fields.meta_item))
        if item is None:
            _bad(stats, line, f"field '{fields.meta_item}' missing or empty", f"Every metadata line needs '{fields.meta_item}'.", skip)
            continue
        title = clean_text(record.get("title"))
        if fields is AMAZON2018 and title is not None and "<span id" in title:
            title = None
        yield RawItem(item, title, clean_text(record.get("description")))


def amazon2018_interactions(path, stats: ReadStats | None = None, *, skip_bad_lines=False, progress=True) -> Iterator[RawInteraction]:
    """Reviews of an Amazon 2018 ``<Category>_5.json.gz`` file."""
    path = Path(path)
    return _json_interactions(path, AMAZON2018, stats or ReadStats(str(path)), skip_bad_lines, progress)


def amazon2018_items(path, stats: ReadStats | None = None, *, skip_bad_lines=False, progress=True) -> Iterator[RawItem]:
    """Items of an Amazon 2018 ``meta_<Category>.json.gz`` file."""
    path = Path(path)
    return _json_items(path, AMAZON2018, stats or ReadStats(str(path)), skip_bad_lines, progress)


def amazon2023_interactions(path, stats: ReadStats | None = None, *, skip_bad_lines=False, progress=True) -> Iterator[RawInteraction]:
    """Reviews of an Amazon 2023 ``<Category>.jsonl(.gz)`` file (timestamps in milliseconds)."""
    path = Path(path)
    return _json_interactions(path, AMAZON2023, stats or ReadStats(str(path)), skip_bad_lines, progress)


def amazon2023_items(path, stats: ReadStats | None = None, *, skip_bad_lines=False, progress=True) -> Iterator[RawItem]:
    """Items of an Amazon 2023 ``meta_<Category>.jsonl(.gz)`` file (keyed by parent_asin)."""
    path = Path(path)
    return _json_items(path, AMAZON2023, stats or ReadStats(str(path)), skip_bad_lines, progress)


# ---------------------------------------------------------------------------- CSV source


def _csv_rows(path: Path, delimiter: str, required: list[str], stats: ReadStats, skip: bool, progress: bool) -> Iterator[tuple[int, dict[str, str]]]:
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
                    _bad(stats, reader.line_num, f"has {len(row)} fields but the header has {len(header)}", f"Every row needs the columns {header}.", skip)
                    continue
                yield reader.line_num, dict(zip(header, row))
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: after line {reader.line_num}: not UTF-8 text ({error}); convert the file to UTF-8.") from None
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: after line {reader.line_num}: the gzip stream is corrupt or truncated ({error}).") from None
        tick()


def csv_interactions(path, columns: CsvFormat = CsvFormat(), stats: ReadStats | None = None, *, skip_bad_lines=False, progress=True) -> Iterator[RawInteraction]:
    """A CSV interaction log with a header row; the rating column is optional."""
    path = Path(path)
    stats = stats or ReadStats(str(path))
    per_second = 1000 if columns.time_unit == "ms" else 1
    unit = "milliseconds" if per_second == 1000 else "seconds"
    required = [columns.user, columns.item, columns.timestamp]
    for line, row in _csv_rows(path, columns.delimiter, required, stats, skip_bad_lines, progress):
        user, item, raw_time = (_identifier(row[name]) for name in required)
        missing = [name for name, value in zip(required, (user, item, raw_time)) if value is None]
        if missing:
            _bad(stats, line, f"field(s) {missing} empty", f"Every row needs {required}.", skip_bad_lines)
            continue
        timestamp = _seconds(raw_time, per_second)
        if timestamp is None:
            _bad(stats, line, f"field '{columns.timestamp}' = {raw_time!r} is not a number", f"It must be unix time in {unit} (csv_time_unit).", skip_bad_lines)
            continue
        rating = _rating(row.get(columns.rating))
        if rating is _NOT_A_NUMBER:
            _bad(stats, line, f"field '{columns.rating}' = {row[columns.rating]!r} is not a number", "Ratings must be numbers (or empty).", skip_bad_lines)
            continue
        yield RawInteraction(user, item, timestamp, rating)


def csv_items(path, columns: CsvFormat = CsvFormat(), stats: ReadStats | None = None, *, skip_bad_lines=False, progress=True) -> Iterator[RawItem]:
    """A CSV item table: the log's item column, ``title`` and an optional ``description``."""
    path = Path(path)
    stats = stats or ReadStats(str(path))
    for line, row in _csv_rows(path, columns.delimiter, [columns.item, "title"], stats, skip_bad_lines, progress):
        item = _identifier(row[columns.item])
        if item is None:
            _bad(stats, line, f"field '{columns.item}' empty", "Every item row needs an item id.", skip_bad_lines)
            continue
        yield RawItem(item, clean_text(row["title"]), clean_text(row.get("description")))


# ---------------------------------------------------------------------------- collection


def collect(interactions: Iterable[RawInteraction], items: Iterable[RawItem] | None, stats: list[ReadStats]) -> RawLog:
    """Intern ids into dense codes and keep the metadata of the items that occur in the log.

    A metadata line for an item seen before keeps the first occurrence.
    """
    user_code: dict[str, int] = {}
    item_code: dict[str, int] = {}
    users, items_E, times, ratings = array("q"), array("q"), array("q"), array("d")
    for record in interactions:
        users.append(user_code.setdefault(record.user, len(user_code)))
        items_E.append(item_code.setdefault(record.item, len(item_code)))
        times.append(record.timestamp)
        ratings.append(math.nan if record.rating is None else record.rating)
    title_I: list[str | None] = [None] * len(item_code)
    description_I: list[str | None] = [None] * len(item_code)
    seen = np.zeros(len(item_code), dtype=bool)
    for record in items or ():
        code = item_code.get(record.item)
        if code is None or seen[code]:
            continue
        seen[code] = True
        title_I[code], description_I[code] = record.title, record.description
    return RawLog(
        user_names=list(user_code),
        item_names=list(item_code),
        user_E=np.frombuffer(users, dtype=np.int64).copy(),
        item_E=np.frombuffer(items_E, dtype=np.int64).copy(),
        time_E=np.frombuffer(times, dtype=np.int64).copy(),
        rating_E=np.frombuffer(ratings, dtype=np.float64).copy(),
        title_I=title_I,
        description_I=description_I,
        has_metadata_I=seen,
        stats=stats,
    )


def read_source(
    source: Source,
    interactions: str | Path,
    items: str | Path | None = None,
    *,
    csv_format: CsvFormat = CsvFormat(),
    skip_bad_lines: bool = False,
    progress: bool = True,
) -> RawLog:
    """Read the interaction file, then (if given) the metadata file, of one source.

    Generators are lazy, so the metadata file is opened only once the reviews are in memory and
    only the items they mention are kept.
    """
    interactions = Path(interactions)
    stats = [ReadStats(str(interactions))]
    options = dict(skip_bad_lines=skip_bad_lines, progress=progress)
    if source == "amazon2018":
        readers = (amazon2018_interactions, amazon2018_items)
    elif source == "amazon2023":
        readers = (amazon2023_interactions, amazon2023_items)
    elif source == "csv":
        readers = (
            lambda path, s, **o: csv_interactions(path, csv_format, s, **o),
            lambda path, s, **o: csv_items(path, csv_format, s, **o),
        )
    else:
        raise DataError(f"unknown source {source!r}; choose one of {list(SOURCE_NAMES)}.")
    records = readers[0](interactions, stats[0], **options)
    metadata = None
    if items is not None:
        stats.append(ReadStats(str(items)))
        metadata = readers[1](Path(items), stats[1], **options)
    return collect(records, metadata, stats)
