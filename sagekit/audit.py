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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from .models.facts import Fact, check
from .progress import bar
from .stats import rate

TOY_FACTS = "toy-facts"
PROMPT_FACTS = "prompt-facts"  # a kept case's goal: every fact of its prompt holds


@dataclass(frozen=True)
class AuditPrompt:
    """A prompt and the ``(category, question)`` pairs given with it (may be none)."""

    prompt: str
    questions: tuple[tuple[str, str], ...] = field(default=())


class PromptFileError(ValueError):
    """A prompt file that cannot be read: says which line and why."""


# GenEval's ``include`` entries asked as questions: the object, its count (above one), its colour
TEMPLATES = {"object": "Is there a {name} in the image?", "count": "Are there {count} {name}s in the image?",
             "colour": "Is the {name} {color}?"}


def _geneval_questions(row: dict, templates: dict[str, str]) -> list[tuple[str, str]]:
    """GenEval's ``include`` entries as ``(category, question)`` pairs, asked by ``templates``."""
    out = []
    for item in row.get("include", []):
        name = str(item["class"])
        count = int(item.get("count", 1))
        out.append(("object", templates["object"].format(name=name, count=count)))
        if count > 1:
            out.append(("count", templates["count"].format(name=name, count=count)))
        if item.get("color"):
            out.append(("colour", templates["colour"].format(name=name, count=count, color=item["color"])))
    return out


def read_prompts(path: str | Path, templates: dict[str, str] | None = None) -> list[AuditPrompt]:
    """The prompts of a ``.txt`` or ``.jsonl`` file (see the module docstring); GenEval
    entries are asked by ``templates`` (default :data:`TEMPLATES`)."""
    templates = {**TEMPLATES, **(templates or {})}
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
            out.append(AuditPrompt(prompt.strip(), tuple(given or _geneval_questions(row, templates))))
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


def verifier_facts(facts: Sequence[Fact], verifier: str, labels: Sequence[str] | None) -> list[Fact | None]:
    """Each fact as the held-out ``verifier`` reads it, or None where it cannot: a
    question goes to a ``vqa:`` verifier as it is; a label fact to a verifier whose
    ``labels`` hold every label of the fact (the toy world: ``toy-clip`` reads the objects)."""
    out = []
    for f in facts:
        if f.question:
            out.append(replace(f, judge=verifier) if verifier.startswith("vqa:") else None)
        else:
            known = set(labels or ())
            out.append(replace(f, judge=verifier) if known and set(f.holds) | set(f.near) <= known else None)
    return out


def _thumbnails(images: torch.Tensor, side: int) -> torch.Tensor:
    """``images`` shrunk so neither side exceeds ``side`` (kept as they are when smaller)."""
    h, w = images.shape[-2:]
    if max(h, w) <= side:
        return images
    scale = side / max(h, w)
    return torch.nn.functional.interpolate(images, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                                           mode="area")


def audit(draw: Callable[[list[str], list[int]], torch.Tensor], judges: dict, items: Sequence[AuditPrompt],
          facts: Sequence[Sequence[Fact]], seeds: Sequence[int], batch: int = 16,
          verified: Sequence[Sequence[Fact | None]] | None = None, keep: Callable | None = None,
          thumbnail: int = 128) -> tuple[pd.DataFrame, torch.Tensor]:
    """Draw every prompt on every seed (``draw(prompts, seeds) -> (N, 3, H, W)`` in [0, 1])
    and read its ``facts`` with ``judges`` (spec -> judge; the verifier's too). Returns
    the readings, one row per (prompt, seed, fact): ``prompt_index, prompt, seed, image,
    fact, category, text, held, seen, failed_as, p_yes, verifier_held`` (None where the
    fact's ``verified`` entry is None); and the images as thumbnails of at most
    ``thumbnail`` pixels a side (``image`` indexes them). ``keep(rows, drawn, first)``,
    called after each batch with its rows, its full-size images and the ``image`` index of
    the first, stores what should outlive the run."""
    pairs = [(i, s) for i in range(len(items)) for s in seeds]
    rows, images = [], []
    for start in bar(range(0, len(pairs), batch), desc="audit"):
        part = pairs[start:start + batch]
        drawn = draw([items[i].prompt for i, _ in part], [s for _, s in part])
        images.append(_thumbnails(drawn, thumbnail))
        batch_rows = []
        for i in dict.fromkeys(i for i, _ in part):  # each prompt's images of the batch, read together
            if not facts[i]:
                continue
            js = [j for j, (k, _) in enumerate(part) if k == i]
            readings = check(judges, drawn[js], list(facts[i]))
            second = list(verified[i]) if verified is not None else [None] * len(facts[i])
            present = [f for f in second if f is not None]
            again = check(judges, drawn[js], present) if present else [[] for _ in js]
            for j, row, seen in zip(js, readings, again):
                seen = iter(seen)
                for k, (r, v) in enumerate(zip(row, second)):
                    batch_rows.append({"prompt_index": i, "prompt": items[i].prompt, "seed": int(part[j][1]),
                                       "image": start + j, "fact": k, "category": r.fact.category,
                                       "text": r.fact.text, "held": r.held, "seen": ", ".join(r.seen),
                                       "failed_as": r.category, "p_yes": r.p_yes,
                                       "verifier_held": None if v is None else next(seen).held})
        batch_rows.sort(key=lambda r: (r["image"], r["fact"]))
        if keep is not None:
            keep(pd.DataFrame(batch_rows, columns=COLUMNS), drawn, start)
        rows += batch_rows
    return pd.DataFrame(rows, columns=COLUMNS), torch.cat(images) if images else torch.zeros(0, 3, 1, 1)


