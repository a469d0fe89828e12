"""Integrations — tawin's rollout and rewards in TRL's terms: the top-G constrained beams as a
``rollout_func``, and rewards by catalogue item id. Nothing here imports TRL
(:mod:`tawin.integrations.trl` wires these into ``GRPOTrainer``).

TRL 1.16 calls ``rollout_func(prompts, trainer)`` with its process's prompts, each repeated
G = ``num_generations`` times in a row (its ``RepeatSampler``), and reads back ``prompt_ids``,
``completion_ids`` and ``logprobs``; every other key reaches the reward functions. A
:class:`BeamRollout` beam-searches each distinct prompt once, as tawin's own RL step does
(:func:`tawin.decoding.beam.constrained_beam_search` over the catalogue trie, in eval mode) and
returns beam g as the g-th copy's completion: the item's tokens and EOS. The search calls the
model's forward, never ``generate``, so the model's ``generation_config`` (sampling, top-k/top-p,
temperature, repetition penalty) plays no part. ``logprobs`` is None: beams are not samples, and
TRL reads sampling log-probs only for vLLM's importance-sampling correction.

Extra fields of every completion: ``item`` (its catalogue item id), ``beam_rank`` (0-based, best
first) and ``group_size`` (G). The rewards compare ``item`` with the dataset's ``target`` column
(catalogue item ids), never text, and are tawin's own (:mod:`tawin.rl.rewards`).
"""

from __future__ import annotations

import torch

from tawin.data.dataset import Interactions, ItemTable
from tawin.decoding.beam import constrained_beam_search
from tawin.errors import ConfigError
from tawin.items.codec import ItemCodec
from tawin.models.batching import item_positions
from tawin.models.prompt import encode_prompts, left_pad, render_prompt
from tawin.rl import rewards


class BeamRollout:
    """A TRL ``rollout_func``: the top-G catalogue items of each prompt by constrained beam search,
    in beam order (descending log π(item | prompt)), G = the trainer's ``num_generations``."""

    def __init__(self, items: ItemTable, tokenizer, item_repr: str = "sid", max_prompt_tokens: int = 512):
        """
        Args:
            items: the catalogue (``dataset.items``); its item ids are what ``target`` holds.
            tokenizer: the policy's tokenizer, with the semantic-ID tokens in SID mode.
            item_repr: "sid" or "title", as the checkpoint's ``model.item_repr``.
            max_prompt_tokens: prompts keep their last this many tokens (``model.max_prompt_tokens``).
        Raises:
            ConfigError: the tokenizer lacks the catalogue's semantic-ID tokens.
        """
        self.items, self.tokenizer, self.max_prompt_tokens = items, tokenizer, max_prompt_tokens
        self.codec = ItemCodec.build(items, tokenizer, item_repr)
        self.item_id_N = torch.as_tensor(items.item_id, dtype=torch.long)

    def dataset(self, split: Interactions):
        """TRL's train dataset for `split`: ``prompt`` (tawin's prompt text, the history oldest
        first) and ``target`` (the catalogue item id to recommend). A ``datasets.Dataset``."""
        from datasets import Dataset

        history_RH = item_positions(self.items, split.history_RH)
        prompts = [
            render_prompt(history_RH[r, : split.history_len[r]].tolist(), self.codec.prompt_text)
            for r in range(len(split))
        ]
        return Dataset.from_dict({"prompt": prompts, "target": [int(t) for t in split.target]})

    def beams(self, model, prompts: list[str], group: int) -> torch.Tensor:
        """int64 [B, G] item positions of each prompt's top-G beams, best first (on the CPU)."""
        ids_BL, mask_BL = left_pad(encode_prompts(self.tokenizer, prompts, self.max_prompt_tokens), self.codec.pad_id)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()  # as tawin's step: no dropout in the search
        try:
            trie = self.codec.on(device)[0]
            return constrained_beam_search(model, trie, ids_BL.to(device), mask_BL.to(device), group).items_BK.cpu()
        finally:
            model.train(was_training)

    def __call__(self, prompts: list[str], trainer) -> dict:
        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        distinct = distinct_prompts(prompts, group)
        items_BG = self.beams(trainer.model, distinct, group)
        tokens_nT = self.codec.target_table_NL[items_BG.reshape(-1)].tolist()
        lengths_n = self.codec.target_len_N[items_BG.reshape(-1)].tolist()
        prompt_ids = encode_prompts(self.tokenizer, distinct, self.max_prompt_tokens)
        return {
            "prompt_ids": [ids for ids in prompt_ids for _ in range(group)],
            "completion_ids": [tokens[:n] for tokens, n in zip(tokens_nT, lengths_n)],  # item tokens + EOS
            "logprobs": None,
            "item": self.item_id_N[items_BG.reshape(-1)].tolist(),
            "beam_rank": list(range(group)) * len(distinct),
            "group_size": group,
        }


def distinct_prompts(prompts: list[str], group: int) -> list[str]:
    """The prompts of TRL's batch, once each; each must come `group` times in a row."""
    in_runs = len(prompts) % group == 0 and all(prompts[i] == prompts[i - i % group] for i in range(len(prompts)))
    if not in_runs:
        raise ConfigError(
            f"the beam rollout got {len(prompts)} prompts, not runs of num_generations={group} copies of each prompt "
            "(TRL's RepeatSampler order); each process's generation batch must hold whole groups: make "
            "per_device_train_batch_size × steps_per_generation a multiple of num_generations"
        )
    return prompts[::group]


def _is_target(item: list[int], target: list[int]) -> torch.Tensor:
    return torch.tensor([int(i) == int(t) for i, t in zip(item, target)], dtype=torch.bool)


def item_reward(item: list[int], target: list[int], **_) -> list[float]:
    """The paper's binary reward as a TRL reward function: 1.0 where the completion's catalogue
    item is the row's target item, else 0.0 (:func:`tawin.rl.rewards.binary_reward`)."""
    return rewards.binary_reward(_is_target(item, target)).tolist()


def rank_reward(item: list[int], target: list[int], group_size: list[int], **_) -> list[float]:
    """ReRe's rank reward as a TRL reward function (:func:`tawin.rl.rewards.rank_reward`): 1.0 for
    the target; in a group that holds it, −(1/log2(i+2)) / Σ_j 1/log2(j+2) for the negative at beam
    position i; 0.0 in groups without it. Completions come in groups of G in beam order, as
    :class:`BeamRollout` returns them."""
    is_target_BG = _is_target(item, target).view(-1, int(group_size[0]))
    return rewards.rank_reward(is_target_BG).reshape(-1).tolist()


REWARD_FUNCS = {"binary": item_reward, "rank": rank_reward}
"""TRL reward function of each `reward` setting (tawin's `rl.reward` names)."""
