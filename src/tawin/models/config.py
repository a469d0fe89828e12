"""Stage models — the model section of a config (`ModelConfig`), readable without torch.

The CLI reads it while it builds its parser and `tawin config show` prints it, before (or without)
loading torch and transformers; :mod:`tawin.models.build` builds, saves and loads the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tawin.data.dataset import ItemRepresentation

ItemEmbeddingInit = Literal["random", "titles"]
"""Where the item-code token embeddings start: see `ModelConfig.item_embedding_init`."""


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str | None = None
    """Hugging Face model name or local folder; null builds the small default Qwen2 model."""
    item_repr: ItemRepresentation = "sid"
    """How items are generated: semantic-ID tokens (added to the vocabulary) or title tokens."""
    item_embedding_init: ItemEmbeddingInit = "random"
    """Where the semantic-ID tokens' embedding rows start: "random" (the model's own draw) or "titles":
    each code's row points where the titles of the items it covers lie (all-MiniLM-L6-v2 embeddings,
    mean residual per level, seeded projection to the model width; see tawin.models.semantic_init),
    at the norm of the random rows. Fresh models only (the built-in model's code tokens, a
    pretrained model's added ones); a loaded checkpoint keeps its weights. Needs
    `pip install 'tawin[sids]'`; the embeddings are cached in $TAWIN_CACHE_DIR (else ~/.cache/tawin).
    Refused with item_repr=title, which has no code tokens."""
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
    embedding_dropout: float = 0.0
    """Default model only: dropout probability on the token embeddings' output, before the first
    block (GPT-2's embd_pdrop). In [0, 1); 0 = off. Dropout acts in SFT only: evaluation runs in eval
    mode and RL switches all dropout off. Pretrained models keep their own config's dropout, so
    a value > 0 with model.name_or_path set is refused."""
    attention_dropout: float = 0.0
    """Default model only: dropout probability on the attention probabilities (Qwen2Config's own
    attention_dropout, also written to the checkpoint's config.json). In [0, 1); 0 = off."""
    residual_dropout: float = 0.0
    """Default model only: dropout probability on each attention output and each MLP output before
    it is added to the residual stream (GPT-2's resid_pdrop; SASRec drops there too). In [0, 1);
    0 = off. These dropouts have no weights: checkpoints keep plain transformers' keys."""
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
            problems.append(
                "model.name_or_path is empty; name a Hugging Face model "
                "or folder, or use null for the built-in small model"
            )
        if self.name_or_path is None and self.item_repr == "title":
            problems.append(
                "model.item_repr=title needs a pretrained tokenizer; set "
                "model.name_or_path (e.g. smollm2 or Qwen/Qwen2.5-0.5B) or use item_repr=sid"
            )
        if self.item_embedding_init == "titles" and self.item_repr == "title":
            problems.append(
                "model.item_embedding_init=titles initialises the "
                "semantic-ID tokens, but model.item_repr=title has none "
                "(items are written in the model's own word pieces, whose embeddings already carry the text); "
                "set model.item_embedding_init=random or model.item_repr=sid"
            )
        if self.lora_r < 0:
            problems.append(f"model.lora_r={self.lora_r} must be ≥ 0 (0 = full fine-tuning)")
        elif self.lora_r > 0:
            if self.name_or_path is None:
                problems.append(
                    f"model.lora_r={self.lora_r} adapts a pretrained model, but "
                    "model.name_or_path is null (the default model starts random "
                    "and must train in full); set model.name_or_path or lora_r=0"
                )
            if self.lora_alpha <= 0:
                problems.append(f"model.lora_alpha={self.lora_alpha} must be > 0")
            if not self.lora_target_modules:
                problems.append(
                    "model.lora_target_modules is empty; list the linear layers to adapt, e.g. [q_proj, v_proj]"
                )
            if not 0 <= self.lora_dropout < 1:
                problems.append(f"model.lora_dropout={self.lora_dropout} must lie in [0, 1)")
        return problems + self._architecture_problems()

    def _architecture_problems(self) -> list[str]:
        problems = []
        if self.name_or_path is None:
            if min(self.num_heads, self.num_kv_heads) < 1:
                pass  # reported below
            elif self.hidden_size % self.num_heads:
                problems.append(
                    f"model.hidden_size={self.hidden_size} must be divisible "
                    f"by model.num_heads={self.num_heads}; change one of them"
                )
            elif self.num_heads % self.num_kv_heads:
                problems.append(
                    f"model.num_heads={self.num_heads} must be divisible by "
                    f"model.num_kv_heads={self.num_kv_heads}; change one of them"
                )
            for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
                if getattr(self, name) < 1:
                    problems.append(f"model.{name}={getattr(self, name)} must be ≥ 1")
        if self.max_prompt_tokens < 8:
            problems.append(f"model.max_prompt_tokens={self.max_prompt_tokens} must be ≥ 8")
        return problems + self._dropout_problems()

    def _dropout_problems(self) -> list[str]:
        problems = []
        for name in ("embedding_dropout", "attention_dropout", "residual_dropout"):
            probability = getattr(self, name)
            if not 0 <= probability < 1:
                problems.append(f"model.{name}={probability} must lie in [0, 1) (a dropout probability; 0 = off)")
            elif probability > 0 and self.name_or_path is not None:
                problems.append(
                    f"model.{name}={probability} configures the built-in model (model.name_or_path: null); "
                    f"a pretrained model keeps the dropout of its own config. Set model.{name}=0 "
                    "(LoRA adapters have model.lora_dropout)"
                )
        return problems
