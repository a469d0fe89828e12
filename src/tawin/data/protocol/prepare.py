"""Stage 1 — the paper's data protocol: a raw review log → a canonical dataset (SIDs still empty).

This is the processing of the D3 → ReRe → MiniOneRec lineage that produced the TAWin paper's
splits, applied to a log read by :mod:`tawin.data.formats.raw`. In order (config fields in brackets):

1. **Title rule** [max_title_words]: drop every interaction with an item that has no title (no
   metadata line, or an empty title) or a title of more than 20 whitespace-separated words.
2. **Time window** [window_start, window_end]: keep interactions with ``start ≤ t < end``, where
   ``start`` is 00:00:00 UTC on the first day of ``window_start`` and ``end`` is 00:00:00 UTC on the
   first day of the month *after* ``window_end`` (so ``"2018-11"`` keeps all of November 2018).
3. **k-core** [k_core]: remove users and items with fewer than k interactions (repeats count),
   recount, and repeat until nothing is removed (:func:`tawin.data.protocol.filtering.k_core_filter`).
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
None of these changes the Industrial split (``tests/unit/data/test_data_prepare_industrial.py``).

Steps 1–4 live in :mod:`tawin.data.protocol.filtering`, steps 5–7 in :mod:`tawin.data.protocol.splitting` and the
settings in :mod:`tawin.data.protocol.prepare_config`; this module runs them and writes the result.
The written folder has empty SIDs, so :func:`tawin.data.formats.canonical.load_dataset` refuses it until
``tawin items build-sids <folder>`` has filled them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tawin.config import load_config, to_dict
from tawin.data.dataset import SPLITS, Dataset, ItemTable
from tawin.data.formats.canonical import save_dataset
from tawin.data.formats.raw import SOURCE_NAMES, RawLog, Source, read_source
from tawin.data.protocol.filtering import filter_log
from tawin.data.protocol.prepare_config import PrepareConfig
from tawin.data.protocol.splitting import build_samples, make_splits, number_by_first_appearance
from tawin.errors import ConfigError, DataError

USERS_FILE = "users.parquet"
ATTRIBUTION = {
    "amazon2018": (
        "Amazon Review Data (2018): Jianmo Ni, Jiacheng Li, Julian McAuley, EMNLP 2019. Research use; cite the paper."
    ),
    "amazon2023": (
        "Amazon Reviews 2023: Yupeng Hou et al., 'Bridging Language and Items "
        "for Retrieval and Recommendation', 2024. Research use; cite the paper."
    ),
    "csv": "user-supplied interaction log",
}


@dataclass(frozen=True)
class Prepared:
    """The outcome of :func:`prepare_log`."""

    dataset: Dataset  # SIDs empty
    summary: dict  # see format_summary
    user_names: list[str]  # [U] raw id of user u


def prepare_log(
    log: RawLog, config: PrepareConfig, name: str, source: str = "", raw_files: dict | None = None
) -> Prepared:
    """Apply the protocol (module doc, steps 1–7) to a log; nothing is written."""
    problems = config.check()
    if problems:
        raise ConfigError("invalid PrepareConfig: " + "; ".join(problems) + ".")
    kept, rules, window = filter_log(log, config)
    if not kept.any():
        dropped = ", ".join(f"{r['rule']} dropped {r['interactions_dropped']:,}" for r in rules)
        raise DataError(
            f"{name}: no interaction survives the protocol "
            f"({log.user_E.size:,} read; {dropped}). Check that the metadata "
            "file matches the reviews (item ids), widen "
            "window_start/window_end, lower k_core, or set max_title_words=None."
        )
    index = np.flatnonzero(kept)  # file order
    user_E, user_codes = number_by_first_appearance(log.user_E[index])
    item_E, item_codes = number_by_first_appearance(log.item_E[index])
    splits, split_summary = make_splits(build_samples(user_E, item_E, log.time_E[index], config.max_history), config)
    items = ItemTable(
        item_id=np.arange(item_codes.size, dtype=np.int64),
        title=[log.title_I[c] or "" for c in item_codes],
        description=[log.description_I[c] for c in item_codes],
        asin=[log.item_names[c] for c in item_codes],
        sid=[()] * item_codes.size,
    )
    summary = {
        "name": name,
        "source": source,
        "raw_files": raw_files or {},
        "read": _read_summary(log),
        "rules": rules,
        "window": window,
        "kept": {"interactions": int(index.size), "users": int(user_codes.size), "items": int(item_codes.size)},
        "split": config.split,
        "split_ratio": list(config.split_ratio),
        "splits": split_summary,
    }
    meta = {
        "description": (
            f"{name}: prepared from {source or 'a raw log'} by `tawin "
            "data prepare` (TAWin/D3 protocol); semantic IDs not built yet"
        ),
        "attribution": ATTRIBUTION.get(source, ""),
        "sid_source": None,
        "users_file": USERS_FILE,
        "next_step": "tawin items build-sids <this folder>",
        "prepare": {"source": source, "raw_files": raw_files or {}, "config": to_dict(config), "summary": summary},
    }
    return Prepared(
        Dataset(name=name, items=items, splits=splits, meta=meta), summary, [log.user_names[c] for c in user_codes]
    )


def _read_summary(log: RawLog) -> dict:
    """What the raw files held: interactions, users, items, and per file its lines and skipped lines."""
    files = [
        {"path": s.path, "lines": s.lines, "bad_lines_skipped": s.skipped, "first_problem": s.first_problem}
        for s in log.stats
    ]
    return {
        "interactions": int(log.user_E.size),
        "users": len(log.user_names),
        "items": len(log.item_names),
        "bad_lines_skipped": sum(s.skipped for s in log.stats),
        "files": files,
    }


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
            f"no item metadata given while max_title_words={config.max_title_words}: "
            "every item would lack a title and be "
            "dropped; pass the metadata file / item table (--items), or set max_title_words=None to keep untitled items"
        )
    if problems:
        raise ConfigError("cannot prepare the dataset: " + "; ".join(problems) + ".")
    log = read_source(
        source, interactions, items, csv=config.csv_fields(), skip_bad_lines=config.skip_bad_lines, progress=progress
    )
    raw_files = {"interactions": Path(interactions).name, "items": Path(items).name if items is not None else None}
    prepared = prepare_log(log, config, name or default_name(interactions), source, raw_files)
    if out is not None:
        folder = save_dataset(prepared.dataset, out)
        users = pa.table(
            {
                "user": pa.array(np.arange(len(prepared.user_names)), pa.int64()),
                "raw_id": pa.array(prepared.user_names, pa.string()),
            }
        )
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
            label = (
                f"title (none {r['items_without_title']:,}, "
                f">{r['max_title_words']} words {r['items_title_too_long']:,})"
            )
        elif r["rule"] == "window":
            label = f"window [{window['start'] or '-∞'}, {window['end'] or '∞'}]"
        else:
            label = f"{r['k']}-core ({r['rounds']} rounds)"
        lines.append(
            f"  {label:<32}{-r['interactions_dropped']:>14,} interactions "
            f"{-r['users_dropped']:>10,} users {-r['items_dropped']:>9,} items"
        )
    lines.append(
        f"{'kept':<34}{kept['interactions']:>14,} interactions {kept['users']:>10,} users {kept['items']:>9,} items"
    )
    span = f"{window['start'] or 'earliest'} .. {window['end'] or 'latest'} (inclusive months, UTC)"
    if window["moved_back_years"]:
        first = window["attempts"][0]
        span += (
            f"; start moved back {window['moved_back_years']} year(s) from {first['window_start']} (items per attempt: "
            + ", ".join(f"{a['window_start']}→{a['items']:,}" for a in window["attempts"])
            + ")"
        )
    lines.append(f"{'window used':<34}{span}")
    ratio = ":".join(map(str, summary["split_ratio"])) if summary["split"] == "temporal" else "per user"
    lines.append(
        f"split {summary['split']} {ratio:<16}{'samples':>11} {'users':>10} "
        f"{'mean history':>13}   first target .. last target (UTC)"
    )
    for split in SPLITS:
        s = summary["splits"][split]
        lines.append(
            f"  {split:<32}{s['samples']:>11,} {s['users']:>10,} {s['mean_history']:>13.2f}   "
            f"{s['first_target'] or '-'} .. {s['last_target'] or '-'}"
        )
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
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a PrepareConfig field, e.g. k_core=10",
    )
    parser.add_argument(
        "--skip-bad-lines", action="store_true", help="skip and count malformed lines (= --set skip_bad_lines=true)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def prepare_main(args: argparse.Namespace) -> int:
    """``tawin data prepare``: defaults < --config YAML < --set; prints the summary table."""
    overrides = list(args.set) + (["skip_bad_lines=true"] if args.skip_bad_lines else [])
    config = load_config(PrepareConfig, args.config, overrides)
    _, summary = prepare_dataset(
        args.source, args.interactions, args.items, config, out=args.out, name=args.name, progress=not args.no_progress
    )
    print(format_summary(summary).replace("<folder>", str(args.out)))
    return 0
