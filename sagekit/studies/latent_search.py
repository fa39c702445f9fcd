"""SAGE latent search: find non-outlier initial latents z' = z + delta that make a model fail.

Shared by the distorted-latents study (one latent for many prompts at once,
``search_shared_latents``) and the unrelated-latents study (one latent per prompt,
``search_latents``); both are the engine's parts (``sagekit.search``) composed.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from ..models.generator import Generator
from ..models.judges import Ensemble
from ..realism import RealismReference
from ..search import Checkpoint, LatentDelta, RobustGoal, SearchState, certify, signed_descent
from ..search.loop import weights_in_key
from ..seeds import seeds as seed_stream
from ..stats import rate
from . import common
from .parameters import Float, Int, Parameter, check_fields

# The models the distorted- and unrelated-latents studies load
MODELS = {
    "model": common.MODEL,
    "judge": common.helped(common.JUDGE, "an Ensemble judge with an edge-map judge in it, to be robust (toy: "
                           "toy-ensemble)"),
    "verifier": common.helped(common.VERIFIER, "held-out judges, never used in the search, confirm each failure "
                              "(toy: toy-clip)"),
    "realism": common.REALISM,
}
# The search's parameters, shared by the distorted- and unrelated-latents studies (their
# configs' fields check against the same rules).
PARAMETERS = {
    "iterations": Parameter(common.ITERATIONS, 100, "signed-gradient iterations (SAGE: 100)", small=3),
    "lr": Parameter(common.LR, 0.05, "step size (SAGE: 0.05)"),
    "delta_bound": Parameter(Float(0, 10, lo_open=True), 1.0, "bound on |delta| elementwise (SAGE: 1)"),
    "mode": Parameter(common.MODE, "residual", 'gradient mode of the search: "residual" or "exact"'),
    "k": common.K,
    "c": Parameter(Float(0, 10), 1.0, "residual: weight of z' - sg(z') at step t_k"),
    "alpha": Parameter(Float(0, 0.5, lo_open=True), 0.01, "certificate level"),
    "guidance": common.GUIDANCE,
    "steps": common.STEPS,
    "compare_iterations": Parameter(Int(1, 1000), 3,
                                    "iteration budget of the exact-vs-residual comparison (one sample)", small=1),
}


@dataclass
class LatentSearchConfig:
    """SAGE's defaults: signed gradient, lr 0.05, 100 iterations, delta in [-1, 1]."""

    lr: float = 0.05
    iterations: int = 100
    delta_bound: float = 1.0
    mode: str = "residual"      # "exact" (all steps, checkpointed) or "residual" (last k steps)
    k: int = 2                  # residual: steps with gradient
    c: float = 1.0              # residual: weight of z' - sg(z') at step t_k
    alpha: float = 0.01         # certificate level (chi-square range and KS test)
    guidance: float | None = None
    steps: int | None = None

    def __post_init__(self):
        check_fields(PARAMETERS, asdict(self))


@dataclass
class LatentSearchResult:
    """One row per searched (prompt, seed) in ``table``; tensors on the CPU, batch-first."""

    table: pd.DataFrame
    z0: torch.Tensor
    z: torch.Tensor
    images_before: torch.Tensor
    images_after: torch.Tensor
    seconds_per_iteration: list[float] = field(default_factory=list)
    peak_memory_mb: float = float("nan")
    verifier: str = ""            # the judges that decided ``verified``
    verify_sampler: str = ""      # the sampler of the re-generation they judged


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _outcome_table(rows: list[dict], z0: torch.Tensor, z: torch.Tensor, found_at: torch.Tensor,
                   verified: torch.Tensor, alpha: float) -> pd.DataFrame:
    """``rows`` (one per latent, the search's own fields) with what every latent search
    reports: ``found``, ``iterations`` to the goal, ``verified`` (found and confirmed),
    the certificate, the size of delta, ``failed_at_start`` and ``success`` (found,
    verified, certified, after at least one step)."""
    out = []
    for i, row in enumerate(rows):
        cert = certify(z[i], alpha)
        found = bool(found_at[i] >= 0)
        out.append({**row, "found": found, "iterations": int(found_at[i]) if found else None,
                    "verified": found and bool(verified[i]), "certified": cert.passed, "norm_sq": cert.norm_sq,
                    "chi2_p": cert.chi2_p, "ks_stat": cert.ks_stat, "ks_p": cert.ks_p, "spatial_p": cert.spatial_p,
                    "delta_linf": float((z[i] - z0[i]).abs().max()),
                    "delta_rms": float((z[i] - z0[i]).pow(2).mean().sqrt())})
    table = pd.DataFrame(out)
    table["failed_at_start"] = table["iterations"] == 0
    table["success"] = table["found"] & table["verified"] & table["certified"] & ~table["failed_at_start"]
    return table


