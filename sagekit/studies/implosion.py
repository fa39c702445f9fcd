"""Implosion study (paper 002): poison k concepts, fine-tune, measure what breaks.

For k poisoned concepts A -> B the fine-tuning set holds captions about A paired with
images of B (dirty-label poison). Two budget rules say how much poison each k gets
(:data:`BUDGET_RULES`; ``"both"`` runs the two side by side):

- ``"per-concept"``, the paper's: a fixed number of poisoned pairs per concept, so the
  total poison grows with k (Theorem 4.2: AD rises with the number of poisoned concepts);
- ``"total"``, the control for poison volume: a fixed budget P (poisoned pairs in all)
  split evenly over the k concepts, so only the number of concepts changes.

Either way, to measure the effect of k:

- the training set has the same size N for every k (N minus the poisoned pairs are clean);
- the concepts split into a poison block and an evaluation block that share no concept
  word: unpoisoned concepts never share a colour or a shape word with a poisoned one;
- every point has a clean control: the same images, steps and size, with the P pairs
  captioned as what they show (B as B);
- rates come with their counts and Wilson intervals.

Per point: Alignment Difficulty of the training set, how often prompts about A are drawn
as B, accuracy and CLIP score on the unpoisoned concepts, and the spread of the concept
tokens' cross-attention (a sagekit measure, not the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..models.attention_maps import attention_spread, token_maps
from ..models.clip import ClipEmbedder, ClipScorer
from ..models.generator import Generator
from ..models.judges import Judge
from ..stats import rate, wilson
from ..poisoning import PoisonedSet, PoisonError, budget_split, choose_poison, counts_of, parse_concepts, read_folder
from ..toy.probe import object_attention
from ..toy.scenes import COLOURS, LABELS, SHAPES
from ..toy.training.diffusion import train_unet
from ..toy.world import WorldConfig, describe_all, make_dataset, relabel
from . import common
from .alignment import alignment_difficulty
from .parameters import Choice, Float, Int, ListOf, ModelName, Parameter, ParameterError, Schema, Text

STUDY = "implosion"
PROMPT = "a photo of a {label}"
# The evaluation block: this many colours x shapes, never used by a poisoned pair.
HELD_COLOURS = HELD_SHAPES = 2
MAX_K = (len(COLOURS) - HELD_COLOURS) * (len(SHAPES) - HELD_SHAPES) // 2


@dataclass(frozen=True)
class ConceptSplit:
    """``pairs``: the (source, target) pairs of the largest k (the pairs for k are its
    first k); ``unpoisoned``: the evaluated concepts, sharing no word with any pair."""

    pairs: list[tuple[str, str]]
    unpoisoned: list[str]


def split_concepts(k_max: int, seed: int = 0) -> ConceptSplit:
    """Seeded split of the toy labels: HELD_COLOURS x HELD_SHAPES unpoisoned concepts, and
    up to MAX_K disjoint pairs from the other colours and shapes. Sources come from one end
    of a seeded permutation of the poison block and targets from the other, so no target
    is ever poisoned itself."""
    if not 0 <= k_max <= MAX_K:
        raise ValueError(f"k must be between 0 and {MAX_K}, got {k_max}")
    rng = np.random.default_rng(seed)
    colours, shapes = list(COLOURS), list(SHAPES)
    held_c = {colours[i] for i in rng.permutation(len(colours))[:HELD_COLOURS]}
    held_s = {shapes[i] for i in rng.permutation(len(shapes))[:HELD_SHAPES]}
    unpoisoned = [lab for lab in LABELS if lab.split()[0] in held_c and lab.split()[1] in held_s]
    block = [lab for lab in LABELS if lab.split()[0] not in held_c and lab.split()[1] not in held_s]
    perm = rng.permutation(len(block))
    pairs = [(block[perm[i]], block[perm[-1 - i]]) for i in range(k_max)]
    return ConceptSplit(pairs, unpoisoned)


def plan_split(k_max: int, seed: int = 0, data: str = "", concepts: str = "",
               unpoisoned: list[str] | None = None) -> ConceptSplit:
    """The concept split of a run: the toy world's seeded split (``data`` empty), or for a
    folder of image + caption pairs the pairs ``concepts`` names ("A:B,C:D"; the first k
    are used at each k) and the ``unpoisoned`` concepts the user evaluates."""
    if not data:
        return split_concepts(k_max, seed)
    pairs = parse_concepts(concepts)
    if k_max > len(pairs):
        raise ValueError(f"k = {k_max} needs {k_max} concept pairs; concepts names {len(pairs)}")
    if not unpoisoned:
        raise ValueError("a folder run needs the unpoisoned concepts it evaluates")
    overlap = concept_words(pairs) & {w for lab in unpoisoned for w in lab.lower().split()}
    if overlap:
        raise ValueError(f"unpoisoned concepts must share no word with a poisoned pair: {', '.join(sorted(overlap))}")
    return ConceptSplit(pairs, list(unpoisoned))


BUDGET_RULES = ("per-concept", "total")


def rules_of(budget_rule: str) -> list[str]:
    """The rules a study parameter runs: one of :data:`BUDGET_RULES`, or ``"both"``."""
    if budget_rule == "both":
        return list(BUDGET_RULES)
    if budget_rule not in BUDGET_RULES:
        raise ValueError(f"budget_rule must be 'per-concept', 'total' or 'both', got {budget_rule!r}")
    return [budget_rule]


def per_concept_of(budget: int, ks, per_concept: int = 0) -> int:
    """The per-concept rule's pairs per concept: ``per_concept``, or when 0 ``budget //
    max(ks)``, so that both rules poison the same pairs at the largest k when the budget
    divides evenly by it."""
    return per_concept or max(1, budget // max(max(ks), 1))


def sweep_plan(ks, budget: int, budget_rule: str, per_concept: int = 0) -> dict[tuple[str, int, bool], tuple]:
    """Every row a sweep reports, ``(rule, k, control)``, mapped to the fine-tuning set it
    needs: ``(poisoned pairs per concept, clean)``. Rows that need the same set share one
    fine-tune (``set(plan.values())``): k = 0 is clean, so it is its own control and the same
    under both rules, and the rules meet where they allot the same counts."""
    per_concept = per_concept_of(budget, ks, per_concept)
    return {(rule, k, control): (tuple(allocation(rule, k, budget, per_concept)), control or k == 0)
            for rule in rules_of(budget_rule) for k in ks for control in (False, True)}


def allocation(rule: str, k: int, budget: int, per_concept: int) -> list[int]:
    """Poisoned pairs for each of the k concepts under ``rule``."""
    return [per_concept] * k if rule == "per-concept" else budget_split(budget, k)


def build_training_set(pairs: list[tuple[str, str]], n_train: int, budget: int | list[int], seed: int = 0,
                       control: bool = False) -> PoisonedSet:
    """``n_train`` pairs: clean ones from the toy world (the mix the generator learned
    from), then images of a lone target B for each pair: ``budget`` split evenly over the
    pairs, or a list of counts, one per pair. Poison (``control=False``) captions each as
    its source A (the caption keeps the image's wording, only the concept is swapped); the
    control keeps the true caption. With no pairs, all ``n_train`` are clean."""
    counts = counts_of(budget, len(pairs)) if pairs else []
    n_poison = sum(counts)
    if not 0 <= n_poison <= n_train:
        raise ValueError(f"the poisoned pairs ({n_poison}) must be at most n_train ({n_train})")
    clean = make_dataset(n_train - n_poison, seed)
    images, captions = [clean.images], list(clean.captions)
    img_l, cap_l = [clean.labels], [clean.labels]
    for i, ((a, b), n) in enumerate(zip(pairs, counts)):
        ia, ib = LABELS.index(a), LABELS.index(b)
        extra = make_dataset(n, seed + 1000 + i, kind="one", labels=[ib] * n)
        if control:
            captions += extra.captions
        else:
            world = WorldConfig()
            captions += describe_all([relabel(s, ia) for s in extra.scenes], seed + 1000 + i,
                                     world.synonym_rate, world.caption_noise)
        images.append(extra.images)
        img_l.append(extra.labels)
        cap_l.append(extra.labels if control else torch.full((n,), ia))
    poisoned = torch.zeros(n_train, dtype=torch.bool)
    if not control:
        poisoned[n_train - n_poison:] = True
    return PoisonedSet(torch.cat(images), captions, torch.cat(img_l), torch.cat(cap_l), poisoned)


def training_set(pairs: list[tuple[str, str]], n_train: int, budget: int | list[int], seed: int, control: bool,
                 folder: str = "", size: int = 32) -> PoisonedSet:
    """The fine-tuning set of one point: procedural (toy world) or from ``folder`` (images
    at ``size`` px, ``poisoning.training_set``); ``budget``: poisoned pairs in all, or per
    pair (a list)."""
    if not folder:
        return build_training_set(pairs, n_train, budget, seed, control=control)
    from ..poisoning import training_set as from_folder

    return from_folder(folder, pairs, n_train, budget, size, seed, control)


@torch.no_grad()
def dataset_ad(clip: ClipEmbedder, data: PoisonedSet, batch_size: int = 500) -> dict[str, float]:
    """Alignment Difficulty of a fine-tuning set under a CLIP model."""
    img, txt = [], []
    for i in range(0, len(data.captions), batch_size):
        img.append(clip.embed_images(data.images[i:i + batch_size].float().div(255).to(clip.device)).cpu())
        txt.append(clip.embed_text(data.captions[i:i + batch_size]).cpu())
    return alignment_difficulty(torch.cat(img), torch.cat(txt))


def finetune(gen: Generator, data: PoisonedSet, steps: int = 100, lr: float = 5e-4, trainable: str = "all",
             batch_size: int = 64, seed: int = 0, progress: bool = False, rank: int = 4) -> Generator:
    """A copy of ``gen`` fine-tuned on the set: ``trainable`` ``"lora"`` trains LoRA
    adapters of ``rank`` on the denoiser's attention (``models.lora``, any family);
    ``"all"`` or ``"cross-attention"`` fine-tune the UNet's own weights (SD-layout UNets,
    the toy world's default)."""
    if trainable == "lora":
        from ..models.lora import lora_fine_tuned

        return lora_fine_tuned(gen, data.images, data.captions, steps, lr, rank, batch_size=batch_size, seed=seed,
                               progress=progress)
    tuned, x, text, uncond = gen.fine_tune_data(data.images, data.captions)
    dev = tuned.denoiser.device
    # the toy world's own UNet training loop, with the model's own noise schedule
    train_unet(tuned.denoiser, gen.training_scheduler(), x.to(dev), text.to(dev), uncond.to(dev), seed, steps,
               batch_size, lr, ema_decay=0, trainable=trainable, progress_bar=progress)
    tuned.denoiser.requires_grad_(False).eval()
    return tuned


def concept_positions(gen: Generator, prompt: str, label: str) -> tuple[int, int]:
    """Token positions of the first and last token of ``label`` in ``prompt`` (which ends
    with it) under the generator's first tokenizer: where its attention maps are read."""
    tok = gen.tokenizers[0]
    ids = tok(prompt).input_ids
    head = tok(prompt[: len(prompt) - len(label)].rstrip()).input_ids
    if tok.eos_token_id is not None and ids and ids[-1] == tok.eos_token_id:
        ids, head = ids[:-1], head[:-1]
    return len(head), max(len(head), len(ids) - 1)


@torch.no_grad()
def generate_with_attention(gen: Generator, prompts: list[str], labels: list[str], seeds: list[int],
                            guidance: float | None, steps: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 3, H, W)`` in one batch, and the cross-attention maps of the first and
    last token of each prompt's concept (``labels``; on the toy world its colour and its
    shape), averaged over layers and steps: ``(N, 2, H, W)``."""
    with gen.capture_attention() as maps:
        images = gen.generate(prompts, seeds, guidance=guidance, steps=steps, batch_size=max(1, len(prompts)))
    tm = token_maps(maps, images.shape[-1])
    tm = tm[len(prompts):] if tm.shape[0] == 2 * len(prompts) else tm  # the conditional half under guidance
    at = torch.tensor([concept_positions(gen, p, lab) for p, lab in zip(prompts, labels)]).view(-1, 2, 1, 1)
    at = at.clamp(max=tm.shape[1] - 1).expand(-1, -1, *tm.shape[-2:])
    return images.float(), tm.gather(1, at.to(tm.device)).cpu()


def localisation(images: torch.Tensor, maps: torch.Tensor, labels: list[str], right: torch.Tensor) -> float:
    """How well the concept's last token (on the toy world its shape word) attends to its
    object: the median :func:`sagekit.toy.probe.attention_ratio` inside the object's colour
    mask over the images judged right (1: no better than uniform). Only the toy world knows
    its objects' pixels, so NaN for any other label. images ``(N, 3, H, W)`` in [0, 1];
    maps ``(N, 2, H, W)`` (:func:`generate_with_attention`); right bool ``(N,)``."""
    toy = [i for i, label in enumerate(labels) if label in LABELS]
    ratios = object_attention(maps[toy, 1], images[toy], torch.tensor([LABELS.index(labels[i]) for i in toy]),
                              right[toy])
    return float(np.median(ratios)) if ratios else float("nan")


@torch.no_grad()
def evaluate(gen: Generator, judge: Judge, clip: ClipScorer, pairs: list[tuple[str, str]], unpoisoned: list[str],
             seeds: list[int], guidance: float | None = None, steps: int | None = None, batch_size: int = 100,
             attention_seeds: int = 2) -> dict:
    """Generate every unpoisoned concept and every source A on ``seeds`` and judge them.
    Returns counts and Wilson intervals (unpoisoned accuracy; sources drawn as their target
    B, and as themselves), CLIP score, the concept tokens' attention spread on the first
    ``attention_seeds`` seeds, and the images with labels and predictions."""
    rows = [(lab, "unpoisoned", lab) for lab in unpoisoned] + [(a, "poisoned", b) for a, b in pairs]
    labels = [lab for lab, _, _ in rows for _ in seeds]
    kinds = np.array([kind for _, kind, _ in rows for _ in seeds])
    prompts = [PROMPT.format(label=lab) for lab in labels]
    all_seeds = [s for _ in rows for s in seeds]
    # the first attention_seeds seeds of every concept are drawn once, with their attention recorded
    shown = [i for i in range(len(labels)) if all_seeds[i] in seeds[:attention_seeds]]
    rest = [i for i in range(len(labels)) if all_seeds[i] not in seeds[:attention_seeds]]
    shown_images, maps = generate_with_attention(gen, [prompts[i] for i in shown], [labels[i] for i in shown],
                                                 [all_seeds[i] for i in shown], guidance, steps)
    images = torch.empty(len(labels), *shown_images.shape[1:])
    images[shown] = shown_images
    if rest:
        images[rest] = gen.generate([prompts[i] for i in rest], [all_seeds[i] for i in rest], guidance=guidance,
                                    steps=steps, batch_size=batch_size).float()
    pred = torch.cat([judge(images[i:i + 500].to(judge.device)).argmax(-1).cpu() for i in range(0, len(images), 500)])
    scores = clip(images.to(clip.embedder.device), prompts).cpu()
    want = torch.tensor([judge.label_index(lab) for lab, _, _ in rows for _ in seeds])
    target = torch.tensor([judge.label_index(t) for _, _, t in rows for _ in seeds])
    unp, poi = torch.from_numpy(kinds == "unpoisoned"), torch.from_numpy(kinds == "poisoned")
    acc = wilson(int((pred[unp] == want[unp]).sum()), int(unp.sum()))
    hit = wilson(int((pred[poi] == target[poi]).sum()), int(poi.sum()))
    own = wilson(int((pred[poi] == want[poi]).sum()), int(poi.sum()))
    conc = attention_spread(maps).mean(-1)
    sk = torch.from_numpy(kinds[shown] == "unpoisoned")
    return {
        "n": int(unp.sum()), "unpoisoned_acc": acc[0], "unpoisoned_lo": acc[1], "unpoisoned_hi": acc[2],
        "n_poisoned": int(poi.sum()), "poisoned_hit": hit[0], "poisoned_hit_lo": hit[1], "poisoned_hit_hi": hit[2],
        "poisoned_acc": own[0],
        "unpoisoned_clip": float(scores[unp].mean()) if unp.any() else float("nan"),
        "spread_unpoisoned": float(conc[sk].mean()) if sk.any() else float("nan"),
        "attention_ratio_unpoisoned": localisation(images[shown][sk], maps[sk],
                                                   [labels[i] for i, u in zip(shown, sk.tolist()) if u],
                                                   (pred == want)[shown][sk]),
        "spread_poisoned": float(conc[~sk].mean()) if (~sk).any() else float("nan"),
        "images": images, "labels": labels, "kinds": kinds.tolist(),
        "pred": [judge.labels[i] for i in pred.tolist()],
        "attention": {"index": shown, "maps": maps},
    }


@dataclass(frozen=True)
class PointSettings:
    """Everything one point of the sweep over k needs besides its k and the models: plain
    data, so that a worker of another process can run a point (:func:`_point_task`)."""

    split: ConceptSplit
    n_train: int
    budget: int
    steps: int
    lr: float
    trainable: str
    seeds: list[int]
    guidance: float | None = None
    sample_steps: int | None = None
    seed: int = 0
    attention_seeds: int = 2
    data: str = ""
    rank: int = 4
    batch_size: int = 64


@dataclass
class ImplosionResult:
    """What the sweep over k returns. ``table``: one row per (rule, k, control) point (its
    budget, AD, the poisoned concepts drawn as their targets, the unpoisoned concepts'
    accuracy with its interval, CLIP score, attention); ``details``: per point, keyed
    ``(rule, k, control)`` like the rows, the fine-tuned model's evaluation images ``(N, 3,
    H, W)`` in [0, 1], predictions and attention maps (:func:`evaluate`)."""

    table: pd.DataFrame
    details: dict[tuple[str, int, bool], dict]


def run_point(gen: Generator, judge: Judge, clip: ClipScorer, counts: list[int], control: bool, cfg: PointSettings,
              progress: bool = False) -> tuple[dict, dict]:
    """One point: the training set of the first k = len(counts) pairs, ``counts[i]``
    poisoned pairs for the i-th (poisoned, or its clean control), its AD, a fine-tuned
    copy of ``gen``, and that copy's evaluation. Returns the point's row and its details
    (images, predictions, attention maps)."""
    k = len(counts)
    pairs = cfg.split.pairs[:k]
    data = training_set(pairs, cfg.n_train, list(counts), cfg.seed, control, cfg.data, gen.image_size)
    ad = dataset_ad(clip.embedder, data)
    tuned = finetune(gen, data, cfg.steps, cfg.lr, cfg.trainable, cfg.batch_size, cfg.seed, progress, rank=cfg.rank)
    ev = evaluate(tuned, judge, clip, pairs, cfg.split.unpoisoned, cfg.seeds, cfg.guidance, cfg.sample_steps,
                  attention_seeds=cfg.attention_seeds)
    row = {"k": k, "budget": sum(counts), "control": control, "ad": ad["ad"], "d_fea": ad["d_fea"],
           "d_stru": ad["d_stru"], "n_train": ad["n"],
           **{m: v for m, v in ev.items() if not isinstance(v, (torch.Tensor, list, dict))}}
    return row, {"pairs": pairs, **ev}


def _point_task(models, points: list[dict], cfg: PointSettings, progress: bool = False) -> list[tuple[dict, dict]]:
    """The study's task (:mod:`sagekit.spread`): :func:`run_point` for each of ``points``
    (``{"counts", "control"}``), with the images as uint8 (a quarter of the bytes to send
    from a Ray worker; they are only shown). ``progress``: unused, the caller's bar counts
    the points."""
    from ..store import to_uint8

    out = []
    for p in points:
        row, details = run_point(models.gen, models.judge, models.clip, p["counts"], p["control"], cfg)
        out.append((row, {**details, "images": to_uint8(details["images"]).cpu()}))
    return out


def run_k(gen: Generator, judge: Judge, clip: ClipScorer, ks: list[int], n_train: int, budget: int, steps: int,
          lr: float, trainable: str, seeds: list[int], guidance: float | None = None, sample_steps: int | None = None,
          seed: int = 0, attention_seeds: int = 2, progress: bool = True, split: ConceptSplit | None = None,
          data: str = "", rank: int = 4, batch_size: int = 64, executor=None, budget_rule: str = "total",
          per_concept: int = 0) -> ImplosionResult:
    """The sweep over k for each budget rule of ``budget_rule`` (:func:`rules_of`), each
    point poisoned and its clean control. Points whose training sets are the same are run
    once: k = 0 is clean, so it is its own control and the same under both rules; at the
    largest k both rules give the same sets when ``per_concept`` is its default. ``data``:
    a folder of image + caption pairs to poison (with ``split`` from :func:`plan_split`),
    or empty for the toy world. ``executor``: where the points run
    (:mod:`sagekit.executors`; default this process; on Ray, one point per worker at a
    time, each worker loading the models once). Returns one row per (rule, k, control) and
    its details (:class:`ImplosionResult`)."""
    from ..spread import Models, gather

    cfg = PointSettings(split or split_concepts(max(ks), seed), n_train, budget, steps, lr, trainable, list(seeds),
                        guidance, sample_steps, seed, attention_seeds, data, rank, batch_size)
    plan = sweep_plan(ks, budget, budget_rule, per_concept)
    points = [{"counts": list(c), "control": ctl} for c, ctl in dict.fromkeys(plan.values())]
    # one point (a fine-tune) per task, here or on Ray workers that load the models by name
    parts = gather(f"{__name__}:_point_task", Models({gen.name: gen}, judge=judge, clip=clip), points, {"cfg": cfg},
                   executor, per_task=1, progress=progress, desc="fine-tunes")
    results = {(tuple(p["counts"]), p["control"]): (row, {**details, "images": details["images"].float() / 255})
               for p, [(row, details)] in zip(points, parts)}
    rows, details = [], {}
    for (rule, k, control), point in plan.items():  # in the order of rules and ks, whatever order they finished in
        row, det = results[point]
        rows.append({"rule": rule, **row, "control": control})
        details[(rule, k, control)] = det
    return ImplosionResult(pd.DataFrame(rows), details)


POINT_KEYS = ("rule", "k", "budget", "control", "ad", "poisoned_hit", "poisoned_hit_lo", "poisoned_hit_hi", "n_poisoned",
              "unpoisoned_acc", "unpoisoned_lo", "unpoisoned_hi", "n", "unpoisoned_clip", "spread_unpoisoned",
              "attention_ratio_unpoisoned")


def findings_points(points: pd.DataFrame) -> list[dict]:
    """``findings.points`` of the summary JSON (NaN, e.g. no poisoned concept at k = 0, as null)."""
    def plain(v):
        if isinstance(v, str):
            return v
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        return None if np.isnan(v) else round(float(v), 4)
    return [{key: plain(r[key]) for key in POINT_KEYS} for _, r in points.iterrows()]


def trends(points: pd.DataFrame) -> dict:
    """What the sweep says, per budget rule (``{rule: ...}``): whether AD of the poisoned
    sets rises with k (every step up, and its overall change), and per k > 0 whether
    unpoisoned accuracy falls below the control's Wilson interval (``below_control``) and
    whether the two intervals are disjoint (``interval_below``, the claim the intervals
    support)."""
    return {rule: _rule_trends(g) for rule, g in points.groupby("rule", sort=False)}


def _rule_trends(points: pd.DataFrame) -> dict:
    poisoned = points[~points["control"]].sort_values("k")
    control = points[points["control"]].set_index("k")
    ad = poisoned["ad"].to_numpy()
    per_k = []
    for _, r in poisoned[poisoned["k"] > 0].iterrows():
        c = control.loc[r["k"]]
        below, disjoint = bool(r["unpoisoned_acc"] < c["unpoisoned_lo"]), bool(r["unpoisoned_hi"] < c["unpoisoned_lo"])
        per_k.append({"rule": r["rule"], "k": int(r["k"]), "budget": int(r["budget"]),
                      "acc": float(r["unpoisoned_acc"]), "lo": float(r["unpoisoned_lo"]),
                      "hi": float(r["unpoisoned_hi"]), "control": float(c["unpoisoned_acc"]),
                      "control_lo": float(c["unpoisoned_lo"]), "control_hi": float(c["unpoisoned_hi"]),
                      "below_control": below, "interval_below": disjoint,
                      "reading": ("below the control's interval, and the two intervals are disjoint" if disjoint
                                  else "below the control's interval, but the two intervals overlap" if below
                                  else "not below the control's interval"),
                      "ad_minus_control": float(r["ad"] - c["ad"])})
    rises = bool(len(ad) > 1 and np.all(np.diff(ad) > 0))
    return {"ad_rises_every_step": rises, "ad_trend": "rises at every step of k" if rises
            else "does not rise at every step of k", "ad_first": float(ad[0]), "ad_last": float(ad[-1]),
            "ad": [round(float(a), 4) for a in ad], "per_k": per_k}


def per_k_rows(found: dict) -> list[dict]:
    """Every rule's per-k readings, one list (for a report's bullet list)."""
    return [row for v in found.values() for row in v["per_k"]]


def trend_rows(found: dict, ks: list[int]) -> list[dict]:
    """One row per rule: AD of its poisoned sets from the first to the last k, and whether it
    rises at every step."""
    return [{"rule": rule, "first": v["ad_first"], "last": v["ad_last"], "k0": min(ks), "k1": max(ks),
             "rises": v["ad_trend"], "all": ", ".join(f"{a:.4f}" for a in v["ad"])} for rule, v in found.items()]


def concept_words(pairs: list[tuple[str, str]]) -> set[str]:
    """Every concept word (colour or shape) used by the pairs, sources and targets."""
    return {w for pair in pairs for label in pair for w in label.split()}


def plan_text(split: ConceptSplit, budget: int, ks: list[int], budget_rule: str = "total",
              per_concept: int = 0) -> dict:
    """What the report says about the plan: the poisoned pairs ("a → b, ..."), the
    unpoisoned concepts, and per rule the poisoned pairs per concept at each k > 0."""
    plan = sweep_plan(ks, budget, budget_rule, per_concept)
    per_k = "; ".join(f"{rule}: " + ", ".join(f"k={k} {list(plan[(rule, k, False)][0])}" for k in ks if k)
                      for rule in rules_of(budget_rule))
    return {"pairs": ", ".join(f"{a} → {b}" for a, b in split.pairs), "unpoisoned": ", ".join(split.unpoisoned),
            "per_k": per_k}


def clip_note(clip: str) -> str:
    """Why AD under another CLIP than compute_AD.py's is not the paper's number, or ""."""
    from .defaults import AD_CLIP

    if clip == AD_CLIP:
        return ""
    return (f"AD is computed with {clip}; the paper's compute_AD.py uses {AD_CLIP}, and its rescale of the "
            "image-caption cosine, (cos − 0.2) × 4 clipped to [0, 1], was calibrated for that model's cosines: AD "
            "under another CLIP compares within this run, not with the paper's values.")


def _counted(share: float, n: int) -> dict:
    """A point's share of ``n`` images back as a :func:`sagekit.stats.rate` (its count)."""
    return rate(round(share * n) if n else 0, n)


