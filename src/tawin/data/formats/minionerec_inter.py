"""Stage 1 — MiniOneRec's RecBole ``.inter`` splits with its ``index.json``/``item.json`` (as in
``shared/data/<Dataset>``), the ``minionerec-inter`` layout of :mod:`tawin.data.formats.registry`::

    minionerec/inter/<Name>.{train,valid,test}.inter
    minionerec/index/<Name>.index.json, <Name>.item.json
    minionerec/{valid,test}/*.csv          (optional; checked to be row-aligned)
    rere/{valid,test}/*.csv                (optional; timestamps and ASINs)
"""

from __future__ import annotations

import ast
from pathlib import Path

from tawin.data.dataset import MAX_TIMESTAMP, SPLITS, Dataset, Interactions
from tawin.data.formats.csv_splits import ENCODING, pick_file, read_csv_rows
from tawin.data.formats.layout import LayoutNotFound
from tawin.data.formats.minionerec_index import build_items, clean_description, read_index
from tawin.errors import DataError

INTER_HEADER = ["user_id:token", "item_id_list:token_seq", "item_id:token"]


def read_inter(path: Path) -> tuple[list[int], list[list[int]], list[int]]:
    """Parse a RecBole ``.inter`` file into (users, histories, targets).

    Every problem names the file and the 1-based line number (line 1 is the header).
    """
    if not path.is_file():
        raise DataError(
            f"{path}: file not found; expected a RecBole .inter split with the header {INTER_HEADER} (tab-separated)."
        )
    users: list[int] = []
    histories: list[list[int]] = []
    targets: list[int] = []
    names = ("user_id", "item_id_list", "item_id")
    with path.open(encoding=ENCODING, errors="replace") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
        if header != INTER_HEADER:
            raise DataError(
                f"{path}: line 1 header is {header}; expected {INTER_HEADER} (tab-separated). Fix the header line."
            )
        for line_number, line in enumerate(handle, start=2):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise DataError(
                    f"{path}: line {line_number} has {len(fields)} tab-separated "
                    f"field(s) ({line.rstrip()[:80]!r}); expected 3 "
                    "(user_id, item_id_list, item_id). Separate the fields with tabs and the history items with spaces."
                )
            parsed = []
            for name, text in zip(names, fields):
                for token in text.split() if name == "item_id_list" else [text.strip()]:
                    if not (token.isascii() and token.isdigit()):
                        raise DataError(
                            f"{path}: line {line_number}, field '{name}' holds "
                            f"{token!r}, which is not a non-negative integer id; "
                            "ids must be integers ≥ 0. Fix or drop the line."
                        )
                parsed.append([int(x) for x in text.split()] if name == "item_id_list" else int(text))
            if not parsed[1]:
                raise DataError(
                    f"{path}: line {line_number}, field 'item_id_list' is empty; "
                    "every sample needs at least one history item. Drop the line."
                )
            users.append(parsed[0])
            histories.append(parsed[1])
            targets.append(parsed[2])
    if not targets:
        raise DataError(f"{path}: no samples after the header; a split needs at least one line.")
    return users, histories, targets


def import_minionerec(root: str | Path, name: str | None = None) -> Dataset:
    """The reader of the layout: a canonical :class:`Dataset` from the MiniOneRec/ReRe data folder
    `root` (see the module doc); :class:`LayoutNotFound` when `root` holds no ``.inter`` split."""
    root = Path(root)
    inter_dir = root / "minionerec" / "inter"
    train_inter = pick_file(inter_dir, "*.train.inter", name)  # several files: `name` must pick one
    if train_inter is None:
        raise LayoutNotFound(
            f"{inter_dir}: no *.train.inter file; pass the folder that holds minionerec/inter/<Name>.train.inter."
        )
    if name is None:
        name = train_inter.name[: -len(".train.inter")]
    index_path = root / "minionerec" / "index" / f"{name}.index.json"
    item_path = root / "minionerec" / "index" / f"{name}.item.json"
    for path in (index_path, item_path):
        if not path.exists():
            raise DataError(f"{path}: file not found; MiniOneRec import needs {index_path.name} and {item_path.name}.")
    sid_of, info_of = read_index(index_path, item_path)
    item_ids = sorted(set(sid_of) | set(info_of))

    splits: dict[str, Interactions] = {}
    asin_of: dict[int, str] = {}
    for split in SPLITS:
        users, histories, targets = read_inter(inter_dir / f"{name}.{split}.inter")
        timestamps: list[int | None] | None = None
        minionerec_csv = pick_file(root / "minionerec" / split, "*.csv", name)
        if minionerec_csv is not None:
            rows = read_csv_rows(minionerec_csv)
            _check_aligned(minionerec_csv, rows, histories, targets)
        rere_csv = pick_file(root / "rere" / split, "*.csv", name)
        if rere_csv is not None:
            timestamps = _read_rere_csv(rere_csv, histories, targets, asin_of)
        _check_known(inter_dir / f"{name}.{split}.inter", histories, targets, sid_of, info_of)
        splits[split] = Interactions.from_lists(users, histories, targets, timestamps)

    items, report = build_items(
        item_ids,
        {i: info.get("title", "") for i, info in info_of.items()},
        {i: clean_description(info.get("description")) for i, info in info_of.items()},
        asin_of,
        sid_of,
    )
    meta = {
        "description": f"{name}: imported from MiniOneRec .inter/index.json (+ ReRe CSV timestamps/ASINs)",
        "sid_source": "dataset",
        "sid_collisions_resolved": report,
    }
    return Dataset(name=name, items=items, splits=splits, meta=meta)


