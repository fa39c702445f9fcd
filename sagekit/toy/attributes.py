"""What the toy judges should say of a scene: one attribute each, and realism.

The object judges name the "{colour} {shape}" of the objects; the attribute judges the
count, the background, where a lone object is, and for two different objects which one is
on the left (or on top); the realism judge tells clean renders from damaged ones
(:func:`corrupt`). Training (``sagekit toy train``) and evaluation (``sagekit toy eval``,
the toy-world report) read their targets from here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .scenes import BACKGROUNDS, COUNTS, LABELS, POSITIONS, Scene

# The relation judge names the first object of a two-object scene (left or top) and the axis.
RELATIONS = tuple(f"{label} on the left" for label in LABELS) + tuple(f"{label} on top" for label in LABELS)
OBJECT_JUDGES = ("resnet", "mobilenet", "edge")
ATTRIBUTE_JUDGES = ("count", "background", "position", "relation")
JUDGE_LABELS = {**{k: LABELS for k in OBJECT_JUDGES}, "count": COUNTS, "background": tuple(BACKGROUNDS),
                "position": POSITIONS, "relation": RELATIONS, "realism": ("real", "corrupted")}
# Attribute judges that learn from (and are scored on) scenes of one kind only.
JUDGE_SCENES = {"position": "one", "relation": "two"}


def attribute_targets(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """What each attribute judge should say of each scene; -1 where the attribute does not apply.

    ``object``: soft targets ``(N, 36)`` (one label: 1; two labels: 1/2 each; empty: uniform);
    ``count`` ``(N,)`` in 0..3; ``background`` ``(N,)``; ``position`` ``(N,)`` (lone objects);
    ``relation`` ``(N,)`` index into :data:`RELATIONS` (two different objects).
    """
    n, k = len(scenes), len(LABELS)
    obj = torch.zeros(n, k)
    count = torch.tensor([s.count for s in scenes])
    background = torch.tensor([s.background for s in scenes])
    position = torch.full((n,), -1)
    relation = torch.full((n,), -1)
    for i, s in enumerate(scenes):
        if not s.things:
            obj[i] = 1 / k
            continue
        for t in s.things:
            obj[i, t.label] += 1 / len(s.things)
        if s.kind == "one":
            position[i] = POSITIONS.index(s.position)
        if s.kind == "two":
            relation[i] = s.things[0].label + (0 if s.axis == "horizontal" else k)
    return {"object": obj, "count": count, "background": background, "position": position, "relation": relation}


def training_targets(kind: str, scenes: list[Scene]) -> torch.Tensor:
    """Targets judge ``kind`` learns: soft object shares for object judges, else the
    attribute's index (-1 where it does not apply)."""
    targets = attribute_targets(scenes)
    return targets["object"] if kind in OBJECT_JUDGES else targets[kind]


def corrupt(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Damage every image in one of five ways a generator can: noise, a blotchy colour
    field, a blend with another image, shuffled 8x8 patches, or colours off the world's
    palette (channels rotated, partly inverted); an image the chosen way hardly changes
    (mean change < 0.05) gets the noise. images: float ``(B, 3, H, W)`` in [0, 1]
    (H, W multiples of 8); the same shape out."""
    b, _, h, w = images.shape
    how = torch.randint(0, 5, (b,), generator=g)
    strength = 0.3 + 0.5 * torch.rand(b, 1, 1, 1, generator=g)
    noise = images + torch.randn(images.shape, generator=g) * strength * 0.6
    field = F.interpolate(torch.rand(b, 3, 4, 4, generator=g), size=(h, w), mode="bilinear", align_corners=False)
    blotch = images * (1 - strength) + field * strength
    blend = images * (1 - strength) + images.roll(1, 0) * strength
    p = 8
    patches = images.unfold(2, p, p).unfold(3, p, p)  # (B, 3, h/p, w/p, p, p)
    order = torch.randperm(patches.shape[2] * patches.shape[3], generator=g)
    flat = patches.reshape(b, 3, -1, p, p)[:, :, order]
    shuffled = flat.reshape(b, 3, h // p, w // p, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, 3, h, w)
    rotated = images[:, [1, 2, 0]] * (1 - strength) + (1 - images) * strength
    out = torch.stack([noise, blotch, blend, shuffled, rotated])[how, torch.arange(b)].clamp(0, 1)
    # Shuffling a plain empty scene, or blending two alike, can leave it almost as it was:
    # such an image is no damaged example, so it gets the noise instead.
    weak = (out - images).abs().flatten(1).mean(1) < 0.05
    out[weak] = noise[weak].clamp(0, 1)
    return out


def scored_examples(kind: str, images: torch.Tensor, scenes: list[Scene], seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images ``(M, 3, H, W)`` in [0, 1] and hard targets ``(M,)`` on which judge
    ``kind`` is calibrated and scored: object judges on scenes of one label (one object or
    several alike), attribute judges where the attribute applies, the realism judge on a
    clean half (0, "real") and a :func:`corrupt`-ed half (1). ``images``: float, one per scene."""
    if kind == "realism":
        half = len(images) // 2
        damaged = corrupt(images[half:], torch.Generator().manual_seed(seed))
        return torch.cat([images[:half], damaged]), (torch.arange(len(images)) >= half).long()
    if kind in OBJECT_JUDGES:
        keep = torch.tensor([s.kind in ("one", "many") for s in scenes])
        return images[keep], torch.tensor([s.label for s in scenes])[keep]
    target = training_targets(kind, scenes)
    return images[target >= 0], target[target >= 0]
