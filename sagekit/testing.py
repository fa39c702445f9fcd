"""``sagekit.testing``: random-weight pipelines of real architectures, built offline.

For tests (tiny pipelines of each family, sized as diffusers' own fast tests size them,
with real tokenizers built locally) and for benchmarks (FLOPs do not depend on the
weights). Every builder writes a folder that the stock diffusers pipeline loads.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, IFPipeline,
                       StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer


def tiny_clip_tokenizer(folder: str | Path, max_length: int = 16) -> CLIPTokenizer:
    """A real CLIP BPE tokenizer over a letters-only vocabulary (no download)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    toks = ["<|startoftext|>", "<|endoftext|>"] + letters + [c + "</w>" for c in letters] + list("!<>/.,'\"")
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(toks)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def tiny_sd_components(seed: int = 0, learned_variance: bool = False, latent: bool = True,
                       sample_size: int = 8, max_length: int = 16, workdir: str | Path = "/tmp") -> dict:
    """Random tiny components in the Stable Diffusion layout (latent) or the IF layout (pixel)."""
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=max_length, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))
    channels = 4 if latent else 3
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels * (2 if learned_variance else 1),
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )
    parts = {"text_encoder": text_encoder, "unet": unet,
             "tokenizer": tiny_clip_tokenizer(Path(workdir) / f"tiny-tokenizer-{seed}", max_length)}
    if latent:
        parts["vae"] = _tiny_vae(sample_size * 2)
        parts["scheduler"] = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    else:
        parts["scheduler"] = DDPMScheduler(beta_schedule="squaredcos_cap_v2",
                                           variance_type="learned_range" if learned_variance else "fixed_small")
    return parts


def save_tiny_pipeline(folder: str | Path, seed: int = 0, learned_variance: bool = False,
                       latent: bool = True) -> Path:
    """Write a tiny random pipeline folder loadable by ``DiffusionPipeline.from_pretrained``."""
    folder = Path(folder)
    parts = tiny_sd_components(seed, learned_variance, latent, workdir=folder.parent)
    if latent:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    else:
        pipe = IFPipeline(**parts, safety_checker=None, feature_extractor=None, watermarker=None,
                          requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _tiny_vae(sample_size: int) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32, sample_size=sample_size,
    )


def save_tiny_sdxl_pipeline(folder: str | Path, seed: int = 0, sample_size: int = 8, max_length: int = 16) -> Path:
    """A tiny random SDXL-base folder: two CLIP text encoders (the second with a projection,
    whose pooled output conditions the UNet), a UNet with ``text_time`` micro-conditioning
    (original size, crop, target size), a VAE and Euler sampling."""
    folder = Path(folder)
    torch.manual_seed(seed)

    def text_config(**extra):
        return CLIPTextConfig(vocab_size=64, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=max_length, bos_token_id=0,
                              eos_token_id=1, pad_token_id=1, **extra)

    time_dim, pooled_dim = 8, 32
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=32,
        cross_attention_dim=64,  # the two encoders' hidden states, concatenated (32 + 32)
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + pooled_dim,
    )
    tokenizers = [tiny_clip_tokenizer(folder.parent / f"tiny-sdxl-tokenizer-{seed}-{i}", max_length) for i in (1, 2)]
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(sample_size * 2), text_encoder=CLIPTextModel(text_config()),
        text_encoder_2=CLIPTextModelWithProjection(text_config(projection_dim=pooled_dim)),
        tokenizer=tokenizers[0], tokenizer_2=tokenizers[1], unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
