"""SAGE's unrelated latents (paper 000, finding 3): non-outlier initial latents that give a
natural image of something other than the prompt.

One latent per (label, seed), searched with ``UnrelatedGoal``: the prompt's label must
vanish for every judge while the ensemble grows confident in one other label (or, with an
empty-scene judge, the scene holds nothing at all). A found latent counts when the
held-out verifier confirms it on the latent drawn again with another sampler and it
passes the non-outlier certificates. Its image's realism (:mod:`sagekit.realism`) says
whether it is natural: the share of the model's ordinary images that look no more real.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..models.generator import Generator
from ..models.judges import Ensemble
from ..realism import RealismReference
from ..search import UnrelatedGoal
from ..search.goals import EMPTY_LABEL
from ..stats import mean_ci, rate
from .parameters import Flag, Int, ModelName, Parameter, Schema
from . import common
from .latent_search import MODELS, PARAMETERS, LatentSearchConfig, LatentSearchResult, found_verified, merge, search_latents

PROMPT = "A photo of a {label}"
STUDY = "unrelated-latents"


def _images(p: dict) -> int:
    return (common.n_labels(p) * p["seeds_per_label"] * (p["iterations"] + 3) + 2 * p["compare_iterations"]
            + p["reference_images"])


def _rules(p: dict) -> None:
    common.k_within_steps(p)
    common.judged_and_verified(p)


SCHEMA = Schema({
    **MODELS,
    "realism_goal": Parameter(Flag(), True, "a realism judge must also call the image real (no effect with a CLIP "
                              "realism)"),
    "empty": Parameter(ModelName("empty", optional=True), "auto", 'a judge with a label "none": an empty scene is '
                       'something else too; "" for none (toy: toy-count)'),
    "label_set": common.LABEL_SET,
    "n_labels": common.helped(common.N_LABELS, "labels searched, evenly spaced over the label set", default=4,
                              small=2),
    "seeds_per_label": Parameter(common.SEEDS, 1, "latents searched per label (one per seed)"),
    "confidence": Parameter(common.PROB, 0.5, "the ensemble must agree on another label with at least this "
                            "probability"),
    "reference_images": Parameter(Int(2, 100_000), 32, "ordinary images (fresh seeds) that realism is measured "
                                  "against", small=8),
    **PARAMETERS,
    "store_dir": common.store_dir(STUDY),
    "device": common.DEVICE,
    "dtype": common.DTYPE,
    **common.SEARCHES,
    "seed": common.SEED,
}, _images, _rules, streams={"images": lambda p: p["seeds_per_label"],
                            "reference": lambda p: p["reference_images"]})


def _search_task(models, pairs: list[tuple[str, int]], cfg: LatentSearchConfig, prompt: str,
                 checkpoints: str | None, progress: bool) -> LatentSearchResult:
    """One task of :func:`search` (:mod:`sagekit.spread`): the latents of ``pairs`` (label, seed), in one batch."""
    goal = models.goal
    return search_latents(models.gen, goal, [prompt.format(label=l) for l, _ in pairs],
                          [goal.ensemble.label_index(l) for l, _ in pairs], [s for _, s in pairs], cfg, progress,
                          models.verifier, checkpoints)


def search(gen: Generator, goal: UnrelatedGoal, labels: list[str], seeds: list[int], cfg: LatentSearchConfig,
           verifier: Ensemble | None = None, checkpoints: str | None = None,
           prompt: str = PROMPT, progress: bool = True, executor=None, per_task: int = 0) -> LatentSearchResult:
    """One latent search per (label, seed): here all in one batch, or spread over
    ``executor`` (:mod:`sagekit.executors`; on Ray, tasks of ``per_task`` searches, default
    one, on workers that load the models by name); rows in (label, seed) order."""
    from ..spread import Models, gather

    pairs = [(l, s) for l in labels for s in seeds]
    return merge(gather(f"{__name__}:_search_task", Models({gen.name: gen}, goal=goal, verifier=verifier), pairs,
                        {"cfg": cfg, "prompt": prompt, "checkpoints": checkpoints}, executor, per_task, progress,
                        "latent searches"))


@torch.no_grad()
def what_they_show(result: LatentSearchResult, goal: UnrelatedGoal, realism: RealismReference,
                   reference_realism: torch.Tensor | None = None) -> pd.DataFrame:
    """Per searched latent, before and after: ``shown`` (the ensemble's top label, or
    "nothing" where the goal's empty-scene judge says "none" at the goal's confidence),
    ``realism`` in [0, 1] (share of the model's ordinary images that look no more real)."""
    rows = []
    for which, images in (("before", result.images_before), ("after", result.images_after)):
        images = images.to(goal.ensemble.weights.device)
        top = goal.ensemble(images).argmax(-1).cpu()
        shown = [goal.ensemble.labels[int(i)] for i in top]
        if goal.empty is not None:
            p_none = goal.empty(images)[:, goal.empty.label_index(EMPTY_LABEL)].cpu()
            shown = ["nothing" if p >= goal.confidence else s for s, p in zip(shown, p_none.tolist())]
        real = realism.realism(images)
        rows += [{"search": i, "which": which, "shown": s, "realism": float(r)}
                 for i, (s, r) in enumerate(zip(shown, real.tolist()))]
    return pd.DataFrame(rows)


def realism_summary(shown: pd.DataFrame, success: pd.Series) -> dict:
    """Median realism (and the mean with its 95% interval) of the successful latents'
    images after the search, against all starting images: "within the clean range" when
    the found images' mean interval reaches the starting images' mean."""
    after = shown[(shown.which == "after") & shown.search.isin(success[success].index)].realism
    before = shown[shown.which == "before"].realism
    found, start = mean_ci(after.to_numpy()), mean_ci(before.to_numpy())
    return {"found": {"median": float(after.median()) if len(after) else float("nan"), "mean": found[0],
                      "lo": found[1], "hi": found[2], "n": int(len(after))},
            "original": {"median": float(before.median()), "mean": start[0], "lo": start[1], "hi": start[2],
                         "n": int(len(before)), "quartiles": [float(before.quantile(0.25)), float(before.quantile(0.75))]},
            "within_clean_range": bool(len(after)) and found[2] >= start[0]}


def _shown_after(success: pd.DataFrame, shown: pd.DataFrame | None) -> pd.Series:
    """What each successful latent shows after the search ("nothing" for an empty scene)."""
    if shown is None:
        return success["pred_after"]
    after = shown[shown.which == "after"].set_index("search").shown
    return after.reindex(success.index)


def per_class(table: pd.DataFrame) -> pd.DataFrame:
    """Success rate and mean iterations to failure per label."""
    return (table.groupby("label", sort=False)
            .agg(searched=("success", "size"), success_rate=("success", "mean"),
                 iterations=("iterations", "mean"), certified=("certified", "mean"))
            .reset_index())


def summarize(result: LatentSearchResult, modes: pd.DataFrame, speedup: float, speedup_bound: float,
              model: str, agreement: dict | None = None, shown: pd.DataFrame | None = None) -> dict:
    """The study's findings (the common schema: ``models``, ``headline``, rates as
    ``{"k", "n", "rate", "lo", "hi"}`` with 95% Wilson intervals). ``shown``: the table of
    :func:`what_they_show`, for what the successes show and how real they look."""
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
           "unrelated_labels": _shown_after(success, shown).value_counts().to_dict(),
           "unrelated_shown": ", ".join(f"{label} ({n})" for label, n in
                                        _shown_after(success, shown).value_counts().items()) or "none found",
           "realism": realism_summary(shown, t["success"]) if shown is not None else None,
           "residual_speedup": speedup, "residual_speedup_bound": speedup_bound,
           "modes": modes.to_dict("records"), "per_class": classes.to_dict("records")}
    # the study's target (issue #31): labels with a verified failure, whose images look as
    # real as ordinary ones (median realism inside the ordinary images' quartiles)
    real = out["realism"]
    out["headline"] = {"found": counts["found"], "verified": counts["verified"],
                       "labels with a verified failure": out["labels_with_failure"],
                       "median realism of the failures": round(real["found"]["median"], 3) if real else float("nan"),
                       "ordinary images' quartiles": [round(q, 3) for q in real["original"]["quartiles"]] if real else [],
                       "residual_speedup": round(speedup, 3)}
    return out