def summarize(result: ImplosionResult, found: dict, model: str) -> dict:
    """The study's findings (the common schema: ``models``, ``headline``, study fields;
    each point's rates carry their Wilson intervals); ``found``: :func:`trends`, per rule."""
    points = result.table
    k_max = int(points["k"].max())
    head = {}
    for rule, v in found.items():
        tag = "" if len(found) == 1 else f" ({rule})"
        last = points[(points["rule"] == rule) & ~points["control"] & (points["k"] == k_max)]
        control = points[(points["rule"] == rule) & points["control"] & (points["k"] == k_max)]
        r = last.iloc[0]
        # the study's targets (issue #31): poisoned concepts drawn as their target, and the
        # unpoisoned concepts' accuracy against the clean control's, each with its count
        head |= {f"AD k={int(points['k'].min())}{tag}": round(v["ad_first"], 4), f"AD k={k_max}{tag}": round(v["ad_last"], 4),
                 f"poisoned drawn as target k={k_max}{tag}": _counted(r["poisoned_hit"], r["n_poisoned"]),
                 f"unpoisoned acc k={k_max}{tag}": _counted(r["unpoisoned_acc"], r["n"])}
        if len(control):
            head[f"control acc k={k_max}{tag}"] = _counted(control["unpoisoned_acc"].iloc[0], control["n"].iloc[0])
    clean = points[points["k"] == 0]
    if len(clean) and not np.isnan(clean["attention_ratio_unpoisoned"].iloc[0]):
        # item 1's measure of toy world 3 on the clean model: word attention on its object
        head["clean model's word attention ratio"] = round(float(clean["attention_ratio_unpoisoned"].iloc[0]), 2)
    return {"models": [model], "points": findings_points(points), "rules": list(found),
            "ad_rises_every_step": {rule: v["ad_rises_every_step"] for rule, v in found.items()},
            "unpoisoned_below_control": {rule: {str(r["k"]): r["interval_below"] for r in v["per_k"]}
                                         for rule, v in found.items()},
            "headline": head}


