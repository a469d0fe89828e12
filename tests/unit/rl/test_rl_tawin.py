"""TAWin weights: properties, the τ limits, and a plain-Python bisection reference."""

from __future__ import annotations

import math
import re

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from tawin.rl import tawin_weights, weight_entropy
from tawin.rl.config import RLConfig
from tawin.rl.tawin import negative_ranks, tawin_raw_weights

SETTINGS = settings(max_examples=40, deadline=None)
TAUS = [1e-3, 0.05, 0.3, 1.0, 3.0, 1e4]


def tawin_loop(
    scores: list[float], is_negative: list[bool], anchor: float, tau: float, budget: float
) -> tuple[list[float], list[float]]:
    """(raw w, normalised w̄) for one group, λ by plain bisection on Σ min(1, e^{(x−λ)/τ})."""
    negatives = [i for i, neg in enumerate(is_negative) if neg]
    order = sorted(negatives, key=lambda i: -scores[i])  # sorted() is stable: ties keep order
    x = {i: -abs(rank - anchor) for rank, i in enumerate(order)}
    n = len(negatives)
    raw = [1.0] * len(scores)
    if n > 0 and budget < n:

        def mass(lam: float) -> float:
            return sum(math.exp(min(0.0, (x[i] - lam) / tau)) for i in negatives)

        lo = min(x.values()) - 1.0  # every weight saturates: mass n > budget
        hi = max(x.values()) + tau * math.log(n / budget) + 1.0  # mass < budget
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if mass(mid) > budget else (lo, mid)
        lam = 0.5 * (lo + hi)
        for i in negatives:
            raw[i] = math.exp(min(0.0, (x[i] - lam) / tau))
    total = sum(raw[i] for i in negatives)
    normalised = [raw[i] * n / total if is_negative[i] else 1.0 for i in range(len(scores))]
    return raw, normalised


@st.composite
def groups(draw, min_g: int = 1, max_g: int = 12):
    """(scores [B, G] float64 with ties, is_negative [B, G], anchor, tau, budget)."""
    b = draw(st.integers(1, 4))
    g = draw(st.integers(min_g, max_g))
    cell = st.one_of(st.integers(-3, 3).map(float), st.floats(-50, 0, allow_subnormal=False))
    scores = draw(st.lists(st.lists(cell, min_size=g, max_size=g), min_size=b, max_size=b))
    is_negative = draw(
        st.lists(st.lists(st.booleans() | st.just(True), min_size=g, max_size=g), min_size=b, max_size=b)
    )
    anchor = draw(st.integers(0, g))
    tau = draw(st.sampled_from(TAUS) | st.floats(1e-3, 1e4))
    budget = draw(st.floats(0.05, float(g)) | st.integers(1, g).map(float))
    return (
        torch.tensor(scores, dtype=torch.float64),
        torch.tensor(is_negative, dtype=torch.bool),
        anchor,
        tau,
        budget,
    )


@SETTINGS
@given(groups())
def test_raw_weights_in_unit_interval_and_meet_budget(case):
    scores_BG, is_negative_BG, anchor, tau, budget = case
    w_BG = tawin_raw_weights(scores_BG, is_negative_BG, anchor, tau, budget)
    assert ((w_BG >= 0) & (w_BG <= 1)).all()
    assert (w_BG[~is_negative_BG] == 1).all()
    n_neg_B = is_negative_BG.sum(-1).double()
    mass_B = (w_BG * is_negative_BG).sum(-1)
    torch.testing.assert_close(mass_B, torch.clamp(n_neg_B, max=budget), atol=1e-6, rtol=0)


@SETTINGS
@given(groups())
def test_normalised_weights_mean_one_over_negatives_positives_one(case):
    scores_BG, is_negative_BG, anchor, tau, budget = case
    w_bar_BG = tawin_weights(scores_BG, is_negative_BG, anchor, tau, budget)
    assert (w_bar_BG[~is_negative_BG] == 1).all()
    assert (w_bar_BG >= 0).all()
    n_neg_B = is_negative_BG.sum(-1).double()
    has_neg_B = n_neg_B > 0
    mean_B = (w_bar_BG * is_negative_BG).sum(-1)[has_neg_B] / n_neg_B[has_neg_B]
    torch.testing.assert_close(mean_B, torch.ones_like(mean_B), atol=1e-9, rtol=0)
    assert (w_bar_BG[~has_neg_B] == 1).all()


