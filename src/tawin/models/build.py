"""Stage 3 — the causal LM: the built-in small Qwen2 model, or any Hugging Face causal LM.

* default (``model.name_or_path: null``): a Qwen2-architecture model built from a config (no
  download), hidden 256 × 4 layers, whose vocabulary is the special tokens, the prompt words and
  the item code tokens (see :mod:`tawin.models.tokenizer`);
* ``--model NAME_OR_PATH``: a pretrained Hugging Face causal LM and its tokenizer; in SID mode the
  code tokens are added to the tokenizer and the embeddings resized.

A :class:`Recommender` bundles model, tokenizer and the item codec; checkpoints are ordinary
Hugging Face folders plus ``tawin.json`` (item representation and model config).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from tawin.data.dataset import ItemTable
from tawin.errors import ConfigError, UserError
from tawin.items.codec import ItemCodec, ItemRepresentation
from tawin.models.prompt import PROMPT_TEMPLATE
from tawin.models.tokenizer import build_word_tokenizer


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str | None = None
    """Hugging Face model name or local folder; null builds the small default Qwen2 model."""
    item_repr: Literal["sid", "title"] = "sid"
    """How items are generated: semantic-ID tokens (added to the vocabulary) or title tokens."""
    hidden_size: int = 256
    """Default model only: width of the residual stream."""
    num_layers: int = 4
    """Default model only: transformer blocks."""
    num_heads: int = 4
    """Default model only: attention heads (head size = hidden_size / num_heads)."""
    num_kv_heads: int = 4
    """Default model only: key/value heads (grouped-query attention when < num_heads)."""
    intermediate_size: int = 512
    """Default model only: MLP width."""
    max_prompt_tokens: int = 512
    """Prompts are truncated from the left (oldest history first) to this many tokens."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Parameter dtype. Training keeps float32 master weights and uses autocast for bf16."""
    trust_remote_code: bool = False
    """Passed to Hugging Face loaders for models that ship their own code."""


@dataclass
class Recommender:
    model: torch.nn.Module
    tokenizer: object
    codec: ItemCodec
    config: ModelConfig

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def build_recommender(config: ModelConfig, items: ItemTable, seed: int = 0) -> Recommender:
    """A fresh model for `items` (weights random for the default model, pretrained otherwise)."""
    if config.name_or_path is None:
        if config.item_repr != "sid":
            raise ConfigError("model.item_repr=title needs a pretrained tokenizer; pass --model NAME_OR_PATH (e.g. Qwen/Qwen2.5-0.5B) or use item_repr=sid.")
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
    else:
        tokenizer, model = _load_pretrained(config)
        if config.item_repr == "sid":
            add_item_tokens(tokenizer, model, items)
    codec = ItemCodec.build(items, tokenizer, config.item_repr)
    return Recommender(model, tokenizer, codec, config)


def _load_pretrained(config: ModelConfig):
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.name_or_path, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            config.name_or_path, dtype=getattr(torch, config.dtype), trust_remote_code=config.trust_remote_code
        )
    except OSError as error:
        hint = " (HF_HUB_OFFLINE=1 is set: only local folders and cached models load)" if offline else ""
        raise UserError(f"model.name_or_path={config.name_or_path!r} could not be loaded{hint}: {error}. Pass a Hugging Face model name or a local folder with config.json and weights.") from None
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer of {config.name_or_path!r} has no EOS token; items need one to end. Pick a causal LM with an EOS token.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A model's own generation config (sampling, top-k/top-p) must never leak into decoding:
    # tawin builds its own beam search and never calls `generate` with these settings.
    model.generation_config.do_sample = False
    return tokenizer, model


def add_item_tokens(tokenizer, model, items: ItemTable) -> int:
    """Add missing semantic-ID tokens to a pretrained tokenizer and resize the embeddings."""
    codes = sorted({token for sid in items.sid for token in sid})
    added = tokenizer.add_tokens([c for c in codes if c not in tokenizer.get_vocab()])
    if added:
        model.resize_token_embeddings(len(tokenizer))
    return added


def save_recommender(recommender: Recommender, folder: Path) -> None:
    """Write model, tokenizer and ``tawin.json`` into `folder` (the caller makes it atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    recommender.model.save_pretrained(folder, safe_serialization=True)
    recommender.tokenizer.save_pretrained(folder)
    (folder / "tawin.json").write_text(json.dumps({"model": asdict(recommender.config)}, indent=2) + "\n")


def load_recommender(folder: str | Path, items: ItemTable) -> Recommender:
    """Load a checkpoint written by :func:`save_recommender` for the catalogue `items`."""
    folder = Path(folder)
    meta_path = folder / "tawin.json"
    if not meta_path.exists():
        raise UserError(f"{folder}: not a tawin checkpoint (no tawin.json). Pass a folder written by `tawin sft` or `tawin rl` (e.g. RUN/sft/best).")
    saved = json.loads(meta_path.read_text())["model"]
    config = ModelConfig(**saved)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, config.dtype))
    codec = ItemCodec.build(items, tokenizer, config.item_repr)
    return Recommender(model, tokenizer, codec, config)
