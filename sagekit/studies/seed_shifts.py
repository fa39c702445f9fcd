"""Seed-shift study (paper 001): how shifts of the initial noise change what a model draws.

Grid: models x guidance x shift types x levels x labels x seeds. Per image: top-1 and
top-5 correctness under a judge, the judge's probability of the target, CLIP score
against the prompt, and the object's position (centroid of edge energy). Aggregates come
with 95% intervals (Wilson for rates, bootstrap for CLIP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..markup import display_name
from ..models.clip import ClipScorer
from ..models.generator import Generator
from ..models.judges import Judge, sobel_edges
from ..models.registry import model_revisions
from ..seeds import seeds
from ..shifts import SHIFTS, URMS_DRAWS, apply_shift
from ..stats import mean_ci, wilson
from ..store import ResultStore, to_uint8
from ..spread import Models
from ..sweep import run_sweep
from ..toy.names import training_recipe
from . import common
from .parameters import Choice, Flag, Int, ListOf, ModelName, Parameter, Schema, Shifts

STUDY = "seed-shifts"
PROMPT = "A photo of a {label}"
RATES = ("top1", "top5", "colour", "shape")  # colour and shape exist on toy labels only

# Sizes and grids a study parameter left at "auto" takes (``sagekit.studies.defaults``). "toy": sized for
# the demo on a CPU; its latents need larger mean shifts than the paper's grid (toy top-1 at UMS -0.2 / +0.2
# is still 0.69 / 0.94 of 32). "paper": paper 001 §4.1 (SD 2.1): every grid, ImageNet-100, "A photo of a
# {label}", 100 images per prompt, guidance 7.5, 50 steps.
PROTOCOLS = {
    "toy": {"shifts": {"UMS": [-0.8, -0.4, -0.1, 0.1, 0.4, 0.8], "URMS": [-1.6, -0.8, 0.8, 1.6], "SDS": [-0.5, 0.5],
                       "MS": [[-0.2, -0.1], [0.2, 0.1]], "PAS": [16, 64]},
            "n_labels": 4, "seeds_per_cell": 1, "baseline_seeds_per_cell": 8, "guidance": [None, 1.0], "steps": None},
    "paper": {"shifts": "paper", "label_set": "imagenet100", "n_labels": 100, "seeds_per_cell": 100,
              "baseline_seeds_per_cell": 100, "guidance": [7.5], "steps": 50},
}


def _images(p: dict) -> int:
    from ..shifts import grid

    return (len(p["models"]) * len(p["guidance"]) * common.n_labels(p)
            * (max(p["baseline_seeds_per_cell"], p["seeds_per_cell"])
               + p["seeds_per_cell"] * sum(len(v) for v in grid(p["shifts"]).values())))


SCHEMA = Schema({
    "models": Parameter(ListOf(ModelName("generator"), 1, 16, unique=True), ["toy", "toy-ddpm", "toy-latent-learned", "toy-pixel"],
                        "generator names, diffusers folders or cached hub ids"),
    "protocol": Parameter(Choice(("auto", "toy", "paper")), "auto",
                          'sizes and grid of every "auto" below: "toy" (for the toy world\'s CPU demo) or "paper" '
                          '(paper 001\'s §4.1); "auto" is the models\' world\'s: toy or paper'),
    "guidance": Parameter(ListOf(common.GUIDANCE_SCALE, 1, 16, unique=True), "auto",
                          "a list of scales, None each model's default, 1.0 none (toy: [None, 1.0]; paper: [7.5])"),
    "shifts": Parameter(Shifts(), "auto", '"paper" (the §4.1 grids) or a dict of shift to levels (toy: larger mean '
                        "shifts, which the toy latents need; see seed_shifts.PROTOCOLS)",
                        small={"UMS": [-0.2, 0.2], "PAS": [64]}),
    "urms_draw": Parameter(Choice(URMS_DRAWS), "element",
                           'URMS draws u in [0, 1] per "element" (the mean moves by α_u/2) or per "image"'),
    "label_set": common.LABEL_SET,
    "n_labels": common.helped(common.N_LABELS, "labels used, evenly spaced over the label set (toy: 4; paper: 100)",
                              default="auto", small=4),
    "seeds_per_cell": Parameter(common.SEEDS, "auto",
                                "seeds per shifted (model, guidance, shift, level, label) (toy: 1; paper: 100)", small=1),
    "baseline_seeds_per_cell": Parameter(common.SEEDS, "auto",
                                         "seeds per unshifted (model, guidance, label) (toy: 8; paper: 100)", small=2),
    "steps": common.helped(common.STEPS, "sampling steps, None each model's default (toy: None; paper: 50)",
                           default="auto"),
    "judge": Parameter(ModelName("judge"), "auto", "the classifier (toy: toy-ensemble; real: timm ViT-H/14, README)"),
    "clip": common.helped(common.CLIP, "the CLIP scorer (toy: toy-clip; real: open_clip ViT-H-14)"),
    "batch_size": Parameter(Int(0, 4096, note=" (0: from free GPU memory)"), 64,
                            "images per batch; 0: as many as fit in free GPU memory"),
    "store_dir": common.store_dir(STUDY, "results store; rerunning resumes from it"),
    "trajectory_seeds": Parameter(Int(1, 1000), 4, "seeds per model for the trajectory analyses", small=2),
    "device": common.DEVICE,
    "dtype": common.DTYPE,
    "compile": Parameter(Flag(), False, "torch.compile the denoisers (GPU sweeps: faster after a one-off compile)"),
    "executor": common.helped(common.EXECUTOR["executor"],
                              '"local", or "ray": the sweep\'s batches on Ray workers, one per GPU or CPU slot'),
    "address": common.EXECUTOR["address"],
    "seed": common.helped(common.SEED, "first seed"),
}, _images, common.labels_are_judged, protocols=PROTOCOLS,
    streams={"images": lambda p: max(p["seeds_per_cell"], p["baseline_seeds_per_cell"], p["trajectory_seeds"])})

# What the paper measured without a shift (§4.1): its anchor for a run of the paper protocol.
PAPER_ANCHOR = {"top1": 0.71, "top5": 0.90, "model": "Stable Diffusion 2.1", "images_per_prompt": 100,
                "judge": "ViT-H/14 SWAG (88.5% / 98.5% on ImageNet)"}


def level_name(shift: str, level) -> str:
    """Readable level: ``"+0.10"``, ``"s=-0.1,c=+0.05"``, ``"n=16"``, ``"0"``."""
    if shift == "none":
        return "0"
    if shift == "PAS":
        return f"n={int(level)}"
    if shift == "MS":
        s, c = level
        return f"s={s:+.1f},c={c:+.2f}"
    return f"{float(level):+.2f}"


def build_cells(models: Sequence[str], shifts: dict[str, Sequence], labels: Sequence[str], seeds: Sequence[int],
                guidance: Sequence[float], steps: int, judge: str, clip: str,
                revisions: dict[str, str] | None = None, prompt: str = PROMPT,
                baseline_seeds: Sequence[int] | None = None, urms_draw: str = "element",
                judge_revision: str = "", clip_revision: str = "") -> list[dict]:
    """Every cell of the grid; the unshifted baseline (``shift="none"``) is always included,
    on ``baseline_seeds`` (default: ``seeds``; more of them give a tighter baseline).
    ``revisions`` (model -> weights fingerprint), ``judge_revision`` and ``clip_revision``
    go into each cell's key, so results of retrained weights never mix with old ones. URMS cells also hold ``urms_draw``
    (``sagekit.shifts.uniform_mean``)."""
    for name in shifts:
        if name not in SHIFTS:
            raise ValueError(f"unknown shift type {name!r}; known: {', '.join(SHIFTS)}")
    plan = [("none", 0)] + [(s, lv) for s, levels in shifts.items() if s != "none" for lv in levels]
    cells = []
    for model in models:
        for g in guidance:
            for shift, level in plan:
                for label in labels:
                    for seed in (baseline_seeds if shift == "none" and baseline_seeds is not None else seeds):
                        cells.append({
                            "model": model, "revision": (revisions or {}).get(model, ""), "guidance": float(g),
                            "steps": int(steps), "shift": shift,
                            "level": list(level) if isinstance(level, (list, tuple)) else level,
                            "label": label, "prompt": prompt.format(label=label), "seed": int(seed),
                            "judge": judge, "judge_revision": judge_revision, "clip": clip,
                            "clip_revision": clip_revision, **({"urms_draw": urms_draw} if shift == "URMS" else {}),
                        })
    return cells


def object_centroid(images: torch.Tensor) -> torch.Tensor:
    """Centroid of edge energy, ``(N, 2)`` as (x, y) fractions of the side in [0, 1]:
    a model-free stand-in for the object's position."""
    energy = sobel_edges(images).sum(1)  # (N, H, W)
    energy = energy / energy.sum((1, 2), keepdim=True).clamp_min(1e-8)
    h, w = energy.shape[-2:]
    ys = (torch.arange(h, dtype=energy.dtype, device=energy.device) + 0.5) / h
    xs = (torch.arange(w, dtype=energy.dtype, device=energy.device) + 0.5) / w
    return torch.stack([(energy.sum(1) * xs).sum(-1), (energy.sum(2) * ys).sum(-1)], dim=-1)


