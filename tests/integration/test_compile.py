"""`compile: true` trains the same model as eager mode (torch.compile of the training forward)."""

from __future__ import annotations

import pytest
import torch

from tawin.models.batching import encode_split
from tawin.models.build import ModelConfig, build_recommender
from tawin.sft.config import SFTConfig
from tawin.sft.train import RunContext, train_sft

from conftest import TINY_MODEL


def _train(tmp_path, dataset, compile: bool):
    recommender = build_recommender(ModelConfig(**TINY_MODEL), dataset.items, seed=0)
    train = encode_split(dataset.splits["train"], dataset.items, recommender.codec, recommender.tokenizer, 512)
    valid = encode_split(dataset.splits["valid"], dataset.items, recommender.codec, recommender.tokenizer, 512)
    config = SFTConfig(epochs=1, batch_size=32, first_train_rows=96, eval_rows=8, warmup_steps=1)
    train_sft(
        recommender,
        dataset,
        train,
        valid,
        config,
        RunContext(tmp_path / str(compile), 0, torch.device("cpu"), False, progress_bars=False, compile=compile),
    )
    return recommender.model.state_dict()


def test_compiled_sft_equals_eager(tmp_path, industrial_small):
    pytest.importorskip("torch._inductor")
    torch.manual_seed(0)
    eager = _train(tmp_path, industrial_small, compile=False)
    torch.manual_seed(0)
    compiled = _train(tmp_path, industrial_small, compile=True)
    assert eager.keys() == compiled.keys()  # checkpoints keep their keys under compile
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-5, msg=name)
