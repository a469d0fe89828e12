"""Stage 4 — exact sequence log-probabilities: every catalogue item, or given candidates.

``score_all_items`` computes f_{u,i} = log π(Y_i | H_u) = Σ_t log π(y_t | H_u, y_<t) (EOS included,
no length penalty; the score beam search ranks by) for *every* item i of the catalogue, sharing
prefixes through the trie so that each trie node is run through the model once per prompt:

1. the prompt is encoded once; its key/value cache is kept and its last position gives the
   log-probabilities of the root's children;
2. level by level, the internal nodes of depth t (t ≥ 1) are fed as new tokens at position
   ``prompt_len + t − 1``, with a 4-D "tree attention" mask (:mod:`tawin.decoding.tree`):
   a node sees the prompt, its own ancestors and itself. Their log-probabilities over the node's
   children are added along the edges; a leaf (reached through EOS) holds its item's score;
3. nodes are processed in chunks of ``chunk_nodes`` per prompt (× B prompts per forward). A level
   is laid out children-of-parents in the parent level's order, so the ancestors of a contiguous
   chunk are a contiguous slice of each earlier level. The cache of a chunk is therefore the
   prompt plus one slice per earlier level of the keys/values saved when that level ran — not the
   whole tree — which keeps attention cost O(chunk × (prompt + ancestors)) instead of
   O(nodes × all nodes).

Cost: one model token per internal trie node per prompt (Industrial: 9,699 = 1 + 48 + 2,295 +
3,670 + 3,686), plus memory for the keys/values of the levels that have deeper internal nodes:
B × (internal nodes above the last level) × layers × 2 × kv_heads × head_dim floats.

``score_items`` is the teacher-forced log-probability of given candidates (prompt ⊕ item tokens,
one plain forward; differentiable).

Both follow the paper's scoring f_{u,i} = log π_θ(Y_i | H_u); no deviation.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from tawin.decoding.tree import as_attention_mask, encode_prompt, needs_float_mask
from tawin.items.codec import ItemCodec
from tawin.items.trie import ItemTrie
from tawin.models.batching import sequence_batch

DEFAULT_CHUNK_NODES = 128


@dataclass
class _Chunk:
    """Up to `chunk_nodes` internal nodes of one depth, run in one forward (per prompt)."""

    depth: int  # t ≥ 1: the nodes are the t-th generated token
    level_slice: slice  # their positions within the depth's level
    tokens_C: torch.Tensor  # int64 [C] token on each node's incoming edge (the token fed)
    nodes_C: torch.Tensor  # int64 [C] trie node ids
    spans: list[tuple[int, int, int]]  # (ancestor depth s, lo, hi): level-s K/V slice in the cache
    see_CS: torch.Tensor  # bool [C, A + C]: node c attends to ancestor slot a, and to itself
    child_token_CM: torch.Tensor  # int64 [C, M] children of each node (M = fan-out at depth t), padded
    edge_flat_E: torch.Tensor  # int64 [E] flat indices (into C·M) of the real edges
    edge_child_E: torch.Tensor  # int64 [E] the node each real edge leads to


@dataclass
class _Plan:
    root_child_token_M: torch.Tensor  # int64 [M] root's children (scored from the prompt)
    root_child_node_M: torch.Tensor
    level_sizes: list[int]  # internal nodes per depth t = 1.. (index t − 1)
    keep_kv: list[bool]  # whether depth t's keys/values are needed by a deeper level
    chunks: list[_Chunk]
    leaf_node_N: torch.Tensor  # int64 [N] leaf node of item position n


def _levels(trie: ItemTrie) -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """Internal nodes by depth t = 1.., each level the children of the previous one in its order.

    Returns per level (nodes [n_t], incoming tokens [n_t], ancestors) with ancestors[s − 1] [n_t]
    the position, within level s, of each node's depth-s ancestor (s = 1 … t − 1). Along a level
    these positions are non-decreasing, so a contiguous run of nodes has contiguous ancestors.
    """
    start_T, token_E, node_E, leaf_T = trie.child_start_T, trie.child_token_E, trie.child_node_E, trie.leaf_item_T
    parents = torch.zeros(1, dtype=torch.long)  # level 0 = the root, whose tokens are the prompt's
    levels, ancestors_prev = [], []
    while True:
        count = start_T[parents + 1] - start_T[parents]
        offset = torch.arange(int(count.sum())) - torch.repeat_interleave(count.cumsum(0) - count, count)
        edge = torch.repeat_interleave(start_T[parents], count) + offset
        children = node_E[edge]
        internal = leaf_T[children] < 0  # leaves (reached through EOS) are never fed
        if not bool(internal.any()):
            return levels
        parent_pos = torch.repeat_interleave(torch.arange(len(parents)), count)[internal]
        ancestors = [a[parent_pos] for a in ancestors_prev] + ([parent_pos] if levels else [])
        parents = children[internal]
        levels.append((parents, token_E[edge][internal], ancestors))
        ancestors_prev = ancestors


def _plan(trie: ItemTrie, chunk_nodes: int, device: torch.device) -> _Plan:
    """Chunk every level into runs of `chunk_nodes` nodes, with their cache slices and masks."""
    trie = trie.to("cpu")
    levels = _levels(trie)
    chunks = []
    for depth, (nodes, tokens, ancestors) in enumerate(levels, start=1):
        for lo in range(0, len(nodes), chunk_nodes):
            part = slice(lo, min(lo + chunk_nodes, len(nodes)))
            spans, see = [], []
            for s, position in enumerate(ancestors, start=1):
                first, last = int(position[part][0]), int(position[part][-1])
                spans.append((s, first, last + 1))
                see.append(position[part].unsqueeze(1) == torch.arange(first, last + 1))
            see.append(torch.eye(part.stop - part.start, dtype=torch.bool))
            child_token, child_node, child_valid = trie.children(nodes[part], depth)
            edge_flat = torch.nonzero(child_valid.flatten()).flatten()
            chunks.append(
                _Chunk(
                    depth,
                    part,
                    tokens[part].to(device),
                    nodes[part].to(device),
                    spans,
                    torch.cat(see, dim=1).to(device),
                    child_token.to(device),
                    edge_flat.to(device),
                    child_node.flatten()[edge_flat].to(device),
                )
            )
    root_tokens, root_children, root_valid = trie.children(torch.zeros(1, dtype=torch.long), 0)
    is_leaf = trie.leaf_item_T >= 0
    leaf_node_N = torch.empty(trie.n_items, dtype=torch.long)
    leaf_node_N[trie.leaf_item_T[is_leaf]] = torch.nonzero(is_leaf).flatten()
    return _Plan(
        root_child_token_M=root_tokens[0][root_valid[0]].to(device),
        root_child_node_M=root_children[0][root_valid[0]].to(device),
        level_sizes=[len(level[0]) for level in levels],
        keep_kv=[depth < len(levels) for depth in range(1, len(levels) + 1)],
        chunks=chunks,
        leaf_node_N=leaf_node_N.to(device),
    )


def _token_logp(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[tokens] without materialising the full log-softmax."""
    logits = logits.float()
    return logits.gather(-1, tokens) - torch.logsumexp(logits, dim=-1, keepdim=True)


