"""Stage 1 — a canonical dataset from CSV splits alone (ReRe's or MiniOneRec's, no ``.inter`` files).

The reader of the ``csv-splits`` layout (:mod:`tawin.data.formats.registry`; ReRe CSVs are written
by :mod:`tawin.data.formats.rere_export`). The split CSVs lie in the folder given or in its
``rere/`` or ``minionerec/`` folder; the columns and what is read are in
:mod:`tawin.data.formats.csv_splits`. The catalogue comes from

* ``index/<Name>.index.json`` + ``<Name>.item.json`` when they lie beside the split folders
  (required for MiniOneRec CSVs; for ReRe CSVs they carry semantic IDs and descriptions over,
  and must number items as the CSVs do — ReRe's own ids are not MiniOneRec's, which the title
  check below catches);
* otherwise the titles in the CSVs, completed by ReRe's ``info/<name>.txt`` when present. Such a
  catalogue has no semantic IDs: build them with ``tawin items build-sids``.

Every item id names one title and one ASIN across all files, and one ASIN names one item id; a
second value is an error naming both places. With a catalogue file, an item the CSVs name that is
not in it is an error; without one, every id the CSVs name is an item, with the title and ASIN of
its cells (an id seen only in histories included: a sequence's first item need never be a
target). An id that repeats another item's ASIN is refused rather than added as a copy of it;
titles may repeat (the Amazon data has duplicate listings). User ids become integers: decimal ids
are kept, MiniOneRec's ``A<int>`` lose the ``A``, any other ids (ReRe's reviewer ids) are
numbered 0.. in order of first appearance (train, then valid, then test).
"""

from __future__ import annotations

import re
from pathlib import Path

from tawin.data.dataset import SPLITS, Dataset, Interactions
from tawin.data.formats.csv_splits import (
    ASIN_COLUMNS,
    CsvFlavour,
    CsvSplit,
    find_split_csvs,
    pick_file,
    read_csv_split,
    read_info_txt,
)
from tawin.data.formats.layout import LayoutNotFound
from tawin.data.formats.minionerec_index import build_items, clean_description, find_index, read_index
from tawin.errors import DataError

RENUMBER_FIX = (
    "The two files number items differently (ReRe's own ids are not MiniOneRec's): use the catalogue file that came "
    "with these CSVs, or remove it to build the catalogue from the CSV titles."
)


def _cells(
    split: CsvSplit, values_of_history: list[list] | None, values_of_target: list | None, names: tuple[str, str]
):
    """(line, id field, item, value field, value) for every history entry and target of `split`."""
    if values_of_history is None or values_of_target is None:
        return
    for line, history, target, history_values, target_value in zip(
        split.line, split.history, split.target, values_of_history, values_of_target
    ):
        for item, value in zip(history, history_values):
            yield line, "history_item_id", item, names[0], value
        yield line, "item_id", target, names[1], target_value


def _merge(split: CsvSplit, cells, value_of: dict, origin_of: dict, what: str, fix: str) -> None:
    """Add each (item, value) of `cells` to `value_of`; a second, different value is an error.

    Blank values are skipped; `origin_of` records where each value came from, for the message.
    """
    for line, _, item, field, value in cells:
        if not value:
            continue
        if not value_of.get(item):
            value_of[item], origin_of[item] = value, f"line {line} of {split.path.parent.name}/{split.path.name}"
        elif value_of[item] != value:
            hint = (
                fix
                if origin_of[item] == origin_of.get("catalogue")
                else "Correct the id or the value on one of the two lines."
            )
            raise DataError(
                f"{split.path}: line {line}, field '{field}' gives item "
                f"{item} the {what} {value[:80]!r}, but {origin_of[item]} "
                f"gives it {value_of[item][:80]!r}; an item id must have one {what}. {hint}"
            )


def _check_one_item_per_asin(split: CsvSplit, cells, item_of: dict[str, tuple[int, str]]) -> None:
    """An ASIN names one product, so two item ids with one ASIN are a wrong id, not two items.

    Without a catalogue file the CSV cells are the catalogue, and an id seen only in a history is a
    real item (the first item of a user's sequence need never be a target); but an id whose cells
    repeat another item's ASIN would enter the catalogue as a copy of that item. `item_of` maps each
    ASIN to (item, where it was first seen).
    """
    for line, _, item, field, asin in cells:
        if not asin:
            continue
        here = f"line {line} of {split.path.parent.name}/{split.path.name}"
        first_item, origin = item_of.setdefault(asin, (item, here))
        if first_item != item:
            raise DataError(
                f"{split.path}: line {line}, field '{field}' gives item {item} the ASIN {asin!r}, but {origin} gives "
                f"that ASIN to item {first_item}; an ASIN names one item, so one of the two item ids is wrong. "
                "Correct the id on one of the two lines (or drop the line)."
            )


def _check_known(split: CsvSplit, known: set[int], catalogue: str) -> None:
    """Every item a split mentions must be in the catalogue file (else it has no SID or title)."""
    for line, history, target in zip(split.line, split.history, split.target):
        for field, item in [("history_item_id", i) for i in history] + [("item_id", target)]:
            if item not in known:
                raise DataError(
                    f"{split.path}: line {line}, field '{field}' refers to item {item}, which is not in {catalogue}; "
                    "add the item there or drop the line."
                )


