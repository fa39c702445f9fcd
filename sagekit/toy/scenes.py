"""Scenes of toy world 2 and how they are drawn.

A scene is a background and zero to three objects; an object is a coloured shape of some
size at some place. Drawing is a pure function of the scene: PIL at 4x resolution, then a
box filter down, which gives anti-aliased edges. Which scenes occur, and how often, is the
business of :mod:`sagekit.toy.world`; how they are described, of :mod:`sagekit.toy.grammar`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross", "heart")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
           "cross": "crosses", "heart": "hearts"}
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "cyan": (40, 210, 215),
    "magenta": (215, 50, 200),
}
# Backgrounds are darker than every object colour, so objects stay legible; each has a
# vertical gradient (top colour, bottom colour) so an empty scene still looks like a place.
BACKGROUNDS = {
    "grass": ((28, 62, 30), (40, 92, 38)),
    "sky": ((22, 40, 105), (52, 78, 128)),
    "sand": ((112, 92, 52), (92, 72, 40)),
    "night": ((4, 4, 14), (18, 18, 34)),
    "stone": ((92, 92, 92), (66, 66, 66)),
    "water": ((14, 58, 66), (8, 36, 48)),
}
POSITIONS = ("left", "right", "top", "bottom", "center")
SIZES = ("small", "big")
# Radius of an object, as a fraction of the side, by size word and by how many objects share the image.
RADIUS = {("big", 1): (0.23, 0.3), ("small", 1): (0.14, 0.18), ("small", 2): (0.13, 0.16),
          ("small", 3): (0.11, 0.13)}

# The label of an object is "{colour} {shape}"; label index = colour * len(SHAPES) + shape.
LABELS = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
COUNTS = ("none", "one", "two", "three")


@dataclass(frozen=True)
class Thing:
    """One object: shape and colour indices, size word, centre and radius as fractions of the side."""

    shape: int
    colour: int
    size: str
    cx: float
    cy: float
    r: float

    @property
    def label(self) -> int:
        return self.colour * len(SHAPES) + self.shape

    @property
    def name(self) -> str:
        return LABELS[self.label]


@dataclass(frozen=True)
class Scene:
    """A background index and its objects. ``kind`` says how the objects relate:
    ``"empty"`` (none), ``"one"``, ``"many"`` (two or three of the same label) or ``"two"``
    (two different labels side by side, along ``axis`` "horizontal" or "vertical", the
    first object left of / above the second)."""

    background: int
    things: tuple[Thing, ...]
    kind: str
    axis: str = ""

    @property
    def label(self) -> int:
        """The label of the first object; -1 for an empty scene."""
        return self.things[0].label if self.things else -1

    @property
    def count(self) -> int:
        return len(self.things)

    @property
    def position(self) -> str:
        """Where a lone object is; "" for other scenes."""
        if self.kind != "one":
            return ""
        dx, dy = self.things[0].cx - 0.5, self.things[0].cy - 0.5
        if max(abs(dx), abs(dy)) < 0.09:  # lone objects sit at most 0.05 or at least 0.13 off centre
            return "center"
        if abs(dx) >= abs(dy):
            return "left" if dx < 0 else "right"
        return "top" if dy < 0 else "bottom"


def outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
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


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour) -> None:
    """Fill one shape of circumradius ``r`` pixels centred at (cx, cy)."""
    if shape == "circle":
        draw.ellipse([cx - r * 0.9, cy - r * 0.9, cx + r * 0.9, cy + r * 0.9], fill=colour)
    else:
        draw.polygon(outline(shape, cx, cy, r), fill=colour)


def backdrop(background: int, side: int) -> np.ndarray:
    """The background's vertical gradient, uint8 ``(side, side, 3)``."""
    top, bottom = (np.array(c, dtype=np.float64) for c in BACKGROUNDS[list(BACKGROUNDS)[background]])
    t = np.linspace(0, 1, side)[:, None, None]
    rows = np.round(top * (1 - t) + bottom * t).astype(np.uint8)
    return np.repeat(rows, side, axis=1)


def render(scene: Scene, resolution: int = 32, supersample: int = 4) -> np.ndarray:
    """Draw one scene. Returns uint8 ``(resolution, resolution, 3)``."""
    side = resolution * supersample
    img = Image.fromarray(backdrop(scene.background, side))
    draw = ImageDraw.Draw(img)
    for t in scene.things:
        draw_shape(draw, SHAPES[t.shape], t.cx * side, t.cy * side, t.r * side, COLOURS[list(COLOURS)[t.colour]])
    return np.asarray(img.resize((resolution, resolution), Image.BOX))
