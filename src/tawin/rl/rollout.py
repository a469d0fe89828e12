"""RL stage — rollouts: the group of G candidates per prompt, and their token log-probabilities.

Negatives (`RLConfig.negatives`):
* ``beam``   top-G constrained beams of the policy (the paper's hard negatives; Prop. 3.3: OPAUC);
* ``random`` the target plus G−1 items drawn uniformly without it (Lemma 3.1: full AUC);
* ``sample`` G constrained ancestral samples from the policy at a temperature.

`group_logprobs` scores all G candidates of a prompt in ONE sequence: the prompt is encoded once
and the candidates follow it as parallel branches under a 4-D attention mask (each branch sees the
prompt and its own earlier tokens), so a group costs L + G·T tokens instead of G·(L + T).
The target item id travels with the batch (never looked up by prompt text).

Target injection (`RLConfig.inject_target`, ReRe's `add_gt`, :func:`inject_targets`): a group
without its target gets it in place of its last (lowest-scoring) candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tawin.decoding.beam import constrained_beam_search
from tawin.decoding.sample import constrained_sample
from tawin.items.codec import ItemCodec


@dataclass
class Rollout:
    """One batch of groups. B prompts, G candidates, T item tokens (EOS included)."""

    prompt_ids_BL: torch.Tensor
    prompt_mask_BL: torch.Tensor
    items_BG: torch.Tensor  # int64 item positions
    is_target_BG: torch.Tensor  # bool
    tokens_BGT: torch.Tensor  # int64 candidate tokens, pad after EOS
    token_mask_BGT: torch.Tensor  # bool valid tokens
    rollout_scores_BG: torch.Tensor | None  # policy scores at rollout time (beam order), if known
    target_found_B: torch.Tensor | None = None  # bool: the policy's own group held the target (before injection)

    def select(self, keep_B: torch.Tensor) -> Rollout:
        """The groups at `keep_B` (bool [B] or int64 [B'] indices), every field sliced alike."""
        scores = None if self.rollout_scores_BG is None else self.rollout_scores_BG[keep_B]
        found = None if self.target_found_B is None else self.target_found_B[keep_B]
        return Rollout(
            self.prompt_ids_BL[keep_B],
            self.prompt_mask_BL[keep_B],
            self.items_BG[keep_B],
            self.is_target_BG[keep_B],
            self.tokens_BGT[keep_B],
            self.token_mask_BGT[keep_B],
            scores,
            found,
        )


def concat_groups(
    rollouts: list[Rollout], prompt_ids_BL: torch.Tensor, prompt_mask_BL: torch.Tensor, n_groups: int
) -> Rollout:
    """The first `n_groups` groups of `rollouts`, in order, with their prompts re-batched as given
    (`prompt_*_BL` hold those groups' prompts, one row each, padded to their own longest)."""

    def joined(name: str):
        parts = [getattr(r, name) for r in rollouts]
        return None if parts[0] is None else torch.cat(parts)[:n_groups]

    return Rollout(
        prompt_ids_BL,
        prompt_mask_BL,
        joined("items_BG"),
        joined("is_target_BG"),
        joined("tokens_BGT"),
        joined("token_mask_BGT"),
        joined("rollout_scores_BG"),
        joined("target_found_B"),
    )


def inject_targets(items_BG: torch.Tensor, target_B: torch.Tensor) -> torch.Tensor:
    """Put each row's target in place of its last candidate where the group lacks it.

    Args:
        items_BG: int64 [B, G] candidate item positions, best first (beam order).
        target_B: int64 [B] target item positions.
    Returns:
        int64 [B, G]: rows that held the target unchanged; the others with column G−1 = target.
        Candidates stay distinct whenever they were (the target was not among them).
    """
    missing_B = ~(items_BG == target_B.unsqueeze(1)).any(dim=1)
    injected_BG = items_BG.clone()
    injected_BG[:, -1] = torch.where(missing_B, target_B, items_BG[:, -1])
    return injected_BG


@torch.no_grad()
def make_rollout(
    model,
    codec: ItemCodec,
    prompt_ids_BL,
    prompt_mask_BL,
    target_B,
    negatives: str,
    group_size: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    share: tuple[int, int] | None = None,
    inject_target: bool = False,
) -> Rollout:
    """The group of each prompt. `share` = (global batch size, offset of these rows in it): random
    draws are made for the whole global batch and sliced, so N processes draw what one would.
    `inject_target` applies :func:`inject_targets` to beam and sample groups; an injected target keeps
    the score of the candidate it replaced, so the negatives' beam order is unchanged."""
    device = prompt_ids_BL.device
    trie, target_table_NL, target_len_N = codec.on(device)
    scores = None
    if negatives == "beam":
        result = constrained_beam_search(model, trie, prompt_ids_BL, prompt_mask_BL, group_size)
        items_BG, scores = result.items_BK, result.scores_BK
    elif negatives == "sample":
        items_BG = constrained_sample(model, trie, prompt_ids_BL, prompt_mask_BL, group_size, temperature, generator)
    else:
        n_items = codec.target_table_NL.shape[0]
        batch = target_B.shape[0]
        # Uniform over the catalogue without the target: draw from N−1 and skip over the target.
        total, offset = share if share is not None else (batch, 0)
        draws = torch.randint(0, n_items - 1, (total, group_size - 1), generator=generator)[offset : offset + batch].to(
            device
        )
        draws = draws + (draws >= target_B.unsqueeze(1)).long()
        items_BG = torch.cat([target_B.unsqueeze(1), draws], dim=1)
    target_found_B = (items_BG == target_B.unsqueeze(1)).any(dim=1)
    if inject_target and negatives != "random":
        items_BG = inject_targets(items_BG, target_B)
    tokens_BGT = target_table_NL[items_BG]
    token_mask_BGT = torch.arange(tokens_BGT.shape[-1], device=device) < target_len_N[items_BG].unsqueeze(-1)
    return Rollout(
        prompt_ids_BL,
        prompt_mask_BL,
        items_BG,
        items_BG == target_B.unsqueeze(1),
        tokens_BGT,
        token_mask_BGT,
        scores,
        target_found_B,
    )


def group_logprobs(
    model, prompt_ids_BL, prompt_mask_BL, tokens_BGT, token_mask_BGT, float_mask: bool = False
) -> torch.Tensor:
    """Token log-probs [B, G, T] of every candidate given its prompt, prompt encoded once per group."""
    batch, prompt_len = prompt_ids_BL.shape
    _, group, width = tokens_BGT.shape
    device = prompt_ids_BL.device
    total = prompt_len + group * width
    # Query/key layout: [prompt (L) | cand 0 tokens (T) | cand 1 tokens (T) | ...]
    branch = torch.cat(
        [torch.full((prompt_len,), -1, device=device), torch.arange(group, device=device).repeat_interleave(width)]
    )
    offset = torch.cat([torch.arange(prompt_len, device=device), torch.arange(width, device=device).repeat(group)])
    key_valid_BS = torch.cat([prompt_mask_BL.bool(), token_mask_BGT.reshape(batch, -1)], dim=1)
    same_branch = branch.unsqueeze(1) == branch.unsqueeze(0)
    key_is_prompt = (branch == -1).unsqueeze(0)
    query_is_prompt = (branch == -1).unsqueeze(1)
    causal_prompt = offset.unsqueeze(0) <= offset.unsqueeze(1)
    structure_SS = torch.where(
        query_is_prompt, key_is_prompt & causal_prompt, key_is_prompt | (same_branch & causal_prompt)
    )
    allowed_BSS = structure_SS.unsqueeze(0) & key_valid_BS.unsqueeze(1)
    # Rows that are pure padding must still attend somewhere to avoid NaN softmax.
    allowed_BSS = allowed_BSS | torch.eye(total, dtype=torch.bool, device=device).unsqueeze(0)
    mask = allowed_BSS.unsqueeze(1)
    if float_mask:
        mask = torch.zeros(mask.shape, device=device).masked_fill(~mask, torch.finfo(torch.float32).min)
    prompt_len_B = prompt_mask_BL.sum(-1, keepdim=True)
    positions_BS = torch.cat(
        [
            (prompt_mask_BL.cumsum(-1) - 1).clamp(min=0),
            prompt_len_B + torch.arange(width, device=device).repeat(group).unsqueeze(0),
        ],
        dim=1,
    )
    input_ids = torch.cat([prompt_ids_BL, tokens_BGT.reshape(batch, -1)], dim=1)
    # Logits only where a candidate token is predicted: the last prompt position and every
    # candidate position (the model's own forward, so DDP, PEFT and remote-code models all work).
    keep = torch.arange(prompt_len - 1, total, device=device)
    logits_BKV = model(input_ids=input_ids, attention_mask=mask, position_ids=positions_BS, logits_to_keep=keep).logits
    # Candidate token t is predicted from the last prompt position (t = 0) or its own token t−1.
    cand_BGTV = logits_BKV[:, 1:].reshape(batch, group, width, -1)
    logits = torch.cat(
        [logits_BKV[:, :1].unsqueeze(1).expand(batch, group, 1, -1), cand_BGTV[:, :, :-1]], dim=2
    ).float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, tokens_BGT.unsqueeze(-1)).squeeze(-1)
    return torch.where(token_mask_BGT, logp, torch.zeros_like(logp))
