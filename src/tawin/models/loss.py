"""Stage 3 — the next-item cross-entropy of a recommender on a batch of rows: SFT's objective
(:mod:`tawin.sft.train`), and the term RL adds with ``rl.sft_loss_weight`` (:mod:`tawin.rl.train`).

It lives with the models, below both training stages, because sft and rl never import each other
(``tests/unit/test_layering.py``); it needs only the batches of :mod:`tawin.models.batching`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tawin.distributed import Dist
from tawin.models.batching import EncodedSplit, prompt_batch, sequence_batch
from tawin.runtime import autocast


def sft_loss(
    model,
    codec,
    encoded: EncodedSplit,
    index_B: torch.Tensor,
    bf16: bool,
    dist: Dist,
    history_weight: float = 0.0,
    item_token_V: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, int]:
    """Cross-entropy over the target item's tokens (EOS included), averaged over the GLOBAL batch.

    With `history_weight` > 0 (semantic IDs only; `item_token_V` marks the item tokens) the item
    tokens of the history are predicted too, each from the items before it, the way SASRec
    trains every position of a sequence; their token losses count `history_weight` times a
    target token's. Each process sums the loss of its share of `index_B` and divides by the
    global batch's weighted token count (× world size, since DDP averages gradients), so the
    update equals one process's. With `label_smoothing` ε > 0 each token's loss is the cross-entropy
    against (1 − ε)·one-hot + ε/V (V = the vocabulary). Returns (loss, tokens processed here).
    """
    device = next(model.parameters()).device
    global_weight = float(codec.target_len_N[encoded.target_R[index_B]].sum())
    if history_weight > 0:
        global_weight += history_weight * float(item_token_V[encoded.prompt_ids_RL[index_B]].sum())
    local_B = dist.shard(index_B)
    ids_BL, mask_BL = prompt_batch(encoded, local_B)
    batch = sequence_batch(ids_BL, mask_BL, codec, encoded.target_R[local_B].unsqueeze(1))
    with autocast(device, bf16):
        logits_BTV = model(
            input_ids=batch.input_ids_BT.to(device),
            attention_mask=batch.attention_mask_BT.to(device),
            position_ids=batch.position_ids_BT.to(device),
        ).logits.float()
    labels_BT = batch.labels_BT.to(device)
    loss_sum = F.cross_entropy(
        logits_BTV.flatten(0, 1),
        labels_BT.flatten(),
        ignore_index=-100,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    if history_weight > 0:
        width = batch.prompt_width
        next_ids_BL = batch.input_ids_BT[:, 1:width]
        history_labels_BL = torch.where(item_token_V[next_ids_BL], next_ids_BL, -100).to(device)
        loss_sum = loss_sum + history_weight * F.cross_entropy(
            logits_BTV[:, : width - 1].flatten(0, 1),
            history_labels_BL.flatten(),
            ignore_index=-100,
            reduction="sum",
            label_smoothing=label_smoothing,
        )
    return loss_sum * dist.world_size / global_weight, int(batch.attention_mask_BT.sum())
