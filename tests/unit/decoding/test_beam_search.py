"""Stage 5 — constrained beam search (tawin.decoding.beam) against Hugging Face and brute force.

* Parity with HF ``generate(num_beams=K, num_return_sequences=K, prefix_allowed_tokens_fn=trie,
  length_penalty=0.0)``: the same top-K items in the same order and the same summed log-probs
  (1e-4), on a synthetic 60-item catalogue and on the shipped Industrial catalogue (fp32).
* Output invariants: distinct, valid items whose tokens are the items' own; scores descending.
* The trie rejects token sequences that leave it (``UnknownPrefixError``).
* Items of different lengths (2..4 tokens): with as many beams as items the search is exhaustive,
  so its ranking must equal brute-force teacher-forced scoring of every item.

Random tiny models give nearly uniform next-token distributions, i.e. near-ties that float noise
may reorder; the weights are re-drawn with a larger spread so that the rankings are well defined.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from tawin.data.dataset import Interactions, ItemTable
from tawin.decoding.beam import BeamResult, constrained_beam_search
from tawin.items.trie import ItemTrie, UnknownPrefixError
from tawin.models.batching import encode_split, prompt_batch
from tawin.models.build import ModelConfig, RecommenderLM, build_recommender

from conftest import TINY_MODEL, hf_beam_search, spread_weights

TINY = ModelConfig(**TINY_MODEL)
N_ITEMS = 60


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_items(n_items: int = N_ITEMS, seed: int = 0) -> ItemTable:
    """`n_items` unique 3-token SIDs from codebooks of 4, 6 and 8 codes (uneven trie fan-out)."""
    rng = np.random.default_rng(seed)
    sids: list[tuple[str, ...]] = []
    while len(sids) < n_items:
        sid = (f"<a_{rng.integers(4)}>", f"<b_{rng.integers(6)}>", f"<c_{rng.integers(8)}>")
        if sid not in sids:
            sids.append(sid)
    item_ids = np.arange(1000, 1000 + 7 * n_items, 7)  # non-contiguous ids: positions ≠ ids
    return ItemTable(item_ids, [f"item {n}" for n in range(n_items)], [None] * n_items, [None] * n_items, sids)


def encoded_rows(recommender: RecommenderLM, items: ItemTable, n_rows: int, seed: int = 1):
    """`n_rows` random histories of 1..6 items (so prompts differ in length and get left-padded)."""
    rng = np.random.default_rng(seed)
    histories = [rng.choice(items.item_id, size=rng.integers(1, 7), replace=False).tolist() for _ in range(n_rows)]
    split = Interactions.from_lists(list(range(n_rows)), histories, rng.choice(items.item_id, size=n_rows).tolist())
    return encode_split(split, items, recommender.codec, recommender.tokenizer, max_prompt_tokens=128)


def assert_valid_beams(result: BeamResult, recommender: RecommenderLM) -> None:
    """Distinct catalogue items per row, best first, whose generated tokens are the items' own."""
    items_BK, n_items = result.items_BK, recommender.codec.trie.n_items
    assert bool(((items_BK >= 0) & (items_BK < n_items)).all())
    for row in items_BK.tolist():
        assert len(set(row)) == len(row), f"repeated item in {row}"
    assert bool((result.scores_BK[:, :-1] >= result.scores_BK[:, 1:]).all()), "scores must descend"
    assert bool(torch.isfinite(result.scores_BK).all())
    assert torch.equal(result.tokens_BKL, recommender.codec.target_table_NL[items_BK])


