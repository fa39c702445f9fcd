"""Latent explorer (distorted and unrelated latents): a slider walks the straight line
from a searched latent's start z (t = 0) through the found z' (t = 1) and past it,
z(t) = z + t (z' - z); at each point the image is drawn again, judged, and the latent's
certificate (is it a plausible draw from N(0, I)?) computed, beside the images at z and z'.
The slider reaches past the first t at which the certificate fails, so a student sees
where the search's latent stops being an ordinary one."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..search import certify
from .base import Explorer, Frame, judge_lines

# the line is walked up to this many times the found delta when looking for the certificate's bound
FURTHEST = 8.0
STEP = 0.05


def certificate_bound(z0: torch.Tensor, z1: torch.Tensor, alpha: float, furthest: float = FURTHEST) -> float | None:
    """The first t on a grid of :data:`STEP` (0 < t <= ``furthest``) at which z0 + t (z1 - z0)
    fails the certificate at level ``alpha``; None when it passes all the way."""
    for t in np.arange(STEP, furthest + STEP / 2, STEP):
        if not certify(z0 + float(t) * (z1 - z0), alpha).passed:
            return round(float(t), 2)
    return None


def certificate_line(z: torch.Tensor, alpha: float) -> str:
    """Two lines: ``|z|² p … · KS p …`` and ``spatial p …: passes`` (or ``fails``) at level
    ``alpha``."""
    c = certify(z, alpha)
    return (f"|z|² p {c.chi2_p:.3f} · KS p {c.ks_p:.3f}\n"
            f"spatial p {c.spatial_p:.3f}: certificate {'passes' if c.passed else 'fails'}")


def _latents(result, label_names: Sequence[str]) -> list[tuple[str, int, list[tuple[str, str]]]]:
    """Per searched latent: its name, its row, and its prompts as ``(prompt, label)`` (a
    shared latent: every search prompt; a single latent: its own)."""
    t = result.table
    out = []
    for i in range(len(t)):
        state = "found" if t["found"][i] and not t["failed_at_start"][i] else "not found"
        state += ", certified" if t["certified"][i] else ", not certified"
        if hasattr(result, "prompts"):  # one latent for every search prompt
            prompts = [(p, label_names[k]) for p, k in zip(result.prompts, result.targets)]
            out.append((f"seed {t['seed'][i]} ({state})", i, prompts))
        else:
            prompts = [(t["prompt"][i], t["label"][i])]
            out.append((f"{t['label'][i]}, seed {t['seed'][i]} ({state})", i, prompts))
    return out


def explorer(gen, judge, result, cfg, heldout: Sequence[str] = (), prompt: str = "A photo of a {label}") -> Explorer:
    """The explorer of a latent search's notebook: ``gen`` and ``judge`` (the search's
    ensemble), its ``result`` (:class:`~sagekit.studies.latent_search.SharedLatentResult`
    or ``LatentSearchResult``) and ``cfg`` (guidance, steps, the certificate's level); a
    shared latent is also offered with the ``prompt`` of each ``heldout`` label (the
    search never saw them)."""
    import ipywidgets as w

    latents = _latents(result, judge.labels)
    if not latents:
        raise ValueError("the search has no latent to explore")
    guidance, steps = gen.guidance_of(cfg.guidance), gen.steps_of(cfg.steps)
    bounds = {i: certificate_bound(result.z0[i], result.z[i], cfg.alpha) for _, i, _ in latents}

    def prompts_of(row: int) -> list[tuple[str, str]]:
        own = next(p for _, i, p in latents if i == row)
        if hasattr(result, "prompts"):
            own = own + [(prompt.format(label=label), label) for label in heldout]
        return own

    def reach(row: int) -> float:
        b = bounds[row]
        return round(min(FURTHEST, max(2.0, 1.5 * b)) if b is not None else 2.0, 2)

    first = latents[0][1]
    controls = {
        "latent": w.Dropdown(options=[(name, i) for name, i, _ in latents], description="latent"),
        "prompt": w.Dropdown(options=[p for p, _ in prompts_of(first)], description="prompt"),
        "t": w.FloatSlider(value=1.0, min=0.0, max=reach(first), step=STEP, description="t",
                           continuous_update=False, readout_format=".2f"),
    }
    drawn: dict[tuple[int, str, float], tuple[torch.Tensor, str, bool | None]] = {}

    def point(row: int, text: str, t: float):
        """The image at z(t) with its caption and mark; t = 0 and 1 are kept."""
        key = (row, text, t)
        if key in drawn:
            return drawn[key]
        label = dict(prompts_of(row))[text]
        z0, z1 = result.z0[row], result.z[row]
        z = z0 + t * (z1 - z0)
        seed = int(result.table["seed"][row])
        with torch.no_grad():
            lat = gen.denoise(z[None].to(gen.device, gen.dtype), gen.encode_prompts([text]), guidance, steps,
                              seeds=[seed])
            image = gen.decode(lat).float().cpu()
        lines, right, probs = judge_lines(judge, image, [label])
        own = f"P({label}) {float(probs[0, judge.label_index(label)]):.2f}"  # the prompt's label, by the ensemble
        caption = "\n".join([f"t = {t:.2f}" + {0.0: " (z)", 1.0: " (z′)"}.get(t, ""), *lines[0], own,
                             certificate_line(z, cfg.alpha)])
        out = (image, caption, right[0])
        if t in (0.0, 1.0):
            drawn[key] = out
        return out

    def draw(latent: int, prompt: str, t: float) -> Frame:
        t = round(float(t), 2)
        cells = [point(latent, prompt, 0.0), point(latent, prompt, 1.0), point(latent, prompt, t)]
        bound = bounds[latent]
        where = (f"the certificate fails from t = {bound:.2f} on" if bound is not None
                 else f"the certificate passes up to t = {FURTHEST:g}")
        label = dict(prompts_of(latent))[prompt]
        return Frame(torch.cat([c[0] for c in cells]), [c[1] for c in cells], ncol=3, row_labels=[label],
                     marks=[c[2] for c in cells],
                     note=f"seed {int(result.table['seed'][latent])}, {prompt!r}; {where} (level {cfg.alpha:g}); "
                          f"green: the judges see the prompt's label")

    def adjust(name: str, controls: dict) -> None:
        if name == "latent":  # its own prompts and its own reach
            row = controls["latent"].value
            options = [p for p, _ in prompts_of(row)]
            keep = controls["prompt"].value if controls["prompt"].value in options else options[0]
            controls["prompt"].options = options
            controls["prompt"].value = keep
            slider = controls["t"]
            slider.max = max(slider.max, reach(row))
            slider.value = min(slider.value, reach(row))
            slider.max = reach(row)

    return Explorer("Walk the line from z to the found z′ and past it", controls, draw, adjust=adjust)
