"""`sagekit toy eval`: how good is the toy world? Every judge on held-out scenes (accuracy,
interval, calibration), every generator on its own images of every label, and what the
world's deliberate biases do to the generators."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ..calibration import reliability
from ..models.registry import load_generator, load_judge
from ..stats import wilson
from .attributes import ATTRIBUTE_JUDGES, JUDGE_SCENES, OBJECT_JUDGES, scored_examples
from .scenes import COLOURS, LABELS, SHAPES
from .world import WorldConfig, make_dataset

JUDGES = tuple(f"toy-{k}" for k in OBJECT_JUDGES + ATTRIBUTE_JUDGES + ("realism",))
PROMPT = "a photo of a {label}"
# Bars from the toy-world issues; `sagekit toy eval` reports whether each is met.
JUDGE_BAR = 0.98
GENERATOR_BAR = 0.85
# The three toy generators: fixed variance in latent space, learned variance in latent
# space (paper 001's "latent-GLIDE"), learned variance in pixel space (GLIDE).
GENERATORS = ("toy", "toy-latent-learned", "toy-pixel")


def _kind(name: str) -> str:
    """The attribute a toy judge names: ``"toy-count"`` -> ``"count"``; the CLIP verifier
    names objects, like the object judges."""
    return "resnet" if name == "toy-clip" else name[4:]


@torch.no_grad()
def judge_scores(n: int = 1000, seed: int = 12345) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Every toy judge (and ``toy-clip``) on ``n`` fresh scenes of the unbiased world (a
    seed unseen in training). Returns one row per judge (``acc`` with its 95% Wilson
    interval ``lo``/``hi`` and count ``n``, ``ece``) and each judge's reliability table."""
    world = WorldConfig().unbiased()
    rows, tables = [], {}
    for i, name in enumerate(JUDGES + ("toy-clip",)):
        kind = _kind(name)
        batch = make_dataset(n, seed + i, world, kind=JUDGE_SCENES.get(kind))
        images, targets = scored_examples(kind, batch.float_images(), batch.scenes, seed + i)
        judge = load_judge(name)
        probs = torch.cat([judge(images[j:j + 500]) for j in range(0, len(images), 500)])
        hits = int((probs.argmax(-1) == targets).sum())
        tables[name], ece = reliability(probs, targets)
        acc, lo, hi = wilson(hits, len(targets))
        rows.append({"judge": name, "attribute": "object" if kind in OBJECT_JUDGES else kind, "acc": round(acc, 4),
                     "lo": round(lo, 4), "hi": round(hi, 4), "n": len(targets), "ece": round(ece, 4)})
    return pd.DataFrame(rows), tables


def label_grid(per_label: int, seed: int = 0) -> tuple[list[str], list[int], torch.Tensor]:
    """Prompts, seeds and target labels for ``per_label`` images of every toy label."""
    prompts, seeds, targets = [], [], []
    for li, label in enumerate(LABELS):
        for k in range(per_label):
            prompts.append(PROMPT.format(label=label))
            seeds.append(seed + li * 1000 + k)
            targets.append(li)
    return prompts, seeds, torch.tensor(targets)


