"""Baselines — most-popular items: the same ranked list for every row.

Items are ordered by how often they are a TRAIN target, most frequent first, ties broken by the
smaller item id; items that are never a train target follow in id order when a catalogue is given.
No history is used and nothing is masked, so this is the floor every personalised model must beat.
"""

from __future__ import annotations

import numpy as np

from tawin.data.dataset import Dataset, Interactions
from tawin.metrics.ranking import topk_metrics

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10, 20)


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


def evaluate_popularity(dataset: Dataset, split: str, ks: tuple[int, ...] = DEFAULT_KS) -> dict:
    """Recall@K and NDCG@K of the train-popularity list on `split` (keys as in `topk_metrics`)."""
    interactions = dataset.split(split)
    ranked_RB = popularity_ranking(dataset.split("train"), len(interactions), max(ks), catalogue=dataset.items.item_id)
    return topk_metrics(ranked_RB, interactions.target, ks=ks)
