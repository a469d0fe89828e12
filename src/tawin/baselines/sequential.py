"""Baselines — shared data, training and evaluation for the sequential recommenders.

SASRec (:mod:`tawin.baselines.sasrec`) and GRU4Rec (:mod:`tawin.baselines.gru4rec`) learn from
exactly the samples the LLM sees: each train row's history (≤ 10 items, oldest first) predicts
its target. The loss is full-softmax cross-entropy over all N catalogue items,

    L = −(1/|S|) Σ_{(h, y) ∈ S} log softmax(score(h))_y,

where S holds each row's last history position (``train_positions="last"``) or, with
``train_positions="all"``, every position t of the row predicting item t+1 (the last predicting
the target). AdamW; after each epoch the model ranks the whole valid catalogue and training stops
when valid NDCG@10 has not improved for ``patience`` epochs; the best state is restored.

Evaluation scores every catalogue item for every row (no sampled negatives, history items NOT
masked: repeat purchases are real here), keeps the top ``eval_top`` (or the evaluation's beam count)
with their log-probabilities as :class:`~tawin.eval.evaluate.Predictions`, the LLM's format, and
scores them with :func:`tawin.metrics.ranking.topk_metrics`, the same code that scores the LLM.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tawin.baselines import BaselineKind
from tawin.baselines.gru4rec import GRU4Rec
from tawin.baselines.sasrec import SASRec
from tawin.data.dataset import PAD_ITEM, Dataset, Interactions
from tawin.errors import ConfigError
from tawin.eval.evaluate import Predictions
from tawin.metrics.ranking import TOP_KS

TrainPositions = Literal["last", "all"]


@dataclass(frozen=True)
class SequentialBaselineConfig:
    """Hyper-parameters shared by SASRec and GRU4Rec.

    Defaults were picked on Industrial's VALID split (valid NDCG@10 at the best epoch, seed 0,
    one CPU thread); test was never used to choose. SASRec: lr 1e-3 → 0.1113 (epoch 19),
    lr 3e-3 → 0.1101 (epoch 12), 1 block → 0.1097, dropout 0.5 → ≤ 0.1103 and slower.
    GRU4Rec: 2 layers at lr 1e-3 → 0.0915 (epoch 40), 2 layers at lr 3e-3 → 0.0965, 1 layer at
    lr 3e-3 → 0.1107 (epoch 20). SASRec is flat across these, so lr 3e-3 (half the epochs) and
    one GRU layer were chosen. Width × dropout ({64, 128} × {0.2, 0.3, 0.5}, lr 3e-3,
    `benchmarks/tune_baselines.py`, 2 threads, 2026-12-07) chose each kind's `hidden` and
    `dropout` (:data:`TUNED`): SASRec 128/0.3 → 0.1101 (64/0.3 0.1100, 128/0.5 0.1089),
    GRU4Rec 64/0.5 → 0.1153 (64/0.3 0.1107, 128/0.5 0.1124).
    """

    hidden: int | None = None
    """d, width of item embeddings and of the encoder; null = the kind's tuned width (:data:`TUNED`)."""
    dropout: float | None = None
    """Dropout probability on embeddings, attention and residual branches, in [0, 1); null = the
    kind's tuned value (:data:`TUNED`)."""
    n_layers: int = 2
    """SASRec transformer blocks."""
    gru_layers: int = 1
    """GRU4Rec stacked GRU layers (2 layers, with dropout between them, scored lower on valid)."""
    n_heads: int = 1
    """Attention heads per SASRec block; must divide ``hidden``. Ignored by GRU4Rec."""
    lr: float = 3e-3
    """AdamW learning rate η."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay λ (applied to every parameter)."""
    batch_size: int = 256
    """Train rows per optimiser step."""
    max_epochs: int = 50
    """Upper bound on passes over the train split (early stopping ends Industrial runs by ~25)."""
    patience: int = 5
    """Stop after this many epochs without a better valid NDCG@``early_stop_k``."""
    early_stop_k: int = 10
    """K of the valid NDCG@K that selects the best epoch."""
    train_positions: TrainPositions = "last"
    """"last": each row's final position predicts its target; "all": every position predicts its
    successor too (the rows are already sliding windows, so this mostly re-weights short prefixes;
    it scores 10× more softmax rows and makes an epoch ~8× slower on CPU)."""
    eval_top: int = 50
    """Length of the ranked list kept per row at evaluation; must be ≥ every K asked for."""
    eval_batch_size: int = 1024
    """Rows scored at once at evaluation (memory only; results do not depend on it)."""
    seed: int = 0
    """Seeds initialisation, dropout and shuffling; CPU runs with the same seed are identical."""

    def check(self) -> list[str]:
        """Every broken rule, each with its fix (empty when the config is valid); as for every config,
        the caller raises them as one :class:`ConfigError` (:func:`for_kind` does)."""
        problems = []
        for name in (
            "n_layers",
            "gru_layers",
            "n_heads",
            "batch_size",
            "max_epochs",
            "patience",
            "early_stop_k",
            "eval_top",
            "eval_batch_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} must be an integer >= 1; set a positive value.")
        if self.hidden is not None and (not isinstance(self.hidden, int) or self.hidden < 1):
            problems.append(f"hidden={self.hidden!r} must be an integer >= 1 (or null for the kind's tuned width).")
        if (
            isinstance(self.hidden, int)
            and isinstance(self.n_heads, int)
            and self.n_heads >= 1
            and self.hidden % self.n_heads
        ):
            problems.append(
                f"hidden={self.hidden} must be divisible by "
                f"n_heads={self.n_heads}; pick n_heads among the divisors of hidden."
            )
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout!r} must lie in [0, 1); 0.2-0.5 works for these baselines.")
        if not self.lr > 0:
            problems.append(f"lr={self.lr!r} must be > 0; 1e-3 is the usual AdamW value.")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay={self.weight_decay!r} must be >= 0; use 0 to disable it.")
        if self.train_positions not in get_args(TrainPositions):
            problems.append(
                f"train_positions={self.train_positions!r} must be one of {list(get_args(TrainPositions))}."
            )
        if isinstance(self.early_stop_k, int) and isinstance(self.eval_top, int) and self.early_stop_k > self.eval_top:
            problems.append(
                f"early_stop_k={self.early_stop_k} must be <= "
                f"eval_top={self.eval_top}; raise eval_top or lower early_stop_k."
            )
        if not isinstance(self.seed, int):
            problems.append(f"seed={self.seed!r} must be an integer.")
        return problems


