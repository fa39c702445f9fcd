"""Train the toy VAE (diffusers AutoencoderKL, 32x32x3 <-> 16x16x4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..architectures import autoencoder
from ..world import SceneBatch
from .common import progress, seeded_batches, warmup_cosine


def train_autoencoder(data: SceneBatch, seed: int, steps: int = 600, batch_size: int = 64,
                      lr: float = 2e-3, kl_weight: float = 1e-6) -> AutoencoderKL:
    """L1 + MSE reconstruction with a tiny KL term. The decoder is trained on the posterior
    mean, which is what diffusion samples are decoded from; then ``scaling_factor`` is set
    so that scaled latents have unit variance, as Stable Diffusion's VAE does."""
    torch.manual_seed(seed)
    vae = autoencoder()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = warmup_cosine(opt, steps, warmup=30)
    batches = seeded_batches(len(data.images), batch_size, steps, seed)
    vae.train()
    for _ in progress(steps, "vae"):
        x = data.images[next(batches)].float() / 127.5 - 1
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.mode()).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    vae.eval()
    with torch.no_grad():
        z = torch.cat([vae.encode(data.images[i:i + 500].float() / 127.5 - 1).latent_dist.mode()
                       for i in range(0, min(len(data.images), 5000), 500)])
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    return vae


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images01: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Encode-decode float images in [0, 1]; returns the same shape in [0, 1]."""
    out = []
    for i in range(0, len(images01), batch_size):
        x = images01[i:i + batch_size] * 2 - 1
        out.append(vae.decode(vae.encode(x).latent_dist.mode()).sample)
    return (torch.cat(out) / 2 + 0.5).clamp(0, 1)
