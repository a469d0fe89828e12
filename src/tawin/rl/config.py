"""RL stage configuration, field by field with the paper's symbols, under the headings of `SECTIONS`.

The fields keep their flat names (``rl.tau``, ``rl.lr``) except the rows RL trains on, which sit
together in the nested section ``rl.rows`` (:class:`RLRows`). Levers kept for research that
measured no gain on the recipe say so in their docstring, with the section of
``benchmarks/results/tuning.md`` that measured them; tuning results live there, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from tawin.data.protocol.holdout import HoldoutOrder

Negatives = Literal["beam", "random", "sample"]
Reward = Literal["binary", "rank"]
Weighting = Literal["none", "tawin"]
PolicyLoss = Literal["grpo", "dapo", "gspo"]
"""The clipped surrogates of :mod:`tawin.rl.loss`, chosen by ``rl.loss``."""


@dataclass(frozen=True)
class RLRows:
    """The train rows SFT and RL learn from, chosen in this order by
    :func:`tawin.rl.rows.split_train_rows`: the hold-out splits the train rows between SFT and RL,
    then RL keeps the latest share of its own rows, then a seeded sample of those."""

    holdout: float = 0.0
    """Share of the train rows held out of SFT for RL to learn from (0 = both stages use every
    train row), so RL trains on prompts the SFT model was never fitted on. Was `data.rl_holdout`."""
    holdout_order: HoldoutOrder = "latest"
    """Which rows are held out: `latest` = the most recent ones (train rows are in target-time
    order), `random` = a uniform sample seeded by the run's `seed` (recency without the time
    shift). Was `data.rl_holdout_order`."""
    latest_share: float = 0.0
    """RL draws its prompts from only the latest ⌈share · rows⌉ of its rows (0 = all of them).
    Train rows are in the temporal order of their targets, so this aims RL at the behaviour
    nearest in time to valid and test; SFT still trains on every row (unlike `holdout`)."""
    sample_size: int = 0
    """RL trains on a fixed seeded sample of this many of those rows (0 = all of them); with
    `eval.split: train`, `eval.sample_size` and `eval.sample_seed` equal to these (and no hold-out
    or latest share), evaluation scores the very prompts RL trained on (the in-sample experiment).
    Was `rl.max_rows`."""
    sample_seed: int = 0
    """Seed of that sample (the same sampler as `eval.sample_size`/`eval.sample_seed`)."""

    def check(self) -> list[str]:
        problems = []
        if not 0 <= self.holdout < 1:
            problems.append(
                f"rl.rows.holdout={self.holdout} must lie in [0, 1) (the share of train rows held out of SFT "
                "for RL; 0 = none)"
            )
        if not 0 <= self.latest_share <= 1:
            problems.append(
                f"rl.rows.latest_share={self.latest_share} must lie in [0, 1] (the latest share of the train "
                "rows RL uses; 0 = all)"
            )
        if self.sample_size < 0:
            problems.append(f"rl.rows.sample_size={self.sample_size} must be ≥ 0 (0 = all rows)")
        if not 0 <= self.sample_seed < 2**32:
            problems.append(
                f"rl.rows.sample_seed={self.sample_seed} must lie in [0, 2^32 − 1] (the range numpy's seeding accepts)"
            )
        return problems


@dataclass(frozen=True)
class RLConfig:
    SECTIONS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        (
            "The group: the G candidates of each prompt",
            (
                "negatives",
                "group_size",
                "sample_temperature",
                "inject_target",
                "informative_batches",
                "max_draws_per_step",
            ),
        ),
        (
            "The objective: reward, advantages, TAWin window, loss",
            (
                "reward",
                "weighting",
                "target_k",
                "anchor",
                "tau",
                "budget",
                "loss",
                "clip_eps_low",
                "clip_eps_high",
                "kl_beta",
                "sft_loss_weight",
            ),
        ),
        ("Optimisation", ("lr", "batch_size", "epochs", "max_steps", "warmup_ratio", "max_grad_norm", "weight_decay")),
        ("The rows RL trains on", ("rows",)),
        ("The reference model", ("ref_sync_every", "ref_sync_alpha")),
        ("Selection on valid", ("eval_every", "eval_rows", "select_best", "patience")),
        ("Logging and saving", ("log_every", "save_every")),
    )
    """Headings of the fields, in field order: `tawin config show rl` and the docs print them."""
    RENAMED: ClassVar[dict[str, str]] = {
        "latest_share": "rows.latest_share",
        "max_rows": "rows.sample_size",
        "sample_seed": "rows.sample_seed",
    }
    """Old spellings that still load (see :mod:`tawin.overrides`)."""

    # --- The group: the G candidates of each prompt -------------------------------------------------
    negatives: Negatives = "beam"
    """How the group of G candidates is formed: `beam` = top-G constrained beams of the policy (hard
    negatives → one-way partial AUC); `random` = the target plus G−1 uniform catalogue items (full
    AUC); `sample` = G constrained samples from the policy at `sample_temperature`."""
    group_size: int = 16
    """G: candidates per prompt (= beams for `beam` negatives)."""
    sample_temperature: float = 1.0
    """Temperature of `sample` negatives."""
    inject_target: bool = False
    """Research lever, no gain measured (benchmarks/results/tuning.md, "RL levers: target injection, informative
    batches, the SFT term"). ReRe's `add_gt`: when the target is not among a group's G candidates,
    it replaces the last (lowest-scoring) one, so every group carries a reward signal. Never
    duplicated: a group that already holds the target is left as it is. Applies to `beam` and
    `sample` negatives (`random` groups always hold it)."""
    informative_batches: bool = False
    """Research lever, no gain measured (benchmarks/results/tuning.md, "RL levers"). DAPO's dynamic
    sampling: keep rolling out further prompts until the step holds `batch_size` groups with a
    non-zero advantage (rewards not all equal), at most `max_draws_per_step` batches of prompts per
    step; the step then trains on those groups only. Logged as rollout/informative_share (of the
    groups drawn) and rollout/draws."""
    max_draws_per_step: int = 4
    """Research lever (benchmarks/results/tuning.md, "RL levers"): cap on the prompt batches drawn per
    step under `informative_batches` (1 = no redraws)."""

    # --- The objective: reward, advantages, TAWin window, loss ---------------------------------------
    reward: Reward = "binary"
    """r: `binary` = 1 for the target item, else 0; `rank` = ReRe's binary plus a rank penalty
    −(1/log2(i+2))/Σ_j 1/log2(j+2) for the negative at beam position i (groups with the target)."""
    weighting: Weighting = "tawin"
    """`none` = plain GRPO advantages; `tawin` = negatives' advantages × TAWin weights w̄."""
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
    loss: PolicyLoss = "grpo"
    """Policy surrogate: token-level clipped GRPO, DAPO (token-normalised, asymmetric clip) or GSPO
    (sequence-level ratio). TAWin weights apply to all three through the advantages."""
    clip_eps_low: float = 0.2
    """ε_low: lower clip of the importance ratio."""
    clip_eps_high: float = 0.2
    """ε_high: upper clip (DAPO's clip-higher uses 0.28)."""
    kl_beta: float = 1e-3
    """β: weight of the k3 KL penalty to the frozen reference (the SFT model)."""
    sft_loss_weight: float = 0.0
    """Research lever, no gain measured (benchmarks/results/tuning.md, "RL levers"). Weight of the
    next-item cross-entropy on the step's prompts (the SFT loss, target tokens only) added to the
    policy loss, to keep what SFT learnt while RL reshapes the ranking's head."""

    # --- Optimisation ---------------------------------------------------------------------------------
    lr: float = 3e-5
    """Peak AdamW learning rate (the paper uses 1e-5 for Qwen2.5-0.5B; for the small default
    model chosen on valid: benchmarks/results/tuning.md, "RL: learning rate, steps, batch")."""
    batch_size: int = 16
    """Prompts per optimizer step (each with G candidates)."""
    epochs: int = 1
    """Passes over the RL train rows (one policy update per rollout)."""
    max_steps: int = 300
    """Stop after this many optimizer steps (0 = the full epochs); chosen on valid:
    benchmarks/results/tuning.md, "RL: learning rate, steps, batch" and "The recipe on 3 seeds"."""
    warmup_ratio: float = 0.03
    """Fraction of steps of linear warm-up before cosine decay."""
    max_grad_norm: float = 0.3
    """Gradient clipping by global norm (the paper's 0.3)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""

    # --- The rows RL trains on -----------------------------------------------------------------------
    rows: RLRows = field(default_factory=RLRows)
    """Which train rows SFT and RL learn from: the hold-out, the latest share, a seeded sample."""

    # --- The reference model -------------------------------------------------------------------------
    ref_sync_every: int = 0
    """Research lever, no gain measured (benchmarks/results/tuning.md, "The recipe on 3 seeds"). TRL's
    `sync_ref_model`: every this many steps the reference becomes α·policy + (1−α)·reference
    (0 = the reference stays the init model)."""
    ref_sync_alpha: float = 0.6
    """Research lever (benchmarks/results/tuning.md, "The recipe on 3 seeds"): α of that mix-up (TRL's
    default 0.6; 1 = copy the policy)."""

    # --- Selection on valid --------------------------------------------------------------------------
    eval_every: int = 0
    """Steps between valid evaluations, step 0 (the init checkpoint) included; 0 = only at the end."""
    eval_rows: int = 1000
    """Valid rows in those evaluations (fixed seeded sample; 0 = every valid row)."""
    select_best: bool = False
    """Research lever, no clear gain measured (benchmarks/results/tuning.md, "The recipe on 3 seeds"). With
    `eval_every` > 0: the stage's result (`final/`) is the checkpoint with the best valid
    Recall@target_k among the evaluations (step 0, the init model, included) instead of the last."""
    patience: int = 0
    """Research lever, goes with `select_best` (benchmarks/results/tuning.md, "The recipe on 3 seeds"). With
    `eval_every` > 0: stop after this many evaluations without a better valid Recall@target_k
    (0 = never stop early)."""

    # --- Logging and saving --------------------------------------------------------------------------
    log_every: int = 10
    """Steps between log lines."""
    save_every: int = 50
    """Steps between resumable checkpoints."""

    @property
    def resolved_anchor(self) -> int:
        """σ* in effect: `anchor`, or target_k − 1 when it is None."""
        return self.target_k - 1 if self.anchor is None else self.anchor

    def check(self) -> list[str]:
        """Every impossible combination, each with its value, the rule and the fix (`rows` checks its own)."""
        problems = []
        if self.group_size < 2:
            problems.append(
                f"rl.group_size={self.group_size} must be ≥ 2 (a group needs a positive and a negative); "
                "raise it (the paper uses 16)"
            )
        if self.target_k < 1:
            problems.append(f"rl.target_k={self.target_k} must be ≥ 1 (the K of Recall@K); set it to e.g. 3")
        if self.anchor is not None and self.anchor < 0:
            problems.append(f"rl.anchor={self.anchor} must be ≥ 0, or null for target_k − 1")
        if self.weighting == "tawin":
            problems += self._tawin_problems()
        if self.reward == "rank" and self.negatives != "beam":
            problems.append(
                f"rl.reward=rank is ReRe's beam-position penalty and needs rl.negatives=beam (got {self.negatives}); "
                "set rl.negatives=beam or rl.reward=binary"
            )
        return problems + self._optimisation_problems() + self._lever_problems()

    def _optimisation_problems(self) -> list[str]:
        problems = []
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
        return problems

    def _lever_problems(self) -> list[str]:
        """The research levers, the reference sync, selection on valid, logging and saving."""
        problems = []
        if self.max_draws_per_step < 1:
            problems.append(f"rl.max_draws_per_step={self.max_draws_per_step} must be ≥ 1 (prompt batches per step)")
        if self.inject_target and self.negatives == "random":
            problems.append(
                "rl.inject_target=true has no effect with rl.negatives=random (those groups always hold the target); "
                "set rl.inject_target=false or use beam/sample negatives"
            )
        if not 0 < self.ref_sync_alpha <= 1:
            problems.append(f"rl.ref_sync_alpha={self.ref_sync_alpha} must lie in (0, 1]")
        if self.sft_loss_weight < 0:
            problems.append(f"rl.sft_loss_weight={self.sft_loss_weight} must be ≥ 0 (0 = no SFT term)")
        if (self.select_best or self.patience) and not self.eval_every:
            problems.append(
                "rl.select_best and rl.patience need valid evaluations during RL; set rl.eval_every > 0 (e.g. 100)"
            )
        for name in ("eval_every", "eval_rows", "ref_sync_every", "patience"):
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
            problems.append(
                f"rl.tau={self.tau} must be > 0; use a large tau (e.g. 1e4) for uniform weights or weighting=none"
            )
        anchor = self.resolved_anchor
        if (self.anchor is None or self.anchor >= 0) and self.target_k >= 1 and not 0 <= anchor <= self.group_size - 2:
            source = (
                f"rl.anchor={anchor}"
                if self.anchor is not None
                else f"rl.anchor={anchor} (= target_k − 1 with rl.target_k={self.target_k})"
            )
            problems.append(
                f"{source} lies outside the group's G−1={self.group_size - 1} "
                f"negatives (ranks 0..{self.group_size - 2}); "
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
            problems.append(
                f"rl.budget={self.budget} must lie in (0, G−1={self.group_size - 1}]; 1 suits one positive per group"
            )
        return problems