def _descend(objective, latent: LatentDelta, kind: str, gen: Generator, goal: RobustGoal, prompts: list[str],
             targets: list[int], seeds: list[int], cfg: LatentSearchConfig, checkpoints: str | None,
             progress: bool) -> SearchState:
    """The engine's loop over ``latent``'s delta, checkpointed under everything that
    determines the search."""
    search = {"search": kind, **weights_in_key(gen, goal), "goal": type(goal).__name__,
              "prompts": prompts, "targets": targets, "seeds": seeds, "cfg": asdict(cfg)}
    return signed_descent(objective, {"delta": latent}, SearchState({"delta": latent.init()}), cfg.iterations,
                          checkpoint=Checkpoint.under(checkpoints, search), progress=progress,
                          desc=f"{kind} search ({cfg.mode})")


def search_latents(gen: Generator, goal: RobustGoal, prompts: list[str], targets: list[int], seeds: list[int],
                   cfg: LatentSearchConfig, progress: bool = True, verifier: Ensemble | None = None,
                   checkpoints: str | None = None) -> LatentSearchResult:
    """Search one latent per (prompt, target label index, seed), all in one batch.

    The engine's parts: the goal's loss on the images of z0 + delta (with the chosen
    gradient mode), ``LatentDelta`` steps kept non-outliers, one ``signed_descent``; a
    sample's search stops at the first iteration its image meets the goal, and only the
    samples still searching are rendered. Afterwards every z' is generated again with
    another sampler (``Generator.other_sampler``) and judged by ``verifier``, judges the
    search never saw (default: the search's own ensemble): ``verified``; and certified.
    ``success`` needs all three and at least one step: a latent that already failed
    (``failed_at_start``) is the model's own failure, not one the search found. With
    ``checkpoints`` (a folder) a killed search resumes where it stopped."""
    device = gen.device
    steps = gen.steps_of(cfg.steps)
    guidance = gen.guidance_of(cfg.guidance)
    target = torch.tensor(targets)
    z0 = gen.initial_noise(seeds).to(device)
    latent = LatentDelta(z0, cfg.lr, cfg.delta_bound, cfg.alpha)
    emb = gen.encode_prompts(prompts)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first: dict[str, torch.Tensor] = {}

    def objective(rows, index, it, grad):
        on = index.to(device)
        z = latent.apply(rows["delta"], index)
        step_seeds = [seeds[i] for i in index.tolist()]  # ancestral samplers: each sample's own step noise
        if grad:
            lat = gen.denoise_differentiable(z, emb[on], mode=cfg.mode, k=min(cfg.k, steps), c=cfg.c,
                                             guidance=guidance, steps=steps, seeds=step_seeds)
        else:
            lat = gen.denoise(z, emb[on], guidance, steps, seeds=step_seeds)
        images = gen.decode(lat)
        if it == 0 and "images" not in first:
            first["images"] = images.detach().cpu()
        return goal.loss(images, target[index]), goal.found(images.detach(), target[index])

    state = _descend(objective, latent, "latents", gen, goal, prompts, targets, seeds, cfg, checkpoints, progress)
    found_at, times = state.found_at, state.seconds
    with torch.no_grad():
        images_before = first.get("images")
        if images_before is None or len(images_before) != len(seeds):  # resumed: render the starting latents
            images_before = gen.decode(gen.denoise(z0, emb, guidance, steps, seeds=list(seeds))).cpu()
    z_final = (z0 + state.values["delta"]).detach()
    check = goal if verifier is None else goal.judged_by(verifier)
    with torch.no_grad():
        found_images = gen.decode(gen.denoise(z_final, emb, guidance, steps, seeds=list(seeds))).cpu()
        probs_after = goal.ensemble(found_images.to(device)).cpu()
        again = gen.decode(gen.denoise(z_final, emb, guidance, steps, gen.other_sampler(), seeds=list(seeds)))
        # the verifier may order its labels differently: match them by name
        verified = check.found(again, torch.tensor([check.ensemble.label_index(goal.ensemble.labels[t])
                                                    for t in targets]))
    table = _outcome_table([{
        "prompt": prompts[i], "target": int(targets[i]), "label": goal.ensemble.labels[int(targets[i])],
        "seed": int(seeds[i]), "p_target_after": float(probs_after[i, targets[i]]),
        "pred_after": goal.ensemble.labels[int(probs_after[i].argmax())],
        "confidence_after": float(probs_after[i].max())} for i in range(len(seeds))],
        z0, z_final, found_at, verified, cfg.alpha)
    return LatentSearchResult(table, z0.cpu(), z_final.cpu(), images_before, found_images, times,
                              _peak_memory_mb(device), check.ensemble.name, gen.other_sampler() or "the model's own")


