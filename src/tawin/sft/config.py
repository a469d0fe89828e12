"""SFT stage configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class SFTConfig:
    RENAMED: ClassVar[dict[str, str]] = {"max_train_rows": "first_train_rows"}
    """Old spellings that still load (see :mod:`tawin.overrides`)."""

    epochs: int = 3
    """Maximum passes over the train split (early stopping may end sooner)."""
    batch_size: int = 64
    """Rows (prompt → target item) per optimizer step."""
    lr: float = 2e-3
    """Peak AdamW learning rate (the paper uses 3e-4 for pretrained Qwen2.5-0.5B; the small
    default model trains from scratch and needs more)."""
    warmup_steps: int = 100
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm."""
    patience: int = 2
    """Stop after this many epochs without a better valid NDCG@10."""
    eval_rows: int = 1000
    """Valid rows evaluated after each epoch (a fixed seeded sample; 0 = all rows)."""
    eval_beams: int = 20
    """Beams for the per-epoch valid evaluation (≥ 10 since it selects on NDCG@10)."""
    history_loss_weight: float = 0.0
    """Weight of the history items' tokens in the loss (semantic IDs only): > 0 also trains each
    history item to be predicted from the items before it, as SASRec trains every position.
    0 = the loss covers the target item's tokens only."""
    label_smoothing: float = 0.0
    """ε of label smoothing on the SFT cross-entropy (Szegedy et al. 2016, PyTorch's
    `F.cross_entropy(label_smoothing=ε)`): each token's target distribution is (1 − ε)·one-hot + ε/V
    over the whole vocabulary V, i.e. loss = (1 − ε)·(−log p_y) + ε·mean_v(−log p_v). Applies to the
    target item's tokens and, with history_loss_weight > 0, to the history item tokens; not to RL's
    SFT term. In [0, 1); 0 = plain cross-entropy."""
    first_train_rows: int = 0
    """Train on only the first N of SFT's train rows (0 = all): the earliest, for quick
    experiments (a seeded sample is `eval.sample_size`'s job; the latest N for every stage is
    `data.latest_train_rows`). Was `sft.max_train_rows`."""
    dedupe_windows: bool = False
    """Train only on the unique maximal sequences: drop each row whose history ⊕ target is a prefix
    of the history of another row of the same user (and repeats of a row), whose prompt already
    trains its transitions through the history loss; needs history_loss_weight > 0. The sliding
    windows of Industrial's train split shrink from 36,259 rows to 8,940. Applied after the
    hold-out and `first_train_rows`."""
    log_every: int = 50
    """Steps between log lines."""
    save_every: int = 200
    """Steps between resumable checkpoints (also written at every epoch end)."""

    def check(self) -> list[str]:
        """Every impossible combination, each with its value, the rule and the fix."""
        problems = []
        if self.epochs < 1:
            problems.append(f"sft.epochs={self.epochs} must be ≥ 1")
        if self.batch_size < 1:
            problems.append(f"sft.batch_size={self.batch_size} must be ≥ 1")
        if self.lr <= 0:
            problems.append(f"sft.lr={self.lr} must be > 0")
        if self.warmup_steps < 0:
            problems.append(f"sft.warmup_steps={self.warmup_steps} must be ≥ 0")
        if self.weight_decay < 0:
            problems.append(f"sft.weight_decay={self.weight_decay} must be ≥ 0")
        if self.max_grad_norm <= 0:
            problems.append(f"sft.max_grad_norm={self.max_grad_norm} must be > 0")
        if self.patience < 1:
            problems.append(f"sft.patience={self.patience} must be ≥ 1 (epochs without improvement before stopping)")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"sft.label_smoothing={self.label_smoothing} must lie in [0, 1) (0 = plain cross-entropy)")
        if self.history_loss_weight < 0:
            problems.append(f"sft.history_loss_weight={self.history_loss_weight} must be ≥ 0 (0 = target tokens only)")
        if self.dedupe_windows and self.history_loss_weight == 0:
            problems.append(
                "sft.dedupe_windows=true keeps only the longest window of each sequence, whose "
                "shorter windows are then learnt through the history loss alone, but "
                "sft.history_loss_weight=0; set sft.history_loss_weight (e.g. 1) "
                "or turn sft.dedupe_windows off"
            )
        if self.eval_beams < 10:
            problems.append(
                f"sft.eval_beams={self.eval_beams} must be ≥ 10 because "
                "the best checkpoint is chosen by NDCG@10; raise it"
            )
        for name in ("eval_rows", "first_train_rows"):
            if getattr(self, name) < 0:
                problems.append(f"sft.{name}={getattr(self, name)} must be ≥ 0 (0 = all rows)")
        for name in ("log_every", "save_every"):
            if getattr(self, name) < 1:
                problems.append(f"sft.{name}={getattr(self, name)} must be ≥ 1 (steps)")
        return problems
