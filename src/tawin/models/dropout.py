"""Stage 3 — dropout for the built-in Qwen2 model, and dropout switched off for RL.

Qwen2 itself only drops attention probabilities (``Qwen2Config.attention_dropout``). GPT-2
(``embd_pdrop``, ``resid_pdrop``) and SASRec also drop the token embeddings and each residual
branch (the attention and MLP outputs, before they are added to the residual stream); the built-in
model trains from scratch on little data, so :func:`apply_dropout` adds those two as well.

They are ``nn.Dropout`` submodules driven by forward hooks on the modules whose output they drop:
no parameters and no buffers, so the state_dict, and with it every checkpoint, is exactly what
plain transformers writes and reads. A checkpoint's ``config.json`` records the attention dropout
only; :func:`tawin.models.build.load_recommender` re-applies all three from ``tawin.json``.

RL runs without any dropout (:func:`disable_dropout`): the GRPO ratio compares the log-probs of
the tokens the policy generated with the same policy's log-probs under training, which dropout
would perturb (TRL's ``disable_dropout`` does the same).
"""

from __future__ import annotations

from torch import nn

from tawin.models.config import ModelConfig

OUTPUT_DROPOUT = "tawin_output_dropout"
"""Name of the dropout submodule that a hooked module applies to its output."""


def apply_dropout(model: nn.Module, config: ModelConfig) -> None:
    """Set the built-in model's `embedding_dropout`, `attention_dropout` and `residual_dropout`.

    `model` is a ``Qwen2ForCausalLM``. Idempotent: a second call sets the probabilities again
    instead of stacking hooks. At 0 no module or hook is added, so the model computes exactly
    what it did before these options existed. Dropout acts in training mode only.
    """
    decoder = model.model
    model.config.attention_dropout = config.attention_dropout
    for layer in decoder.layers:
        layer.self_attn.attention_dropout = config.attention_dropout
        _drop_output(layer.self_attn, config.residual_dropout)
        _drop_output(layer.mlp, config.residual_dropout)
    _drop_output(decoder.embed_tokens, config.embedding_dropout)


def _drop_output(module: nn.Module, probability: float) -> None:
    dropout = getattr(module, OUTPUT_DROPOUT, None)
    if dropout is not None:
        dropout.p = probability
    elif probability > 0:
        module.add_module(OUTPUT_DROPOUT, nn.Dropout(probability))
        module.register_forward_hook(_dropped_output)


def _dropped_output(module: nn.Module, args, output):
    dropout = getattr(module, OUTPUT_DROPOUT)
    if isinstance(output, tuple):  # attention returns (output, attention weights)
        return (dropout(output[0]), *output[1:])
    return dropout(output)


def disable_dropout(model: nn.Module) -> None:
    """Switch off every dropout in `model` for good, in training mode too: each ``nn.Dropout``
    (the built-in model's, a pretrained model's own, LoRA's) gets p = 0 and each attention
    module's `attention_dropout` (Qwen2, Llama, Mistral, … pass it to the attention kernel) 0.

    ``model.config`` is left as it was, so a checkpoint saved afterwards still describes the
    model that was configured (and `load_recommender` restores its dropout for further SFT)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        rate = getattr(module, "attention_dropout", None)
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):
            module.attention_dropout = 0.0
