"""Stage 1 — reading the CSV splits in which ReRe and MiniOneRec ship the paper's data.

Both write one CSV per split, one sample (history → target) a row, list columns as Python
literals (``[12, 7]``, ``['Glue', 'Tape']``):

* ReRe (``train/``, ``valid/``, ``test/``, ``info/`` as in ReRe's ``data/Amazon``)::

      user_id,item_asins,item_asin,history_item_id,item_id,history_item_title,item_title,
      history_rating,rating,history_timestamp,timestamp

  real reviewer ids, ASINs, unix-second target times; ``info/<name>.txt`` holds
  ``title \\t item_id``, one item a line.
* MiniOneRec::

      user_id,history_item_title,item_title,history_item_id,item_id,history_item_sid,item_sid

  user ids ``A<int>``; the catalogue (semantic IDs, descriptions) is in
  ``index/<Name>.index.json`` and ``<Name>.item.json``.

What is read: ``user_id``, ``history_item_id``, ``item_id``, the two title columns, the two ASIN
columns and ``timestamp`` when present. Ratings, history timestamps and the SID string columns
are not (the canonical dataset has no place for them; SIDs come from ``index.json``). Every
problem names the file, the 1-based line (line 1 is the header), the field and the fix.
"""

from __future__ import annotations

import ast
import csv
import sys
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

from tawin.data.dataset import MAX_TIMESTAMP, SPLITS
from tawin.errors import DataError

REQUIRED_COLUMNS = ("user_id", "history_item_id", "item_id")
TITLE_COLUMNS = ("history_item_title", "item_title")
ASIN_COLUMNS = ("item_asins", "item_asin")
RERE_COLUMNS = (
    "user_id",
    "item_asins",
    "item_asin",
    "history_item_id",
    "item_id",
    "history_item_title",
    "item_title",
    "timestamp",
)
"""The ReRe columns tawin writes (ratings and history timestamps, which it does not hold, are left out)."""
ENCODING = "utf-8-sig"
"""How every CSV, ``.inter`` and info file is read: UTF-8, with or without the byte-order mark that
Excel and Windows editors put first (plain ``utf-8`` would glue it to the first column's name)."""


class CsvFlavour(StrEnum):
    """Which project wrote a split CSV, told apart by the header."""

    RERE = "rere"
    """Titles, optional ASINs and timestamps; the catalogue is built from the titles in the files."""
    MINIONEREC = "minionerec"
    """Has ``history_item_sid``/``item_sid``; the catalogue comes from ``index.json``/``item.json``."""


@dataclass(frozen=True)
class CsvSplit:
    """One split CSV, parsed. Every list holds one entry per data row, in file order."""

    path: Path
    flavour: CsvFlavour
    line: list[int]
    """1-based line on which each row starts (line 1 is the header)."""
    user: list[str]
    history: list[list[int]]
    target: list[int]
    history_title: list[list[str]] | None
    """Titles aligned with ``history``; None when the file has no title columns."""
    target_title: list[str] | None
    history_asin: list[list[str | None]] | None
    """ASINs aligned with ``history`` (None where blank); None when the file has no ASIN columns."""
    target_asin: list[str | None] | None
    timestamp: list[int | None] | None
    """Unix seconds of the target (None where blank); None when the file has no ``timestamp`` column."""


def _fail(path: Path, line: int, field: str, value: str, rule: str, fix: str = "Fix or drop the line.") -> DataError:
    return DataError(f"{path}: line {line}, field '{field}' holds {value[:80]!r}; {rule}. {fix}")


def _literal_list(path: Path, line: int, field: str, text: str) -> list:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, list):
        raise _fail(path, line, field, text, "expected a Python list literal such as [12, 7] or ['Glue', 'Tape']")
    return value


def _item_id(path: Path, line: int, field: str, value: object) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not (isinstance(value, int) or (text.isascii() and text.isdigit())) or int(text) < 0:
        raise _fail(path, line, field, text, "item ids must be integers ≥ 0")
    return int(text)


def _same_length(path: Path, line: int, field: str, text: str, values: list, n: int) -> None:
    if len(values) != n:
        raise _fail(
            path,
            line,
            field,
            text,
            f"it has {len(values)} entries but 'history_item_id' has {n}; the list columns must be aligned",
        )


