"""A checkpoint reloads as the model that was saved: same tokenizer encoding, same codec, same scores.

SFT encodes its prompts with the tokenizer it built; every later stage (evaluation, RL, recommend)
encodes them with the tokenizer loaded from the checkpoint. The two must agree token for token,
or the model is evaluated and trained on prompts it never saw.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tawin.models.batching import encode_split, prompt_batch
from tawin.models.build import ModelConfig, build_recommender, load_recommender, save_recommender
from tawin.models.prompt import PROMPT_TEMPLATE

from conftest import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved_and_loaded(industrial, tmp_path_factory):
    built = build_recommender(ModelConfig(**TINY_MODEL), industrial.items, seed=0)
    folder = tmp_path_factory.mktemp("checkpoint") / "model"
    save_recommender(built, folder)
    return built, load_recommender(folder, industrial.items)


def test_reloaded_tokenizer_encodes_prompts_as_the_built_one(industrial, saved_and_loaded):
    built, loaded = saved_and_loaded
    words = [w for w in PROMPT_TEMPLATE.replace("{history}", " ").split() if w.isalpha()]
    assert words, "the prompt template has words"
    for recommender in (built, loaded):
        ids = recommender.tokenizer(" ".join(words)).input_ids
        assert recommender.tokenizer.unk_token_id not in ids and len(ids) == len(words) + 1  # <s> + one id per word
    for split in ("train", "test"):
        rows = industrial.split(split).take(np.arange(200))
        a = encode_split(rows, industrial.items, built.codec, built.tokenizer, 512)
        b = encode_split(rows, industrial.items, loaded.codec, loaded.tokenizer, 512)
        assert torch.equal(a.prompt_len_R, b.prompt_len_R) and torch.equal(a.prompt_ids_RL, b.prompt_ids_RL), split
        assert torch.equal(a.target_R, b.target_R)
    assert torch.equal(built.codec.target_table_NL, loaded.codec.target_table_NL)


def test_reloaded_model_scores_the_same(industrial, saved_and_loaded):
    built, loaded = saved_and_loaded
    encoded = encode_split(
        industrial.split("test").take(np.arange(4)), industrial.items, loaded.codec, loaded.tokenizer, 512
    )
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(4))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.model.eval()(input_ids=ids_BL, attention_mask=mask_BL).logits,
            built.model.eval()(input_ids=ids_BL, attention_mask=mask_BL).logits,
        )


def test_a_saved_default_model_loads_by_path_with_its_own_tokenizer(industrial, saved_and_loaded, tmp_path):
    """`--model FOLDER` on a saved default model (e.g. to continue SFT), and that run's checkpoint."""
    built, _ = saved_and_loaded
    folder = tmp_path / "first"
    save_recommender(built, folder)
    by_path = build_recommender(ModelConfig(name_or_path=str(folder)), industrial.items)
    save_recommender(by_path, tmp_path / "second")
    again = load_recommender(tmp_path / "second", industrial.items)
    rows = industrial.split("test").take(np.arange(100))
    expected = encode_split(rows, industrial.items, built.codec, built.tokenizer, 512)
    for recommender in (by_path, again):
        encoded = encode_split(rows, industrial.items, recommender.codec, recommender.tokenizer, 512)
        assert torch.equal(encoded.prompt_ids_RL, expected.prompt_ids_RL)
