"""The SFT loss against a row-by-row reference: target tokens only, or history items too."""

from __future__ import annotations

import pytest
import torch

from tawin.distributed import Dist
from tawin.models.batching import encode_split
from tawin.sft.train import sft_loss


def reference_loss(model, codec, encoded, rows, history_weight, item_token_V):
    """One unpadded sequence at a time: Σ target-token NLL + w · Σ history-item-token NLL, over their weighted count."""
    total, weight = 0.0, 0.0
    for row in rows.tolist():
        prompt = encoded.prompt_ids_RL[row, -int(encoded.prompt_len_R[row]) :]
        target = codec.target_table_NL[encoded.target_R[row], : int(codec.target_len_N[encoded.target_R[row]])]
        sequence = torch.cat([prompt, target])
        logp_TV = torch.log_softmax(model(input_ids=sequence[None]).logits[0].float(), -1)
        nll_T = -logp_TV[:-1].gather(1, sequence[1:, None])[:, 0]  # position t predicts token t + 1
        is_target_T = torch.arange(1, len(sequence)) >= len(prompt)
        is_history_T = item_token_V[sequence[1:]] & ~is_target_T
        total += float(nll_T[is_target_T].sum()) + history_weight * float(nll_T[is_history_T].sum())
        weight += float(is_target_T.sum()) + history_weight * float(is_history_T.sum())
    return total / weight


@pytest.mark.parametrize("history_weight", [0.0, 0.5, 1.0])
def test_sft_loss_matches_row_by_row_reference(industrial_small, tiny_recommender, history_weight):
    r = tiny_recommender
    r.model.eval()
    encoded = encode_split(industrial_small.splits["train"], industrial_small.items, r.codec, r.tokenizer, 512)
    item_token_V = r.codec.item_token_mask(r.model.get_input_embeddings().num_embeddings)
    rows = torch.arange(0, 48, 3)
    assert int(item_token_V[encoded.prompt_ids_RL[rows]].sum()) > len(rows)  # the histories do hold item tokens
    with torch.no_grad():
        loss, _ = sft_loss(r.model, r.codec, encoded, rows, False, Dist(), history_weight, item_token_V)
        expected = reference_loss(r.model, r.codec, encoded, rows, history_weight, item_token_V)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_item_token_mask_marks_exactly_the_semantic_id_tokens(industrial, tiny_recommender):
    r = tiny_recommender
    mask_V = r.codec.item_token_mask(r.model.get_input_embeddings().num_embeddings)
    codes = {token for sid in industrial.items.sid for token in sid}
    assert set(r.tokenizer.convert_ids_to_tokens(torch.nonzero(mask_V)[:, 0].tolist())) == codes
    template_ids = r.tokenizer("Purchase history : . Next item :", add_special_tokens=True)["input_ids"]
    assert not mask_V[template_ids].any() and not mask_V[r.codec.eos_id]


def test_history_loss_is_refused_for_titles():
    from tawin.config import load_config
    from tawin.errors import ConfigError
    from tawin.run.config import PipelineConfig

    with pytest.raises(ConfigError, match=r"sft.history_loss_weight=1.0 needs model.item_repr: sid"):
        load_config(
            PipelineConfig,
            overrides=["model.item_repr=title", "model.name_or_path=smollm2", "sft.history_loss_weight=1"],
        )
