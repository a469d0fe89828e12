"""Stage 2 — semantic IDs: residual k-means over item text embeddings, plus collision handling.

An item's semantic ID (SID) is L codes ``(c_1, ..., c_L)``, written as tokens ``<a_c1><b_c2><c_c3>``.
Residual k-means (RQ-KMeans) builds them level by level:

    r_0 = x,   c_l = argmin_k || r_{l-1} - C_l[k] ||²,   r_l = r_{l-1} - C_l[c_l],

where codebook C_l (K × D) is fitted by Lloyd's k-means (seeded k-means++ start) on the level's
residuals r_{l-1}, so x ≈ Σ_l C_l[c_l] and the reconstruction error ||r_l||² falls with l.
By default levels 2..L replace the argmin by a Sinkhorn-balanced assignment (every code gets
≈ N/K items, as in MiniOneRec's RQ-VAE, whose last level uses Sinkhorn): plain residual levels
collapse onto a few hub codes (on 3,000 Toys titles one level-3 code took a third of the items);
balancing lowers the final error there (0.348 → 0.317) and the colliding items (518 → 101).

Items whose L codes coincide (in practice duplicate listings with the same text) get one more
level, a disambiguation index ``<d_0>, <d_1>, ...`` by item position; when any collision exists
every item gets it (``<d_0>`` when alone) so that all SIDs of a dataset have the same depth.

Deviation from the paper: MiniOneRec's SIDs come from an RQ-VAE over Qwen embeddings; here the
quantiser is residual k-means over all-MiniLM-L6-v2 embeddings (no training, deterministic), the
same family as the RQ-KMeans tokenisers of OneRec. The dataset's own SIDs can be kept instead;
:func:`make_unique` resolves their collisions the same way.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tawin.data.dataset import SPLITS, Dataset, ItemTable
from tawin.data.io import load_dataset, load_split, save_dataset
from tawin.errors import ConfigError, DataError
from tawin.items.embed import TextField, embed_items, item_texts

DEFAULT_PREFIXES: tuple[str, ...] = ("a", "b", "c", "d", "e", "f", "g", "h")
_PREFIX_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_ASSIGN_CHUNK = 65536  # rows per distance block: bounds memory at chunk × K floats


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
    for name, minimum in (("levels", 1), ("codebook_size", 2), ("kmeans_iters", 1), ("sinkhorn_iters", 1), ("max_text_chars", 1), ("batch_size", 1)):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            problems.append(f"{name}={value!r} must be an integer >= {minimum}; set it to {minimum} or more.")
    if not isinstance(config.seed, int) or isinstance(config.seed, bool):
        problems.append(f"seed={config.seed!r} must be an integer.")
    fields = config.text_fields
    if not isinstance(fields, tuple) or not fields or len(set(fields)) != len(fields) or not set(fields) <= {"title", "description"}:
        problems.append(f"text_fields={fields!r} must list 'title' and/or 'description' once each, e.g. ('title', 'description').")
    if config.balanced_levels not in ("none", "residual", "all"):
        problems.append(f"balanced_levels={config.balanced_levels!r} must be 'none', 'residual' or 'all'.")
    epsilon = config.sinkhorn_epsilon
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        problems.append(f"sinkhorn_epsilon={epsilon!r} must be a number > 0 (try 0.05); use balanced_levels='none' to turn balancing off.")
    if config.device not in ("cpu", "cuda"):
        problems.append(f"device={config.device!r} must be 'cpu' or 'cuda'.")
    prefixes = config.token_prefixes
    bad = [p for p in prefixes if not isinstance(p, str) or not _PREFIX_PATTERN.match(p)] if isinstance(prefixes, tuple) else [prefixes]
    if bad:
        problems.append(f"token_prefixes contains {bad!r}; each prefix must be a letter followed by letters/digits, e.g. 'a'.")
    elif len(set(prefixes)) != len(prefixes):
        problems.append(f"token_prefixes={prefixes!r} repeats a prefix; every level needs its own.")
    if isinstance(prefixes, tuple) and isinstance(config.levels, int) and len(prefixes) < config.levels + 1:
        problems.append(
            f"token_prefixes has {len(prefixes)} entries but levels={config.levels} needs {config.levels + 1} "
            "(one per level plus the disambiguation level); add prefixes or lower levels."
        )
    return problems


def level_epsilons(config: SIDConfig) -> tuple[float, ...]:
    """ε_l per level for :func:`fit_residual_kmeans` (0 = plain nearest-centroid assignment)."""
    balanced = {"none": (), "residual": range(1, config.levels), "all": range(config.levels)}[config.balanced_levels]
    return tuple(float(config.sinkhorn_epsilon) if level in balanced else 0.0 for level in range(config.levels))


# ---------------------------------------------------------------------------------------------
# Residual k-means


@dataclass(frozen=True)
class ResidualCodebooks:
    """The fitted quantiser. x_n ≈ Σ_l codebooks[l][codes_NL[n, l]]."""

    codes_NL: np.ndarray  # int64 [N, L]
    codebooks: list[np.ndarray]  # L × float32 [K, D], K = min(codebook_size, N)
    residual_sq: list[float]  # L: mean_n ||r_l||² after each level (the reconstruction error)


def _nearest(x_ND: torch.Tensor, c_KD: torch.Tensor, x_sq_N: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin_k ||x_n - c_k||² and that squared distance per row ([N] int64, [N] float).

    ``x_sq_N`` = ||x_n||², passed in because it is fixed across Lloyd steps.
    """
    c_sq_K = (c_KD * c_KD).sum(1)
    assign, dist = [], []
    for start in range(0, x_ND.shape[0], _ASSIGN_CHUNK):
        x = x_ND[start : start + _ASSIGN_CHUNK]
        d_NK = torch.addmm(c_sq_K[None, :], x, c_KD.T, alpha=-2.0)
        best, index = d_NK.min(1)
        assign.append(index)
        dist.append((best + x_sq_N[start : start + _ASSIGN_CHUNK]).clamp_min(0.0))
    return torch.cat(assign), torch.cat(dist)


