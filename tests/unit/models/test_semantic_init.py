"""Stage 3 — semantic initialisation of the item-code embeddings (tawin.models.semantic_init, issue #23 item 2).

* The math against a slow loop version: per-token mean of residuals from the parent prefix's mean
  (level 1: from the catalogue mean), on random catalogues whose tokens recur across levels.
* Hand cases: a level-1 code is its items' mean; residual levels; a code with one item; a code
  whose items are each alone under their parent has no text signal and keeps its random row.
* The rows: the random rows' mean and spread, the text vectors' angles (isometric projection when
  H ≥ D), the same rows for the same seed.
* The models: the built-in model's code rows (tied head) and a pretrained model's added code rows
  (untied head: both matrices) change, every other row and the global RNG stay as a random build
  leaves them; the titles' embeddings are cached (an unwritable cache only costs time); item_repr=title
  and unknown values are refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import Qwen2Config, Qwen2ForCausalLM

from tawin.config import load_config
from tawin.data.dataset import ItemTable
from tawin.errors import ConfigError
from tawin.models import semantic_init
from tawin.models.build import ModelConfig, build_recommender
from tawin.models.prompt import PROMPT_TEMPLATE
from tawin.models.semantic_init import code_text_vectors, embedding_rows, item_title_vectors
from tawin.models.tokenizer import build_word_tokenizer
from tawin.run.config import PipelineConfig

from conftest import TINY_MODEL, fails

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_code_vectors(sids, x_ND):
    """Loop version: for each token, every (item, level) holding it, minus its parent prefix's mean."""
    x_ND = np.asarray(x_ND, dtype=np.float64)

    def prefix_mean(prefix):
        return np.mean([x_ND[n] for n, sid in enumerate(sids) if tuple(sid[: len(prefix)]) == prefix], axis=0)

    residuals = {}
    for n, sid in enumerate(sids):
        for level, token in enumerate(sid):
            residuals.setdefault(token, []).append(x_ND[n] - prefix_mean(tuple(sid[:level])))
    tokens = sorted(residuals)
    return tokens, np.stack([np.mean(residuals[t], axis=0) for t in tokens])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 4), st.integers(1, 5))
def test_code_vectors_match_the_loop_version(seed, n_items, depth, codes_per_level):
    rng = np.random.default_rng(seed)

    # A shared prefix letter set on purpose: a token such as <a_1> may occur at several levels.
    def token():
        return f"<{'ab'[rng.integers(2)]}_{rng.integers(codes_per_level)}>"

    sids = [tuple(token() for _ in range(rng.integers(1, depth + 1))) for _ in range(n_items)]
    x_ND = rng.normal(size=(n_items, 3))
    tokens, vectors_TD = code_text_vectors(sids, x_ND)
    expected_tokens, expected_TD = reference_code_vectors(sids, x_ND)
    assert tokens == expected_tokens
    np.testing.assert_allclose(vectors_TD, expected_TD, atol=1e-12)


SIDS = [("<a_1>", "<b_1>"), ("<a_1>", "<b_2>"), ("<a_2>", "<b_1>"), ("<a_2>", "<b_3>"), ("<a_3>", "<b_3>")]
X = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 2.0], [9.0, -5.0]])


def vector(token, sids=SIDS, x_ND=X):
    tokens, vectors_TD = code_text_vectors(sids, x_ND)
    return vectors_TD[tokens.index(token)]


def test_a_level_one_code_is_the_mean_of_its_items():
    catalogue_mean = X.mean(axis=0)
    np.testing.assert_allclose(vector("<a_1>"), X[[0, 1]].mean(axis=0) - catalogue_mean)
    np.testing.assert_allclose(vector("<a_2>"), X[[2, 3]].mean(axis=0) - catalogue_mean)
    centred = X - catalogue_mean  # item vectors with mean 0: the level-1 vector is plainly the mean
    np.testing.assert_allclose(vector("<a_1>", x_ND=centred), centred[[0, 1]].mean(axis=0), atol=1e-12)


