"""Paper Lemma 3.1, numerically: GRPO with a binary reward and one positive is a pairwise-margin
(AUC) surrogate with constant c = √(G−1)/G (population std); with TAWin weights folded into the
negatives' advantages it is the w̄-weighted margin, the smoothed WPAUC surrogate."""

from __future__ import annotations

import math
from typing import get_args

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from tawin.rl import binary_reward, group_advantages, tawin_weights
from tawin.rl.advantages import lemma_constant
from tawin.rl.config import PolicyLoss
from tawin.rl.loss import select_loss

GROUP_SIZES = [2, 3, 4, 8, 16, 50]


def one_positive_group(group_size: int, positive: int, seed: int):
    """(is_target [1, G], scores s [1, G] leaf with grad)."""
    is_target_BG = torch.zeros(1, group_size, dtype=torch.bool)
    is_target_BG[0, positive] = True
    gen = torch.Generator().manual_seed(seed)
    scores_BG = (-3 * torch.rand(1, group_size, generator=gen, dtype=torch.float64)).requires_grad_()
    return is_target_BG, scores_BG


def grad_of(value: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(value, wrt)[0]


def weighted_margin(scores_BG, is_target_BG, w_bar_BG) -> torch.Tensor:
    """(1/|N|) Σ_{i∈N} w̄_i (s⁺ − s_i), one positive per group (w̄ ≡ 1: the AUC margin)."""
    s_pos = scores_BG[is_target_BG]
    negatives = ~is_target_BG
    return (w_bar_BG[negatives] * (s_pos - scores_BG[negatives])).sum() / negatives.sum()


def test_constant_values():
    for g in GROUP_SIZES:
        assert lemma_constant(g) == pytest.approx(math.sqrt(g - 1) / g, rel=1e-15)
    assert lemma_constant(2) == pytest.approx(0.5)
    assert lemma_constant(4) == pytest.approx(0.4330127018922193)
    assert lemma_constant(16) == pytest.approx(0.24206145913796356)
    assert lemma_constant(16, eps=1e-4) == pytest.approx((15 / 256) / (math.sqrt(15) / 16 + 1e-4))


@pytest.mark.parametrize("group_size", GROUP_SIZES)
@pytest.mark.parametrize("eps", [0.0, 1e-4])
def test_grpo_surrogate_is_margin_times_c(group_size, eps):
    is_target_BG, s_BG = one_positive_group(group_size, positive=group_size // 3, seed=group_size)
    adv_BG = group_advantages(binary_reward(is_target_BG).double(), eps=eps)
    surrogate = (adv_BG * s_BG).sum() / group_size
    margin = weighted_margin(s_BG, is_target_BG, torch.ones_like(adv_BG))
    c = lemma_constant(group_size, eps)
    torch.testing.assert_close(grad_of(surrogate, s_BG), c * grad_of(margin, s_BG))
    torch.testing.assert_close(surrogate, c * margin)  # linear, so the values agree too
    if eps == 0:
        assert c == pytest.approx(math.sqrt(group_size - 1) / group_size)


def test_unbiased_std_would_change_the_constant():
    g = 16
    r_BG = binary_reward(torch.arange(g).unsqueeze(0) == 0).double()
    unbiased_adv = (r_BG - r_BG.mean()) / r_BG.std(unbiased=True)
    assert unbiased_adv[0, 0].item() != pytest.approx(group_advantages(r_BG, eps=0)[0, 0].item())


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(GROUP_SIZES[1:]),
    st.integers(0, 10**6),
    st.sampled_from([1e-3, 0.3, 1.0, 10.0, 1e4]),
    st.floats(0.5, 3.0),
    st.data(),
)
def test_tawin_surrogate_is_weighted_margin_times_c(group_size, seed, tau, budget, data):
    positive = data.draw(st.integers(0, group_size - 1))
    anchor = data.draw(st.integers(0, group_size - 2))
    is_target_BG, s_BG = one_positive_group(group_size, positive, seed)
    w_bar_BG = tawin_weights(s_BG, ~is_target_BG, anchor, tau, budget)
    adv_BG = group_advantages(binary_reward(is_target_BG).double(), eps=0) * w_bar_BG  # as rl_step_loss folds them in
    surrogate = (adv_BG * s_BG).sum() / group_size
    margin = weighted_margin(s_BG, is_target_BG, w_bar_BG)
    c = math.sqrt(group_size - 1) / group_size
    torch.testing.assert_close(grad_of(surrogate, s_BG), c * grad_of(margin, s_BG))


@pytest.mark.parametrize("kind", get_args(PolicyLoss))
@pytest.mark.parametrize("tau", [None, 1.0, 1e-3])
def test_policy_losses_at_ratio_one_have_the_surrogate_gradient(kind, tau):
    """One-token sequences, logp_old = logp_new.detach(), β = 0: −∂loss/∂logp = Ã/G, which is
    c × ∂(weighted margin)/∂logp, for GRPO, DAPO and GSPO alike."""
    g = 16
    is_target_BG, s_BG = one_positive_group(g, positive=5, seed=7)
    adv_BG = group_advantages(binary_reward(is_target_BG).double(), eps=0)
    w_bar_BG = torch.ones_like(adv_BG)
    if tau is not None:
        w_bar_BG = tawin_weights(s_BG, ~is_target_BG, anchor=2, tau=tau)
        adv_BG = adv_BG * w_bar_BG
    logp_BGL = s_BG.unsqueeze(-1)  # the item's score is its one token's log-prob
    mask_BGL = torch.ones_like(logp_BGL, dtype=torch.bool)
    out = select_loss(kind)(logp_BGL, logp_BGL.detach(), logp_BGL.detach(), mask_BGL, adv_BG, kl_beta=0.0)
    minus_grad = -grad_of(out.loss, s_BG)
    torch.testing.assert_close(minus_grad, adv_BG / g)
    c = math.sqrt(g - 1) / g
    margin = weighted_margin(s_BG, is_target_BG, w_bar_BG)
    torch.testing.assert_close(minus_grad, c * grad_of(margin, s_BG))


def test_group_without_positive_gives_no_gradient():
    s_BG = torch.randn(1, 8, dtype=torch.float64, requires_grad=True)
    adv_BG = group_advantages(binary_reward(torch.zeros(1, 8, dtype=torch.bool)).double())
    assert (grad_of((adv_BG * s_BG).sum() / 8, s_BG) == 0).all()
