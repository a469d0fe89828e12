"""Tests for tawin.baselines: popularity, SASRec and GRU4Rec on tiny synthetic data (CPU, < 60 s)."""

from __future__ import annotations

import numpy as np
import pytest

from tawin.baselines import (
    SequentialBaselineConfig,
    evaluate_baseline,
    evaluate_popularity,
    popularity_ranking,
    run_baseline,
    train_baseline,
)
from tawin.data.dataset import Dataset, Interactions, ItemTable
from tawin.errors import ConfigError
from tawin.eval.evaluate import Predictions

N_ITEMS = 12
TINY = SequentialBaselineConfig(
    hidden=32, n_layers=1, dropout=0.1, lr=1e-2, batch_size=64, max_epochs=6, patience=2, eval_top=N_ITEMS
)


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_dataset(rule, rows=(480, 96, 96), seed=0) -> Dataset:
    """Random histories of 1..5 items; the target is ``rule(last item's index)``.

    Item ids are non-contiguous and the item table is not sorted, so the id <-> column mapping is
    exercised too.
    """
    rng = np.random.default_rng(seed)
    item_id = 100 + 7 * rng.permutation(N_ITEMS)
    items = ItemTable(item_id, [f"item {i}" for i in item_id], [None] * N_ITEMS, [None] * N_ITEMS, [()] * N_ITEMS)

    def split(n_rows: int) -> Interactions:
        histories, targets = [], []
        for _ in range(n_rows):
            indices = rng.integers(0, N_ITEMS, size=rng.integers(1, 6))
            histories.append(item_id[indices].tolist())
            targets.append(int(item_id[rule(int(indices[-1]))]))
        return Interactions.from_lists(list(range(n_rows)), histories, targets)

    return Dataset("synthetic", items, dict(zip(("train", "valid", "test"), map(split, rows))))


def successor(index: int) -> int:
    return (index + 1) % N_ITEMS


def repeat(index: int) -> int:
    return index


def test_popularity_ranking_hand_example():
    train = Interactions.from_lists([0] * 6, [[9]] * 6, [3, 1, 3, 2, 1, 5])
    ranked = popularity_ranking(train, n_rows=3, top=3)
    # counts: 1 -> 2, 3 -> 2, 2 -> 1, 5 -> 1; ties go to the smaller id
    np.testing.assert_array_equal(ranked, [[1, 3, 2]] * 3)
    assert ranked.dtype == np.int64
    filled = popularity_ranking(train, n_rows=1, top=6, catalogue=np.array([6, 0, 5, 4, 3, 2, 1]))
    np.testing.assert_array_equal(filled, [[1, 3, 2, 5, 0, 4]])


def test_evaluate_popularity_matches_brute_force():
    dataset = synthetic_dataset(successor)
    metrics = evaluate_popularity(dataset, "test", ks=(1, 5))
    counts = {int(i): int((dataset.split("train").target == i).sum()) for i in dataset.items.item_id}
    best = sorted(counts, key=lambda i: (-counts[i], i))
    targets = dataset.split("test").target
    for k in (1, 5):
        assert metrics[f"recall@{k}"] == pytest.approx(np.isin(targets, best[:k]).mean())
    assert metrics["n_rows"] == len(targets)


@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_model_learns_successor_rule(kind):
    dataset = synthetic_dataset(successor)
    model, history = train_baseline(kind, dataset, TINY, log=None)
    metrics, _ = evaluate_baseline(model, dataset, "test", ks=(1,), top=N_ITEMS)
    # Popularity gives ~1/N_ITEMS here; a model that learned "last item + 1" is near 1.
    assert metrics["recall@1"] >= 0.9, (kind, metrics, history[-1])
    assert np.isfinite([record["train/loss"] for record in history]).all()


def test_all_positions_training_learns():
    dataset = synthetic_dataset(successor)
    config = SequentialBaselineConfig(**{**TINY.__dict__, "train_positions": "all"})
    model, _ = train_baseline("sasrec", dataset, config, log=None)
    metrics, _ = evaluate_baseline(model, dataset, "test", ks=(1,), top=N_ITEMS)
    assert metrics["recall@1"] >= 0.9


