"""`sagekit bench search`: seconds and peak memory per iteration of a latent search.

One latent, one prompt, the model's sampler at ``steps`` steps with guidance. Exact
gradients with per-step checkpointing run every denoiser call forward, again in the
backward pass, then backward (about two forwards): 4 forwards per step, plus decoding
and judging. Residual gradients (SAGE) run N - k steps without gradient and k with:
N + 2k forwards. Each mode's measured time is set against its count of forwards, timed
alone at the same batch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ..models.registry import load_ensemble, load_generator
from ..models.speed import synced_seconds
from ..search import DistortedGoal
from ..studies.latent_search import LatentSearchConfig, cost_per_iteration, residual_speedup_bound
from .pipelines import bench_model, bench_setup

PROMPT = "a photo of a red star"


def forward_seconds(gen, guidance: float, repeats: int = 5) -> float:
    """Seconds of one denoiser call for one sample (two rows under guidance), no gradient."""
    rows = 2 if gen.uses_guidance(guidance) else 1
    x = torch.randn(rows, *gen.latent_shape, device=gen.device, dtype=gen.dtype)
    emb = gen.encode_prompts([PROMPT] * rows).to(gen.device, gen.dtype)
    t = torch.tensor(500, device=gen.device)
    with torch.no_grad():
        gen.predict(x, t, emb)
        return synced_seconds(lambda: [gen.predict(x, t, emb) for _ in range(repeats)], gen.device) / repeats


def bench_search(device: str | None = None, arch: str | None = None, steps: int | None = None, k: int = 2,
                 iterations: int = 3, dtype: str | None = None) -> dict:
    """Per mode: seconds and peak memory (MiB; on a CPU the process's peak RSS) of one
    iteration, the seconds of the forwards it counts, and their ratio."""
    device, cuda, arch, dtype = bench_setup(device, arch, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        m = bench_model(arch, Path(tmp))
        steps = steps or m.steps
        gen = load_generator(m.name, device=device, dtype=dtype)
        ensemble = load_ensemble(m.judge, device)
        goal = DistortedGoal(ensemble)
        weights = torch.cuda.memory_allocated(gen.device) / 2**20 if cuda else float("nan")
        fwd = forward_seconds(gen, m.guidance)
        out = {"device": torch.cuda.get_device_name() if cuda else "cpu",
               "model": arch if arch == "toy" else f"{arch}-random", "dtype": str(gen.dtype).removeprefix("torch."),
               "steps": steps, "guidance": m.guidance, "k": k, "forward_s": round(fwd, 4),
               "weights_mib": round(weights) if cuda else None}
        for mode, forwards in (("exact", 4 * steps), ("residual", steps + 2 * k)):
            cfg = LatentSearchConfig(mode=mode, k=k, steps=steps, guidance=m.guidance)
            cost_per_iteration(gen, goal, PROMPT, 0, 0, cfg, iterations=1)  # warm-up (kernels, allocator)
            cost = cost_per_iteration(gen, goal, PROMPT, 0, 0, cfg, iterations=iterations)
            out[mode] = {"seconds": round(cost["seconds"], 3), "peak_memory_mib": round(cost["peak_memory_mb"]),
                         "forwards": forwards, "forwards_s": round(forwards * fwd, 3),
                         "ratio": round(cost["seconds"] / (forwards * fwd), 3)}
        out["exact_over_residual"] = round(out["exact"]["seconds"] / out["residual"]["seconds"], 2)
        out["residual_bound"] = round(residual_speedup_bound(steps, k), 2)
    return out
