"""Random-weight pipelines of real architectures and sizes, for measuring speed and memory.

FLOPs and memory do not depend on the weights, so a pipeline of the real shapes with
random weights measures what the real checkpoint would cost, without a download.
``bench_model`` picks one by name: ``toy`` (the CPU default, the shipped weights),
``sd15``, ``sdxl`` (saved in the session's temporary folder, or kept in
``$SAGEKIT_BENCH_DIR`` when it is set, so that several measurements build each once) or
``tiny-sdxl`` (the test-sized SDXL folder of ``sagekit.testing``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


def sd15_random_pipeline(folder: Path, seed: int = 0) -> Path:
    """Save a random-weight SD 1.5-architecture pipeline (UNet 860M, VAE, CLIP ViT-L text)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..testing import clip_tokenizer

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

    from ..testing import clip_tokenizer

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


@dataclass(frozen=True)
class BenchModel:
    """A model to measure and its settings: ``path`` (diffusers folder), ``name`` (for
    ``load_generator``), default ``batch``, ``steps``, ``guidance``, ``singles`` (images
    the per-image pipeline loop draws) and ``judge`` (a judge's cost is small next to
    SD's and its weights don't matter, so the toy's)."""

    path: Path
    name: str
    batch: int
    steps: int
    guidance: float
    singles: int
    judge: str


def bench_model(arch: str, tmp: Path) -> BenchModel:
    """The :class:`BenchModel` of ``arch`` (one of :data:`ARCHS`), any folder saved under ``tmp``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch == "toy":
        from ..toy.names import TOY_DIR

        return BenchModel(TOY_DIR / "toy", "toy", 64, 25, 3.0, 8, "toy-ensemble")
    if arch == "tiny-sdxl":
        from ..testing import save_tiny_sdxl_pipeline

        path = save_tiny_sdxl_pipeline(tmp / "tiny-sdxl")
        return BenchModel(path, str(path), 8, 4, 5.0, 2, "toy-resnet")
    keep = os.environ.get("SAGEKIT_BENCH_DIR")
    path = (Path(keep) if keep else tmp) / arch
    if not (path / "model_index.json").exists():
        (sd15_random_pipeline if arch == "sd15" else sdxl_random_pipeline)(path)
    return BenchModel(path, str(path), 32 if arch == "sd15" else 8, 50, 7.5 if arch == "sd15" else 5.0, 4, "toy-resnet")


def bench_setup(device: str | None, arch: str | None, dtype) -> tuple[str, bool, str, torch.dtype]:
    """``(device, on CUDA, arch, dtype)`` with the defaults filled in: CUDA when there is
    one, ``sd15`` there and ``toy`` on a CPU, float16 on CUDA (the toy stays float32)."""
    from ..models.speed import parse_dtype

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(device).type == "cuda"
    arch = arch or ("sd15" if cuda else "toy")
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return device, cuda, arch, parse_dtype(dtype) or (torch.float16 if cuda and arch != "toy" else torch.float32)