def _read_rere_csv(path: Path, histories: list[list[int]], targets: list[int], asin_of: dict[int, str]) -> list[int]:
    """The target times of ReRe's CSV of one split, row-aligned with its ``.inter`` file; the ASINs
    it gives the split's items go into `asin_of` (the first seen for an item is kept)."""
    rows = read_csv_rows(path)
    if len(rows) != len(targets):
        raise DataError(
            f"{path}: {len(rows)} rows but the .inter split has {len(targets)}; the files must be row-aligned."
        )
    missing = [c for c in ("timestamp", "item_asin", "item_asins") if rows and c not in rows[0]]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; a ReRe CSV needs timestamp, item_asin and item_asins.")
    try:
        timestamps = [int(r["timestamp"]) for r in rows]
    except (TypeError, ValueError):
        line = next(i for i, r in enumerate(rows, start=2) if not str(r["timestamp"]).lstrip("-").isdigit())
        raise DataError(
            f"{path}: line {line}, field 'timestamp' = "
            f"{rows[line - 2]['timestamp']!r} is not an integer (unix seconds)."
        ) from None
    outside = next((i for i, t in enumerate(timestamps) if t > MAX_TIMESTAMP), None)
    if outside is not None:
        raise DataError(
            f"{path}: line {outside + 2}, field 'timestamp' = {timestamps[outside]} lies after the year 9999 in "
            "unix seconds; fix the line (divide milliseconds by 1000)."
        )
    for row, history, target in zip(rows, histories, targets):
        asin_of.setdefault(target, row["item_asin"])
        for item, asin in zip(history, ast.literal_eval(row["item_asins"])):
            asin_of.setdefault(item, asin)
    return timestamps


def _check_known(path: Path, histories: list[list[int]], targets: list[int], sid_of: dict, info_of: dict) -> None:
    """Every item a split mentions must be in index.json or item.json (else it has no SID/title)."""
    for line_number, (history, target) in enumerate(zip(histories, targets), start=2):
        for field, item in [("item_id_list", i) for i in history] + [("item_id", target)]:
            if item not in sid_of and item not in info_of:
                raise DataError(
                    f"{path}: line {line_number}, field '{field}' refers to "
                    f"item {item}, which is in neither the .index.json nor "
                    "the .item.json file; add the item there or drop the line."
                )


def _check_aligned(path: Path, rows: list[dict], histories: list[list[int]], targets: list[int]) -> None:
    if len(rows) != len(targets):
        raise DataError(
            f"{path}: {len(rows)} rows but the .inter split has {len(targets)}; the files must be row-aligned."
        )
    for i, (row, history, target) in enumerate(zip(rows, histories, targets)):
        line = i + 2
        try:
            item = int(row["item_id"])
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: line {line}, field 'item_id' holds {row['item_id']!r}; "
                "item ids must be integers ≥ 0. Fix or drop the line."
            ) from None
        try:
            listed = [int(x) for x in ast.literal_eval(row["history_item_id"])]
        except (TypeError, ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(
                f"{path}: line {line}, field 'history_item_id' holds "
                f"{row['history_item_id']!r}; expected a list of integer "
                "item ids such as [12, 7]. Fix or drop the line."
            ) from None
        if item != target or listed != history:
            raise DataError(
                f"{path}: row {i} (item_id {row['item_id']}) differs from the "
                f".inter row ({target}); the CSV and .inter splits are not aligned."
            )
