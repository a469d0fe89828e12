"""GRPO / DAPO / GSPO losses vs slow loop references, analytic gradients, clipping and masks."""

from __future__ import annotations

import math
from typing import get_args

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from tawin.errors import ConfigError
from tawin.rl.config import PolicyLoss
from tawin.rl.loss import (
    POLICY_LOSSES,
    LossOutput,
    dapo_loss,
    grpo_loss,
    gspo_loss,
    select_loss,
)

LOSSES = get_args(PolicyLoss)

SETTINGS = settings(max_examples=40, deadline=None)


def _clipped(r: float, a: float, lo: float, hi: float) -> tuple[float, bool]:
    loss = -min(r * a, min(max(r, 1 - lo), 1 + hi) * a)
    return loss, (r < 1 - lo and a < 0) or (r > 1 + hi and a > 0)


def _k3(new: float, ref: float) -> float:
    return math.exp(ref - new) - (ref - new) - 1


def loss_loop(kind: str, new, old, ref, mask, adv, lo, hi, beta) -> tuple[float, float, float]:
    """(loss, kl, clip_fraction) by loops over b, g, t."""
    seq_pol, seq_kl, tok_pol, tok_kl, tok_clip, seq_clip = [], [], [], [], [], []
    for b in range(len(new)):
        for g in range(len(new[b])):
            ts = [t for t in range(len(new[b][g])) if mask[b][g][t]]
            if not ts:
                continue
            pol = [_clipped(math.exp(new[b][g][t] - old[b][g][t]), adv[b][g], lo, hi) for t in ts]
            kls = [_k3(new[b][g][t], ref[b][g][t]) for t in ts]
            tok_pol += [p for p, _ in pol]
            tok_clip += [c for _, c in pol]
            tok_kl += kls
            seq_kl.append(sum(kls) / len(ts))
            if kind == "gspo":
                s = math.exp(sum(new[b][g][t] - old[b][g][t] for t in ts) / len(ts))
                p, c = _clipped(s, adv[b][g], lo, hi)
                seq_pol.append(p)
                seq_clip.append(c)
            else:
                seq_pol.append(sum(p for p, _ in pol) / len(ts))

    def mean(xs):
        return sum(xs) / max(len(xs), 1)

    if kind == "dapo":
        return mean(tok_pol) + beta * mean(tok_kl), mean(tok_kl), mean(tok_clip)
    clip = mean(seq_clip) if kind == "gspo" else mean(tok_clip)
    return mean(seq_pol) + beta * mean(seq_kl), mean(seq_kl), clip


@st.composite
def batches(draw):
    b, g, length = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    new = -torch.rand(b, g, length, generator=gen, dtype=torch.float64) * 3
    spread = draw(st.sampled_from([0.0, 0.1, 0.5]))
    old = new + spread * torch.randn(b, g, length, generator=gen, dtype=torch.float64)
    ref = new + 0.3 * torch.randn(b, g, length, generator=gen, dtype=torch.float64)
    mask = torch.rand(b, g, length, generator=gen) < 0.7
    adv = torch.randn(b, g, generator=gen, dtype=torch.float64)
    return new, old, ref, mask, adv


@SETTINGS
@given(batches(), st.sampled_from(list(LOSSES)), st.sampled_from([0.0, 1e-3, 0.5]))
def test_losses_match_loop(batch, kind, beta):
    new, old, ref, mask, adv = batch
    lo, hi = 0.2, (0.28 if kind == "dapo" else 0.2)
    out = select_loss(kind)(new, old, ref, mask, adv, lo, hi, beta)
    assert isinstance(out, LossOutput)
    loss, kl, clip = loss_loop(
        str(kind), new.tolist(), old.tolist(), ref.tolist(), mask.tolist(), adv.tolist(), lo, hi, beta
    )
    assert out.loss.item() == pytest.approx(loss, rel=1e-9, abs=1e-12)
    assert out.kl.item() == pytest.approx(kl, rel=1e-9, abs=1e-12)
    assert out.clip_fraction.item() == pytest.approx(clip, abs=1e-12)
    assert out.policy_loss.item() == pytest.approx(loss - beta * kl, rel=1e-9, abs=1e-12)


def _ratio_one_inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    b, g, length = 2, 3, 4
    new = (-torch.rand(b, g, length, generator=gen, dtype=torch.float64)).requires_grad_()
    ref = new.detach() + 0.2 * torch.randn(b, g, length, generator=gen, dtype=torch.float64)
    mask = torch.ones(b, g, length, dtype=torch.bool)
    mask[0, 1, 2:] = False  # sequences of different lengths
    mask[1, 2, 1:] = False
    adv = torch.randn(b, g, generator=gen, dtype=torch.float64)
    return new, ref, mask, adv


