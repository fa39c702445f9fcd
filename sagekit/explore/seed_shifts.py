"""Seed-shift explorer: pick a shift type and move its level; a few labels' images are
drawn again from the shifted noise of one seed, beside the same seed unshifted, each
with every judge's top-1 and the CLIP score (the sweep's own drawing and judging, so a
level of the grid shows the sweep's image)."""

from __future__ import annotations

from typing import Sequence

import torch

from ..studies import seed_shifts as ss
from .base import Explorer, Frame, judge_lines

# a slider reaches this far past the grid's own levels (the grid's range times this)
REACH = 1.5


def level_range(shift: str, levels: Sequence, latent_hw: int) -> tuple[float, float, float]:
    """``(low, high, step)`` of a shift's level slider: the grid's levels and 0, widened
    by :data:`REACH`; SDS stays below 1 (the std would be 0 or negative), PAS within the
    latent's positions and in whole steps."""
    if shift == "PAS":
        return 0, latent_hw, 1
    values = [float(v) for v in levels] + [0.0]
    lo, hi = min(values) * REACH, max(values) * REACH
    if shift == "SDS":
        hi = min(hi, 0.95)
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi, (hi - lo) / 40


def explorer(generators: dict, judge, clip, labels: Sequence[str], shift_grid: dict, plan, seed: int,
             shown: int = 3) -> Explorer:
    """The explorer of the seed-shift notebook: ``generators`` (name -> Generator),
    ``judge`` and ``clip`` as the sweep's, the first ``shown`` of ``labels``, the grid
    (its shift types but MS, whose level is a pair), ``plan`` (steps and first guidance
    scale per model) and the first seed."""
    import ipywidgets as w

    shifts = [s for s in shift_grid if s not in ("none", "MS")]
    if not shifts:
        raise ValueError("the grid has no shift a slider can move (MS takes a pair of levels)")
    labels = list(labels)[:shown]
    gen0 = next(iter(generators.values()))
    latent_hw = gen0.latent_shape[1] * gen0.latent_shape[2]

    def slider_for(shift: str) -> dict:
        lo, hi, step = level_range(shift, shift_grid[shift], latent_hw)
        start = shift_grid[shift][-1] if len(shift_grid[shift]) else (lo + hi) / 2
        return {"min": lo, "max": hi, "step": step, "value": float(start)}

    controls = {
        "model": w.Dropdown(options=list(generators), description="model"),
        "shift": w.Dropdown(options=shifts, description="shift"),
        "level": w.FloatSlider(description="level", continuous_update=False, readout_format=".2f",
                               **slider_for(shifts[0])),
        "seed": w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed"),
    }
    unshifted: dict[tuple[str, int], tuple[torch.Tensor, list, list]] = {}

    def judged(model: str, shift: str, level, seed: int):
        gen = generators[model]
        cells = ss.build_cells([model], {shift: [level]} if shift != "none" else {}, labels, [seed],
                               [plan.first_scale[model]], plan.steps[model], judge.name, clip.name)
        cells = [c for c in cells if c["shift"] == shift]
        images = ss.draw(gen, cells)
        lines, right, _ = judge_lines(judge, images, labels)
        scores = clip(images.to(clip.embedder.device), [c["prompt"] for c in cells]).cpu()
        captions = ["\n".join([label, *ls, f"CLIP {float(s):.3f}"]) for label, ls, s in zip(labels, lines, scores)]
        return images.cpu(), captions, right

    def draw(model: str, shift: str, level: float, seed: int) -> Frame:
        level = int(round(level)) if shift == "PAS" else float(level)
        if (model, seed) not in unshifted:
            unshifted[(model, seed)] = judged(model, "none", 0, seed)
        base, shifted = unshifted[(model, seed)], judged(model, shift, level, seed)
        return Frame(torch.cat([base[0], shifted[0]]), base[1] + shifted[1], ncol=len(labels),
                     row_labels=["unshifted", f"{shift} {ss.level_name(shift, level)}"], marks=base[2] + shifted[2],
                     note=f"{model}, seed {seed}, guidance {plan.first_scale[model]:g}, {plan.steps[model]} steps")

    def adjust(name: str, controls: dict) -> None:
        if name == "shift":  # a new shift type brings its own level range
            bounds = slider_for(controls["shift"].value)
            slider = controls["level"]
            # widen first, then narrow: the slider refuses a min above its value or a max below it
            slider.min, slider.max = min(bounds["min"], slider.min), max(bounds["max"], slider.max)
            slider.step, slider.value = bounds["step"], bounds["value"]
            slider.min, slider.max = bounds["min"], bounds["max"]

    return Explorer("Seed shifts: move the level, watch the images and the judges", controls, draw, adjust=adjust)
