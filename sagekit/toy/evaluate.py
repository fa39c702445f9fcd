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
from ..seeds import seed_of
from ..seeds import seeds as seed_stream
from ..stats import wilson
from .attributes import ATTRIBUTE_JUDGES, JUDGE_SCENES, OBJECT_JUDGES, scored_examples
from .scenes import BACKGROUNDS, COLOURS, LABELS, SHAPES
from .world import WorldConfig, make_dataset

JUDGES = tuple(f"toy-{k}" for k in OBJECT_JUDGES + ATTRIBUTE_JUDGES + ("realism",))
PROMPT = "a photo of a {label}"
# Bars from the toy-world issues; `sagekit toy eval` reports whether each is met.
JUDGE_BAR = 0.98
GENERATOR_BAR = 0.85
# The three toy generators: fixed variance in latent space, learned variance in latent
# space (paper 001's "latent-GLIDE"), learned variance in pixel space (GLIDE).
GENERATORS = ("toy", "toy-latent-learned", "toy-pixel")
MAX_PER_LABEL = 1000  # the toy-world study's bound on per_label: each label's block of the images stream


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
            seeds.append(seed_of("images", seed, li * MAX_PER_LABEL + k))
            targets.append(li)
    return prompts, seeds, torch.tensor(targets)


@torch.no_grad()
def generation_accuracy(model: str, guidance: float, per_label: int = 6, steps: int | None = None,
                        seed: int = 0, return_images: bool = False, scheduler: str | None = None) -> dict:
    """Share of a generator's images of "a photo of a {label}" whose label (shape and colour)
    the judge ensemble gets right, over the labels it learned (``acc``, with ``n``) and the
    held-out pairs it never saw (``held_out_acc``); also shape-only and colour-only accuracy
    on the learned labels."""
    gen = load_generator(model)
    ensemble = load_judge("toy-ensemble")
    prompts, seeds, targets = label_grid(per_label, seed)
    t0 = time.perf_counter()
    images = gen.generate(prompts, seeds, guidance=guidance, steps=steps, scheduler=scheduler, batch_size=72)
    seconds = time.perf_counter() - t0
    pred = ensemble(images).argmax(-1)
    held = torch.tensor([LABELS[int(t)] in WorldConfig().held_out for t in targets])
    seen, n_shapes = ~held, len(SHAPES)
    right = pred == targets
    res = {
        "model": model, "guidance": guidance, "steps": gen.steps_of(steps),
        "sampler": scheduler or type(gen.scheduler).__name__, "n": int(seen.sum()),
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
    from ..toy.names import TOY_SAMPLING

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


def world_mix(n: int = 20000, seed: int = 0, by: str = "shape") -> pd.DataFrame:
    """How often each shape (``by="shape"``) or label (``by="label"``) stands on each
    background in the generators' training world (first objects of ``n`` scenes): a
    background x shape (or label) table of shares per background."""
    batch = make_dataset(n, seed, WorldConfig())
    names = list(SHAPES) if by == "shape" else list(LABELS)
    pairs = [(list(BACKGROUNDS)[s.background], LABELS[s.label] if by == "label" else SHAPES[s.things[0].shape])
             for s in batch.scenes if s.things]
    table = pd.crosstab(pd.Series([p[0] for p in pairs], name="background"),
                        pd.Series([p[1] for p in pairs], name=by), normalize="index")
    return table.reindex(columns=names, fill_value=0.0)


def unet_recipes(training: dict) -> pd.DataFrame:
    """How each generator's UNet was trained, from ``training.json``'s config: one row per
    UNet with its steps, batch, learning rate, whether it has the pooled text embedding,
    what its prompts' end states were made (``keep``, or masked / shuffled for a share of
    the prompts; mask-then-shuffle masks for the first ``end_switch`` of the steps), the
    grounding weight, and each caption-noise rate (a share in [0, 1] of the captions it can
    apply to). Empty for a log without recipes."""
    rows = []
    for model, r in training.get("config", {}).get("unets", {}).items():
        ends = r["end_states"]
        if ends != "keep":
            ends += f" ({r['end_rate']:.0%} of prompts" + (
                f", masked for the first {r['end_switch']:.0%} of the steps)" if ends == "mask-then-shuffle" else ")")
        rows.append({"model": model, "steps": r["steps"], "batch": r["batch"], "lr": r["lr"],
                     "pooled text": r.get("text_embed", False), "end states": ends, "grounding": r["grounding"],
                     **{f"noise: {k.replace('_', ' ')}": v for k, v in r.get("caption_noise", {}).items()}})
    return pd.DataFrame(rows)


def summarize(results: dict, judges: pd.DataFrame, training: dict, probes: pd.DataFrame | None = None,
              word_probes: pd.DataFrame | None = None) -> dict:
    """The toy-world report's findings (the common schema: ``models``, ``headline``, ...);
    ``judges``, ``generation``, ``probes`` and ``word_probes`` are rows for the report's
    bullet lists; ``recipes`` is each UNet's ``TrainConfig.unets`` entry as trained."""
    gen_acc = {m: {mode: results[(m, mode)]["acc"] for mode in ("guided", "unguided")} for m in GENERATORS}
    graded = judges[judges.judge != "toy-clip"]
    return {"models": list(GENERATORS), "judge_acc": dict(zip(judges.judge, judges.acc)), "gen_acc": gen_acc,
            "training_seconds": training["total_seconds"],
            "recipes": training.get("config", {}).get("unets", {}),
            "judges": judges.to_dict("records"),
            "probes": [] if probes is None else probes.to_dict("records"),
            "word_probes": [] if word_probes is None else word_probes.to_dict("records"),
            "generation": [{"model": m, "mode": mode, **{k: v for k, v in r.items()
                                                         if k not in ("images", "targets", "pred")}}
                           for (m, mode), r in results.items()],
            "headline": {**{f"{m} guided": gen_acc[m]["guided"] for m in GENERATORS},
                         "min judge": float(np.min(graded.acc)), "max ECE": float(np.max(graded.ece)),
                         **({} if word_probes is None else {
                             f"{r['model']} {k}": r[k] for r in word_probes.to_dict("records")
                             for k in ("word_swap", "end_swap", "attention_ratio")})}}


def _probe_prompts(per_prompt: int, seed: int) -> list[dict]:
    """The bias probes' prompts: one row per (probe, prompt) with what a right image shows."""
    from .grammar import PLACES, SYNONYMS
    from .scenes import PLURALS

    cfg = WorldConfig()
    seen = [l for l in LABELS if l not in cfg.held_out]
    rng = np.random.default_rng(seed)
    rows = [{"probe": "plain", "prompt": PROMPT.format(label=l), "label": l} for l in seen]
    for bg, companion in cfg.companions.items():
        for l in rng.choice([l for l in seen if l.split()[1] != companion], 6, replace=False):
            rows.append({"probe": "context word", "prompt": f"{PROMPT.format(label=l)} {PLACES[bg][0]}",
                         "label": str(l), "companion": companion})
    rows += [{"probe": "unseen pair", "prompt": PROMPT.format(label=l), "label": l} for l in cfg.held_out]
    for l in rng.choice(seen, 8, replace=False):
        colour, shape = str(l).split()
        rows.append({"probe": "count", "prompt": f"a photo of two {colour} {PLURALS[shape]}", "label": str(l),
                     "count": "two"})
    for a, b in rng.choice(len(seen), (8, 2), replace=False):
        rows.append({"probe": "relation", "prompt": f"a {seen[a]} left of a {seen[b]}", "label": seen[a],
                     "relation": f"{seen[a]} on the left"})
    for l in seen:
        colour, shape = l.split()
        if colour in SYNONYMS or shape in SYNONYMS:
            rare = f"{SYNONYMS.get(colour, colour)} {SYNONYMS.get(shape, shape)}"
            rows.append({"probe": "rare word", "prompt": f"a photo of a {rare}", "label": l})
    return [{**r, "seeds": seed_stream("bias-probe", seed, per_prompt, start=i * per_prompt)} for i, r in enumerate(rows)]


@torch.no_grad()
def bias_probes(model: str, per_prompt: int = 4, seed: int = 0, guidance: float | None = None) -> pd.DataFrame:
    """What the world's biases do to generator ``model``: per probe (plain prompts, a
    context word naming a background, unseen pairs, counts, relations, rare words), the
    share of images right by the attribute judges, with its 95% interval; for context
    words also how often the background's companion shape was drawn instead."""
    gen = load_generator(model)
    obj, count, relation = load_judge("toy-ensemble"), load_judge("toy-count"), load_judge("toy-relation")
    rows = _probe_prompts(per_prompt, seed)
    prompts = [r["prompt"] for r in rows for _ in r["seeds"]]
    seeds = [s for r in rows for s in r["seeds"]]
    images = gen.generate(prompts, seeds, guidance=guidance, batch_size=72)
    top = obj(images).argmax(-1)
    counted, related = count(images).argmax(-1), relation(images).argmax(-1)
    out, i = [], 0
    for r in rows:
        n = len(r["seeds"])
        label = [LABELS[int(t)] for t in top[i:i + n]]
        if r["probe"] == "count":
            right = [count.labels[int(c)] == r["count"] for c in counted[i:i + n]]
            right = [ok and l == r["label"] for ok, l in zip(right, label)]
        elif r["probe"] == "relation":
            right = [relation.labels[int(c)] == r["relation"] for c in related[i:i + n]]
        else:
            right = [l == r["label"] for l in label]
        companion = [l.split()[1] == r.get("companion") for l in label]
        out.append({"probe": r["probe"], "prompt": r["prompt"], "right": sum(right), "companion": sum(companion),
                    "n": n})
        i += n
    table = pd.DataFrame(out).groupby("probe", sort=False)[["right", "companion", "n"]].sum().reset_index()
    ci = [wilson(k, n) for k, n in zip(table.right, table.n)]
    table["acc"], table["lo"], table["hi"] = zip(*[(round(a, 3), round(lo, 3), round(hi, 3)) for a, lo, hi in ci])
    table["companion_rate"] = (table.companion / table.n).round(3)
    return table[["probe", "acc", "lo", "hi", "n", "companion_rate"]]