@pytest.mark.parametrize("kind", list(LOSSES))
def test_gradient_at_ratio_one_is_analytic(kind):
    new, ref, mask, adv = _ratio_one_inputs()
    beta = 0.1
    out = select_loss(kind)(new, new.detach(), ref, mask, adv, kl_beta=beta)
    (grad,) = torch.autograd.grad(out.loss, new)
    n_tokens = mask.sum(-1, keepdim=True).double()
    per_token = -adv.unsqueeze(-1) + beta * (1 - torch.exp(ref - new.detach()))
    if kind == "dapo":
        expected = per_token * mask / mask.sum()
    else:  # GRPO, and GSPO whose sequence ratio has ∂s/∂logp_t = 1/|y| at s = 1
        expected = per_token * mask / (n_tokens * mask.shape[0] * mask.shape[1])
    torch.testing.assert_close(grad, expected)
    assert out.clip_fraction.item() == 0.0


@pytest.mark.parametrize("kind", ["grpo", "dapo"])
def test_token_clipping_engages_when_ratios_move(kind):
    new, _, mask, _ = _ratio_one_inputs()
    old = new.detach() - 0.5  # every ratio e^0.5 ≈ 1.65 > 1 + ε_high
    ref = new.detach()
    positive = torch.ones(2, 3, dtype=torch.float64)
    out = select_loss(kind)(new, old, ref, mask, positive, kl_beta=0.0)
    (grad,) = torch.autograd.grad(out.loss, new)
    assert out.clip_fraction.item() == 1.0
    assert (grad == 0).all()  # the clipped branch is constant in θ
    out = select_loss(kind)(new, old, ref, mask, -positive, kl_beta=0.0)
    (grad,) = torch.autograd.grad(out.loss, new)
    assert out.clip_fraction.item() == 0.0  # a pessimistic bound never clips a worsening ratio
    assert (grad[mask] > 0).all()


def test_dapo_clips_higher_than_grpo():
    new, _, mask, _ = _ratio_one_inputs()
    old = new.detach() - math.log(1.25)  # ratio 1.25: outside 1 + 0.2, inside 1 + 0.28
    adv = torch.ones(2, 3, dtype=torch.float64)
    assert grpo_loss(new, old, new.detach(), mask, adv).clip_fraction.item() == 1.0
    assert dapo_loss(new, old, new.detach(), mask, adv).clip_fraction.item() == 0.0


def test_dapo_normalises_by_total_tokens_grpo_by_sequence():
    # Two sequences, lengths 1 and 3, ratio 1: per-token surrogate −A.
    new = torch.zeros(1, 2, 3, dtype=torch.float64)
    mask = torch.tensor([[[True, False, False], [True, True, True]]])
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    dapo = dapo_loss(new, new, new, mask, adv).loss.item()
    grpo = grpo_loss(new, new, new, mask, adv).loss.item()
    assert dapo == pytest.approx((-1.0 + 3 * 1.0) / 4)  # long sequence weighs 3/4
    assert grpo == pytest.approx((-1.0 + 1.0) / 2)  # each sequence weighs 1/2


def test_gspo_uses_the_sequence_ratio():
    # Token log-ratios +0.3 and −0.3 cancel: sequence ratio 1, while token ratios leave the range.
    new = torch.zeros(1, 1, 2, dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[[-0.3, 0.3]]], dtype=torch.float64)
    mask = torch.ones(1, 1, 2, dtype=torch.bool)
    adv = torch.tensor([[1.0]], dtype=torch.float64)
    gspo = gspo_loss(new, old, new.detach(), mask, adv)
    grpo = grpo_loss(new, old, new.detach(), mask, adv)
    assert gspo.clip_fraction.item() == 0.0 and gspo.loss.item() == pytest.approx(-1.0)
    assert grpo.clip_fraction.item() == 0.5
    (grad,) = torch.autograd.grad(gspo.loss, new)
    torch.testing.assert_close(grad, torch.full((1, 1, 2), -0.5, dtype=torch.float64))


@pytest.mark.parametrize("kind", list(LOSSES))
def test_kl_zero_when_reference_equals_policy(kind):
    new, _, mask, adv = _ratio_one_inputs()
    out = select_loss(kind)(new, new.detach(), new.detach(), mask, adv)
    assert out.kl.item() == 0.0
    out = select_loss(kind)(new, new.detach(), new.detach() + 0.1, mask, adv)
    assert out.kl.item() > 0.0


@pytest.mark.parametrize("kind", list(LOSSES))
def test_mask_respected(kind):
    new, ref, mask, adv = _ratio_one_inputs()
    old = new.detach() + 0.05
    out = select_loss(kind)(new, old, ref, mask, adv)
    (grad,) = torch.autograd.grad(out.loss, new)
    assert (grad[~mask] == 0).all()
    junk = torch.where(mask, torch.zeros_like(old), torch.full_like(old, 1e3))
    float_mask = mask.to(torch.float64)
    out_junk = select_loss(kind)(new + junk, old - junk, ref + junk, float_mask, adv)
    assert out_junk.loss.item() == pytest.approx(out.loss.item(), rel=1e-12)
    assert out_junk.clip_fraction.item() == out.clip_fraction.item()


def test_select_loss_and_its_choices():
    assert select_loss("grpo") is grpo_loss
    assert select_loss("gspo") is gspo_loss
    assert set(POLICY_LOSSES) == set(LOSSES) == {"grpo", "dapo", "gspo"}  # rl.loss's Literal names every function
    with pytest.raises(ConfigError, match=r"loss='ppo' is not a known policy loss; choose one of"):
        select_loss("ppo")