def test_history_items_are_not_masked_and_whole_catalogue_is_ranked():
    # The target IS the last history item: only an unmasked ranking can score it.
    dataset = synthetic_dataset(repeat)
    model, _ = train_baseline("gru4rec", dataset, TINY, log=None)
    metrics, predictions = evaluate_baseline(model, dataset, "test", ks=(1,), top=N_ITEMS)
    assert metrics["recall@1"] >= 0.9
    assert predictions.items_RK.shape == (len(dataset.split("test")), N_ITEMS)
    catalogue = np.sort(dataset.items.item_id)
    assert all(np.array_equal(np.sort(row), catalogue) for row in predictions.items_RK)


def test_same_seed_same_result():
    dataset = synthetic_dataset(successor, rows=(192, 48, 48))
    config = SequentialBaselineConfig(**{**TINY.__dict__, "max_epochs": 2, "patience": 2, "dropout": 0.3})
    first, _ = run_baseline("sasrec", dataset, config, ks=(1, 3), log=None)
    second, _ = run_baseline("sasrec", dataset, config, ks=(1, 3), log=None)
    assert first["valid"] == second["valid"] and first["test"] == second["test"]
    assert first["epochs"] == 2 and set(first) >= {"valid", "test", "epochs", "seconds"}
    seed0 = train_baseline("gru4rec", dataset, config, log=None)[1]
    seed0_again = train_baseline("gru4rec", dataset, config, log=None)[1]
    seed1 = train_baseline("gru4rec", dataset, SequentialBaselineConfig(**{**config.__dict__, "seed": 1}), log=None)[1]
    losses = [[record["train/loss"] for record in history] for history in (seed0, seed0_again, seed1)]
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_config_errors_are_reported_together():
    from tawin.baselines.sequential import for_kind

    with pytest.raises(
        ConfigError,
        match=r"(?s)hidden=30 must be divisible by n_heads=4.*dropout=1\.5.*early_stop_k=60 must be <= eval_top=50",
    ):
        for_kind(SequentialBaselineConfig(hidden=30, n_heads=4, dropout=1.5, early_stop_k=60), "sasrec")
    # check() returns the problems as every config does; the caller raises them.
    problems = SequentialBaselineConfig(hidden=30, n_heads=4, dropout=1.5).check()
    assert (
        len(problems) == 2
        and problems[0].startswith("hidden=30 must be divisible")
        and SequentialBaselineConfig().check() == []
    )
    with pytest.raises(ConfigError, match="kind='bert4rec' is not a baseline"):
        train_baseline("bert4rec", synthetic_dataset(successor, rows=(8, 4, 4)), TINY, log=None)


def test_predictions_are_the_evaluated_rows_and_give_the_metrics(tmp_path):
    """The metrics are those of the predictions (same metric code), whose rows are indices into the
    split, with log-probabilities best first; they survive predictions.jsonl unchanged."""
    dataset = synthetic_dataset(successor, rows=(192, 48, 48))
    config = SequentialBaselineConfig(**{**TINY.__dict__, "max_epochs": 2})
    model, _ = train_baseline("gru4rec", dataset, config, log=None)
    rows = np.array([40, 3, 17, 5])
    ks = (1, 3, 5)
    metrics, predictions = evaluate_baseline(model, dataset, "test", ks=ks, top=5, rows=rows)
    assert metrics == predictions.metrics(ks) and metrics["n_rows"] == len(rows)
    test = dataset.split("test")
    np.testing.assert_array_equal(predictions.row_R, rows)
    np.testing.assert_array_equal(predictions.user_R, test.user[rows])
    np.testing.assert_array_equal(predictions.target_R, test.target[rows])
    assert predictions.items_RK.shape == predictions.scores_RK.shape == (len(rows), 5)
    assert (np.diff(predictions.scores_RK, axis=1) <= 0).all() and (predictions.scores_RK < 0).all()
    # Log-probabilities over the whole catalogue: the N items' probabilities sum to 1.
    whole = evaluate_baseline(model, dataset, "test", ks=(1,), top=N_ITEMS, rows=rows)[1]
    np.testing.assert_allclose(np.exp(whole.scores_RK).sum(axis=1), 1.0, rtol=1e-5)
    predictions.write_jsonl(tmp_path / "predictions.jsonl")
    assert Predictions.read_jsonl(tmp_path / "predictions.jsonl").metrics(ks) == metrics

    result, by_split = run_baseline("gru4rec", dataset, config, ks=ks, log=None, evaluate_on={"test": rows}, top=8)
    assert set(by_split) == {"test"} and by_split["test"].items_RK.shape == (len(rows), 8)
    assert result["test"] == by_split["test"].metrics(ks) == metrics
    assert all(isinstance(value, (dict, int, float)) for value in result.values())  # JSON-able, no arrays
