"""Baselines — classical recommenders scored on the same split by the same metric code as the LLM.

``popularity``: the most frequent train targets. ``sasrec`` / ``gru4rec``: sequential models
trained and evaluated by :mod:`tawin.baselines.sequential` (full-catalogue ranking, no masking).
"""

from typing import Literal

from tawin.lazy import lazy_exports

BaselineKind = Literal["sasrec", "gru4rec"]
"""The trained sequential baselines (popularity needs no training and is not one of them)."""
BaselineName = Literal[BaselineKind, "popularity"]
"""Every baseline: `tawin baseline`'s method, an experiment's `baselines` entry."""

_EXPORTS = {
    "evaluate_popularity": "popularity",
    "popularity_ranking": "popularity",
    "SequentialBaselineConfig": "sequential",
    "evaluate_baseline": "sequential",
    "run_baseline": "sequential",
    "train_baseline": "sequential",
}
__all__ = sorted([*_EXPORTS, "BaselineKind", "BaselineName"])
__getattr__ = lazy_exports(__name__, _EXPORTS)
