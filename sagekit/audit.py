"""Audit a prompt list: every prompt drawn on N seeds and read fact by fact.

Prompts come from a text file (one per line; ``#`` starts a comment) or a JSON-lines file
whose rows hold a ``"prompt"`` and, optionally, its facts as questions
(``"questions": [{"category": "count", "question": "Are there two dogs?"}, ...]``) or in
GenEval's metadata form (``"include": [{"class": "dog", "count": 2, "color": "red"}]``).
A prompt's facts are the toy grammar's (``judge="toy-facts"``: each checked by the toy
judge trained on it) or questions to a VQA judge (``judge="vqa:<model>"``: the given
questions, or one VQAScore question of the whole prompt).

:func:`audit` returns a table with one row per (prompt, seed, fact); :func:`rates` turns
it into failure rates with their counts and Wilson intervals, per prompt and per category.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from .models.facts import Fact, check
from .progress import bar
from .stats import rate

TOY_FACTS = "toy-facts"


@dataclass(frozen=True)
class AuditPrompt:
    """A prompt and the ``(category, question)`` pairs given with it (may be none)."""

    prompt: str
    questions: tuple[tuple[str, str], ...] = field(default=())


class PromptFileError(ValueError):
    """A prompt file that cannot be read: says which line and why."""


def _geneval_questions(row: dict) -> list[tuple[str, str]]:
    """GenEval's ``include`` entries as questions: the object, its count, its colour."""
    out = []
    for item in row.get("include", []):
        name = str(item["class"])
        count = int(item.get("count", 1))
        out.append(("object", f"Is there a {name} in the image?"))
        if count > 1:
            out.append(("count", f"Are there {count} {name}s in the image?"))
        if item.get("color"):
            out.append(("colour", f"Is the {name} {item['color']}?"))
    return out


def read_prompts(path: str | Path) -> list[AuditPrompt]:
    """The prompts of a ``.txt`` or ``.jsonl`` file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"no prompt file at {path}")
    if path.suffix not in (".txt", ".jsonl"):
        raise PromptFileError(f"{path.name}: a prompt file is .txt (one prompt a line) or .jsonl")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or (path.suffix == ".txt" and line.startswith("#")):
            continue
        if path.suffix == ".txt":
            out.append(AuditPrompt(line))
            continue
        try:
            row = json.loads(line)
            prompt = row["prompt"]
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError("its prompt is not a non-empty string")
            given = [(str(q.get("category", "fact")), str(q["question"])) if isinstance(q, dict) else ("fact", str(q))
                     for q in row.get("questions", [])]
            out.append(AuditPrompt(prompt.strip(), tuple(given or _geneval_questions(row))))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else str(e)
            raise PromptFileError(f"{path.name} line {n}: {reason}") from None
    if not out:
        raise PromptFileError(f"{path.name} holds no prompt")
    return out


def facts_for(item: AuditPrompt, judge: str, question: str | None = None) -> list[Fact]:
    """The facts of ``item`` that ``judge`` checks (:data:`TOY_FACTS` or a ``vqa:`` spec);
    ``question``: the VQAScore template for prompts given without questions."""
    if judge == TOY_FACTS:
        from .toy.facts import facts

        return facts(item.prompt)
    from .models.vqa import PROMPT_QUESTION, prompt_facts

    return prompt_facts(judge, item.prompt, item.questions, question or PROMPT_QUESTION)


def audit(draw: Callable[[list[str], list[int]], torch.Tensor], judges: dict, items: Sequence[AuditPrompt],
          facts: Sequence[Sequence[Fact]], seeds: Sequence[int], batch: int = 16
          ) -> tuple[pd.DataFrame, torch.Tensor]:
    """Draw every prompt on every seed (``draw(prompts, seeds) -> (N, 3, H, W)`` in [0, 1])
    and read its ``facts`` with ``judges`` (spec -> judge). Returns the readings, one row
    per (prompt, seed, fact): ``prompt_index, prompt, seed, image, fact, category, text,
    held, seen, failed_as, p_yes``; and the images ``(P * S, 3, H, W)`` (``image`` indexes them)."""
    pairs = [(i, s) for i in range(len(items)) for s in seeds]
    rows, images = [], []
    for start in bar(range(0, len(pairs), batch), desc="audit"):
        part = pairs[start:start + batch]
        drawn = draw([items[i].prompt for i, _ in part], [s for _, s in part])
        images.append(drawn)
        for j, (i, s) in enumerate(part):
            readings = check(judges, drawn[j:j + 1], list(facts[i]))[0] if facts[i] else []
            for k, r in enumerate(readings):
                rows.append({"prompt_index": i, "prompt": items[i].prompt, "seed": int(s), "image": start + j,
                             "fact": k, "category": r.fact.category, "text": r.fact.text, "held": r.held,
                             "seen": ", ".join(r.seen), "failed_as": r.category, "p_yes": r.p_yes})
    columns = ["prompt_index", "prompt", "seed", "image", "fact", "category", "text", "held", "seen", "failed_as",
               "p_yes"]
    return pd.DataFrame(rows, columns=columns), torch.cat(images) if images else torch.zeros(0, 3, 1, 1)


def rates(readings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Failure rates with counts and Wilson 95% intervals: per prompt (an image fails when
    any of its facts fails; ``k`` of ``n`` images) and per category of failure (``k`` facts
    failed as that category of ``n`` facts of the category stated)."""
    per_image = readings.groupby(["prompt_index", "prompt", "seed"], sort=True)["held"].all().reset_index()
    by_prompt = []
    for (index, prompt), group in per_image.groupby(["prompt_index", "prompt"], sort=True):
        by_prompt.append({"prompt_index": index, "prompt": prompt, **rate(int((~group["held"]).sum()), len(group))})
    by_category = []
    stated = readings["category"].value_counts()
    for category in sorted(set(readings["category"]) | set(readings["failed_as"].dropna())):
        # a colour failure is a failure of an object fact: counted over the object facts
        n = int(stated.get(category, 0) or stated.get("object", 0))
        by_category.append({"category": category, **rate(int((readings["failed_as"] == category).sum()), n)})
    return pd.DataFrame(by_prompt), pd.DataFrame(by_category)
