"""Train the toy CLIP pair (contrastive) and the toy caption language model (GPT-2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import CLIPModel, GPT2LMHeadModel

from ..architectures import caption_lm, clip_model
from ..shapes import ShapesBatch
from ..text import MAX_LENGTH
from .common import augment, progress, seeded_batches, warmup_cosine

CLIP_MEAN, CLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                     return_tensors="pt").input_ids


def train_clip(data: ShapesBatch, tokenizer, seed: int, steps: int = 500, batch_size: int = 256,
               lr: float = 2e-3) -> CLIPModel:
    """Contrastive training. Images of the same label count as positives for each other's
    captions (a batch of 256 over 36 labels holds many), so the loss does not fight itself."""
    torch.manual_seed(seed)
    model = clip_model()
    ids = tokenize(tokenizer, data.captions)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = warmup_cosine(opt, steps, warmup=40)
    g = torch.Generator().manual_seed(seed + 1)
    batches = seeded_batches(len(ids), batch_size, steps, seed)
    model.train()
    for _ in progress(steps, "clip"):
        idx = next(batches)
        pixels = (augment(data.images[idx].float() / 255, g) - 0.5) / 0.5
        out = model(input_ids=ids[idx], pixel_values=pixels)
        same = (data.labels[idx][:, None] == data.labels[idx][None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(out.logits_per_image, target) + F.cross_entropy(out.logits_per_text, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def train_caption_lm(captions: list[str], tokenizer, seed: int, steps: int = 300, batch_size: int = 256,
                     lr: float = 3e-3) -> GPT2LMHeadModel:
    """Next-word model over captions; used to propose natural words in the prompt search."""
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