@torch.no_grad()
def score_all_items(
    model: torch.nn.Module,
    trie: ItemTrie,
    input_ids_BL: torch.Tensor,
    attention_mask_BL: torch.Tensor,
    chunk_nodes: int = DEFAULT_CHUNK_NODES,
) -> torch.Tensor:
    """Exact log π(Y_i | prompt) of every catalogue item for each left-padded prompt.

    Args:
        model: a Hugging Face causal LM with a ``DynamicCache``-style key/value cache.
        trie: the catalogue trie (on the model's device or not; a CPU copy is used for planning).
        input_ids_BL, attention_mask_BL: left-padded prompts (as from ``prompt_batch``).
        chunk_nodes: trie nodes per prompt per forward (a forward holds B × chunk_nodes tokens);
            smaller bounds memory and wasted attention, larger amortises per-forward overhead.

    Returns:
        float32 [B, N] scores_BN[b, n] = Σ_t log π(y_t | prompt_b, y_<t) over item n's tokens and
        EOS (the summed log-probability beam search ranks by).
    """
    if chunk_nodes < 1:
        raise ValueError(f"chunk_nodes={chunk_nodes} must be ≥ 1")
    device = input_ids_BL.device
    batch = input_ids_BL.shape[0]
    plan = _plan(trie, chunk_nodes, device)
    out, prompt_len_B1 = encode_prompt(model, input_ids_BL, attention_mask_BL)
    prompt_kv = [(layer.keys, layer.values) for layer in out.cache.layers]
    prompt_see_B11L = attention_mask_BL.bool()[:, None, None, :]
    float_mask = needs_float_mask(model)

    node_logp_BT = torch.full((batch, trie.num_nodes), float("-inf"), device=device)
    node_logp_BT[:, plan.root_child_node_M] = _token_logp(out.logits[:, -1], plan.root_child_token_M.expand(batch, -1))
    # kv[t − 1][layer] = (keys, values) [B, kv_heads, n_t, head_dim] of depth t's nodes.
    kv: list[list[tuple[torch.Tensor, torch.Tensor]] | None] = [None] * len(plan.level_sizes)
    for chunk in plan.chunks:
        depth, width = chunk.depth, chunk.tokens_C.shape[0]
        see_B1CS = torch.cat([prompt_see_B11L.expand(-1, -1, width, -1), chunk.see_CS.expand(batch, 1, -1, -1)], dim=-1)
        step = model(
            input_ids=chunk.tokens_C.expand(batch, -1),
            attention_mask=as_attention_mask(see_B1CS, float_mask, out.logits.dtype),
            position_ids=(prompt_len_B1 + depth - 1).expand(-1, width),
            cache=_chunk_cache(prompt_kv, kv, chunk.spans),
            use_cache=True,
        )
        if plan.keep_kv[depth - 1]:
            if kv[depth - 1] is None:
                kv[depth - 1] = [
                    (
                        _level_buffer(layer.keys, plan.level_sizes[depth - 1]),
                        _level_buffer(layer.values, plan.level_sizes[depth - 1]),
                    )
                    for layer in step.cache.layers
                ]
            for (keys, values), layer in zip(kv[depth - 1], step.cache.layers):
                keys[:, :, chunk.level_slice] = layer.keys[:, :, -width:]
                values[:, :, chunk.level_slice] = layer.values[:, :, -width:]
        token_logp_BCM = _token_logp(step.logits, chunk.child_token_CM.expand(batch, -1, -1))
        child_logp_BCM = node_logp_BT[:, chunk.nodes_C].unsqueeze(-1) + token_logp_BCM
        node_logp_BT[:, chunk.edge_child_E] = child_logp_BCM.flatten(1)[:, chunk.edge_flat_E]
    return node_logp_BT[:, plan.leaf_node_N]


