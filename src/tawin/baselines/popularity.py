"""Baselines — most-popular items: the same ranked list for every row.

Items are ordered by how often they are a TRAIN target, most frequent first, ties broken by the
smaller item id; items that are never a train target follow in id order when a catalogue is given.
No history is used and nothing is masked, so this is the floor every personalised model must beat.
:func:`popularity_predictions` is the one path of both `tawin eval --checkpoint popularity` and
`tawin baseline popularity`: ranked lists scored by log train frequency, in the LLM's format.
"""

from __future__ import annotations

import numpy as np

from tawin.data.dataset import Dataset, Interactions
from tawin.eval.evaluate import Predictions
from tawin.metrics.ranking import TOP_KS


def popularity_ranking(train: Interactions, n_rows: int, top: int, catalogue: np.ndarray | None = None) -> np.ndarray:
    """The `top` most frequent train targets, repeated for each of `n_rows` rows.

    Args:
        train: the interactions whose targets are counted.
        n_rows: R, rows of the returned matrix.
        top: B, length of the list (shorter if fewer distinct items exist).
        catalogue: optional item ids [N]; those never seen as a target are appended by id so the
            list can reach `top`.

    Returns:
        int64 [R, B] item ids, best first; every row is the same list.
    """
    items, counts = np.unique(train.target, return_counts=True)  # sorted by id
    order = np.lexsort((items, -counts))  # primary key: count descending; ties: id ascending
    ranked = items[order]
    if catalogue is not None:
        unseen = np.setdiff1d(np.asarray(catalogue, dtype=np.int64), ranked)  # sorted by id
        ranked = np.concatenate([ranked, unseen])
    ranked = ranked[:top].astype(np.int64)
    return np.tile(ranked, (n_rows, 1))


def popularity_predictions(dataset: Dataset, split: str, rows: np.ndarray, top: int) -> Predictions:
    """The popularity list (whole catalogue as fallback) for `rows` of `split`.

    Each item's score is its add-one smoothed log train frequency, log((c_i + 1) / (T + U)) with
    T train rows and U distinct train targets, so predictions.jsonl stays informative.

    Returns:
        Predictions of R = len(rows) rows and B = min(top, N) items each.
    """
    train, interactions = dataset.split("train"), dataset.split(split)
    ranked_B = popularity_ranking(train, 1, top, dataset.items.item_id)[0]
    seen, counts = np.unique(train.target, return_counts=True)
    frequency = dict(zip(seen.tolist(), counts.tolist()))
    scores_B = np.log(
        np.array([frequency.get(i, 0) + 1 for i in ranked_B], dtype=np.float64) / (len(train.target) + len(seen))
    )
    return Predictions(
        interactions.row[rows],
        interactions.user[rows],
        interactions.target[rows],
        np.tile(ranked_B, (len(rows), 1)),
        np.repeat(scores_B[None], len(rows), axis=0).astype(np.float32),
    )


def evaluate_popularity(dataset: Dataset, split: str, ks: tuple[int, ...] = TOP_KS.scored) -> dict:
    """Recall@K and NDCG@K of the train-popularity list on every row of `split` (keys as in `topk_metrics`)."""
    rows = np.arange(len(dataset.split(split)))
    return popularity_predictions(dataset, split, rows, max(ks)).metrics(ks)
