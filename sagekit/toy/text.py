"""Word-level tokenizer for the toy world.

A `tokenizers` WordLevel model wrapped in transformers' `PreTrainedTokenizerFast`, so it
saves and loads offline with `save_pretrained` / `from_pretrained` like any hub tokenizer.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from . import grammar

SPECIAL = ("<pad>", "<unk>", "<bos>", "<eos>")
# 24 positions: <bos> + the longest caption (16 words) + <eos> fit with room to append words.
MAX_LENGTH = 24


def vocabulary() -> list[str]:
    """All words, special tokens first (ids 0..3); eos is not id 2 so CLIP pools at the eos token."""
    return list(dict.fromkeys(list(SPECIAL) + grammar.vocabulary()))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh toy tokenizer: lower-cased words, <bos> ... <eos>, padded with <pad>."""
    vocab = {w: i for i, w in enumerate(vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    from tokenizers import normalizers

    core.normalizer = normalizers.Lowercase()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=MAX_LENGTH,
    )
