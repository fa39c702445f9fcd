"""`sagekit bench sweep`: images/s of the stock diffusers pipeline vs a sagekit sweep.

(a) the stock pipeline called one image at a time, (b) the stock pipeline batched,
(c) a sagekit seed-shift sweep (generate + judge + CLIP score + store), (d) the
denoiser-only ceiling at the same batch and steps (2 x batch rows with guidance).

``arch``: ``toy`` (the CPU default), ``sd15`` (the CUDA default) or ``sdxl``: a
random-weight pipeline of the real architecture and size, in fp16 on CUDA (FLOPs do not
depend on the weights); ``tiny-sdxl`` is the test-sized SDXL folder of ``sagekit.testing``.
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

    from .testing import clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # SD 1.5 defaults
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512, scaling_factor=0.18215)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=clip_tokenizer(folder.parent / "tok", 77),
                            unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder, safe_serialization=True)
    return folder


def sdxl_random_pipeline(folder: Path, seed: int = 0) -> Path:
    """Save a random-weight SDXL-base-architecture pipeline (UNet 2.6B with text_time
    conditioning, the SDXL VAE, CLIP ViT-L and OpenCLIP ViT-bigG text encoders)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .testing import clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
        cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=1024, scaling_factor=0.13025, force_upcast=True)
    clip_l = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                          num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77))
    clip_g = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
        max_position_embeddings=77, projection_dim=1280, hidden_act="gelu"))
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                                   timestep_spacing="leading")
    toks = [clip_tokenizer(folder.parent / f"tok{i}", 77) for i in (1, 2)]
    StableDiffusionXLPipeline(vae=vae, text_encoder=clip_l, text_encoder_2=clip_g, tokenizer=toks[0],
                              tokenizer_2=toks[1], unet=unet, scheduler=sched).save_pretrained(folder,
                                                                                               safe_serialization=True)
    return folder


ARCHS = ("toy", "sd15", "sdxl", "tiny-sdxl")


def _bench_model(arch: str, tmp: Path, cuda: bool):
    """(folder, model name for load_generator, dtype, default batch, steps, guidance, singles, judge name)."""
    dtype = torch.float16 if cuda else torch.float32
    if arch == "toy":
        from .models.registry import TOY_DIR

        return TOY_DIR / "toy", "toy", torch.float32, 64, 25, 3.0, 8, "toy-ensemble"
    if arch == "tiny-sdxl":
        from .testing import save_tiny_sdxl_pipeline

        path = save_tiny_sdxl_pipeline(tmp / "tiny-sdxl")
        return path, str(path), dtype, 8, 4, 5.0, 2, "toy-resnet"
    # a judge's cost is small next to SD's; its weights don't matter
    path = (sd15_random_pipeline if arch == "sd15" else sdxl_random_pipeline)(tmp / arch)
    return path, str(path), dtype, (32 if arch == "sd15" else 8), 50, (7.5 if arch == "sd15" else 5.0), 4, "toy-resnet"


def bench_sweep(device: str | None = None, batch_size: int | None = None, steps: int | None = None,
                guidance: float | None = None, n_single: int | None = None, arch: str | None = None) -> dict:
    """Measure (a)-(d); returns images/s for each and the ratios c/a and c/d."""
    from diffusers import DiffusionPipeline

    from .store import ResultStore
    from .studies import seed_shifts

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(device).type == "cuda"
    arch = arch or ("sd15" if cuda else "toy")
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path, model, dtype, b0, s0, g0, n0, judge_name = _bench_model(arch, tmp, cuda)
        batch_size, steps, guidance, n_single = batch_size or b0, steps or s0, guidance or g0, n_single or n0
        judge = load_judge(judge_name, device)
        clip = load_clip_scorer("toy-clip", device)
        gen = load_generator(model, device=device, dtype=dtype)
        pipe = DiffusionPipeline.from_pretrained(path, dtype=dtype, safety_checker=None, use_safetensors=True,
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
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "model": arch if arch == "toy" else f"{arch}-random-{str(dtype).removeprefix('torch.')}",
        "threads": torch.get_num_threads(), "batch_size": batch_size, "steps": steps, "guidance": guidance,
        "a_stock_single": round(a, 3), "b_stock_batched": round(b, 3), "c_sagekit_sweep": round(c, 3),
        "d_unet_ceiling": round(d, 3), "c_over_a": round(c / a, 2), "c_over_d": round(c / d, 3),
    }
