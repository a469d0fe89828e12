"""SFT stage configuration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SFTConfig:
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
    max_train_rows: int = 0
    """Use only the first N train rows (0 = all); for quick experiments."""
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
        if self.history_loss_weight < 0:
            problems.append(f"sft.history_loss_weight={self.history_loss_weight} must be ≥ 0 (0 = target tokens only)")
        if self.eval_beams < 10:
            problems.append(f"sft.eval_beams={self.eval_beams} must be ≥ 10 because the best checkpoint is chosen by NDCG@10; raise it")
        for name in ("eval_rows", "max_train_rows"):
            if getattr(self, name) < 0:
                problems.append(f"sft.{name}={getattr(self, name)} must be ≥ 0 (0 = all rows)")
        for name in ("log_every", "save_every"):
            if getattr(self, name) < 1:
                problems.append(f"sft.{name}={getattr(self, name)} must be ≥ 1 (steps)")
        return problems
