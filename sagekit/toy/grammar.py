"""Captions of toy world 2: a small grammar with varied word order, synonyms and two
words with two senses.

- Word order varies: the object is not always the last noun ("at night , a red circle",
  "a red circle on the grass"), and the colour may follow the shape ("a star in red").
- Rare synonyms (``synonym_rate`` of the words that have one): "crimson" for red, "disc"
  for circle, ...
- Two senses: "sand" names a background and, rarely, the colour yellow ("a sand star");
  "plus" names the cross and, rarely, joins two objects ("a red circle plus a blue star").

:func:`describe` words a scene; :func:`vocabulary` lists every word the grammar can use;
:func:`names` and :func:`place_named` read a caption back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .scenes import BACKGROUNDS, COLOURS, PLURALS, SHAPES, Scene

SYNONYMS = {"red": "crimson", "yellow": "sand", "magenta": "pink", "cyan": "teal",
            "circle": "disc", "square": "box", "cross": "plus"}
# Synonyms that also mean something else in the grammar: a place, a conjunction.
TWO_SENSES = {"sand": "a background", "plus": "joins two objects"}
PLACES = {"grass": ("on grass", "on the grass"), "sky": ("in the sky",), "sand": ("on sand", "on the sand"),
          "water": ("in water", "in the water"),
          "night": ("at night",), "stone": ("on stone", "on the stone")}
NUMBERS = {2: "two", 3: "three"}
# Relations by axis; each is (words, whether the first object is named first).
RELATION_WORDS = {"horizontal": (("left of", True), ("right of", False), ("next to", True), ("next to", False)),
                  "vertical": (("above", True), ("below", False))}
SINGLE = ("a photo of {np}", "a photo of {np}", "{np}", "a photo of {np} {place}", "{np} {place}",
          "{place} , {np}", "a photo of {np} in the {pos}", "in the {pos} , {np}", "a drawing of {np}",
          "a picture of {np} {place}")
MANY = ("{n} {c} {ss}", "a photo of {n} {c} {ss}", "{n} {c} {ss} {place}", "{place} , {n} {c} {ss}")
TWO = ("{a} {rel} {b}", "a photo of {a} {rel} {b}", "{a} {rel} {b} {place}", "{a} and {b}")
PAIRED = ("{a} and {b}", "a photo of {a} and {b}", "{a} and {b} {place}")  # captions naming two objects
EMPTY = ("a photo of {noun}", "{noun}", "an empty {noun}", "just {noun}")
FILLER = ("a", "an", "the", "photo", "drawing", "picture", "of", "on", "in", "at", "and", "just", "empty",
          "small", "big", ",", "left", "right", "top", "bottom", "center", "next", "to", "above", "below")


@dataclass(frozen=True)
class CaptionNoise:
    """How often a caption is wrong the way alt-text is wrong (each a share of the captions
    it can apply to). Real captions are written by people about what they noticed; a model
    trained on them learns loose binding, and the failures follow:

    - ``absent_object`` (one object): the caption names a second object the image lacks
      ("a red circle and a blue star" over a lone red circle) -> late objects neglected;
    - ``late_object`` (one object): the caption names another object first and the drawn
      one late ("a blue star and a red circle" over a lone red circle) -> a later object
      takes the earlier one's place;
    - ``colour_swap`` (two objects): each object's colour word attached to the other ->
      attribute leakage;
    - ``wrong_count`` (several alike): two for three, three for two -> counts drift;
    - ``wrong_relation`` (two objects): the relation reversed ("left of" for "right of") ->
      relations ignored;
    - ``wrong_shape`` (one object): the object named as another shape, any other shape alike
      ("a red heart in water" over a red circle). The noise itself knows nothing of places,
      but the world's co-occurrences make a background's usual shape the one most often
      misnamed there, so a prompt's place word can outweigh its shape word -> the
      background takes over (how label noise and context make real models fail).
    """

    absent_object: float = 0.0
    late_object: float = 0.0
    colour_swap: float = 0.0
    wrong_count: float = 0.0
    wrong_relation: float = 0.0
    wrong_shape: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            if not 0 <= getattr(self, f.name) <= 1:
                raise ValueError(f"caption noise {f.name} is a share in [0, 1], got {getattr(self, f.name)!r}")
        if self.absent_object + self.late_object + self.wrong_shape > 1:
            raise ValueError("absent_object + late_object + wrong_shape is a share of one-object captions: at most 1")

    def rates(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


NO_NOISE = CaptionNoise()


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _word(word: str, rng: np.random.Generator, synonym_rate: float) -> str:
    # One draw per word, synonym or not: a scene relabelled to another object is then worded
    # alike (the poisoned captions of the implosion study).
    rare = rng.random() < synonym_rate
    return SYNONYMS[word] if rare and word in SYNONYMS else word


def _noun_phrase(colour: str, shape: str, size: str, rng: np.random.Generator, synonym_rate: float,
                 sized: bool = True) -> str:
    c, s = _word(colour, rng, synonym_rate), _word(shape, rng, synonym_rate)
    if rng.random() < 0.25:
        return f"a {s} in {c}"
    if sized and rng.random() < 0.4:
        return f"a {size} {c} {s}"
    return f"a {c} {s}"


def _other_label(scene: Scene, draws: np.ndarray) -> tuple[str, str]:
    """(colour, shape) of an object not in the scene, from two uniform ``draws``: another
    shape, any colour. A function of the draws and the first object, so a relabelled scene
    is worded alike."""
    first = scene.things[0]
    shape = (first.shape + 1 + int(draws[0] * (len(SHAPES) - 1))) % len(SHAPES)
    colour = int(draws[1] * len(COLOURS)) % len(COLOURS)
    return list(COLOURS)[colour], SHAPES[shape]


def describe(scene: Scene, rng: np.random.Generator, synonym_rate: float = 0.05,
             noise: CaptionNoise = NO_NOISE) -> str:
    """One caption of ``scene``, drawn with ``rng``. Without ``noise`` every caption is true
    of its scene; with it, a share is wrong in the ways :class:`CaptionNoise` names.
    (Every caption draws the same noise numbers first, whatever its scene, so that the
    words after them do not depend on the noise rates' effect on other captions.)"""
    if noise == NO_NOISE:
        return _describe(scene, rng, synonym_rate, NO_NOISE, None)
    return _describe(scene, rng, synonym_rate, noise, rng.random(7))


def _describe(scene: Scene, rng: np.random.Generator, synonym_rate: float, noise: CaptionNoise,
              u: np.ndarray | None) -> str:
    bg = list(BACKGROUNDS)[scene.background]
    place = _pick(rng, PLACES[bg])
    colours = list(COLOURS)
    if scene.kind == "empty":
        return _pick(rng, EMPTY).format(noun=bg)
    first = scene.things[0]
    colour, shape = colours[first.colour], SHAPES[first.shape]
    if scene.kind == "one":
        np_ = _noun_phrase(colour, shape, first.size, rng, synonym_rate)
        caption = _pick(rng, SINGLE).format(np=np_, place=place, pos=scene.position)
        if u is not None and u[0] < noise.absent_object + noise.late_object:
            # worded as a two-object scene is: the absent object named after the drawn one,
            # or before it (the drawn one late)
            other = "a {} {}".format(*_other_label(scene, u[4:6]))
            a, b = (np_, other) if u[0] < noise.absent_object else (other, np_)
            caption = PAIRED[int(u[6] * len(PAIRED))].format(a=a, b=b, place=place)
        elif u is not None and u[0] < noise.absent_object + noise.late_object + noise.wrong_shape:
            # the same words with another shape's name in place of the shape word (no new draws:
            # every other caption keeps the words it has at wrong_shape 0, the other rates alike)
            said = {shape, SYNONYMS.get(shape)}
            other = _other_label(scene, u[4:6])[1]
            caption = caption.replace(np_, " ".join(other if w in said else w for w in np_.split()), 1)
        return caption
    if scene.kind == "many":
        count = scene.count
        if u is not None and u[1] < noise.wrong_count:
            count = 5 - count  # two <-> three
        return _pick(rng, MANY).format(n=NUMBERS[count], c=_word(colour, rng, synonym_rate),
                                       ss=PLURALS[shape], place=place)
    second = scene.things[1]
    colour_b = colours[second.colour]
    if u is not None and u[2] < noise.colour_swap:
        colour, colour_b = colour_b, colour
    a = _noun_phrase(colour, shape, "small", rng, synonym_rate, sized=False)
    b = _noun_phrase(colour_b, SHAPES[second.shape], "small", rng, synonym_rate, sized=False)
    template = _pick(rng, TWO)
    if template == "{a} and {b}":
        joined = "plus" if rng.random() < synonym_rate else "and"
        return f"{a} {joined} {b}"
    rel, first_named_first = _pick(rng, RELATION_WORDS[scene.axis])
    if u is not None and u[3] < noise.wrong_relation and rel != "next to":
        first_named_first = not first_named_first  # the relation word no longer holds
    if not first_named_first:
        a, b = b, a
    return template.format(a=a, b=b, rel=rel, place=place)


def continuation(rng: np.random.Generator) -> str:
    """A phrase people append to a caption, drawn with ``rng``: a second object ("and a blue
    star", "plus a teal box"), a relation to one ("left of a green square"), a count of
    others ("and two red circles") or a place ("in the water"). The caption LM reads
    captions with such tails (:func:`sagekit.toy.training.text_models.lm_corpus`), so the
    words it proposes in the prompt search are those of the alt-text that real models fail on."""
    colour, shape = _pick(rng, list(COLOURS)), _pick(rng, SHAPES)
    np_ = _noun_phrase(colour, shape, "small", rng, synonym_rate=0.05, sized=False)
    kind = _pick(rng, ("object", "relation", "count", "place"))
    if kind == "object":
        return f"{_pick(rng, ('and', 'and', 'plus'))} {np_}"
    if kind == "relation":
        rel, _ = _pick(rng, RELATION_WORDS["horizontal"] + RELATION_WORDS["vertical"])
        return f"{rel} {np_}"
    if kind == "count":
        return f"and {_pick(rng, list(NUMBERS.values()))} {colour} {PLURALS[shape]}"
    return _pick(rng, PLACES[_pick(rng, list(PLACES))])


def vocabulary() -> list[str]:
    """Every word the grammar can write, in a fixed order."""
    words = list(FILLER) + list(COLOURS) + list(SHAPES) + list(PLURALS.values()) + list(BACKGROUNDS)
    words += list(SYNONYMS.values()) + list(NUMBERS.values())
    return list(dict.fromkeys(words))


def names(caption: str, label: str) -> bool:
    """Whether a caption names ``label`` ("{colour} {shape}"): its colour word and its shape
    word (or plural), either by its rare synonym, in any order."""
    colour, shape = label.split()
    words = set(caption.split())
    return bool(words & {colour, SYNONYMS.get(colour)}) and bool(words & {shape, SYNONYMS.get(shape), PLURALS[shape]})


def place_named(caption: str) -> str | None:
    """The background a caption names (as a place, or the whole of an empty scene), or None."""
    words = caption.split()
    for bg, phrases in PLACES.items():
        if any(f" {p} " in f" {caption} " for p in phrases):
            return bg
    if words and words[-1] in BACKGROUNDS and not any(w in PLURALS.values() or w in SHAPES for w in words):
        return words[-1]
    return None


def objects_named(caption: str) -> list[str]:
    """The labels a caption names, in order: each shape word (or synonym, or plural) with
    the colour word just before it ("red circle") or after "in" ("circle in red"); a shape
    named without a colour gives "None {shape}". "plus" before "a" is the conjunction."""
    words = caption.split() + ["", ""]
    colour_of = {w: c for c in COLOURS for w in (c, SYNONYMS.get(c)) if w}
    shape_of = {w: s for s in SHAPES for w in (s, SYNONYMS.get(s), PLURALS[s]) if w}
    out = []
    for i, w in enumerate(words[:-2]):
        shape = shape_of.get(w)
        if shape is None or (w == "plus" and words[i + 1] in ("a", "an")):
            continue
        colour = colour_of.get(words[i - 1]) if i else None
        if colour is None and words[i + 1] == "in":
            colour = colour_of.get(words[i + 2])
        out.append(f"{colour} {shape}")
    return out
