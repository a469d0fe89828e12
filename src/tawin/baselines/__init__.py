"""Baselines — classical recommenders scored on the same split by the same metric code as the LLM.

``popularity``: the most frequent train targets. ``sasrec`` / ``gru4rec``: sequential models
trained and evaluated by :mod:`tawin.baselines.sequential` (full-catalogue ranking, no masking).
"""

from tawin.baselines.popularity import evaluate_popularity, popularity_ranking
from tawin.baselines.sequential import (
    BaselineKind,
    SequentialBaselineConfig,
    evaluate_baseline,
    run_baseline,
    train_baseline,
)

__all__ = [
    "BaselineKind",
    "SequentialBaselineConfig",
    "evaluate_baseline",
    "evaluate_popularity",
    "popularity_ranking",
    "run_baseline",
    "train_baseline",
]
