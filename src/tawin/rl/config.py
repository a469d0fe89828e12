"""RL stage configuration, field by field with the paper's symbols."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PolicyLoss = Literal["grpo", "dapo", "gspo"]
"""The clipped surrogates of :mod:`tawin.rl.loss`, chosen by ``rl.loss``."""


@dataclass(frozen=True)
class RLConfig:
    negatives: Literal["beam", "random", "sample"] = "beam"
    """How the group of G candidates is formed: `beam` = top-G constrained beams of the policy (hard
    negatives → one-way partial AUC); `random` = the target plus G−1 uniform catalogue items (full
    AUC); `sample` = G constrained samples from the policy at `sample_temperature`."""
    reward: Literal["binary", "rank"] = "binary"
    """r: `binary` = 1 for the target item, else 0; `rank` = ReRe's binary plus a rank penalty
    −(1/log2(i+2))/Σ_j 1/log2(j+2) for the negative at beam position i (groups with the target)."""
    weighting: Literal["none", "tawin"] = "tawin"
    """`none` = plain GRPO advantages; `tawin` = negatives' advantages × TAWin weights w̄."""
    loss: PolicyLoss = "grpo"
    """Policy surrogate: token-level clipped GRPO, DAPO (token-normalised, asymmetric clip) or GSPO
    (sequence-level ratio). TAWin weights apply to all three through the advantages."""
    group_size: int = 16
    """G: candidates per prompt (= beams for `beam` negatives)."""
    target_k: int = 3
    """K of the Recall@K that TAWin targets; the default anchor is σ* = K − 1."""
    anchor: int | None = None
    """σ*: 0-based rank among the group's negatives at the window's centre; None = target_k − 1
    (the window of Recall@target_k, Lemma 3.5)."""
    tau: float = 1.0
    """τ: temperature of the truncated exponential; τ→∞ gives plain beam GRPO (uniform weights,
    OPAUC), τ→0 the hard window at σ* (WPAUC with α=(K−1)/n⁻, d=1/n⁻ = Recall@K)."""
    budget: float = 1.0
    """Σ_i w_i before normalisation: the soft window's size in negatives (1 for one positive)."""
    kl_beta: float = 1e-3
    """β: weight of the k3 KL penalty to the frozen reference (the SFT model)."""
    clip_eps_low: float = 0.2
    """ε_low: lower clip of the importance ratio."""
    clip_eps_high: float = 0.2
    """ε_high: upper clip (DAPO's clip-higher uses 0.28)."""
    lr: float = 3e-5
    """Peak AdamW learning rate (the paper uses 1e-5 for Qwen2.5-0.5B). For the small default
    model 3e-5 was best on valid among 1e-5 … 3e-4 (benchmarks/results/tuning.md); 1e-4 helped
    a 1-epoch SFT model but hurt the demo's 2-epoch one."""
    batch_size: int = 16
    """Prompts per optimizer step (each with G candidates)."""
    epochs: int = 1
    """Passes over the RL train rows (one policy update per rollout)."""
    max_steps: int = 300
    """Stop after this many optimizer steps (0 = the full epochs). 300 × 16 prompts (13% of the
    Industrial train rows) was best on valid among 150/300 steps × 16/32 prompts (README)."""
    warmup_ratio: float = 0.03
    """Fraction of steps of linear warm-up before cosine decay."""
    max_grad_norm: float = 0.3
    """Gradient clipping by global norm (the paper's 0.3)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    sample_temperature: float = 1.0
    """Temperature of `sample` negatives."""
    inject_target: bool = False
    """ReRe's `add_gt`: when the target is not among a group's G candidates, it replaces the last
    (lowest-scoring) one, so every group carries a reward signal. Never duplicated: a group that
    already holds the target is left as it is. Applies to `beam` and `sample` negatives (`random`
    groups always hold it)."""
    informative_batches: bool = False
    """DAPO's dynamic sampling: keep rolling out further prompts until the step holds
    `batch_size` groups with a non-zero advantage (rewards not all equal), at most
    `max_draws_per_step` batches of prompts per step; the step then trains on those groups only.
    Logged as rollout/informative_share (of the groups drawn) and rollout/draws."""
    max_draws_per_step: int = 4
    """Cap on the prompt batches drawn per step under `informative_batches` (1 = no redraws)."""
    latest_share: float = 0.0
    """RL draws its prompts from only the latest ⌈share · rows⌉ of its train rows (0 = all of
    them). Train rows are in the temporal order of their targets, so this aims RL at the behaviour
    nearest in time to valid and test; SFT still trains on every row (unlike `data.rl_holdout`)."""
    max_rows: int = 0
    """RL trains on a fixed seeded sample of this many of its train rows (0 = all of them); with
    `eval.split: train`, `eval.max_rows` and `eval.sample_seed` equal to these, evaluation scores
    the very prompts RL trained on (the in-sample experiment)."""
    sample_seed: int = 0
    """Seed of that sample (the same sampler as eval.sample_seed)."""
    ref_sync_every: int = 0
    """TRL's `sync_ref_model`: every this many steps the reference becomes
    α·policy + (1−α)·reference (0 = the reference stays the init model)."""
    ref_sync_alpha: float = 0.6
    """α of that mix-up (TRL's default 0.6; 1 = copy the policy)."""
    sft_loss_weight: float = 0.0
    """Weight of the next-item cross-entropy on the step's prompts (the SFT loss, target tokens
    only) added to the policy loss, to keep what SFT learnt while RL reshapes the ranking's head."""
    eval_every: int = 0
    """Steps between valid evaluations, step 0 (the init checkpoint) included; 0 = only at the end."""
    eval_rows: int = 1000
    """Valid rows in those evaluations (fixed seeded sample; 0 = every valid row)."""
    select_best: bool = False
    """With `eval_every` > 0: the stage's result (`final/`) is the checkpoint with the best valid
    Recall@target_k among the evaluations (step 0, the init model, included) instead of the last."""
    patience: int = 0
    """With `eval_every` > 0: stop after this many evaluations without a better valid
    Recall@target_k (0 = never stop early)."""
    log_every: int = 10
    """Steps between log lines."""
    save_every: int = 50
    """Steps between resumable checkpoints."""

    @property
    def resolved_anchor(self) -> int:
        """σ* in effect: `anchor`, or target_k − 1 when it is None."""
        return self.target_k - 1 if self.anchor is None else self.anchor

    def check(self) -> list[str]:
        """Every impossible combination, each with its value, the rule and the fix."""
        problems = []
        if self.group_size < 2:
            problems.append(f"rl.group_size={self.group_size} must be ≥ 2 (a group needs a positive and a negative); raise it (the paper uses 16)")
        if self.target_k < 1:
            problems.append(f"rl.target_k={self.target_k} must be ≥ 1 (the K of Recall@K); set it to e.g. 3")
        if self.anchor is not None and self.anchor < 0:
            problems.append(f"rl.anchor={self.anchor} must be ≥ 0, or null for target_k − 1")
        if self.weighting == "tawin":
            problems += self._tawin_problems()
        if self.reward == "rank" and self.negatives != "beam":
            problems.append(f"rl.reward=rank is ReRe's beam-position penalty and needs rl.negatives=beam (got {self.negatives}); set rl.negatives=beam or rl.reward=binary")
        if self.lr <= 0:
            problems.append(f"rl.lr={self.lr} must be > 0")
        if self.batch_size < 1:
            problems.append(f"rl.batch_size={self.batch_size} must be ≥ 1")
        if self.epochs < 1:
            problems.append(f"rl.epochs={self.epochs} must be ≥ 1")
        if self.max_steps < 0:
            problems.append(f"rl.max_steps={self.max_steps} must be ≥ 0 (0 = the full epochs)")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"rl.warmup_ratio={self.warmup_ratio} must lie in [0, 1)")
        if self.kl_beta < 0:
            problems.append(f"rl.kl_beta={self.kl_beta} must be ≥ 0 (0 = no KL penalty)")
        for name in ("clip_eps_low", "clip_eps_high"):
            if getattr(self, name) < 0:
                problems.append(f"rl.{name}={getattr(self, name)} must be ≥ 0")
        if self.max_grad_norm <= 0:
            problems.append(f"rl.max_grad_norm={self.max_grad_norm} must be > 0")
        if self.weight_decay < 0:
            problems.append(f"rl.weight_decay={self.weight_decay} must be ≥ 0")
        if self.sample_temperature <= 0:
            problems.append(f"rl.sample_temperature={self.sample_temperature} must be > 0")
        if self.max_draws_per_step < 1:
            problems.append(f"rl.max_draws_per_step={self.max_draws_per_step} must be ≥ 1 (prompt batches per step)")
        if self.inject_target and self.negatives == "random":
            problems.append("rl.inject_target=true has no effect with rl.negatives=random (those groups always hold the target); "
                            "set rl.inject_target=false or use beam/sample negatives")
        if not 0 < self.ref_sync_alpha <= 1:
            problems.append(f"rl.ref_sync_alpha={self.ref_sync_alpha} must lie in (0, 1]")
        if not 0 <= self.latest_share <= 1:
            problems.append(f"rl.latest_share={self.latest_share} must lie in [0, 1] (the latest share of the train rows RL uses; 0 = all)")
        if self.sft_loss_weight < 0:
            problems.append(f"rl.sft_loss_weight={self.sft_loss_weight} must be ≥ 0 (0 = no SFT term)")
        if (self.select_best or self.patience) and not self.eval_every:
            problems.append("rl.select_best and rl.patience need valid evaluations during RL; set rl.eval_every > 0 (e.g. 100)")
        for name in ("eval_every", "eval_rows", "max_rows", "ref_sync_every", "patience"):
            if getattr(self, name) < 0:
                problems.append(f"rl.{name}={getattr(self, name)} must be ≥ 0")
        for name in ("log_every", "save_every"):
            if getattr(self, name) < 1:
                problems.append(f"rl.{name}={getattr(self, name)} must be ≥ 1 (steps)")
        return problems

    def _tawin_problems(self) -> list[str]:
        """The rules of the TAWin weights: τ, σ* and target_k inside the group, the budget."""
        problems = []
        if self.tau <= 0:
            problems.append(f"rl.tau={self.tau} must be > 0; use a large tau (e.g. 1e4) for uniform weights or weighting=none")
        anchor = self.resolved_anchor
        if (self.anchor is None or self.anchor >= 0) and self.target_k >= 1 and not 0 <= anchor <= self.group_size - 2:
            source = f"rl.anchor={anchor}" if self.anchor is not None else f"rl.anchor={anchor} (= target_k − 1 with rl.target_k={self.target_k})"
            problems.append(
                f"{source} lies outside the group's G−1={self.group_size - 1} negatives (ranks 0..{self.group_size - 2}); "
                f"lower rl.anchor/rl.target_k to ≤ {self.group_size - 2} or raise rl.group_size to ≥ {anchor + 2}"
            )
        if self.anchor is not None and self.target_k > self.group_size - 1 >= 1:
            # With σ* given, target_k still names the Recall@K that TAWin targets (and that
            # select_best and best_on_valid pick by): its window must lie inside the group too.
            k, g = self.target_k, self.group_size
            problems.append(
                f"rl.target_k={k} must be ≤ G−1={g - 1}: TAWin targets Recall@K through the window at rank "
                f"K−1={k - 1} among the group's G−1 negatives (ranks 0..{g - 2}); lower rl.target_k to ≤ {g - 1} "
                f"or raise rl.group_size to ≥ {k + 1}"
            )
        if not 0 < self.budget <= self.group_size - 1:
            problems.append(f"rl.budget={self.budget} must lie in (0, G−1={self.group_size - 1}]; 1 suits one positive per group")
        return problems
