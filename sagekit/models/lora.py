"""LoRA fine-tuning of a Generator's denoiser (peft, as diffusers' text-to-image LoRA
training example does it): low-rank adapters on the attention projections, everything
else frozen, trained on the family's own denoising loss.

Works for every family whose denoiser is a diffusers model (UNet or transformer): the
loss is ``Generator.denoising_loss`` (epsilon / v for the DDPM families, the velocity for
flow matching) and the conditioning is the family's own (pooled text and micro-
conditioning for SDXL). The adapters train in float32 even when the model is in half
precision, as diffusers' ``cast_training_params`` does.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch

from .generator import Generator, PromptEmbeds

# the attention projections diffusers' LoRA examples adapt (UNets and DiTs alike)
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


def lora_fine_tuned(gen: Generator, images: torch.Tensor, captions: Sequence[str], steps: int, lr: float = 1e-4,
                    rank: int = 4, alpha: float | None = None, batch_size: int = 4, seed: int = 0,
                    progress: bool = False) -> Generator:
    """A copy of ``gen`` whose denoiser carries LoRA adapters of ``rank`` (scale ``alpha /
    rank``, default 1) on its attention projections, trained ``steps`` AdamW steps on
    (uint8 images ``(N, 3, H, W)`` at the model's resolution, captions). ``gen`` is left
    as it was. Batches and noise come from ``seed`` (CPU generator): reproducible."""
    from peft import LoraConfig
    from ..progress import bar as progress_bar

    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    if len(images) != len(captions) or not len(captions):
        raise ValueError(f"need as many captions as images (got {len(captions)} and {len(images)}), at least one")
    if images.shape[-1] != gen.image_size:
        raise ValueError(f"images are {images.shape[-1]} px; {gen.name} draws {gen.image_size} px")
    tuned = copy.copy(gen)
    tuned.denoiser = copy.deepcopy(gen.denoiser)
    tuned._prompt_cache = {}
    tuned.denoiser.requires_grad_(False)
    tuned.denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                                          target_modules=list(TARGET_MODULES)))
    params = [p for n, p in tuned.denoiser.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
    x0 = gen.encode_images(images)
    with torch.no_grad():
        cond = PromptEmbeds.cat([gen.embed_prompts(list(captions[i:i + 64])).to("cpu")
                                 for i in range(0, len(captions), 64)])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    g = torch.Generator().manual_seed(seed)
    dev = tuned.device
    tuned.denoiser.train()
    for _ in progress_bar(range(steps), desc=f"LoRA r={rank}", progress=progress):
        idx = torch.randint(0, len(x0), (min(batch_size, len(x0)),), generator=g)
        loss = tuned.denoising_loss(x0[idx].to(dev, torch.float32), cond[idx].to(dev), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    tuned.denoiser.requires_grad_(False).eval()
    return tuned


def lora_parameters(gen: Generator) -> int:
    """How many adapter weights a generator's denoiser carries (0 without LoRA)."""
    return sum(p.numel() for n, p in gen.denoiser.named_parameters() if "lora_" in n)
