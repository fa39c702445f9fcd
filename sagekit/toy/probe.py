"""Does a toy generator read words? The word probe of toy world 3.

Stable Diffusion's UNet cross-attends to every token's state: a word's attention map
covers the thing it names, and putting another word's state in its place draws the other
thing (prompt-to-prompt editing rests on both). A small model can instead learn to read
only the text encoder's end summary (the states from ``<eos>`` on, which a causal encoder
fills with the whole prompt). Three measures tell the two apart, on pairs of prompts
"a photo of a {A}" / "a photo of a {B}" (two labels that differ in shape and colour):

- **word swap**: A's prompt states with B's colour and shape word states put in: share of
  images whose drawn object is no longer A (a model that reads words draws B);
- **end swap**: A's states with B's states from ``<eos>`` on: share no longer A (a model that
  reads only words keeps A);
- **attention**: on A's own images, the shape word's cross-attention mass inside the drawn
  object (pixels of A's colour), over the object's share of the image: 1 = no better
  than uniform.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..models.attention_maps import attention_spread, token_maps
from ..seeds import seeds as seed_stream
from ..stats import wilson
from .scenes import COLOURS, LABELS, SHAPES
from .world import WorldConfig

PROMPT = "a photo of a {label}"
# A pixel belongs to the drawn object when it is this close (RGB, 0-255) to the object's
# colour: every background is darker than every object colour by more than this.
COLOUR_RADIUS = 70.0


def swap_pairs(n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` (A, B) label index pairs of the learned labels that differ in shape and colour."""
    held = set(WorldConfig().held_out)
    seen = [i for i, l in enumerate(LABELS) if l not in held]
    rng = np.random.default_rng([seed, 31])
    pairs = []
    while len(pairs) < n:
        a, b = (int(x) for x in rng.choice(seen, 2, replace=False))
        if a % len(SHAPES) != b % len(SHAPES) and a // len(SHAPES) != b // len(SHAPES):
            pairs.append((a, b))
    return pairs


def _positions(gen, prompt: str) -> dict[str, int | list[int]]:
    """Token positions of the colour word, the shape word and ``<eos>`` in ``prompt``."""
    tok = gen.tokenizers[0]
    ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    words = tok.convert_ids_to_tokens(ids)
    colour, shape = prompt.split()[-2:]
    return {"colour": words.index(colour), "shape": words.index(shape), "eos": words.index(tok.eos_token)}


def near_colours(pixels: torch.Tensor) -> torch.Tensor:
    """Which pixels have each object colour: pixels ``(N, 3, H, W)`` in 0-255 -> bool
    ``(N, len(COLOURS), H, W)`` (within :data:`COLOUR_RADIUS` of the colour)."""
    rgb = torch.tensor(list(COLOURS.values()), dtype=torch.float32)  # (colours, 3)
    # squared distances against the squared radius: the same test, 13x faster than
    # Tensor.norm over a middle dimension (0.072 against 0.94 s per 512 images; the grounding
    # masks of 60k training images are computed before every reading run)
    return (pixels[:, None] - rgb[None, :, :, None, None]).pow_(2).sum(2) < COLOUR_RADIUS ** 2


