"""Stage 3 — the causal LM: the built-in small Qwen2 model, or any Hugging Face causal LM.

* default (``model.name_or_path: null``): a Qwen2-architecture model built from a config (no
  download), hidden 256 × 4 layers, whose vocabulary is the special tokens, the prompt words and
  the item code tokens (see :mod:`tawin.models.tokenizer`);
* ``--model NAME_OR_PATH``: a pretrained Hugging Face causal LM and its tokenizer (also ``smollm2``
  or a GGUF file, see :mod:`tawin.models.pretrained`); in SID mode the code tokens are added to the
  tokenizer and the embeddings resized; ``model.lora_r > 0`` trains LoRA adapters instead of all weights.

A :class:`Recommender` bundles model, tokenizer and the item codec; checkpoints are ordinary
Hugging Face folders plus ``tawin.json`` (item representation and model config); LoRA checkpoints
hold merged weights (plus the adapters, for exact resume).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from tawin.checkpoint import follow_umask, safetensors_problem
from tawin.config import build_config, validate
from tawin.data.dataset import ItemTable
from tawin.errors import ConfigError, UserError
from tawin.items.codec import ItemCodec, ItemRepresentation
from tawin.models.pretrained import apply_lora, has_lora, load_causal_lm, load_tokenizer, merged_state_dict, set_neutral_generation_config
from tawin.models.prompt import PROMPT_TEMPLATE
from tawin.models.tokenizer import build_word_tokenizer


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str | None = None
    """Hugging Face model name or local folder; null builds the small default Qwen2 model."""
    item_repr: ItemRepresentation = "sid"
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
    lora_r: int = 0
    """LoRA rank r of the adapters on `lora_target_modules` (PEFT); 0 = full fine-tuning. Pretrained
    models only. In SID mode the token embeddings and head train in full too (new code tokens)."""
    lora_alpha: int = 16
    """LoRA scale α: the update is ΔW = B·A·α/r."""
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Names of the linear layers that get adapters (e.g. add gate_proj, up_proj, down_proj for the MLP)."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input during training (probability, in [0, 1))."""

    def check(self) -> list[str]:
        problems = []
        if self.name_or_path is not None and not self.name_or_path.strip():
            problems.append("model.name_or_path is empty; name a Hugging Face model or folder, or use null for the built-in small model")
        if self.name_or_path is None and self.item_repr == "title":
            problems.append("model.item_repr=title needs a pretrained tokenizer; set model.name_or_path (e.g. smollm2 or Qwen/Qwen2.5-0.5B) or use item_repr=sid")
        if self.lora_r < 0:
            problems.append(f"model.lora_r={self.lora_r} must be ≥ 0 (0 = full fine-tuning)")
        elif self.lora_r > 0:
            if self.name_or_path is None:
                problems.append(f"model.lora_r={self.lora_r} adapts a pretrained model, but model.name_or_path is null (the default model starts random "
                                "and must train in full); set model.name_or_path or lora_r=0")
            if self.lora_alpha <= 0:
                problems.append(f"model.lora_alpha={self.lora_alpha} must be > 0")
            if not self.lora_target_modules:
                problems.append("model.lora_target_modules is empty; list the linear layers to adapt, e.g. [q_proj, v_proj]")
            if not 0 <= self.lora_dropout < 1:
                problems.append(f"model.lora_dropout={self.lora_dropout} must lie in [0, 1)")
        return problems + self._architecture_problems()

    def _architecture_problems(self) -> list[str]:
        problems = []
        if self.name_or_path is None:
            if min(self.num_heads, self.num_kv_heads) < 1:
                pass  # reported below
            elif self.hidden_size % self.num_heads:
                problems.append(f"model.hidden_size={self.hidden_size} must be divisible by model.num_heads={self.num_heads}; change one of them")
            elif self.num_heads % self.num_kv_heads:
                problems.append(f"model.num_heads={self.num_heads} must be divisible by model.num_kv_heads={self.num_kv_heads}; change one of them")
            for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
                if getattr(self, name) < 1:
                    problems.append(f"model.{name}={getattr(self, name)} must be ≥ 1")
        if self.max_prompt_tokens < 8:
            problems.append(f"model.max_prompt_tokens={self.max_prompt_tokens} must be ≥ 8")
        return problems


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
        model = _maybe_lora(model, config)
    codec = ItemCodec.build(items, tokenizer, config.item_repr)
    return Recommender(model, tokenizer, codec, config)


