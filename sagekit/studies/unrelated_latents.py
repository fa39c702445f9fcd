"""SAGE's unrelated latents (paper 000, finding 3): non-outlier initial latents that give a
natural image of something other than the prompt.

One latent per (label, seed), searched with ``UnrelatedGoal``: the prompt's label must
vanish for every judge while the ensemble grows confident in one other label. A found
latent counts when the held-out verifier confirms it on the latent drawn again with
another sampler and it passes the non-outlier certificates.
"""

from __future__ import annotations

import pandas as pd

from ..models.generator import Generator
from ..models.judges import Ensemble
from ..search import UnrelatedGoal
from .latent_search import LatentSearchConfig, LatentSearchResult, found_verified, rate, search_latents

PROMPT = "A photo of a {label}"


def search(gen: Generator, ensemble: Ensemble, labels: list[str], seeds: list[int], cfg: LatentSearchConfig,
           confidence: float = 0.5, verifier: Ensemble | None = None, checkpoints: str | None = None,
           prompt: str = PROMPT, progress: bool = True) -> LatentSearchResult:
    """One latent search per (label, seed), all in one batch."""
    pairs = [(l, s) for l in labels for s in seeds]
    return search_latents(gen, UnrelatedGoal(ensemble, confidence), [prompt.format(label=l) for l, _ in pairs],
                          [ensemble.label_index(l) for l, _ in pairs], [s for _, s in pairs], cfg, progress,
                          verifier, checkpoints)


def per_class(table: pd.DataFrame) -> pd.DataFrame:
    """Success rate and mean iterations to failure per label."""
    return (table.groupby("label", sort=False)
            .agg(searched=("success", "size"), success_rate=("success", "mean"),
                 iterations=("iterations", "mean"), certified=("certified", "mean"))
            .reset_index())


def summarize(result: LatentSearchResult, modes: pd.DataFrame, speedup: float, speedup_bound: float,
              model: str, agreement: dict | None = None) -> dict:
    """The study's findings (the common schema: ``models``, ``headline``, rates as
    ``{"k", "n", "rate", "lo", "hi"}`` with 95% Wilson intervals)."""
    t = result.table
    classes = per_class(t)
    counts = found_verified(result)
    success = t.loc[t["success"]]
    out = {"models": [model], "found_verified": counts, "agreement": agreement,
           "success": rate(t["success"].sum(), len(t)),
           "labels_with_failure": rate((classes["success_rate"] > 0).sum(), len(classes)),
           "certified": rate(t.loc[t["found"], "certified"].sum(), int(t["found"].sum())),
           "failed_at_start": int(t["failed_at_start"].sum()),
           "median_iterations": float(t["iterations"].median()) if t["found"].any() else float("nan"),
           "unrelated_confidence": float(success["confidence_after"].mean()) if len(success) else float("nan"),
           "unrelated_labels": success["pred_after"].value_counts().to_dict(),
           "unrelated_shown": ", ".join(f"{label} ({n})" for label, n in success["pred_after"].value_counts().items())
           or "nothing",
           "residual_speedup": speedup, "residual_speedup_bound": speedup_bound,
           "modes": modes.to_dict("records"), "per_class": classes.to_dict("records")}
    # the older report fields, kept for readers of earlier summaries
    out["success_rate"] = out["success"]["rate"]
    out["classes_with_failure"] = out["labels_with_failure"]["rate"]
    out["certified_rate"] = out["certified"]["rate"]
    out["headline"] = {"found": counts["found"], "verified": counts["verified"],
                       "success_rate": round(out["success_rate"], 3),
                       "classes_with_failure": round(out["classes_with_failure"], 3),
                       "residual_speedup": round(speedup, 3)}
    return out