# ---------------------------------------------------------------------------- parameters
def _poison_plans(p: dict) -> list[tuple[int, list[int]]]:
    """``(k, poisoned pairs per concept)`` of every poisoned fine-tuning set of the sweep (a
    small k puts the whole total budget on few concepts; a large one needs many concepts)."""
    plan = sweep_plan(p["ks"], p["budget"], p["budget_rule"], p["per_concept"])
    return [(len(counts), list(counts)) for counts, clean in dict.fromkeys(plan.values()) if not clean]


def _folder_rules(p: dict) -> None:
    """A folder run: the folder pairs up, the concepts parse and are mentioned, every k
    has its pairs and its budget's images, the unpoisoned concepts are judged."""
    from pathlib import Path

    from ..models.registry import judge_label_names
    from . import STUDIES

    folder = Path(p["data"]).expanduser()
    folder = folder if folder.is_absolute() else STUDIES[STUDY].path.parent / folder
    try:
        data = read_folder(folder)
        split = plan_split(max(p["ks"]), p["seed"], str(folder), p["concepts"], p["unpoisoned"])
        for k, counts in _poison_plans(p):
            choose_poison(data.captions, split.pairs[:k], counts, p["seed"])
    except (PoisonError, ValueError) as e:
        raise ParameterError(f"data {p['data']!r}: {e}") from None
    if p["n_train"] > len(data.captions):  # the clean pairs and the poison come from the folder's own
        raise ParameterError(f"n_train ({p['n_train']}) is more than the {len(data.captions)} pairs of {p['data']!r}")
    known = judge_label_names(p["judge"])
    missing = [c for c in list(p["unpoisoned"]) + [a for a, _ in split.pairs] + [b for _, b in split.pairs]
               if known is not None and c not in known]
    if missing:
        raise ParameterError(f"judge {p['judge']!r} does not know the concepts {', '.join(map(repr, missing[:5]))}")


