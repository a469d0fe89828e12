"""Recall@K / NDCG@K from ranked lists (hit matrix, ranx equivalence) and the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ranx import Qrels, Run, evaluate

from tawin.errors import ConfigError
from tawin.metrics import hit_matrix, paired_bootstrap, per_row_topk, topk_metrics

KS = (1, 3, 5, 10, 20)


def per_row_topk_slow(ranked, targets, ks):
    out = {f"{name}@{k}": [] for k in ks for name in ("recall", "ndcg")}
    for row, target in zip(ranked, targets):
        row = list(row)
        rank = row.index(target) + 1 if target in row else math.inf
        for k in ks:
            out[f"recall@{k}"].append(1.0 if rank <= k else 0.0)
            out[f"ndcg@{k}"].append(1.0 / math.log2(rank + 1) if rank <= k else 0.0)
    return out


@st.composite
def ranked_lists(draw, max_rows=8, max_b=12):
    """Ranked lists of distinct ids from a 30-item catalogue; targets may be absent."""
    n_rows = draw(st.integers(1, max_rows))
    b = draw(st.integers(1, max_b))
    ranked = [draw(st.permutations(range(30)))[:b] for _ in range(n_rows)]
    targets = [draw(st.integers(0, 29)) for _ in range(n_rows)]
    return np.array(ranked, dtype=np.int64), np.array(targets, dtype=np.int64)


def test_hand_example():
    ranked = np.array([[5, 3, 9], [1, 2, 3], [7, 7, 8]])
    targets = np.array([3, 4, 7])
    assert hit_matrix(ranked, targets).tolist() == [
        [False, True, False],
        [False, False, False],
        [True, False, False],  # a repeated target counts once, at its first rank
    ]
    got = topk_metrics(ranked, targets, ks=(1, 2, 3))
    assert set(got) == {"recall@1", "ndcg@1", "recall@2", "ndcg@2", "recall@3", "ndcg@3", "n_rows"}
    assert got["n_rows"] == 3
    assert got["recall@1"] == pytest.approx(1 / 3)
    assert got["recall@2"] == pytest.approx(2 / 3)
    assert got["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 3)
    assert got["recall@3"] == got["recall@2"]


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_ranx(seed):
    rng = np.random.default_rng(seed)
    n_rows, b, n_items = 60, 20, 200
    ranked = np.stack([rng.permutation(n_items)[:b] for _ in range(n_rows)])
    # Two thirds of the targets are somewhere in the list, the rest are absent from it.
    in_list = rng.random(n_rows) < 2 / 3
    absent = np.array([rng.choice(np.setdiff1d(np.arange(n_items), row)) for row in ranked])
    targets = np.where(in_list, ranked[np.arange(n_rows), rng.integers(0, b, n_rows)], absent)
    assert 0 < in_list.sum() < n_rows

    qrels = Qrels({f"q{r}": {f"i{targets[r]}": 1} for r in range(n_rows)})

    def scored(row):  # scores decrease along the list, so ranx keeps the list order
        return {f"i{item}": float(b - j) for j, item in enumerate(row)}

    run = Run({f"q{r}": scored(row) for r, row in enumerate(ranked)})
    names = [f"{m}@{k}" for k in KS for m in ("recall", "ndcg")]
    want = evaluate(qrels, run, names, make_comparable=False)
    got = topk_metrics(ranked, targets, KS)
    for name in names:
        assert got[name] == pytest.approx(float(want[name]), abs=1e-9), name
    assert got["n_rows"] == n_rows


@settings(max_examples=60, deadline=None)
@given(ranked_lists(), st.data())
def test_per_row_matches_slow_loop_and_means(rows, data):
    ranked, targets = rows
    cutoffs = st.lists(st.integers(1, ranked.shape[1]), min_size=1, max_size=4, unique=True)
    ks = tuple(data.draw(cutoffs))
    got = per_row_topk(ranked, targets, ks)
    want = per_row_topk_slow(ranked, targets, ks)
    assert set(got) == set(want)
    for name, values in want.items():
        np.testing.assert_allclose(got[name], values, rtol=0, atol=1e-12)
    means = topk_metrics(ranked, targets, ks)
    for name in got:
        assert means[name] == pytest.approx(got[name].mean(), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(ranked_lists())
def test_ndcg_at_most_recall_and_monotone_in_k(rows):
    ranked, targets = rows
    ks = tuple(range(1, ranked.shape[1] + 1))
    got = per_row_topk(ranked, targets, ks)
    for k in ks:
        assert np.all(got[f"ndcg@{k}"] <= got[f"recall@{k}"])
        if k > 1:
            assert np.all(got[f"recall@{k}"] >= got[f"recall@{k - 1}"])


def test_k_larger_than_list_is_a_config_error():
    ranked = np.arange(30).reshape(3, 10)
    targets = np.array([0, 15, 99])
    message = r"K=20 is larger than the 10 ranked items per row; raise num_beams to at least 20 or drop K"
    with pytest.raises(ConfigError, match=message):
        topk_metrics(ranked, targets, ks=(1, 5, 20))
    with pytest.raises(ConfigError, match="positive integer"):
        topk_metrics(ranked, targets, ks=(0, 5))
    with pytest.raises(ValueError, match="targets_R must have shape"):
        topk_metrics(ranked, targets[:2], ks=(1,))


# ---------------------------------------------------------------- paired bootstrap


def test_bootstrap_identical_systems():
    a = np.random.default_rng(0).random(500)
    out = paired_bootstrap(a, a.copy(), n_resamples=2000)
    assert out["mean_diff"] == 0.0 and out["relative_gain"] == 0.0
    assert out["ci_low"] == out["ci_high"] == 0.0
    assert out["p_value"] == 1.0  # every resampled difference is ≤ 0


def test_bootstrap_clear_improvement_and_determinism():
    rng = np.random.default_rng(1)
    b = (rng.random(3000) < 0.10).astype(float)
    a = np.maximum(b, rng.random(3000) < 0.05)  # A hits wherever B does, plus ~5% more rows
    out = paired_bootstrap(a, b, n_resamples=3000, confidence=0.9, seed=7)
    assert out["mean_diff"] == pytest.approx(a.mean() - b.mean())
    assert out["relative_gain"] == pytest.approx(a.mean() / b.mean() - 1)
    assert 0 < out["ci_low"] < out["mean_diff"] < out["ci_high"]
    assert out["p_value"] == 0.0
    assert out == paired_bootstrap(a, b, n_resamples=3000, confidence=0.9, seed=7)
    assert out["n_rows"] == 3000 and out["n_resamples"] == 3000


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(np.zeros(3), np.zeros(3), confidence=1.0)
    assert math.isnan(paired_bootstrap(np.ones(3), np.zeros(3), n_resamples=10)["relative_gain"])


def test_one_cut_off_constant_with_the_subsets_the_committed_results_use():
    import tawin.metrics
    from tawin.eval.config import EvalConfig
    from tawin.experiments.grid import ReportSpec
    from tawin.metrics import TOP_KS

    assert (TOP_KS.scored, TOP_KS.reported, TOP_KS.swept) == ((1, 3, 5, 10, 20), (1, 3, 5, 10), (1, 3, 5))
    assert EvalConfig().ks == TOP_KS.scored and (ReportSpec().ks, ReportSpec().sweep_ks) == (
        TOP_KS.reported,
        TOP_KS.swept,
    )
    with pytest.raises(AttributeError, match=r"DEFAULT_KS is now tawin\.metrics\.TOP_KS\.scored"):
        _ = tawin.metrics.DEFAULT_KS
