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
EMPTY = ("a photo of {noun}", "{noun}", "an empty {noun}", "just {noun}")
FILLER = ("a", "an", "the", "photo", "drawing", "picture", "of", "on", "in", "at", "and", "just", "empty",
          "small", "big", ",", "left", "right", "top", "bottom", "center", "next", "to", "above", "below")


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


def describe(scene: Scene, rng: np.random.Generator, synonym_rate: float = 0.05) -> str:
    """One caption of ``scene``, drawn with ``rng``. Every caption is true of its scene."""
    bg = list(BACKGROUNDS)[scene.background]
    place = _pick(rng, PLACES[bg])
    colours = list(COLOURS)
    if scene.kind == "empty":
        return _pick(rng, EMPTY).format(noun=bg)
    first = scene.things[0]
    colour, shape = colours[first.colour], SHAPES[first.shape]
    if scene.kind == "one":
        np_ = _noun_phrase(colour, shape, first.size, rng, synonym_rate)
        return _pick(rng, SINGLE).format(np=np_, place=place, pos=scene.position)
    if scene.kind == "many":
        return _pick(rng, MANY).format(n=NUMBERS[scene.count], c=_word(colour, rng, synonym_rate),
                                       ss=PLURALS[shape], place=place)
    second = scene.things[1]
    a = _noun_phrase(colour, shape, "small", rng, synonym_rate, sized=False)
    b = _noun_phrase(colours[second.colour], SHAPES[second.shape], "small", rng, synonym_rate, sized=False)
    template = _pick(rng, TWO)
    if template == "{a} and {b}":
        joined = "plus" if rng.random() < synonym_rate else "and"
        return f"{a} {joined} {b}"
    rel, first_named_first = _pick(rng, RELATION_WORDS[scene.axis])
    if not first_named_first:
        a, b = b, a
    return template.format(a=a, b=b, rel=rel, place=place)


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