def _rules(p: dict) -> None:
    from ..models.registry import world_of

    if p["data"]:
        _folder_rules(p)
    elif world_of(p["model"]) == "real":
        raise ParameterError(f"parameter 'data' must name a folder of image + caption pairs (name.png + name.txt) for "
                             f"a real model such as {p['model']!r}: the toy world's 32-pixel scenes are not its data")
    elif p["concepts"] or p["unpoisoned"]:
        raise ParameterError("parameters 'concepts' and 'unpoisoned' apply to a folder run: set 'data' too")
    elif max(p["ks"]) > MAX_K:
        raise ParameterError(f"parameter 'ks' may poison at most {MAX_K} concepts on the toy world "
                             f"(its unpoisoned concepts share no word with a poisoned one), got {max(p['ks'])}")
    if "total" in rules_of(p["budget_rule"]) and max(p["ks"]) > p["budget"]:
        raise ParameterError(f"parameter 'budget' ({p['budget']}) must give every poisoned concept at least one "
                             f"pair: it must be at least max(ks) = {max(p['ks'])}")
    for (rule, k, _), (counts, _) in sweep_plan(p["ks"], p["budget"], p["budget_rule"], p["per_concept"]).items():
        if sum(counts) > p["n_train"]:
            raise ParameterError(f"the {rule} rule poisons {sum(counts)} pairs at k = {k}; they must be at most "
                                 f"'n_train' ({p['n_train']}): lower 'budget' or 'per_concept', or raise 'n_train'")
    if p["attention_seeds"] > p["eval_seeds"]:
        raise ParameterError(f"parameter 'attention_seeds' ({p['attention_seeds']}) must be at most 'eval_seeds' "
                             f"({p['eval_seeds']})")