def _timestamp(path: Path, line: int, text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not (text.lstrip("-").isascii() and text.lstrip("-").isdigit()):
        raise _fail(path, line, "timestamp", text, "expected an integer (unix seconds) or a blank cell when unknown")
    if int(text) > MAX_TIMESTAMP:
        raise _fail(
            path, line, "timestamp", text, "it lies after the year 9999 in unix seconds; divide milliseconds by 1000"
        )
    return int(text)


def _flavour(path: Path, header: list[str]) -> CsvFlavour:
    flavour = CsvFlavour.MINIONEREC if "history_item_sid" in header else CsvFlavour.RERE
    needed = REQUIRED_COLUMNS + (TITLE_COLUMNS if flavour is CsvFlavour.RERE else ())
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(
            f"{path}: line 1, the header {header} lacks the column(s) {missing}. A ReRe split CSV needs "
            f"{list(REQUIRED_COLUMNS + TITLE_COLUMNS)} (optionally "
            f"{list(ASIN_COLUMNS)} and 'timestamp'); a MiniOneRec one "
            "needs user_id, history_item_title, item_title, history_item_id, item_id, history_item_sid, item_sid. "
            "Rename the columns or add the missing ones."
        )
    return flavour


def check_header(path: Path, header: list[str]) -> None:
    """A column name may appear once: a CSV reader keeps only one of two same-named columns (the last),
    so which one was meant would be a guess."""
    position_of: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in position_of:
            raise DataError(
                f"{path}: line 1, the header names the column '{name}' twice (columns {position_of[name]} and "
                f"{position}); only one of them could be read. Rename or remove one of the two columns."
            )
        position_of[name] = position


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV as a dict keyed by its header (names stripped and checked by :func:`check_header`)."""
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding=ENCODING, errors="replace") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        check_header(path, header)
        reader.fieldnames = header
        return list(reader)


def _parse_row(path: Path, line: int, row: dict[str, str], out: dict[str, list]) -> None:
    """Append one CSV row to the column lists in `out` (keys as in :class:`CsvSplit`)."""
    user = row["user_id"].strip()
    if not user:
        raise _fail(path, line, "user_id", user, "every row needs a user id")
    text = row["history_item_id"]
    history = [_item_id(path, line, "history_item_id", x) for x in _literal_list(path, line, "history_item_id", text)]
    if not history:
        raise _fail(
            path, line, "history_item_id", text, "every sample needs at least one history item", "Drop the line."
        )
    out["user"].append(user)
    out["history"].append(history)
    out["target"].append(_item_id(path, line, "item_id", row["item_id"]))
    if "history_title" in out:
        text = row["history_item_title"]
        titles = _literal_list(path, line, "history_item_title", text)
        _same_length(path, line, "history_item_title", text, titles, len(history))
        if not all(isinstance(t, str) for t in titles):
            raise _fail(path, line, "history_item_title", text, "every title must be a quoted string")
        out["history_title"].append(titles)
        out["target_title"].append(row["item_title"])
    if "history_asin" in out:
        text = row["item_asins"]
        asins = _literal_list(path, line, "item_asins", text)
        _same_length(path, line, "item_asins", text, asins, len(history))
        if not all(a is None or isinstance(a, str) for a in asins):
            raise _fail(path, line, "item_asins", text, "every ASIN must be a quoted string (or None when unknown)")
        out["history_asin"].append([a or None for a in asins])
        out["target_asin"].append(row["item_asin"].strip() or None)
    if "timestamp" in out:
        out["timestamp"].append(_timestamp(path, line, row["timestamp"]))


def read_csv_split(path: str | Path) -> CsvSplit:
    """Parse one ReRe or MiniOneRec split CSV (see the module docstring for the columns)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: file not found; expected a split CSV with the columns {list(REQUIRED_COLUMNS + TITLE_COLUMNS)}."
        )
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding=ENCODING, errors="replace") as handle:
        reader = csv.reader(handle)
        header = [c.strip() for c in next(reader, [])]
        check_header(path, header)
        flavour = _flavour(path, header)
        names = ["user", "history", "target", "line"]
        names += ["history_title", "target_title"] if all(c in header for c in TITLE_COLUMNS) else []
        names += ["history_asin", "target_asin"] if all(c in header for c in ASIN_COLUMNS) else []
        names += ["timestamp"] if "timestamp" in header else []
        out: dict[str, list] = {name: [] for name in names}
        line = reader.line_num + 1
        for cells in reader:
            if cells:
                if len(cells) != len(header):
                    raise DataError(
                        f"{path}: line {line} has {len(cells)} comma-separated "
                        f"field(s) but the header has {len(header)}; "
                        "quote any field that holds a comma (as Python's csv module and pandas do) or drop the line."
                    )
                out["line"].append(line)
                _parse_row(path, line, dict(zip(header, cells)), out)
            line = reader.line_num + 1
    if not out["target"]:
        raise DataError(f"{path}: no samples after the header; a split needs at least one row.")
    columns = {f.name: out.get(f.name) for f in fields(CsvSplit) if f.name not in ("path", "flavour")}
    return CsvSplit(path=path, flavour=flavour, **columns)


def read_info_txt(path: Path) -> dict[int, str]:
    """ReRe's ``info/<name>.txt``: ``title \\t item_id`` a line → {item id: title}."""
    titles: dict[int, str] = {}
    with path.open(encoding=ENCODING, errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            title, tab, item = line.rstrip("\r\n").rpartition("\t")
            if not tab or not (item.strip().isascii() and item.strip().isdigit()):
                raise DataError(
                    f"{path}: line {line_number} is {line.strip()[:80]!r}; "
                    "expected 'title<TAB>item_id' with an integer id ≥ 0. "
                    "Fix or drop the line."
                )
            if int(item) in titles:
                raise DataError(
                    f"{path}: line {line_number}, field 'item_id' = "
                    f"{int(item)} is listed twice; every item needs one line."
                )
            titles[int(item)] = title
    return titles


def pick_file(folder: Path, pattern: str, name: str | None) -> Path | None:
    """The one file matching `pattern` in `folder` (the one starting with `name` when several)."""
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if name is not None and len(files) > 1:
        files = [f for f in files if f.name.startswith(name)] or files
    if len(files) > 1:
        raise DataError(
            f"{folder}: holds {len(files)} {pattern} files ({', '.join(f.name for f in files)}); "
            "pass --name with the one to read (a file-name prefix)."
        )
    return files[0] if files else None


def find_split_csvs(base: Path, name: str | None) -> dict[str, Path]:
    """The split CSVs under `base`: ``<split>/*.csv`` (ReRe's and MiniOneRec's layout) or ``<split>.csv``."""
    found = {}
    for split in SPLITS:
        path = pick_file(base / split, "*.csv", name)
        if path is None and (base / f"{split}.csv").is_file():
            path = base / f"{split}.csv"
        if path is not None:
            found[split] = path
    return found
