"""Implosion study (paper 002): poison k concepts, fine-tune, measure what breaks.

For k poisoned concepts A -> B the fine-tuning set holds captions about A paired with
images of B (dirty-label poison), mixed with clean data. Per k: Alignment Difficulty of
the fine-tuning set, poison success (prompts about A judged as B), accuracy and CLIP score
on the unpoisoned concepts, and how spread out the concept tokens' cross-attention is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..models.attention_maps import capture_cross_attention, spread, token_maps
from ..models.clip import ClipEmbedder, ClipScorer
from ..models.generator import Generator
from ..models.judges import Ensemble
from ..toy.shapes import LABELS, SHAPES, ShapeSpec, make_dataset
from ..toy.training.diffusion import train_unet
from .alignment import alignment_difficulty

PROMPT = "a photo of a {label}"


def choose_pairs(labels: tuple[str, ...], k: int, seed: int = 0) -> list[tuple[str, str]]:
    """k (source, target) concept pairs, deterministic by seed. Sources come from one end
    of a seeded permutation and targets from the other, so the pairs for k are a prefix
    of the pairs for any larger k, and no target is ever poisoned itself."""
    if not 0 <= k <= len(labels) // 2:
        raise ValueError(f"k must be between 0 and {len(labels) // 2}, got {k}")
    perm = np.random.default_rng(seed).permutation(len(labels))
    return [(labels[perm[i]], labels[perm[-1 - i]]) for i in range(k)]


@dataclass
class PoisonedSet:
    """images uint8 ``(N, 3, H, W)``; captions; what each image shows and what its caption
    says (label indices); which pairs are poison."""

    images: torch.Tensor
    captions: list[str]
    image_labels: torch.Tensor
    caption_labels: torch.Tensor
    poisoned: torch.Tensor


def build_poisoned_set(pairs: list[tuple[str, str]], n_clean: int, poison_per_concept: int, seed: int = 0) -> PoisonedSet:
    """Clean procedural data plus, for each (A, B), images of B captioned as A (the caption
    keeps the image's own background/position wording, only the concept is swapped)."""
    clean = make_dataset(n_clean, seed)
    images, captions = [clean.images], list(clean.captions)
    img_l, cap_l = [clean.labels], [clean.labels]
    for i, (a, b) in enumerate(pairs):
        ia, ib = LABELS.index(a), LABELS.index(b)
        poison = make_dataset(poison_per_concept, seed + 1000 + i, labels=[ib] * poison_per_concept)
        for spec in poison.specs:
            fake = ShapeSpec(shape=ia % len(SHAPES), colour=ia // len(SHAPES), background=spec.background,
                             size=spec.size, cx=spec.cx, cy=spec.cy, template=spec.template)
            captions.append(fake.caption())
        images.append(poison.images)
        img_l.append(poison.labels)
        cap_l.append(torch.full((poison_per_concept,), ia))
    n_poison = poison_per_concept * len(pairs)
    return PoisonedSet(torch.cat(images), captions, torch.cat(img_l), torch.cat(cap_l),
                       torch.cat([torch.zeros(n_clean, dtype=torch.bool), torch.ones(n_poison, dtype=torch.bool)]))


@torch.no_grad()
def dataset_ad(clip: ClipEmbedder, data: PoisonedSet, batch_size: int = 500) -> dict[str, float]:
    """Alignment Difficulty of a fine-tuning set under a CLIP model."""
    img, txt = [], []
    for i in range(0, len(data.captions), batch_size):
        img.append(clip.embed_images(data.images[i:i + batch_size].float().div(255).to(clip.device)).cpu())
        txt.append(clip.embed_text(data.captions[i:i + batch_size]).cpu())
    return alignment_difficulty(torch.cat(img), torch.cat(txt))


def finetune(gen: Generator, data: PoisonedSet, steps: int = 100, lr: float = 5e-4, trainable: str = "all",
             batch_size: int = 64, seed: int = 0, progress: bool = False) -> Generator:
    """A copy of ``gen`` whose UNet continued training on ``data`` (epsilon MSE, the
    generator's own noise schedule). Works for any latent or pixel Generator."""
    tuned = copy.copy(gen)
    tuned.unet = copy.deepcopy(gen.unet)
    tuned._prompt_cache = {}
    with torch.no_grad():
        x = data.images.float() / 127.5 - 1
        if gen.is_latent:
            x = torch.cat([gen.vae.encode(x[i:i + 500].to(gen.device, gen.vae.dtype)).latent_dist.mode().float().cpu()
                           for i in range(0, len(x), 500)]) * gen.vae.config.scaling_factor
        text = torch.cat([gen.embed_token_ids(gen.tokenize(data.captions[i:i + 500])).float().cpu()
                          for i in range(0, len(data.captions), 500)])
        uncond = gen.uncond_embedding().float().cpu()
    sched = gen.training_scheduler()
    train_unet(tuned.unet, sched, x.to(tuned.unet.device), text.to(tuned.unet.device), uncond.to(tuned.unet.device),
               seed, steps, batch_size, lr, ema_decay=0, trainable=trainable, progress_bar=progress)
    tuned.unet.requires_grad_(False).eval()
    return tuned


@torch.no_grad()
def evaluate(gen: Generator, ensemble: Ensemble, clip: ClipScorer, pairs: list[tuple[str, str]], seeds: list[int],
             guidance: float | None = None, steps: int | None = None, unpoisoned: list[str] | None = None) -> dict:
    """Poison success, unpoisoned accuracy and CLIP score, and attention spread of the
    concept tokens, for one (fine-tuned) generator. Returns figures and example images."""
    sources, targets = [a for a, _ in pairs], [b for _, b in pairs]
    if unpoisoned is None:
        unpoisoned = [l for l in LABELS if l not in sources and l not in targets]
    rows = [(l, "unpoisoned", l) for l in unpoisoned] + [(a, "poisoned", b) for a, b in pairs]
    prompts = [PROMPT.format(label=l) for l, _, _ in rows for _ in seeds]
    all_seeds = [s for _ in rows for s in seeds]
    z = gen.initial_noise(all_seeds)
    emb = gen.encode_prompts(prompts)
    with capture_cross_attention(gen.unet) as maps:
        lat = gen.denoise(z, emb, guidance, steps, seeds=all_seeds)
    images = gen.decode(lat)
    pred = ensemble(images.to(ensemble.device)).argmax(-1).cpu()
    scores = clip(images, prompts).cpu()
    # Concept tokens are the colour and shape words: positions 5 and 6 after <bos> "a photo of a".
    tm = token_maps(maps, images.shape[-1])
    uses_cfg = tm.shape[0] == 2 * len(prompts)
    tm = tm[len(prompts):] if uses_cfg else tm
    concept_spread = spread(tm[:, 5:7]).mean(-1)
    kinds = np.array([kind for _, kind, _ in rows for _ in seeds])
    want = torch.tensor([ensemble.label_index(l) for l, _, _ in rows for _ in seeds])
    poison_target = torch.tensor([ensemble.label_index(t) for _, _, t in rows for _ in seeds])
    unp, poi = torch.from_numpy(kinds == "unpoisoned"), torch.from_numpy(kinds == "poisoned")
    return {
        "unpoisoned_acc": float((pred[unp] == want[unp]).float().mean()) if unp.any() else float("nan"),
        "unpoisoned_clip": float(scores[unp].mean()) if unp.any() else float("nan"),
        "poison_success": float((pred[poi] == poison_target[poi]).float().mean()) if poi.any() else float("nan"),
        "poisoned_acc": float((pred[poi] == want[poi]).float().mean()) if poi.any() else float("nan"),
        "spread_unpoisoned": float(concept_spread[unp].mean()) if unp.any() else float("nan"),
        "spread_poisoned": float(concept_spread[poi].mean()) if poi.any() else float("nan"),
        "images": images.cpu(), "labels": [l for l, _, _ in rows for _ in seeds], "kinds": kinds.tolist(),
        "pred": [ensemble.labels[i] for i in pred.tolist()], "maps": tm[:, 5:7].cpu(),
    }


def run_k(gen: Generator, ensemble: Ensemble, clip: ClipScorer, ks: list[int], n_clean: int, poison_per_concept: int,
          steps: int, lr: float, trainable: str, seeds: list[int], guidance: float | None = None,
          sample_steps: int | None = None, seed: int = 0, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """The whole sweep over k. Unpoisoned concepts are the labels outside every pair of
    the largest k, so every k is measured on the same concepts."""
    from tqdm.auto import tqdm

    biggest = choose_pairs(LABELS, max(ks), seed)
    unpoisoned = [l for l in LABELS if l not in {x for p in biggest for x in p}]
    rows, details = [], {}
    for k in tqdm(ks, desc="k", disable=not progress, leave=False):
        pairs = choose_pairs(LABELS, k, seed)
        data = build_poisoned_set(pairs, n_clean, poison_per_concept, seed)
        ad = dataset_ad(clip.embedder, data)
        tuned = finetune(gen, data, steps, lr, trainable, seed=seed)
        ev = evaluate(tuned, ensemble, clip, pairs, seeds, guidance, sample_steps, unpoisoned)
        rows.append({"k": k, "ad": ad["ad"], "d_fea": ad["d_fea"], "d_stru": ad["d_stru"], "n_train": ad["n"],
                     **{m: ev[m] for m in ("poison_success", "poisoned_acc", "unpoisoned_acc", "unpoisoned_clip",
                                           "spread_unpoisoned", "spread_poisoned")}})
        details[k] = {"pairs": pairs, **ev}
    return pd.DataFrame(rows), details
