"""Tests for tawin.run: the Session's encoding cache, rules that need the dataset, resolved eval settings."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from tawin.errors import ConfigError
from tawin.eval.config import EvalConfig
from tawin.models.build import ModelConfig, build_recommender, save_recommender
from tawin.rl.config import RLConfig
from tawin.run.config import DataConfig, PipelineConfig
from tawin.run.session import Session, tokenizer_fingerprint

from conftest import TINY_MODEL


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, industrial_small) -> Path:
    from tawin.data.formats.canonical import save_dataset

    return save_dataset(industrial_small, tmp_path_factory.mktemp("data") / "small")


def test_encodings_are_shared_by_equal_tokenizers_only(small_data, tmp_path):
    session = Session.open(PipelineConfig(data=DataConfig(str(small_data))), progress=False)
    built = build_recommender(ModelConfig(**TINY_MODEL), session.dataset.items, seed=0)
    save_recommender(built, tmp_path / "checkpoint")
    loaded = session.load(tmp_path / "checkpoint")
    # A reloaded checkpoint encodes like the model it was saved from: one encoding, not two.
    assert tokenizer_fingerprint(loaded.tokenizer) == tokenizer_fingerprint(built.tokenizer)
    assert session.encoded(loaded, "valid", 512) is session.encoded(built, "valid", 512)
    # Another tokenizer, prompt length or split never gets that encoding.
    other = copy.deepcopy(built.tokenizer)
    other.add_tokens(["<extra_token>"])
    changed = dataclasses.replace(built, tokenizer=other)
    assert session.encoded(changed, "valid", 512) is not session.encoded(built, "valid", 512)
    short = session.encoded(built, "valid", 8)
    assert short is not session.encoded(built, "valid", 512) and int(short.prompt_len_R.max()) == 8
    assert session.encoded(built, "test", 512) is not session.encoded(built, "valid", 512)
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.dataset = None


def test_rules_that_need_the_dataset_fail_when_the_session_opens(small_data):
    n_items = len(Session.open(PipelineConfig(data=DataConfig(str(small_data))), progress=False).dataset.items)
    config = PipelineConfig(
        data=DataConfig(str(small_data)), eval=EvalConfig(diagnostics=True, opauc_group_size=n_items + 1)
    )
    with pytest.raises(ConfigError, match=rf"eval\.opauc_group_size={n_items + 1} must lie in \[2, N={n_items}\]"):
        Session.open(config, progress=False)
    # Without diagnostics the same group size is never used, so nothing is refused.
    Session.open(dataclasses.replace(config, eval=EvalConfig(opauc_group_size=n_items + 1)), progress=False)


def test_opauc_group_size_defaults_to_the_rl_group_size():
    assert PipelineConfig(rl=RLConfig(group_size=8)).resolved_eval.opauc_group_size == 8
    assert PipelineConfig().resolved_eval.opauc_group_size == RLConfig().group_size
    explicit = PipelineConfig(rl=RLConfig(group_size=8), eval=EvalConfig(opauc_group_size=4))
    assert explicit.resolved_eval.opauc_group_size == 4 and explicit.eval.opauc_group_size == 4
    assert EvalConfig().opauc_group_size is None and EvalConfig().check() == []
    assert "eval.opauc_group_size=1 must be ≥ 2" in EvalConfig(opauc_group_size=1).check()[0]


def test_session_is_reusable_across_configs_of_one_dataset(small_data):
    data = DataConfig(str(small_data))
    session = Session.open(PipelineConfig(data=data), progress=False)
    session.check(PipelineConfig(data=data, seed=3, rl=RLConfig(group_size=8)))  # other seeds and stage settings: fine
    with pytest.raises(AssertionError, match="one dataset and runtime"):
        session.check(PipelineConfig(data=DataConfig("industrial")))
