"""Orchestration — recommendations from a trained checkpoint: the Python API behind `tawin recommend`.

    from tawin import Recommender
    recommender = Recommender.from_checkpoint("runs/demo/rl/final")   # catalogue: the shipped dataset
    for ranked in recommender.recommend([[117, 118, 130], [5, 9]], k=10):
        print(ranked.items, ranked.scores)

Each history (item ids, oldest first; the latest 10 are kept) is decoded by the same constrained
beam search and prompt encoding as `tawin eval`, with a fixed number of beams (50 by default),
and the ranked list is then cut to K. So the top items never depend on K: rank 3 is the same for
K = 3, 10 or 50. With fewer items in the catalogue than beams, every item is ranked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tawin.checkpoint import atomic_write_text
from tawin.data.dataset import Dataset, Interactions
from tawin.data.io import load_dataset
from tawin.errors import DataError, UserError
from tawin.eval.evaluate import beam_predictions
from tawin.models import build
from tawin.models.batching import encode_split
from tawin.run.config import dataset_path
from tawin.runtime import Device, pick_device


@dataclass(frozen=True)
class Recommendations:
    """The top-K items for one history, best first."""

    history: list[int]
    """The history the prompt was made of (its latest 10 items)."""
    items: list[int]
    """Item ids, best first."""
    scores: list[float]
    """Each item's summed token log-probability log π(item | history)."""
    titles: list[str]
    """Each item's title."""


class Recommender:
    """A trained model and its catalogue, ready to rank the next items for purchase histories."""

    def __init__(self, model: build.Recommender, dataset: Dataset, beams: int = 50, batch_size: int = 32, max_prompt_tokens: int = 512):
        if beams < 1 or batch_size < 1:
            raise UserError(f"beams={beams} and batch_size={batch_size} must both be ≥ 1.")
        self.model = model
        self.dataset = dataset
        self.beams = min(beams, len(dataset.items))
        """Beams of the search (at most the catalogue size): the length of the ranked list before the cut to K."""
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self._known = set(dataset.items.item_id.tolist())

    @classmethod
    def from_checkpoint(cls, path: str | Path, dataset: str = "industrial", beams: int = 50, device: Device = "auto",
                        batch_size: int = 32, max_prompt_tokens: int = 512) -> "Recommender":
        """Load the checkpoint `path` (e.g. ``RUN/sft/best``) for the catalogue of `dataset` (a shipped
        name or a dataset folder: the one the model was trained on)."""
        data = load_dataset(dataset_path(dataset))
        model = build.load_recommender(path, data.items)
        model.model.to(pick_device(device))
        return cls(model, data, beams, batch_size, max_prompt_tokens)

    def recommend(self, histories: list[list[int]], k: int = 10) -> list[Recommendations]:
        """The top-`k` items for each history, in the order of `histories`.

        Raises DataError for an empty history or an item id outside the catalogue (naming the
        history's index), UserError unless 1 ≤ k ≤ beams."""
        if not 1 <= k <= self.beams:
            raise UserError(f"k={k} must lie in [1, {self.beams}]: the search ranks {self.beams} items "
                            f"({'the whole catalogue' if self.beams == len(self.dataset.items) else 'one per beam'}); raise the beams or lower k.")
        for index, history in enumerate(histories):
            problem = self.problem(history)
            if problem:
                raise DataError(f"history {index}: {problem}")
        if not histories:
            return []
        rows = Interactions.from_lists([0] * len(histories), histories, [history[-1] for history in histories])
        encoded = encode_split(rows, self.dataset.items, self.model.codec, self.model.tokenizer, self.max_prompt_tokens)
        predictions = beam_predictions(self.model, self.dataset, encoded, np.arange(len(histories)), self.beams, self.batch_size,
                                       progress=False, log=False)
        title_of = dict(zip(self.dataset.items.item_id.tolist(), self.dataset.items.title))
        return [Recommendations(rows.history(r), [int(i) for i in predictions.items_RK[r, :k]],
                                [float(s) for s in predictions.scores_RK[r, :k]], [title_of[int(i)] for i in predictions.items_RK[r, :k]])
                for r in range(len(histories))]


    def problem(self, history: list[int]) -> str | None:
        """Why `history` cannot be a prompt (empty, or items outside the catalogue), or None."""
        return history_problem(self.dataset, history, self._known)


def history_problem(dataset: Dataset, history: list[int], known: set[int] | None = None) -> str | None:
    """Why `history` cannot be a prompt for `dataset`'s catalogue (empty, or unknown items), or None."""
    known = set(dataset.items.item_id.tolist()) if known is None else known
    unknown = [item for item in history if item not in known]
    if unknown or not history:
        return (f"item(s) {unknown or '(none)'} not in the catalogue of {dataset.name} ({len(dataset.items)} items); "
                "pass 1–10 known item ids, oldest first.")
    return None


def read_histories(path: Path) -> list[dict]:
    """The lines of a histories JSONL file: each a list of item ids, or an object with a ``history`` list
    (its other keys are kept for the output). Returns one mapping per line with its ``history`` and,
    under ``_line``, its line number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--input {path}: {'is a folder' if path.exists() else 'file not found'}; pass a JSONL file with one history per line, "
                        'e.g. [117, 118, 130] or {"user": 7, "history": [117, 118, 130]}.')
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {number} is not JSON ({error.msg}); write one history per line, e.g. [117, 118, 130].") from None
        record = value if isinstance(value, dict) else {"history": value}
        history = record.get("history")
        if not isinstance(history, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in history):
            raise DataError(f"{path}: line {number}, field 'history' must be a list of integer item ids, e.g. [117, 118, 130]; got {history!r}.")
        records.append({**record, "_line": number})
    return records


def recommend_file(recommender: Recommender, source: Path, target: Path, k: int) -> int:
    """`tawin recommend --input source --output target`: one output line per input line, the input's keys
    plus ``items`` and ``scores`` (best first). Returns the number of histories."""
    records = read_histories(source)
    for record in records:
        problem = recommender.problem(record["history"])
        if problem:
            raise DataError(f"{source}: line {record['_line']}, field 'history': {problem}")
    ranked = recommender.recommend([record["history"] for record in records], k)
    lines = [json.dumps({**{key: value for key, value in record.items() if key != "_line"}, "items": r.items,
                         "scores": [round(s, 6) for s in r.scores]}) for record, r in zip(records, ranked)]
    atomic_write_text(target, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)
