"""`sagekit toy eval`: how good is the toy world? Judges on held-out procedural images,
generators on their own images of every label."""

from __future__ import annotations

import time

import pandas as pd
import torch

from ..models.registry import load_generator, load_judge
from .shapes import COLOURS, LABELS, SHAPES, make_dataset

JUDGES = ("toy-resnet", "toy-mobilenet", "toy-edge")
PROMPT = "a photo of a {label}"
# Bars from the foundation issue; `sagekit toy eval` reports whether each is met.
BARS = {"judge": 0.98, ("toy", "guided"): 0.85, ("toy-latent-learned", "guided"): 0.85,
        ("toy-pixel", "guided"): 0.75}
# The three toy generators: fixed variance in latent space, learned variance in latent
# space (paper 001's "latent-GLIDE"), learned variance in pixel space (GLIDE).
GENERATORS = ("toy", "toy-latent-learned", "toy-pixel")


@torch.no_grad()
def judge_accuracy(n: int = 1000, seed: int = 12345) -> dict[str, float]:
    """Top-1 accuracy of every toy judge on ``n`` fresh procedural images (seed unseen in training)."""
    test = make_dataset(n, seed)
    images = test.float_images()
    out = {}
    for name in JUDGES + ("toy-clip",):
        judge = load_judge(name)
        pred = torch.cat([judge(images[i:i + 500]).argmax(-1) for i in range(0, n, 500)])
        out[name] = round((pred == test.labels).float().mean().item(), 4)
    return out


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
    """Fraction of generated images whose label (shape and colour) the judge ensemble
    (mean of the three judges) gets right; also shape-only and colour-only accuracy."""
    gen = load_generator(model)
    ensemble = load_judge("toy-ensemble")
    prompts, seeds, targets = label_grid(per_label, seed)
    t0 = time.perf_counter()
    images = gen.generate(prompts, seeds, guidance=guidance, steps=steps, batch_size=72)
    seconds = time.perf_counter() - t0
    pred = ensemble(images).argmax(-1)
    n_shapes = len(SHAPES)
    res = {
        "model": model, "guidance": guidance, "steps": steps or gen.default_steps, "n": len(prompts),
        "acc": round((pred == targets).float().mean().item(), 4),
        "shape_acc": round((pred % n_shapes == targets % n_shapes).float().mean().item(), 4),
        "colour_acc": round((pred // n_shapes == targets // n_shapes).float().mean().item(), 4),
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
    judges = judge_accuracy(n_judge)
    gen = {}
    for (model, mode), r in generation_results(per_label=per_label).items():
        gen.setdefault(model, {})[mode] = r
    bars = {f"judge {k} >= {BARS['judge']}": v >= BARS["judge"] for k, v in judges.items() if k != "toy-clip"}
    for (model, mode), bar in ((k, v) for k, v in BARS.items() if isinstance(k, tuple)):
        bars[f"{model} {mode} >= {bar}"] = gen[model][mode]["acc"] >= bar
    return {
        "judge_acc": judges,
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


def summarize(results: dict, judge_acc: dict[str, float], training: dict, n_judge: int) -> dict:
    """The toy-world report's findings (the common schema: ``models``, ``headline``, ...);
    ``judges`` and ``generation`` are rows for the report's bullet lists."""
    gen_acc = {m: {mode: results[(m, mode)]["acc"] for mode in ("guided", "unguided")} for m in GENERATORS}
    return {"models": list(GENERATORS), "judge_acc": judge_acc, "gen_acc": gen_acc,
            "training_seconds": training["total_seconds"],
            "judges": [{"judge": k, "acc": v, "n": n_judge} for k, v in judge_acc.items()],
            "generation": [{"model": m, "mode": mode, **{k: v for k, v in r.items()
                                                         if k not in ("images", "targets", "pred")}}
                           for (m, mode), r in results.items()],
            "headline": {**{f"{m} guided": gen_acc[m]["guided"] for m in GENERATORS},
                         "min judge": min(judge_acc.values())}}
