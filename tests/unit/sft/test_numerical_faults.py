"""Numerical faults stop a run with a message naming the step and keep the last good checkpoint."""

from __future__ import annotations

import pytest
import torch

import tawin.sft.train as sft_train
from tawin.models.batching import encode_split
from tawin.sft.config import SFTConfig
from tawin.sft.train import RunContext, train_sft
from tawin.train_utils import NumericalError


def test_nan_loss_stops_sft_and_keeps_last_checkpoint(tmp_path, industrial_small, tiny_recommender, monkeypatch):
    r = tiny_recommender
    train = encode_split(industrial_small.splits["train"], industrial_small.items, r.codec, r.tokenizer, 512)
    valid = encode_split(industrial_small.splits["valid"], industrial_small.items, r.codec, r.tokenizer, 512)
    real_loss = sft_train.sft_loss
    calls = {"n": 0}

    def loss_that_breaks(*args, **kwargs):
        loss, tokens = real_loss(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 4 else loss), tokens

    monkeypatch.setattr(sft_train, "sft_loss", loss_that_breaks)
    config = SFTConfig(epochs=1, batch_size=32, first_train_rows=256, save_every=2, eval_rows=8, warmup_steps=1)
    with pytest.raises(
        NumericalError,
        match=r"sft step 3: the loss is \[?nan\]? \(not finite\)\. Training stopped; the last good checkpoint is kept",
    ):
        train_sft(
            r,
            industrial_small,
            train,
            valid,
            config,
            RunContext(tmp_path, 0, torch.device("cpu"), False, progress_bars=False),
        )
    state = torch.load(tmp_path / "last" / "trainer.pt", weights_only=False)
    assert state["progress"]["global_step"] == 2  # the checkpoint written before the fault
