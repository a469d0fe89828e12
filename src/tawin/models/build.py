"""Stage 3 — the causal LM: the built-in small Qwen2 model, or any Hugging Face causal LM.

* default (``model.name_or_path: null``): a Qwen2-architecture model built from a config (no
  download), hidden 256 × 4 layers, whose vocabulary is the special tokens, the prompt words and
  the item code tokens (see :mod:`tawin.models.tokenizer`);
* ``--model NAME_OR_PATH``: a pretrained Hugging Face causal LM and its tokenizer (also ``smollm2``
  or a GGUF file, see :mod:`tawin.models.pretrained`); in SID mode the code tokens are added to the
  tokenizer and the embeddings resized; ``model.lora_r > 0`` trains LoRA adapters instead of all weights.

A :class:`RecommenderLM` bundles model, tokenizer and the item codec; checkpoints are ordinary
Hugging Face folders plus ``tawin.json`` (item representation and model config); LoRA checkpoints
hold merged weights (plus the adapters, for exact resume).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from tawin.checkpoint import check_intact, follow_umask, safetensors_problem
from tawin.config import build_config, validate
from tawin.data.dataset import ItemTable
from tawin.errors import ConfigError, UserError
from tawin.items.codec import ItemCodec
from tawin.models.config import ModelConfig
from tawin.models.dropout import apply_dropout
from tawin.models.pretrained import (
    apply_lora,
    has_lora,
    load_causal_lm,
    load_tokenizer,
    merged_state_dict,
    set_neutral_generation_config,
)
from tawin.models.prompt import PROMPT_TEMPLATE
from tawin.models.semantic_init import init_item_embeddings
from tawin.models.tokenizer import build_word_tokenizer


@dataclass
class RecommenderLM:
    """The causal LM of a recommender with the tokenizer and item codec it reads and writes items
    in, and the model config it was built from: what SFT and RL train and a checkpoint holds.
    :class:`tawin.Recommender` wraps one with its catalogue to rank items for histories."""

    model: torch.nn.Module
    tokenizer: object
    codec: ItemCodec
    config: ModelConfig

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def build_recommender(config: ModelConfig, items: ItemTable, seed: int = 0) -> RecommenderLM:
    """A fresh model for `items` (weights random for the default model, pretrained otherwise)."""
    if config.name_or_path is None:
        if config.item_repr != "sid":
            raise ConfigError(
                "model.item_repr=title needs a pretrained tokenizer; pass --model "
                "NAME_OR_PATH (e.g. Qwen/Qwen2.5-0.5B) or use item_repr=sid."
            )
        codes = sorted({token for sid in items.sid for token in sid})
        tokenizer = build_word_tokenizer(PROMPT_TEMPLATE, codes)
        torch.manual_seed(seed)
        model_config = Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads,
            intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_prompt_tokens + 64,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = Qwen2ForCausalLM(model_config)
        apply_dropout(model, config)
        init_item_embeddings(config.item_embedding_init, model, tokenizer, items, codes, seed)
    else:
        tokenizer, model = _load_pretrained(config)
        added = add_item_tokens(tokenizer, model, items) if config.item_repr == "sid" else []
        init_item_embeddings(config.item_embedding_init, model, tokenizer, items, added, seed)  # before LoRA wraps them
        model = _maybe_lora(model, config)
    codec = ItemCodec.build(items, tokenizer, config.item_repr)
    return RecommenderLM(model, tokenizer, codec, config)


def _load_pretrained(config: ModelConfig):
    """(tokenizer, model) for `config.name_or_path`: a hub name, a folder, `smollm2` or a GGUF file.

    Generation settings are reset to explicit greedy ones: a model's own sampling/top-k/top-p
    config must never leak into decoding (see :mod:`tawin.models.pretrained`).
    """
    return load_causal_lm(config.name_or_path, config.dtype, config.trust_remote_code)


def _maybe_lora(model, config: ModelConfig):
    if config.lora_r <= 0:
        return model
    return apply_lora(
        model,
        config.lora_r,
        config.lora_alpha,
        tuple(config.lora_target_modules),
        config.lora_dropout,
        train_embeddings=config.item_repr == "sid",
    )


def add_item_tokens(tokenizer, model, items: ItemTable) -> list[str]:
    """Add missing semantic-ID tokens to a pretrained tokenizer and resize the embeddings; returns those added."""
    codes = sorted({token for sid in items.sid for token in sid})
    missing = [c for c in codes if c not in tokenizer.get_vocab()]
    if tokenizer.add_tokens(missing):
        model.resize_token_embeddings(len(tokenizer))
    return missing


def save_recommender(recommender: RecommenderLM, folder: Path) -> None:
    """Write model, tokenizer and ``tawin.json`` into `folder` (the caller makes it atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = recommender.model
    # LoRA: merged weights under the base names (plain `from_pretrained` works), adapters alongside.
    state_dict = merged_state_dict(model) if has_lora(model) else None
    model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    recommender.tokenizer.save_pretrained(folder)
    (folder / "tawin.json").write_text(json.dumps({"model": asdict(recommender.config)}, indent=2) + "\n")
    follow_umask(folder)  # transformers writes the weights through a private (0600) temporary file


CHECKPOINT_FIX = (
    "Pass a folder written by `tawin sft` or `tawin rl` (e.g. RUN/sft/best), or rerun the stage that wrote it."
)
DAMAGED_FIX = (
    "Restore the checkpoint folder from a copy, or retrain it: rerun the command that wrote it with a fresh "
    "--out folder (for a last/ folder: delete it and rerun that command to restart its stage)."
)


def check_checkpoint(folder: str | Path) -> Path:
    """`folder` if it holds a readable tawin checkpoint, else a UserError naming the file and the fix.

    Cheap enough to run before any output folder is touched: ``tawin.json`` is parsed and checked
    field by field, the weights' safetensors header and size are checked, and then each file against
    the checkpoint's ``manifest.json`` (its sha256; a folder without one: the weights must be finite)."""
    folder = Path(folder)
    if not (folder / "tawin.json").exists():
        raise UserError(
            f"{folder}: not a tawin checkpoint (no tawin.json). Pass a "
            "folder written by `tawin sft` or `tawin rl` (e.g. RUN/sft/best)."
        )
    checkpoint_config(folder)
    weights = sorted(folder.glob("*.safetensors"))
    for path in weights or [folder / "model.safetensors"]:
        problem = safetensors_problem(path)
        if problem:
            raise UserError(f"{path}: {problem}; the checkpoint's weights cannot be loaded. {CHECKPOINT_FIX}")
    check_intact(folder, DAMAGED_FIX)
    return folder


def checkpoint_config(folder: str | Path) -> ModelConfig:
    """The ModelConfig saved in ``folder/tawin.json``; a UserError naming each bad key otherwise."""
    path = Path(folder) / "tawin.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not readable JSON ({' '.join(str(error).split())}). {CHECKPOINT_FIX}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise UserError(
            f'{path}: must hold {{"model": {{…the ModelConfig fields…}}}}, as `tawin sft` writes it. {CHECKPOINT_FIX}'
        )
    problems: list[str] = []
    config = build_config(ModelConfig, saved["model"], "model", problems)
    problems += validate(config) if config is not None else []
    if problems:
        raise UserError(f"{path}: the checkpoint's model metadata is invalid: {'; '.join(problems)}. {CHECKPOINT_FIX}")
    return config


def load_recommender(folder: str | Path, items: ItemTable) -> RecommenderLM:
    """Load a checkpoint written by :func:`save_recommender` for the catalogue `items`."""
    folder = check_checkpoint(folder)
    config = checkpoint_config(folder)
    try:
        tokenizer = load_tokenizer(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, config.dtype))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:400]
        raise UserError(
            f"{folder}: the checkpoint could not be loaded ({type(error).__name__}: {reason}). {CHECKPOINT_FIX}"
        ) from None
    set_neutral_generation_config(model, tokenizer)
    if config.name_or_path is None:  # the extra dropouts live in tawin.json, not in config.json
        apply_dropout(model, config)
    # LoRA checkpoints hold merged weights; fresh adapters (ΔW = 0) go on top for further training.
    model = _maybe_lora(model, config)
    codec = ItemCodec.build(items, tokenizer, config.item_repr)
    return RecommenderLM(model, tokenizer, codec, config)
