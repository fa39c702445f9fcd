"""The distorted-latents and unrelated-latents studies (SAGE findings 2 and 3).

distorted-latents: a found latent is *distorted* when it also makes the model fail for
prompts of other classes (prompt independence), with low judge confidence everywhere.
unrelated-latents: the found image is natural (the judges agree, confidently, on some
other label) but unrelated to the prompt.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..models.generator import Generator
from ..models.judges import Ensemble
from .latent_search import LatentSearchConfig, LatentSearchResult, cost_per_iteration, search_latents
from .sage import RobustGoal, UnrelatedGoal

PROMPT = "A photo of a {label}"


def search(gen: Generator, ensemble: Ensemble, labels: list[str], seeds: list[int], cfg: LatentSearchConfig,
           kind: str = "distorted", confidence: float = 0.5, prompt: str = PROMPT,
           progress: bool = True, verifier: Ensemble | None = None) -> LatentSearchResult:
    """One latent search per (label, seed); ``kind`` picks the goal; ``verifier`` (judges
    the search never uses) confirms each found failure on a re-generation with another
    sampler."""
    if kind not in ("distorted", "unrelated"):
        raise ValueError(f"kind must be 'distorted' or 'unrelated', got {kind!r}")
    goal = RobustGoal(ensemble) if kind == "distorted" else UnrelatedGoal(ensemble, confidence)
    pairs = [(l, s) for l in labels for s in seeds]
    return search_latents(gen, goal, [prompt.format(label=l) for l, _ in pairs],
                          [ensemble.label_index(l) for l, _ in pairs], [s for _, s in pairs], cfg, progress,
                          verifier)


@torch.no_grad()
def prompt_independence(gen: Generator, ensemble: Ensemble, result: LatentSearchResult, heldout: int = 6,
                        low_confidence: float = 0.5, guidance: float | None = None, steps: int | None = None,
                        prompt: str = PROMPT, seed: int = 0) -> pd.DataFrame:
    """Each successful latent (and, as a baseline, its original z0) is used with ``heldout``
    prompts of other labels. Returns one row per (latent, held-out label, which):
    ``failed`` (every judge misses the held-out label), ``confidence`` (max ensemble
    probability) and ``distorted`` (failed with confidence < ``low_confidence``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in np.flatnonzero(result.table["success"].to_numpy()):
        src = result.table.loc[i, "label"]
        others = [l for l in ensemble.labels if l != src]
        chosen = [others[j] for j in rng.choice(len(others), size=min(heldout, len(others)), replace=False)]
        prompts = [prompt.format(label=l) for l in chosen]
        targets = torch.tensor([ensemble.label_index(l) for l in chosen])
        for which, z in (("found", result.z[i]), ("original", result.z0[i])):
            noise = z.unsqueeze(0).expand(len(chosen), -1, -1, -1)
            images = gen.decode(gen.denoise(noise, gen.encode_prompts(prompts), guidance, steps))
            failed = ensemble.absent(images, targets).cpu()
            conf = ensemble(images).max(-1).values.cpu()
            for j, l in enumerate(chosen):
                rows.append({"latent": int(i), "source_label": src, "heldout_label": l, "which": which,
                             "failed": bool(failed[j]), "confidence": float(conf[j]),
                             "distorted": bool(failed[j]) and float(conf[j]) < low_confidence})
    return pd.DataFrame(rows, columns=["latent", "source_label", "heldout_label", "which", "failed", "confidence",
                                       "distorted"])


def per_class(table: pd.DataFrame) -> pd.DataFrame:
    """Success rate and mean iterations to failure per label."""
    return (table.groupby("label", sort=False)
            .agg(searched=("success", "size"), success_rate=("success", "mean"),
                 iterations=("iterations", "mean"), certified=("certified", "mean"))
            .reset_index())


def compare_modes(gen: Generator, ensemble: Ensemble, labels: list[str], seeds: list[int], cfg: LatentSearchConfig,
                  iterations: int, kind: str = "distorted", progress: bool = True) -> pd.DataFrame:
    """Exact vs residual gradients on the same samples and iteration budget: success,
    seconds and peak memory per iteration."""
    rows = []
    for mode in ("exact", "residual"):
        c = LatentSearchConfig(**{**cfg.__dict__, "mode": mode, "iterations": iterations})
        res = search(gen, ensemble, labels, seeds, c, kind=kind, progress=progress)
        goal = RobustGoal(ensemble)
        cost = cost_per_iteration(gen, goal, PROMPT.format(label=labels[0]), ensemble.label_index(labels[0]),
                                  seeds[0], c, iterations=2)
        rows.append({"mode": mode, "k": c.k if mode == "residual" else c.steps or gen.default_steps,
                     "samples": len(res.table), "success_rate": float(res.table["success"].mean()),
                     "seconds_per_iteration": cost["seconds"],
                     "search_seconds_per_iteration": float(np.mean(res.seconds_per_iteration)) if res.seconds_per_iteration else float("nan"),
                     "peak_memory_mb": cost["peak_memory_mb"]})
    return pd.DataFrame(rows)