def assert_same_as_hf(recommender: RecommenderLM, ids_BL: torch.Tensor, mask_BL: torch.Tensor, beams: int) -> None:
    ours = constrained_beam_search(recommender.model, recommender.codec.trie, ids_BL, mask_BL, beams)
    assert_valid_beams(ours, recommender)
    hf_items_BK, hf_scores_BK = hf_beam_search(recommender, ids_BL, mask_BL, beams)
    assert torch.equal(ours.items_BK, hf_items_BK)
    torch.testing.assert_close(ours.scores_BK, hf_scores_BK.float(), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def synthetic():
    items = synthetic_items()
    recommender = build_recommender(TINY, items, seed=0)
    spread_weights(recommender.model)
    return recommender, encoded_rows(recommender, items, n_rows=6)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("beams", [5, 16])
def test_synthetic_catalogue_matches_hf_generate(synthetic, beams, attention):
    recommender, encoded = synthetic
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(len(encoded)))
    assert len(set(encoded.prompt_len_R.tolist())) > 1, "the batch must contain left padding"
    recommender.model.set_attn_implementation(attention)  # eager takes beam.py's float-mask path
    try:
        assert_same_as_hf(recommender, ids_BL, mask_BL, beams)
    finally:
        recommender.model.set_attn_implementation("sdpa")


@pytest.mark.parametrize("beams", [5, 16])
def test_industrial_catalogue_matches_hf_generate(industrial, beams):
    recommender = build_recommender(TINY, industrial.items, seed=0)
    spread_weights(recommender.model)
    test = industrial.split("test").take(np.arange(4))
    encoded = encode_split(test, industrial.items, recommender.codec, recommender.tokenizer, TINY.max_prompt_tokens)
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(4))
    assert_same_as_hf(recommender, ids_BL, mask_BL, beams)


def test_beams_are_not_the_first_items_of_the_trie(synthetic):
    """Guards against a vacuous match: different prompts get different rankings."""
    recommender, encoded = synthetic
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(len(encoded)))
    result = constrained_beam_search(recommender.model, recommender.codec.trie, ids_BL, mask_BL, 5)
    assert len({tuple(row) for row in result.items_BK.tolist()}) > 1


def test_unknown_prefix_raises(synthetic):
    recommender, _ = synthetic
    codec, trie = recommender.codec, recommender.codec.trie
    item = codec.target_ids[0]
    assert trie.allowed_tokens([]) == sorted({tokens[0] for tokens in codec.target_ids})
    assert trie.allowed_tokens(item + [codec.eos_id]) == [codec.pad_id]  # a finished item waits
    off_trie = [codec.eos_id]  # EOS is never a first token
    with pytest.raises(UnknownPrefixError, match=r"token \d+ at position 0 .* not a valid continuation"):
        trie.walk(off_trie)
    with pytest.raises(UnknownPrefixError, match="position 0"):
        trie.allowed_tokens(off_trie)
    unused_code = next(t for t in range(len(recommender.tokenizer)) if t not in trie.allowed_tokens(item[:1]))
    with pytest.raises(UnknownPrefixError, match="position 1"):
        trie.allowed_tokens([item[0], unused_code])
    with pytest.raises(UnknownPrefixError, match=f"position {len(item) + 1}"):
        trie.walk(item + [codec.eos_id, item[0]])  # nothing follows a finished item


def test_more_beams_than_items_raises(synthetic):
    recommender, encoded = synthetic
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(2))
    with pytest.raises(ValueError, match=f"num_beams={N_ITEMS + 1} exceeds the catalogue's {N_ITEMS} items"):
        constrained_beam_search(recommender.model, recommender.codec.trie, ids_BL, mask_BL, N_ITEMS + 1)


# Variable-length items: a trie built directly over a tiny vocabulary.
PAD, BOS, EOS, FIRST_CODE, VOCAB = 0, 1, 2, 3, 12


def variable_length_catalogue(n_items: int = 18, seed: int = 0) -> list[list[int]]:
    """Unique token sequences of lengths 2..4 over codes 3..11, some the prefix of another."""
    rng = np.random.default_rng(seed)
    sequences: list[list[int]] = []
    while len(sequences) < n_items:
        tokens = rng.integers(FIRST_CODE, VOCAB, size=rng.integers(2, 5)).tolist()
        if tokens not in sequences:
            sequences.append(tokens)
    shorter = {tuple(s) for s in sequences}
    assert any(tuple(s[:-1]) in shorter for s in sequences), "want an item that is another's prefix"
    return sequences


