"""SAGE's distorted latents (paper 000, finding 2): non-outlier initial latents that give a
distorted image whatever the prompt.

One latent per seed is optimised over the prompts of several labels at once (prompt
independence by construction) with ``DistortedGoal``: for every prompt, every judge must
miss its label and the ensemble be unsure of all labels. Then, on prompts of labels the
search never saw (held out), the found latent and its original are compared: how often
the image fails, how unsure the judges are, and how *real* it looks (``sagekit.realism``:
its CLIP-feature distance from the model's own images of ordinary latents), which needs
no judge of the labels.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..labels import spaced
from ..models.generator import Generator
from ..models.judges import Ensemble
from ..realism import RealismReference
from ..search import DistortedGoal
from ..stats import rate
from .parameters import Flag, Int, ModelName, Parameter, ParameterError, Schema
from . import common
from .latent_search import MODELS, PARAMETERS, LatentSearchConfig, SharedLatentResult, found_verified, merge, search_shared_latents

PROMPT = "A photo of a {label}"
STUDY = "distorted-latents"


def _images(p: dict) -> int:
    return (p["latents"] * (common.n_labels(p) * (p["iterations"] + 3) + 2 * p["heldout"])
            + 2 * p["compare_iterations"] + p["reference_images"])


def _rules(p: dict) -> None:
    """The searched and the held-out labels are disjoint parts of the label set, and
    every one of them is judged."""
    from ..labels import get_label_set

    size = len(get_label_set(p["label_set"]))
    if p["n_labels"] + p["heldout"] > size:
        raise ParameterError(f"n_labels + heldout must be at most {size} (the labels of {p['label_set']!r}), "
                             f"got {p['n_labels'] + p['heldout']}")
    common.k_within_steps(p)
    common.judged_and_verified(p)
    common.labels_are_judged({**p, "n_labels": size})
    common.labels_are_judged({**p, "n_labels": size, "judge": p["verifier"]}, "verifier")


SCHEMA = Schema({
    **MODELS,
    "realism_goal": Parameter(Flag(), True, "a realism judge must also call the image corrupted (no effect with a "
                              "CLIP realism)"),
    "empty": Parameter(ModelName("empty", optional=True), "auto", 'a judge with a label "none": a clean empty scene '
                       'is not distorted; "" for none (toy: toy-count)'),
    "label_set": common.LABEL_SET,
    "n_labels": common.helped(common.N_LABELS, "labels whose prompts every latent is optimised over, evenly spaced",
                              small=2),
    "heldout": Parameter(Int(1, 1000), 6, "labels the search never sees: the prompt-independence test", small=2),
    "latents": Parameter(common.SEEDS, 2, "latents searched (one per seed)", small=2),
    "reference_images": Parameter(Int(2, 100_000), 32, "ordinary images (fresh seeds) that realism is measured "
                                  "against", small=8),
    **PARAMETERS,
    "low_confidence": Parameter(common.PROB, 0.5, '"distorted": every judge misses the label and the ensemble\'s '
                                "top probability is below this"),
    "store_dir": common.store_dir(STUDY),
    "device": common.DEVICE,
    "dtype": common.DTYPE,
    **common.SEARCHES,
    "seed": common.SEED,
}, _images, _rules, streams={"images": lambda p: p["latents"], "reference": lambda p: p["reference_images"]})


def split(labels: list[str], n_search: int, n_heldout: int) -> tuple[list[str], list[str]]:
    """The search's labels (``n_search``, evenly spaced over ``labels``) and held-out ones
    (``n_heldout`` of the rest, evenly spaced): disjoint."""
    if n_search < 1 or n_heldout < 1 or n_search + n_heldout > len(labels):
        raise ValueError(f"need 1 <= n_search, 1 <= n_heldout and n_search + n_heldout <= {len(labels)}, "
                         f"got {n_search} and {n_heldout}")
    searched = spaced(labels, n_search)
    return searched, spaced([l for l in labels if l not in set(searched)], n_heldout)


def _search_task(models, seeds: list[int], labels: list[str], cfg: LatentSearchConfig, prompt: str,
                 checkpoints: str | None, progress: bool) -> SharedLatentResult:
    """One task of :func:`search` (:mod:`sagekit.spread`): the latents of ``seeds``, in one batch."""
    goal = models.goal
    return search_shared_latents(models.gen, goal, [prompt.format(label=l) for l in labels],
                                 [goal.ensemble.label_index(l) for l in labels], list(seeds), cfg, progress,
                                 models.verifier, checkpoints)


def search(gen: Generator, goal: DistortedGoal, labels: list[str], seeds: list[int], cfg: LatentSearchConfig,
           verifier: Ensemble | None = None, checkpoints: str | None = None,
           prompt: str = PROMPT, progress: bool = True, executor=None, per_task: int = 0) -> SharedLatentResult:
    """One latent per seed, each optimised over the prompts of all ``labels`` at once: here
    all in one batch, or spread over ``executor`` (:mod:`sagekit.executors`; on Ray, tasks
    of ``per_task`` seeds, default one, on workers that load the models by name)."""
    from ..spread import Models, gather

    return merge(gather(f"{__name__}:_search_task", Models({gen.name: gen}, goal=goal, verifier=verifier), list(seeds),
                        {"labels": list(labels), "cfg": cfg, "prompt": prompt, "checkpoints": checkpoints}, executor,
                        per_task, progress, "latent searches"))


@torch.no_grad()
def heldout_test(gen: Generator, goal: DistortedGoal, result: SharedLatentResult, labels: list[str],
                 realism: RealismReference, guidance: float | None = None,
                 steps: int | None = None, prompt: str = PROMPT) -> pd.DataFrame:
    """Every latent, found and original, with the prompts of held-out ``labels``. One row
    per (latent, held-out label, which): ``failed`` (every judge misses the label),
    ``confidence`` (the ensemble's max probability), ``distorted`` (the goal is met: failed,
    unsure, and not an empty scene where the goal has an empty-scene judge), ``realism``
    (see :mod:`sagekit.realism`)."""
    ensemble = goal.ensemble
    prompts = [prompt.format(label=l) for l in labels]
    cond = gen.encode_prompts(prompts)
    targets = torch.tensor([ensemble.label_index(l) for l in labels])
    rows = []
    for which, z in (("found", result.z), ("original", result.z0)):
        for i, seed in enumerate(result.table["seed"].tolist()):
            noise = z[i:i + 1].expand(len(labels), -1, -1, -1).to(gen.device)
            images = gen.decode(gen.denoise(noise, cond, guidance, steps, seeds=[seed] * len(labels)))
            failed = ensemble.absent(images, targets).cpu()
            distorted = goal.found(images, targets)
            conf = ensemble(images).max(-1).values.cpu()
            real = realism.realism(images)
            rows += [{"latent": i, "seed": seed, "heldout_label": l, "which": which, "failed": bool(failed[j]),
                      "confidence": float(conf[j]), "distorted": bool(distorted[j]), "realism": float(real[j])}
                     for j, l in enumerate(labels)]
    return pd.DataFrame(rows, columns=["latent", "seed", "heldout_label", "which", "failed", "confidence", "distorted",
                                       "realism"])


def best_latent(found: pd.DataFrame) -> dict | None:
    """Of :func:`heldout_test`'s rows for some found latents, the latent whose images are
    distorted for the most held-out prompts: ``{"latent", "seed", "distorted" (a rate),
    "realism" (median)}``, or None without rows."""
    if found.empty:
        return None
    by = found.groupby("latent").agg(k=("distorted", "sum"), n=("distorted", "size"), seed=("seed", "first"),
                                     realism=("realism", "median"))
    i = by["k"].idxmax()
    return {"latent": int(i), "seed": int(by.loc[i, "seed"]), "distorted": rate(by.loc[i, "k"], by.loc[i, "n"]),
            "realism": float(by.loc[i, "realism"])}


def best_latent_text(best: dict | None):
    """:func:`best_latent` as one Markdown bullet (``markup.Safe``, every value escaped)."""
    from ..markup import md_text

    if best is None:
        return md_text("- No latent was both verified and certified, so no latent stands alone on held-out prompts.")
    return md_text("- The best latent (seed {seed}) distorts **{d[k]} of {d[n]}** held-out prompts ({d[rate]:.2f}, "
                   "95% CI [{d[lo]:.2f}, {d[hi]:.2f}]); median realism of those images {realism:.2f} (the share of "
                   "ordinary images that look no more real).", seed=best["seed"], d=best["distorted"],
                   realism=best["realism"])


def summarize(result: SharedLatentResult, heldout: pd.DataFrame, modes: pd.DataFrame, speedup: float,
              speedup_bound: float, model: str,
              agreement: dict | None = None) -> dict:
    """The study's findings (the common schema: ``models``, ``headline``, rates as
    ``{"k", "n", "rate", "lo", "hi"}`` with 95% Wilson intervals). Held-out rates count
    the latents the search found (``heldout_*``) and, of those, the ones that also
    succeeded: verified and certified (``heldout_*_success``); each against the same
    latents' originals."""
    t = result.table
    counts = found_verified(result)

    found = set(t.index[t["found"] & ~t["failed_at_start"]])
    ok = set(t.index[t["success"]])
    side = {w: heldout[(heldout["which"] == w) & heldout["latent"].isin(found)] for w in ("found", "original")}
    side_ok = {w: heldout[(heldout["which"] == w) & heldout["latent"].isin(ok)] for w in ("found", "original")}
    out = {"models": [model], "found_verified": counts, "agreement": agreement, "prompts": result.prompts,
           "success": rate(t["success"].sum(), len(t)),
           "certified": rate(t.loc[t["found"], "certified"].sum(), int(t["found"].sum())),
           "failed_at_start": int(t["failed_at_start"].sum()),
           "heldout_failed": {w: rate(f["failed"].sum(), len(f)) for w, f in side.items()},
           "heldout_distorted": {w: rate(f["distorted"].sum(), len(f)) for w, f in side.items()},
           "realism": {w: float(f["realism"].median()) if len(f) else float("nan") for w, f in side.items()},
           "heldout_failed_success": {w: rate(f["failed"].sum(), len(f)) for w, f in side_ok.items()},
           "heldout_distorted_success": {w: rate(f["distorted"].sum(), len(f)) for w, f in side_ok.items()},
           "residual_speedup": speedup, "residual_speedup_bound": speedup_bound, "modes": modes.to_dict("records")}
    out["best_latent"] = best_latent(side_ok["found"])
    # the study's target (issue #31): one verified, certified latent that distorts most
    # held-out prompts, and how real its images look (a share of ordinary images)
    best = out["best_latent"]
    out["headline"] = {"found": counts["found"], "verified": counts["verified"],
                       "best latent's held-out prompts distorted": best["distorted"] if best else "none verified",
                       "its median realism": round(best["realism"], 3) if best else float("nan"),
                       "residual_speedup": round(speedup, 3)}
    return out
