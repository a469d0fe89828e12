"""Stage metrics: ranked-list Top-K metrics, catalogue-wide AUC / partial AUC / WPAUC, and the
paired bootstrap used to compare systems. Every function is pure (arrays/tensors in, values out).
"""

from tawin.metrics.auc import auc, ndcg_at_k, partial_auc, recall_at_k, wpauc
from tawin.metrics.bootstrap import paired_bootstrap
from tawin.metrics.ranking import DEFAULT_KS, hit_matrix, per_row_topk, topk_metrics

__all__ = [
    "DEFAULT_KS",
    "auc",
    "hit_matrix",
    "ndcg_at_k",
    "paired_bootstrap",
    "partial_auc",
    "per_row_topk",
    "recall_at_k",
    "topk_metrics",
    "wpauc",
]