TUNED: dict[str, dict[str, float]] = {
    "sasrec": {"hidden": 128, "dropout": 0.3},
    "gru4rec": {"hidden": 64, "dropout": 0.5},
}
"""Each kind's width and dropout chosen on valid (see :class:`SequentialBaselineConfig`), used where those are null."""


def for_kind(config: SequentialBaselineConfig, kind: BaselineKind) -> SequentialBaselineConfig:
    """`config` with its null `hidden`/`dropout` set to the kind's tuned values; one ConfigError
    listing every problem of the result."""
    if kind not in TUNED:
        raise ConfigError(f"kind={kind!r} is not a baseline; choose one of {list(get_args(BaselineKind))}.")
    tuned = {name: value for name, value in TUNED[kind].items() if getattr(config, name) is None}
    resolved = replace(config, **tuned)
    if problems := resolved.check():
        raise ConfigError("Invalid SequentialBaselineConfig:\n  - " + "\n  - ".join(problems))
    return resolved


def item_columns(catalogue_N: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Catalogue column (0..N-1) of each item id; PAD_ITEM maps to -1. Same shape as `items`."""
    order = np.argsort(catalogue_N, kind="stable")
    position = np.searchsorted(catalogue_N, items, sorter=order).clip(max=len(order) - 1)
    columns = order[position]
    known = catalogue_N[columns] == items
    assert (known | (items == PAD_ITEM)).all(), "every history/target item must be in the catalogue"
    return np.where(items == PAD_ITEM, -1, columns).astype(np.int64)


@dataclass(frozen=True)
class BaselineInputs:
    """A split as SASRec/GRU4Rec inputs: tokens are catalogue column + 1, with 0 for padding (the
    LLM's tokenised prompts are :class:`tawin.models.batching.EncodedSplit`)."""

    tokens_RH: torch.Tensor  # int64 [R, H], right-padded with 0
    last_R: torch.Tensor  # int64 [R], index of the most recent history item (history_len - 1)
    target_R: torch.Tensor  # int64 [R], catalogue column of the target


def baseline_inputs(split: Interactions, catalogue_N: np.ndarray) -> BaselineInputs:
    tokens_RH = item_columns(catalogue_N, split.history_RH) + 1
    return BaselineInputs(
        tokens_RH=torch.from_numpy(tokens_RH),
        last_R=torch.from_numpy(split.history_len - 1),
        target_R=torch.from_numpy(item_columns(catalogue_N, split.target)),
    )


def build_model(kind: BaselineKind, n_items: int, max_len: int, config: SequentialBaselineConfig) -> nn.Module:
    """A fresh SASRec or GRU4Rec; both expose ``encode(tokens_BH) -> hidden_BHD`` and ``score``."""
    if kind == "sasrec":
        return SASRec(n_items, max_len, config.hidden, config.n_layers, config.n_heads, config.dropout)
    if kind == "gru4rec":
        return GRU4Rec(n_items, config.hidden, config.gru_layers, config.dropout)
    raise ConfigError(f"kind={kind!r} is not a baseline; choose one of {list(get_args(BaselineKind))}.")


def last_position_loss(
    model: nn.Module, tokens_BH: torch.Tensor, last_B: torch.Tensor, target_B: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of each row's final history position against its target column."""
    hidden_BHD = model.encode(tokens_BH)
    hidden_BD = hidden_BHD[torch.arange(len(last_B)), last_B]
    return F.cross_entropy(model.score(hidden_BD), target_B)


def all_positions_loss(
    model: nn.Module, tokens_BH: torch.Tensor, last_B: torch.Tensor, target_B: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of every real position against the next item (the last one against the target)."""
    labels_BH = torch.cat([tokens_BH[:, 1:], torch.zeros_like(tokens_BH[:, :1])], dim=1) - 1
    labels_BH[torch.arange(len(last_B)), last_B] = target_B
    hidden_BHD = model.encode(tokens_BH)
    return F.cross_entropy(model.score(hidden_BHD).flatten(0, 1), labels_BH.flatten(), ignore_index=-1)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"last": last_position_loss, "all": all_positions_loss}


@torch.no_grad()
def rank_catalogue(
    model: nn.Module, inputs: BaselineInputs, top: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-`top` catalogue columns per row, best first, and their scores: (int64 [R, B], float32
    [R, B]) with B = min(top, N). Scores are log-softmax over the whole catalogue, the model's
    log-probability of each item (the LLM's predictions carry log-probabilities too). Nothing masked."""
    was_training = model.training
    model.eval()
    columns, scores = [], []
    for start in range(0, len(inputs.last_R), batch_size):
        tokens_BH = inputs.tokens_RH[start : start + batch_size]
        last_B = inputs.last_R[start : start + batch_size]
        hidden_BD = model.encode(tokens_BH)[torch.arange(len(last_B)), last_B]
        scores_BN = model.score(hidden_BD).float()
        best = scores_BN.topk(min(top, scores_BN.shape[1]), dim=1)  # ranked by the logits themselves
        columns.append(best.indices)
        scores.append(best.values - scores_BN.logsumexp(dim=1, keepdim=True))
    model.train(was_training)
    return torch.cat(columns), torch.cat(scores)


def evaluate_baseline(
    model: nn.Module,
    dataset: Dataset,
    split: str,
    ks: tuple[int, ...] = TOP_KS.scored,
    top: int = 50,
    batch_size: int = 1024,
    rows: np.ndarray | None = None,
) -> tuple[dict, Predictions]:
    """Rank the whole catalogue for `rows` of `split` (indices; None = every row) and score it with `topk_metrics`.

    Returns the metrics dict (``recall@K``, ``ndcg@K``, ``n_rows``), equal to
    ``predictions.metrics(ks)``, and the :class:`~tawin.eval.evaluate.Predictions` they come from:
    per row its index in the split, user, target, and the max(top, *ks) best item ids (fewer if the
    catalogue is smaller) with their log-probabilities, best first. History items stay in the ranking.
    """
    catalogue_N = dataset.items.item_id
    interactions = dataset.split(split) if rows is None else dataset.split(split).take(rows)
    inputs = baseline_inputs(interactions, catalogue_N)
    columns_RB, logp_RB = rank_catalogue(model, inputs, max((top, *ks)), batch_size)
    predictions = Predictions(
        row_R=interactions.row,
        user_R=interactions.user,
        target_R=interactions.target,
        items_RK=catalogue_N[columns_RB.numpy()].astype(np.int64),
        scores_RK=logp_RB.numpy().astype(np.float32),
    )
    return predictions.metrics(ks), predictions


def train_baseline(
    kind: BaselineKind,
    dataset: Dataset,
    config: SequentialBaselineConfig = SequentialBaselineConfig(),
    log: Callable[[str], None] | None = print,
) -> tuple[nn.Module, list[dict]]:
    """Train `kind` on the train split with early stopping on valid NDCG@K; return the best model.

    Returns the model (best-epoch weights, in eval mode) and one dict per epoch with
    ``epoch``, ``train/loss``, ``valid/recall@K``, ``valid/ndcg@K`` and ``time/epoch_s``.
    """
    config = for_kind(config, kind)
    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    catalogue_N = dataset.items.item_id
    train = baseline_inputs(dataset.split("train"), catalogue_N)
    model = build_model(kind, len(catalogue_N), train.tokens_RH.shape[1], config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = LOSSES[config.train_positions]
    k = config.early_stop_k
    best_ndcg, best_state, stale, history = -1.0, None, 0, []
    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        losses = []
        for batch_B in torch.randperm(len(train.last_R), generator=shuffle).split(config.batch_size):
            loss = loss_fn(model, train.tokens_RH[batch_B], train.last_R[batch_B], train.target_R[batch_B])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        metrics, _ = evaluate_baseline(
            model, dataset, "valid", ks=(k,), top=config.eval_top, batch_size=config.eval_batch_size
        )
        record = {
            "epoch": epoch,
            "train/loss": float(np.mean(losses)),
            f"valid/recall@{k}": metrics[f"recall@{k}"],
            f"valid/ndcg@{k}": metrics[f"ndcg@{k}"],
            "time/epoch_s": time.perf_counter() - started,
        }
        history.append(record)
        improved = record[f"valid/ndcg@{k}"] > best_ndcg
        if improved:
            best_ndcg, best_state, stale = record[f"valid/ndcg@{k}"], copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if log is not None:
            log(
                f"{kind} epoch {epoch}/{config.max_epochs}  train/loss {record['train/loss']:.4f}  "
                f"valid/recall@{k} {record[f'valid/recall@{k}']:.4f}  valid/ndcg@{k} {record[f'valid/ndcg@{k}']:.4f}"
                f"{'  *best' if improved else f'  (no gain {stale}/{config.patience})'}  {record['time/epoch_s']:.1f}s"
            )
        if stale >= config.patience:
            break
    model.load_state_dict(best_state)
    return model.eval(), history


def run_baseline(
    kind: BaselineKind,
    dataset: Dataset,
    config: SequentialBaselineConfig = SequentialBaselineConfig(),
    ks: tuple[int, ...] = TOP_KS.scored,
    log: Callable[[str], None] | None = print,
    evaluate_on: dict[str, np.ndarray | None] | None = None,
    top: int | None = None,
) -> tuple[dict, dict[str, Predictions]]:
    """Train, then evaluate the best model on each split of `evaluate_on` (split → row indices
    scored, None = every row; default: every row of valid and test). Early stopping always uses
    every valid row.

    Returns ``(result, predictions)``: result = ``{split: metrics for each evaluated split,
    "epochs": epochs run, "best_epoch": e, "train_rows": rows of the train split learnt from,
    "seconds": wall time of training and evaluation, "config": the resolved config as a dict}``
    (JSON-able); predictions = split → the evaluated rows' :class:`~tawin.eval.evaluate.Predictions`,
    max(`top`, *ks) items each (`top` None = ``config.eval_top``; a pipeline passes its eval's
    ``num_beams`` so the lists are as long as the LLM's), whose ``metrics(ks)`` is result[split].
    """
    started = time.perf_counter()
    config = for_kind(config, kind)
    model, history = train_baseline(kind, dataset, config, log=log)
    k = config.early_stop_k
    evaluate_on = {"valid": None, "test": None} if evaluate_on is None else evaluate_on
    top = config.eval_top if top is None else top
    evaluated = {
        split: evaluate_baseline(model, dataset, split, ks, top=top, batch_size=config.eval_batch_size, rows=rows)
        for split, rows in evaluate_on.items()
    }
    best_epoch = max(history, key=lambda record: record[f"valid/ndcg@{k}"])["epoch"]
    result = {
        **{split: metrics for split, (metrics, _) in evaluated.items()},
        "epochs": len(history),
        "train_rows": len(dataset.split("train")),
        "best_epoch": best_epoch,
        "seconds": time.perf_counter() - started,
        "config": asdict(config),
    }
    return result, {split: predictions for split, (_, predictions) in evaluated.items()}


__all__ = [
    "BaselineKind",
    "SequentialBaselineConfig",
    "build_model",
    "evaluate_baseline",
    "rank_catalogue",
    "run_baseline",
    "train_baseline",
]