@SETTINGS
@given(groups())
def test_weights_match_bisection_loop(case):
    scores_BG, is_negative_BG, anchor, tau, budget = case
    raw_BG = tawin_raw_weights(scores_BG, is_negative_BG, anchor, tau, budget)
    w_bar_BG = tawin_weights(scores_BG, is_negative_BG, anchor, tau, budget)
    for b in range(scores_BG.shape[0]):
        raw, normalised = tawin_loop(scores_BG[b].tolist(), is_negative_BG[b].tolist(), anchor, tau, budget)
        torch.testing.assert_close(raw_BG[b], torch.tensor(raw, dtype=torch.float64), atol=1e-8, rtol=1e-7)
        torch.testing.assert_close(w_bar_BG[b], torch.tensor(normalised, dtype=torch.float64), atol=1e-7, rtol=1e-7)


@SETTINGS
@given(groups(min_g=2), st.randoms(use_true_random=False))
def test_order_comes_from_scores_not_positions(case, rng):
    scores_BG, is_negative_BG, anchor, tau, budget = case
    # Distinct scores, so that a permutation cannot reorder ties.
    scores_BG = scores_BG + 1e-3 * torch.randperm(scores_BG.numel()).view_as(scores_BG).double()
    perm = list(range(scores_BG.shape[1]))
    rng.shuffle(perm)
    w_BG = tawin_weights(scores_BG, is_negative_BG, anchor, tau, budget)
    w_perm_BG = tawin_weights(scores_BG[:, perm], is_negative_BG[:, perm], anchor, tau, budget)
    torch.testing.assert_close(w_perm_BG, w_BG[:, perm])


def test_reversed_scores_move_the_window():
    g, anchor = 8, 2
    is_negative_BG = torch.ones(1, g, dtype=torch.bool)
    ascending_BG = torch.arange(g, dtype=torch.float64).unsqueeze(0)  # worst candidate first
    w_BG = tawin_weights(ascending_BG, is_negative_BG, anchor, tau=1e-3)
    assert w_BG[0].argmax().item() == g - 1 - anchor
    assert negative_ranks(ascending_BG, is_negative_BG)[0].tolist() == list(range(g - 1, -1, -1))


def test_ranks_skip_positives_and_break_ties_by_position():
    scores_BG = torch.tensor([[-1.0, -0.5, -1.0, -3.0, -1.0]])
    is_negative_BG = torch.tensor([[True, False, True, True, True]])
    assert negative_ranks(scores_BG, is_negative_BG).tolist() == [[0, -1, 1, 3, 2]]


