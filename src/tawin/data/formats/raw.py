"""Stage 1 — streaming readers for raw review logs: Amazon 2018, Amazon 2023 and a generic CSV.

Each source is a :class:`~tawin.data.formats.raw_reader.RecordFields` read by the one shared reader of
:mod:`tawin.data.formats.raw_reader`: interactions become :class:`RawInteraction` (user, item, timestamp
in unix seconds, rating or None) and metadata :class:`RawItem` (item, title, description).
:func:`read_source` collects one source into compact arrays (:class:`RawLog`) for the protocol in
:mod:`tawin.data.protocol.prepare`.

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

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tawin.data.formats.raw_reader import (
    RawInteraction,
    RawItem,
    ReadStats,
    RecordFields,
    read_interactions,
    read_items,
)
from tawin.errors import DataError

Source = Literal["amazon2018", "amazon2023", "csv"]
SOURCE_NAMES: tuple[str, ...] = ("amazon2018", "amazon2023", "csv")

AMAZON2018 = RecordFields("reviewerID", "asin", "unixReviewTime", "overall", 1, "asin", drop_markup_titles=True)
AMAZON2023 = RecordFields("user_id", "parent_asin", "timestamp", "rating", 1000, "parent_asin")


CSV = RecordFields("user", "item", "timestamp", "rating", 1, "item", csv_delimiter=",")
"""The default CSV layout; `tawin data prepare` builds its own from the csv_* settings of
:class:`~tawin.data.protocol.prepare_config.PrepareConfig`. The item table shares the log's item column."""


def source_fields(source: Source, csv: RecordFields = CSV) -> RecordFields:
    """The :class:`RecordFields` of a source name (see the module's field mapping); `csv` for "csv"."""
    if source == "amazon2018":
        return AMAZON2018
    if source == "amazon2023":
        return AMAZON2023
    if source == "csv":
        return csv
    raise DataError(f"unknown source {source!r}; choose one of {list(SOURCE_NAMES)}.")


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
    csv: RecordFields = CSV,
    skip_bad_lines: bool = False,
    progress: bool = True,
) -> RawLog:
    """Read the interaction file, then (if given) the metadata file, of one source.

    Generators are lazy, so the metadata file is opened only once the reviews are in memory and
    only the items they mention are kept.
    """
    fields = source_fields(source, csv)
    interactions = Path(interactions)
    stats = [ReadStats(str(interactions))]
    records = read_interactions(interactions, fields, stats[0], skip_bad_lines, progress)
    metadata = None
    if items is not None:
        stats.append(ReadStats(str(items)))
        metadata = read_items(Path(items), fields, stats[1], skip_bad_lines, progress)
    return collect(records, metadata, stats)
