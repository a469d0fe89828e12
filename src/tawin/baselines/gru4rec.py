"""Baselines — GRU4Rec (Hidasi et al., 2016; Hidasi & Karatzoglou, 2018): a GRU over the history.

Item embedding → dropout → ``n_layers`` GRU → dropout → linear output layer over the catalogue
(its own weights and bias). The hidden state after position t scores every item.

Deviations from the paper: the input is an embedding rather than one-hot, and the loss is
full-softmax cross-entropy over the whole catalogue (the 2018 paper's best variant is also
cross-entropy, but over in-batch plus sampled negatives).

Histories are right-padded with token 0 (token n+1 = catalogue column n); a GRU reads left to
right, so the states at real positions never see the pads that follow them.
"""

from __future__ import annotations

import torch
from torch import nn


class GRU4Rec(nn.Module):
    """Recurrent recommender.

    Args:
        n_items: N, catalogue size; tokens are 0 (pad) and 1..N.
        hidden: d, embedding and GRU width.
        n_layers: stacked GRU layers.
        dropout: dropout on the embeddings, between GRU layers and before the output layer.
    """

    def __init__(self, n_items: int, hidden: int, n_layers: int, dropout: float):
        super().__init__()
        self.item_embedding = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.embedding_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            hidden, hidden, num_layers=n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0
        )
        self.output_dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, n_items)
        nn.init.normal_(self.item_embedding.weight, std=hidden**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def encode(self, tokens_BH: torch.Tensor) -> torch.Tensor:
        """Hidden states for every position: tokens int64 [B, H] -> float [B, H, d]."""
        states_BHD, _ = self.gru(self.embedding_dropout(self.item_embedding(tokens_BH)))
        return self.output_dropout(states_BHD)

    def score(self, hidden_XD: torch.Tensor) -> torch.Tensor:
        """Logits over the catalogue: float [..., d] -> float [..., N] (column n = token n+1)."""
        return self.output(hidden_XD)
