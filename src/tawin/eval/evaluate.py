"""Stage 5 — evaluation: full-catalogue constrained beam search, Recall@K and NDCG@K.

The model ranks the whole catalogue through beam search with ``num_beams`` ≥ max K (no sampled
negatives, history items not masked). Every K comes from one hit matrix
(:func:`tawin.metrics.topk_metrics`). Outputs:

* ``metrics.json`` — exactly ``recall@1 … recall@20``, ``ndcg@1 … ndcg@20``, ``n_rows`` (plus
  ``auc``, ``opauc``, ``wpauc@K`` with ``--diagnostics``);
* ``predictions.jsonl`` — one line per row: ``{"row", "user", "target", "items", "scores"}`` with
  item ids (not positions) and summed log-probabilities.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tawin.checkpoint import atomic_write_json, atomic_write_text
from tawin.data.dataset import Dataset
from tawin.decoding.beam import constrained_beam_search
from tawin.eval.config import EvalConfig
from tawin.metrics import topk_metrics
from tawin.models.batching import EncodedSplit, prompt_batch
from tawin.models.build import RecommenderLM
from tawin.runtime import progress as show_progress


@dataclass
class Predictions:
    row_R: np.ndarray  # int64 [R] row index in the split's table
    user_R: np.ndarray
    target_R: np.ndarray  # item ids
    items_RK: np.ndarray  # item ids, best first
    scores_RK: np.ndarray  # float32 log-probabilities

    def metrics(self, ks) -> dict:
        return topk_metrics(self.items_RK, self.target_R, ks)

    def write_jsonl(self, path: Path) -> None:
        lines = [
            json.dumps(
                {
                    "row": int(r),
                    "user": int(u),
                    "target": int(t),
                    "items": i.tolist(),
                    "scores": [round(float(s), 6) for s in s_],
                }
            )
            for r, u, t, i, s_ in zip(self.row_R, self.user_R, self.target_R, self.items_RK, self.scores_RK)
        ]
        atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))

    @staticmethod
    def read_jsonl(path: Path) -> Predictions:
        records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        return Predictions(
            np.array([r["row"] for r in records], dtype=np.int64),
            np.array([r["user"] for r in records], dtype=np.int64),
            np.array([r["target"] for r in records], dtype=np.int64),
            np.array([r["items"] for r in records], dtype=np.int64),
            np.array([r["scores"] for r in records], dtype=np.float32),
        )


@torch.no_grad()
def beam_predictions(
    recommender: RecommenderLM,
    dataset: Dataset,
    encoded: EncodedSplit,
    rows: np.ndarray,
    num_beams: int,
    batch_size: int,
    progress: bool = True,
    desc: str = "eval",
    dist=None,
    log=None,
) -> Predictions:
    """Top-`num_beams` items for each of `rows` (indices into `encoded`).

    `progress` shows a bar; without one, `log` gets a line every 30 s (default print, False = silent).

    Batches hold rows of similar prompt length (stable sort by length): in row order about 42% of
    the prompt tokens of a 32-row Industrial batch are left padding, which the model would encode.
    Predictions come back in the order of `rows`. With several processes, whole batches are dealt
    round-robin (each computed exactly as one process would) and merged on every process.
    """
    model = recommender.model
    was_training = model.training
    model.eval()
    device = recommender.device
    trie = recommender.codec.on(device)[0]
    item_ids = torch.from_numpy(dataset.items.item_id)
    items, scores = [], []
    by_length = np.argsort(encoded.prompt_len_R[torch.from_numpy(rows)].numpy(), kind="stable")
    batched_rows = rows[by_length]
    starts = list(range(0, len(rows), batch_size))
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    mine = starts[rank::world]
    for start in show_progress(mine, len(mine), desc, bar=progress and rank == 0, log=log if rank == 0 else False):
        index_B = torch.from_numpy(batched_rows[start : start + batch_size])
        ids_BL, mask_BL = prompt_batch(encoded, index_B)
        result = constrained_beam_search(model, trie, ids_BL.to(device), mask_BL.to(device), num_beams)
        items.append(item_ids[result.items_BK.cpu()])
        scores.append(result.scores_BK.float().cpu())
    model.train(was_training)
    if world > 1:
        # gather keeps rank order; rank r holds batches r, r+world, … — interleave them back.
        gathered = dist.gather([(start, i, s) for start, i, s in zip(starts[rank::world], items, scores)])
        gathered.sort(key=lambda entry: entry[0])
        items, scores = [entry[1] for entry in gathered], [entry[2] for entry in gathered]
    split = encoded.rows
    items_RK = np.zeros((len(rows), num_beams), np.int64)
    scores_RK = np.zeros((len(rows), num_beams), np.float32)
    if items:
        items_RK[by_length] = torch.cat(items).numpy()
        scores_RK[by_length] = torch.cat(scores).numpy()
    return Predictions(
        row_R=split.row[rows],
        user_R=split.user[rows],
        target_R=split.target[rows],
        items_RK=items_RK,
        scores_RK=scores_RK,
    )


def evaluate(
    recommender: RecommenderLM,
    dataset: Dataset,
    encoded: EncodedSplit,
    config: EvalConfig,
    output_dir: Path | None = None,
    progress: bool = True,
    dist=None,
) -> dict:
    """Evaluate on `config.split`; writes metrics.json and predictions.jsonl when `output_dir` is set."""
    started = time.time()
    rows = config.evaluated_rows(len(encoded))
    predictions = beam_predictions(
        recommender, dataset, encoded, rows, config.num_beams, config.batch_size, progress, dist=dist
    )
    metrics = predictions.metrics(config.ks)
    if config.diagnostics:
        from tawin.eval.diagnostics import diagnostics

        metrics.update(diagnostics(recommender, encoded, config, progress=progress))
    if output_dir is not None and (dist is None or dist.is_main):
        output_dir = Path(output_dir)
        predictions.write_jsonl(output_dir / "predictions.jsonl")
        atomic_write_json(output_dir / "metrics.json", metrics)
    metrics_seconds = time.time() - started
    return {"metrics": metrics, "seconds": metrics_seconds, "predictions": predictions}