def _chunk_cache(prompt_kv, kv, spans: list[tuple[int, int, int]]) -> DynamicCache:
    """A fresh cache holding the prompt, then the chunk's ancestor slice of each earlier level."""
    return DynamicCache(
        ddp_cache_data=[
            (
                torch.cat([keys] + [kv[s - 1][layer][0][:, :, lo:hi] for s, lo, hi in spans], dim=2),
                torch.cat([values] + [kv[s - 1][layer][1][:, :, lo:hi] for s, lo, hi in spans], dim=2),
            )
            for layer, (keys, values) in enumerate(prompt_kv)
        ]
    )


def _level_buffer(like: torch.Tensor, size: int) -> torch.Tensor:
    """Empty [B, kv_heads, size, head_dim] store shaped after a cache layer's keys or values."""
    return like.new_empty(*like.shape[:2], size, like.shape[-1])


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def score_items(
    model: torch.nn.Module,
    codec: ItemCodec,
    input_ids_BL: torch.Tensor,
    attention_mask_BL: torch.Tensor,
    items_BG: torch.Tensor,
) -> torch.Tensor:
    """Teacher-forced log π(Y_i | prompt) of G given candidates per prompt (differentiable).

    One forward over the B·G sequences prompt ⊕ item tokens ⊕ EOS (``sequence_batch``); wrap the
    call in ``torch.no_grad()`` when only scores are needed.

    Args:
        model: a Hugging Face causal LM.
        codec: the item codec (its target table on the CPU).
        input_ids_BL, attention_mask_BL: left-padded prompts.
        items_BG: int64 [B, G] item positions.

    Returns:
        float32 [B, G] logp_BG[b, g] = Σ_t log π(y_t | prompt_b, y_<t) over item items_BG[b, g]'s
        tokens and EOS (equals ``score_all_items(...)[b, items_BG[b, g]]``).
    """
    device = input_ids_BL.device
    batch, group = items_BG.shape
    # sequence_batch builds its tables on the CPU, where the codec lives.
    seq = sequence_batch(input_ids_BL.cpu(), attention_mask_BL.cpu(), codec, items_BG.cpu())
    width = seq.input_ids_BT.shape[1] - seq.prompt_width  # item tokens incl. EOS, right-padded
    kwargs = {"logits_to_keep": width + 1} if _accepts_logits_to_keep(model) else {}
    logits = model(
        input_ids=seq.input_ids_BT.to(device),
        attention_mask=seq.attention_mask_BT.to(device),
        position_ids=seq.position_ids_BT.to(device),
        use_cache=False,
        **kwargs,
    ).logits
    # Position prompt_width − 1 + j predicts item token j; only the last width + 1 logits matter.
    logits_nW = logits[:, -(width + 1) : -1]
    labels_nW = seq.labels_BT[:, seq.prompt_width - 1 : seq.prompt_width - 1 + width].to(device)
    valid_nW = labels_nW != -100
    token_logp_nW = _token_logp(logits_nW, labels_nW.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(valid_nW, token_logp_nW, 0.0).sum(-1).view(batch, group)
