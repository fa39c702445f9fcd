"""What a toy prompt states, fact by fact, and which toy judge checks each fact.

A prompt of the toy grammar (:mod:`sagekit.toy.grammar`) is read back into
:class:`~sagekit.models.facts.Fact` s — each object it names, a count, a relation between
two objects, a lone object's position, the place — as TIFA / DSG turn a prompt into
questions. Each fact names the toy judge trained on it and the labels of that judge under
which it holds; :func:`sagekit.models.facts.check` reads them (a failed object whose
shape is there in another colour fails by its ``colour``).
"""

from __future__ import annotations

from ..models.facts import Fact
from .grammar import NUMBERS, PLACES, SYNONYMS, place_named
from .scenes import COLOURS, LABELS, PLURALS, POSITIONS, SHAPES

CATEGORIES = ("object", "colour", "count", "relation", "position", "background")
# the toy judge that checks each kind of fact ("toy-ensemble": the object judges together)
FACT_JUDGES = {"object": "toy-ensemble", "count": "toy-count", "relation": "toy-relation",
               "position": "toy-position", "background": "toy-background"}
# relation words -> (axis, whether the first-named object is the first: left, or on top)
RELATIONS = {"left of": ("left", True), "right of": ("left", False), "next to": ("left", None),
             "above": ("top", True), "below": ("top", False)}


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
        near = tuple(l for l in LABELS if l.endswith(f" {shape}") and l not in holds)  # the shape, another colour
        out.append(Fact("object", FACT_JUDGES["object"], f"{colour or 'a'} {shape}", holds, top=min(len(named), 2),
                        near=near, near_category="colour"))
    for first, _, colour, shape in mentions:
        if first and words[first - 1] in NUMBERS.values() and len(mentions) == 1:
            out.append(Fact("count", FACT_JUDGES["count"], f"{words[first - 1]} {PLURALS[shape]}", (words[first - 1],)))
    if len(mentions) == 2:
        (_, a_end, ca, sa), (b_start, _, cb, sb) = mentions
        between = " ".join(w for w in words[a_end + 1:b_start] if w not in ("a", "an", "the"))
        relation = next((r for r in RELATIONS if between.endswith(r)), None)
        if relation and ca and cb and (ca, sa) != (cb, sb):
            axis, first_is_a = RELATIONS[relation]
            a, b = f"{ca} {sa}", f"{cb} {sb}"
            side = "on the left" if axis == "left" else "on top"
            firsts = (a, b) if first_is_a is None else ((a,) if first_is_a else (b,))
            out.append(Fact("relation", FACT_JUDGES["relation"], f"{a} {relation} {b}",
                            tuple(f"{f} {side}" for f in firsts)))
    if len(mentions) == 1 and mentions[0][2] is not None:
        at = " ".join(words)
        position = next((p for p in POSITIONS if f"in the {p}" in at), None)
        if position:
            out.append(Fact("position", FACT_JUDGES["position"], f"in the {position}", (position,)))
    place = place_named(" ".join(words))
    if place:
        out.append(Fact("background", FACT_JUDGES["background"], PLACES[place][0], (place,)))
    return out
