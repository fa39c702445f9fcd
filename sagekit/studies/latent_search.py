"""SAGE latent search: find non-outlier initial latents z' = z + delta that make a model fail.

Shared by the distorted-latents and unrelated-latents studies; they differ in the goal
(``RobustGoal`` vs ``UnrelatedGoal``) and in what they measure afterwards.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..models.generator import Generator
from ..models.judges import Ensemble
from .sage import RobustGoal, certify, chi2_bounds, project_norm, project_normal, signed_step


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
        if self.mode not in ("exact", "residual"):
            raise ValueError(f"mode must be 'exact' or 'residual', got {self.mode!r}")
        if self.lr <= 0 or self.iterations < 0 or self.delta_bound <= 0 or self.k < 1 or not 0 < self.alpha < 1:
            raise ValueError(f"invalid latent search parameters: {asdict(self)}")


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


def search_latents(gen: Generator, goal: RobustGoal, prompts: list[str], targets: list[int], seeds: list[int],
                   cfg: LatentSearchConfig, progress: bool = True, verifier: Ensemble | None = None
                   ) -> LatentSearchResult:
    """Search one latent per (prompt, target label index, seed), all in one batch.

    Each iteration: images from z0 + delta (with the chosen gradient mode), goal loss, a
    signed step on every sample not yet found, then z' is kept a non-outlier of N(0, I)
    (values pulled towards N(0, 1) where a KS test rejects them, the norm projected into
    the chi-square range) and delta clamped. A sample's search stops at the first
    iteration its image meets the goal. Afterwards every z' is generated again with
    another sampler (``Generator.other_sampler``) and judged by ``verifier``, judges the
    search never saw (default: the search's own ensemble): ``verified``; and certified
    (norm and normality). ``success`` needs all three and at least one step: a latent that
    already failed (``failed_at_start``) is the model's own failure, not one the search
    found."""
    device = gen.device
    steps = cfg.steps or gen.default_steps
    guidance = gen.default_guidance if cfg.guidance is None else cfg.guidance
    target = torch.tensor(targets)
    z0 = gen.initial_noise(seeds).to(device)
    dim = z0[0].numel()
    # The constraints are enforced at 2*alpha: a latent on their boundary then has p-values
    # of 2*alpha, clear of the certificate's alpha (not on it).
    margin = min(2 * cfg.alpha, 0.5)
    lo, hi = chi2_bounds(dim, margin)
    delta = torch.zeros_like(z0)
    emb = gen.encode_prompts(prompts)
    found_at = torch.full((len(seeds),), -1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    images_before = None
    bar = tqdm(range(cfg.iterations + 1), desc=f"latent search ({cfg.mode})", disable=not progress, leave=False)
    for it in bar:
        t0 = time.perf_counter()
        last = it == cfg.iterations
        # Only the samples still searching are rendered: the batch shrinks as failures are found.
        idx = torch.nonzero(found_at < 0).flatten()
        on = idx.to(device)
        z = (z0[on] + delta[on]).requires_grad_(not last)
        step_seeds = [seeds[i] for i in idx.tolist()]  # ancestral samplers: each sample's own step noise
        with torch.set_grad_enabled(not last):
            if last:
                lat = gen.denoise(z, emb[on], guidance, steps, seeds=step_seeds)
            else:
                lat = gen.denoise_differentiable(z, emb[on], mode=cfg.mode, k=min(cfg.k, steps), c=cfg.c,
                                                 guidance=guidance, steps=steps, seeds=step_seeds)
            images = gen.decode(lat)
            loss = goal.loss(images, target[idx])
        if images_before is None:
            images_before = images.detach().cpu()
        hit = goal.found(images.detach(), target[idx])
        found_at[idx[hit]] = it
        if last or hit.all():
            break
        loss.sum().backward()
        with torch.no_grad():  # step only the samples not found this iteration: a found z' stays as it was
            rows, keep = idx[~hit].to(device), (~hit).to(device)
            d = signed_step(delta[rows], z.grad[keep], cfg.lr, cfg.delta_bound)
            z_new = project_norm(project_normal(z0[rows] + d, margin), lo, hi)
            delta[rows] = (z_new - z0[rows]).clamp(-cfg.delta_bound, cfg.delta_bound)
        times.append(time.perf_counter() - t0)
        bar.set_postfix(found=int((found_at >= 0).sum()), loss=f"{loss.mean().item():.3f}")

    z_final = (z0 + delta).detach()
    check = goal if verifier is None else goal.judged_by(verifier)
    with torch.no_grad():
        found_images = gen.decode(gen.denoise(z_final, emb, guidance, steps, seeds=list(seeds))).cpu()
        probs_after = goal.ensemble(found_images.to(device)).cpu()
        again = gen.decode(gen.denoise(z_final, emb, guidance, steps, gen.other_sampler(), seeds=list(seeds)))
        # the verifier may order its labels differently: match them by name
        verified = check.found(again, torch.tensor([check.ensemble.label_index(goal.ensemble.labels[t])
                                                    for t in targets]))
    rows = []
    for i in range(len(seeds)):
        cert = certify(z_final[i], cfg.alpha)
        found = bool(found_at[i] >= 0)
        rows.append({
            "prompt": prompts[i], "target": int(targets[i]), "label": goal.ensemble.labels[int(targets[i])],
            "seed": int(seeds[i]), "found": found, "iterations": int(found_at[i]) if found else None,
            "verified": found and bool(verified[i]), "certified": cert.passed,
            "norm_sq": cert.norm_sq, "chi2_p": cert.chi2_p, "ks_stat": cert.ks_stat, "ks_p": cert.ks_p,
            "spatial_p": cert.spatial_p,
            "p_target_after": float(probs_after[i, targets[i]]), "pred_after": goal.ensemble.labels[int(probs_after[i].argmax())],
            "confidence_after": float(probs_after[i].max()),
            "delta_linf": float((z_final[i] - z0[i]).abs().max()), "delta_rms": float((z_final[i] - z0[i]).pow(2).mean().sqrt()),
        })
    table = pd.DataFrame(rows)
    table["failed_at_start"] = table["iterations"] == 0
    table["success"] = table["found"] & table["verified"] & table["certified"] & ~table["failed_at_start"]
    return LatentSearchResult(table, z0.cpu(), z_final.cpu(), images_before, found_images, times,
                              _peak_memory_mb(device), check.ensemble.name, gen.other_sampler() or "the model's own")


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
    steps = cfg.steps or gen.default_steps
    guidance = gen.default_guidance if cfg.guidance is None else cfg.guidance
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
