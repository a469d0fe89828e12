"""Integrations — TAWin for TRL users: ``GRPOTrainer`` with tawin's constrained beam rollout,
rewards by item id and TAWin advantages (``pip install 'tawin[trl]'``, trl==1.16.0; docs/trl.md).

* :class:`~tawin.integrations.trl_rollout.BeamRollout` — the ``rollout_func``: top-G constrained
  beams of the policy, each completion's catalogue item id carried to the rewards;
* :func:`~tawin.integrations.trl_rollout.item_reward` (binary) and
  :func:`~tawin.integrations.trl_rollout.rank_reward` (ReRe's) — TRL reward functions;
* :class:`TawinGRPOTrainer` — ``GRPOTrainer`` with one method overridden,
  ``_generate_and_score_completions`` (the step's rollout-to-advantages method): TRL
  rolls out, scores and computes log-probs as usual, then the advantages become tawin's,

      A = (r − mean_G r) / (std_G r + 1e-4)       population std (TRL: Bessel-corrected)
      Ã_i = A_i · w̄_i for negatives               TAWin weights, σ_i = beam rank (paper §TAWin)

  so the rest of TRL's step (loss, KL, clipping, optimizer, logging) and a user's ``GRPOConfig``
  stay TRL's. With ``scale_rewards="none"`` A = r − mean_G r (Dr. GRPO), as in TRL.

One TRL step equals one step of tawin's loop (:func:`tawin.rl.train.rl_step_loss` then
:func:`tawin.train_utils.optimizer_step`) when the ``GRPOConfig`` matches tawin's ``RLConfig``:
``loss_type="grpo"``, ``beta=kl_beta``, ``use_bias_correction_kl=False``, ``epsilon``/
``epsilon_high`` = ``clip_eps_low``/``clip_eps_high``, ``disable_dropout=True``,
``num_iterations=1`` with ``steps_per_generation = gradient_accumulation_steps``, the same
optimizer and schedule (tests/integration/test_trl_parity.py; each difference in docs/trl.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from tawin.checkpoint import writing_checkpoint
from tawin.errors import ConfigError
from tawin.integrations.trl_rollout import REWARD_FUNCS, BeamRollout, item_reward, rank_reward
from tawin.models.build import RecommenderLM, save_recommender
from tawin.rl.advantages import group_advantages
from tawin.rl.config import RLConfig
from tawin.rl.tawin import tawin_weights, weight_entropy

try:
    import trl
    from trl import GRPOTrainer
except ImportError as error:  # an optional extra: say how to get it
    raise ImportError(f"tawin.integrations.trl needs TRL ({error}): pip install 'tawin[trl]' (trl==1.16.0)") from error

TESTED_TRL = "1.16.0"
"""The TRL version the parity test checks; the override relies on that version's step."""
if trl.__version__ != TESTED_TRL:
    warnings.warn(
        f"tawin.integrations.trl is tested with trl=={TESTED_TRL}, not {trl.__version__}: "
        "run tests/integration/test_trl_parity.py before trusting it",
        stacklevel=2,
    )

__all__ = [
    "BeamRollout",
    "TawinGRPOTrainer",
    "TawinSettings",
    "item_reward",
    "rank_reward",
    "save_checkpoint",
    "tawin_advantages",
]


@dataclass(frozen=True)
class TawinSettings:
    """What tawin adds to TRL's step; names and defaults are those of tawin's ``RLConfig``."""

    reward: Literal["binary", "rank"] = "binary"
    """The default reward function: `binary` (1 for the target item) or `rank` (ReRe's penalty on
    the negatives of groups with the target). Passing ``reward_funcs`` overrides it."""
    weighting: Literal["tawin", "none"] = "tawin"
    """`tawin`: negatives' advantages × TAWin weights w̄; `none`: plain group advantages (GRPO)."""
    target_k: int = 3
    """K of the Recall@K that TAWin targets; the default anchor is σ* = K − 1."""
    anchor: int | None = None
    """σ*: 0-based rank among a group's negatives at the window's centre; None = target_k − 1."""
    tau: float = 1.0
    """τ: temperature of TAWin's truncated exponential (→∞: uniform weights, →0: hard window)."""
    budget: float = 1.0
    """Σ_i w_i before normalisation: the window's size in negatives (1 for one positive)."""

    @property
    def resolved_anchor(self) -> int:
        return self.target_k - 1 if self.anchor is None else self.anchor

    def problems(self, group: int) -> list[str]:
        """Each bad setting for groups of G = `group` (``num_generations``), with its fix."""
        problems = []
        if self.reward not in REWARD_FUNCS:
            problems.append(f"reward={self.reward!r} must be one of {sorted(REWARD_FUNCS)}")
        if self.weighting not in ("tawin", "none"):
            problems.append(f"weighting={self.weighting!r} must be 'tawin' or 'none'")
        if self.weighting != "tawin":
            return problems
        # RLConfig's rules of the TAWin window, read with these settings' names (no `rl.` section).
        rules = RLConfig(
            weighting="tawin",
            target_k=self.target_k,
            anchor=self.anchor,
            tau=self.tau,
            budget=self.budget,
            group_size=group,
        ).check()
        return problems + [f"{rule.replace('rl.', '')} (G = group_size = num_generations = {group})" for rule in rules]


