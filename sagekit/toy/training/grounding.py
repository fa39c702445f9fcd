"""Word grounding while a toy UNet trains: the object words' cross-attention is pulled
onto the pixels of the objects they name.

A real text-to-image model learns that a word's attention covers its object from billions
of images in which several things compete for the same picture; a 32x32 world with one
object and a pooled prompt path has no such pressure, and its maps stay uniform (see
``sagekit.toy.probe``). TokenCompose (Wang et al., CVPR 2024) adds the pressure directly,
with a loss on each noun's attention mass outside its segmentation mask. The toy world
knows every object's pixels exactly, so the same loss needs no segmenter here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..grammar import SYNONYMS
from ..probe import near_colours
from ..scenes import COLOURS, PLURALS, SHAPES, Scene

COLOUR_NAMES = tuple(COLOURS)


def _names(scene: Scene) -> dict[str, int]:
    """Each word that names one of ``scene``'s objects -> that object's colour index.
    A colour word names every object of its colour; a shape word (singular, plural or
    synonym) the objects of its shape."""
    named: dict[str, int] = {}
    for thing in scene.things:
        colour, shape = COLOUR_NAMES[thing.colour], SHAPES[thing.shape]
        for word in (colour, SYNONYMS.get(colour), shape, PLURALS[shape], SYNONYMS.get(shape)):
            if word is not None:
                named.setdefault(word, thing.colour)
    return named


def grounding_targets(scenes: list[Scene], captions: list[str], tokenizer, images: torch.Tensor,
                      side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """What each caption token should attend to.

    Returns ``token_colour`` ``(N, L)`` int8 (the colour index of the object a token names,
    -1 for a word that names none of the scene's objects: fillers, places, a named object
    the image lacks) and ``colour_masks`` ``(N, 6, side, side)`` uint8 (0-255: the share
    of each cell covered by pixels of that colour, ``sagekit.toy.probe.near_colours``).
    images ``(N, 3, H, W)`` uint8."""
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
    token_colour = np.full((len(captions), tokenizer.model_max_length), -1, dtype=np.int8)
    for i, (scene, row) in enumerate(zip(scenes, ids)):
        named = _names(scene)
        for t, word in enumerate(tokenizer.convert_ids_to_tokens(row)):
            token_colour[i, t] = named.get(word, -1)
    masks = []
    for chunk in images.split(4096):
        near = near_colours(chunk.float()).float()  # (n, 6, H, W)
        masks.append((F.adaptive_avg_pool2d(near, side) * 255).round().to(torch.uint8))
    return torch.from_numpy(token_colour), torch.cat(masks)


def grounding_loss(maps: dict[str, list[torch.Tensor]], token_colour: torch.Tensor,
                   colour_masks: torch.Tensor) -> torch.Tensor:
    """Mean over cross-attention layers and grounded tokens of the share of the token's
    attention that falls outside its object (TokenCompose's token loss), each cell counted
    inside by the share of it the object covers: near 0 when every named word attends only
    to cells its object fills, about 1 - the object's area share for a uniform map.
    maps ``{layer: [(B, Q, L)]}`` with grad; token_colour ``(B, L)``; colour_masks
    ``(B, 6, S, S)`` uint8."""
    rows, tokens = torch.nonzero(token_colour >= 0, as_tuple=True)
    if len(rows) == 0:
        return torch.zeros(())
    object_masks = colour_masks[rows, token_colour[rows, tokens].long()].float() / 255  # (K, S, S)
    losses = []
    for calls in maps.values():
        for m in calls:
            side = int(math.isqrt(m.shape[1]))
            word = m[rows, :, tokens]  # (K, Q): each grounded token's map
            inside = F.adaptive_avg_pool2d(object_masks[:, None], side).flatten(1)
            share = (word * inside).sum(1) / word.sum(1).clamp_min(1e-8)
            losses.append((1 - share).mean())
    return torch.stack(losses).mean()
