"""AUC, partial AUC, WPAUC, Recall@K and NDCG@K over the catalogue vs slow pure-Python loops."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tawin import metrics

INF = float("inf")
FAST = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------- slow references, row by row


def _pair_win(s_pos: float, s_neg: float) -> float:
    return 1.0 if s_pos > s_neg else 0.5 if s_pos == s_neg else 0.0


def auc_slow(scores: list[list[float]], positive: list[list[bool]]) -> list[float]:
    out = []
    for s, p in zip(scores, positive):
        pos = [x for x, is_pos in zip(s, p) if is_pos]
        neg = [x for x, is_pos in zip(s, p) if not is_pos]
        out.append(sum(_pair_win(a, b) for a in pos for b in neg) / (len(pos) * len(neg)))
    return out


def wpauc_slow(scores, positive, alpha: Fraction, d: Fraction) -> list[float]:
    """Window (⌈α n⁻⌉, ⌈(α+d) n⁻⌉] of a stable descending sort, in exact rational arithmetic."""
    out = []
    for s, p in zip(scores, positive):
        pos = [x for x, is_pos in zip(s, p) if is_pos]
        neg = sorted((x for x, is_pos in zip(s, p) if not is_pos), key=lambda x: -x)
        lo = math.ceil(alpha * len(neg))
        hi = min(math.ceil((alpha + d) * len(neg)), len(neg))
        window = neg[lo:hi]
        if not window:
            out.append(math.nan)
            continue
        out.append(sum(_pair_win(a, b) for a in pos for b in window) / (len(pos) * len(window)))
    return out


def topk_slow(scores, positive, k: int, order: list[int] | None = None):
    """(Recall@K, NDCG@K) per row, ranking by descending score, ties broken by ``order``."""
    recalls, ndcgs = [], []
    for s, p in zip(scores, positive):
        tiebreak = order if order is not None else list(range(len(s)))
        ranked = sorted(range(len(s)), key=lambda i: (-s[i], tiebreak[i]))
        n_pos = sum(p)
        hits = [p[i] for i in ranked[:k]]
        recalls.append(sum(hits) / n_pos)
        dcg = sum(1.0 / math.log2(r + 2) for r, hit in enumerate(hits) if hit)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(n_pos, k)))
        ndcgs.append(dcg / idcg)
    return recalls, ndcgs


def topk_tie_average_slow(scores, positive, k: int) -> tuple[list[float], list[float]]:
    """Expectation of (Recall@K, NDCG@K) over every tie-breaking order (all N! orders)."""
    n = len(scores[0])
    orders = list(itertools.permutations(range(n)))
    recall_sum = [0.0] * len(scores)
    ndcg_sum = [0.0] * len(scores)
    for order in orders:
        recalls, ndcgs = topk_slow(scores, positive, k, list(order))
        recall_sum = [a + b for a, b in zip(recall_sum, recalls)]
        ndcg_sum = [a + b for a, b in zip(ndcg_sum, ndcgs)]
    return [x / len(orders) for x in recall_sum], [x / len(orders) for x in ndcg_sum]


# ---------------------------------------------------------------- strategies


@st.composite
def score_rows(draw, max_b=5, max_n=30, ties=True, one_positive=False):
    """(scores [B][N], positive [B][N]) with ≥ 1 positive and ≥ 1 negative per row.

    ties=True: small integers plus ±inf, so ties are frequent; ties=False: each row a permutation.
    """
    b = draw(st.integers(1, max_b))
    n = draw(st.integers(2, max_n))
    if ties:
        values = st.sampled_from([-INF, -2.0, -1.0, 0.0, 0.5, 1.0, 3.0, INF])
        scores = [draw(st.lists(values, min_size=n, max_size=n)) for _ in range(b)]
    else:
        scores = [[float(x) for x in draw(st.permutations(range(n)))] for _ in range(b)]
    positive = []
    for _ in range(b):
        n_pos = 1 if one_positive else draw(st.integers(1, n - 1))
        chosen = set(draw(st.permutations(range(n)))[:n_pos])
        positive.append([i in chosen for i in range(n)])
    return scores, positive


def as_tensors(scores, positive, dtype=torch.float64):
    return torch.tensor(scores, dtype=dtype), torch.tensor(positive, dtype=torch.bool)


def assert_close_rows(got: torch.Tensor, want: list[float]) -> None:
    assert got.shape == (len(want),)
    assert got.dtype == torch.float64
    want_t = torch.tensor(want, dtype=torch.float64)
    assert torch.allclose(got, want_t, rtol=0, atol=1e-12, equal_nan=True), (got, want_t)


# ---------------------------------------------------------------- AUC, partial AUC, WPAUC


@FAST
@given(score_rows(ties=True) | score_rows(ties=False))
def test_auc_equals_brute_force_pair_count(rows):
    scores, positive = rows
    assert_close_rows(metrics.auc(*as_tensors(scores, positive)), auc_slow(scores, positive))


@FAST
@given(score_rows(ties=True) | score_rows(ties=False))
def test_wpauc_full_window_equals_auc(rows):
    s, p = as_tensors(*rows)
    assert torch.allclose(metrics.wpauc(s, p, 0.0, 1.0), metrics.auc(s, p), rtol=0, atol=1e-12)


@FAST
@given(score_rows(), st.integers(1, 40), st.data())
def test_partial_auc_equals_wpauc_from_zero(rows, den, data):
    num = data.draw(st.integers(1, den))
    s, p = as_tensors(*rows)
    got = metrics.partial_auc(s, p, max_fpr=num / den)
    assert torch.equal(got, metrics.wpauc(s, p, 0.0, num / den))
    assert_close_rows(got, wpauc_slow(*rows, Fraction(0), Fraction(num, den)))


@FAST
@given(score_rows(ties=True) | score_rows(ties=False), st.integers(1, 40), st.data())
def test_wpauc_matches_slow_loop(rows, den, data):
    a = data.draw(st.integers(0, den - 1))
    w = data.draw(st.integers(1, den - a))
    got = metrics.wpauc(*as_tensors(*rows), a / den, w / den)
    assert_close_rows(got, wpauc_slow(*rows, Fraction(a, den), Fraction(w, den)))


@FAST
@given(score_rows(ties=False, one_positive=True))
def test_lemma_3_5_k_window_wpauc_equals_recall_at_k_exactly(rows):
    s, p = as_tensors(*rows, dtype=torch.float32)
    n_neg = s.shape[1] - 1
    for k in range(1, n_neg + 1):
        window = metrics.wpauc(s, p, (k - 1) / n_neg, 1 / n_neg)
        assert torch.equal(window, metrics.recall_at_k(s, p, k)), k
        assert set(window.tolist()) <= {0.0, 1.0}


@FAST
@given(score_rows(max_b=4, max_n=12))
def test_per_row_windows_match_row_by_row_calls(rows):
    s, p = as_tensors(*rows)
    n_neg_B = (~p).sum(dim=1).to(torch.float64)
    got = metrics.wpauc(s, p, (n_neg_B - 1) / n_neg_B, 1 / n_neg_B)  # each row's last negative
    for b in range(s.shape[0]):
        n_neg = int(n_neg_B[b])
        want = metrics.wpauc(s[b : b + 1], p[b : b + 1], (n_neg - 1) / n_neg, 1 / n_neg)
        assert got[b] == want[0]
        row = ([rows[0][b]], [rows[1][b]])
        slow = wpauc_slow(*row, Fraction(n_neg - 1, n_neg), Fraction(1, n_neg))
        assert_close_rows(want, slow)


def test_hand_example_and_tie_halves():
    s = torch.tensor([[0.9, 0.1, 0.5, 0.3], [1.0, 1.0, 1.0, 1.0]])
    p = torch.tensor([[False, False, True, False], [True, False, False, False]])
    # row 0: positive 0.5 beats 0.1 and 0.3, loses to 0.9 → AUC 2/3; top negative is 0.9 → OPAUC 0.
    assert metrics.auc(s, p).tolist() == [2 / 3, 0.5]
    assert metrics.partial_auc(s, p, max_fpr=1 / 3).tolist() == [0.0, 0.5]
    assert metrics.wpauc(s, p, 1 / 3, 1 / 3).tolist() == [1.0, 0.5]  # 2nd negative: 0.3


def test_empty_window_is_nan():
    s, p = as_tensors([[3.0, 2.0, 1.0, 0.0]], [[True, False, False, False]])
    # n⁻ = 3: (⌈0.4·3⌉, ⌈0.5·3⌉] = (2, 2] is empty.
    assert math.isnan(metrics.wpauc(s, p, 0.4, 0.1)[0])


def test_catalogue_sized_batch_runs():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(128, 3700, generator=gen)
    p = torch.zeros(128, 3700, dtype=torch.bool)
    p[torch.arange(128), torch.randint(0, 3700, (128,), generator=gen)] = True
    auc_B = metrics.auc(s, p)
    assert torch.allclose(metrics.wpauc(s, p, 0.0, 1.0), auc_B, rtol=0, atol=1e-12)
    assert 0.4 < float(auc_B.mean()) < 0.6  # random scores


# ---------------------------------------------------------------- Recall@K, NDCG@K


@FAST
@given(score_rows(ties=False), st.data())
def test_recall_ndcg_match_slow_loop_tie_free(rows, data):
    k = data.draw(st.integers(1, len(rows[0][0])))
    s, p = as_tensors(*rows)
    want_recall, want_ndcg = topk_slow(*rows, k)
    assert_close_rows(metrics.recall_at_k(s, p, k), want_recall)
    assert_close_rows(metrics.ndcg_at_k(s, p, k), want_ndcg)


@settings(max_examples=25, deadline=None)
@given(score_rows(max_b=3, max_n=6, ties=True), st.data())
def test_recall_ndcg_with_ties_average_over_tie_orders(rows, data):
    k = data.draw(st.integers(1, len(rows[0][0])))
    s, p = as_tensors(*rows)
    want_recall, want_ndcg = topk_tie_average_slow(*rows, k)
    assert_close_rows(metrics.recall_at_k(s, p, k), want_recall)
    assert_close_rows(metrics.ndcg_at_k(s, p, k), want_ndcg)


@FAST
@given(score_rows(one_positive=True) | score_rows(ties=False, one_positive=True), st.data())
def test_ndcg_at_most_recall_with_one_positive(rows, data):
    k = data.draw(st.integers(1, len(rows[0][0])))
    s, p = as_tensors(*rows)
    recall, ndcg = metrics.recall_at_k(s, p, k), metrics.ndcg_at_k(s, p, k)
    assert bool((ndcg <= recall + 1e-12).all() & (ndcg >= 0).all() & (recall <= 1).all())


def test_constant_scores_give_chance_level():
    s = torch.zeros(2, 10)
    p = torch.zeros(2, 10, dtype=torch.bool)
    p[0, 3] = True
    p[1, [0, 9]] = True
    assert metrics.recall_at_k(s, p, 4).tolist() == [0.4, 0.4]
    assert metrics.auc(s, p).tolist() == [0.5, 0.5]


# ---------------------------------------------------------------- input validation


def test_invalid_inputs_are_rejected_with_a_reason():
    s = torch.zeros(2, 4)
    p = torch.zeros(2, 4, dtype=torch.bool)
    p[0, 0] = True
    with pytest.raises(ValueError, match=r"at least one positive and one negative; rows \[1\]"):
        metrics.auc(s, p)
    p[1, 1] = True
    with pytest.raises(ValueError, match="NaN"):
        metrics.auc(torch.full((2, 4), math.nan), p)
    with pytest.raises(ValueError, match="alpha \\+ d <= 1"):
        metrics.wpauc(s, p, 0.5, 0.6)
    with pytest.raises(ValueError, match=r"k=5 must be an integer in \[1, N=4\]"):
        metrics.recall_at_k(s, p, 5)
    with pytest.raises(ValueError, match="max_fpr"):
        metrics.partial_auc(s, p, 0.0)
    with pytest.raises(ValueError, match="bool"):
        metrics.auc(s, p.float())