def shifted_noise(gen: Generator, cells: list[dict]) -> torch.Tensor:
    """Initial noise of each cell's seed, with the cell's shift applied (CPU, float32)."""
    seeds = [c["seed"] for c in cells]
    z = gen.initial_noise(seeds)
    return torch.cat([apply_shift(c["shift"], z[i:i + 1], c["level"], [c["seed"]], c.get("urms_draw", "element"))
                      for i, c in enumerate(cells)])


@torch.no_grad()
def draw(gen: Generator, cells: list[dict]) -> torch.Tensor:
    """The images ``(N, 3, H, W)`` in [0, 1] (float, on ``gen``'s device) of cells of one
    model, guidance and steps: each cell's seed's noise, shifted as the cell says."""
    c0 = cells[0]
    latents = gen.denoise(shifted_noise(gen, cells), gen.encode_prompts([c["prompt"] for c in cells]),
                          c0["guidance"], c0["steps"], seeds=[c["seed"] for c in cells])
    return gen.decode(latents).float()


@torch.no_grad()
def judge_batch(models: Models, cells: list[dict]) -> tuple[list[dict], torch.Tensor]:
    """The sweep's task (:func:`sagekit.sweep.run_sweep`): one batch of cells of one model,
    guidance and steps drawn, judged (top-1, top-5, p(target)), CLIP-scored and located;
    returns the metrics and the images as uint8 (quantised on the device: a quarter of the
    bytes to move)."""
    judge, clip = models.judge, models.clip
    prompts = [c["prompt"] for c in cells]
    images = draw(models.generators[cells[0]["model"]], cells)
    probs = judge(images.to(judge.device)).cpu()
    target = torch.tensor([judge.label_index(c["label"]) for c in cells])
    topk = probs.topk(min(5, len(judge.labels)), dim=-1).indices
    scores = clip(images.to(clip.embedder.device), prompts).cpu()
    centre = object_centroid(images).cpu()  # where the images are: on a GPU, not the CPU's time
    metrics = [{
        "top1": bool(topk[i, 0] == target[i]), "top5": bool((topk[i] == target[i]).any()),
        "p_target": float(probs[i, target[i]]), "pred": judge.labels[int(topk[i, 0])],
        "clip": float(scores[i]), "cx": float(centre[i, 0]), "cy": float(centre[i, 1]),
    } for i in range(len(cells))]
    return metrics, to_uint8(images).cpu()


