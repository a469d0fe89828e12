"""Stage 2 — how items become tokens: semantic IDs or titles, one sequence per item.

`ItemCodec` is the single place that turns an item into (a) the text shown in a prompt's history
and (b) the target token ids the model must generate. SFT targets, RL candidates, the decoding
trie and evaluation all read the same `target_ids`, so what is trained is exactly what is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tawin.data.dataset import ItemRepresentation, ItemTable
from tawin.errors import ConfigError
from tawin.items.trie import ItemTrie


@dataclass
class ItemCodec:
    representation: ItemRepresentation
    prompt_text: list[str]  # [N] how each item appears in a prompt's history
    target_ids: list[list[int]]  # [N] generated tokens (EOS excluded)
    eos_id: int
    pad_id: int
    trie: ItemTrie
    target_table_NL: torch.Tensor  # int64 [N, max_len + 1] target ids + EOS, right-padded with pad_id
    target_len_N: torch.Tensor  # int64 [N] tokens incl. EOS
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def on(self, device: torch.device) -> tuple[ItemTrie, torch.Tensor, torch.Tensor]:
        """(trie, target_table_NL, target_len_N) on `device`, copied there once and then reused:
        a rollout runs every RL step and must not copy the catalogue to the GPU each time."""
        key = str(torch.device(device))
        if key not in self._on_device:
            self._on_device[key] = (self.trie.to(device), self.target_table_NL.to(device), self.target_len_N.to(device))
        return self._on_device[key]

    def item_token_mask(self, vocab_size: int) -> torch.Tensor:
        """bool [V]: the tokens items are made of (EOS excluded); in SID mode no other text uses them."""
        mask_V = torch.zeros(vocab_size, dtype=torch.bool)
        mask_V[torch.tensor(sorted({t for tokens in self.target_ids for t in tokens}), dtype=torch.long)] = True
        return mask_V

    @staticmethod
    def build(items: ItemTable, tokenizer, representation: ItemRepresentation) -> ItemCodec:
        eos_id = tokenizer.eos_token_id
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
        if representation == "sid":
            missing = [
                t
                for t in {t for sid in items.sid for t in sid}
                if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)
            ]
            if missing:
                raise ConfigError(
                    f"the tokenizer lacks {len(missing)} semantic-ID token(s) such as {missing[0]!r}; "
                    "add them with `add_item_tokens` (done by `tawin sft` for new models)."
                )
            prompt_text = ["".join(sid) for sid in items.sid]
            target_ids = [tokenizer.convert_tokens_to_ids(list(sid)) for sid in items.sid]
        else:
            prompt_text, target_ids = _title_targets(items.title, tokenizer)
        trie = ItemTrie.build(target_ids, eos_token=eos_id, pad_token=pad_id)
        lengths = torch.tensor([len(t) + 1 for t in target_ids])
        table = torch.full((len(target_ids), int(lengths.max())), pad_id, dtype=torch.long)
        for position, tokens in enumerate(target_ids):
            table[position, : len(tokens) + 1] = torch.tensor(list(tokens) + [eos_id])
        return ItemCodec(representation, prompt_text, target_ids, eos_id, pad_id, trie, table, lengths)


def _title_targets(titles: list[str], tokenizer) -> tuple[list[str], list[list[int]]]:
    """Title mode: a title's tokens (leading space, no special tokens) are its identifier.

    Duplicate titles (distinct listings with the same name) get a ``(#2)``-style suffix so every
    item keeps a unique token sequence and predictions are matched by item id, never by text.
    """
    seen: dict[str, int] = {}
    texts: list[str] = []
    for title in titles:
        title = " ".join(title.split()) or "untitled item"
        seen[title] = seen.get(title, 0) + 1
        texts.append(title if seen[title] == 1 else f"{title} (#{seen[title]})")
    ids = [list(tokens) for tokens in tokenizer([" " + text for text in texts], add_special_tokens=False)["input_ids"]]
    index: dict[tuple[int, ...], int] = {}
    for position, tokens in enumerate(ids):
        key = tuple(tokens)
        if key in index:
            raise ConfigError(
                f"items {index[key]} and {position} tokenise to the same title tokens ({texts[position]!r}); "
                "use item_repr=sid or make the titles distinct."
            )
        index[key] = position
    return [f'"{t}"' for t in texts], ids