def tawin_advantages(
    centred_BG: torch.Tensor, is_target_BG: torch.Tensor, settings: TawinSettings, scale: bool = True
) -> tuple[torch.Tensor, float | None]:
    """tawin's advantages from TRL's centred rewards r − mean_G r, in beam order.

    Args:
        centred_BG: float [B, G], rewards minus their group mean (TRL's advantages at
            ``scale_rewards="none"``); groups of G completions in beam order, best first.
        is_target_BG: bool [B, G], the completion's item is the row's target (the positives).
        settings: TAWin's σ*, τ, budget, and whether to weight at all.
        scale: divide by the group's population std + 1e-4 (:func:`tawin.rl.advantages.group_advantages`).
    Returns:
        (Ã [B, G], mean weight entropy in nats, or None without TAWin).
    """
    advantages_BG = group_advantages(centred_BG) if scale else centred_BG
    if settings.weighting != "tawin":
        return advantages_BG, None
    # TAWin reads only the order of the scores, and beams come best first (ties kept in beam order).
    position_G = torch.arange(centred_BG.shape[-1], dtype=torch.float32, device=centred_BG.device)
    beam_order_BG = (-position_G).expand(centred_BG.shape)
    is_negative_BG = ~is_target_BG
    weights_BG = tawin_weights(beam_order_BG, is_negative_BG, settings.resolved_anchor, settings.tau, settings.budget)
    entropy = float(weight_entropy(weights_BG, is_negative_BG).mean())
    return advantages_BG * weights_BG.to(advantages_BG.dtype), entropy


class TawinGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` whose advantages are tawin's: group-scaled with population std, the
    negatives' reweighted by TAWin. Defaults: the beam rollout and the reward named by `tawin`.

    Extra arguments (everything else is ``GRPOTrainer``'s): `items` (the catalogue,
    ``dataset.items``), `tawin` (:class:`TawinSettings`), `item_repr` and `max_prompt_tokens` (as
    the checkpoint's ``model`` section). The train dataset needs ``prompt`` and ``target`` (item
    id) columns: :meth:`BeamRollout.dataset` writes them. Every bad setting is reported at once,
    as one :class:`~tawin.errors.ConfigError`, before TRL builds anything.
    """

    def __init__(
        self,
        model,
        args,
        *,
        items,
        processing_class,
        tawin: TawinSettings = TawinSettings(),
        reward_funcs=None,
        rollout_func: BeamRollout | None = None,
        item_repr: str = "sid",
        max_prompt_tokens: int = 512,
        **kwargs,
    ):
        groups = sorted({args.num_generations, args.num_generations_eval or args.num_generations})
        problems = [problem for group in groups for problem in tawin.problems(group)]
        problems += _config_problems(args, kwargs.get("train_dataset"))
        if rollout_func is None:
            try:
                rollout_func = BeamRollout(items, processing_class, item_repr, max_prompt_tokens)
            except ConfigError as error:
                problems.append(
                    f"{error} A model without the catalogue's tokens cannot generate its items: start "
                    "from a tawin SFT checkpoint (tawin.models.build.load_recommender)"
                )
        elif not isinstance(rollout_func, BeamRollout):
            problems.append(
                "rollout_func must be a tawin.integrations.trl.BeamRollout: TAWin ranks negatives by beam order"
            )
        if isinstance(rollout_func, BeamRollout):
            problems += _model_problems(model, rollout_func, args)
        if problems:
            raise ConfigError("TawinGRPOTrainer: " + "; ".join(problems) + ".")
        with warnings.catch_warnings():  # TRL marks rollout_func experimental; docs/trl.md says so and pins TRL
            warnings.filterwarnings("ignore", message=".*'rollout_func'.*experimental")
            super().__init__(
                model=model,
                reward_funcs=reward_funcs or REWARD_FUNCS[tawin.reward],
                args=args,
                processing_class=processing_class,
                rollout_func=rollout_func,
                **kwargs,
            )
        self.tawin = tawin
        self.scale_by_group_std = self.scale_rewards == "group"
        # TRL then only centres the rewards, and tawin_advantages scales them as tawin does.
        self.scale_rewards = "none"

    def _generate_and_score_completions(self, inputs):
        """TRL's rollout, rewards and log-probs; then tawin's advantages replace TRL's."""
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        centred_BG = output["advantages"].view(-1, group)
        # TRL has merged the rollout's `item` into each input, beside the dataset's `target`.
        is_target_BG = torch.tensor([int(x["item"]) == int(x["target"]) for x in inputs], device=centred_BG.device)
        advantages_BG, entropy = tawin_advantages(
            centred_BG, is_target_BG.view(-1, group), self.tawin, self.scale_by_group_std
        )
        output["advantages"] = advantages_BG.reshape(-1)
        if entropy is not None:
            self._metrics[mode]["tawin/weight_entropy"].append(entropy)
        return output


def _config_problems(args, train_dataset) -> list[str]:
    """GRPOConfig settings and dataset columns that tawin's step cannot honour."""
    problems = []
    if args.scale_rewards not in ("group", "none"):
        problems.append(
            f"scale_rewards={args.scale_rewards!r}: tawin scales advantages per group; use 'group' or 'none'"
        )
    if args.multi_objective_aggregation != "sum_then_normalize":
        problems.append(
            f"multi_objective_aggregation={args.multi_objective_aggregation!r} normalises per batch; "
            "use 'sum_then_normalize'"
        )
    if args.temperature != 1.0:
        problems.append(
            f"temperature={args.temperature}: beams are found at temperature 1 and TRL would score "
            f"them at {args.temperature}; set temperature=1.0 (beam search does not sample)"
        )
    completions = args.per_device_train_batch_size * args.steps_per_generation
    if completions % args.num_generations:
        problems.append(
            f"per_device_train_batch_size × steps_per_generation = {completions} completions per process "
            f"must be a multiple of num_generations={args.num_generations}: the beam rollout searches "
            "whole groups, one per prompt"
        )
    columns = getattr(train_dataset, "column_names", None)
    if columns is not None and not {"prompt", "target"} <= set(columns):
        problems.append(
            f"train_dataset has columns {columns}; it needs 'prompt' and 'target' (the target's "
            "catalogue item id): build it with BeamRollout.dataset(split)"
        )
    return problems


def _model_problems(model, rollout: BeamRollout, args) -> list[str]:
    """What stops `model` from generating the catalogue's items, or TRL from building its reference."""
    problems = []
    if args.num_generations > len(rollout.items):
        problems.append(
            f"num_generations={args.num_generations} exceeds the catalogue's {len(rollout.items)} "
            "items (beams are distinct items)"
        )
    if not isinstance(model, torch.nn.Module):
        return problems
    rows = model.get_input_embeddings().num_embeddings
    highest = int(rollout.codec.target_table_NL.max())
    if highest >= rows:
        problems.append(
            f"the model's embedding has {rows} rows but the catalogue's tokens reach id {highest}: the "
            "model lacks the semantic-ID tokens; resize it (tawin.models.build.add_item_tokens) and SFT "
            "it first"
        )
    saved_as = getattr(model.config, "_name_or_path", "")
    if args.beta != 0.0 and not getattr(model, "peft_config", None) and not saved_as:
        problems.append(
            f"beta={args.beta} needs a reference model, which TRL loads from model.config._name_or_path, "
            "empty here: save the model and load it from that folder (e.g. a tawin checkpoint)"
        )
    return problems


def save_checkpoint(trainer: GRPOTrainer, recommender: RecommenderLM, folder: str | Path) -> Path:
    """Write the trained policy as a tawin checkpoint (model, tokenizer, ``tawin.json``; atomic),
    for ``tawin eval --checkpoint``, ``tawin recommend`` or a further ``tawin rl --init``.
    `recommender` is the one the policy was loaded as (its tokenizer and model config)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    folder = Path(folder)
    with writing_checkpoint(folder) as staging:
        save_recommender(RecommenderLM(model, recommender.tokenizer, recommender.codec, recommender.config), staging)
    return folder
