"""Prompt-failure explorer: type a prompt or pick one the search found, with the label it
should show; it is drawn on a few fresh seeds (the ``explore`` seed stream, never the
search's), each image judged by the search's judges and the held-out verifier, and a found
prompt shows the verdict people gave it in the verdict panel."""

from __future__ import annotations

import torch

from ..seeds import seeds as seed_stream
from ..studies.prompt_failures import PROMPT
from ..verdicts import verdict_of
from .base import Explorer, Frame, judge_lines


def explorer(gen, goal, verifier, result, cfg, seed: int = 0, store=None, keys: dict[str, str] | None = None,
             shown: int = 3) -> Explorer:
    """The explorer of the prompt-failure notebook: ``gen``, the search's ``goal`` and the
    ``verifier`` (an Ensemble, or None), its ``result``
    (:class:`~sagekit.studies.prompt_failures.PromptSearchResult`) and ``cfg`` (guidance
    and steps); ``store`` and ``keys`` (found prompt -> its stored case) to show people's
    verdicts; ``shown`` images per draw."""
    import ipywidgets as w

    table = result.table
    found = dict(zip(table["prompt"], table["label"]))
    failing = [p for p, f in zip(table["prompt"], table["failure"]) if f]
    ensemble = goal.ensemble
    start = (failing or list(found) or [PROMPT.format(label=ensemble.labels[0])])[0]
    controls = {
        "prompt": w.Combobox(value=start, options=list(found), description="prompt", ensure_option=False,
                             continuous_update=False, layout=w.Layout(width="420px")),
        "label": w.Dropdown(options=list(ensemble.labels), value=found.get(start, ensemble.labels[0]),
                            description="shows"),
        "draw": w.BoundedIntText(value=0, min=0, max=2**24 // shown - 1, description="fresh draw"),
    }
    judges = [ensemble] + ([verifier] if verifier is not None else [])

    def draw(prompt: str, label: str, draw: int) -> Frame:
        prompt = prompt.strip() or start
        seeds = seed_stream("explore", seed, shown, start=draw * shown)
        with torch.no_grad():
            images = gen.generate([prompt] * shown, seeds, cfg.guidance, cfg.steps)
        per_judge = [judge_lines(j, images, [label] * shown)[0] for j in judges]
        target = torch.full((shown,), ensemble.label_index(label))
        failed = goal.found(images.to(ensemble.device), target).tolist()
        captions = ["\n".join([f"fresh seed #{draw * shown + i}", *(line for lines in per_judge for line in lines[i]),
                               "fails: every judge misses it" if failed[i] else "the judges see it"])
                    for i in range(shown)]
        note = f"{prompt!r} should show {label!r}: fails on {sum(failed)} of {shown} fresh seeds"
        if prompt in found:
            row = table[table["prompt"] == prompt].iloc[0]
            note += f"; the search's rate on its own fresh seeds {row['failure_rate']:.2f}"
        if store is not None and keys and prompt in keys:
            note += f"; people's verdict: {verdict_of(store.tags(keys[prompt])) or 'none yet'}"
        return Frame(images, captions, ncol=shown, row_labels=[label], marks=[not f for f in failed], note=note)

    def adjust(name: str, controls: dict) -> None:
        if name == "prompt" and controls["prompt"].value in found:  # a found prompt brings its own label
            controls["label"].value = found[controls["prompt"].value]

    return Explorer("Prompt failures: any prompt, fresh seeds", controls, draw, adjust=adjust)
