"""Stage metrics: ranked-list Top-K metrics, catalogue-wide AUC / partial AUC / WPAUC, and the
paired bootstrap used to compare systems. Every function is pure (arrays/tensors in, values out).
The names below load on first use, so that the cut-offs in :mod:`tawin.metrics.ranking` are
read without importing torch.
"""

from tawin.lazy import lazy_exports

_EXPORTS = {
    "auc": "catalogue_auc",
    "ndcg_at_k": "catalogue_auc",
    "partial_auc": "catalogue_auc",
    "recall_at_k": "catalogue_auc",
    "wpauc": "catalogue_auc",
    "paired_bootstrap": "bootstrap",
    "CutOffs": "ranking",
    "TOP_KS": "ranking",
    "hit_matrix": "ranking",
    "per_row_topk": "ranking",
    "topk_metrics": "ranking",
}
__all__ = sorted(_EXPORTS)
_lazy = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> object:
    if name == "DEFAULT_KS":  # renamed: one cut-off constant with named subsets (#24)
        raise AttributeError(
            "tawin.metrics.DEFAULT_KS is now tawin.metrics.TOP_KS.scored "
            "(TOP_KS.reported and TOP_KS.swept are the subsets the reports use)"
        )
    return _lazy(name)
