"""`sagekit bench sweep`: images/s of the stock diffusers pipeline vs a sagekit sweep.

(a) the stock pipeline called one image at a time, (b) the stock pipeline batched,
(c) a sagekit seed-shift sweep (generate + judge + CLIP score + store), (d) the
denoiser-only ceiling at the same batch and steps (2 x batch rows with guidance). With
``compile``: (c) and (d) again after ``torch.compile`` of the denoiser, and the compile
time apart.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ..models.generator import PromptEmbeds
from ..models.registry import load_clip_scorer, load_generator, load_judge
from ..models.speed import attention_kernels, compile_denoiser, synced_seconds
from .pipelines import bench_model, bench_setup

PROMPT = "a photo of a red star"


def _ceiling(gen, batch_size: int, steps: int, device, repeats: int = 3) -> tuple[int, float]:
    """The denoiser alone: ``(images, seconds)`` of ``steps`` guided calls (2 x batch rows)
    per batch, from the time of one call."""
    x = torch.randn(2 * batch_size, *gen.latent_shape, device=device, dtype=gen.dtype)
    emb = PromptEmbeds.cat([gen.uncond_embedding(), gen.encode_prompts([PROMPT])]).to(device, gen.dtype)
    emb = emb.repeat_interleave(batch_size)
    t = torch.tensor(500, device=device)
    with torch.no_grad():
        gen.predict(x, t, emb)
        per_step = synced_seconds(lambda: [gen.predict(x, t, emb) for _ in range(repeats)], device) / repeats
    return batch_size, per_step * steps


def bench_sweep(device: str | None = None, batch_size: int | None = None, steps: int | None = None,
                guidance: float | None = None, n_single: int | None = None, arch: str | None = None,
                dtype: str | None = None, compile: bool = False, batches: int = 3) -> dict:
    """Measure (a)-(d); returns images/s of each (rounded), the ratios c/a, c/b and c/d
    (of the unrounded rates), and ``timings``: the images and seconds each rate comes
    from. ``batch_size``
    0: chosen from free memory as a study's sweep would; ``dtype``: ``"float16"``,
    ``"bfloat16"``, ``"float32"`` (default: float16 on CUDA, float32 on CPU). The sweep
    runs ``batches`` batches, as a study's many do: storing one overlaps the next."""
    from diffusers import DiffusionPipeline

    from ..spread import Models
    from ..store import ResultStore
    from ..studies import seed_shifts

    device, cuda, arch, dtype = bench_setup(device, arch, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        m = bench_model(arch, tmp)
        steps, guidance, n_single = steps or m.steps, guidance or m.guidance, n_single or m.singles
        judge = load_judge(m.judge, device)
        clip = load_clip_scorer("toy-clip", device)
        gen = load_generator(m.name, device=device, dtype=dtype)
        model = m.name
        labels = judge.labels

        def cells_for(n: int, first_seed: int) -> list[dict]:
            seeds = range(first_seed, first_seed + (n + len(labels) - 1) // len(labels))
            cells = seed_shifts.build_cells([model], {"UMS": [0.1]}, labels, seeds, [guidance], steps, judge.name,
                                            clip.name)
            return [c for c in cells if c["shift"] == "UMS"][:n]

        pipe = DiffusionPipeline.from_pretrained(m.path, dtype=dtype, safety_checker=None, use_safetensors=True,
                                                 local_files_only=True).to(device)
        pipe.set_progress_bar_config(disable=True)
        chosen = "given"
        if batch_size == 0:  # with the stock pipeline loaded too: it runs at this batch size as well
            batch_size = seed_shifts.batch_size_for(cells_for(256, 0), Models({model: gen}, judge=judge, clip=clip))
            chosen = "from free memory" if cuda else "the CPU default"
        batch_size = batch_size or m.batch

        def stock(pipe, n):
            g = [torch.Generator().manual_seed(i) for i in range(n)]
            pipe([PROMPT] * n, num_inference_steps=steps, guidance_scale=guidance, generator=g, output_type="pt")

        stock(pipe, 1)  # warm-up
        timings = {"a_stock_single": (n_single, synced_seconds(lambda: [stock(pipe, 1) for _ in range(n_single)],
                                                                device)),
                   "b_stock_batched": (batch_size, synced_seconds(lambda: stock(pipe, batch_size), device))}
        pipe = None  # its memory goes to the sweep
        if cuda:
            torch.cuda.empty_cache()

        store = ResultStore(tmp / "store")

        def sweep(first_seed: int, n: int = batches) -> tuple[int, float]:
            cells = cells_for(n * batch_size, first_seed)
            return len(cells), synced_seconds(lambda: seed_shifts.run(cells, store, {model: gen}, judge, clip,
                                                                      batch_size=batch_size, progress=False), device)

        sweep(10**6, 1)  # warm-up, at the measured batch's shapes (fresh seeds: nothing is skipped as stored)
        timings["c_sagekit_sweep"] = sweep(0)
        timings["d_unet_ceiling"] = _ceiling(gen, batch_size, steps, device)
        a, b, c, d = (n / s for n, s in timings.values())
        out = {
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "model": arch if arch == "toy" else f"{arch}-random",
            "dtype": str(gen.dtype).removeprefix("torch."), "attention": attention_kernels(gen.denoiser),
            "threads": torch.get_num_threads(), "batch_size": batch_size, "batch_size_chosen": chosen,
            "sweep_batches": batches,
            "steps": steps, "guidance": guidance,
            "a_stock_single": round(a, 3), "b_stock_batched": round(b, 3), "c_sagekit_sweep": round(c, 3),
            "d_unet_ceiling": round(d, 3), "c_over_a": round(c / a, 2), "c_over_b": round(c / b, 3),
            "c_over_d": round(c / d, 3),
        }
        if compile:
            compile_denoiser(gen)
            first = sweep(2 * 10**6, 1)[1]  # seconds of the first compiled batch
            timings["c_sweep_compiled"] = sweep(3 * 10**6)
            timings["d_ceiling_compiled"] = _ceiling(gen, batch_size, steps, device)
            cc, dc = (n / s for n, s in (timings["c_sweep_compiled"], timings["d_ceiling_compiled"]))
            out.update({"compile_s": round(first - batch_size / cc, 1), "c_sweep_compiled": round(cc, 3),
                        "d_ceiling_compiled": round(dc, 3), "c_compiled_over_d_eager": round(cc / d, 3),
                        "compiled_over_eager": round(cc / c, 3), "attention_compiled": attention_kernels(gen.denoiser)})
        out["timings"] = {k: {"images": n, "seconds": s} for k, (n, s) in timings.items()}
    return out