@torch.no_grad()
def generation_accuracy(model: str, guidance: float, per_label: int = 6, steps: int | None = None,
                        seed: int = 0, return_images: bool = False) -> dict:
    """Share of a generator's images of "a photo of a {label}" whose label (shape and colour)
    the judge ensemble gets right, over the labels it learned (``acc``, with ``n``) and the
    held-out pairs it never saw (``held_out_acc``); also shape-only and colour-only accuracy
    on the learned labels."""
    gen = load_generator(model)
    ensemble = load_judge("toy-ensemble")
    prompts, seeds, targets = label_grid(per_label, seed)
    t0 = time.perf_counter()
    images = gen.generate(prompts, seeds, guidance=guidance, steps=steps, batch_size=72)
    seconds = time.perf_counter() - t0
    pred = ensemble(images).argmax(-1)
    held = torch.tensor([LABELS[int(t)] in WorldConfig().held_out for t in targets])
    seen, n_shapes = ~held, len(SHAPES)
    right = pred == targets
    res = {
        "model": model, "guidance": guidance, "steps": steps or gen.default_steps, "n": int(seen.sum()),
        "acc": round(right[seen].float().mean().item(), 4),
        "shape_acc": round((pred % n_shapes == targets % n_shapes)[seen].float().mean().item(), 4),
        "colour_acc": round((pred // n_shapes == targets // n_shapes)[seen].float().mean().item(), 4),
        "held_out_acc": round(right[held].float().mean().item(), 4) if held.any() else float("nan"),
        "n_held_out": int(held.sum()),
        "images_per_s": round(len(prompts) / seconds, 2),
    }
    if return_images:
        res["images"], res["targets"], res["pred"] = images, targets, pred
    return res


def generation_results(models=GENERATORS, per_label: int = 6, seed: int = 0,
                       return_images: bool = False) -> dict[tuple[str, str], dict]:
    """:func:`generation_accuracy` of every model with its default guidance ("guided") and
    without guidance ("unguided"), keyed ``(model, mode)``."""
    from ..models.registry import TOY_SAMPLING

    return {(m, mode): generation_accuracy(m, g, per_label, seed=seed, return_images=return_images)
            for m in models for mode, g in (("guided", TOY_SAMPLING[m][1]), ("unguided", 1.0))}


def evaluate(per_label: int = 6, n_judge: int = 1000) -> dict:
    """Everything `sagekit toy eval --json` prints."""
    judges, _ = judge_scores(n_judge)
    judge_acc = dict(zip(judges.judge, judges.acc))
    gen = {}
    for (model, mode), r in generation_results(per_label=per_label).items():
        gen.setdefault(model, {})[mode] = r
    bars = {f"judge {k} >= {JUDGE_BAR}": v >= JUDGE_BAR for k, v in judge_acc.items() if k != "toy-clip"}
    for model in GENERATORS:
        bars[f"{model} guided >= {GENERATOR_BAR}"] = gen[model]["guided"]["acc"] >= GENERATOR_BAR
    return {
        "judge_acc": judge_acc,
        "judge_ece": dict(zip(judges.judge, judges.ece)),
        "gen_acc": {m: {mode: r["acc"] for mode, r in d.items()} for m, d in gen.items()},
        "gen_detail": gen,
        "labels": len(LABELS), "shapes": len(SHAPES), "colours": len(COLOURS),
        "bars_met": bars,
    }


def results_table(results: dict) -> pd.DataFrame:
    """One row per (model, mode) of :func:`generation_results`, the images left out."""
    return pd.DataFrame(list(results.values())).drop(columns=["images", "targets", "pred"], errors="ignore")


def accuracy_bars(results: dict) -> dict[str, float]:
    """Bar values of :func:`generation_results`: "model\\nmode" -> share judged right."""
    return {f"{m}\n{mode}": r["acc"] for (m, mode), r in results.items()}


def shown_labels(n: int) -> list[int]:
    """``n`` label indices for the image grids: a stride of 7 walks through every shape and
    colour (7 is coprime with 6 shapes and 36 labels)."""
    return sorted({(7 * i) % len(LABELS) for i in range(n)})


def world_mix(n: int = 20000, seed: int = 0) -> pd.DataFrame:
    """How often each label stands on each background in the generators' training world
    (first objects of ``n`` scenes): a background x label table of shares per background."""
    batch = make_dataset(n, seed, WorldConfig())
    from .scenes import BACKGROUNDS

    pairs = [(list(BACKGROUNDS)[s.background], LABELS[s.label]) for s in batch.scenes if s.things]
    table = pd.crosstab(pd.Series([p[0] for p in pairs], name="background"),
                        pd.Series([p[1] for p in pairs], name="label"), normalize="index")
    return table.reindex(columns=list(LABELS), fill_value=0.0)


def summarize(results: dict, judges: pd.DataFrame, training: dict) -> dict:
    """The toy-world report's findings (the common schema: ``models``, ``headline``, ...);
    ``judges`` and ``generation`` are rows for the report's bullet lists."""
    gen_acc = {m: {mode: results[(m, mode)]["acc"] for mode in ("guided", "unguided")} for m in GENERATORS}
    graded = judges[judges.judge != "toy-clip"]
    return {"models": list(GENERATORS), "judge_acc": dict(zip(judges.judge, judges.acc)), "gen_acc": gen_acc,
            "training_seconds": training["total_seconds"],
            "judges": judges.to_dict("records"),
            "generation": [{"model": m, "mode": mode, **{k: v for k, v in r.items()
                                                         if k not in ("images", "targets", "pred")}}
                           for (m, mode), r in results.items()],
            "headline": {**{f"{m} guided": gen_acc[m]["guided"] for m in GENERATORS},
                         "min judge": float(np.min(graded.acc)), "max ECE": float(np.max(graded.ece))}}
