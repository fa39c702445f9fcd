"""Facts a prompt states, and judges reading them in images (TIFA / DSG's idea: a prompt
is right in an image when each thing it states is).

A :class:`Fact` names the judge that checks it and how: by label (it holds when one of
``holds`` is among the judge's ``top`` labels: a toy attribute judge) or by question (it
holds when the judge, a :class:`~sagekit.models.vqa.VQAJudge`, answers yes with
P >= 0.5). :func:`check` gives a :class:`Reading` of every fact in every image; a failed
fact's category is the fact's own, or ``near_category`` when the judge saw one of its
``near`` labels (the toy world: the right shape in another colour is a colour failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch


@dataclass(frozen=True)
class Fact:
    """One thing a prompt states: its ``category`` ("object", "count", ... or "prompt" for
    a whole-prompt question), the judge that checks it (a judge spec), the labels under
    which it holds (or a yes/no ``question``), and how the prompt says it."""

    category: str
    judge: str
    text: str
    holds: tuple[str, ...] = ()
    top: int = 1
    question: str = ""
    near: tuple[str, ...] = ()
    near_category: str = ""


@dataclass(frozen=True)
class Reading:
    """A fact as a judge read it in one image: whether it held, what the judge saw (its top
    labels, or "yes" / "no" with P(yes)), and a failed fact's category."""

    fact: Fact
    held: bool
    seen: tuple[str, ...]
    category: str | None
    p_yes: float | None = None


def check(judges: Mapping[str, torch.nn.Module], images: torch.Tensor, facts: Sequence[Fact]) -> list[list[Reading]]:
    """Per image ``(B, 3, H, W)`` in [0, 1], a :class:`Reading` of each fact; ``judges``:
    judge spec -> loaded judge, for every judge the facts name."""
    missing = sorted({f.judge for f in facts} - set(judges))
    if missing:
        raise KeyError(f"these facts need the judges {', '.join(missing)}")
    b = len(images)
    read: dict[Fact, list[tuple[bool, tuple[str, ...], float | None]]] = {}
    with torch.no_grad():
        tops = {}
        for f in facts:
            judge = judges[f.judge]
            x = images.to(judge.device)
            if f.question:
                p = judge.yes(x, [f.question] * b).float().cpu()
                read[f] = [(bool(p[i] >= 0.5), ("yes" if p[i] >= 0.5 else "no",), float(p[i])) for i in range(b)]
                continue
            if f.judge not in tops:
                tops[f.judge] = judge(x).cpu().argsort(-1, descending=True)
            seen = [tuple(judge.labels[int(j)] for j in tops[f.judge][i, :f.top]) for i in range(b)]
            read[f] = [(any(s in f.holds for s in seen[i]), seen[i], None) for i in range(b)]
    out = []
    for i in range(b):
        row = []
        for f in facts:
            held, seen, p = read[f][i]
            category = None if held else (f.near_category if set(seen) & set(f.near) else f.category)
            row.append(Reading(f, held, seen, category, p))
        out.append(row)
    return out


def failed(readings: Sequence[Reading]) -> list[str]:
    """The categories of the facts that failed in one image, in the facts' order."""
    return [r.category for r in readings if not r.held]
