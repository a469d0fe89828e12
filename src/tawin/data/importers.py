"""Stage 1 — import the public formats in which the paper's splits circulate.

* RecBole atomic ``.inter`` splits (``user_id:token  item_id_list:token_seq  item_id:token``),
* MiniOneRec ``index.json`` (item id -> semantic-ID tokens) and ``item.json`` (title, description),
* MiniOneRec CSVs (rows aligned with ``.inter`` valid/test rows; used to check the alignment),
* ReRe CSVs (rows aligned too; they add unix-second timestamps and ASINs).

Layout expected under ``root`` (as in ``shared/data/<Dataset>``)::

    minionerec/inter/<Name>.{train,valid,test}.inter
    minionerec/index/<Name>.index.json, <Name>.item.json
    minionerec/{valid,test}/*.csv          (optional)
    rere/{valid,test}/*.csv                (optional; timestamps and ASINs)
"""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path

import numpy as np

from tawin.data.dataset import SPLITS, Dataset, Interactions, ItemTable
from tawin.data.sid_collisions import make_unique
from tawin.errors import DataError

INTER_HEADER = ["user_id:token", "item_id_list:token_seq", "item_id:token"]


def read_inter(path: Path) -> tuple[list[int], list[list[int]], list[int]]:
    """Parse a RecBole ``.inter`` file into (users, histories, targets).

    Every problem names the file and the 1-based line number (line 1 is the header).
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a RecBole .inter split with the header {INTER_HEADER} (tab-separated).")
    users: list[int] = []
    histories: list[list[int]] = []
    targets: list[int] = []
    names = ("user_id", "item_id_list", "item_id")
    with path.open(encoding="utf-8", errors="replace") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
        if header != INTER_HEADER:
            raise DataError(f"{path}: line 1 header is {header}; expected {INTER_HEADER} (tab-separated). Fix the header line.")
        for line_number, line in enumerate(handle, start=2):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise DataError(
                    f"{path}: line {line_number} has {len(fields)} tab-separated field(s) ({line.rstrip()[:80]!r}); expected 3 "
                    "(user_id, item_id_list, item_id). Separate the fields with tabs and the history items with spaces."
                )
            parsed = []
            for name, text in zip(names, fields):
                for token in text.split() if name == "item_id_list" else [text.strip()]:
                    if not (token.isascii() and token.isdigit()):
                        raise DataError(
                            f"{path}: line {line_number}, field '{name}' holds {token!r}, which is not a non-negative integer id; "
                            "ids must be integers ≥ 0. Fix or drop the line."
                        )
                parsed.append([int(x) for x in text.split()] if name == "item_id_list" else int(text))
            if not parsed[1]:
                raise DataError(f"{path}: line {line_number}, field 'item_id_list' is empty; every sample needs at least one history item. Drop the line.")
            users.append(parsed[0])
            histories.append(parsed[1])
            targets.append(parsed[2])
    if not targets:
        raise DataError(f"{path}: no samples after the header; a split needs at least one line.")
    return users, histories, targets


def _read_json(path: Path) -> dict[int, object]:
    """A MiniOneRec JSON map keyed by item id (``{"0": ...}``) with integer keys."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error}); re-download or re-create the file.") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: must hold a JSON object keyed by item id (e.g. {{\"0\": ...}}), not a {type(data).__name__}.")
    bad = next((k for k in data if not str(k).isdigit()), None)
    if bad is not None:
        raise DataError(f"{path}: key {bad!r} is not an integer item id ≥ 0; every key must be an item id such as \"0\".")
    return {int(k): v for k, v in data.items()}


def _read_csv_rows(path: Path) -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _single_csv(folder: Path) -> Path | None:
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    return files[0] if files else None


def import_minionerec(root: str | Path, name: str | None = None) -> Dataset:
    """Build a canonical :class:`Dataset` from a MiniOneRec/ReRe data folder (see module doc)."""
    root = Path(root)
    inter_dir = root / "minionerec" / "inter"
    if name is None:
        candidates = sorted(inter_dir.glob("*.train.inter"))
        if not candidates:
            raise DataError(f"{inter_dir}: no *.train.inter file; pass the folder that holds minionerec/inter/<Name>.train.inter.")
        name = candidates[0].name[: -len(".train.inter")]
    index_path = root / "minionerec" / "index" / f"{name}.index.json"
    item_path = root / "minionerec" / "index" / f"{name}.item.json"
    for path in (index_path, item_path):
        if not path.exists():
            raise DataError(f"{path}: file not found; MiniOneRec import needs {index_path.name} and {item_path.name}.")
    sid_of = {}
    for item, tokens in _read_json(index_path).items():
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise DataError(f"{index_path}: item {item} has semantic ID {tokens!r}; each entry must be a list of token strings such as [\"<a_1>\", \"<b_2>\"].")
        sid_of[item] = tuple(tokens)
    info_of = {item: info if isinstance(info, dict) else {} for item, info in _read_json(item_path).items()}
    item_ids = sorted(set(sid_of) | set(info_of))

    splits: dict[str, Interactions] = {}
    asin_of: dict[int, str] = {}
    for split in SPLITS:
        users, histories, targets = read_inter(inter_dir / f"{name}.{split}.inter")
        timestamps: list[int | None] | None = None
        minionerec_csv = _single_csv(root / "minionerec" / split)
        if minionerec_csv is not None:
            rows = _read_csv_rows(minionerec_csv)
            _check_aligned(minionerec_csv, rows, histories, targets)
        rere_csv = _single_csv(root / "rere" / split)
        if rere_csv is not None:
            rows = _read_csv_rows(rere_csv)
            if len(rows) != len(targets):
                raise DataError(f"{rere_csv}: {len(rows)} rows but the .inter split has {len(targets)}; the files must be row-aligned.")
            missing = [c for c in ("timestamp", "item_asin", "item_asins") if rows and c not in rows[0]]
            if missing:
                raise DataError(f"{rere_csv}: missing column(s) {missing}; a ReRe CSV needs timestamp, item_asin and item_asins.")
            try:
                timestamps = [int(r["timestamp"]) for r in rows]
            except (TypeError, ValueError):
                line = next(i for i, r in enumerate(rows, start=2) if not str(r["timestamp"]).lstrip("-").isdigit())
                raise DataError(f"{rere_csv}: line {line}, field 'timestamp' = {rows[line - 2]['timestamp']!r} is not an integer (unix seconds).") from None
            for row, history, target in zip(rows, histories, targets):
                asin_of.setdefault(target, row["item_asin"])
                for item, asin in zip(history, ast.literal_eval(row["item_asins"])):
                    asin_of.setdefault(item, asin)
        _check_known(inter_dir / f"{name}.{split}.inter", histories, targets, sid_of, info_of)
        splits[split] = Interactions.from_lists(users, histories, targets, timestamps)

    items = ItemTable(
        item_id=np.asarray(item_ids, dtype=np.int64),
        title=[info_of.get(i, {}).get("title", "") or "" for i in item_ids],
        description=[_clean_description(info_of.get(i, {}).get("description")) for i in item_ids],
        asin=[asin_of.get(i) for i in item_ids],
        sid=[sid_of.get(i, ()) for i in item_ids],
    )
    # The dataset's own SIDs collide for a few duplicate listings; the same rule as for built
    # SIDs gives every item a unique sequence (an extra disambiguation level).
    unique_sids, report = make_unique(items.sid) if all(items.sid) else (items.sid, None)
    meta = {
        "description": f"{name}: imported from MiniOneRec .inter/index.json (+ ReRe CSV timestamps/ASINs)",
        "sid_source": "dataset",
        "sid_collisions_resolved": None if report is None else report.__dict__,
    }
    return Dataset(name=name, items=items.with_sids(unique_sids), splits=splits, meta=meta)


def _check_known(path: Path, histories: list[list[int]], targets: list[int], sid_of: dict, info_of: dict) -> None:
    """Every item a split mentions must be in index.json or item.json (else it has no SID/title)."""
    for line_number, (history, target) in enumerate(zip(histories, targets), start=2):
        for field, item in [("item_id_list", i) for i in history] + [("item_id", target)]:
            if item not in sid_of and item not in info_of:
                raise DataError(
                    f"{path}: line {line_number}, field '{field}' refers to item {item}, which is in neither the .index.json nor "
                    "the .item.json file; add the item there or drop the line."
                )


def _clean_description(value) -> str | None:
    """MiniOneRec stores descriptions as the string of a Python list; keep the plain text."""
    if not value:
        return None
    if isinstance(value, str) and value.startswith("["):
        try:
            parts = ast.literal_eval(value)
            return " ".join(str(p) for p in parts).strip() or None
        except (ValueError, SyntaxError):
            return value
    return str(value)


def _check_aligned(path: Path, rows: list[dict], histories: list[list[int]], targets: list[int]) -> None:
    if len(rows) != len(targets):
        raise DataError(f"{path}: {len(rows)} rows but the .inter split has {len(targets)}; the files must be row-aligned.")
    for i, (row, history, target) in enumerate(zip(rows, histories, targets)):
        if int(row["item_id"]) != target or [int(x) for x in ast.literal_eval(row["history_item_id"])] != history:
            raise DataError(f"{path}: row {i} (item_id {row['item_id']}) differs from the .inter row ({target}); the CSV and .inter splits are not aligned.")
