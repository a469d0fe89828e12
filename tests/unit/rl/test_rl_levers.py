"""The RL levers of `RLConfig`: target injection, informative-group batches, a fixed row sample,
reference sync, the SFT term, and best-on-valid selection with early stopping."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tawin.rl.advantages import group_advantages
from tawin.rl.config import RLConfig, RLRows
from tawin.rl.rewards import binary_reward, rank_reward
from tawin.rl.rollout import inject_targets
from tawin.rl.rows import split_train_rows
from tawin.rl.step_batch import draw_step_batch, informative_groups
from tawin.rl.train import mix_into_reference, train_rl
from tawin.train_utils import Progress, RunContext

pytestmark = pytest.mark.usefixtures("one_thread")


def _context(tmp_path):
    return RunContext(tmp_path, 0, torch.device("cpu"), False, progress_bars=False, log=lambda *_: None)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 12), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_injection_never_duplicates_and_keeps_distinct_items(group, batch, seed):
    generator = torch.Generator().manual_seed(seed)
    n_items = group + 5
    items_BG = torch.stack([torch.randperm(n_items, generator=generator)[:group] for _ in range(batch)])
    target_B = torch.randint(0, n_items, (batch,), generator=generator)
    injected_BG = inject_targets(items_BG, target_B)
    hits_B = (injected_BG == target_B.unsqueeze(1)).sum(1)
    assert hits_B.eq(1).all()  # exactly once in every group
    for row in range(batch):
        assert len(set(injected_BG[row].tolist())) == group  # G distinct items
        if (items_BG[row] == target_B[row]).any():
            assert torch.equal(injected_BG[row], items_BG[row])  # already there: untouched
        else:  # replaces the last (lowest-scoring) beam, the rest keep their order
            assert injected_BG[row, -1] == target_B[row] and torch.equal(injected_BG[row, :-1], items_BG[row, :-1])


def test_injection_in_a_rollout_gives_every_group_its_target(encoded, tiny_recommender):
    from tawin.models.batching import prompt_batch
    from tawin.rl.rollout import make_rollout

    r = tiny_recommender
    index = torch.arange(16)
    ids, mask = prompt_batch(encoded["train"], index)
    target = encoded["train"].target_R[index]
    plain = make_rollout(r.model, r.codec, ids, mask, target, "beam", 8, torch.Generator().manual_seed(0))
    injected = make_rollout(
        r.model, r.codec, ids, mask, target, "beam", 8, torch.Generator().manual_seed(0), inject_target=True
    )
    assert injected.is_target_BG.sum(-1).eq(1).all()
    assert torch.equal(injected.target_found_B, plain.is_target_BG.any(-1))
    torch.testing.assert_close(injected.rollout_scores_BG, plain.rollout_scores_BG)
    expected_tokens = r.codec.target_table_NL[injected.items_BG]
    assert torch.equal(injected.tokens_BGT, expected_tokens)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=8),
    st.sampled_from(["binary", "rank"]),
)
def test_informative_groups_are_exactly_those_with_a_nonzero_advantage(rows, reward):
    is_target_BG = torch.tensor(rows)
    is_target_BG = is_target_BG & (torch.cumsum(is_target_BG.int(), 1) == 1)  # at most one target per group
    rewards_BG = (binary_reward if reward == "binary" else rank_reward)(is_target_BG)
    nonzero_B = group_advantages(rewards_BG).abs().amax(-1) > 0
    assert torch.equal(informative_groups(rewards_BG), nonzero_B)


def test_informative_batches_hold_only_informative_groups(encoded, tiny_recommender, tmp_path, monkeypatch):
    import tawin.rl.step_batch as step_batch
    from tawin.rl.rollout import Rollout

    real_rollout = step_batch.make_rollout

    def finds_even_targets(model, codec, ids, mask, target_B, *args, **kwargs):
        """A policy that finds the target of rows with an even target position only (an untrained
        tiny model finds almost none among 3,686 items)."""
        out = real_rollout(model, codec, ids, mask, target_B, *args, **kwargs)
        items_BG = inject_targets(out.items_BG, target_B)
        odd_B = target_B % 2 == 1
        items_BG[:, -1] = torch.where(odd_B & (out.items_BG[:, -1] != target_B), out.items_BG[:, -1], items_BG[:, -1])
        items_BG[odd_B & (items_BG[:, -1] == target_B), -1] = (
            target_B[odd_B & (items_BG[:, -1] == target_B)] + 1
        ) % len(codec.target_len_N)
        tokens_BGT = codec.target_table_NL[items_BG]
        token_mask_BGT = torch.arange(tokens_BGT.shape[-1]) < codec.target_len_N[items_BG].unsqueeze(-1)
        is_target_BG = items_BG == target_B.unsqueeze(1)
        return Rollout(
            ids, mask, items_BG, is_target_BG, tokens_BGT, token_mask_BGT, out.rollout_scores_BG, is_target_BG.any(1)
        )

    monkeypatch.setattr(step_batch, "make_rollout", finds_even_targets)
    r = tiny_recommender
    config = RLConfig(group_size=4, batch_size=4, informative_batches=True, max_draws_per_step=50)
    rows_R = torch.from_numpy(split_train_rows(len(encoded["train"]), config.rows, 0).rl)
    progress = Progress()
    batch = draw_step_batch(
        r.model.eval(), r, encoded["train"], rows_R, config, _context(tmp_path), progress, len(rows_R) // 4, 10_000
    )
    rewards_BG = binary_reward(batch.rollout.is_target_BG)
    assert len(batch.rows_B) == batch.rollout.items_BG.shape[0] > 0
    assert informative_groups(rewards_BG).all()
    assert batch.draws == progress.batches_drawn and batch.groups_drawn == 4 * batch.draws
    assert batch.informative_drawn >= len(batch.rows_B) == 4 and batch.draws > 1
    # the groups' targets are those of the rows they claim
    assert torch.equal(batch.rollout.items_BG[batch.rollout.is_target_BG], encoded["train"].target_R[batch.rows_B])


def test_fixed_row_sample_is_the_eval_sample(encoded):
    from tawin.eval.config import EvalConfig

    rows = RLRows(sample_size=40, sample_seed=3)
    rl_R = split_train_rows(len(encoded["train"]), rows, 0).rl
    assert rl_R.tolist() == EvalConfig(sample_size=40, sample_seed=3).evaluated_rows(len(encoded["train"])).tolist()
    held_R = split_train_rows(256, RLRows(holdout=0.25), 0).rl  # the latest 64 rows
    assert set(split_train_rows(256, RLRows(holdout=0.25, sample_size=40, sample_seed=3), 0).rl.tolist()) < set(
        held_R.tolist()
    )


@settings(max_examples=100, deadline=None)
@given(st.integers(16, 400), st.floats(0.01, 1.0), st.booleans())
def test_latest_share_keeps_the_latest_rows_of_rls_own(n_rows, share, held_out):
    import math

    holdout = 0.5 if held_out else 0.0  # RL's own rows: held out of SFT (a random half), or all
    own_R = split_train_rows(n_rows, RLRows(holdout=holdout, holdout_order="random"), 0).rl
    kept_R = split_train_rows(n_rows, RLRows(holdout=holdout, holdout_order="random", latest_share=share), 0).rl
    # The latest ⌈share · rows⌉ of RL's own rows (row positions are target-time order), in order.
    assert kept_R.tolist() == own_R.tolist()[len(own_R) - math.ceil(share * len(own_R)) :]
    if not held_out:
        assert own_R.tolist() == list(range(n_rows))
    # then the seeded sample of rl.rows.sample_size is drawn from those only
    sampled = split_train_rows(
        n_rows, RLRows(holdout=holdout, holdout_order="random", latest_share=share, sample_size=5), 0
    ).rl
    assert set(sampled.tolist()) <= set(kept_R.tolist())


def test_reference_sync_moves_the_reference_by_exactly_alpha(tiny_recommender):
    import copy

    policy = tiny_recommender.model
    reference = copy.deepcopy(policy)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p))
    before = [p.detach().clone() for p in reference.parameters()]
    mix_into_reference(reference, policy, 0.25)
    for old, new, target in zip(before, reference.parameters(), policy.parameters()):
        torch.testing.assert_close(new - old, 0.25 * (target - old), atol=1e-6, rtol=1e-5)


def test_rl_with_every_lever_runs_logs_and_resumes_the_synced_reference(
    industrial_small, encoded, tiny_recommender, tmp_path
):
    r = tiny_recommender
    config = RLConfig(
        group_size=4,
        batch_size=4,
        max_steps=4,
        log_every=1,
        eval_every=2,
        eval_rows=8,
        lr=1e-3,
        inject_target=True,
        informative_batches=True,
        ref_sync_every=2,
        ref_sync_alpha=0.5,
        sft_loss_weight=0.5,
        select_best=True,
        save_every=2,
    )
    result = train_rl(r, industrial_small, encoded["train"], encoded["valid"], config, _context(tmp_path))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [rec for rec in records if "train/loss" in rec]
    assert len(steps) == result["steps"] == 4
    for rec in steps:  # every group holds its target after injection: all are informative
        assert rec["rollout/informative_share"] == 1.0 and rec["rollout/draws"] == 1.0 and "train/sft_loss" in rec
    state = torch.load(tmp_path / "last" / "trainer.pt", weights_only=False)
    assert "reference" in state["extra"]
    best = json.loads((tmp_path / "final" / "best.json").read_text())
    evaluations = [rec for rec in records if "eval/recall@3" in rec]
    assert best["step"] in {rec["step"] for rec in evaluations}
    assert best["valid"]["recall@3"] == max(rec["eval/recall@3"] for rec in evaluations[:-1] or evaluations)


def test_patience_stops_early(industrial_small, encoded, tiny_recommender, tmp_path):
    r = tiny_recommender
    # lr 0: valid never improves on the init model, so one evaluation without a gain stops the run
    config = RLConfig(
        group_size=4, batch_size=4, max_steps=12, eval_every=2, eval_rows=8, lr=1e-12, patience=1, select_best=True
    )
    result = train_rl(r, industrial_small, encoded["train"], encoded["valid"], config, _context(tmp_path))
    assert result["steps"] == 2 and result["best_step"] == 0


def test_lever_settings_are_checked():
    from tawin.config import validate

    problems = validate(
        RLConfig(
            inject_target=True,
            negatives="random",
            weighting="none",
            ref_sync_alpha=0,
            sft_loss_weight=-1,
            select_best=True,
            max_draws_per_step=0,
            rows=RLRows(latest_share=1.5),
        )
    )
    text = " ".join(problems)
    for field in (
        "inject_target",
        "ref_sync_alpha",
        "sft_loss_weight",
        "eval_every",
        "max_draws_per_step",
        "latest_share",
    ):
        assert field in text


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 500), st.floats(0.0, 0.95), st.sampled_from(["latest", "random"]), st.integers(0, 1000))
def test_holdout_splits_train_rows_into_disjoint_sft_and_rl_rows(n_rows, fraction, order, seed):
    from tawin.data.protocol.holdout import holdout_rows

    sft_rows, rl_rows_ = holdout_rows(n_rows, fraction, order, seed)
    if fraction == 0:
        assert sft_rows.tolist() == rl_rows_.tolist() == list(range(n_rows))
        return
    assert not set(sft_rows.tolist()) & set(rl_rows_.tolist())
    assert sorted(sft_rows.tolist() + rl_rows_.tolist()) == list(range(n_rows))
    assert len(rl_rows_) == int(__import__("math").ceil(fraction * n_rows))
    if order == "latest":
        assert rl_rows_.tolist() == list(range(n_rows - len(rl_rows_), n_rows))


def test_held_out_rows_never_reach_sft(industrial_small, encoded, tiny_recommender, tmp_path, monkeypatch):
    import tawin.sft.train as sft_train
    from tawin.data.protocol.holdout import holdout_rows
    from tawin.sft.config import SFTConfig

    seen: list[int] = []
    real_loss = sft_train.sft_loss

    def recording_loss(model, codec, split, index_B, *args, **kwargs):
        seen.extend(index_B.tolist())
        return real_loss(model, codec, split, index_B, *args, **kwargs)

    monkeypatch.setattr(sft_train, "sft_loss", recording_loss)
    sft_rows, rl_rows_ = holdout_rows(len(encoded["train"]), 0.25, "random", 0)
    config = SFTConfig(epochs=1, batch_size=32, eval_rows=8, eval_beams=10)
    sft_train.train_sft(
        tiny_recommender,
        industrial_small,
        encoded["train"],
        encoded["valid"],
        config,
        _context(tmp_path),
        rows=sft_rows,
    )
    assert sorted(seen) == sorted(sft_rows.tolist())  # every SFT row once, no held-out row
    assert not set(seen) & set(rl_rows_.tolist())


def test_holdout_setting_is_checked_and_in_the_resolved_config():
    from tawin.config import load_config, to_dict
    from tawin.errors import ConfigError
    from tawin.run.config import PipelineConfig

    config = load_config(PipelineConfig, overrides=["rl.rows.holdout=0.2", "rl.rows.holdout_order=random"])
    assert to_dict(config)["data"] == {"dataset": "industrial", "latest_train_rows": 0}
    assert to_dict(config)["rl"]["rows"] == {
        "holdout": 0.2,
        "holdout_order": "random",
        "latest_share": 0.0,
        "sample_size": 0,
        "sample_seed": 0,
    }
    sft_rows, rl_rows_ = split_train_rows(100, config.rl.rows, config.seed)
    assert len(rl_rows_) == 20 and not set(sft_rows) & set(rl_rows_)
    with pytest.raises(ConfigError, match=r"rl\.rows\.holdout=1\.0 must lie in \[0, 1\)"):
        load_config(PipelineConfig, overrides=["rl.rows.holdout=1"])