@dataclass
class SharedLatentResult:
    """One latent per seed, optimised over P prompts at once. ``table``: one row per
    latent; ``z0``, ``z`` ``(L, C, h, w)``; ``images_before`` / ``images_after``
    ``(L, P, 3, H, W)`` (the P search prompts), on the CPU."""

    table: pd.DataFrame
    prompts: list[str]
    z0: torch.Tensor
    z: torch.Tensor
    images_before: torch.Tensor
    images_after: torch.Tensor
    seconds_per_iteration: list[float] = field(default_factory=list)
    verifier: str = ""
    verify_sampler: str = ""
    targets: list[int] = field(default_factory=list)  # the search prompts' label indices
    broken: torch.Tensor | None = None           # (L, P) bool: the goal met on each search prompt's image
    verified_each: torch.Tensor | None = None    # (L, P) bool: the verifier's verdict on each prompt's redraw


def search_shared_latents(gen: Generator, goal: RobustGoal, prompts: list[str], targets: list[int], seeds: list[int],
                          cfg: LatentSearchConfig, progress: bool = True, verifier: Ensemble | None = None,
                          checkpoints: str | None = None) -> SharedLatentResult:
    """Search one latent per seed that meets ``goal`` for *every* prompt at once (prompt
    independence by construction, SAGE's distorted latents): the loss of a latent is the
    mean of the goal's loss over its P images, and it is found when all P meet the goal.
    The engine's parts as in :func:`search_latents`; ``verified``: the verifier's verdict
    on every prompt's image drawn again with another sampler."""
    device = gen.device
    steps = gen.steps_of(cfg.steps)
    guidance = gen.guidance_of(cfg.guidance)
    n = len(prompts)
    target = torch.tensor(targets)
    z0 = gen.initial_noise(seeds).to(device)
    latent = LatentDelta(z0, cfg.lr, cfg.delta_bound, cfg.alpha)
    emb = gen.encode_prompts(prompts)

    def objective(rows, index, it, grad):
        z = latent.apply(rows["delta"], index).repeat_interleave(n, 0)
        cond = emb.repeat(len(index))
        step_seeds = [seeds[i] for i in index.tolist() for _ in range(n)]
        if grad:
            lat = gen.denoise_differentiable(z, cond, mode=cfg.mode, k=min(cfg.k, steps), c=cfg.c, guidance=guidance,
                                             steps=steps, seeds=step_seeds)
        else:
            lat = gen.denoise(z, cond, guidance, steps, seeds=step_seeds)
        images = gen.decode(lat)
        t = target.repeat(len(index))
        loss = goal.loss(images, t).view(len(index), n).mean(1)
        return loss, goal.found(images.detach(), t).view(len(index), n).all(1)

    state = _descend(objective, latent, "shared latents", gen, goal, prompts, targets, seeds, cfg, checkpoints,
                     progress)
    z_final = (z0 + state.values["delta"]).detach()
    check = goal if verifier is None else goal.judged_by(verifier)
    every = [seeds[i] for i in range(len(seeds)) for _ in range(n)]
    cond = emb.repeat(len(seeds))
    with torch.no_grad():
        before = gen.decode(gen.denoise(z0.repeat_interleave(n, 0), cond, guidance, steps, seeds=every)).cpu()
        after = gen.decode(gen.denoise(z_final.repeat_interleave(n, 0), cond, guidance, steps, seeds=every)).cpu()
        again = gen.decode(gen.denoise(z_final.repeat_interleave(n, 0), cond, guidance, steps, gen.other_sampler(),
                                       seeds=every))
        t = torch.tensor([check.ensemble.label_index(goal.ensemble.labels[x]) for x in targets]).repeat(len(seeds))
        verified_each = check.found(again, t).view(len(seeds), n)
        verified = verified_each.all(1)
        met = goal.found(after.to(device), target.repeat(len(seeds))).view(len(seeds), n)
        confidence = goal.ensemble(after.to(device)).max(-1).values.view(len(seeds), n).cpu()
    table = _outcome_table([{"seed": int(seed), "prompts_broken": float(met[i].float().mean()),
                             "confidence_after": float(confidence[i].mean())} for i, seed in enumerate(seeds)],
                           z0, z_final, state.found_at, verified, cfg.alpha)
    shape = (len(seeds), n, *before.shape[1:])
    return SharedLatentResult(table, list(prompts), z0.cpu(), z_final.cpu(), before.view(shape), after.view(shape),
                              state.seconds, check.ensemble.name, gen.other_sampler() or "the model's own",
                              [int(x) for x in targets], met.cpu(), verified_each.cpu())


