"""Stage 3 — the one prompt format shared by SFT, RL, evaluation and `tawin recommend`.

A history (oldest first, ≤ 10 items) renders to one text; its tokens are followed directly by the
item's target tokens (never re-tokenised together), so the model is trained on exactly the token
boundaries that constrained decoding will produce.
"""

from __future__ import annotations

import torch

PROMPT_TEMPLATE = "Purchase history : {history} . Next item :"


def render_prompt(history_positions: list[int], item_prompt_text: list[str]) -> str:
    """Text of the prompt for a history given as item positions in the item table."""
    separator = " , " if item_prompt_text and item_prompt_text[0].startswith('"') else " "
    return PROMPT_TEMPLATE.format(history=separator.join(item_prompt_text[p] for p in history_positions))


def encode_prompts(tokenizer, texts: list[str], max_length: int | None = None) -> list[list[int]]:
    """Token ids of each prompt (with the tokenizer's own special tokens, e.g. BOS)."""
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    if max_length is not None:
        encoded = [ids[-max_length:] for ids in encoded]  # keep the most recent history
    return encoded


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to a [B, L] batch; returns (input_ids_BL, attention_mask_BL)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        if tokens:
            ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            mask[row, width - len(tokens) :] = 1
    return ids, mask
