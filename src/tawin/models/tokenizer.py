"""Stage 3 — the default model's tokenizer: special tokens, prompt words and item code tokens.

The built-in model has no pretrained vocabulary, so its tokenizer is a word-level Hugging Face
tokenizer (``PreTrainedTokenizerFast``) whose vocabulary is the special tokens, the words of the
prompt template and every semantic-ID token of the catalogue. It is saved and loaded like any
other Hugging Face tokenizer.
"""

from __future__ import annotations

import re

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"


def build_word_tokenizer(template_text: str, code_tokens: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `template_text`'s words plus the item `code_tokens`."""
    words = sorted(set(re.findall(r"\w+|[^\w\s]", template_text)))
    specials = [PAD, BOS, EOS, UNK]
    codes = sorted(set(code_tokens), key=_code_sort_key)
    vocab = {token: index for index, token in enumerate(specials + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(specials)
    core.add_tokens(codes)
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK)


def _code_sort_key(token: str) -> tuple[str, int]:
    match = re.fullmatch(r"<([a-z]+)_(\d+)>", token)
    return (match.group(1), int(match.group(2))) if match else (token, -1)
