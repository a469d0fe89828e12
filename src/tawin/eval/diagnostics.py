r"""Stage 5 — exact full-catalogue diagnostics: AUC, OPAUC and WPAUC@K of the model's own scores.

Beam search ranks only the top ``num_beams`` items; these diagnostics score *every* item of the
catalogue exactly, f_{u,i} = log π_θ(Y_i | H_u) (:func:`tawin.decoding.scoring.score_all_items`),
on a fixed seeded sample of ``diagnostics_rows`` rows, and report the row means of (paper,
"Windowed partial AUC"; one positive per row, the target, so n⁺ = 1 and n⁻ = N − 1):

    auc             = AUC over all N − 1 negatives                      (GRPO, random negatives)
    opauc           = OPAUC(β), β = (G − 1)/n⁻, G = ``opauc_group_size`` (beam negatives, Prop. 3.3)
    wpauc@K         = WPAUC(α, d), α = (K − 1)/n⁻, d = 1/n⁻: the window is the K-th ranked negative
    exact_recall@K  = Recall@K on the same exact scores (ties averaged)

for K ∈ ``TOP_KS.reported`` (1, 3, 5, 10; :data:`tawin.metrics.ranking.TOP_KS`). By Lemma 3.5, wpauc@K = exact_recall@K
for tie-free scores; exact_recall@K can differ from the beam-search ``recall@K`` where beam search
misses an item of the true top K.
``diagnostics_rows`` (the number of rows used) is returned with them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from tawin.data.protocol.sampling import sample_rows
from tawin.decoding.scoring import DEFAULT_CHUNK_NODES, score_all_items
from tawin.errors import ConfigError
from tawin.eval.config import EvalConfig
from tawin.metrics.catalogue_auc import auc, partial_auc, recall_at_k, wpauc
from tawin.metrics.ranking import TOP_KS
from tawin.models.batching import EncodedSplit, prompt_batch
from tawin.models.build import RecommenderLM
from tawin.runtime import progress as show_progress


@torch.no_grad()
def exact_scores(
    recommender: RecommenderLM,
    encoded: EncodedSplit,
    rows: np.ndarray,
    batch_size: int,
    progress: bool = False,
    chunk_nodes: int = DEFAULT_CHUNK_NODES,
    desc: str = "exact scores",
) -> torch.Tensor:
    """Exact log π(Y_i | H_u) of every catalogue item for each of `rows` (indices into `encoded`).

    The model is put in eval mode for the call; `progress` shows a bar, else a log line comes every
    30 s (these take minutes on a CPU). Memory per batch grows with `batch_size` × the
    trie's internal nodes (their keys/values are kept while deeper levels run).

    Returns:
        float32 [R, N] on the CPU, row r for ``rows[r]``, column n for item position n.
    """
    model = recommender.model
    was_training = model.training
    model.eval()
    device = recommender.device
    trie = recommender.codec.on(device)[0]
    scores = []
    starts = range(0, len(rows), batch_size)
    for start in show_progress(starts, len(starts), desc, bar=progress):
        index_B = torch.as_tensor(rows[start : start + batch_size], dtype=torch.long)
        ids_BL, mask_BL = prompt_batch(encoded, index_B)
        scores.append(score_all_items(model, trie, ids_BL.to(device), mask_BL.to(device), chunk_nodes).cpu())
    model.train(was_training)
    return torch.cat(scores) if scores else torch.zeros(0, recommender.codec.trie.n_items)


def _problems(config: EvalConfig, n_items: int) -> list[str]:
    problems = []
    if config.opauc_group_size is None:
        problems.append(
            "eval.opauc_group_size is null (= rl.group_size), which only the pipeline knows; pass the resolved "
            "config, EvalConfig.resolved(group_size), so that OPAUC has its G"
        )
    # The catalogue rules apply whenever the diagnostics run, whatever the config's own flag says.
    problems += replace(config, diagnostics=True).check_catalogue(n_items)
    if config.diagnostics_rows < 0:
        problems.append(f"eval.diagnostics_rows={config.diagnostics_rows} must be ≥ 0 (0 = all rows)")
    return problems


def diagnostics(recommender: RecommenderLM, encoded: EncodedSplit, config: EvalConfig, progress: bool = True) -> dict:
    """Row means of auc, opauc, wpauc@K and exact_recall@K over a seeded sample (see module docstring).

    Rows: ``sample_rows(len(encoded), config.diagnostics_rows, config.sample_seed)``; prompts are
    batched by ``config.batch_size``.

    Returns:
        {"auc", "opauc", "wpauc@K", "exact_recall@K" (K ∈ TOP_KS.reported): float in [0, 1],
         "diagnostics_rows": int}
    """
    n_items = recommender.codec.trie.n_items
    problems = _problems(config, n_items)
    if problems:
        raise ConfigError("cannot run the diagnostics:\n" + "\n".join(f"  - {p}" for p in problems))
    rows = sample_rows(len(encoded), config.diagnostics_rows, config.sample_seed)
    names = ["auc", "opauc"] + [f"{m}@{k}" for m in ("wpauc", "exact_recall") for k in TOP_KS.reported]
    if len(rows) == 0:
        return {**{name: float("nan") for name in names}, "diagnostics_rows": 0}
    scores_RN = exact_scores(recommender, encoded, rows, config.batch_size, progress=progress, desc="diagnostics")
    positive_RN = torch.zeros(scores_RN.shape, dtype=torch.bool)
    positive_RN[torch.arange(len(rows)), encoded.target_R[torch.as_tensor(rows, dtype=torch.long)]] = True
    n_neg = n_items - 1
    per_row = [
        auc(scores_RN, positive_RN),
        partial_auc(scores_RN, positive_RN, max_fpr=(config.opauc_group_size - 1) / n_neg),
    ]
    per_row += [wpauc(scores_RN, positive_RN, alpha=(k - 1) / n_neg, d=1 / n_neg) for k in TOP_KS.reported]
    per_row += [recall_at_k(scores_RN, positive_RN, k) for k in TOP_KS.reported]
    return {**{name: float(values.mean()) for name, values in zip(names, per_row)}, "diagnostics_rows": int(len(rows))}
