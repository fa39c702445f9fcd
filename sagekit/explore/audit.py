"""Prompt-audit explorer: pick an audited (or searched) prompt or type one; it is drawn on a
few fresh seeds (the ``explore`` stream, never the audit's) and every fact it states is
read in each image, as the audit read it: held (✓) or failed (✗, with what the judge saw)."""

from __future__ import annotations

import pandas as pd
import torch

from ..audit import AuditPrompt, facts_for
from ..models.facts import check
from ..seeds import seeds as seed_stream
from .base import Explorer, Frame


def explorer(gen, plan, judge: str, question: str, steps=None, guidance=None, seed: int = 0,
             searched: pd.DataFrame | None = None, shown: int = 3) -> Explorer:
    """The explorer of the prompt-audit notebook: ``gen``, the audit's ``plan``
    (:class:`~sagekit.studies.prompt_audit.Plan`: prompts, facts, loaded judges), its
    ``judge`` spec and VQAScore ``question``, the sampling settings, and the search's
    table (a found prompt is read by the facts of the prompt it grew from)."""
    import ipywidgets as w

    from ..models.registry import load_judge

    stated = {item.prompt: facts for item, facts in zip(plan.items, plan.facts)}
    if searched is not None:
        stated |= {r.prompt: stated[r.label] for r in searched.itertuples() if r.label in stated}
    judges = dict(plan.judges)
    start = plan.items[0].prompt
    controls = {
        "prompt": w.Combobox(value=start, options=list(stated), description="prompt", ensure_option=False,
                             continuous_update=False, layout=w.Layout(width="420px")),
        "draw": w.BoundedIntText(value=0, min=0, max=2**24 // shown - 1, description="fresh draw"),
    }

    def draw(prompt: str, draw: int) -> Frame:
        prompt = prompt.strip() or start
        facts = stated.get(prompt) or facts_for(AuditPrompt(prompt), judge, question)
        for spec in {f.judge for f in facts} - set(judges):  # a typed prompt may state a fact no audited one did
            judges[spec] = load_judge(spec, gen.device)
        seeds = seed_stream("explore", seed, shown, start=draw * shown)
        with torch.no_grad():
            images = gen.generate([prompt] * shown, seeds, guidance, steps)
        readings = check(judges, images, facts) if facts else [[] for _ in range(shown)]
        captions, marks = [], []
        for i, row in enumerate(readings):
            lines = [f"fresh seed #{draw * shown + i}"]
            lines += [f"✓ {r.fact.text}" if r.held else f"✗ {r.fact.text}: saw {', '.join(r.seen)} ({r.category})"
                      for r in row]
            captions.append("\n".join(lines))
            marks.append(all(r.held for r in row) if row else None)
        failing = sum(m is False for m in marks)
        note = (f"{prompt!r}: {failing} of {shown} fresh images fail a fact" if facts else
                f"{prompt!r} states no fact {judge} can read")
        return Frame(images, captions, ncol=shown, row_labels=["fresh seeds"], marks=marks, note=note)

    return Explorer("Prompt audit: any prompt, its facts read on fresh seeds", controls, draw)
