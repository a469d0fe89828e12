"""Exact full-catalogue scoring (tawin.decoding.scoring) and the diagnostics built on it
(tawin.eval.diagnostics): trie scoring equals a plain per-item forward, agrees with constrained
beam search, handles items of different lengths, and wpauc@K = exact_recall@K (Lemma 3.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tawin.data.dataset import Interactions, ItemTable
from tawin.data.formats.canonical import load_dataset
from tawin.data.sid_collisions import make_unique
from tawin.decoding.beam import constrained_beam_search
from tawin.decoding.scoring import score_all_items, score_items
from tawin.errors import ConfigError
from tawin.eval.config import EvalConfig
from tawin.eval.diagnostics import diagnostics, exact_scores
from tawin.items.trie import ItemTrie
from tawin.metrics.ranking import TOP_KS
from tawin.models.batching import encode_split, prompt_batch
from tawin.models.build import ModelConfig, build_recommender

from conftest import REPO, TINY_MODEL

TINY = ModelConfig(**TINY_MODEL)
INDUSTRIAL = REPO / "src/tawin/resources/datasets/industrial"
N_ITEMS = 40


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_items() -> ItemTable:
    """40 items with 3-token SIDs from small codebooks (collisions → a 4th token)."""
    rng = np.random.default_rng(0)
    raw = [(f"<a_{rng.integers(3)}>", f"<b_{rng.integers(4)}>", f"<c_{rng.integers(4)}>") for _ in range(N_ITEMS)]
    sids, report = make_unique(raw)
    assert report.added_level
    item_ids = np.arange(100, 100 + N_ITEMS)
    return ItemTable(item_ids, [f"item {i}" for i in range(N_ITEMS)], [None] * N_ITEMS, [None] * N_ITEMS, sids)


@pytest.fixture(scope="module")
def tiny(tiny_items):
    """A tiny random Qwen2 over the 40 items, and 12 encoded rows."""
    items, item_ids, rng = tiny_items, tiny_items.item_id, np.random.default_rng(1)
    recommender = build_recommender(TINY, items, seed=0)
    recommender.model.eval()
    n_rows = 12
    histories = [rng.choice(item_ids, size=rng.integers(1, 6), replace=False).tolist() for _ in range(n_rows)]
    split = Interactions.from_lists(list(range(n_rows)), histories, rng.choice(item_ids, size=n_rows).tolist())
    encoded = encode_split(split, items, recommender.codec, recommender.tokenizer, max_prompt_tokens=64)
    return recommender, encoded


def slow_logp(model, prompt: list[int], item_tokens: list[int]) -> float:
    """log π(item | prompt) from one plain forward of the unpadded sequence, no cache."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + item_tokens]), use_cache=False).logits[0].float()
    logp = logits.log_softmax(-1)
    return sum(float(logp[len(prompt) - 1 + j, token]) for j, token in enumerate(item_tokens))


def unpadded_prompts(encoded, rows: list[int]) -> list[list[int]]:
    return [encoded.prompt_ids_RL[r, -int(encoded.prompt_len_R[r]) :].tolist() for r in rows]


@pytest.fixture(scope="module")
def slow_reference(tiny):
    """Rows 0–2 (different prompt lengths) and their per-item slow scores [3, N]."""
    recommender, encoded = tiny
    codec, rows = recommender.codec, [0, 1, 2]
    assert len(set(encoded.prompt_len_R[rows].tolist())) > 1, "needs left padding in the batch"
    slow = [
        [slow_logp(recommender.model, prompt, codec.target_ids[n] + [codec.eos_id]) for n in range(N_ITEMS)]
        for prompt in unpadded_prompts(encoded, rows)
    ]
    return rows, torch.tensor(slow)


@pytest.mark.parametrize("chunk_nodes", [1, 5, 1000])
def test_score_all_items_equals_per_item_forward(tiny, slow_reference, chunk_nodes):
    recommender, encoded = tiny
    rows, slow_BN = slow_reference
    ids_BL, mask_BL = prompt_batch(encoded, torch.tensor(rows))
    scores_BN = score_all_items(recommender.model, recommender.codec.trie, ids_BL, mask_BL, chunk_nodes=chunk_nodes)
    assert scores_BN.shape == (3, N_ITEMS) and scores_BN.dtype == torch.float32
    torch.testing.assert_close(scores_BN, slow_BN, atol=1e-4, rtol=0)


