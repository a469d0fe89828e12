"""Stage 2 — semantic IDs for a catalogue: embed the item texts, quantise, make them unique.

An item's semantic ID (SID) is L codes ``(c_1, ..., c_L)``, written as tokens ``<a_c1><b_c2><c_c3>``.
:func:`build_semantic_ids` embeds each item's text (:mod:`tawin.items.embed`), quantises the
embeddings with residual k-means (:mod:`tawin.items.kmeans`) and appends a disambiguation level
where codes collide (:mod:`tawin.data.sid_collisions`). By default levels 2..L use a
Sinkhorn-balanced assignment: plain residual levels collapse onto a few hub codes (on 3,000 Toys
titles one level-3 code took a third of the items); balancing lowers the final error there
(0.348 → 0.317) and the colliding items (518 → 101).

Deviation from the paper: MiniOneRec's SIDs come from an RQ-VAE over Qwen embeddings; here the
quantiser is residual k-means over all-MiniLM-L6-v2 embeddings (no training, deterministic), the
same family as the RQ-KMeans tokenisers of OneRec. The dataset's own SIDs can be kept instead;
:func:`tawin.data.sid_collisions.make_unique` resolves their collisions the same way.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tawin.data.dataset import SPLITS, Dataset, ItemTable
from tawin.data.formats.canonical import load_dataset, save_dataset
from tawin.data.sid_collisions import DEFAULT_PREFIXES, resolve_collisions
from tawin.errors import ConfigError, DataError
from tawin.items.embed import TextField, embed_items, item_texts
from tawin.items.kmeans import fit_residual_kmeans

_PREFIX_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class SIDConfig:
    """How `tawin items build-sids` turns item texts into semantic IDs."""

    levels: int = 3
    """L, residual k-means levels = SID tokens per item before disambiguation (MiniOneRec: 3)."""
    codebook_size: int = 256
    """K, codes per level (MiniOneRec: 256); capped at the number of items N when N < K."""
    seed: int = 0
    """Seed of the k-means++ initialisation; same embeddings + seed give identical SIDs."""
    kmeans_iters: int = 50
    """Maximum Lloyd iterations per level; a level stops early once no assignment changes."""
    balanced_levels: Literal["none", "residual", "all"] = "residual"
    """Levels whose assignment is Sinkhorn-balanced (every code gets ≈ N/K items): "residual" =
    levels 2..L (level 1 stays plain k-means), "all", or "none" (plain residual k-means). Plain
    residual levels collapse onto a few hub codes, which multiplies collisions."""
    sinkhorn_epsilon: float = 0.05
    """ε, temperature of the balanced assignment, relative to the mean squared norm of the
    level's input; smaller = closer to nearest-centroid (and slower to balance), larger = flatter."""
    sinkhorn_iters: int = 10
    """Sinkhorn iterations per Lloyd step (the scalings are warm-started across steps)."""
    text_fields: tuple[TextField, ...] = ("title", "description")
    """Item fields embedded, in this order, joined by ". " (empty fields are skipped)."""
    max_text_chars: int = 512
    """Characters of the joined text kept (≈128 word pieces, MiniLM's training length)."""
    batch_size: int = 64
    """Texts per encoder forward pass."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Where the encoder and k-means run; "cpu" is bit-for-bit repeatable on one machine."""
    token_prefixes: tuple[str, ...] = DEFAULT_PREFIXES
    """Token prefix per level: level l writes `<{token_prefixes[l]}_{code}>`; needs L+1 entries
    (the last one names the disambiguation level)."""

    def __post_init__(self) -> None:
        # dataset.json and plain dicts hand back lists; keep the dataclass hashable and comparable.
        for name in ("text_fields", "token_prefixes"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def check(self) -> list[str]:
        """Every bad field, each with its value, the rule and the fix (run by `load_config`)."""
        return _config_problems(self)


def require_valid(config: SIDConfig) -> None:
    """Raise one :class:`ConfigError` listing every problem of ``config``."""
    problems = config.check()
    if problems:
        raise ConfigError("invalid SIDConfig: " + " ".join(problems))


def _config_problems(config: SIDConfig) -> list[str]:
    problems = []
    for name, minimum in (
        ("levels", 1),
        ("codebook_size", 2),
        ("kmeans_iters", 1),
        ("sinkhorn_iters", 1),
        ("max_text_chars", 1),
        ("batch_size", 1),
    ):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            problems.append(f"{name}={value!r} must be an integer >= {minimum}; set it to {minimum} or more.")
    if not isinstance(config.seed, int) or isinstance(config.seed, bool):
        problems.append(f"seed={config.seed!r} must be an integer.")
    fields = config.text_fields
    if (
        not isinstance(fields, tuple)
        or not fields
        or len(set(fields)) != len(fields)
        or not set(fields) <= {"title", "description"}
    ):
        problems.append(
            f"text_fields={fields!r} must list 'title' and/or 'description' once each, e.g. ('title', 'description')."
        )
    if config.balanced_levels not in ("none", "residual", "all"):
        problems.append(f"balanced_levels={config.balanced_levels!r} must be 'none', 'residual' or 'all'.")
    epsilon = config.sinkhorn_epsilon
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        problems.append(
            f"sinkhorn_epsilon={epsilon!r} must be a number > 0 (try "
            "0.05); use balanced_levels='none' to turn balancing off."
        )
    if config.device not in ("cpu", "cuda"):
        problems.append(f"device={config.device!r} must be 'cpu' or 'cuda'.")
    prefixes = config.token_prefixes
    bad = (
        [p for p in prefixes if not isinstance(p, str) or not _PREFIX_PATTERN.match(p)]
        if isinstance(prefixes, tuple)
        else [prefixes]
    )
    if bad:
        problems.append(
            f"token_prefixes contains {bad!r}; each prefix must be a letter followed by letters/digits, e.g. 'a'."
        )
    elif len(set(prefixes)) != len(prefixes):
        problems.append(f"token_prefixes={prefixes!r} repeats a prefix; every level needs its own.")
    if isinstance(prefixes, tuple) and isinstance(config.levels, int) and len(prefixes) < config.levels + 1:
        problems.append(
            f"token_prefixes has {len(prefixes)} entries but levels={config.levels} needs {config.levels + 1} "
            "(one per level plus the disambiguation level); add prefixes or lower levels."
        )
    return problems


def level_epsilons(config: SIDConfig) -> tuple[float, ...]:
    """ε_l per level for :func:`tawin.items.kmeans.fit_residual_kmeans` (0 = plain nearest-centroid assignment)."""
    balanced = {"none": (), "residual": range(1, config.levels), "all": range(config.levels)}[config.balanced_levels]
    return tuple(float(config.sinkhorn_epsilon) if level in balanced else 0.0 for level in range(config.levels))


def codes_to_tokens(codes_NL: np.ndarray, prefixes: tuple[str, ...] = DEFAULT_PREFIXES) -> list[tuple[str, ...]]:
    """Codes int [N, L] -> N tuples of L tokens; level l writes ``<{prefixes[l]}_{code}>``."""
    codes_NL = np.asarray(codes_NL, dtype=np.int64)
    assert codes_NL.ndim == 2 and codes_NL.shape[1] <= len(prefixes), "one prefix per level"
    columns = []
    for level in range(codes_NL.shape[1]):
        column = codes_NL[:, level]
        names = [f"<{prefixes[level]}_{code}>" for code in range(int(column.max(initial=-1)) + 1)]
        columns.append([names[c] for c in column])
    return list(zip(*columns)) if columns else [() for _ in range(codes_NL.shape[0])]


# ---------------------------------------------------------------------------------------------
# Building SIDs for a catalogue and for a dataset folder


def build_semantic_ids(
    items: ItemTable, config: SIDConfig, embeddings_ND: np.ndarray | None = None, show_progress: bool = True
) -> tuple[list[tuple[str, ...]], dict]:
    """Embed the items' texts, quantise with residual k-means, make the sequences unique.

    Args:
        items: the catalogue (N items); existing ``sid`` values are ignored.
        config: :class:`SIDConfig`.
        embeddings_ND: optional precomputed float [N, D] embeddings (skips the encoder; lets a
            caller cache them). Must be row-aligned with ``items``.
    Returns:
        (N token tuples of depth L or L+1, stats dict: n_items, levels, depth, codebook_size,
        collisions_before/after, codebook_usage per level, residual_sq per level, seconds).
    """
    require_valid(config)
    if len(items) == 0:
        raise DataError("the item table is empty; semantic IDs need at least one item.")
    start = time.perf_counter()
    if embeddings_ND is None:
        texts = item_texts(items, config.text_fields, config.max_text_chars)
        embeddings_ND = embed_items(texts, config.batch_size, show_progress, config.device)
    if embeddings_ND.ndim != 2 or embeddings_ND.shape[0] != len(items):
        raise DataError(
            f"embeddings of shape {tuple(embeddings_ND.shape)} do not match the "
            f"{len(items)} items; pass one row per item, in item-table order."
        )
    embedded = time.perf_counter()
    fit = fit_residual_kmeans(
        embeddings_ND,
        config.levels,
        config.codebook_size,
        config.seed,
        config.kmeans_iters,
        level_epsilons(config),
        config.sinkhorn_iters,
        config.device,
    )
    quantised = time.perf_counter()
    unique_codes, report = resolve_collisions(fit.codes_NL)
    sids = codes_to_tokens(unique_codes, config.token_prefixes)
    after = len(sids) - len(set(sids))
    assert after == 0, "resolve_collisions must leave every SID unique"
    k = min(config.codebook_size, len(items))
    stats = {
        "n_items": len(items),
        "levels": config.levels,
        "depth": int(unique_codes.shape[1]),
        "codebook_size": k,
        "collisions_before": asdict(report),
        "collisions_after": after,
        "codebook_usage": [int(np.unique(fit.codes_NL[:, level]).size) for level in range(config.levels)],
        "residual_sq": [round(r, 6) for r in fit.residual_sq],
        "seconds": {
            "embed": round(embedded - start, 3),
            "kmeans": round(quantised - embedded, 3),
            "total": round(time.perf_counter() - start, 3),
        },
    }
    return sids, stats


def build_sids_for_dataset(
    dataset_folder: str | Path,
    output_folder: str | Path,
    config: SIDConfig,
    embeddings_ND: np.ndarray | None = None,
    show_progress: bool = True,
) -> dict:
    """Rebuild the SIDs of a dataset folder and write the result as a dataset folder.

    The output has the same items and splits with ``sid`` replaced; ``dataset.json`` gains
    ``sid_source="built"``, ``sid_config`` (the config as a dict), ``sid_stats`` and
    ``sid_collisions_resolved`` (and loses ``next_step``). Other files of the source folder (such
    as ``users.parquet`` from `tawin data prepare`) are carried over. ``output_folder`` may equal
    ``dataset_folder``; the result is read back with :func:`tawin.data.formats.canonical.load_dataset`.
    Returns the stats of :func:`build_semantic_ids`.
    """
    require_valid(config)
    source, output = Path(dataset_folder), Path(output_folder)
    dataset = load_dataset(source, allow_empty_splits=True, require_sids=False)
    sids, stats = build_semantic_ids(dataset.items, config, embeddings_ND, show_progress)
    meta = dict(
        dataset.meta,
        sid_source="built",
        sid_config=asdict(config),
        sid_stats=stats,
        sid_collisions_resolved=stats["collisions_before"],
    )
    meta.pop("next_step", None)
    canonical = {"items.parquet", "dataset.json", *(f"{name}.parquet" for name in SPLITS)}
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.extra.", dir=output.parent) as extra:
        # Copied aside first: writing in place replaces the whole folder.
        extras = [p for p in sorted(source.iterdir()) if p.name not in canonical and not p.name.startswith(".")]
        for path in extras:
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, Path(extra) / path.name)
        save_dataset(Dataset(dataset.name, dataset.items.with_sids(sids), dataset.splits, meta), output)
        for path in extras:
            shutil.move(str(Path(extra) / path.name), output / path.name)
    load_dataset(output)
    return stats
