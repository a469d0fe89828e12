"""Baselines — SASRec (Kang & McAuley, 2018): a causal self-attention encoder over the history.

Each position attends to itself and the earlier positions only. Item embeddings (scaled by √d)
plus learned absolute position embeddings (position 0 = oldest item) feed ``n_layers`` pre-norm
transformer blocks (single-head by default, point-wise feed-forward of width d, dropout); a final
LayerNorm gives the hidden state h_t. The score of item n after position t is the dot product
h_t · e_n with the same item embedding table as the input (weight tying, as in the paper).

Deviations from the paper: full-softmax cross-entropy over the whole catalogue instead of one
sampled negative per position, and GELU instead of ReLU in the feed-forward block.

Histories are right-padded with token 0 (token n+1 = catalogue column n). With a causal mask and
right padding no real position ever sees a pad, so no key-padding mask is needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SASRec(nn.Module):
    """Causal transformer recommender.

    Args:
        n_items: N, catalogue size; tokens are 0 (pad) and 1..N.
        max_len: H, the longest history (number of position embeddings).
        hidden: d, embedding and model width.
        n_layers: number of transformer blocks.
        n_heads: attention heads (must divide ``hidden``).
        dropout: dropout on embeddings, attention weights and residual branches.
    """

    def __init__(self, n_items: int, max_len: int, hidden: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.item_embedding = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, hidden)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=hidden,
                nhead=n_heads,
                dim_feedforward=hidden,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(hidden)
        self.scale = math.sqrt(hidden)
        causal_HH = torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_HH", causal_HH, persistent=False)
        nn.init.normal_(self.item_embedding.weight, std=hidden**-0.5)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def encode(self, tokens_BH: torch.Tensor) -> torch.Tensor:
        """Hidden states h_t for every position: tokens int64 [B, H] -> float [B, H, d]."""
        length = tokens_BH.shape[1]
        positions_H = torch.arange(length, device=tokens_BH.device)
        x_BHD = self.item_embedding(tokens_BH) * self.scale + self.position_embedding(positions_H)
        x_BHD = self.embedding_dropout(x_BHD)
        mask_HH = self.causal_HH[:length, :length]
        for block in self.blocks:
            x_BHD = block(x_BHD, src_mask=mask_HH, is_causal=True)
        return self.final_norm(x_BHD)

    def score(self, hidden_XD: torch.Tensor) -> torch.Tensor:
        """Logits over the catalogue: float [..., d] -> float [..., N] (column n = token n+1)."""
        return hidden_XD @ self.item_embedding.weight[1:].T
