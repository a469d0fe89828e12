"""Stage 4 — tree attention shared by beam search, sampling and exact scoring.

Decoding encodes each prompt once and appends its G branches (beams, samples, trie nodes) to the
row's own key/value cache as parallel tokens, instead of copying the cache per branch. A 4-D
attention mask lets every branch token see the prompt and only its own ancestors; this module
builds that mask and runs the prompt forward that starts every such search.
"""

from __future__ import annotations

import torch


def needs_float_mask(model: torch.nn.Module) -> bool:
    """True for attention that adds the mask to its scores (eager): it needs 0/−inf floats, while
    SDPA, flash and flex attention take the boolean 4-D masks built here as they are."""
    return getattr(model.config, "_attn_implementation", "sdpa") not in ("sdpa", "flash_attention_2", "flex_attention")


def as_attention_mask(allowed: torch.Tensor, float_mask: bool, dtype: torch.dtype) -> torch.Tensor:
    """A boolean "may attend" mask as the model takes it: unchanged, or 0 / dtype-min floats."""
    if not float_mask:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def tree_mask(
    prompt_mask_BL: torch.Tensor, ancestors_BGS: torch.Tensor, branches: int, float_mask: bool, dtype: torch.dtype
) -> torch.Tensor:
    """4-D mask [B, 1, G, L + S·G] for the G branch tokens of the current step.

    The cache holds the prompt (L positions) and then S earlier steps of G tokens each; branch g
    sees the prompt where ``prompt_mask_BL`` is set and, in step s, the token of branch
    ``ancestors_BGS[b, g, s]`` (its ancestor there, itself in the last slot).
    """
    batch, slots = ancestors_BGS.shape[0], ancestors_BGS.shape[2]
    prompt_part = prompt_mask_BL.bool()[:, None, :].expand(batch, branches, -1)
    slot_tokens = torch.arange(branches, device=prompt_mask_BL.device)
    tree_part = (ancestors_BGS.unsqueeze(-1) == slot_tokens).reshape(batch, branches, slots * branches)
    return as_attention_mask(torch.cat([prompt_part, tree_part], dim=-1).unsqueeze(1), float_mask, dtype)


def encode_prompt(
    model: torch.nn.Module, input_ids_BL: torch.Tensor, attention_mask_BL: torch.Tensor, **forward_kwargs
):
    """Run the left-padded prompts once, keeping their cache; returns (model output, lengths [B, 1]).

    Positions count only real tokens, so the first generated token of row b sits at position
    ``lengths[b]`` whatever the row's padding.
    """
    out = model(
        input_ids=input_ids_BL,
        attention_mask=attention_mask_BL,
        position_ids=(attention_mask_BL.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        **forward_kwargs,
    )
    return out, attention_mask_BL.sum(-1, keepdim=True)
