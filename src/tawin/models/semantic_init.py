"""Stage 3 — semantic initialisation of the item-code token embeddings (``model.item_embedding_init``).

A semantic-ID token such as ``<b_7>`` stands for a known group of items: those whose SID holds it.
With ``item_embedding_init: titles`` its embedding row starts from what those items' titles say
instead of from noise (issue #23, item 2):

1. :func:`item_title_vectors` — each item's title embedded by all-MiniLM-L6-v2
   (:mod:`tawin.items.embed`), x_n ∈ R^384, cached on disk under the sha256 of the titles;
2. :func:`code_text_vectors` — residual per level, the way a residual quantiser reads its codes.
   With μ(p) the mean of x over the items whose SID starts with the prefix p (μ of the empty
   prefix = the catalogue mean), item n with SID (t_1, …, t_L) gives its level-l token t_l the
   residual r_n^l = x_n − μ(t_1 … t_{l−1}), and each token's vector is the mean of the residuals
   it gets: v(t) = mean r_n^l. A level-1 code is its items' mean less the catalogue mean (the
   common component of one catalogue's titles would otherwise make every level-1 row alike); a
   deeper code is the mean offset of its items from their parent groups;
3. :func:`embedding_rows` — v(t) is carried to the model width H by a fixed, seeded orthonormal
   projection (an isometry when H ≥ 384, a random H-dimensional subspace below) and given the mean
   and root-mean-square spread of the random rows it replaces: only the directions change, so the
   norms that the training dynamics see stay those of the model's own initialisation. A token whose
   v(t) is zero keeps its random row: every item under it is alone under its parent prefix (as under
   most disambiguation codes), so the titles tell nothing about it.

It only needs the SIDs and the titles, so it works for imported SIDs (no codebook); for SIDs that
tawin built, the level-1 vectors are the k-means centroids less the catalogue mean. The output head
gets the same directions when it is not tied to the input embeddings. Only a freshly built model is
initialised (:func:`tawin.models.build.build_recommender`: all code tokens of the built-in model, the
newly added ones of a pretrained model); a loaded checkpoint keeps its weights.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tawin.checkpoint import umask
from tawin.data.dataset import ItemTable
from tawin.items.embed import EMBED_DIM, MODEL_PACKAGE, embed_items, item_texts
from tawin.models.config import ItemEmbeddingInit

CACHE_ENV = "TAWIN_CACHE_DIR"
"""Environment variable naming the cache folder (default ``$XDG_CACHE_HOME/tawin`` or ``~/.cache/tawin``)."""
TEXT_FIELDS = ("title",)
"""Item fields embedded. Titles only: on 2 shared CPU cores the 3,686 Industrial titles took 43–50 s
(plus 5 s to load the encoder), titles with descriptions (≤ 512 characters) 265 s. A cached run
spends about 0.5 s here."""
NO_TEXT_TOLERANCE = 1e-6
"""A projected vector shorter than this fraction of the longest is taken as zero (no text signal)."""


# --------------------------------------------------------------------------------------- the math


def code_text_vectors(sids: list[tuple[str, ...]], item_vectors_ND: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Each code token's text vector v(t) = mean over its (item n, level l) of x_n − μ(n's prefix of length l−1).

    Args:
        sids: N token tuples, the items' semantic IDs (any depth; a token may recur across levels).
        item_vectors_ND: float [N, D], one text embedding per item, row-aligned with `sids`.
    Returns:
        (the T distinct tokens, sorted; float64 [T, D] their vectors, in that order).
    """
    x_ND = np.asarray(item_vectors_ND, dtype=np.float64)
    assert x_ND.ndim == 2 and x_ND.shape[0] == len(sids) > 0, "one vector per item"
    tokens = sorted({token for sid in sids for token in sid})
    index = {token: i for i, token in enumerate(tokens)}
    sums_TD = np.zeros((len(tokens), x_ND.shape[1]))
    counts_T = np.zeros(len(tokens))
    group_N = np.zeros(len(sids), dtype=np.int64)  # id of each item's prefix of the current length
    for level in range(max(len(sid) for sid in sids)):
        size_G = np.bincount(group_N).astype(np.float64)
        mean_GD = np.zeros((len(size_G), x_ND.shape[1]))
        np.add.at(mean_GD, group_N, x_ND)
        mean_GD /= np.maximum(size_G, 1)[:, None]
        # -1: the item's SID ended above this level; it joins no group that a deeper token reads.
        token_N = np.array([index[sid[level]] if len(sid) > level else -1 for sid in sids])
        has_N = token_N >= 0
        np.add.at(sums_TD, token_N[has_N], x_ND[has_N] - mean_GD[group_N[has_N]])
        np.add.at(counts_T, token_N[has_N], 1.0)
        group_N = np.unique(group_N * (len(tokens) + 1) + token_N + 1, return_inverse=True)[1].reshape(-1)
    return tokens, sums_TD / counts_T[:, None]


def random_projection(d_in: int, d_out: int, seed: int) -> np.ndarray:
    """float64 [d_in, d_out], Haar-random with orthonormal columns (d_in ≥ d_out) or rows (d_in < d_out)."""
    gaussian = np.random.default_rng(seed).standard_normal((max(d_in, d_out), min(d_in, d_out)))
    # torch's LAPACK, not numpy's: numpy's OpenBLAS threads fight torch's for the cores (3.6 s vs 0.03 s on 2 cores).
    q, r = (factor.numpy() for factor in torch.linalg.qr(torch.from_numpy(gaussian)))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)  # QR's sign convention would bias the directions
    return q if d_in >= d_out else q.T


