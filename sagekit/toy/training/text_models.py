"""Train the toy CLIP pair (contrastive) and the toy caption language model (GPT-2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import CLIPModel, GPT2LMHeadModel

import numpy as np

from ..architectures import caption_lm, clip_model
from ..grammar import continuation, place_named
from ..scenes import BACKGROUNDS
from ..text import MAX_LENGTH
from ..world import SceneBatch
from .common import augment, progress, seeded_batches, warmup_cosine

CLIP_MEAN, CLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
# What follows a caption in the caption LM's free sequences (:func:`lm_corpus`).
LM_TAILS = ("words", "phrases")


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                     return_tensors="pt").input_ids


def truth(data: SceneBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes that say which captions are true of which images: ``what`` ``(N,)`` (kind and
    labels, order-free), ``where`` ``(N,)`` (background) and ``named`` ``(N,)`` (the
    background the caption names, -1 if none). Caption j is true of image i when
    ``what`` is equal and ``named[j]`` is -1 or ``where[i]``."""
    keys = [(s.kind, s.count, tuple(sorted(t.label for t in s.things))) for s in data.scenes]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    backgrounds = list(BACKGROUNDS)
    named = [place_named(c) for c in data.captions]
    return (torch.tensor([index[k] for k in keys]), torch.tensor([s.background for s in data.scenes]),
            torch.tensor([-1 if b is None else backgrounds.index(b) for b in named]))


def train_clip(data: SceneBatch, tokenizer, seed: int, steps: int = 500, batch_size: int = 256,
               lr: float = 2e-3) -> CLIPModel:
    """Contrastive training. Every caption in the batch that is true of an image counts as a
    positive for it (see :func:`truth`), so the loss does not fight itself."""
    torch.manual_seed(seed)
    model = clip_model()
    ids = tokenize(tokenizer, data.captions)
    what, where, named = truth(data)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = warmup_cosine(opt, steps, warmup=40)
    g = torch.Generator().manual_seed(seed + 1)
    batches = seeded_batches(len(ids), batch_size, steps, seed)
    model.train()
    for _ in progress(steps, "clip"):
        idx = next(batches)
        pixels = (augment(data.images[idx].float() / 255, g) - 0.5) / 0.5
        out = model(input_ids=ids[idx], pixel_values=pixels)
        true = (what[idx][:, None] == what[idx][None, :]) & (
            (named[idx][None, :] < 0) | (named[idx][None, :] == where[idx][:, None]))  # (image, caption)
        # A caption is always true of its own image, even where a two-sense word makes the
        # rule above misread it ("a plus in sand": sand the colour, not the place); without
        # this a row can have no positive, and 0 / 0 turns every weight into NaN.
        true = (true | torch.eye(len(idx), dtype=torch.bool)).float()
        loss = 0.5 * (F.cross_entropy(out.logits_per_image, true / true.sum(1, keepdim=True))
                      + F.cross_entropy(out.logits_per_text, true.T / true.T.sum(1, keepdim=True)))
        if not torch.isfinite(loss):
            raise FloatingPointError("toy CLIP training diverged (non-finite loss)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():  # CLIP's own bound on the temperature: logits at most 100x the cosine
            model.logit_scale.clamp_(0, math.log(100))
    return model.eval()


def lm_corpus(captions: list[str], words: list[str], seed: int, free_share: float = 0.25,
              tails: str = "words") -> list[str]:
    """The caption model's reading: the captions, and for a ``free_share`` of them a free
    sequence instead, so the model's likely continuations reach past what the grammar says.
    ``tails="words"`` (toy world 2): the caption's first 2 to 6 words, then 1 to 4 words
    drawn uniformly from ``words``. ``tails="phrases"`` (toy world 3): the whole caption,
    then a :func:`~sagekit.toy.grammar.continuation` (a second object, a relation, a count,
    a place), the continuations people write and real models fail on."""
    if tails not in LM_TAILS:
        raise ValueError(f"tails must be one of {LM_TAILS}, got {tails!r}")
    rng = np.random.default_rng(seed)
    out = []
    for c in captions:
        if rng.random() >= free_share:
            out.append(c)
        elif tails == "phrases":
            out.append(f"{c} {continuation(rng)}")
        else:
            head = c.split()[: int(rng.integers(2, 7))]
            tail = [words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(1, 5)))]
            out.append(" ".join(head + tail))
    return out


def train_caption_lm(captions: list[str], tokenizer, seed: int, steps: int = 300, batch_size: int = 256,
                     lr: float = 3e-3) -> GPT2LMHeadModel:
    """Next-word model over a corpus (:func:`lm_corpus`); it proposes natural words in the prompt search."""
    torch.manual_seed(seed)
    model = caption_lm()
    ids = tokenize(tokenizer, captions)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = warmup_cosine(opt, steps, warmup=20)
    batches = seeded_batches(len(ids), batch_size, steps, seed)
    model.train()
    for _ in progress(steps, "caption lm"):
        x = ids[next(batches)]
        labels = x.masked_fill(x == tokenizer.pad_token_id, -100)
        loss = model(input_ids=x, attention_mask=(x != tokenizer.pad_token_id).long(), labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()