def batch_size_for(cells: list[dict], models: Models, limit: int = 256) -> int:
    """The largest batch that fits every model's sweep in free GPU memory (one sampling
    step, decoding, judging and CLIP scoring are probed per model); 32 on a CPU."""
    from ..models.speed import auto_batch_size

    widest: dict[str, dict] = {}  # per model, a cell of its largest guidance (guidance doubles the rows)
    for c in cells:
        if c["model"] not in widest or c["guidance"] > widest[c["model"]]["guidance"]:
            widest[c["model"]] = c
    sizes = [auto_batch_size(lambda b, c=c: judge_batch(models, [{**c, "steps": 1}] * b),
                             models.generators[m].device, limit=min(limit, len(cells))) for m, c in widest.items()]
    return min(sizes, default=1)


def run(cells: list[dict], store: ResultStore, generators: dict[str, Generator], judge: Judge, clip: ClipScorer,
        batch_size: int = 64, progress: bool = True, executor=None) -> pd.DataFrame:
    """Run (or resume) the sweep; one row per cell with its metrics. ``batch_size`` 0:
    chosen from free GPU memory (:func:`batch_size_for`). ``executor``: where the batches
    run (:mod:`sagekit.executors`; default this process, with the models given; Ray
    workers load the same models by name)."""
    models = Models(dict(generators), judge=judge, clip=clip)
    if batch_size == 0:
        batch_size = batch_size_for(cells, models)
    df = run_sweep(STUDY, cells, store, f"{__name__}:judge_batch", batch_size=batch_size,
                   group_by=("model", "guidance", "steps"), progress=progress, executor=executor, models=models)
    df["level_name"] = [level_name(s, lv) for s, lv in zip(df["shift"], df["level"])]
    df["level_value"] = [_level_value(s, lv) for s, lv in zip(df["shift"], df["level"])]
    return add_attribute_hits(df)