def verifier_verdict(held: Sequence[bool], verifier_held: Sequence[bool | None]) -> bool | None:
    """Whether the held-out verifier confirms that an image fails, from each fact's reading
    by the judge (``held``) and by the verifier (None: it cannot read that fact): True when
    it reads a fact as failed; False when it reads a fact the judge failed and holds it (and
    fails none); None when it read none of the facts the judge failed (it cannot say)."""
    read = [(h, v) for h, v in zip(held, verifier_held) if v is not None]
    if any(not v for _, v in read):
        return True
    return False if any(not h for h, _ in read) else None


COLUMNS = ["prompt_index", "prompt", "seed", "image", "fact", "category", "text", "held", "seen", "failed_as", "p_yes",
           "verifier_held"]


def failing_images(readings: pd.DataFrame) -> pd.DataFrame:
    """One row per image in which a fact failed: ``image, prompt_index, prompt, seed,
    failed`` (the failed facts' texts), ``categories`` (their categories of failure) and
    ``verifier_failed`` (:func:`verifier_verdict`: True, False, or None where it cannot say)."""
    out = []
    for image, rows in readings.groupby("image", sort=True):
        bad = rows[~rows["held"]]
        if bad.empty:
            continue
        verdict = verifier_verdict(rows["held"].tolist(), [None if pd.isna(v) else bool(v)
                                                           for v in rows["verifier_held"]])
        out.append({"image": int(image), "prompt_index": int(rows["prompt_index"].iloc[0]),
                    "prompt": rows["prompt"].iloc[0], "seed": int(rows["seed"].iloc[0]),
                    "failed": list(bad["text"]), "categories": list(bad["failed_as"]), "verifier_failed": verdict})
    return pd.DataFrame(out, columns=["image", "prompt_index", "prompt", "seed", "failed", "categories",
                                      "verifier_failed"])


def judge_agreement(readings: pd.DataFrame) -> pd.DataFrame:
    """How often the held-out verifier reads a fact as the judge does, per category and in
    all (``k`` of ``n`` facts both read, Wilson 95% interval); empty without a verifier."""
    both = readings.dropna(subset=["verifier_held"])
    rows = []
    for category, group in [("all", both)] + list(both.groupby("category", sort=True)):
        if len(group):
            same = int((group["held"].astype(bool) == group["verifier_held"].astype(bool)).sum())
            rows.append({"category": category, **rate(same, len(group))})
    return pd.DataFrame(rows, columns=["category", "k", "n", "rate", "lo", "hi"])


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
    rated = ["k", "n", "rate", "lo", "hi"]
    return (pd.DataFrame(by_prompt, columns=["prompt_index", "prompt", *rated]),
            pd.DataFrame(by_category, columns=["category", *rated]))


def goal_of(facts: Sequence[Fact]) -> dict:
    """The goal a kept case records: its prompt's facts, each with the judge that reads it
    and how (``reread`` reads them again)."""
    return {"goal": PROMPT_FACTS, "facts": [{"category": f.category, "text": f.text, "question": f.question,
                                             "holds": list(f.holds), "top": f.top, "judge": f.judge} for f in facts]}


def reread(goal: dict, images: torch.Tensor, load: Callable[[str], torch.nn.Module], verifier: str = "",
           judge: str | None = None) -> tuple[list[bool], list[bool | None]]:
    """A kept case's images ``(N, 3, H, W)`` read again under its ``goal`` (:func:`goal_of`):
    per image whether a fact failed for its judges (a ``vqa:`` ``judge`` in place of the
    one that asked the questions), and the ``verifier``'s :func:`verifier_verdict` (None
    throughout without one). ``load(spec)`` gives a judge."""
    if judge and not judge.startswith("vqa:") and any(f["question"] for f in goal["facts"]):
        raise ValueError(f"this case's facts are questions: only a 'vqa:<model>' judge can answer them, not {judge!r}")
    facts = [Fact(f["category"], judge if judge and f["question"] else f["judge"], f["text"], tuple(f["holds"]),
                  top=int(f.get("top", 1)), question=f["question"]) for f in goal["facts"]]
    second = [None] * len(facts)
    if verifier:
        from .models.registry import judge_label_names

        second = verifier_facts(facts, verifier, judge_label_names(verifier))
    present = [f for f in second if f is not None]
    judges = {spec: load(spec) for spec in {f.judge for f in facts + present}}
    first = check(judges, images, facts)
    again = check(judges, images, present) if present else [[] for _ in range(len(images))]
    failed, verdicts = [], []
    for row, seen in zip(first, again):
        seen = iter(seen)
        by_verifier = [None if v is None else next(seen).held for v in second]
        failed.append(not all(r.held for r in row))
        verdicts.append(verifier_verdict([r.held for r in row], by_verifier) if verifier else None)
    return failed, verdicts
