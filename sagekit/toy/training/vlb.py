"""The variational-bound term for learned-variance diffusion (Nichol & Dhariwal's hybrid loss).

The UNet predicts epsilon and ``v`` in [-1, 1]; the reverse-step log-variance is
``frac * log(beta_t) + (1 - frac) * log(beta_tilde_t)`` with ``frac = (v + 1) / 2`` — the
same "learned_range" that diffusers' DDPMScheduler uses when sampling. The bound only
trains the variance: the mean is taken from the detached epsilon.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler


def _gather(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return values.to(t.device)[t].view(-1, 1, 1, 1)


def _normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _discretized_nll(x0, mean, logvar):
    """-log p(x0) for 8-bit data in [-1, 1] under a Gaussian, per element (nats)."""
    std = torch.exp(0.5 * logvar)
    upper = torch.where(x0 > 0.999, torch.ones_like(x0), torch.special.ndtr((x0 - mean + 1 / 255) / std))
    lower = torch.where(x0 < -0.999, torch.zeros_like(x0), torch.special.ndtr((x0 - mean - 1 / 255) / std))
    return -torch.log((upper - lower).clamp_min(1e-12))


def _gaussian_nll(x0, mean, logvar):
    """-log N(x0; mean, exp(logvar)) per element (nats): the t=0 term for continuous latents."""
    return 0.5 * (math.log(2 * math.pi) + logvar + (x0 - mean) ** 2 * torch.exp(-logvar))


def vlb_term(scheduler: DDPMScheduler, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
             eps: torch.Tensor, v: torch.Tensor, pixels: bool = True) -> torch.Tensor:
    """Mean over the batch of L_t in bits per dimension. Shapes ``(B, C, H, W)``; t ``(B,)``.
    ``pixels``: x0 is 8-bit data in [-1, 1] (clamped x0 estimate, discretized likelihood at
    t=0); otherwise x0 is a continuous latent (no clamp, Gaussian likelihood at t=0)."""
    ab = scheduler.alphas_cumprod.float()
    ab_prev = torch.cat([torch.ones(1), ab[:-1]])
    betas = 1 - ab / ab_prev
    post_var = betas * (1 - ab_prev) / (1 - ab)
    post_logvar = torch.log(torch.cat([post_var[1:2], post_var[1:]]))  # t=0 has zero variance: clip
    coef_x0 = betas * ab_prev.sqrt() / (1 - ab)
    coef_xt = (1 - ab_prev) * (1 - betas).sqrt() / (1 - ab)

    true_mean = _gather(coef_x0, t) * x0 + _gather(coef_xt, t) * xt
    true_logvar = _gather(post_logvar, t)
    x0_pred = (xt - _gather((1 - ab).sqrt(), t) * eps.detach()) / _gather(ab.sqrt(), t)
    if pixels:
        x0_pred = x0_pred.clamp(-1, 1)
    model_mean = _gather(coef_x0, t) * x0_pred + _gather(coef_xt, t) * xt
    frac = (v + 1) / 2
    model_logvar = frac * _gather(torch.log(betas), t) + (1 - frac) * true_logvar

    kl = _normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean(dim=(1, 2, 3)) / math.log(2)
    nll = (_discretized_nll if pixels else _gaussian_nll)(x0, model_mean, model_logvar).mean(dim=(1, 2, 3)) / math.log(2)
    return torch.where(t == 0, nll, kl).mean()