def _load_pretrained(config: ModelConfig):
    """(tokenizer, model) for `config.name_or_path`: a hub name, a folder, `smollm2` or a GGUF file.

    Generation settings are reset to explicit greedy ones: a model's own sampling/top-k/top-p
    config must never leak into decoding (see :mod:`tawin.models.pretrained`).
    """
    return load_causal_lm(config.name_or_path, config.dtype, config.trust_remote_code)


def _maybe_lora(model, config: ModelConfig):
    if config.lora_r <= 0:
        return model
    return apply_lora(model, config.lora_r, config.lora_alpha, tuple(config.lora_target_modules), config.lora_dropout,
                      train_embeddings=config.item_repr == "sid")


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
    model = recommender.model
    # LoRA: merged weights under the base names (plain `from_pretrained` works), adapters alongside.
    state_dict = merged_state_dict(model) if has_lora(model) else None
    model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    recommender.tokenizer.save_pretrained(folder)
    (folder / "tawin.json").write_text(json.dumps({"model": asdict(recommender.config)}, indent=2) + "\n")
    follow_umask(folder)  # transformers writes the weights through a private (0600) temporary file


CHECKPOINT_FIX = "Pass a folder written by `tawin sft` or `tawin rl` (e.g. RUN/sft/best), or rerun the stage that wrote it."


def check_checkpoint(folder: str | Path) -> Path:
    """`folder` if it holds a readable tawin checkpoint, else a UserError naming the file and the fix.

    Cheap enough to run before any output folder is touched: ``tawin.json`` is parsed and checked
    field by field, and the weights' safetensors header and size are checked (not the tensors)."""
    folder = Path(folder)
    if not (folder / "tawin.json").exists():
        raise UserError(f"{folder}: not a tawin checkpoint (no tawin.json). Pass a folder written by `tawin sft` or `tawin rl` (e.g. RUN/sft/best).")
    checkpoint_config(folder)
    weights = sorted(folder.glob("*.safetensors"))
    for path in weights or [folder / "model.safetensors"]:
        problem = safetensors_problem(path)
        if problem:
            raise UserError(f"{path}: {problem}; the checkpoint's weights cannot be loaded. {CHECKPOINT_FIX}")
    return folder


def checkpoint_config(folder: str | Path) -> ModelConfig:
    """The ModelConfig saved in ``folder/tawin.json``; a UserError naming each bad key otherwise."""
    path = Path(folder) / "tawin.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not readable JSON ({' '.join(str(error).split())}). {CHECKPOINT_FIX}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise UserError(f"{path}: must hold {{\"model\": {{…the ModelConfig fields…}}}}, as `tawin sft` writes it. {CHECKPOINT_FIX}")
    problems: list[str] = []
    config = build_config(ModelConfig, saved["model"], "model", problems)
    problems += validate(config) if config is not None else []
    if problems:
        raise UserError(f"{path}: the checkpoint's model metadata is invalid: {'; '.join(problems)}. {CHECKPOINT_FIX}")
    return config


def load_recommender(folder: str | Path, items: ItemTable) -> Recommender:
    """Load a checkpoint written by :func:`save_recommender` for the catalogue `items`."""
    folder = check_checkpoint(folder)
    config = checkpoint_config(folder)
    try:
        tokenizer = load_tokenizer(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, config.dtype))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:400]
        raise UserError(f"{folder}: the checkpoint could not be loaded ({type(error).__name__}: {reason}). {CHECKPOINT_FIX}") from None
    set_neutral_generation_config(model, tokenizer)
    # LoRA checkpoints hold merged weights; fresh adapters (ΔW = 0) go on top for further training.
    model = _maybe_lora(model, config)
    codec = ItemCodec.build(items, tokenizer, config.item_repr)
    return Recommender(model, tokenizer, codec, config)
