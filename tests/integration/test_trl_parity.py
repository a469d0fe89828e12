"""tawin.integrations.trl: one step of TRL's GRPOTrainer with tawin's beam rollout, rewards and
TAWin equals one step of tawin's own loop (rl_step_loss → optimizer_step).

Both sides start from the same weights (the tiny model, perturbed away from its saved reference
so that the KL term is live), on the same 4 Industrial train rows and the same G = 8 beams; the
rows' targets are set to beams 0, 3 and 6 of the first three groups (the fourth group lacks its
target), so every reward and weight path carries signal. TRL runs with the settings that match
tawin's RLConfig (MATCHING, each difference listed in docs/trl.md) and its own default optimizer.

Tolerances (float32 on CPU; the sides differ only in summation order: TRL scores each
completion as its own padded sequence, tawin encodes a prompt once for its whole group):
* loss: |Δ| ≤ 1e-6 + 1e-5·|loss| (measured ≈ 2e-8);
* clipped gradient: ‖g_TRL − g_tawin‖ ≤ 1e-5 ‖g_tawin‖ (measured ≈ 4e-7);
* parameter update (AdamW's first step, ≈ lr·g/(|g| + 1e-8)): ‖Δθ_TRL − Δθ_tawin‖ ≤ 1e-3 ‖Δθ_tawin‖
  (measured ≈ 6e-5; the remainder sits on weights whose gradient is ~1e-9, near AdamW's eps).
A wrong σ* or τ on TRL's side moves the gradient by far more than its tolerance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

GROUP = 8
ROWS = 4
TARGET_BEAM = (0, 3, 6, -1)
"""Row b's target is its policy's beam at this position (-1: a target outside the group)."""
LR = 1e-3
BETA = 0.04
MATCHING = dict(
    loss_type="grpo",
    beta=BETA,
    use_bias_correction_kl=False,
    epsilon=0.2,
    disable_dropout=True,
    num_iterations=1,
    steps_per_generation=1,
    gradient_accumulation_steps=1,
    learning_rate=LR,
    weight_decay=0.0,
    max_grad_norm=0.3,
    lr_scheduler_type="constant",
    temperature=1.0,
)
"""GRPOConfig settings equal to tawin's RLConfig below (TRL's defaults differ for most of them)."""


@dataclass
class Start:
    reference: Path  # the saved model: TRL loads its reference from here, tawin too
    policy_state: dict  # the policy's weights: the reference's, perturbed
    rows: object  # Interactions with the chosen targets
    dataset: object


@dataclass
class Step:
    loss: float
    grad: torch.Tensor  # the clipped gradient, flattened in parameter order
    update: torch.Tensor  # θ_after − θ_before, flattened
    items: torch.Tensor  # int64 [B, G] catalogue item ids of the rollout, beam order


@pytest.fixture(scope="module")
def start(industrial, tmp_path_factory) -> Start:
    from tawin.decoding.beam import constrained_beam_search
    from tawin.models.batching import encode_split, prompt_batch
    from tawin.models.build import ModelConfig, build_recommender, load_recommender, save_recommender

    folder = tmp_path_factory.mktemp("trl") / "reference"
    save_recommender(build_recommender(ModelConfig(**TINY_MODEL), industrial.items, seed=0), folder)
    recommender = load_recommender(folder, industrial.items)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in recommender.model.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    rows = industrial.splits["train"].take(np.arange(ROWS))
    encoded = encode_split(rows, industrial.items, recommender.codec, recommender.tokenizer, 512)
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(ROWS))
    search = constrained_beam_search(recommender.model.eval(), recommender.codec.trie, ids_BL, mask_BL, GROUP)
    beams_BG = industrial.items.item_id[search.items_BK]
    targets = [int(beams_BG[b, g]) if g >= 0 else int(rows.target[b]) for b, g in enumerate(TARGET_BEAM)]
    assert targets[3] not in beams_BG[3].tolist()
    rows = dataclasses.replace(rows, target=np.array(targets, dtype=np.int64))
    return Start(folder, {k: v.clone() for k, v in recommender.model.state_dict().items()}, rows, industrial)


def load_policy(start: Start):
    from tawin.models.build import load_recommender

    recommender = load_recommender(start.reference, start.dataset.items)
    recommender.model.load_state_dict(start.policy_state)
    return recommender


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def tawin_step(start: Start, reward: str, weighting: str, anchor: int = 2, tau: float = 1.0) -> Step:
    from tawin.models.batching import encode_split, prompt_batch
    from tawin.models.build import load_recommender
    from tawin.rl.config import RLConfig
    from tawin.rl.rollout import make_rollout
    from tawin.rl.train import rl_step_loss
    from tawin.train_utils import optimizer_step, warmup_cosine

    config = RLConfig(
        negatives="beam",
        reward=reward,
        weighting=weighting,
        loss="grpo",
        group_size=GROUP,
        anchor=anchor,
        tau=tau,
        kl_beta=BETA,
        lr=LR,
        max_grad_norm=0.3,
        weight_decay=0.0,
        warmup_ratio=0.0,
    )
    recommender = load_policy(start)
    policy, codec = recommender.model, recommender.codec
    reference = load_recommender(start.reference, start.dataset.items).model.eval().requires_grad_(False)
    encoded = encode_split(start.rows, start.dataset.items, codec, recommender.tokenizer, 512)
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(ROWS))
    before = flat(policy.parameters()).clone()
    policy.eval()
    rollout = make_rollout(policy, codec, ids_BL, mask_BL, encoded.target_R, "beam", GROUP, torch.Generator())
    policy.train()
    loss, _ = rl_step_loss(policy, reference, rollout, config, bf16=False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=LR, weight_decay=0.0)
    optimizer_step(loss, policy.parameters(), optimizer, warmup_cosine(optimizer, 0, 1), config.max_grad_norm, 0, "rl")
    items = torch.as_tensor(start.dataset.items.item_id)[rollout.items_BG]
    return Step(float(loss), flat(p.grad for p in policy.parameters()), flat(policy.parameters()) - before, items)


def grpo_config(tmp_path: Path, **overrides):
    from trl import GRPOConfig

    settings = dict(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=ROWS * GROUP,
        num_generations=GROUP,
        max_completion_length=8,
        max_steps=1,
        shuffle_dataset=False,
        gradient_checkpointing=False,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    return GRPOConfig(**{**MATCHING, **settings, **overrides})


def trl_step(start: Start, tmp_path: Path, settings=None, trainer_class=None, **overrides) -> Step:
    """One optimizer step of TRL's GRPOTrainer (by default TawinGRPOTrainer) on the start's rows."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from tawin.integrations.trl import BeamRollout, TawinGRPOTrainer, item_reward

    seen: dict = {}

    class KeptRollout(BeamRollout):
        def __call__(self, prompts, trainer):
            output = super().__call__(prompts, trainer)
            seen["items"] = torch.tensor(output["item"]).view(-1, GROUP)
            return output

    recommender = load_policy(start)
    policy, tokenizer = recommender.model, recommender.tokenizer
    args = grpo_config(tmp_path, **overrides)
    rollout = KeptRollout(start.dataset.items, tokenizer)
    common = dict(
        model=policy,
        args=args,
        processing_class=tokenizer,
        train_dataset=rollout.dataset(start.rows),
        rollout_func=rollout,
    )
    if trainer_class is None:
        trainer = TawinGRPOTrainer(**common, items=start.dataset.items, tawin=settings)
    else:
        trainer = trainer_class(**common, reward_funcs=item_reward)
    before = flat(policy.parameters()).clone()

    class KeepGradient(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):  # after clipping, before the update
            seen["grad"] = flat(p.grad for p in policy.parameters())

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(KeepGradient())
    training_step = trainer.training_step
    trainer.training_step = lambda *a, **k: seen.setdefault("loss", training_step(*a, **k))
    trainer.train()
    return Step(float(seen["loss"]), seen["grad"], flat(policy.parameters()) - before, seen["items"])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


