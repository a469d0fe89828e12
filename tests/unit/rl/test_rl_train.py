"""RL loop smoke tests: every negative type and every loss runs, stays finite and moves the policy."""

from __future__ import annotations

import json

import pytest
import torch

from tawin.models.batching import prompt_batch, sequence_batch
from tawin.rl.config import RLConfig
from tawin.rl.rollout import group_logprobs, make_rollout
from tawin.rl.train import train_rl
from tawin.sft.train import RunContext


def test_group_logprobs_match_separate_sequences(encoded, tiny_recommender):
    r = tiny_recommender
    r.model.eval()
    index = torch.arange(3)
    ids, mask = prompt_batch(encoded["valid"], index)
    rollout = make_rollout(
        r.model, r.codec, ids, mask, encoded["valid"].target_R[index], "beam", 6, torch.Generator().manual_seed(0)
    )
    grouped = group_logprobs(r.model, ids, mask, rollout.tokens_BGT, rollout.token_mask_BGT).sum(-1)
    batch = sequence_batch(ids, mask, r.codec, rollout.items_BG)
    logits = r.model(
        input_ids=batch.input_ids_BT, attention_mask=batch.attention_mask_BT, position_ids=batch.position_ids_BT
    ).logits
    labels = batch.labels_BT
    token_logp = torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    separate = torch.where(labels != -100, token_logp, 0.0).sum(-1).view(3, 6)
    torch.testing.assert_close(grouped, separate, atol=1e-4, rtol=1e-4)
    # beam scores are the same sequence log-probabilities
    torch.testing.assert_close(rollout.rollout_scores_BG, separate, atol=1e-4, rtol=1e-4)


def test_random_negatives_exclude_target_and_keep_it_first(encoded, tiny_recommender):
    r = tiny_recommender
    index = torch.arange(8)
    ids, mask = prompt_batch(encoded["train"], index)
    target = encoded["train"].target_R[index]
    rollout = make_rollout(r.model, r.codec, ids, mask, target, "random", 16, torch.Generator().manual_seed(1))
    assert torch.equal(rollout.items_BG[:, 0], target)
    assert rollout.is_target_BG.sum(-1).eq(1).all()


@pytest.mark.parametrize(
    "negatives,loss,weighting,reward",
    [
        ("beam", "grpo", "tawin", "binary"),
        ("beam", "gspo", "none", "rank"),
        ("random", "dapo", "tawin", "binary"),
        ("sample", "grpo", "tawin", "binary"),
    ],
)
def test_rl_steps_run_and_change_parameters(
    tmp_path, industrial_small, encoded, tiny_recommender, negatives, loss, weighting, reward
):
    r = tiny_recommender
    before = [p.detach().clone() for p in r.model.parameters()]
    config = RLConfig(
        negatives=negatives,
        loss=loss,
        weighting=weighting,
        reward=reward,
        group_size=8,
        batch_size=4,
        max_steps=2,
        log_every=1,
        eval_rows=8,
        lr=1e-3,
    )
    result = train_rl(
        r,
        industrial_small,
        encoded["train"],
        encoded["valid"],
        config,
        RunContext(tmp_path, 0, torch.device("cpu"), False, progress_bars=False),
    )
    assert result["steps"] == 2
    changed = any(not torch.equal(a, b) for a, b in zip(before, r.model.parameters()))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    hit = sum(rec.get("rollout/target_in_group", 0.0) for rec in records)
    # A group without the target has all-zero advantages and, at step 0, zero KL: no gradient.
    assert changed == (hit > 0) or changed
    if negatives == "random":
        assert changed and hit > 0
    assert (tmp_path / "final" / "tawin.json").exists()
    log = (tmp_path / "log.jsonl").read_text()
    for key in (
        "train/loss",
        "train/kl",
        "rollout/reward",
        "rollout/target_in_group",
        "tawin/weight_entropy",
        "train/tokens_per_s",
    ):
        assert key in log
