"""Stage 4 — vectorised constrained beam search over the catalogue trie.

Each prompt is encoded once and its key/value cache is *not* copied per beam: the K beams of a
row are appended to the row's own sequence as K parallel tokens per step (tree attention,
:mod:`tawin.decoding.tree`), and a 4-D attention mask lets each beam see the prompt and only its
own ancestors. A step is one forward of [B, K] tokens plus a few tensor ops: gather the trie
children of every beam's node (padded to the depth's fan-out M), add their log-probabilities to
the beam scores, keep the top K of the K·M candidates per row. Reordering beams only permutes the
small ancestor table, never the cache.
No Python loop per beam and no ``.item()`` inside a step.

Scores are summed token log-probabilities of the whole item sequence including EOS (no length
penalty), i.e. f_{u,i} = log π(Y_i | H_u) of the paper. Beams are distinct trie paths, hence
distinct items; rows return the top-K items in descending score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tawin.decoding.tree import encode_prompt, needs_float_mask, tree_mask
from tawin.items.trie import ItemTrie


@dataclass
class BeamResult:
    items_BK: torch.Tensor  # int64 [B, K] item positions, best first
    scores_BK: torch.Tensor  # float32 [B, K] summed log-probabilities
    tokens_BKL: torch.Tensor  # int64 [B, K, L] generated tokens (EOS included, pad after)


@torch.no_grad()
def constrained_beam_search(
    model: torch.nn.Module,
    trie: ItemTrie,
    input_ids_BL: torch.Tensor,
    attention_mask_BL: torch.Tensor,
    num_beams: int,
) -> BeamResult:
    """Top-`num_beams` catalogue items for each left-padded prompt, by summed log-probability."""
    if num_beams > trie.n_items:
        raise ValueError(f"num_beams={num_beams} exceeds the catalogue's {trie.n_items} items")
    batch, beams = input_ids_BL.shape[0], num_beams
    device = input_ids_BL.device
    float_mask = needs_float_mask(model)
    out, prompt_len_B1 = encode_prompt(model, input_ids_BL, attention_mask_BL, logits_to_keep=1)
    cache = out.cache
    logp_BKV = torch.log_softmax(out.logits[:, -1:].float(), dim=-1).expand(batch, beams, -1)
    next_position_BK = prompt_len_B1.expand(batch, beams)

    nodes_BK = torch.zeros(batch, beams, dtype=torch.long, device=device)
    # Only the first copy of the root is live at step 0, so the K beams start distinct.
    scores_BK = torch.full((batch, beams), float("-inf"), device=device)
    scores_BK[:, 0] = 0.0
    tokens_BKL = torch.empty(batch, beams, 0, dtype=torch.long, device=device)
    ancestors_BKS = torch.empty(batch, beams, 0, dtype=torch.long, device=device)
    beam_slot_BK1 = torch.arange(beams, device=device).expand(batch, beams).unsqueeze(-1)

    for depth in range(trie.max_depth):
        child_token_BKM, child_node_BKM, valid_BKM = trie.children(nodes_BK, depth)
        width = child_token_BKM.shape[-1]
        finished_BK1 = (trie.leaf_item_T[nodes_BK] >= 0).unsqueeze(-1)
        token_logp_BKM = logp_BKV.gather(-1, child_token_BKM)
        step_BKM = torch.where(finished_BK1, torch.zeros_like(token_logp_BKM), token_logp_BKM)
        candidate_BKM = torch.where(valid_BKM, scores_BK.unsqueeze(-1) + step_BKM, float("-inf"))
        scores_BK, flat_BK = candidate_BKM.view(batch, -1).topk(beams, dim=-1)
        source_BK = flat_BK // width
        chosen_token_BK = child_token_BKM.view(batch, -1).gather(1, flat_BK)
        nodes_BK = child_node_BKM.view(batch, -1).gather(1, flat_BK)
        tokens_BKL = torch.cat(
            [tokens_BKL.gather(1, source_BK.unsqueeze(-1).expand_as(tokens_BKL)), chosen_token_BK.unsqueeze(-1)], dim=-1
        )
        if depth == trie.max_depth - 1:
            break
        # The chosen tokens become slot `depth` of every row's token tree.
        ancestors_BKS = torch.cat(
            [ancestors_BKS.gather(1, source_BK.unsqueeze(-1).expand_as(ancestors_BKS)), beam_slot_BK1], dim=-1
        )
        mask = tree_mask(attention_mask_BL, ancestors_BKS, beams, float_mask, out.logits.dtype)
        out = model(
            input_ids=chosen_token_BK, attention_mask=mask, position_ids=next_position_BK, cache=cache, use_cache=True
        )
        cache = out.cache
        next_position_BK = next_position_BK + 1
        logp_BKV = torch.log_softmax(out.logits.float(), dim=-1)

    items_BK = trie.leaf_item_T[nodes_BK]
    return BeamResult(items_BK=items_BK, scores_BK=scores_BK, tokens_BKL=tokens_BKL)