def test_deeper_codes_are_mean_residuals_from_the_parent_prefix():
    mean_a1, mean_a2, mean_a3 = X[[0, 1]].mean(axis=0), X[[2, 3]].mean(axis=0), X[4]
    np.testing.assert_allclose(vector("<b_1>"), ((X[0] - mean_a1) + (X[2] - mean_a2)) / 2)
    np.testing.assert_allclose(vector("<b_2>"), X[1] - mean_a1)  # one item, with a sibling under <a_1>
    np.testing.assert_allclose(vector("<b_3>"), ((X[3] - mean_a2) + (X[4] - mean_a3)) / 2)


def test_a_code_with_one_item():
    np.testing.assert_allclose(vector("<a_3>"), X[4] - X.mean(axis=0))  # level 1: the item less the catalogue mean
    lonely = [("<a_1>", "<b_1>"), ("<a_2>", "<b_2>"), ("<a_2>", "<b_3>")]
    x_ND = X[:3]
    assert not vector("<b_1>", lonely, x_ND).any()  # alone under <a_1>: no offset from its parent
    np.testing.assert_allclose(vector("<b_2>", lonely, x_ND), (x_ND[1] - x_ND[2]) / 2)
    tokens, vectors_TD = code_text_vectors(lonely, x_ND)
    random_TH = np.random.default_rng(1).normal(size=(len(tokens), 6))
    rows_TH = embedding_rows(vectors_TD, random_TH, seed=0)
    kept = tokens.index("<b_1>")
    np.testing.assert_array_equal(rows_TH[kept], random_TH[kept])  # no text signal: its random row stays
    assert not np.isclose(rows_TH[tokens.index("<b_2>")], random_TH[tokens.index("<b_2>")]).any()


@pytest.mark.parametrize("width", [3, 8])
def test_rows_keep_the_random_mean_and_spread_and_the_text_directions(width):
    rng = np.random.default_rng(0)
    vectors_TD, random_TH = rng.normal(size=(7, 5)), rng.normal(2.0, 0.5, size=(7, width))
    rows_TH = embedding_rows(vectors_TD, random_TH, seed=3)
    mean_H = random_TH.mean(axis=0)
    spread = np.sqrt(((random_TH - mean_H) ** 2).sum(axis=1).mean())
    np.testing.assert_allclose(np.linalg.norm(rows_TH - mean_H, axis=1), spread)
    if width >= vectors_TD.shape[1]:  # an isometry: the codes' angles survive the projection
        unit_TD = vectors_TD / np.linalg.norm(vectors_TD, axis=1, keepdims=True)
        offsets_TH = (rows_TH - mean_H) / spread
        np.testing.assert_allclose(offsets_TH @ offsets_TH.T, unit_TD @ unit_TD.T, atol=1e-12)


def test_rows_are_determined_by_the_seed():
    rng = np.random.default_rng(0)
    vectors_TD, random_TH = rng.normal(size=(6, 5)), rng.normal(size=(6, 4))
    np.testing.assert_array_equal(embedding_rows(vectors_TD, random_TH, 7), embedding_rows(vectors_TD, random_TH, 7))
    assert not np.allclose(embedding_rows(vectors_TD, random_TH, 7), embedding_rows(vectors_TD, random_TH, 8))


