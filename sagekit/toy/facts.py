"""What a toy prompt states, fact by fact, and which toy judge checks each fact.

A prompt of the toy grammar (:mod:`sagekit.toy.grammar`) is read back into
:class:`Fact` s — each object it names, a count, a relation between two objects, a lone
object's position, the place — as TIFA / DSG turn a prompt into questions. Each fact names
the toy judge that checks it and the labels of that judge under which it holds;
:func:`check` reads images with those judges and says which facts failed, and how (a
failed object whose shape is there in another colour failed by its ``colour``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .grammar import NUMBERS, PLACES, SYNONYMS, place_named
from .scenes import COLOURS, LABELS, PLURALS, POSITIONS, SHAPES

CATEGORIES = ("object", "colour", "count", "relation", "position", "background")
# the toy judge that checks each kind of fact ("toy-ensemble": the object judges together)
FACT_JUDGES = {"object": "toy-ensemble", "count": "toy-count", "relation": "toy-relation",
               "position": "toy-position", "background": "toy-background"}
# relation words -> (axis, whether the first-named object is the first: left, or on top)
RELATIONS = {"left of": ("left", True), "right of": ("left", False), "next to": ("left", None),
             "above": ("top", True), "below": ("top", False)}


@dataclass(frozen=True)
class Fact:
    """One thing a prompt states: its ``category`` (one of :data:`CATEGORIES` but
    "colour"), the judge that checks it (a key of :data:`FACT_JUDGES`' values), the labels
    under which it holds, and how the prompt says it. It holds when one of ``holds`` is
    among the judge's ``top`` most probable labels (two objects named: each is one of the
    object judges' top two)."""

    category: str
    judge: str
    holds: tuple[str, ...]
    text: str
    top: int = 1


def _mentions(words: list[str]) -> list[tuple[int, int, str | None, str]]:
    """Each object named: ``(first word, last word, colour or None, shape)``, in order."""
    colour_of = {w: c for c in COLOURS for w in (c, SYNONYMS.get(c)) if w}
    shape_of = {w: s for s in SHAPES for w in (s, SYNONYMS.get(s), PLURALS[s]) if w}
    padded = words + ["", ""]
    out = []
    for i, w in enumerate(words):
        shape = shape_of.get(w)
        if shape is None or (w == "plus" and padded[i + 1] in ("a", "an")):  # "plus a": the conjunction
            continue
        if i and padded[i - 1] in colour_of:
            out.append((i - 1, i, colour_of[padded[i - 1]], shape))
        elif padded[i + 1] == "in" and padded[i + 2] in colour_of:  # "a star in red"
            out.append((i, i + 2, colour_of[padded[i + 2]], shape))
        else:
            out.append((i, i, None, shape))
    return out


def facts(prompt: str) -> list[Fact]:
    """The facts ``prompt`` states, in a fixed order: objects, count, relation, position,
    place. Words the grammar does not know state nothing."""
    words = prompt.lower().replace(",", " , ").split()
    mentions = _mentions(words)
    named = list(dict.fromkeys((c, s) for _, _, c, s in mentions))
    out = []
    for colour, shape in named:
        holds = (f"{colour} {shape}",) if colour else tuple(l for l in LABELS if l.endswith(f" {shape}"))
        out.append(Fact("object", FACT_JUDGES["object"], holds, f"{colour or 'a'} {shape}", top=min(len(named), 2)))
    for first, _, colour, shape in mentions:
        if first and words[first - 1] in NUMBERS.values() and len(mentions) == 1:
            out.append(Fact("count", FACT_JUDGES["count"], (words[first - 1],), f"{words[first - 1]} {PLURALS[shape]}"))
    if len(mentions) == 2:
        (_, a_end, ca, sa), (b_start, _, cb, sb) = mentions
        between = " ".join(w for w in words[a_end + 1:b_start] if w not in ("a", "an", "the"))
        relation = next((r for r in RELATIONS if between.endswith(r)), None)
        if relation and ca and cb and (ca, sa) != (cb, sb):
            axis, first_is_a = RELATIONS[relation]
            a, b = f"{ca} {sa}", f"{cb} {sb}"
            side = "on the left" if axis == "left" else "on top"
            firsts = (a, b) if first_is_a is None else ((a,) if first_is_a else (b,))
            out.append(Fact("relation", FACT_JUDGES["relation"], tuple(f"{f} {side}" for f in firsts),
                            f"{a} {relation} {b}"))
    if len(mentions) == 1 and mentions[0][2] is not None:
        at = " ".join(words)
        position = next((p for p in POSITIONS if f"in the {p}" in at), None)
        if position:
            out.append(Fact("position", FACT_JUDGES["position"], (position,), f"in the {position}"))
    place = place_named(" ".join(words))
    if place:
        out.append(Fact("background", FACT_JUDGES["background"], (place,), PLACES[place][0]))
    return out


@dataclass(frozen=True)
class Reading:
    """A fact as the judges read it in one image: whether it held, the judge's top labels
    (as many as the fact looks at) and, for a fact that failed, its failure's category."""

    fact: Fact
    held: bool
    seen: tuple[str, ...]
    category: str | None


def check(judges: Mapping[str, torch.nn.Module], images: torch.Tensor, prompt: str) -> list[list[Reading]]:
    """Per image ``(B, 3, H, W)`` in [0, 1], a :class:`Reading` of each fact of ``prompt``;
    ``judges``: judge name -> loaded judge, for every judge the facts name."""
    stated = facts(prompt)
    tops: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name in dict.fromkeys(f.judge for f in stated):
            if name not in judges:
                raise KeyError(f"the facts of {prompt!r} need judge {name!r}")
            tops[name] = judges[name](images.to(judges[name].device)).cpu().argsort(-1, descending=True)[:, :2]
    out = []
    for b in range(len(images)):
        row = []
        for f in stated:
            labels = judges[f.judge].labels
            seen = tuple(labels[int(i)] for i in tops[f.judge][b, :f.top])
            held = any(s in f.holds for s in seen)
            category = None
            if not held:
                shapes = {h.split()[-1] for h in f.holds}
                category = "colour" if f.category == "object" and any(s.split()[-1] in shapes for s in seen) \
                    else f.category
            row.append(Reading(f, held, seen, category))
        out.append(row)
    return out


def failed(readings: Sequence[Reading]) -> list[str]:
    """The categories of the facts that failed in one image, in the facts' order."""
    return [r.category for r in readings if not r.held]
