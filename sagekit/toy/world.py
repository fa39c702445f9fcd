"""Toy world 2: which scenes occur, how often, and the biases put in on purpose.

Real text-to-image models fail for reasons a small world can have too. Each bias below is a
named field of :class:`WorldConfig`, documented with the failure it is there to produce:

- ``companions`` / ``companion_rate`` (co-occurrence): on each background one shape is
  usual, in any colour (at night, stars; on grass, hearts, ...). A context word that names
  the background then pulls its companion shape into the picture ("a blue circle at
  night" drawn as a blue star). Shape only: a companion label of one colour would make the
  colour word itself predict the shape (measured: with yellow stars at night and red
  hearts on grass, "a photo of a red square" came out as red hearts on grass). Six
  backgrounds for six shapes, so that every shape and every colour is as common as any
  other overall: only the pairing of place and shape is biased.
- ``held_out`` (unseen compositions): colour-shape pairs that never occur in the
  generator's training data, though every word in them does.
- ``synonym_rate`` (rare words): how often a caption uses a rare synonym ("crimson",
  "disc"); two of them have a second sense elsewhere ("sand" is a background and a
  colour, "plus" is a shape and a conjunction), see :mod:`sagekit.toy.grammar`.
- ``caption_noise`` (alt-text): captions wrong the way people's captions are wrong (an
  object named that the image lacks, colours on the wrong object, wrong counts and
  relations, the drawn object named late, a lone object named as another shape), each at
  its own rate, see
  :class:`sagekit.toy.grammar.CaptionNoise`.
- ``kinds``: how often a scene is empty, one object, two or three of the same object
  (counting), or two different objects side by side (spatial relations, attribute binding).

The generators, the CLIP pair and the caption model learn from the biased world; the judges
learn from :meth:`WorldConfig.unbiased`, which shows every label on every background, so
that they can tell when a generator got it wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from multiprocessing import Pool

import numpy as np
import torch

from .grammar import NO_NOISE, CaptionNoise, describe
from .scenes import BACKGROUNDS, LABELS, POSITIONS, RADIUS, SHAPES, Scene, Thing, render

KINDS = ("empty", "one", "many", "two")
# Where a lone object sits: direction of its offset from the centre, by position word.
ANCHORS = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1), "center": (0, 0)}


@dataclass(frozen=True)
class WorldConfig:
    """How scenes are drawn. The defaults are the world the shipped models learned."""

    kinds: dict = field(default_factory=lambda: {"empty": 0.08, "one": 0.7, "many": 0.1, "two": 0.12})
    companions: dict = field(default_factory=lambda: {
        "night": "star", "grass": "heart", "sky": "cross", "sand": "triangle", "stone": "square",
        "water": "circle"})
    companion_rate: float = 0.85
    held_out: tuple = ("green heart", "blue star", "magenta triangle", "cyan circle")
    synonym_rate: float = 0.05
    big_rate: float = 0.7  # lone objects: share drawn big (the rest small)
    caption_noise: CaptionNoise = NO_NOISE

    def unbiased(self) -> "WorldConfig":
        """The same world without co-occurrences, held-out pairs or wrong captions: what
        judges and CLIP learn from."""
        return replace(self, companion_rate=0.0, held_out=(), caption_noise=NO_NOISE)

    def __post_init__(self):
        if set(self.kinds) != set(KINDS) or any(p < 0 for p in self.kinds.values()) or sum(self.kinds.values()) <= 0:
            raise ValueError(f"kinds must give a non-negative weight to each of {KINDS}")
        for bg, shape in self.companions.items():
            if bg not in BACKGROUNDS or shape not in SHAPES:
                raise ValueError(f"companion {bg!r}: {shape!r} names an unknown background or shape")
        unknown = [l for l in self.held_out if l not in LABELS]
        if unknown:
            raise ValueError(f"held-out pairs {unknown} are not labels")
        if not 0 <= self.companion_rate <= 1 or not 0 <= self.synonym_rate <= 1:
            raise ValueError("companion_rate and synonym_rate are shares in [0, 1]")

    def allowed(self) -> np.ndarray:
        """Label indices that may occur (held-out pairs removed)."""
        held = {LABELS.index(l) for l in self.held_out}
        return np.array([i for i in range(len(LABELS)) if i not in held])


def _pick_label(rng: np.random.Generator, cfg: WorldConfig, background: int, exclude: int = -1) -> int:
    choices = cfg.allowed()
    choices = choices[choices != exclude]
    companion = cfg.companions.get(list(BACKGROUNDS)[background])
    if companion is not None and rng.random() < cfg.companion_rate:
        usual = choices[choices % len(SHAPES) == SHAPES.index(companion)]
        if len(usual):
            return int(rng.choice(usual))
    return int(rng.choice(choices))


def _thing(label: int, size: str, cx: float, cy: float, r: float) -> Thing:
    return Thing(shape=label % len(SHAPES), colour=label // len(SHAPES), size=size, cx=cx, cy=cy, r=r)


def sample_scene(rng: np.random.Generator, cfg: WorldConfig, kind: str | None = None,
                 label: int | None = None, background: int | None = None) -> Scene:
    """Draw one scene. ``kind``, ``label`` (of the first object) and ``background`` fix
    those choices; the rest follows ``cfg``."""
    kinds = list(cfg.kinds)
    if kind is None:
        p = np.array([cfg.kinds[k] for k in kinds], dtype=float)
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    bg = int(rng.integers(len(BACKGROUNDS))) if background is None else background
    if kind == "empty":
        return Scene(bg, (), "empty")
    first = _pick_label(rng, cfg, bg) if label is None else label
    if kind == "one":
        size = "big" if rng.random() < cfg.big_rate else "small"
        r = float(rng.uniform(*RADIUS[(size, 1)]))
        # One of five places, jittered, so that "in the left" is never a close call.
        dx, dy = ANCHORS[POSITIONS[int(rng.integers(len(POSITIONS)))]]
        reach = 0.5 - r - 0.03
        cx, cy = (0.5 + d * reach + float(rng.uniform(-0.04, 0.04)) if d else 0.5 + float(rng.uniform(-0.05, 0.05))
                  for d in (dx, dy))
        return Scene(bg, (_thing(first, size, min(max(cx, r), 1 - r), min(max(cy, r), 1 - r), r),), "one")
    axis = "horizontal" if rng.random() < 0.5 else "vertical"
    if kind == "many":
        n = int(rng.integers(2, 4))
        labels = [first] * n
    else:
        n, labels = 2, [first, _pick_label(rng, cfg, bg, exclude=first)]
    things = []
    # One line across the axis for all of them, each a little off it: two objects placed
    # independently across the axis could sit on a diagonal, where "left of" and "above"
    # are both true and no judge could tell which one the caption meant.
    r_max = RADIUS[("small", n)][1]
    line = float(rng.uniform(r_max + 0.08, 1 - r_max - 0.08))
    for i, lab in enumerate(labels):
        r = float(rng.uniform(*RADIUS[("small", n)]))
        # Slot i of n along the axis, jittered.
        along = (i + 0.5) / n + float(rng.uniform(-0.04, 0.04))
        across = line + float(rng.uniform(-0.05, 0.05))
        cx, cy = (along, across) if axis == "horizontal" else (across, along)
        things.append(_thing(lab, "small", cx, cy, r))
    return Scene(bg, tuple(things), kind, axis)


@dataclass
class SceneBatch:
    """images: uint8 ``(N, 3, H, W)``; captions: N strings; scenes: the N scenes drawn."""

    images: torch.Tensor
    captions: list[str]
    scenes: list[Scene]

    def float_images(self) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.float() / 255.0

    @property
    def labels(self) -> torch.Tensor:
        """Label of each scene's first object ``(N,)``; -1 for empty scenes."""
        return torch.tensor([s.label for s in self.scenes], dtype=torch.long)