@pytest.mark.parametrize("attention", ["eager", "gqa"])
def test_float_mask_and_grouped_query_attention(tiny_items, tiny, slow_reference, attention):
    """The additive float mask (eager attention) and kv_heads < heads give the same scores."""
    _, encoded = tiny
    config = (
        TINY
        if attention == "eager"
        else ModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=1, intermediate_size=64)
    )
    recommender = build_recommender(config, tiny_items, seed=0)
    recommender.model.eval()
    if attention == "eager":
        recommender.model.set_attn_implementation("eager")
    rows, slow_BN = slow_reference
    ids_BL, mask_BL = prompt_batch(encoded, torch.tensor(rows))
    scores_BN = score_all_items(recommender.model, recommender.codec.trie, ids_BL, mask_BL, chunk_nodes=4)
    with torch.no_grad():
        teacher_BN = score_items(
            recommender.model, recommender.codec, ids_BL, mask_BL, torch.arange(N_ITEMS).expand(3, -1)
        )
    torch.testing.assert_close(scores_BN, teacher_BN, atol=1e-4, rtol=0)
    if attention == "eager":
        torch.testing.assert_close(scores_BN, slow_BN, atol=1e-4, rtol=0)


def test_score_items_equals_score_all_items(tiny):
    recommender, encoded = tiny
    ids_BL, mask_BL = prompt_batch(encoded, torch.tensor([3, 4, 5, 6]))
    items_BG = torch.randint(0, N_ITEMS, (4, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logp_BG = score_items(recommender.model, recommender.codec, ids_BL, mask_BL, items_BG)
    all_BN = score_all_items(recommender.model, recommender.codec.trie, ids_BL, mask_BL)
    torch.testing.assert_close(logp_BG, all_BN.gather(1, items_BG), atol=1e-4, rtol=0)


def test_score_items_is_differentiable(tiny):
    recommender, encoded = tiny
    ids_BL, mask_BL = prompt_batch(encoded, torch.tensor([0, 1]))
    logp_BG = score_items(recommender.model, recommender.codec, ids_BL, mask_BL, torch.tensor([[0, 1], [2, 3]]))
    logp_BG.sum().backward()
    grad = recommender.model.get_input_embeddings().weight.grad
    assert grad is not None and bool(grad.abs().sum() > 0)
    recommender.model.zero_grad(set_to_none=True)


def test_beam_search_agrees_with_exact_scores(tiny):
    recommender, encoded = tiny
    model, trie = recommender.model, recommender.codec.trie
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(6))
    exact_BN = score_all_items(model, trie, ids_BL, mask_BL)
    # With as many beams as items the search is exhaustive: its ranking is the exact top-K.
    full = constrained_beam_search(model, trie, ids_BL, mask_BL, num_beams=N_ITEMS)
    top_scores_BK, top_items_BK = exact_BN.topk(10, dim=1)
    assert torch.equal(full.items_BK[:, :10], top_items_BK)
    torch.testing.assert_close(full.scores_BK[:, :10], top_scores_BK, atol=1e-4, rtol=0)
    # A narrow beam may miss items, but what it returns carries the items' exact scores.
    narrow = constrained_beam_search(model, trie, ids_BL, mask_BL, num_beams=5)
    torch.testing.assert_close(narrow.scores_BK, exact_BN.gather(1, narrow.items_BK), atol=1e-4, rtol=0)


def test_items_of_different_lengths(tiny):
    """Title-mode-like trie: leaves at depths 2..5, an item that is a prefix of another."""
    recommender, encoded = tiny
    tok = recommender.tokenizer
    a, b, c, d = tok.convert_tokens_to_ids(["<a_0>", "<a_1>", "<b_0>", "<b_1>"])
    sequences = [[a], [a, c], [a, c, d], [b, c, d, a], [c], [d, d, d, d], [a, d]]
    trie = ItemTrie.build(sequences, eos_token=tok.eos_token_id, pad_token=tok.pad_token_id)
    ids_BL, mask_BL = prompt_batch(encoded, torch.tensor([0, 7]))
    for chunk_nodes in (1, 2, 64):
        scores_BN = score_all_items(recommender.model, trie, ids_BL, mask_BL, chunk_nodes=chunk_nodes)
        for row, prompt in enumerate(unpadded_prompts(encoded, [0, 7])):
            slow = torch.tensor([slow_logp(recommender.model, prompt, s + [tok.eos_token_id]) for s in sequences])
            torch.testing.assert_close(scores_BN[row], slow, atol=1e-4, rtol=0)
    beam = constrained_beam_search(recommender.model, trie, ids_BL, mask_BL, num_beams=len(sequences))
    torch.testing.assert_close(beam.scores_BK, scores_BN.gather(1, beam.items_BK), atol=1e-4, rtol=0)


def test_exact_scores_rows_and_batches(tiny):
    recommender, encoded = tiny
    rows = np.array([5, 2, 9])
    scores_RN = exact_scores(recommender, encoded, rows, batch_size=2)
    ids_BL, mask_BL = prompt_batch(encoded, torch.from_numpy(rows))
    torch.testing.assert_close(
        scores_RN, score_all_items(recommender.model, recommender.codec.trie, ids_BL, mask_BL), atol=1e-5, rtol=0
    )
    assert not recommender.model.training


def test_diagnostics_keys_ranges_and_lemma(tiny):
    recommender, encoded = tiny
    config = EvalConfig(diagnostics_rows=10, sample_seed=3, batch_size=4, opauc_group_size=4)
    result = diagnostics(recommender, encoded, config, progress=False)
    expected = {"auc", "opauc", "diagnostics_rows"} | {
        f"{m}@{k}" for m in ("wpauc", "exact_recall") for k in TOP_KS.reported
    }
    assert set(result) == expected
    assert result["diagnostics_rows"] == 10
    for name in expected - {"diagnostics_rows"}:
        assert 0.0 <= result[name] <= 1.0, name
    for k in TOP_KS.reported:  # Lemma 3.5, one positive, tie-free float scores
        assert result[f"wpauc@{k}"] == result[f"exact_recall@{k}"]
    assert diagnostics(recommender, encoded, EvalConfig(diagnostics_rows=0, opauc_group_size=4), progress=False)[
        "diagnostics_rows"
    ] == len(encoded)


def test_diagnostics_rejects_bad_group_size(tiny):
    recommender, encoded = tiny
    with pytest.raises(ConfigError, match=r"eval.opauc_group_size=1 must lie in \[2, N=40\]"):
        diagnostics(recommender, encoded, EvalConfig(opauc_group_size=1), progress=False)
    with pytest.raises(ConfigError, match=r"eval.opauc_group_size is null .*EvalConfig.resolved\(group_size\)"):
        diagnostics(recommender, encoded, EvalConfig(), progress=False)


def test_industrial_trie_smoke():
    """The shipped Industrial catalogue (3,686 items, 5-level trie) with a tiny model, 2 rows."""
    dataset = load_dataset(INDUSTRIAL)
    recommender = build_recommender(TINY, dataset.items, seed=0)
    encoded = encode_split(
        dataset.split("test").take(np.arange(2)),
        dataset.items,
        recommender.codec,
        recommender.tokenizer,
        TINY.max_prompt_tokens,
    )
    scores_RN = exact_scores(recommender, encoded, np.arange(2), batch_size=2, chunk_nodes=512)
    assert scores_RN.shape == (2, len(dataset.items)) and bool(torch.isfinite(scores_RN).all())
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(2))
    items_BG = torch.randint(0, len(dataset.items), (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp_BG = score_items(recommender.model, recommender.codec, ids_BL, mask_BL, items_BG)
    torch.testing.assert_close(scores_RN.gather(1, items_BG), logp_BG, atol=1e-4, rtol=0)
