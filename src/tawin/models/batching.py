"""Stage 3 — turning a split into tensors once, and batches into model inputs without loops.

Each split's prompts are rendered and tokenised once (`encode_split`) into a left-padded tensor;
a batch is then a slice plus a gather of the items' target tokens from the codec's table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tawin.data.dataset import Interactions, ItemTable
from tawin.items.codec import ItemCodec
from tawin.models.prompt import encode_prompts, render_prompt


@dataclass
class EncodedSplit:
    rows: Interactions
    prompt_ids_RL: torch.Tensor  # int64 [R, L] left-padded prompt tokens
    prompt_len_R: torch.Tensor  # int64 [R]
    target_R: torch.Tensor  # int64 [R] target item positions in the item table
    history_RH: torch.Tensor  # int64 [R, H] history item positions, -1 padded

    def __len__(self) -> int:
        return int(self.target_R.shape[0])


def item_positions(items: ItemTable, item_ids: np.ndarray) -> np.ndarray:
    """Map item ids (any shape; -1 stays -1) to positions in the item table."""
    order = np.argsort(items.item_id)
    sorted_ids = items.item_id[order]
    found = np.searchsorted(sorted_ids, item_ids).clip(max=len(sorted_ids) - 1)
    positions = order[found]
    return np.where(item_ids < 0, -1, positions)


def encode_split(
    split: Interactions, items: ItemTable, codec: ItemCodec, tokenizer, max_prompt_tokens: int
) -> EncodedSplit:
    history_RH = item_positions(items, split.history_RH)
    texts = [
        render_prompt(history_RH[r, : split.history_len[r]].tolist(), codec.prompt_text) for r in range(len(split))
    ]
    ids = encode_prompts(tokenizer, texts, max_prompt_tokens)
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    width = int(lengths.max()) if len(ids) else 1
    table = torch.full((len(ids), width), codec.pad_id, dtype=torch.long)
    flat = torch.tensor([t for x in ids for t in x], dtype=torch.long)
    row_index = torch.repeat_interleave(torch.arange(len(ids)), lengths)
    column = torch.arange(len(flat)) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    table[row_index, width - lengths[row_index] + column] = flat
    return EncodedSplit(
        rows=split,
        prompt_ids_RL=table,
        prompt_len_R=lengths,
        target_R=torch.from_numpy(item_positions(items, split.target)),
        history_RH=torch.from_numpy(history_RH),
    )


def prompt_batch(encoded: EncodedSplit, index_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts of rows `index_B`, trimmed to the longest: (ids [B, L], mask [B, L])."""
    lengths_B = encoded.prompt_len_R[index_B]
    width = int(lengths_B.max())
    ids_BL = encoded.prompt_ids_RL[index_B, -width:]
    mask_BL = (torch.arange(width).unsqueeze(0) >= (width - lengths_B).unsqueeze(1)).long()
    return ids_BL, mask_BL


@dataclass
class SequenceBatch:
    input_ids_BT: torch.Tensor
    attention_mask_BT: torch.Tensor
    position_ids_BT: torch.Tensor
    target_mask_BT: torch.Tensor  # bool: positions whose NEXT token is an item token to predict
    labels_BT: torch.Tensor  # next-token labels (-100 where not an item token)
    prompt_width: int


def sequence_batch(
    prompt_ids_BL: torch.Tensor, prompt_mask_BL: torch.Tensor, codec: ItemCodec, items_BG: torch.Tensor
) -> SequenceBatch:
    """Prompt ⊕ item tokens for every (row, candidate) pair: B·G sequences, prompt repeated.

    `items_BG` holds item positions; G = 1 for SFT. The returned tensors have B·G rows.
    """
    batch, group = items_BG.shape
    targets_nT = codec.target_table_NL[items_BG.reshape(-1)]
    target_len_n = codec.target_len_N[items_BG.reshape(-1)]
    ids_nL = prompt_ids_BL.repeat_interleave(group, dim=0)
    mask_nL = prompt_mask_BL.repeat_interleave(group, dim=0)
    width = targets_nT.shape[1]
    target_valid_nT = torch.arange(width).unsqueeze(0) < target_len_n.unsqueeze(1)
    input_ids = torch.cat([ids_nL, targets_nT], dim=1)
    attention = torch.cat([mask_nL, target_valid_nT.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    labels = torch.full_like(input_ids, -100)
    prompt_width = ids_nL.shape[1]
    labels[:, prompt_width - 1 : prompt_width - 1 + width] = torch.where(target_valid_nT, targets_nT, -100)
    return SequenceBatch(input_ids, attention, positions, labels != -100, labels, prompt_width)


def length_bucketed_batches(
    lengths_R: torch.Tensor, batch_size: int, generator: torch.Generator, bucket_batches: int = 50
) -> list[torch.Tensor]:
    """Shuffled batches of similar-length rows: little padding, still a random order.

    The epoch's permutation is cut into chunks of `bucket_batches` batches; each chunk is sorted by
    length (stable) and cut into batches; the batch order is then shuffled. Deterministic given
    the generator, so a resumed epoch replays the same batches.
    """
    order = torch.randperm(len(lengths_R), generator=generator)
    chunk = batch_size * bucket_batches
    batches: list[torch.Tensor] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[torch.sort(lengths_R[part], stable=True).indices]
        batches.extend(part.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffle]