def describe_all(scenes: list[Scene], seed: int, synonym_rate: float,
                 noise: CaptionNoise = NO_NOISE) -> list[str]:
    """Captions of ``scenes`` from their own random stream (``[seed, 1]``), so a scene does
    not depend on how it is described, and the same scenes relabelled (:func:`relabel`)
    are worded alike."""
    words = np.random.default_rng([seed, 1])
    return [describe(s, words, synonym_rate, noise) for s in scenes]


def relabel(scene: Scene, label: int) -> Scene:
    """The scene with its first object (every object, for several alike) turned into
    ``label``, in the same place and size."""
    swap = range(len(scene.things)) if scene.kind == "many" else range(min(1, len(scene.things)))
    things = tuple(replace(t, shape=label % len(SHAPES), colour=label // len(SHAPES)) if i in swap else t
                   for i, t in enumerate(scene.things))
    return replace(scene, things=things)


def _render_chunk(args: tuple[list[Scene], int]) -> np.ndarray:
    scenes, resolution = args
    return np.stack([render(s, resolution) for s in scenes])


def draw_scenes(n: int, seed: int, config: WorldConfig | None = None, kind: str | None = None,
                labels: list[int] | None = None) -> tuple[list[Scene], list[str]]:
    """The scenes and captions of :func:`make_dataset` with the same arguments, without
    drawing the images (what a training statistic needs)."""
    cfg = config or WorldConfig()
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, cfg, kind, None if labels is None else int(labels[i])) for i in range(n)]
    return scenes, describe_all(scenes, seed, cfg.synonym_rate, cfg.caption_noise)


