"""Rewards (binary, ReRe rank) and GRPO group advantages vs slow loop references."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from tawin.rl import binary_reward, group_advantages, rank_reward
from tawin.rl.advantages import lemma_constant

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def target_masks(draw) -> torch.Tensor:
    """bool [B, G]: each group holds the target at most once (one positive per prompt)."""
    b = draw(st.integers(1, 5))
    g = draw(st.integers(1, 12))
    rows = []
    for _ in range(b):
        position = draw(st.one_of(st.none(), st.integers(0, g - 1)))
        rows.append([position == j for j in range(g)])
    return torch.tensor(rows, dtype=torch.bool)


def rank_reward_loop(is_target: list[list[bool]]) -> list[list[float]]:
    out = []
    for row in is_target:
        g = len(row)
        norm = sum(1.0 / math.log2(j + 2) for j in range(g))
        hit = any(row)
        out.append([1.0 if row[i] else (-(1.0 / math.log2(i + 2)) / norm if hit else 0.0) for i in range(g)])
    return out


def advantages_loop(rewards: list[list[float]], eps: float) -> list[list[float]]:
    out = []
    for row in rewards:
        mean = sum(row) / len(row)
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / len(row))
        out.append([(r - mean) / (std + eps) for r in row])
    return out


@SETTINGS
@given(target_masks())
def test_binary_reward_matches_loop(is_target_BG):
    expected = [[1.0 if t else 0.0 for t in row] for row in is_target_BG.tolist()]
    assert binary_reward(is_target_BG).tolist() == expected


@SETTINGS
@given(target_masks())
def test_rank_reward_matches_loop(is_target_BG):
    expected = torch.tensor(rank_reward_loop(is_target_BG.tolist()))
    torch.testing.assert_close(rank_reward(is_target_BG), expected)


def test_rank_reward_exact_values_g4():
    norm = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)
    is_target = torch.tensor([[False, True, False, False], [False, False, False, False]])
    expected = torch.tensor(
        [
            [-1.0 / norm, 1.0, -(1 / math.log2(4)) / norm, -(1 / math.log2(5)) / norm],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(rank_reward(is_target), expected)
    # norm = 1 + 0.630930 + 0.5 + 0.430677 = 2.561606
    assert rank_reward(is_target)[0, 0].item() == pytest.approx(-0.390380, abs=1e-6)


@SETTINGS
@given(
    st.integers(1, 5).flatmap(
        lambda b: st.integers(1, 12).flatmap(
            lambda g: st.lists(
                st.lists(
                    st.one_of(st.sampled_from([0.0, 1.0]), st.floats(-3, 3, width=32)),
                    min_size=g,
                    max_size=g,
                ),
                min_size=b,
                max_size=b,
            )
        )
    ),
    st.sampled_from([0.0, 1e-4, 0.1]),
)
def test_group_advantages_match_loop_and_sum_to_zero(rewards, eps):
    rewards_BG = torch.tensor(rewards, dtype=torch.float64)
    adv_BG = group_advantages(rewards_BG, eps=eps)
    assert torch.isfinite(adv_BG).all()
    torch.testing.assert_close(adv_BG.sum(-1), torch.zeros(len(rewards), dtype=torch.float64))
    for row, adv_row in zip(rewards, adv_BG.tolist()):
        if all(r == row[0] for r in row):
            assert adv_row == [0.0] * len(row)
        else:
            expected = torch.tensor(advantages_loop([row], eps)[0], dtype=torch.float64)
            torch.testing.assert_close(torch.tensor(adv_row, dtype=torch.float64), expected)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, -0.37])
def test_constant_group_gives_exact_zero(value):
    rewards_BG = torch.full((3, 16), value)
    adv_BG = group_advantages(rewards_BG, eps=0.0)
    assert not torch.isnan(adv_BG).any()
    assert (adv_BG == 0).all()


def test_binary_one_positive_values_use_population_std():
    g = 16
    rewards_BG = torch.zeros(1, g, dtype=torch.float64)
    rewards_BG[0, 3] = 1.0
    adv_BG = group_advantages(rewards_BG, eps=0.0)
    assert adv_BG[0, 3].item() == pytest.approx(math.sqrt(g - 1))
    assert adv_BG[0, 0].item() == pytest.approx(-1.0 / math.sqrt(g - 1))
    assert lemma_constant(g) == pytest.approx(math.sqrt(15) / 16)