def add_attribute_hits(df: pd.DataFrame) -> pd.DataFrame:
    """On toy labels ("{colour} {shape}"), add ``colour`` and ``shape`` columns: whether the
    judge's top-1 label has the prompt's colour / shape (``top1`` needs both). A colour cast
    alone flips a toy label, so the two halves say what a shift broke. Other label sets
    are returned unchanged."""
    from ..toy.scenes import COLOURS, SHAPES

    def split(label: str):
        parts = label.split(" ")
        return tuple(parts) if len(parts) == 2 and parts[0] in COLOURS and parts[1] in SHAPES else None

    want, got = [split(x) for x in df["label"]], [split(x) for x in df["pred"]]
    if df.empty or any(w is None for w in want) or any(g is None for g in got):
        return df
    return df.assign(colour=[w[0] == g[0] for w, g in zip(want, got)], shape=[w[1] == g[1] for w, g in zip(want, got)])


def model_kinds(generators: dict[str, Generator]) -> dict[str, dict]:
    """model -> ``{"latent": bool, "learned": bool, "sampler": str, "recipe": dict | None}``:
    latent space; whether its sampler draws with a learned variance (a denoiser that predicts
    one, under a sampler that uses it: PixArt's DPM-Solver drops it, so PixArt counts as
    fixed); the sampler's class; how its UNet was trained, where known (the toy world's
    ``TrainConfig.unets`` entry, :func:`sagekit.toy.names.training_recipe`)."""
    return {m: {"latent": bool(g.is_latent), "learned": bool(g.samples_learned_variance),
                "sampler": type(g.scheduler).__name__, "recipe": training_recipe(g.name)}
            for m, g in generators.items()}


def _level_value(shift: str, level) -> float:
    """A number to plot levels against (MS: the constant part)."""
    if shift == "MS":
        return float(level[1])
    return float(level)


# ---------------------------------------------------------------------------- analysis
def condition_table(df: pd.DataFrame, by: Sequence[str] = ("model", "guidance", "shift", "level_name")) -> pd.DataFrame:
    """Per group: the number of images n; top-1 and top-5 rates (and, on toy labels, colour
    and shape rates) with Wilson 95% intervals; mean CLIP score with a bootstrap 95%
    interval (``{metric}_lo``, ``{metric}_hi``)."""
    rows = []
    for key, g in df.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["level_value"] = g["level_value"].iloc[0]
        row["n"] = len(g)
        for m in [m for m in RATES if m in g.columns]:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = wilson(int(g[m].sum()), len(g))
        row["clip"], row["clip_lo"], row["clip_hi"] = mean_ci(g["clip"].to_numpy(dtype=float))
        rows.append(row)
    return pd.DataFrame(rows)


