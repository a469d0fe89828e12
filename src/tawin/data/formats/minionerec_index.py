"""Stage 1 — MiniOneRec's catalogue files, shared by the ``.inter`` and the CSV importers.

* ``<Name>.index.json``: ``{item_id: ["<a_i>", "<b_j>", "<c_k>"]}`` (semantic-ID tokens),
* ``<Name>.item.json``: ``{item_id: {title, description, brand, categories}}``.

The dataset's own SIDs collide for a few duplicate listings; :func:`build_items` applies the
same rule as for built SIDs (:func:`tawin.data.sid_collisions.make_unique`) so every item gets a
unique sequence.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np

from tawin.data.dataset import ItemTable
from tawin.data.formats.csv_splits import ENCODING, pick_file
from tawin.data.sid_collisions import make_unique
from tawin.errors import DataError


def read_id_json(path: Path) -> dict[int, object]:
    """A MiniOneRec JSON map keyed by item id (``{"0": ...}``) with integer keys."""
    try:
        data = json.loads(path.read_text(encoding=ENCODING))  # a BOM is accepted, as in the CSVs
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error}); re-download or re-create the file.") from None
    if not isinstance(data, dict):
        raise DataError(
            f'{path}: must hold a JSON object keyed by item id (e.g. {{"0": ...}}), not a {type(data).__name__}.'
        )
    bad = next((k for k in data if not str(k).isdigit()), None)
    if bad is not None:
        raise DataError(f'{path}: key {bad!r} is not an integer item id ≥ 0; every key must be an item id such as "0".')
    return {int(k): v for k, v in data.items()}


def read_index(index_path: Path, item_path: Path) -> tuple[dict[int, tuple[str, ...]], dict[int, dict]]:
    """(item id → SID tokens, item id → item.json record) from the two catalogue files."""
    sid_of = {}
    for item, tokens in read_id_json(index_path).items():
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise DataError(
                f"{index_path}: item {item} has semantic ID {tokens!r}; each "
                'entry must be a list of token strings such as ["<a_1>", "<b_2>"].'
            )
        sid_of[item] = tuple(tokens)
    info_of = {item: info if isinstance(info, dict) else {} for item, info in read_id_json(item_path).items()}
    return sid_of, info_of


def find_index(folders: list[Path], name: str | None) -> tuple[Path, Path] | None:
    """(``<Name>.index.json``, ``<Name>.item.json``) from the first of `folders` holding an index file."""
    for folder in folders:
        index_path = pick_file(folder, "*.index.json", name)
        if index_path is None:
            continue
        item_path = index_path.with_name(index_path.name[: -len(".index.json")] + ".item.json")
        if not item_path.is_file():
            raise DataError(
                f"{item_path}: file not found; {index_path.name} needs "
                f"its {item_path.name} (titles and descriptions) beside it."
            )
        return index_path, item_path
    return None


def clean_description(value) -> str | None:
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


def build_items(
    item_ids: list[int],
    title_of: dict[int, str],
    description_of: dict[int, str | None],
    asin_of: dict[int, str | None],
    sid_of: dict[int, tuple[str, ...]],
) -> tuple[ItemTable, dict | None]:
    """The catalogue in id order, with unique SIDs when every item has one.

    Returns the table and the collision report as a dict (None when the items lack SIDs).
    """
    items = ItemTable(
        item_id=np.asarray(item_ids, dtype=np.int64),
        title=[title_of.get(i) or "" for i in item_ids],
        description=[description_of.get(i) for i in item_ids],
        asin=[asin_of.get(i) for i in item_ids],
        sid=[sid_of.get(i, ()) for i in item_ids],
    )
    if not (item_ids and all(items.sid)):
        return items, None
    unique_sids, report = make_unique(items.sid)
    return items.with_sids(unique_sids), report.__dict__
