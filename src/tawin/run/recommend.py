"""Orchestration — recommendations from a trained checkpoint: the Python API behind `tawin recommend`.

    from tawin import Recommender
    recommender = Recommender.from_checkpoint("runs/demo/rl/final")   # catalogue: the shipped dataset
    for ranked in recommender.recommend([[117, 118, 130], [5, 9]], k=10):
        print(ranked.items, ranked.scores)

Each history (item ids, oldest first) is decoded by the same constrained beam search and prompt
encoding as `tawin eval`, with a fixed number of beams (50 by default), and the ranked list is then
cut to K. So the top items never depend on K: rank 3 is the same for K = 3, 10 or 50. With fewer
items in the catalogue than beams, every item is ranked. A prompt holds the latest MAX_HISTORY (10)
items of a history, as the training rows do when a dataset is loaded; a longer history is cut, with
one warning per call.

`tawin recommend --input --output` checks the output path before it loads the model, and writes it
through a temporary file renamed into place, so a failure leaves no half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from tawin.checkpoint import umask
from tawin.data.dataset import MAX_HISTORY, Dataset, Interactions
from tawin.data.formats.canonical import load_dataset
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

    def __init__(
        self,
        model: build.RecommenderLM,
        dataset: Dataset,
        beams: int = 50,
        batch_size: int = 32,
        max_prompt_tokens: int = 512,
    ):
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
    def from_checkpoint(
        cls,
        path: str | Path,
        dataset: str = "industrial",
        beams: int = 50,
        device: Device = "auto",
        batch_size: int = 32,
        max_prompt_tokens: int = 512,
    ) -> Recommender:
        """Load the checkpoint `path` (e.g. ``RUN/sft/best``) for the catalogue of `dataset` (a shipped
        name or a dataset folder: the one the model was trained on)."""
        data = load_dataset(dataset_path(dataset))
        model = build.load_recommender(path, data.items)
        model.model.to(pick_device(device))
        return cls(model, data, beams, batch_size, max_prompt_tokens)

    def recommend(self, histories, k: int = 10, *, warn: Callable[[str], None] | None = None) -> list[Recommendations]:
        """The top-`k` items for each history, in the order of `histories`.

        Args:
            histories: one history, a list (or tuple, or 1-D integer numpy array) of item ids, oldest
                first, e.g. ``[117, 118, 130]``; or a list of such histories, or a 2-D integer numpy
                array with one history per row. ``[]`` holds no history and gives ``[]``. Item ids
                are Python or numpy integers: bools, floats and strings are refused, and so are
                None, generators, sets and dicts (pass ``list(...)`` of a generator). A history
                longer than MAX_HISTORY (10) items is cut to its latest 10, as the training rows are.
            k: items per history, an integer in [1, beams].
            warn: receives the one note per call that histories were cut (default: ``warnings.warn``).

        Returns:
            One Recommendations per history (a list of one for a single history).

        Raises DataError for histories in another form, an empty history or an item id outside the
        catalogue (naming the history's index), UserError unless k is an integer in [1, beams]."""
        self._check_k(k)
        histories = as_histories(histories)
        for index, history in enumerate(histories):
            problem = self.problem(history)
            if problem:
                raise DataError(f"history {index}: {problem}")
        note = cut_histories_note(histories)
        if note:
            (warn or _warn_caller)(note)
        if not histories:
            return []
        rows = Interactions.from_lists([0] * len(histories), histories, [history[-1] for history in histories])
        encoded = encode_split(rows, self.dataset.items, self.model.codec, self.model.tokenizer, self.max_prompt_tokens)
        predictions = beam_predictions(
            self.model,
            self.dataset,
            encoded,
            np.arange(len(histories)),
            self.beams,
            self.batch_size,
            progress=False,
            log=False,
        )
        title_of = dict(zip(self.dataset.items.item_id.tolist(), self.dataset.items.title))
        return [
            Recommendations(
                rows.history(r),
                [int(i) for i in predictions.items_RK[r, :k]],
                [float(s) for s in predictions.scores_RK[r, :k]],
                [title_of[int(i)] for i in predictions.items_RK[r, :k]],
            )
            for r in range(len(histories))
        ]

    def _check_k(self, k) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise UserError(
                f"k={k!r} ({type(k).__name__}) must be an integer in [1, {self.beams}], e.g. k={min(10, self.beams)}."
            )
        if not 1 <= k <= self.beams:
            searched = "the whole catalogue" if self.beams == len(self.dataset.items) else "one per beam"
            raise UserError(
                f"k={k} must lie in [1, {self.beams}]: the search ranks {self.beams} items ({searched}); "
                "raise the beams or lower k."
            )

    def problem(self, history: list[int]) -> str | None:
        """Why `history` cannot be a prompt (empty, or items outside the catalogue), or None."""
        return history_problem(self.dataset, history, self._known)


def _warn_caller(note: str) -> None:
    warnings.warn(note, UserWarning, stacklevel=3)  # points at the caller of Recommender.recommend


HISTORY_FORMS = (
    "pass one history as a list of integer item ids, oldest first, e.g. [117, 118, 130], "
    "or several as a list of such lists (or a 1-D or 2-D integer numpy array)"
)


def as_histories(histories) -> list[list[int]]:
    """`Recommender.recommend`'s `histories` as lists of Python ints, one per history (see its docstring
    for the accepted forms); raises DataError naming the first value of another form."""
    if isinstance(histories, np.ndarray):
        if histories.ndim not in (1, 2):
            raise DataError(f"histories: a {histories.ndim}-D numpy array; {HISTORY_FORMS}.")
        rows = [histories] if histories.ndim == 1 else list(histories)
        return [as_history(row, index) for index, row in enumerate(rows)]
    if not isinstance(histories, (list, tuple)):
        raise DataError(f"histories: {_describe(histories)}; {HISTORY_FORMS}.")
    if histories and not isinstance(histories[0], (list, tuple, np.ndarray)):
        return [as_history(histories, 0)]  # one history: its first entry is an item id, not a history
    return [as_history(history, index) for index, history in enumerate(histories)]


def as_history(history, index: int) -> list[int]:
    """One history (a list, tuple or 1-D integer numpy array of item ids) as a list of Python ints."""
    if isinstance(history, np.ndarray):
        if history.ndim != 1 or not np.issubdtype(history.dtype, np.integer):
            raise DataError(f"history {index}: a {history.ndim}-D numpy array of {history.dtype}; {HISTORY_FORMS}.")
        return [int(item) for item in history.tolist()]
    if not isinstance(history, (list, tuple)):
        raise DataError(f"history {index}: {_describe(history)}; {HISTORY_FORMS}.")
    for position, item in enumerate(history):
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise DataError(
                f"history {index}, position {position}: {_describe(item)}, not an item id; {HISTORY_FORMS}."
            )
    return [int(item) for item in history]


def _describe(value) -> str:
    if isinstance(value, (str, bytes)):
        return f"got the text {value!r} (item ids are integers: convert text with int(...))"
    if isinstance(value, Iterator):
        return f"got a {type(value).__name__}, which has no length and is read once (pass list(...) of it)"
    if value is None:
        return "got None"
    if isinstance(value, (bool, float)):
        return f"got {value!r} ({type(value).__name__})"
    name = type(value).__name__
    return f"got {'an' if name[0] in 'aeiou' else 'a'} {name}"


def history_problem(dataset: Dataset, history: list[int], known: set[int] | None = None) -> str | None:
    """Why `history` cannot be a prompt for `dataset`'s catalogue (empty, or unknown items), or None."""
    if not history:
        return (
            "the history is empty, and a prompt needs at least one item; pass 1 or more known item ids, "
            f"oldest first (the latest {MAX_HISTORY} are used)."
        )
    known = set(dataset.items.item_id.tolist()) if known is None else known
    unknown = [item for item in history if item not in known]
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        return (
            f"item(s) {unknown[:10]}{more} not in the catalogue of {dataset.name} ({len(dataset.items)} items); "
            "pass known item ids, oldest first."
        )
    return None


def cut_histories_note(histories: list[list[int]]) -> str | None:
    """The warning that histories are longer than a prompt holds (MAX_HISTORY items), or None."""
    lengths = [len(history) for history in histories if len(history) > MAX_HISTORY]
    if not lengths:
        return None
    which = (
        f"the history has {lengths[0]} items"
        if len(histories) == 1
        else f"{len(lengths)} of {len(histories)} histories are longer than {MAX_HISTORY} items (up to {max(lengths)})"
    )
    return (
        f"{which}: each prompt keeps only the latest {MAX_HISTORY}, the most a training row holds, "
        "so the older items do not count."
    )


def read_histories(path: Path) -> list[dict]:
    """The lines of a histories JSONL file: each a list of item ids, or an object with a ``history`` list
    (its other keys are kept for the output). Returns one mapping per line with its ``history`` and,
    under ``_line``, its line number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"--input {path}: {'is a folder' if path.exists() else 'file not found'}; "
            "pass a JSONL file with one history per line, "
            'e.g. [117, 118, 130] or {"user": 7, "history": [117, 118, 130]}.'
        )
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}: line {number} is not JSON ({error.msg}); write one history per line, e.g. [117, 118, 130]."
            ) from None
        record = value if isinstance(value, dict) else {"history": value}
        history = record.get("history")
        if not isinstance(history, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in history):
            raise DataError(
                f"{path}: line {number}, field 'history' must be a list of "
                f"integer item ids, e.g. [117, 118, 130]; got {history!r}."
            )
        records.append({**record, "_line": number})
    return records


def check_records(dataset: Dataset, records: list[dict], source: Path) -> None:
    """Raise DataError for the first line of `source` whose history cannot be a prompt for `dataset`."""
    known = set(dataset.items.item_id.tolist())
    for record in records:
        problem = history_problem(dataset, record["history"], known)
        if problem:
            raise DataError(f"{source}: line {record['_line']}, field 'history': {problem}")


def refuse_output(target: Path, source: Path, overwrite: bool) -> None:
    """Raise UserError when `--output target` is the input (by any spelling or link), a folder, lies
    below a file, or (without `overwrite`) exists."""
    same = target.exists() and source.exists() and os.path.samefile(target, source)
    if same or target.resolve() == source.resolve():
        raise UserError(
            f"--output {target} is the --input file {source}: writing it would replace the histories; "
            "pass another --output path."
        )
    if target.is_dir():
        raise UserError(
            f"--output {target} is a folder; pass a file path, e.g. --output {target / 'recommendations.jsonl'}."
        )
    nearest = next(folder for folder in target.absolute().parents if folder.exists())
    if not nearest.is_dir():
        raise UserError(f"--output {target}: {nearest} is a file, not a folder; pass --output a path in a folder.")
    if os.path.lexists(target) and not overwrite:
        raise UserError(
            f"--output {target} exists; pass --overwrite to replace it (it is replaced only once every "
            "history is ranked) or another --output path."
        )


@contextmanager
def output_file(target: Path, source: Path, overwrite: bool) -> Iterator[TextIO]:
    """`--output target`, checked and opened before any ranking: a stream to a temporary file beside
    `target` that replaces it once the block completes. If the block fails, the temporary file and
    the folders made for it are removed and an existing `target` is left as it was."""
    target, source = Path(target), Path(source)
    refuse_output(target, source, overwrite)
    parent = target.parent.absolute()
    made = [folder for folder in [*reversed(parent.parents), parent] if not folder.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        _remove_folders(made)
        raise UserError(
            f"--output {target}: cannot write a file in {target.parent} ({error.strerror or error}); "
            "pass --output a path in a folder you can write to."
        ) from None
    try:
        os.chmod(temporary, 0o666 & ~umask())
        with os.fdopen(handle, "w") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        _remove_folders(made)
        raise


def _remove_folders(made: list[Path]) -> None:
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (something else wrote there) or already gone: leave it


def recommend_file(
    recommender: Recommender, records: list[dict], stream: TextIO, k: int, warn: Callable[[str], None] | None = None
) -> int:
    """`tawin recommend --input --output`: one line in `stream` per record of :func:`read_histories`,
    the input's keys plus ``items`` and ``scores`` (best first). Returns the number of histories."""
    ranked = recommender.recommend([record["history"] for record in records], k, warn=warn)
    for record, r in zip(records, ranked):
        kept = {key: value for key, value in record.items() if key != "_line"}
        stream.write(json.dumps({**kept, "items": r.items, "scores": [round(s, 6) for s in r.scores]}) + "\n")
    return len(records)