def merge(parts: list) -> LatentSearchResult | SharedLatentResult:
    """The results of searches of disjoint latents (tasks of :mod:`sagekit.spread`), as one
    search of them all in this order: tables and tensors concatenated along the latents,
    the seconds of every task's iterations in one list, the highest peak memory."""
    seconds = [s for p in parts for s in p.seconds_per_iteration]
    if isinstance(parts[0], SharedLatentResult):
        return common.concat(parts, ("z0", "z", "images_before", "images_after", "broken", "verified_each"),
                             seconds_per_iteration=seconds)
    return common.concat(parts, ("z0", "z", "images_before", "images_after"), seconds_per_iteration=seconds,
                         peak_memory_mb=max(p.peak_memory_mb for p in parts))


def found_verified(result: LatentSearchResult) -> dict:
    """Counts of one search, side by side: ``searched``; ``found`` (the search's ensemble
    saw the failure, after at least one step); ``verified`` (of those, the verifier
    confirmed it on another sampler's re-generation); ``success`` (verified and
    certified); with the verifier's name and that sampler."""
    t = result.table
    found = t["found"] & ~t["failed_at_start"]
    return {"searched": len(t), "found": int(found.sum()), "verified": int((found & t["verified"]).sum()),
            "success": int(t["success"].sum()), "verifier": result.verifier, "sampler": result.verify_sampler}


def cost_per_iteration(gen: Generator, goal: RobustGoal, prompt: str, target: int, seed: int, cfg: LatentSearchConfig,
                       iterations: int = 3) -> dict:
    """Seconds and peak memory of one gradient iteration in ``cfg.mode`` (median of a few,
    one sample). Peak memory on CPU is the process's peak RSS, an upper bound."""
    steps = gen.steps_of(cfg.steps)
    guidance = gen.guidance_of(cfg.guidance)
    z = gen.initial_noise([seed]).to(gen.device)
    emb = gen.encode_prompts([prompt])
    if gen.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(gen.device)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        zz = z.clone().requires_grad_(True)
        lat = gen.denoise_differentiable(zz, emb, mode=cfg.mode, k=min(cfg.k, steps), c=cfg.c, guidance=guidance, steps=steps)
        goal.loss(gen.decode(lat), torch.tensor([target])).sum().backward()
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"mode": cfg.mode, "seconds": float(np.median(times)), "peak_memory_mb": _peak_memory_mb(gen.device)}


def residual_speedup_bound(steps: int, k: int) -> float:
    """Upper bound of exact / residual cost per iteration, counted in UNet forward passes.

    Exact with checkpointing runs every step forward, again in the backward pass, and
    backward (about two forwards): 4N. Residual runs N - k steps without gradient and k
    steps forward and backward: N + 2k. The decoder and judges cost both modes the same,
    so a measured ratio is lower still."""
    if not 0 < k <= steps:
        raise ValueError(f"need 0 < k <= steps, got k={k}, steps={steps}")
    return 4 * steps / (steps + 2 * k)


