"""Why did the toy generator fail? A category per failure, and the training data behind it.

SAGE sorted its failures into causes by hand. In the toy world every attribute of an image
has a judge, and every prompt a parse (the grammar is known), so a failure's category is
computed: the first of these that holds, in order —

``distorted`` (the realism judge says corrupted), ``empty scene`` (the count judge says
none), ``count wrong`` (the prompt names a count the count judge does not see),
``relation wrong`` (the prompt's object is drawn but the relation judge disagrees with the
prompt's relation), ``colour wrong`` (the object's shape in another colour),
``another shape drawn`` (its colour on another shape), ``named object missing`` (another
object altogether); ``right`` when none holds.

And because the training data is a function of a seed, each prompt can be looked up in
it: how many training captions held the prompt's words together, and how many of their
images held the prompt's object (:func:`training_counts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .grammar import NUMBERS, objects_named
from .scenes import COUNTS, LABELS, SHAPES
from .world import WorldConfig, draw_scenes

CATEGORIES = ("distorted", "empty scene", "count wrong", "relation wrong", "colour wrong", "another shape drawn",
              "named object missing", "right")
# Words that carry no fact: the rest of a prompt (colours, shapes, places, counts,
# relations, sizes) is the "word combination" looked up in the training captions.
FUNCTION_WORDS = frozenset({"a", "an", "the", "photo", "drawing", "picture", "of", "on", "in", "at", ","})
RELATIONS_SAID = {"left of": ("on the left", True), "right of": ("on the left", False),
                  "above": ("on top", True), "below": ("on top", False)}


@dataclass(frozen=True)
class Facts:
    """What a prompt states: the labels it names in order, a count (2 or 3) or None, and
    the relation judge's label it implies ("{label} on the left" / "on top") or None."""

    objects: tuple[str, ...]
    count: int | None
    relation: str | None


def facts_of(prompt: str) -> Facts:
    """Parse a toy prompt with the grammar's words."""
    words = prompt.lower().split()
    objects = tuple(objects_named(prompt.lower()))
    count = next((n for n, w in NUMBERS.items() if w in words), None)
    relation = None
    text = f" {' '.join(words)} "
    for said, (side, first_is_it) in RELATIONS_SAID.items():
        if f" {said} " in text and len(objects) >= 2 and not any(o.startswith("None") for o in objects[:2]):
            relation = f"{objects[0] if first_is_it else objects[1]} {side}"
    return Facts(objects, count, relation)


@torch.no_grad()
def categorize(images: torch.Tensor, label: str, facts: Facts, judges: dict) -> list[str]:
    """One :data:`CATEGORIES` entry per image ``(N, 3, H, W)`` in [0, 1], for a prompt about
    ``label`` stating ``facts``. ``judges``: ``{"object", "count", "relation", "realism"}``
    (toy judges: the ensemble, toy-count, toy-relation, toy-realism)."""
    real = judges["realism"](images)[:, judges["realism"].label_index("real")]
    count = judges["count"](images).argmax(-1)
    top = judges["object"](images).argmax(-1)
    relation = judges["relation"](images).argmax(-1)
    want = LABELS.index(label)
    out = []
    for i in range(len(images)):
        t = int(top[i])
        if real[i] < 0.5:
            out.append("distorted")
        elif COUNTS[int(count[i])] == "none":
            out.append("empty scene")
        elif facts.count is not None and int(count[i]) != facts.count:
            out.append("count wrong")
        elif t == want:
            said = facts.relation
            wrong = said is not None and judges["relation"].labels[int(relation[i])] != said
            out.append("relation wrong" if wrong else "right")
        elif t % len(SHAPES) == want % len(SHAPES):
            out.append("colour wrong")
        elif t // len(SHAPES) == want // len(SHAPES):
            out.append("another shape drawn")
        else:
            out.append("named object missing")
    return out


def content_words(prompt: str) -> frozenset[str]:
    """The prompt's words that state a fact (its function words left out)."""
    return frozenset(w for w in prompt.lower().split() if w not in FUNCTION_WORDS)


def training_counts(prompts: list[str], labels: list[str], n: int = 60000, seed: int = 0,
                    world: WorldConfig | None = None) -> pd.DataFrame:
    """Each prompt looked up in the generators' training data (``n`` scenes from ``seed``
    of ``world``: the shipped models' by default). One row per prompt: ``captions``, how
    many training captions held all its content words; ``with_label``, how many of those
    captions' images held ``label``; ``label_share`` their ratio (NaN with no caption);
    ``most_drawn``: the label most often first in those images."""
    scenes, captions = draw_scenes(n, seed, world or WorldConfig())
    words = [frozenset(c.split()) for c in captions]
    rows = []
    for prompt, label in zip(prompts, labels):
        want = content_words(prompt)
        hits = [i for i, w in enumerate(words) if want <= w]
        has = [any(t.name == label for t in scenes[i].things) for i in hits]
        firsts = pd.Series([scenes[i].things[0].name if scenes[i].things else "nothing" for i in hits], dtype=object)
        rows.append({"prompt": prompt, "label": label, "captions": len(hits), "with_label": int(sum(has)),
                     "label_share": sum(has) / len(hits) if hits else float("nan"),
                     "most_drawn": firsts.mode().iloc[0] if len(firsts) else ""})
    return pd.DataFrame(rows)


def load_judges(device: str = "cpu") -> dict:
    """The toy judges :func:`categorize` reads."""
    from ..models.registry import load_judge

    return {"object": load_judge("toy-ensemble", device), "count": load_judge("toy-count", device),
            "relation": load_judge("toy-relation", device), "realism": load_judge("toy-realism", device)}


def explain(table: pd.DataFrame, images: torch.Tensor, judges: dict, n_train: int = 60000, seed: int = 0
            ) -> pd.DataFrame:
    """Prompts with their images explained: ``table`` rows with ``label``, ``prompt`` and
    ``failure_rate`` and ``images`` ``(L, M, 3, H, W)`` row-aligned, as the prompt search
    returns them. One row per prompt with the count of each category over its images, the
    commonest failure category (``category``, "" if none failed), and the prompt's
    :func:`training_counts`."""
    out = []
    for r, im in zip(table.to_dict("records"), images):
        cats = categorize(im, r["label"], facts_of(r["prompt"]), judges)
        counts = {c: cats.count(c) for c in CATEGORIES}
        failed = pd.Series([c for c in cats if c != "right"], dtype=object)
        out.append({"label": r["label"], "prompt": r["prompt"], "failure_rate": r["failure_rate"],
                    "category": failed.mode().iloc[0] if len(failed) else "", **counts})
    table = pd.DataFrame(out)
    counts = training_counts(table.prompt.tolist(), table.label.tolist(), n_train, seed)
    return table.join(counts.drop(columns=["prompt", "label"]))
