"""Stage 2 — the catalogue as a prefix trie held in tensors, for constrained decoding.

Every item is a token sequence ending in EOS (its semantic-ID tokens or its title tokens). The trie
is stored in CSR form so that a whole batch of beams advances with a few gathers:

    child_start_T[node] .. child_start_T[node+1]  the node's outgoing edges (sorted by token)
    child_token_E[edge], child_node_E[edge]        the edge's token and the node it leads to
    leaf_item_T[node]                              item position for a leaf (after EOS), else -1

A leaf carries one self-loop edge (token = ``pad_token``) so that a finished beam can wait, with
no score change, while longer items finish. ``max_fanout_by_depth[t]`` is the widest node at depth
t (a Python int known at build time), so a step needs no ``.item()`` to size its candidate table.
An unknown prefix is an error (:meth:`ItemTrie.walk`), never a silently unconstrained row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class UnknownPrefixError(ValueError):
    """A token sequence left the catalogue trie."""


@dataclass
class ItemTrie:
    child_start_T: torch.Tensor  # int64 [num_nodes + 1]
    child_token_E: torch.Tensor  # int64 [num_edges]
    child_node_E: torch.Tensor  # int64 [num_edges]
    leaf_item_T: torch.Tensor  # int64 [num_nodes]
    depth_T: torch.Tensor  # int64 [num_nodes]
    max_fanout_by_depth: list[int]
    max_depth: int  # longest item sequence, EOS included
    pad_token: int
    n_items: int

    @property
    def num_nodes(self) -> int:
        return int(self.leaf_item_T.shape[0])

    def to(self, device: torch.device | str) -> ItemTrie:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return ItemTrie(**moved)

    @staticmethod
    def build(item_sequences: list[list[int]], eos_token: int, pad_token: int) -> ItemTrie:
        """Build from one token sequence per item (without EOS; it is appended here).

        Sequences must be unique: two items with the same tokens could not be told apart.
        """
        children: list[dict[int, int]] = [{}]
        depth = [0]
        leaf_item = [-1]
        for item_position, tokens in enumerate(item_sequences):
            node = 0
            for token in list(tokens) + [eos_token]:
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = len(children)
                    children[node][token] = nxt
                    children.append({})
                    depth.append(depth[node] + 1)
                    leaf_item.append(-1)
                node = nxt
            if leaf_item[node] != -1:
                raise ValueError(
                    f"items at positions {leaf_item[node]} and {item_position} have the same token sequence; "
                    "item identifiers must be unique (semantic-ID collisions get a disambiguation level)"
                )
            leaf_item[node] = item_position
        for node, item in enumerate(leaf_item):
            if item >= 0:
                children[node][pad_token] = node  # self-loop: a finished beam waits
        starts = [0]
        tokens_E: list[int] = []
        nodes_E: list[int] = []
        for edges in children:
            for token in sorted(edges):
                tokens_E.append(token)
                nodes_E.append(edges[token])
            starts.append(len(tokens_E))
        max_depth = max(depth)
        fanout = [0] * (max_depth + 1)
        for node, edges in enumerate(children):
            fanout[depth[node]] = max(fanout[depth[node]], len(edges))
        return ItemTrie(
            child_start_T=torch.tensor(starts, dtype=torch.long),
            child_token_E=torch.tensor(tokens_E, dtype=torch.long),
            child_node_E=torch.tensor(nodes_E, dtype=torch.long),
            leaf_item_T=torch.tensor(leaf_item, dtype=torch.long),
            depth_T=torch.tensor(depth, dtype=torch.long),
            max_fanout_by_depth=fanout,
            max_depth=max_depth,
            pad_token=pad_token,
            n_items=len(item_sequences),
        )

    def walk(self, tokens: list[int]) -> int:
        """Node reached by `tokens` from the root; raises UnknownPrefixError off the trie."""
        node = 0
        for position, token in enumerate(tokens):
            start, end = int(self.child_start_T[node]), int(self.child_start_T[node + 1])
            edge_tokens = self.child_token_E[start:end]
            match = (edge_tokens == int(token)).nonzero()
            if match.numel() == 0 or int(self.leaf_item_T[node]) >= 0:
                raise UnknownPrefixError(
                    f"token {int(token)} at position {position} of {list(map(int, tokens))} is not a valid "
                    "continuation in the catalogue trie"
                )
            node = int(self.child_node_E[start + int(match[0, 0])])
        return node

    def allowed_tokens(self, tokens: list[int]) -> list[int]:
        """Tokens allowed after the prefix `tokens` (for Hugging Face `prefix_allowed_tokens_fn`)."""
        node = self.walk(tokens)
        if int(self.leaf_item_T[node]) >= 0:
            return [self.pad_token]
        start, end = int(self.child_start_T[node]), int(self.child_start_T[node + 1])
        return self.child_token_E[start:end].tolist()

    def children(self, nodes: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outgoing edges of `nodes` (any shape S, all at `depth`) padded to that depth's fanout M.

        Returns (tokens [*S, M], child nodes [*S, M], valid mask [*S, M]).
        """
        width = self.max_fanout_by_depth[depth]
        start = self.child_start_T[nodes]
        count = self.child_start_T[nodes + 1] - start
        offsets = torch.arange(width, device=nodes.device)
        valid = offsets < count.unsqueeze(-1)
        edge = torch.where(valid, start.unsqueeze(-1) + offsets, torch.zeros_like(offsets))
        return self.child_token_E[edge], torch.where(valid, self.child_node_E[edge], 0), valid