def tiny_lm(seed: int = 1) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    return spread_weights(Qwen2ForCausalLM(config), seed)


def brute_force_scores(model, prompts: list[list[int]], sequences: list[list[int]]) -> torch.Tensor:
    """[B, N] teacher-forced log π(item tokens ⊕ EOS | prompt): one unpadded forward per pair."""
    scores = torch.empty(len(prompts), len(sequences))
    for b, prompt in enumerate(prompts):
        for n, tokens in enumerate(sequences):
            target = tokens + [EOS]
            with torch.no_grad():
                logp = model(input_ids=torch.tensor([prompt + target]), use_cache=False).logits[0].log_softmax(-1)
            scores[b, n] = sum(logp[len(prompt) - 1 + t, token] for t, token in enumerate(target))
    return scores


def test_variable_length_items_exhaustive_beam_equals_brute_force():
    sequences = variable_length_catalogue()
    trie = ItemTrie.build(sequences, eos_token=EOS, pad_token=PAD)
    assert trie.max_depth == 5 and trie.n_items == len(sequences)
    model = tiny_lm()
    rng = np.random.default_rng(2)
    prompts = [[BOS] + rng.integers(FIRST_CODE, VOCAB, size=length).tolist() for length in (3, 7, 5)]
    width = max(map(len, prompts))
    ids_BL = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask_BL = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    exact_BN = brute_force_scores(model, prompts, sequences)

    # As many beams as items: every prefix fits in the beam, so the search is exhaustive.
    full = constrained_beam_search(model, trie, ids_BL, mask_BL, num_beams=len(sequences))
    exact_scores_BK, exact_items_BK = exact_BN.sort(dim=1, descending=True)
    gap = float((exact_scores_BK[:, :-1] - exact_scores_BK[:, 1:]).min())
    assert gap > 1e-3, f"near-tie ({gap:.1e}) makes the exact order fragile; change tiny_lm's seed"
    assert torch.equal(full.items_BK, exact_items_BK)
    torch.testing.assert_close(full.scores_BK, exact_scores_BK, atol=1e-4, rtol=0)
    for row in range(len(prompts)):
        for k, item in enumerate(full.items_BK[row].tolist()):
            length = len(sequences[item]) + 1
            assert full.tokens_BKL[row, k, :length].tolist() == sequences[item] + [EOS]
            assert set(full.tokens_BKL[row, k, length:].tolist()) <= {PAD}

    # A narrow beam may miss items, but each item it returns carries that item's exact score.
    narrow = constrained_beam_search(model, trie, ids_BL, mask_BL, num_beams=5)
    assert all(len(set(row)) == 5 for row in narrow.items_BK.tolist())
    torch.testing.assert_close(narrow.scores_BK, exact_BN.gather(1, narrow.items_BK), atol=1e-4, rtol=0)


def test_length_sorted_eval_batches_return_rows_in_order(industrial):
    """beam_predictions batches rows by prompt length; every row must get exactly the beams it
    gets alone, returned in the order asked for."""
    from tawin.eval.evaluate import beam_predictions

    recommender = build_recommender(TINY, industrial.items, seed=0)
    spread_weights(recommender.model)
    encoded = encode_split(
        industrial.split("test"), industrial.items, recommender.codec, recommender.tokenizer, TINY.max_prompt_tokens
    )
    rows = np.random.default_rng(0).choice(len(encoded), size=24, replace=False)  # unsorted on purpose
    assert len(set(encoded.prompt_len_R[torch.from_numpy(rows)].tolist())) > 3
    batched = beam_predictions(recommender, industrial, encoded, rows, 8, batch_size=8, progress=False)
    alone = beam_predictions(recommender, industrial, encoded, rows, 8, batch_size=1, progress=False)
    np.testing.assert_array_equal(batched.row_R, encoded.rows.row[rows])
    np.testing.assert_array_equal(batched.target_R, alone.target_R)
    np.testing.assert_array_equal(batched.items_RK, alone.items_RK)
    np.testing.assert_allclose(batched.scores_RK, alone.scores_RK, atol=1e-4, rtol=0)
