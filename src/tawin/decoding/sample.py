"""Stage 4 — constrained ancestral sampling: G independent samples per prompt from the trie.

Same tree-attention layout as beam search (prompt encoded once, the G samples appended as
parallel branches), but each branch draws its next token from softmax(logits / temperature)
restricted to the trie children of its node. Samples may repeat an item, as policy samples do.
"""

from __future__ import annotations

import torch

from tawin.decoding.tree import encode_prompt, needs_float_mask, tree_mask
from tawin.items.trie import ItemTrie


@torch.no_grad()
def constrained_sample(
    model,
    trie: ItemTrie,
    input_ids_BL,
    attention_mask_BL,
    num_samples: int,
    temperature: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Item positions [B, G] of G samples per prompt."""
    batch, group = input_ids_BL.shape[0], num_samples
    device = input_ids_BL.device
    float_mask = needs_float_mask(model)
    out, prompt_len_B1 = encode_prompt(model, input_ids_BL, attention_mask_BL, logits_to_keep=1)
    cache = out.cache
    logits_BGV = out.logits[:, -1:].float().expand(batch, group, -1)
    next_position_BG = prompt_len_B1.expand(batch, group)
    nodes_BG = torch.zeros(batch, group, dtype=torch.long, device=device)
    slot_BG1 = torch.arange(group, device=device).expand(batch, group).unsqueeze(-1)
    ancestors_BGS = torch.empty(batch, group, 0, dtype=torch.long, device=device)
    for depth in range(trie.max_depth):
        child_token_BGM, child_node_BGM, valid_BGM = trie.children(nodes_BG, depth)
        child_logits = logits_BGV.gather(-1, child_token_BGM) / temperature
        finished_BG1 = (trie.leaf_item_T[nodes_BG] >= 0).unsqueeze(-1)
        child_logits = torch.where(finished_BG1, torch.zeros_like(child_logits), child_logits)
        child_logits = torch.where(valid_BGM, child_logits, float("-inf"))
        probs = torch.softmax(child_logits, dim=-1).reshape(batch * group, -1)
        choice = torch.multinomial(probs.cpu(), 1, generator=generator).to(device).view(batch, group, 1)
        token_BG = child_token_BGM.gather(-1, choice).squeeze(-1)
        nodes_BG = child_node_BGM.gather(-1, choice).squeeze(-1)
        if depth == trie.max_depth - 1:
            break
        ancestors_BGS = torch.cat([ancestors_BGS, slot_BG1], dim=-1)
        mask = tree_mask(attention_mask_BL, ancestors_BGS, group, float_mask, out.logits.dtype)
        out = model(input_ids=token_BG, attention_mask=mask, position_ids=next_position_BG, cache=cache, use_cache=True)
        cache = out.cache
        next_position_BG = next_position_BG + 1
        logits_BGV = out.logits.float()
    return trie.leaf_item_T[nodes_BG]