@pytest.mark.parametrize("anchor", [0, 2, 4, 14])
def test_large_tau_gives_uniform_weights(anchor):
    g = 16
    scores_BG = torch.randn(3, g, generator=torch.Generator().manual_seed(anchor))
    is_negative_BG = torch.ones(3, g, dtype=torch.bool)
    is_negative_BG[:, 5] = False
    w_BG = tawin_weights(scores_BG, is_negative_BG, anchor, tau=1e4)
    torch.testing.assert_close(w_BG, torch.ones_like(w_BG), atol=5e-3, rtol=0)
    entropy_B = weight_entropy(w_BG, is_negative_BG)
    torch.testing.assert_close(entropy_B, torch.full((3,), math.log(g - 1)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("anchor", [0, 2, 4, 14])
def test_small_tau_gives_hard_window_at_anchor(anchor):
    g = 16
    scores_BG = torch.randn(3, g, generator=torch.Generator().manual_seed(anchor))
    is_negative_BG = torch.ones(3, g, dtype=torch.bool)
    is_negative_BG[:, 7] = False
    n_neg = g - 1
    w_BG = tawin_weights(scores_BG, is_negative_BG, anchor, tau=1e-3, budget=1.0)
    at_anchor_BG = negative_ranks(scores_BG, is_negative_BG) == anchor
    assert at_anchor_BG.sum(-1).tolist() == [1, 1, 1]
    torch.testing.assert_close(w_BG[at_anchor_BG], torch.full((3,), float(n_neg)))
    assert (w_BG[is_negative_BG & ~at_anchor_BG].abs() < 1e-12).all()
    torch.testing.assert_close(weight_entropy(w_BG, is_negative_BG), torch.zeros(3))


def test_exact_solve_at_saturation_ties():
    # x = 0 at the anchor, −1 at both neighbours: budget 2 saturates the anchor and splits
    # the remaining unit between the two tied neighbours (ranks 2 away weigh e^{−1/τ} ≈ 0).
    scores_BG = -torch.arange(7, dtype=torch.float64).unsqueeze(0)
    is_negative_BG = torch.ones(1, 7, dtype=torch.bool)
    for tau in (1e-3, 1e-2):
        w_BG = tawin_raw_weights(scores_BG, is_negative_BG, anchor=3, tau=tau, budget=2.0)
        torch.testing.assert_close(w_BG[0, 2:5], torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64))


def test_budget_at_least_negatives_gives_all_ones_and_no_negatives_gives_ones():
    scores_BG = torch.randn(2, 5)
    is_negative_BG = torch.tensor([[True, True, False, False, False], [False] * 5])
    for tau in (1e-3, 1.0):
        assert (tawin_raw_weights(scores_BG, is_negative_BG, 1, tau, budget=2.0) == 1).all()
        assert (tawin_weights(scores_BG, is_negative_BG, 1, tau, budget=3.5) == 1).all()


def test_dtype_kept_and_no_gradient_through_weights():
    scores_BG = torch.randn(2, 6, requires_grad=True)
    is_negative_BG = torch.ones(2, 6, dtype=torch.bool)
    w_BG = tawin_weights(scores_BG, is_negative_BG, anchor=1, tau=0.5)
    assert w_BG.dtype == torch.float32 and not w_BG.requires_grad


def test_weight_entropy_matches_loop_and_is_scale_invariant():
    w_BG = torch.tensor([[0.5, 1.0, 0.0, 2.0], [3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    is_negative_BG = torch.tensor([[True, False, True, True], [True, True, True, True], [False, False, False, False]])
    expected = []
    for w_row, neg_row in zip(w_BG.tolist(), is_negative_BG.tolist()):
        ws = [w for w, neg in zip(w_row, neg_row) if neg and w > 0]
        expected.append(-sum(w / sum(ws) * math.log(w / sum(ws)) for w in ws))
    torch.testing.assert_close(weight_entropy(w_BG, is_negative_BG), torch.tensor(expected))
    torch.testing.assert_close(weight_entropy(7 * w_BG, is_negative_BG), torch.tensor(expected))


def tawin_rules(anchor, tau, budget, group_size) -> list[str]:
    """RLConfig's rules of the TAWin window (the ones the TRL integration reports too)."""
    return RLConfig(weighting="tawin", anchor=anchor, tau=tau, budget=budget, group_size=group_size).check()


def test_tawin_rules_accept_paper_defaults():
    assert tawin_rules(anchor=2, tau=1.0, budget=1.0, group_size=16) == []
    assert tawin_rules(anchor=14, tau=1e-3, budget=15, group_size=16) == []


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"anchor": 20},
            r"anchor=20 lies outside the group's G−1=15 negatives \(ranks 0\.\.14\); "
            r"lower rl\.anchor/rl\.target_k to ≤ 14 or raise rl\.group_size",
        ),
        ({"anchor": 15}, r"anchor=15 lies outside"),
        ({"anchor": -1}, r"anchor=-1 must be ≥ 0"),
        ({"tau": 0.0}, r"tau=0\.0 must be > 0; use a large tau"),
        ({"tau": -2.0}, r"tau=-2\.0 must be > 0"),
        ({"budget": 0.0}, r"budget=0\.0 must lie in \(0, G−1=15\]; 1 suits one positive"),
        ({"budget": 16.0}, r"budget=16\.0 must lie in"),
        ({"group_size": 1, "anchor": 0}, r"group_size=1 must be ≥ 2"),
    ],
)
def test_tawin_rules_messages(kwargs, pattern):
    settings_ = {"anchor": 2, "tau": 1.0, "budget": 1.0, "group_size": 16} | kwargs
    assert re.search(pattern, " ".join(tawin_rules(**settings_)))


def test_tawin_rules_report_every_problem_at_once():
    assert re.search(
        r"tau=0 must be > 0.*anchor=20 lies.*budget=0 must",
        "; ".join(tawin_rules(anchor=20, tau=0, budget=0, group_size=16)),
    )