def embedding_rows(vectors_TD: np.ndarray, random_rows_TH: np.ndarray, seed: int) -> np.ndarray:
    """The T tokens' new rows: the projected text directions at the random rows' mean and spread.

    Args:
        vectors_TD: float [T, D], the tokens' text vectors (:func:`code_text_vectors`).
        random_rows_TH: float [T, H], the rows the model drew for the same tokens.
        seed: picks the projection R^D → R^H (:func:`random_projection`).
    Returns:
        float64 [T, H]: row t = m + s · u_t / ‖u_t‖ with u_t = v_t P, m the mean of the random rows and
        s = sqrt(mean_t ‖random_t − m‖²); a row whose u_t is zero, or with T < 2, stays random.
    """
    rows_TH = np.array(random_rows_TH, dtype=np.float64)
    if len(rows_TH) < 2:
        return rows_TH
    vectors_TD = np.asarray(vectors_TD, dtype=np.float64)
    projected_TH = vectors_TD @ random_projection(vectors_TD.shape[1], rows_TH.shape[1], seed)
    norm_T = np.linalg.norm(projected_TH, axis=1)
    has_text_T = norm_T > NO_TEXT_TOLERANCE * norm_T.max()
    mean_H = rows_TH.mean(axis=0)
    spread = np.sqrt(((rows_TH - mean_H) ** 2).sum(axis=1).mean())
    rows_TH[has_text_T] = mean_H + spread * projected_TH[has_text_T] / norm_T[has_text_T, None]
    return rows_TH


# ------------------------------------------------------------------------ the model and the cache


def init_item_embeddings(
    how: ItemEmbeddingInit, model: torch.nn.Module, tokenizer, items: ItemTable, tokens: list[str], seed: int
) -> None:
    """With `how` = "titles", overwrite the embedding rows (and untied head rows) of the code `tokens`.

    `tokens` are the item codes whose rows the model has just drawn at random; the rows of every other
    token, and the global torch RNG, are left as they were. `how` = "random" changes nothing.
    """
    if how == "random" or not tokens:
        return
    code_tokens, vectors_TD = code_text_vectors(items.sid, item_title_vectors(items))
    position = {token: i for i, token in enumerate(code_tokens)}
    vectors_TD = vectors_TD[[position[token] for token in tokens]]
    ids_T = torch.tensor(tokenizer.convert_tokens_to_ids(list(tokens)), dtype=torch.long)
    weights = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not weights[0]:
        weights.append(head.weight)
    with torch.no_grad():
        for weight in weights:
            random_rows_TH = weight[ids_T.to(weight.device)].detach().to("cpu", torch.float64).numpy()
            rows_TH = torch.from_numpy(embedding_rows(vectors_TD, random_rows_TH, seed))
            weight[ids_T.to(weight.device)] = rows_TH.to(weight.device, weight.dtype)


def item_title_vectors(items: ItemTable) -> np.ndarray:
    """float32 [N, 384]: each item's title embedded by all-MiniLM-L6-v2, from the cache when it holds them."""
    texts = item_texts(items, TEXT_FIELDS)
    path = cache_folder() / f"{_cache_key(texts)}.npy"
    cached = _read_vectors(path, len(texts))
    if cached is not None:
        return cached
    started = time.perf_counter()
    # Loading the encoder draws (and discards) random weights; a cache hit must leave the same RNG state.
    with torch.random.fork_rng(devices=[]):
        vectors_ND = embed_items(texts, show_progress=False)
    note = _write_vectors(path, vectors_ND)
    print(
        f"item embedding init: {len(texts)} titles embedded by all-MiniLM-L6-v2 in "
        f"{time.perf_counter() - started:.0f}s; {note}",
        flush=True,
    )
    return vectors_ND


def cache_folder() -> Path:
    """Where item text embeddings are cached: ``$TAWIN_CACHE_DIR/item-embeddings``, else under the user cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "item-embeddings"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tawin" / "item-embeddings"


def _cache_key(texts: list[str]) -> str:
    """sha256 of the encoder's package version and the texts: any change to either is a new entry."""
    try:
        version = importlib.metadata.version(MODEL_PACKAGE.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = "absent"  # embedding will stop with the encoder's install hint
    digest = hashlib.sha256(f"{MODEL_PACKAGE}=={version}\n".encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _read_vectors(path: Path, count: int) -> np.ndarray | None:
    """The cached [count, 384] float32 array, or None when absent or unusable (it is then rebuilt)."""
    try:
        vectors_ND = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if vectors_ND.dtype != np.float32 or vectors_ND.shape != (count, EMBED_DIM) or not np.isfinite(vectors_ND).all():
        return None
    return vectors_ND


def _write_vectors(path: Path, vectors_ND: np.ndarray) -> str:
    """Write the cache entry atomically; a read-only cache only costs the embedding again next time."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.chmod(temporary, 0o666 & ~umask())
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, vectors_ND)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        return f"not cached ({error}); set {CACHE_ENV} to a writable folder"
    return f"cached in {path}"