def _number_users(splits: dict[str, CsvSplit]) -> tuple[dict[str, list[int]], str]:
    """Integer user ids per split, and how they were made (for ``dataset.json``)."""
    names = [user for split in splits.values() for user in split.user]
    if all(u.isascii() and u.isdigit() for u in names):
        numbers, how = [int(u) for u in names], "the CSV user ids"
    elif all(re.fullmatch(r"A\d+", u) for u in names) and splits["train"].flavour is CsvFlavour.MINIONEREC:
        numbers, how = [int(u[1:]) for u in names], "MiniOneRec's A<int> user ids without the A"
    else:
        first: dict[str, int] = {}
        numbers = [first.setdefault(u, len(first)) for u in names]
        how = "the CSV user ids numbered 0.. by first appearance (train, valid, test)"
    out, start = {}, 0
    for name, split in splits.items():
        out[name], start = numbers[start : start + len(split.user)], start + len(split.user)
    return out, how


def _read_splits(files: dict[str, Path]) -> dict[str, CsvSplit]:
    splits = {split: read_csv_split(files[split]) for split in SPLITS}
    flavours = {split.flavour for split in splits.values()}
    if len(flavours) > 1:
        described = ", ".join(f"{s.path} is a {s.flavour.value} CSV" for s in splits.values())
        raise DataError(
            f"{described}; the train, valid and test CSVs must come from the same source (ReRe or MiniOneRec)."
        )
    return splits


def _catalogue(base: Path, splits: dict[str, CsvSplit], name: str | None, index: tuple[Path, Path] | None):
    """(item ids, titles, descriptions, ASINs, SIDs) from the catalogue files and the CSV cells."""
    sid_of: dict = {}
    description_of: dict = {}
    title_of: dict[int, str] = {}
    origin_of: dict = {}
    known = None
    info_txt = pick_file(base / "info", "*.txt", name) if index is None else None
    if index is not None:
        sid_of, info_of = read_index(*index)
        known, origin_of["catalogue"] = set(sid_of) | set(info_of), f"{index[0].name} or {index[1].name}"
        for item, info in info_of.items():
            title_of[item], origin_of[item] = info.get("title") or "", origin_of["catalogue"]
            description_of[item] = clean_description(info.get("description"))
    elif info_txt is not None:
        title_of = read_info_txt(info_txt)
        known, origin_of = set(title_of), dict.fromkeys(title_of, info_txt.name) | {"catalogue": info_txt.name}
    asin_of: dict = {}
    item_of_asin: dict = {}
    for split in splits.values():
        if known is not None:
            _check_known(split, known, origin_of["catalogue"])
        _merge(
            split,
            _cells(split, split.history_title, split.target_title, ("history_item_title", "item_title")),
            title_of,
            origin_of,
            "title",
            RENUMBER_FIX,
        )
        asin_cells = list(_cells(split, split.history_asin, split.target_asin, ASIN_COLUMNS))
        _merge(split, asin_cells, asin_of, {}, "ASIN", "")
        _check_one_item_per_asin(split, asin_cells, item_of_asin)
    if known is None:
        known = {item for split in splits.values() for item in split.target + [i for h in split.history for i in h]}
    return sorted(known), title_of, description_of, asin_of, sid_of


def import_csv_splits(
    base: str | Path, files: dict[str, Path], name: str | None = None, index_folders: list[Path] | None = None
) -> Dataset:
    """Build a :class:`Dataset` from the split CSVs `files` found under `base` (see module doc).

    `index_folders` are searched, in order, for ``<Name>.index.json``/``.item.json``
    (default: ``base/index``).
    """
    base = Path(base)
    index_folders = index_folders if index_folders is not None else [base / "index"]
    splits = _read_splits(files)
    flavour = splits["train"].flavour
    index = find_index(index_folders, name)
    if flavour is CsvFlavour.MINIONEREC and index is None:
        raise DataError(
            f"{files['train']}: MiniOneRec CSVs carry no catalogue, and no <Name>.index.json was found in "
            f"{', '.join(str(f) for f in index_folders)}; put <Name>.index.json and <Name>.item.json in index/ beside "
            "the split folders (as MiniOneRec's data/Amazon/index does)."
        )
    items, report = build_items(*_catalogue(base, splits, name, index))
    users, how = _number_users(splits)
    if name is None:
        name = index[0].name[: -len(".index.json")] if index is not None else files["train"].stem
    interactions = {
        s: Interactions.from_lists(users[s], splits[s].history, splits[s].target, splits[s].timestamp) for s in SPLITS
    }
    meta = {
        "description": f"{name}: imported from {flavour.value} CSV splits"
        + (f" with {index[0].name}" if index else ""),
        "sid_source": "dataset" if report is not None else None,
        "sid_collisions_resolved": report,
        "user_ids": how,
    }
    return Dataset(name=name, items=items, splits=interactions, meta=meta)


def read_csv_layout(root: str | Path, name: str | None = None) -> Dataset:
    """The reader of the layout: :func:`import_csv_splits` on the first of `root`, ``root/rere`` and
    ``root/minionerec`` that holds a CSV for each split; :class:`LayoutNotFound` when none does.

    The catalogue files are looked for in ``index/`` beside the CSVs, then in ``root/index`` and
    ``root/minionerec/index``.
    """
    root = Path(root)
    partial = []
    for base in (root, root / "rere", root / "minionerec"):
        files = find_split_csvs(base, name)
        if len(files) == len(SPLITS):
            return import_csv_splits(base, files, name, [base / "index", root / "index", root / "minionerec" / "index"])
        if files:
            missing = [split for split in SPLITS if split not in files]
            partial.append(
                f"{base} has {', '.join(str(files[s].relative_to(base)) for s in files)} "
                f"but no {' or '.join(missing)} split"
            )
    found = "; ".join(partial) if partial else "no split CSVs"
    raise LayoutNotFound(
        f"{root}: no train, valid and test split CSVs in it or its rere/ or minionerec/ folder ({found}).", partial
    )