def store_found(store, study: str, gen: Generator, goal: RobustGoal, result: LatentSearchResult | SharedLatentResult,
                cfg: LatentSearchConfig) -> tuple[list[str], list[str], torch.Tensor | None]:
    """Keep every found latent in the results store (study ``study``) as failure cases
    (``sagekit.failures``): its latent z' (safetensors), seed, prompt, sampler, goal and
    judges, with its image; a shared latent gives one case per search prompt. What
    people's verdicts attach to and what ``sagekit export`` writes out. Returns the keys,
    a caption per case and the images."""
    from ..failures import FailureCase, keep, sampler_name, settings

    t = result.table
    shared = isinstance(result, SharedLatentResult)
    how = settings(gen, cfg.guidance, cfg.steps)
    verifier_sampler = sampler_name(gen, gen.other_sampler())  # what the verifier's images were drawn with
    cases, captions, images = [], [], []
    for i in (i for i in range(len(t)) if t["found"][i] and not t["failed_at_start"][i]):
        prompts = result.prompts if shared else [t["prompt"][i]]
        for j, prompt in enumerate(prompts):
            label = goal.ensemble.labels[int(result.targets[j] if shared else t["target"][i])]
            met = bool(result.broken[i, j]) if shared else True  # a found single latent met the goal at its end
            confirmed = bool(result.verified_each[i, j]) if shared else bool(t["verified"][i])
            cases.append(FailureCase(
                study=study, model=gen.name, prompt=prompt, label=label, seeds=[int(t["seed"][i])], goal=goal.spec(),
                judge=goal.ensemble.name, verifier=result.verifier, fail_fraction=1.0,
                judge_failure_rate=float(met), verifier_failure_rate=float(confirmed), latent=result.z[i],
                extra={"certified": bool(t["certified"][i]), "iterations": int(t["iterations"][i]),
                       "latent_seed": int(t["seed"][i])}, verifier_sampler=verifier_sampler, **how))
            captions.append(f"seed {t['seed'][i]}: {prompt}")
            images.append(result.images_after[i][j] if shared else result.images_after[i])
    images = torch.stack(images) if images else None
    return keep(store, cases, images), captions, images


def compare_modes(gen: Generator, goal: RobustGoal, prompts: list[str], targets: list[int], seeds: list[int],
                  cfg: LatentSearchConfig, iterations: int, progress: bool = True) -> pd.DataFrame:
    """Exact vs residual gradients on the same samples and iteration budget: success,
    seconds and peak memory per iteration (one row per mode)."""
    rows = []
    for mode in ("exact", "residual"):
        c = LatentSearchConfig(**{**asdict(cfg), "mode": mode, "iterations": iterations})
        res = search_latents(gen, goal, prompts, targets, seeds, c, progress)
        cost = cost_per_iteration(gen, goal, prompts[0], targets[0], seeds[0], c, iterations=2)
        rows.append({"mode": mode, "k": c.k if mode == "residual" else gen.steps_of(c.steps),
                     "samples": len(res.table), "success_rate": float(res.table["success"].mean()),
                     "seconds_per_iteration": cost["seconds"],
                     "search_seconds_per_iteration": float(np.mean(res.seconds_per_iteration))
                     if res.seconds_per_iteration else float("nan"),
                     "peak_memory_mb": cost["peak_memory_mb"]})
    return pd.DataFrame(rows)


def speedup(modes: pd.DataFrame) -> float:
    """Seconds per iteration, exact over residual, of a :func:`compare_modes` table."""
    by = modes.set_index("mode")["seconds_per_iteration"]
    return float(by["exact"] / by["residual"])


def goal_realism(scorer, use: bool):
    """The realism judge a latent goal should require (toy world 3's searches), or None:
    ``scorer`` when ``use`` and it is a judge with labels real/corrupted; a CLIP realism
    measure (the real world's) gives a distance, not a verdict, so no goal can require it."""
    from ..realism import REALISM_LABELS

    return scorer if use and tuple(getattr(scorer, "labels", ())) == REALISM_LABELS else None


@torch.no_grad()
def realism_reference(gen: Generator, scorer, labels: list[str], n: int = 64, seed: int = 0,
                      guidance: float | None = None, steps: int | None = None, prompt: str = "A photo of a {label}"
                      ) -> RealismReference:
    """The reference of ordinary images: ``n`` images of ``labels``' prompts (in turn)
    from fresh seeds that no searched latent uses. ``scorer``: a realism judge (labels
    "real", "corrupted") or a CLIP embedder (``embed_images``), see :mod:`sagekit.realism`."""
    seeds = seed_stream("reference", seed, n)
    images = gen.generate([prompt.format(label=labels[i % len(labels)]) for i in range(n)], seeds, guidance, steps)
    if hasattr(scorer, "embed_images"):
        return RealismReference.from_embedding(scorer.embed_images, images)
    return RealismReference.from_judge(scorer, images)
