"""`sagekit bench sweep`: images/s of the stock diffusers pipeline vs a sagekit sweep.

(a) the stock pipeline called one image at a time, (b) the stock pipeline batched,
(c) a sagekit seed-shift sweep (generate + judge + CLIP score + store), (d) the UNet-only
ceiling at the same batch and steps (2 x batch rows with guidance). On CPU the toy model;
on CUDA a random-weight Stable Diffusion 1.5-architecture pipeline in fp16 (FLOPs do not
depend on the weights).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from .models.generator import PromptEmbeds
from .models.registry import load_clip_scorer, load_generator, load_judge


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def sd15_random_pipeline(folder: Path, seed: int = 0) -> Path:
    """Save a random-weight SD 1.5-architecture pipeline (UNet 860M, VAE, CLIP ViT-L text)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .testing import tiny_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # SD 1.5 defaults
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512, scaling_factor=0.18215)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tiny_clip_tokenizer(folder.parent / "tok", 77),
                            unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder, safe_serialization=True)
    return folder


def bench_sweep(device: str | None = None, batch_size: int | None = None, steps: int | None = None,
                guidance: float | None = None, n_single: int | None = None) -> dict:
    """Measure (a)-(d); returns images/s for each and the ratios c/a and c/d."""
    from diffusers import StableDiffusionPipeline

    from .store import ResultStore
    from .studies import seed_shifts

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(device).type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if cuda:
            path = sd15_random_pipeline(tmp / "sd15")
            model, dtype = str(path), torch.float16
            batch_size, steps, guidance, n_single = batch_size or 32, steps or 50, guidance or 7.5, n_single or 4
            judge = load_judge("toy-resnet", device)  # a judge's cost is small next to SD; weights don't matter
        else:
            from .models.registry import TOY_DIR

            path, model, dtype = TOY_DIR / "toy", "toy", torch.float32
            batch_size, steps, guidance, n_single = batch_size or 64, steps or 25, guidance or 3.0, n_single or 8
            judge = load_judge("toy-ensemble", device)
        clip = load_clip_scorer("toy-clip", device)
        gen = load_generator(model, device=device, dtype=dtype)
        pipe = StableDiffusionPipeline.from_pretrained(path, dtype=dtype, safety_checker=None,
                                                       local_files_only=True).to(device)
        pipe.set_progress_bar_config(disable=True)
        prompt = "a photo of a red star"

        def stock(n):
            g = [torch.Generator().manual_seed(i) for i in range(n)]
            pipe([prompt] * n, num_inference_steps=steps, guidance_scale=guidance, generator=g, output_type="pt")

        stock(1)  # warm-up
        a = n_single / _timed(lambda: [stock(1) for _ in range(n_single)], device)
        b = batch_size / _timed(lambda: stock(batch_size), device)

        store = ResultStore(tmp / "store")
        labels = judge.labels[:batch_size] if len(judge.labels) >= batch_size else judge.labels
        seeds = range((batch_size + len(labels) - 1) // len(labels))
        cells = seed_shifts.build_cells([model], {"UMS": [0.1]}, labels, seeds, [guidance], steps,
                                        judge.name, clip.name)
        cells = [c for c in cells if c["shift"] == "UMS"][:batch_size]
        warm = seed_shifts.build_cells([model], {}, labels[:2], [10**6], [guidance], steps, judge.name, clip.name)
        seed_shifts.run(warm, store, {model: gen}, judge, clip, batch_size=batch_size, progress=False)
        c = len(cells) / _timed(lambda: seed_shifts.run(cells, store, {model: gen}, judge, clip,
                                                         batch_size=batch_size, progress=False), device)

        x = torch.randn(2 * batch_size, *gen.latent_shape, device=device, dtype=dtype)
        emb = PromptEmbeds.cat([gen.uncond_embedding(), gen.encode_prompts([prompt])]).to(device, dtype)
        emb = emb.repeat_interleave(batch_size)
        t = torch.tensor(500, device=device)
        with torch.no_grad():
            gen.predict(x, t, emb)
            per_step = _timed(lambda: [gen.predict(x, t, emb) for _ in range(3)], device) / 3
        d = batch_size / (per_step * steps)
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "model": "sd15-random-fp16" if cuda else "toy",
        "threads": torch.get_num_threads(), "batch_size": batch_size, "steps": steps, "guidance": guidance,
        "a_stock_single": round(a, 3), "b_stock_batched": round(b, 3), "c_sagekit_sweep": round(c, 3),
        "d_unet_ceiling": round(d, 3), "c_over_a": round(c / a, 2), "c_over_d": round(c / d, 3),
    }
