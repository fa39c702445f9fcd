"""Implosion explorer: pick a point of the sweep (budget rule, k, poisoned run or its clean
control) and a concept; the fine-tuned model's images of that concept are shown with the
judges' reading and, under them, the cross-attention maps of the concept's first and last
word (on the toy world its colour and its shape), beside the same concept at k = 0. The
images and maps are the ones the sweep drew and recorded, so a redraw draws nothing."""

from __future__ import annotations

import torch

from .base import Explorer, Frame

RUNS = {"poisoned": False, "clean control": True}


def heat(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Attention maps ``(N, h, w)`` as magma-coloured images ``(N, 3, size, size)`` in
    [0, 1], each scaled to its own maximum (where a word looks, not how much)."""
    from matplotlib import colormaps

    m = maps.float()
    m = m / m.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    rgb = torch.from_numpy(colormaps["magma"](m.numpy())[..., :3]).permute(0, 3, 1, 2).float()
    return torch.nn.functional.interpolate(rgb, size=(size, size), mode="nearest")


def explorer(result, ks: list[int]) -> Explorer:
    """The explorer of the implosion notebook: ``result``
    (:class:`~sagekit.studies.implosion.ImplosionResult`) and the sweep's ``ks``."""
    import ipywidgets as w

    details = result.details
    rules = list(dict.fromkeys(rule for rule, _, _ in details))
    def concepts(rule: str, k: int, run: str) -> list[str]:  # those the point drew
        return list(dict.fromkeys(details[(rule, k, RUNS[run])]["labels"]))

    controls = {
        "rule": w.Dropdown(options=rules, description="budget rule"),
        "k": w.SelectionSlider(options=list(ks), value=ks[-1], description="k"),
        "run": w.ToggleButtons(options=list(RUNS), description="run"),
        "concept": w.Dropdown(options=concepts(rules[0], ks[-1], next(iter(RUNS))), description="concept"),
    }

    def shown(d: dict, concept: str) -> tuple[torch.Tensor, torch.Tensor, list[str], list[bool]]:
        index, maps = d["attention"]["index"], d["attention"]["maps"]
        rows = [j for j, i in enumerate(index) if d["labels"][i] == concept]
        images = d["images"][[index[j] for j in rows]]
        preds = [d["pred"][index[j]] for j in rows]
        return images, maps[rows], preds, [p == concept for p in preds]

    def row(d: dict, concept: str) -> tuple[list[torch.Tensor], list[str], list[bool | None]]:
        """Per recorded image of ``concept`` at point ``d``: the image, then where its first
        and its last word look."""
        images, maps, preds, right = shown(d, concept)
        words, size = concept.split(), images.shape[-1]
        tiles, captions, marks = [], [], []
        for i in range(len(images)):
            tiles += [images[i:i + 1], heat(maps[i:i + 1, 0], size), heat(maps[i:i + 1, -1], size)]
            captions += [f"judged: {preds[i]}", f"where {words[0]!r} looks", f"where {words[-1]!r} looks"]
            marks += [right[i], None, None]
        return tiles, captions, marks

    def draw(rule: str, k: int, run: str, concept: str) -> Frame:
        d = details[(rule, k, RUNS[run])]
        poisoned = dict(d["pairs"])
        kind = f"poisoned: its captions name {poisoned[concept]!r}" if concept in poisoned else "not poisoned"
        tiles, captions, marks = row(d, concept)
        ncol, rows = len(tiles), [f"k = {k}"]
        # above it, the same concept at the sweep's first k (k = 0: fine-tuned on clean data only), if drawn there
        first = details[(rule, ks[0], False)]
        if k != ks[0] and concept in first["labels"]:
            before = row(first, concept)
            tiles, captions, marks, rows = before[0] + tiles, before[1] + captions, before[2] + marks, \
                [f"k = {ks[0]}"] + rows
        point = result.table[(result.table["rule"] == rule) & (result.table["k"] == k)
                             & (result.table["control"] == RUNS[run])].iloc[0]
        return Frame(torch.cat(tiles), captions, ncol=ncol, row_labels=rows, marks=marks,
                     note=f"{concept}: {kind}; {run} run, {rule} rule, k = {k} ({int(point['budget'])} poisoned "
                          f"pairs); unpoisoned accuracy {point['unpoisoned_acc']:.2f} [{point['unpoisoned_lo']:.2f}, "
                          f"{point['unpoisoned_hi']:.2f}]")

    def adjust(name: str, controls: dict) -> None:
        if name != "concept":  # another point may have drawn other concepts (the first k are poisoned)
            options = concepts(controls["rule"].value, controls["k"].value, controls["run"].value)
            keep = controls["concept"].value
            controls["concept"].options = options
            controls["concept"].value = keep if keep in options else options[0]

    return Explorer("Implosion: the fine-tuned models' images and word attention", controls, draw, adjust=adjust)