def mask_of(images: torch.Tensor, label: int) -> torch.Tensor:
    """Pixels of ``label``'s colour: images ``(N, 3, H, W)`` in [0, 1] -> bool ``(N, H, W)``."""
    return near_colours(images * 255)[:, label // len(SHAPES)]


@torch.no_grad()
def word_probe(gen, judge, pairs: int = 24, seeds_per_pair: int = 4, seed: int = 0,
               guidance: float | None = None, steps: int | None = None) -> dict:
    """The three measures on ``pairs`` label pairs x ``seeds_per_pair`` seeds each.

    Returns ``{"word_swap", "end_swap", "own"}`` each ``{"changed", "donor", "n", "lo", "hi"}``
    (shares of images not judged A / judged B, Wilson interval of ``changed``) and
    ``"attention"`` ``{"ratio" (median over A's images judged right with an object mask),
    "mean", "n", "spread"}``; ``"images"`` holds the own, word swap and end swap images of
    the first pair's seeds and the shape word's maps on the own ones, for the report."""
    rows = swap_pairs(pairs, seed)
    prompts_a = [PROMPT.format(label=LABELS[a]) for a, _ in rows]
    prompts_b = [PROMPT.format(label=LABELS[b]) for _, b in rows]
    pos = _positions(gen, prompts_a[0])  # every probe prompt has the same layout
    emb_a, emb_b = gen.encode_prompts(prompts_a), gen.encode_prompts(prompts_b)
    words = emb_a.hidden.clone()
    words[:, [pos["colour"], pos["shape"]]] = emb_b.hidden[:, [pos["colour"], pos["shape"]]]
    ends = emb_a.hidden.clone()
    ends[:, pos["eos"]:] = emb_b.hidden[:, pos["eos"]:]
    seeds = seed_stream("word-probe", seed, len(rows) * seeds_per_pair)
    noise = gen.initial_noise(seeds)
    a = torch.tensor([r[0] for r in rows]).repeat_interleave(seeds_per_pair)
    b = torch.tensor([r[1] for r in rows]).repeat_interleave(seeds_per_pair)
    out, shown = {}, {}
    for name, hidden in (("own", emb_a.hidden), ("word_swap", words), ("end_swap", ends)):
        emb = type(emb_a)(hidden.repeat_interleave(seeds_per_pair, 0))
        images, maps = _draw(gen, noise, emb, seeds, guidance, steps, attention=name == "own")
        top = judge(images).argmax(-1)
        changed, donor = int((top != a).sum()), int((top == b).sum())
        share, lo, hi = wilson(changed, len(top))
        out[name] = {"changed": round(share, 4), "donor": round(donor / len(top), 4), "n": len(top),
                     "lo": round(lo, 4), "hi": round(hi, 4)}
        shown[name] = images[:seeds_per_pair]
        if maps is not None:
            out["attention"] = _attention(maps, images, a, top, pos["shape"])
            shown["shape_word_maps"] = maps[:seeds_per_pair, pos["shape"]]
    out["images"] = shown
    out["pairs"] = [(LABELS[x], LABELS[y]) for x, y in rows]
    return out


def _draw(gen, noise, emb, seeds, guidance, steps, attention: bool, batch: int = 48):
    images, maps = [], []
    for i in range(0, len(seeds), batch):
        part = emb[slice(i, i + batch)]
        if attention:
            with gen.capture_attention() as recorded:
                lat = gen.denoise(noise[i:i + batch], part, guidance, steps, seeds=seeds[i:i + batch])
            # the last rows are the conditional half of guided calls ([unconditional, conditional])
            maps.append(token_maps(recorded, gen.image_size)[-len(part):])
        else:
            lat = gen.denoise(noise[i:i + batch], part, guidance, steps, seeds=seeds[i:i + batch])
        images.append(gen.decode(lat).cpu())
    return torch.cat(images), (torch.cat(maps) if attention else None)


def attention_ratio(word_map: torch.Tensor, mask: torch.Tensor) -> float:
    """A word's attention mass inside ``mask`` over the mask's share of the image: 1 for a
    uniform map, ``1 / share`` for one wholly inside. word_map ``(H, W)`` >= 0; mask bool
    ``(H, W)``, not empty."""
    share = mask.float().mean().item()
    if share == 0:
        raise ValueError("the mask is empty")
    mass = word_map[mask].sum().item() / word_map.sum().clamp_min(1e-12).item()
    return mass / share


def object_attention(word_maps: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
                     right: torch.Tensor) -> list[float]:
    """:func:`attention_ratio` of each image's word map inside its label's colour mask, over
    the images judged right that show pixels of that colour. word_maps ``(N, H, W)``; images
    ``(N, 3, H, W)`` in [0, 1]; labels ``(N,)`` label indices; right bool ``(N,)``."""
    ratios = []
    for i in range(len(images)):
        if not bool(right[i]):
            continue
        mask = mask_of(images[i:i + 1], int(labels[i]))[0]
        if mask.any():
            ratios.append(attention_ratio(word_maps[i], mask))
    return ratios


def _attention(maps: torch.Tensor, images: torch.Tensor, a: torch.Tensor, top: torch.Tensor, token: int) -> dict:
    """Median over images judged A (with pixels of A's colour) of the shape word's
    :func:`attention_ratio` inside A's colour mask; ``spread``: its mean normalised entropy."""
    word = maps[:, token]
    ratios = object_attention(word, images, a, top == a)
    return {"ratio": round(float(np.median(ratios)), 3) if ratios else float("nan"),
            "mean": round(float(np.mean(ratios)), 3) if ratios else float("nan"), "n": len(ratios),
            "spread": round(float(attention_spread(word).mean()), 4)}


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`word_probes`' table to read: each share as "rate [lo, hi]"."""
    cell = lambda r, k: f"{r[k]:.2f} [{r[k + '_lo']:.2f}, {r[k + '_hi']:.2f}]"
    return pd.DataFrame({
        "model": table.model,
        "word swap: not A": [cell(r, "word_swap") for _, r in table.iterrows()],
        "end swap: not A": [cell(r, "end_swap") for _, r in table.iterrows()],
        "own states: not A": [cell(r, "own") for _, r in table.iterrows()],
        "images": table.n,
        "attention ratio": table.attention_ratio.round(2),
        "of images": table.attention_n,
    })


def word_probes(models, pairs: int = 12, seeds_per_pair: int = 4, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """:func:`word_probe` of each toy generator (by name) at its default sampler and
    guidance, judged by the object judge ensemble. Returns one row per model (word swap,
    end swap and own: share of images not drawn as A, with intervals; the attention ratio)
    and ``{model: result}``."""
    from ..models.registry import load_generator, load_judge

    judge = load_judge("toy-ensemble")
    rows, results = [], {}
    for model in models:
        r = results[model] = word_probe(load_generator(model), judge, pairs, seeds_per_pair, seed)
        row = {"model": model}
        for k in ("word_swap", "end_swap", "own"):
            row.update({k: r[k]["changed"], f"{k}_lo": r[k]["lo"], f"{k}_hi": r[k]["hi"]})
        rows.append({**row, "n": r["own"]["n"], "attention_ratio": r["attention"]["ratio"],
                     "attention_n": r["attention"]["n"], "attention_spread": r["attention"]["spread"]})
    return pd.DataFrame(rows), results