def _images(p: dict) -> int:
    # each fine-tune (rows that share a training set share one) draws the unpoisoned concepts and its k sources
    evaluated = len(p["unpoisoned"]) if p["data"] else HELD_COLOURS * HELD_SHAPES
    runs = set(sweep_plan(p["ks"], p["budget"], p["budget_rule"], p["per_concept"]).values())
    return sum((evaluated + len(counts)) * p["eval_seeds"] for counts, _ in runs)


SCHEMA = Schema({
    "model": common.MODEL,
    "judge": Parameter(ModelName("judge"), "auto", "the classifier of what is drawn (toy: toy-ensemble)"),
    "clip": common.helped(common.CLIP, "CLIP for AD and CLIP score (toy: toy-clip; real: OpenAI ViT-B/32, as "
                          "compute_AD.py)"),
    "data": Parameter(Text(4096, empty=True), "", "a folder of image + caption pairs (name.png + name.txt) to poison "
                      "(a real model needs one); empty for the toy world"),
    "concepts": Parameter(Text(4096, empty=True), "", 'with data: the poisoned pairs "A:B,C:D" (captions about A, '
                          "images of B)"),
    "unpoisoned": Parameter(ListOf(Text(200), 0, 1000, unique=True), [], "with data: the concepts evaluated (judge "
                            "labels sharing no word with a pair)"),
    "ks": Parameter(ListOf(Int(0, 1000), 1, 20, unique=True), [0, 1, 2, 4, 8], "numbers of poisoned concepts (at "
                    f"most {MAX_K} on the toy world)", small=[0, 1, 2]),
    "budget_rule": Parameter(Choice(("total", "per-concept", "both")), "total", '"total" (a fixed budget split over '
                             'the k concepts: only k changes), "per-concept" (the paper\'s: a fixed number per '
                             'concept, total poison grows with k) or "both"', small="both"),
    "budget": Parameter(Int(1, 1_000_000), 1200, "total rule: poisoned pairs in all, split evenly over the k "
                        "concepts", small=20),
    "per_concept": Parameter(Int(0, 1_000_000, note=" (0: budget // max(ks))"), 0, "per-concept rule: poisoned pairs "
                             "per concept (0: budget // max(ks), the rules meet there)"),
    "n_train": Parameter(Int(1, 1_000_000), 2000, "fine-tuning pairs in all (clean + budget), the same at every k",
                         small=200),
    "finetune_steps": Parameter(Int(1, 100_000), 60, "fine-tuning steps per run", small=2),
    "batch_size": Parameter(Int(1, 100_000), 64, "fine-tuning batch"),
    "lr": Parameter(common.LR, 5e-4, "fine-tuning learning rate"),
    "trainable": Parameter(Choice(("all", "cross-attention", "lora")), "auto", '"all", "cross-attention" (key/value '
                           'projections) or "lora" (toy: all; real: lora)'),
    "lora_rank": Parameter(Int(1, 4096, note=" (the LoRA adapters' rank)"), 4, 'the LoRA adapters\' rank (trainable '
                           '"lora")'),
    "eval_seeds": Parameter(common.SEEDS, 32, "generated images per evaluated concept and run", small=2),
    "attention_seeds": Parameter(Int(1, 10_000), 2, "of those, images whose cross-attention is recorded", small=1),
    "guidance": Parameter(Float(1, 100, note=" (1 = no guidance)"), 3.0, "classifier-free guidance of the "
                          "evaluation (1: none)"),
    "steps": common.STEPS,
    "device": common.DEVICE,
    "dtype": common.DTYPE,
    "executor": common.helped(common.EXECUTOR["executor"], '"local", or "ray": the points (a fine-tune each) on Ray '
                              "workers, one per GPU or CPU slot"),
    "address": common.EXECUTOR["address"],
    "seed": common.SEED,
}, _images, _rules, streams={"images": lambda p: p["eval_seeds"]})