GRAD_TOLERANCE = 1e-5
UPDATE_TOLERANCE = 1e-3


def assert_same_step(trl: Step, ours: Step) -> None:
    assert torch.equal(trl.items, ours.items), "the two sides rolled out different candidates"
    assert abs(trl.loss - ours.loss) <= 1e-6 + 1e-5 * abs(ours.loss), (trl.loss, ours.loss)
    assert relative(trl.grad, ours.grad) <= GRAD_TOLERANCE
    assert relative(trl.update, ours.update) <= UPDATE_TOLERANCE


CASES = {
    "grpo-beam": (dict(reward="binary", weighting="none"), {}),
    "rere-rank": (dict(reward="rank", weighting="none"), {}),
    "tawin-anchor2": (dict(reward="binary", weighting="tawin"), dict(anchor=2)),
    "rere-tawin-anchor2": (dict(reward="rank", weighting="tawin"), dict(anchor=2)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_trl_step_equals_one_tawin_step(start, tmp_path, case):
    from tawin.integrations.trl import TawinSettings

    method, window = CASES[case]
    ours = tawin_step(start, **method, **window)
    trl = trl_step(start, tmp_path, TawinSettings(**method, **window))
    assert ours.grad.norm() > 0 and ours.loss != 0.0
    assert_same_step(trl, ours)


WRONG = {
    "anchor1-for-anchor2": dict(anchor=1),
    "tau10-for-tau1": dict(anchor=2, tau=10.0),
    "tau0.1-for-tau1": dict(anchor=2, tau=0.1),
}


@pytest.mark.parametrize("wrong", sorted(WRONG))
def test_a_wrong_anchor_or_tau_breaks_the_parity(start, tmp_path, wrong):
    from tawin.integrations.trl import TawinSettings

    ours = tawin_step(start, "rank", "tawin", anchor=2, tau=1.0)
    trl = trl_step(start, tmp_path, TawinSettings(reward="rank", weighting="tawin", **WRONG[wrong]))
    assert relative(trl.grad, ours.grad) > 1000 * GRAD_TOLERANCE  # measured 0.37–0.44
    with pytest.raises(AssertionError):
        assert_same_step(trl, ours)


DEFAULTS = {"bessel-std (plain GRPOTrainer)": {}, "use_bias_correction_kl=True": dict(use_bias_correction_kl=True)}


@pytest.mark.parametrize("default", sorted(DEFAULTS))
def test_trl_defaults_that_differ_from_tawin_break_the_parity(start, tmp_path, default):
    from trl import GRPOTrainer

    from tawin.integrations.trl import TawinSettings

    ours = tawin_step(start, "binary", "none")
    if DEFAULTS[default]:
        trl = trl_step(start, tmp_path, TawinSettings(weighting="none"), **DEFAULTS[default])
    else:
        trl = trl_step(start, tmp_path, trainer_class=GRPOTrainer)
    # Clipping to max_grad_norm hides most of a uniform rescaling; what is left is still > 100× the tolerance.
    assert relative(trl.grad, ours.grad) > 100 * GRAD_TOLERANCE  # measured 1.3e-3 and 2.9e-3


def construct(start: Start, tmp_path: Path, monkeypatch, settings=None, model=None, tokenizer=None, **overrides):
    """TawinGRPOTrainer(...) with TRL's own constructor replaced: a check that passes reaches it."""
    from trl import GRPOTrainer

    from tawin.integrations.trl import TawinGRPOTrainer, TawinSettings

    def reached_trl(self, **kwargs):
        raise RuntimeError("reached TRL's constructor")

    monkeypatch.setattr(GRPOTrainer, "__init__", reached_trl)
    recommender = load_policy(start)
    return TawinGRPOTrainer(
        model=recommender.model if model is None else model,
        args=grpo_config(tmp_path, **overrides),
        items=start.dataset.items,
        processing_class=tokenizer or recommender.tokenizer,
        tawin=settings or TawinSettings(),
        train_dataset=None,
    )


BAD_SETTINGS = {
    "anchor at G-1": (
        dict(anchor=GROUP - 1),
        {},
        r"anchor=7 lies outside the group's G−1=7 negatives .*num_generations = 8",
    ),
    "G below K": (
        dict(target_k=GROUP),
        {},
        r"anchor=7 \(= target_k − 1 with target_k=8\) lies outside the group's G−1=7 negatives",
    ),
    "G below K, anchor given": (dict(target_k=GROUP, anchor=2), {}, r"target_k=8 must be ≤ G−1=7"),
    "everything at once": (
        dict(anchor=9, tau=0.0),
        dict(scale_rewards="batch", temperature=0.7),
        r"tau=0.0 must be > 0.*anchor=9 lies outside.*scale_rewards='batch'.*temperature=0.7",
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD_SETTINGS))
def test_bad_settings_fail_at_construction_with_a_tawin_error(start, tmp_path, monkeypatch, bad):
    from tawin.errors import ConfigError
    from tawin.integrations.trl import TawinSettings

    settings, overrides, message = BAD_SETTINGS[bad]
    with pytest.raises(ConfigError, match=r"^TawinGRPOTrainer: .*" + message):
        construct(start, tmp_path, monkeypatch, TawinSettings(**settings), **overrides)


def test_good_settings_reach_trl(start, tmp_path, monkeypatch):
    from tawin.integrations.trl import TawinSettings

    with pytest.raises(RuntimeError, match="reached TRL's constructor"):
        construct(start, tmp_path, monkeypatch, TawinSettings(anchor=GROUP - 2, target_k=GROUP - 1))


def test_a_model_without_the_sid_tokens_fails_at_construction(start, tmp_path, monkeypatch, industrial):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tawin.errors import ConfigError
    from tawin.models.prompt import PROMPT_TEMPLATE
    from tawin.models.tokenizer import build_word_tokenizer

    plain = build_word_tokenizer(PROMPT_TEMPLATE, [])
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(plain),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=64,
        )
    )
    with pytest.raises(ConfigError, match=r"the tokenizer lacks \d+ semantic-ID token.*start from a tawin SFT"):
        construct(start, tmp_path, monkeypatch, model=model, tokenizer=plain)
    with pytest.raises(ConfigError, match=r"embedding has \d+ rows but the catalogue's tokens reach id \d+"):
        construct(start, tmp_path, monkeypatch, model=model)  # the tokenizer knows the tokens, the model does not


def test_a_model_trl_cannot_build_a_reference_for_fails_at_construction(start, tmp_path, monkeypatch, industrial):
    from tawin.errors import ConfigError
    from tawin.models.build import ModelConfig, build_recommender

    in_memory = build_recommender(ModelConfig(**TINY_MODEL), industrial.items, seed=0).model
    with pytest.raises(ConfigError, match=r"beta=0.04 needs a reference model.*model.config._name_or_path"):
        construct(start, tmp_path, monkeypatch, model=in_memory)