def make_dataset(n: int, seed: int, config: WorldConfig | None = None, resolution: int = 32,
                 kind: str | None = None, labels: list[int] | None = None, workers: int = 1) -> SceneBatch:
    """Draw ``n`` scenes, their images and captions, deterministically from ``seed``.

    ``kind`` fixes the kind of every scene; ``labels`` (length ``n``) the first object's
    label. ``workers`` > 1 renders in a process pool; the result does not depend on it.
    """
    scenes, captions = draw_scenes(n, seed, config, kind, labels)
    chunks = [scenes[i:i + 2048] for i in range(0, n, 2048)]
    if workers > 1 and len(chunks) > 1:
        with Pool(workers) as pool:
            arrays = pool.map(_render_chunk, [(c, resolution) for c in chunks])
    else:
        arrays = [_render_chunk((c, resolution)) for c in chunks]
    images = torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()
    return SceneBatch(images=images, captions=captions, scenes=scenes)


NOISE_EFFECTS = {
    "absent_object": "one-object captions naming a second object the image lacks: late objects neglected",
    "late_object": "one-object captions naming another object first: a later word takes the object's place",
    "colour_swap": "two-object captions with the colours swapped: attribute leakage",
    "wrong_count": "'two' for three and 'three' for two: counts drift",
    "wrong_relation": "two-object captions with the relation reversed: relations ignored",
    "wrong_shape": "one-object captions naming another shape: a place word pulls its usual shape in (background takes over)",
}


def bias_table(cfg: WorldConfig | None = None):
    """The world's deliberate biases, one row each: ``bias``, ``parameter``, ``value`` and
    the failure it is there to produce (for the toy-world report)."""
    import pandas as pd

    from .grammar import SYNONYMS

    cfg = cfg or WorldConfig()
    companions = ", ".join(f"{bg}: {shape}s" for bg, shape in cfg.companions.items())
    return pd.DataFrame([
        {"bias": "co-occurrence", "parameter": "companions, companion_rate",
         "value": f"{companions} ({cfg.companion_rate:.0%} of objects on that background are of its shape)",
         "produces": "a background word pulls its companion shape in (context words)"},
        {"bias": "unseen compositions", "parameter": "held_out", "value": ", ".join(cfg.held_out),
         "produces": "colour-shape pairs never drawn in training, though every word is known"},
        {"bias": "rare words", "parameter": "synonym_rate",
         "value": f"{cfg.synonym_rate:.0%}: " + ", ".join(f"{v} ({k})" for k, v in SYNONYMS.items()),
         "produces": "words seen a few hundred times; 'sand' (a place, a colour) and 'plus' (a shape, 'and') have two senses"},
        *[{"bias": "wrong captions", "parameter": f"caption_noise.{name}", "value": f"{rate:.0%}",
           "produces": NOISE_EFFECTS[name]} for name, rate in cfg.caption_noise.rates().items()],
        {"bias": "scene mix", "parameter": "kinds",
         "value": ", ".join(f"{k} {v:.0%}" for k, v in cfg.kinds.items()),
         "produces": "counting, spatial relations and binding two objects' attributes are rarer than one object"},
    ])
