"""Evaluation stage configuration: the split, the beams, the cut-offs K and the rows scored.

``eval.ks`` defaults to ``TOP_KS.scored`` (what metrics.json holds); ``TOP_KS.reported`` are
the columns of the results tables and the K of the diagnostics' WPAUC@K (:data:`tawin.metrics.ranking.TOP_KS`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np

from tawin.data.protocol.sampling import sample_rows
from tawin.metrics.ranking import TOP_KS

EvalSplit = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class EvalConfig:
    RENAMED: ClassVar[dict[str, str]] = {"max_rows": "sample_size"}
    """Old spellings that still load (see :mod:`tawin.overrides`)."""

    split: EvalSplit = "test"
    """Split to evaluate. `train` scores rows the model trained on (in-sample): with `sample_size`
    and `sample_seed` equal to `rl.rows.sample_size`/`rl.rows.sample_seed` (and no hold-out or
    latest share), exactly the prompts RL trained on."""
    num_beams: int = 50
    """Beams of the constrained beam search = ranked items per row; must be ≥ max(ks)."""
    ks: tuple[int, ...] = TOP_KS.scored
    """Cut-offs K for Recall@K (= HR@K with one positive) and NDCG@K."""
    batch_size: int = 32
    """Prompts decoded together (each holds num_beams beams)."""
    sample_size: int = 0
    """Evaluate a fixed seeded sample of this many rows (0 = the whole split). Was `eval.max_rows`."""
    sample_seed: int = 0
    """Seed of that sample, so every method is scored on the same rows."""
    diagnostics: bool = False
    """Also score every catalogue item exactly for each row and report AUC, OPAUC and WPAUC@K."""
    diagnostics_rows: int = 1000
    """Rows (fixed seeded sample) for the exact full-catalogue diagnostics (0 = all rows)."""
    opauc_group_size: int | None = None
    """G in OPAUC's max_fpr = (G−1)/n⁻: the FPR range that beam negatives of a group of G cover.
    null = rl.group_size, the G the model was trained with (see `PipelineConfig.resolved_eval`)."""

    def resolved(self, group_size: int) -> EvalConfig:
        """This config with an unset opauc_group_size filled in from the RL group size G."""
        return self if self.opauc_group_size is not None else replace(self, opauc_group_size=group_size)

    def check(self) -> list[str]:
        """Every impossible combination, each with its value, the rule and the fix."""
        problems = []
        if self.num_beams < 1:
            problems.append(f"eval.num_beams={self.num_beams} must be ≥ 1 (and ≥ max(eval.ks))")
        if not self.ks:
            problems.append("eval.ks must list at least one K, e.g. [1, 5, 10]")
        elif any(k < 1 for k in self.ks):
            problems.append(f"eval.ks={list(self.ks)} must be positive integers; drop the K < 1")
        elif max(self.ks) > self.num_beams >= 1:
            problems.append(
                f"eval.ks contains K={max(self.ks)} but eval.num_beams={self.num_beams}: beam search ranks only "
                f"num_beams items, so Recall@{max(self.ks)} would be "
                f"wrong; raise eval.num_beams to ≥ {max(self.ks)} or drop K"
            )
        if self.batch_size < 1:
            problems.append(f"eval.batch_size={self.batch_size} must be ≥ 1")
        for name in ("sample_size", "diagnostics_rows"):
            if getattr(self, name) < 0:
                problems.append(f"eval.{name}={getattr(self, name)} must be ≥ 0 (0 = all rows)")
        if self.opauc_group_size is not None and self.opauc_group_size < 2:
            problems.append(
                f"eval.opauc_group_size={self.opauc_group_size} must be ≥ 2; "
                "use the RL group size (e.g. 16), or null for rl.group_size"
            )
        return problems

    def evaluated_rows(self, n_rows: int) -> np.ndarray:
        """The rows of a split of `n_rows` rows that this evaluation scores: the seeded sample of
        `sample_size` (all rows when 0), the same for every method scored on it."""
        return sample_rows(n_rows, self.sample_size, self.sample_seed)

    def check_catalogue(self, n_items: int) -> list[str]:
        """The rules that need the catalogue size N (run when the dataset is loaded, before any
        training): the diagnostics need 2 ≤ G ≤ N and at least K negatives for each WPAUC@K."""
        if not self.diagnostics:
            return []
        n_neg = n_items - 1
        problems = []
        if self.opauc_group_size is not None and not 2 <= self.opauc_group_size <= n_items:
            problems.append(
                f"eval.opauc_group_size={self.opauc_group_size} must lie in [2, N={n_items}]: OPAUC's "
                "max_fpr = (G−1)/n⁻ needs at least one and at most "
                f"n⁻={n_neg} negatives; use the RL group size (e.g. 16)"
            )
        too_big = [k for k in TOP_KS.reported if k > n_neg]
        if too_big:
            problems.append(
                f"wpauc@K for K={too_big} needs at least K negatives but the catalogue has n⁻={n_neg}; "
                f"run the diagnostics on a catalogue of more than {max(TOP_KS.reported)} items"
            )
        return problems