# --------------------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def items(industrial) -> ItemTable:
    """The first 40 Industrial items (real titles and SIDs): embedding them takes a second."""
    keep = slice(0, 40)
    table = industrial.items
    return ItemTable(table.item_id[keep], table.title[keep], table.description[keep], table.asin[keep], table.sid[keep])


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(semantic_init.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def build(items, how, **fields):
    torch.manual_seed(123)
    recommender = build_recommender(ModelConfig(**fields, item_embedding_init=how), items, seed=5)
    return recommender, torch.get_rng_state()


def code_ids(recommender, tokens):
    return torch.tensor(recommender.tokenizer.convert_tokens_to_ids(list(tokens)))


def test_built_in_model_starts_from_the_code_vectors(items, cache, capsys):
    random, rng_random = build(items, "random", **TINY_MODEL)
    semantic, rng_semantic = build(items, "titles", **TINY_MODEL)
    assert "titles embedded by all-MiniLM-L6-v2" in capsys.readouterr().out and len(list(cache.rglob("*.npy"))) == 1
    assert torch.equal(rng_random, rng_semantic)  # loading the encoder must not shift what the run draws next
    assert semantic.model.config.tie_word_embeddings
    tokens, vectors_TD = code_text_vectors(items.sid, item_title_vectors(items))
    ids = code_ids(semantic, tokens)
    before_VH = random.model.get_input_embeddings().weight.detach()
    after_VH = semantic.model.get_input_embeddings().weight.detach()
    expected_TH = embedding_rows(vectors_TD, before_VH[ids].double().numpy(), seed=5)
    np.testing.assert_allclose(after_VH[ids].double().numpy(), expected_TH, rtol=1e-6, atol=1e-7)
    others = torch.ones(len(after_VH), dtype=torch.bool)
    others[ids] = False
    assert torch.equal(after_VH[others], before_VH[others])  # special and prompt-word rows untouched
    for (name, a), (_, b) in zip(random.model.named_parameters(), semantic.model.named_parameters()):
        assert name == "model.embed_tokens.weight" or torch.equal(a, b), name


def test_cached_embeddings_are_reused(items, monkeypatch):
    first, _ = build(items, "titles", **TINY_MODEL)
    monkeypatch.setattr(semantic_init, "embed_items", lambda *a, **k: pytest.fail("the cache was not used"))
    second, _ = build(items, "titles", **TINY_MODEL)
    assert torch.equal(first.model.get_input_embeddings().weight, second.model.get_input_embeddings().weight)


def test_an_unwritable_cache_costs_only_time(items, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(semantic_init.CACHE_ENV, str(tmp_path / "file" / "cache"))
    semantic, _ = build(items, "titles", **TINY_MODEL)
    assert "not cached (" in capsys.readouterr().out
    monkeypatch.setenv(semantic_init.CACHE_ENV, str(tmp_path / "cache"))
    cached, _ = build(items, "titles", **TINY_MODEL)
    assert torch.equal(semantic.model.get_input_embeddings().weight, cached.model.get_input_embeddings().weight)


def untied_pretrained(items, folder):
    """A small 'pretrained' Qwen2 with an untied head whose vocabulary lacks the last item's codes."""
    known = sorted({token for sid in items.sid[:-1] for token in sid})
    tokenizer = build_word_tokenizer(PROMPT_TEMPLATE, known)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return known


def test_pretrained_model_initialises_only_its_added_codes_in_both_matrices(items, tmp_path):
    known = untied_pretrained(items, tmp_path / "model")
    random, _ = build(items, "random", name_or_path=str(tmp_path / "model"))
    semantic, _ = build(items, "titles", name_or_path=str(tmp_path / "model"))
    added = sorted(set(items.sid[-1]) - set(known))
    assert added
    ids = code_ids(semantic, added)
    tokens, vectors_TD = code_text_vectors(items.sid, item_title_vectors(items))
    vectors_TD = vectors_TD[[tokens.index(t) for t in added]]
    for get in ("get_input_embeddings", "get_output_embeddings"):
        before_VH, after_VH = (getattr(r.model, get)().weight.detach() for r in (random, semantic))
        expected_TH = embedding_rows(vectors_TD, before_VH[ids].double().numpy(), seed=5)
        np.testing.assert_allclose(after_VH[ids].double().numpy(), expected_TH, rtol=1e-6, atol=1e-7)
        unchanged = torch.ones(len(after_VH), dtype=torch.bool)
        unchanged[ids] = False
        assert torch.equal(after_VH[unchanged], before_VH[unchanged]), get  # pretrained rows, known codes included


def test_title_mode_and_unknown_choices_are_refused(capsys):
    with pytest.raises(
        ConfigError,
        match=r"model.item_embedding_init=titles initialises the semantic-ID tokens, but "
        r"model.item_repr=title has none.*set model.item_embedding_init=random",
    ):
        load_config(
            PipelineConfig,
            None,
            ["model.name_or_path=smollm2", "model.item_repr=title", "model.item_embedding_init=titles"],
        )
    fails(["config", "show", "--set", "model.item_embedding_init=codebook"], capsys, r"model.item_embedding_init")