def _kmeans_pp_init(x_ND: torch.Tensor, k: int, generator: torch.Generator, x_sq_N: torch.Tensor) -> torch.Tensor:
    """k-means++ seeding: each new centre is drawn with probability ∝ D(x)², seeded."""
    n = x_ND.shape[0]

    def sq_dist_to(index: int) -> torch.Tensor:
        return (x_sq_N - 2.0 * (x_ND @ x_ND[index]) + x_sq_N[index]).clamp_min(0.0)

    first = int(torch.randint(n, (1,), generator=generator))
    centres = [first]
    d2_N = sq_dist_to(first)
    for _ in range(1, k):
        weights = d2_N.double().cpu()
        if float(weights.sum()) <= 0.0:  # fewer distinct points than k: fill with unused points
            weights = torch.ones(n, dtype=torch.float64)
            weights[centres] = 0.0
        centres.append(int(torch.multinomial(weights, 1, generator=generator)))
        d2_N = torch.minimum(d2_N, sq_dist_to(centres[-1]))
    return x_ND[centres].clone()


def _balanced(x_ND: torch.Tensor, c_KD: torch.Tensor, x_sq_N: torch.Tensor, epsilon: float, v_K: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sinkhorn-balanced assignment: the hard rounding of the entropic transport plan

        P_nk = u_n v_k exp(-||x_n - c_k||² / (ε E)),   Σ_k P_nk = 1,   Σ_n P_nk = N/K,

    with E = mean_n ||x_n||² (so ε is scale-free), i.e. a_n = argmax_k v_k exp(-d_nk / (ε E)).
    ``v_K`` (float64) warm-starts the column scaling from the previous Lloyd step, so a few
    iterations suffice. Returns (assignment [N], its squared distance [N], v_K).
    """
    n, k = x_ND.shape[0], c_KD.shape[0]
    d_NK = torch.addmm((c_KD * c_KD).sum(1)[None, :], x_ND, c_KD.T, alpha=-2.0).add_(x_sq_N[:, None]).clamp_min_(0.0)
    logits_NK = d_NK.double().div_(-epsilon * float(x_sq_N.mean().clamp_min(1e-12)))
    kernel_NK = logits_NK.sub_(logits_NK.max(1, keepdim=True).values).exp_()  # row max 1: no overflow
    for _ in range(iters):
        u_N = 1.0 / (kernel_NK @ v_K).clamp_min(1e-300)
        v_K = (n / k) / (kernel_NK.T @ u_N).clamp_min(1e-300)
    assign_N = kernel_NK.mul_(v_K[None, :]).argmax(1)
    return assign_N, d_NK.gather(1, assign_N[:, None]).squeeze(1), v_K


def _means(x_ND: torch.Tensor, assign_N: torch.Tensor, centroids_KD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster means (empty clusters keep their centroid) and the indices of empty clusters."""
    k = centroids_KD.shape[0]
    counts_K = torch.bincount(assign_N, minlength=k)
    sums_KD = torch.zeros_like(centroids_KD).index_add_(0, assign_N, x_ND)
    filled = counts_K > 0
    means_KD = torch.where(filled[:, None], sums_KD / counts_K.clamp_min(1)[:, None].to(x_ND.dtype), centroids_KD)
    return means_KD, torch.nonzero(~filled).flatten()


def kmeans(x_ND: torch.Tensor, k: int, generator: torch.Generator, iters: int, epsilon: float = 0.0, sinkhorn_iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from a k-means++ start; with ``epsilon > 0`` the assignment is balanced.

    Plain (ε = 0): empty clusters are re-seeded with the points farthest from their centres
    (largest first, ties by position), and the returned assignment is the argmin over the
    returned centroids. Balanced (ε > 0): each step assigns with :func:`_balanced`, and the
    returned centroids are the means of the returned assignment, so the level's error never
    exceeds the input's energy. Returns (centroids float [k, D], assignment int64 [N]).
    """
    x_sq_N = (x_ND * x_ND).sum(1)
    centroids_KD = _kmeans_pp_init(x_ND, k, generator, x_sq_N)
    v_K = torch.ones(k, dtype=torch.float64, device=x_ND.device)

    def assign(c_KD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal v_K
        if epsilon <= 0.0:
            return _nearest(x_ND, c_KD, x_sq_N)
        assign_N, dist_N, v_K = _balanced(x_ND, c_KD, x_sq_N, epsilon, v_K, sinkhorn_iters)
        return assign_N, dist_N

    assign_N, dist_N = assign(centroids_KD)
    for _ in range(iters):
        centroids_KD, empty = _means(x_ND, assign_N, centroids_KD)
        if empty.numel():
            farthest = torch.argsort(dist_N, descending=True, stable=True)[: empty.numel()]
            centroids_KD[empty[: farthest.numel()]] = x_ND[farthest]
        new_assign_N, dist_N = assign(centroids_KD)
        converged = bool(torch.equal(new_assign_N, assign_N)) and not empty.numel()
        assign_N = new_assign_N
        if converged:
            break
    if epsilon > 0.0:
        centroids_KD, _ = _means(x_ND, assign_N, centroids_KD)
    return centroids_KD, assign_N


def fit_residual_kmeans(
    embeddings_ND: np.ndarray,
    levels: int,
    codebook_size: int,
    seed: int,
    iters: int,
    epsilons: tuple[float, ...] | None = None,
    sinkhorn_iters: int = 10,
    device: str = "cpu",
) -> ResidualCodebooks:
    """Residual k-means: level 1 clusters the embeddings, level l the residuals of level l-1.

    Args:
        embeddings_ND: float [N, D] item embeddings.
        levels: L; codebook_size: K (capped at N); seed: k-means++ seed; iters: Lloyd steps per level.
        epsilons: per-level Sinkhorn temperature ε_l (0 = plain nearest-centroid k-means);
            None = all plain.
        sinkhorn_iters: Sinkhorn iterations per Lloyd step on balanced levels.
    Returns:
        :class:`ResidualCodebooks` with codes int64 [N, L].
    """
    n = int(embeddings_ND.shape[0])
    assert n > 0, "residual k-means needs at least one item"
    epsilons = tuple(epsilons) if epsilons is not None else (0.0,) * levels
    assert len(epsilons) == levels, "one epsilon per level"
    k = min(codebook_size, n)
    generator = torch.Generator().manual_seed(seed)
    residual_ND = torch.as_tensor(np.asarray(embeddings_ND, dtype=np.float32), device=device).clone()
    codes, codebooks, residual_sq = [], [], []
    for epsilon in epsilons:
        centroids_KD, assign_N = kmeans(residual_ND, k, generator, iters, epsilon, sinkhorn_iters)
        residual_ND = residual_ND - centroids_KD[assign_N]
        codes.append(assign_N.cpu())
        codebooks.append(centroids_KD.cpu().numpy())
        residual_sq.append(float((residual_ND * residual_ND).sum(1).mean()))
    return ResidualCodebooks(torch.stack(codes, 1).numpy().astype(np.int64), codebooks, residual_sq)


def residual_kmeans(
    embeddings_ND: np.ndarray, levels: int, codebook_size: int, seed: int, iters: int, epsilons: tuple[float, ...] | None = None, sinkhorn_iters: int = 10
) -> np.ndarray:
    """Codes int64 [N, L] of :func:`fit_residual_kmeans` (same arguments)."""
    return fit_residual_kmeans(embeddings_ND, levels, codebook_size, seed, iters, epsilons, sinkhorn_iters).codes_NL


# ---------------------------------------------------------------------------------------------
# Collisions and tokens


@dataclass(frozen=True)
class CollisionReport:
    """What :func:`resolve_collisions` found before it made every sequence unique."""

    shared_sids: int
    """Distinct code sequences held by two or more items."""
    colliding_items: int
    """Items holding such a shared sequence."""
    largest_group: int
    """Most items sharing one sequence (1 when there is no collision)."""
    added_level: bool
    """Whether the disambiguation level was appended (iff shared_sids > 0)."""


def resolve_collisions(codes_NL: np.ndarray) -> tuple[np.ndarray, CollisionReport]:
    """Make every row unique by appending a disambiguation index when any rows coincide.

    The index of item n is its rank, by position, among the items with the same L codes
    (0 for an item alone), so the result is int64 [N, L+1] when a collision exists and an
    unchanged copy [N, L] otherwise.
    """
    codes_NL = np.asarray(codes_NL, dtype=np.int64)
    n = codes_NL.shape[0]
    if n == 0:
        return codes_NL.copy(), CollisionReport(0, 0, 0, False)
    _, group_N, counts_G = np.unique(codes_NL, axis=0, return_inverse=True, return_counts=True)
    group_N = group_N.reshape(-1)
    shared = counts_G > 1
    report = CollisionReport(int(shared.sum()), int(counts_G[shared].sum()), int(counts_G.max()), bool(shared.any()))
    if not report.added_level:
        return codes_NL.copy(), report
    order_N = np.argsort(group_N, kind="stable")  # items grouped, position order inside a group
    sorted_groups = group_N[order_N]
    rank_sorted = np.arange(n) - np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank_N = np.empty(n, dtype=np.int64)
    rank_N[order_N] = rank_sorted
    return np.concatenate([codes_NL, rank_N[:, None]], axis=1), report


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


def make_unique(sid_tokens: list[tuple[str, ...]], prefix: str | None = None) -> tuple[list[tuple[str, ...]], CollisionReport]:
    """:func:`resolve_collisions` on token tuples (e.g. a dataset's own MiniOneRec SIDs).

    All tuples must have the same depth L. When any collide, each gets one more token
    ``<{prefix}_{rank}>``; ``prefix`` defaults to the L-th default prefix ("d" after a, b, c).
    """
    depths = {len(s) for s in sid_tokens}
    if len(depths) > 1 or 0 in depths:
        raise DataError(f"semantic IDs have depths {sorted(depths)}; every item needs a non-empty SID of one common depth before collisions can be resolved.")
    if not sid_tokens:
        return [], CollisionReport(0, 0, 0, False)
    depth = depths.pop()
    if prefix is None:
        assert depth < len(DEFAULT_PREFIXES), "pass a prefix for SIDs deeper than the default prefixes"
        prefix = DEFAULT_PREFIXES[depth]
    tokens_NL = np.array([list(s) for s in sid_tokens], dtype=object)
    codes_NL = np.stack([np.unique(tokens_NL[:, level].astype(str), return_inverse=True)[1].reshape(-1) for level in range(depth)], 1)
    unique_codes, report = resolve_collisions(codes_NL)
    if not report.added_level:
        return [tuple(s) for s in sid_tokens], report
    return [tuple(s) + (f"<{prefix}_{int(r)}>",) for s, r in zip(sid_tokens, unique_codes[:, depth])], report


# ---------------------------------------------------------------------------------------------
# Building SIDs for a catalogue and for a dataset folder


def build_semantic_ids(items: ItemTable, config: SIDConfig, embeddings_ND: np.ndarray | None = None, show_progress: bool = True) -> tuple[list[tuple[str, ...]], dict]:
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
        raise DataError(f"embeddings of shape {tuple(embeddings_ND.shape)} do not match the {len(items)} items; pass one row per item, in item-table order.")
    embedded = time.perf_counter()
    fit = fit_residual_kmeans(
        embeddings_ND, config.levels, config.codebook_size, config.seed, config.kmeans_iters, level_epsilons(config), config.sinkhorn_iters, config.device
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


def read_items(path: str | Path) -> ItemTable:
    """items.parquet without the SID checks of :func:`tawin.data.io.load_items`.

    Missing or empty ``sid`` values become ``()``. Item ids must still be unique integers >= 0.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; a dataset folder needs items.parquet (create one with `tawin data import`).")
    table = pq.read_table(path)
    missing = [c for c in ("item_id", "title") if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; items.parquet needs 'item_id' and 'title'.")
    if not pa.types.is_integer(table.column("item_id").type) or table.column("item_id").null_count:
        raise DataError(f"{path}: field 'item_id' must hold integers (int64) in every row.")
    item_id = table.column("item_id").to_numpy().astype(np.int64)
    if (item_id < 0).any() or np.unique(item_id).size != item_id.size:
        raise DataError(f"{path}: field 'item_id' must hold unique integers >= 0; fix the duplicated or negative ids.")
    n = len(item_id)

    def column(name: str) -> list:
        return table.column(name).to_pylist() if name in table.column_names else [None] * n

    titles = ["" if t is None else str(t) for t in column("title")]
    sids = [tuple(s) if s else () for s in column("sid")]
    return ItemTable(item_id, titles, column("description"), column("asin"), sids)


def read_dataset_without_sids(folder: str | Path) -> Dataset:
    """A dataset folder whose items may lack SIDs (splits are validated as usual)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found. Pass a folder made by `tawin data import`.")
    items = read_items(folder / "items.parquet")
    splits = {name: load_split(folder / f"{name}.parquet", items.item_id) for name in SPLITS}
    meta_path = folder / "dataset.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return Dataset(name=meta.get("name", folder.name), items=items, splits=splits, meta=meta)


def build_sids_for_dataset(dataset_folder: str | Path, output_folder: str | Path, config: SIDConfig, embeddings_ND: np.ndarray | None = None, show_progress: bool = True) -> dict:
    """Rebuild the SIDs of a dataset folder and write the result as a dataset folder.

    The output has the same items and splits with ``sid`` replaced; ``dataset.json`` gains
    ``sid_source="built"``, ``sid_config`` (the config as a dict), ``sid_stats`` and
    ``sid_collisions_resolved`` (and loses ``next_step``). Other files of the source folder (such
    as ``users.parquet`` from `tawin data prepare`) are carried over. ``output_folder`` may equal
    ``dataset_folder``; the result is read back with :func:`tawin.data.io.load_dataset`.
    Returns the stats of :func:`build_semantic_ids`.
    """
    require_valid(config)
    source, output = Path(dataset_folder), Path(output_folder)
    dataset = read_dataset_without_sids(source)
    sids, stats = build_semantic_ids(dataset.items, config, embeddings_ND, show_progress)
    meta = dict(dataset.meta, sid_source="built", sid_config=asdict(config), sid_stats=stats, sid_collisions_resolved=stats["collisions_before"])
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
