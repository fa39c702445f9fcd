"""Procedural "shapes" dataset: coloured shapes on plain backgrounds, with captions.

Every image is a pure function of ``(seed, index)``, so a dataset is reproducible
anywhere without being stored. Images are drawn at 4x resolution with PIL and
downsampled with a box filter, which gives anti-aliased edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from multiprocessing import Pool

import numpy as np
import torch
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "cyan": (40, 210, 215),
    "magenta": (215, 50, 200),
}
# Backgrounds are darker than every shape colour so that shape and colour stay legible.
BACKGROUNDS = {
    "black": (12, 12, 12),
    "gray": (85, 85, 85),
    "brown": (75, 50, 30),
    "navy": (20, 25, 70),
}
POSITIONS = ("left", "right", "top", "bottom", "center")

# The label of an image is "{colour} {shape}"; label index = colour * len(SHAPES) + shape.
LABELS = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)

# Caption templates. "{pos}" and "{bg}" are only used when they are true of the image.
TEMPLATES = (
    "a photo of a {c} {s}",
    "a photo of a {c} {s}",
    "a {c} {s}",
    "a photo of a {c} {s} on a {bg} background",
    "a {c} {s} on a {bg} background",
    "a photo of a {c} {s} in the {pos}",
    "a {c} {s} in the {pos} of the picture",
    "a drawing of a {c} {s}",
)


@dataclass(frozen=True)
class ShapeSpec:
    """Everything that determines one image; size and centre are fractions of the side."""

    shape: int
    colour: int
    background: int
    size: float
    cx: float
    cy: float
    template: int

    @property
    def label(self) -> int:
        return self.colour * len(SHAPES) + self.shape

    @property
    def position(self) -> str:
        # The dominant offset from the centre names the position.
        dx, dy = self.cx - 0.5, self.cy - 0.5
        if max(abs(dx), abs(dy)) < 0.12:
            return "center"
        if abs(dx) >= abs(dy):
            return "left" if dx < 0 else "right"
        return "top" if dy < 0 else "bottom"

    def caption(self) -> str:
        colour = list(COLOURS)[self.colour]
        bg = list(BACKGROUNDS)[self.background]
        return TEMPLATES[self.template].format(c=colour, s=SHAPES[self.shape], bg=bg, pos=self.position)


def sample_spec(rng: np.random.Generator, label: int | None = None) -> ShapeSpec:
    """Draw one random spec; ``label`` fixes colour and shape."""
    if label is None:
        label = int(rng.integers(len(LABELS)))
    size = float(rng.uniform(0.42, 0.62))
    half = size / 2
    cx, cy = (float(rng.uniform(half + 0.02, 1 - half - 0.02)) for _ in range(2))
    return ShapeSpec(
        shape=label % len(SHAPES),
        colour=label // len(SHAPES),
        background=int(rng.integers(len(BACKGROUNDS))),
        size=size,
        cx=cx,
        cy=cy,
        template=int(rng.integers(len(TEMPLATES))),
    )


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a shape of circumradius ``r`` (pixels) centred at (cx, cy)."""
    if shape == "square":
        s = r * 0.8
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a) + 0.15 * r)
                for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    if shape == "cross":
        a, b = r * 0.32, r * 0.9
        return [(cx - a, cy - b), (cx + a, cy - b), (cx + a, cy - a), (cx + b, cy - a),
                (cx + b, cy + a), (cx + a, cy + a), (cx + a, cy + b), (cx - a, cy + b),
                (cx - a, cy + a), (cx - b, cy + a), (cx - b, cy - a), (cx - a, cy - a)]
    if shape == "heart":
        # Parametric heart curve, scaled so its extent matches the other shapes.
        pts = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((cx + x * r / 16.5, cy + (y + 2.5) * r / 16.5))
        return pts
    raise ValueError(f"unknown shape {shape!r}")


def render(spec: ShapeSpec, resolution: int = 32, supersample: int = 4) -> np.ndarray:
    """Draw one image. Returns uint8 ``(resolution, resolution, 3)``."""
    side = resolution * supersample
    bg = BACKGROUNDS[list(BACKGROUNDS)[spec.background]]
    img = Image.new("RGB", (side, side), bg)
    draw = ImageDraw.Draw(img)
    colour = COLOURS[list(COLOURS)[spec.colour]]
    cx, cy, r = spec.cx * side, spec.cy * side, spec.size * side / 2
    shape = SHAPES[spec.shape]
    if shape == "circle":
        draw.ellipse([cx - r * 0.9, cy - r * 0.9, cx + r * 0.9, cy + r * 0.9], fill=colour)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=colour)
    return np.asarray(img.resize((resolution, resolution), Image.BOX))


def _render_chunk(args: tuple[list[ShapeSpec], int]) -> np.ndarray:
    specs, resolution = args
    return np.stack([render(s, resolution) for s in specs])


@dataclass
class ShapesBatch:
    """images: uint8 ``(N, 3, H, W)``; labels: int64 ``(N,)``; captions: N strings."""

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    specs: list[ShapeSpec]

    def float_images(self) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.float() / 255.0


def make_dataset(n: int, seed: int, resolution: int = 32, labels: list[int] | None = None,
                 workers: int = 1) -> ShapesBatch:
    """Draw ``n`` images deterministically from ``seed``.

    ``labels`` (length ``n``) fixes each image's class; otherwise classes are uniform.
    ``workers`` > 1 renders in a process pool; the result does not depend on it.
    """
    rng = np.random.default_rng(seed)
    specs = [sample_spec(rng, None if labels is None else int(labels[i])) for i in range(n)]
    chunks = [specs[i:i + 2048] for i in range(0, n, 2048)]
    if workers > 1 and len(chunks) > 1:
        with Pool(workers) as pool:
            arrays = pool.map(_render_chunk, [(c, resolution) for c in chunks])
    else:
        arrays = [_render_chunk((c, resolution)) for c in chunks]
    images = torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()
    return ShapesBatch(
        images=images,
        labels=torch.tensor([s.label for s in specs], dtype=torch.long),
        captions=[s.caption() for s in specs],
        specs=specs,
    )
