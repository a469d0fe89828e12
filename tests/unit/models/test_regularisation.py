"""SFT regularisation of the built-in model: dropout (embeddings, attention, residual branches) and
label smoothing. Dropout is off by default and leaves the model as it was; when on, it acts in
training mode only, adds no weights, survives save → load, and RL switches it off."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from transformers import Qwen2ForCausalLM

from tawin.distributed import Dist
from tawin.models.batching import encode_split, prompt_batch
from tawin.models.build import ModelConfig, build_recommender, load_recommender, save_recommender
from tawin.sft.train import RunContext, sft_loss

from conftest import TINY_MODEL, fails, spread_weights

pytestmark = pytest.mark.usefixtures("one_thread")

DROPOUTS = ("embedding_dropout", "attention_dropout", "residual_dropout")
ALL_ON = {"embedding_dropout": 0.2, "attention_dropout": 0.2, "residual_dropout": 0.2}


def build(items, **dropout):
    return build_recommender(ModelConfig(**TINY_MODEL, **dropout), items, seed=0)


def prompts(recommender, industrial_small, rows=6):
    train = industrial_small.splits["train"]
    encoded = encode_split(train, industrial_small.items, recommender.codec, recommender.tokenizer, 512)
    ids_BL, mask_BL = prompt_batch(encoded, torch.arange(rows))
    return {"input_ids": ids_BL, "attention_mask": mask_BL}


def logits(model, batch, train: bool, seed: int = 0) -> torch.Tensor:
    model.train(train)
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(**batch).logits


def test_zero_dropout_is_the_plain_transformers_model(industrial, industrial_small):
    built = build(industrial.items, embedding_dropout=0.0, attention_dropout=0.0, residual_dropout=0.0).model
    torch.manual_seed(0)  # build_recommender seeds the same way before it initialises the weights
    plain = Qwen2ForCausalLM(built.config)
    assert [name for name, _ in built.named_modules()] == [name for name, _ in plain.named_modules()]
    batch = prompts(build(industrial.items), industrial_small)
    assert torch.equal(logits(built, batch, train=True), logits(plain, batch, train=True))
    assert built.config.attention_dropout == 0.0


@pytest.mark.parametrize("name", DROPOUTS)
def test_dropout_acts_in_training_mode_only(industrial, industrial_small, name):
    plain = build(industrial.items).model
    dropped = build(industrial.items, **{name: 0.3}).model
    assert dropped.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(dropped.state_dict().values(), plain.state_dict().values()))
    batch = prompts(build(industrial.items), industrial_small)
    first, second = logits(dropped, batch, train=True, seed=1), logits(dropped, batch, train=True, seed=2)
    assert not torch.equal(first, second)
    assert not torch.equal(first, logits(plain, batch, train=True, seed=1))
    assert torch.equal(logits(dropped, batch, train=False), logits(plain, batch, train=False))


def test_each_dropout_drops_where_its_docstring_says(industrial, industrial_small):
    model = build(industrial.items, embedding_dropout=0.5, attention_dropout=0.25, residual_dropout=0.5).model
    assert model.config.attention_dropout == 0.25
    assert all(layer.self_attn.attention_dropout == 0.25 for layer in model.model.layers)
    hooked = [model.model.embed_tokens] + [m for layer in model.model.layers for m in (layer.self_attn, layer.mlp)]
    seen = []

    batch = prompts(build(industrial.items), industrial_small)
    real_BL = batch["attention_mask"].bool()  # padding's embedding is zero without any dropout

    def zero_share(module, args, output):  # registered after the dropout hook: sees the dropped output
        seen.append(float((output[0] if isinstance(output, tuple) else output)[real_BL].eq(0).float().mean()))

    for module in hooked:
        module.register_forward_hook(zero_share)
    logits(model, batch, train=True)
    assert len(seen) == len(hooked) and all(0.4 < share < 0.6 for share in seen), seen
    seen.clear()
    logits(model, batch, train=False)
    assert all(share < 0.01 for share in seen), seen


def test_save_and_load_keep_keys_config_and_dropout(industrial, industrial_small, tmp_path):
    built = build(industrial.items, **ALL_ON)
    plain = build(industrial.items)
    save_recommender(built, tmp_path / "on")
    save_recommender(plain, tmp_path / "off")
    from safetensors import safe_open

    keys = [set(safe_open(str(tmp_path / name / "model.safetensors"), "pt").keys()) for name in ("on", "off")]
    assert keys[0] == keys[1]
    _, info = Qwen2ForCausalLM.from_pretrained(tmp_path / "on", output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys in plain transformers
    assert json.loads((tmp_path / "on" / "tawin.json").read_text())["model"]["residual_dropout"] == 0.2
    loaded = load_recommender(tmp_path / "on", industrial.items)
    assert all(getattr(loaded.config, name) == 0.2 for name in DROPOUTS)
    batch = prompts(built, industrial_small)
    # The same weights and the same dropouts in the same order draw the same masks from the same seed.
    assert torch.equal(logits(loaded.model, batch, train=True, seed=3), logits(built.model, batch, train=True, seed=3))
    assert not torch.equal(logits(loaded.model, batch, train=True, seed=3), logits(loaded.model, batch, train=False))
    assert torch.equal(logits(loaded.model, batch, train=False), logits(plain.model, batch, train=False))


def test_rl_trains_without_dropout(industrial, industrial_small, tmp_path):
    from tawin.rl.config import RLConfig
    from tawin.rl.train import train_rl

    recommender = build(industrial.items, **ALL_ON)
    encoded = {
        name: encode_split(
            industrial_small.splits[name], industrial_small.items, recommender.codec, recommender.tokenizer, 512
        )
        for name in ("train", "valid")
    }
    config = RLConfig(negatives="random", group_size=4, batch_size=4, max_steps=1, log_every=1, eval_rows=4)
    train_rl(
        recommender,
        industrial_small,
        encoded["train"],
        encoded["valid"],
        config,
        RunContext(tmp_path, 0, torch.device("cpu"), False, progress_bars=False),
    )
    model = recommender.model
    assert all(m.p == 0 for m in model.modules() if isinstance(m, nn.Dropout))
    assert all(layer.self_attn.attention_dropout == 0 for layer in model.model.layers)
    batch = prompts(recommender, industrial_small)
    assert torch.equal(logits(model, batch, train=True, seed=1), logits(model, batch, train=False))
    # The checkpoint still records the model's dropout, for a further SFT from it.
    assert json.loads((tmp_path / "final" / "tawin.json").read_text())["model"]["embedding_dropout"] == 0.2


def smoothed_reference(model, codec, encoded, rows, history_weight, item_token_V, epsilon):
    """One unpadded sequence at a time: Σ over the scored tokens of (1 − ε)·NLL + ε·mean_v(−log p_v)."""
    total, weight = 0.0, 0.0
    for row in rows.tolist():
        prompt = encoded.prompt_ids_RL[row, -int(encoded.prompt_len_R[row]) :]
        target = codec.target_table_NL[encoded.target_R[row], : int(codec.target_len_N[encoded.target_R[row]])]
        sequence = torch.cat([prompt, target])
        logp_TV = torch.log_softmax(model(input_ids=sequence[None]).logits[0].float(), -1)[:-1]
        smoothed_T = (1 - epsilon) * -logp_TV.gather(1, sequence[1:, None])[:, 0] + epsilon * -logp_TV.mean(-1)
        is_target_T = torch.arange(1, len(sequence)) >= len(prompt)
        is_history_T = item_token_V[sequence[1:]] & ~is_target_T
        total += float(smoothed_T[is_target_T].sum()) + history_weight * float(smoothed_T[is_history_T].sum())
        weight += float(is_target_T.sum()) + history_weight * float(is_history_T.sum())
    return total / weight


@pytest.mark.parametrize("history_weight", [0.0, 1.0])
def test_label_smoothing_matches_a_row_by_row_reference(industrial_small, tiny_recommender, history_weight):
    r = tiny_recommender
    spread_weights(r.model)  # peaked predictions: smoothing then changes the loss well beyond the tolerance
    encoded = encode_split(industrial_small.splits["train"], industrial_small.items, r.codec, r.tokenizer, 512)
    item_token_V = r.codec.item_token_mask(r.model.get_input_embeddings().num_embeddings)
    rows = torch.arange(0, 30, 3)
    with torch.no_grad():
        arguments = (r.model, r.codec, encoded, rows, False, Dist(), history_weight, item_token_V)
        plain, _ = sft_loss(*arguments)
        unsmoothed, _ = sft_loss(*arguments, label_smoothing=0.0)
        assert torch.equal(plain, unsmoothed)
        expected_plain = smoothed_reference(r.model, r.codec, encoded, rows, history_weight, item_token_V, 0.0)
        for epsilon in (0.1, 0.4):
            loss, _ = sft_loss(*arguments, label_smoothing=epsilon)
            expected = smoothed_reference(r.model, r.codec, encoded, rows, history_weight, item_token_V, epsilon)
            assert float(loss) == pytest.approx(expected, rel=1e-5)
            # The smoothing term itself, ε·Σ(mean_v(−log p_v) − NLL)/weight, matches too: it is not lost in
            # the tolerance above.
            assert abs(expected - expected_plain) > 1e-3
            assert float(loss - plain) == pytest.approx(expected - expected_plain, rel=1e-2)


def test_out_of_range_values_are_refused_at_once(tmp_path, capsys):
    overrides = [
        "model.embedding_dropout=1",
        "model.attention_dropout=-0.1",
        "model.residual_dropout=1.5",
        "sft.label_smoothing=1",
    ]
    err = fails(
        ["sft", "--out", str(tmp_path / "out"), *(f"--set={o}" for o in overrides)], capsys, r"invalid configuration"
    )
    for problem in (
        "model.embedding_dropout=1.0 must lie in [0, 1)",
        "model.attention_dropout=-0.1 must lie in [0, 1)",
        "model.residual_dropout=1.5 must lie in [0, 1)",
        "sft.label_smoothing=1.0 must lie in [0, 1)",
    ):
        assert problem in err
    assert not (tmp_path / "out").exists()


def test_dropout_of_a_pretrained_model_is_refused(tmp_path, capsys):
    fails(
        ["sft", "--out", str(tmp_path / "out"), "--model", "smollm2", "--set", "model.residual_dropout=0.1"],
        capsys,
        r"model\.residual_dropout=0\.1 configures the built-in model \(model\.name_or_path: null\).*"
        r"Set model\.residual_dropout=0",
    )
    assert not (tmp_path / "out").exists()