def plotted_metrics(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """``(column, title)`` of every metric the summary has, in reading order."""
    titles = {"top1": "top-1 accuracy", "colour": "colour right", "shape": "shape right", "clip": "CLIP score"}
    return [(m, t) for m, t in titles.items() if m in summary.columns]


def per_class(df: pd.DataFrame, model: str, guidance: float) -> pd.DataFrame:
    """Top-1 accuracy, labels x (shift, level)."""
    sub = df[(df["model"] == model) & (df["guidance"] == guidance)]
    return sub.pivot_table(index="label", columns=["shift", "level_name"], values="top1", aggfunc="mean", sort=False)


def position_drift(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, guidance, shift, level): mean distance ``drift`` and mean signed
    horizontal move ``dx`` (> 0: to the right), as fractions of the side, between each
    shifted image's object centroid and the unshifted image's of the same label and seed."""
    keys = ["model", "guidance", "label", "seed"]
    base = df[df["shift"] == "none"].set_index(keys)[["cx", "cy"]]
    shifted = df[df["shift"] != "none"].join(base, on=keys, rsuffix="_0").dropna(subset=["cx_0"])
    shifted = shifted.assign(drift=np.hypot(shifted["cx"] - shifted["cx_0"], shifted["cy"] - shifted["cy_0"]),
                             dx=shifted["cx"] - shifted["cx_0"])
    return (shifted.groupby(["model", "guidance", "shift", "level_name"], sort=False)
            .agg(level_value=("level_value", "first"), drift=("drift", "mean"), dx=("dx", "mean"),
                 n=("drift", "size")).reset_index())


@torch.no_grad()
def trajectory(gen: Generator, prompt: str, seeds: Sequence[int], shift: str, level, guidance: float,
               steps: int, urms_draw: str = "element") -> torch.Tensor:
    """Every state x_t from the seeds' noise under one shift: ``(steps + 1, N, C, h, w)`` on the CPU."""
    cells = [{"seed": s, "shift": shift, "level": level, "urms_draw": urms_draw} for s in seeds]
    emb = gen.encode_prompts([prompt] * len(seeds))
    return gen.denoise(shifted_noise(gen, cells), emb, guidance, steps, seeds=list(seeds), trajectory=True)[1]


def unshifted_trajectories(generators: dict[str, Generator], prompt: str, seeds: Sequence[int],
                           guidance: dict[str, float], steps: dict[str, int]) -> dict[str, torch.Tensor]:
    """:func:`trajectory` of the unshifted noise per model, computed once for every
    trajectory analysis: ``{model: (steps + 1, N, C, h, w)}``."""
    return {m: trajectory(gen, prompt, seeds, "none", 0, guidance[m], steps[m]) for m, gen in generators.items()}


def findings_rows(summary: pd.DataFrame) -> list[dict]:
    """``findings.acc`` of the summary JSON: per cell model, guidance, shift, level, n and
    every rate and CLIP score with its interval."""
    metrics = [m for m in (*RATES, "clip") if m in summary.columns]
    return [{"model": r["model"], "guidance": float(r["guidance"]), "shift": r["shift"], "level": r["level_name"],
             "n": int(r["n"]), **{m + part: round(float(r[m + part]), 4) for m in metrics
                                  for part in ("", "_lo", "_hi")}}
            for _, r in summary.iterrows()]


def step_distances_of(unshifted: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """RMS distance between consecutive states x_t -> x_(t-1) of each model's unshifted
    trajectory, per seed and step: ``{model: (N, steps)}`` (paper 001 §5.2: a learned-variance
    sampler jumps far in its first steps; a fixed-variance one moves about evenly)."""
    return {m: traj.diff(dim=0).pow(2).mean(dim=(2, 3, 4)).sqrt().T.numpy() for m, traj in unshifted.items()}


def findings_text(summary: pd.DataFrame, df: pd.DataFrame) -> str:
    """The report's findings as Markdown (every model name and label escaped): per model
    and guidance, unshifted accuracy with its interval and the worst and best shift; per
    shift type, its mean accuracy; the least and the most robust label."""
    from ..markup import Safe, md_text

    lines = []
    shifted = summary[summary["shift"] != "none"]
    baseline = summary[summary["shift"] == "none"]
    for _, b in baseline.iterrows():
        sub = shifted[(shifted["model"] == b["model"]) & (shifted["guidance"] == b["guidance"])]
        worst, best = sub.loc[sub["top1"].idxmin()], sub.loc[sub["top1"].idxmax()]
        lines.append(md_text(
            "- **{model}, {mode}**: unshifted top-1 {top1:.2f} [{lo:.2f}, {hi:.2f}], top-5 {top5:.2f}, CLIP {clip:.1f}. "
            "Worst shift: {worst} → {worst_top1:.2f}; best: {best} → {best_top1:.2f}.",
            model=b["model"], mode=f"guidance {b['guidance']:g}" if b["guidance"] > 1 else "no guidance",
            top1=b["top1"], lo=b["top1_lo"], hi=b["top1_hi"], top5=b["top5"], clip=b["clip"],
            worst=f"{worst['shift']} {worst['level_name']}", worst_top1=worst["top1"],
            best=f"{best['shift']} {best['level_name']}", best_top1=best["top1"]))
    for shift, sub in shifted.groupby("shift", sort=False):
        lines.append(md_text("- {shift}: mean top-1 over its levels and all models {mean:.2f} (unshifted mean {base:.2f}).",
                             shift=shift, mean=sub["top1"].mean(), base=baseline["top1"].mean()))
    by_label = df[df["shift"] != "none"].groupby("label", sort=False)["top1"]
    if by_label.ngroups > 1:
        means = by_label.mean()
        for which, label in (("Least", means.idxmin()), ("Most", means.idxmax())):
            hits = by_label.get_group(label).to_numpy(dtype=float)
            mean, lo, hi = wilson(int(hits.sum()), len(hits))
            lines.append(md_text("- {which} robust label: {label}, {k} of {n} shifted images right: {mean:.2f} "
                                 "[{lo:.2f}, {hi:.2f}].", which=which, label=label, k=int(hits.sum()), n=len(hits),
                                 mean=mean, lo=lo, hi=hi))
    return Safe("\n".join(lines))


def images_across_levels(df: pd.DataFrame, store: ResultStore, label: str, seed: int, conditions):
    """The stored image of ``label`` and ``seed`` at every ``(shift, level_name)`` condition,
    one row per (model, guidance) in the frame's order. Returns images ``(R*C, 3, H, W)``,
    top-1 marks and row names."""
    images, marks, rows = [], [], []
    sub = df[(df["label"] == label) & (df["seed"] == seed)]
    for (model, guidance), g in sub.groupby(["model", "guidance"], sort=False):
        for shift, name in conditions:
            r = g[(g["shift"] == shift) & (g["level_name"] == name)].iloc[0]
            images.append(store.image(r["key"]))
            marks.append(bool(r["top1"]))
        rows.append(f"{display_name(model)}, g={guidance:g}")
    return torch.stack(images), marks, rows


def trajectory_distances(generators: dict[str, Generator], prompt: str, seeds: Sequence[int],
                         shifts: dict[str, Sequence], guidance: dict[str, float], steps: dict[str, int],
                         unshifted: dict[str, torch.Tensor], urms_draw: str = "element") -> dict:
    """RMS distance at every timestep between the shifted and the unshifted trajectory of
    the same seeds (``unshifted``: :func:`unshifted_trajectories`), averaged over seeds, at
    the first and the last level of every shift: ``{model: {"SHIFT level": (steps + 1,)}}``."""
    return {m: {f"{s} {level_name(s, lv)}": (trajectory(gen, prompt, seeds, s, lv, guidance[m], steps[m], urms_draw)
                                             - unshifted[m]).pow(2).mean(dim=(2, 3, 4)).sqrt().mean(1).numpy()
                for s, levels in shifts.items() for lv in (levels[0], levels[-1])}
            for m, gen in generators.items()}


@dataclass
class Plan:
    """Everything the sweep needs, derived from the notebook's parameters: per model its
    sampling steps and guidance scales (None resolved to the model's default), the first
    scale (the trajectory analyses'), and every cell of the grid."""

    steps: dict[str, int]
    scales: dict[str, list[float]]
    first_scale: dict[str, float]
    cells: list[dict]
    n_baseline: int
    n_conditions: int


def plan(generators: dict[str, Generator], shift_grid: dict[str, Sequence], labels: Sequence[str], seed: int,
         seeds_per_cell: int, baseline_seeds_per_cell: int, guidance: Sequence[float | None], steps: int | None,
         judge: Judge, clip: ClipScorer, urms_draw: str = "element") -> Plan:
    """The grid of the study: guidance None means each model's default, steps None likewise; the
    unshifted baseline gets ``max(baseline_seeds_per_cell, seeds_per_cell)`` seeds. Every
    cell's key holds the fingerprints of the weights of its generator, ``judge`` and ``clip``."""

    steps_of = {m: g.steps_of(steps) for m, g in generators.items()}
    scales = {m: [g.guidance_of(s) for s in guidance] for m, g in generators.items()}
    n_base = max(baseline_seeds_per_cell, seeds_per_cell)
    cells = [c for m in generators for c in build_cells(
        [m], shift_grid, labels, seeds("images", seed, seeds_per_cell), scales[m], steps_of[m], judge.name, clip.name,
        revisions=model_revisions(generators), baseline_seeds=seeds("images", seed, n_base), urms_draw=urms_draw,
        judge_revision=judge.revision, clip_revision=clip.revision)]
    return Plan(steps_of, scales, {m: float(s[0]) for m, s in scales.items()}, cells, n_base,
                sum(len(v) for v in shift_grid.values()))


def formula_rows(shift_grid: dict[str, Sequence]) -> list[dict]:
    """One row per shift type of the grid: name, formula (paper 001's notation), levels."""
    from ..shifts import FORMULAS

    return [{"name": s, "formula": FORMULAS[s], "levels": levels} for s, levels in shift_grid.items()]


def conditions(shift_grid: dict[str, Sequence]) -> list[tuple[str, str]]:
    """``(shift, level name)`` of the unshifted image and of every shifted level."""
    return [("none", "0")] + [(s, level_name(s, lv)) for s, lvs in shift_grid.items() for lv in lvs]


def anchor_rows(summary: pd.DataFrame) -> list[dict]:
    """Each model's unshifted top-1 and top-5 (Wilson 95% intervals) at the paper's guidance
    (7.5; other scales of the run are not what it measured) beside paper 001's anchor;
    ``within``: whether the paper's figure lies in the interval."""
    base = summary[(summary["shift"] == "none") & np.isclose(summary["guidance"], PROTOCOLS["paper"]["guidance"][0])]
    rows = []
    for _, r in base.iterrows():
        within = all(r[f"{m}_lo"] <= PAPER_ANCHOR[m] <= r[f"{m}_hi"] for m in ("top1", "top5"))
        rows.append({"model": r["model"], "guidance": float(r["guidance"]), "n": int(r["n"]),
                     **{m + part: round(float(r[m + part]), 4) for m in ("top1", "top5") for part in ("", "_lo", "_hi")},
                     "paper_top1": PAPER_ANCHOR["top1"], "paper_top5": PAPER_ANCHOR["top5"], "within": bool(within)})
    return rows


def anchor_text(summary: pd.DataFrame, protocol: str) -> str:
    """Markdown: the paper's anchor beside this run's unshifted accuracy (protocol
    ``"paper"``), or why it does not apply."""
    from ..markup import Safe, md_text

    head = md_text("Paper 001's anchor: {model}, {n} images per prompt over ImageNet-100, judged by {judge}: "
                   "**{top1:.0%} top-1, {top5:.0%} top-5** unshifted.", model=PAPER_ANCHOR["model"],
                   n=PAPER_ANCHOR["images_per_prompt"], judge=PAPER_ANCHOR["judge"], top1=PAPER_ANCHOR["top1"],
                   top5=PAPER_ANCHOR["top5"])
    if protocol != "paper":
        return Safe(head + md_text(" This run used protocol {p!c}, so it is not comparable (`-p protocol='paper'` "
                                   "runs the paper's).", p=protocol))
    lines = [head, ""] + [md_text(
        "- {model!c}, guidance {g:g}: top-1 {top1:.2f} [{top1_lo:.2f}, {top1_hi:.2f}], top-5 {top5:.2f} "
        "[{top5_lo:.2f}, {top5_hi:.2f}] of {n} images: the paper's figures lie {where} these intervals.",
        g=r["guidance"], where="within" if r["within"] else "outside", **r) for r in anchor_rows(summary)]
    return Safe("\n".join(lines))


def summarize(models: Sequence[str], summary: pd.DataFrame, df: pd.DataFrame, claims: list[dict],
              protocol: str = "") -> dict:
    """The study's findings (the common schema: ``models``, ``headline``, rates with their
    intervals in ``acc``; ``claims``: the paper's claims, each with its ``support``).
    ``summary``: :func:`condition_table`'s table; ``df``: the sweep's rows."""
    baseline = summary[summary["shift"] == "none"].set_index(["model", "guidance"])
    return {"models": list(models), "acc": findings_rows(summary),
            "claims": [{k: v[k] for k in ("id", "claim", "support", "evidence", "rule", "numbers")} for v in claims],
            "protocol": protocol, **({"anchor": anchor_rows(summary)} if protocol == "paper" else {}),
            "n_images": len(df),
            "headline": {f"{m} g={g:g} top1": round(float(b["top1"]), 3) for (m, g), b in baseline.iterrows()}
            | {"claims supported": sum(v["support"] == "supported" for v in claims)}}
