"""What the flow-matching families (SD3, Flux) share: their Euler sampler's timesteps and
their training loss.

These models predict a velocity v = noise - x0 along x_sigma = (1 - sigma) x0 + sigma noise,
and the sampler's timestep is 1000 sigma.
"""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from ..generator import Generator, PromptEmbeds

SCHEDULERS = {"flow-euler": FlowMatchEulerDiscreteScheduler}


def resolution_shift(seq_len: int, config) -> float:
    """``mu`` of resolution-dependent timestep shifting: linear in the number of image
    tokens, from ``base_shift`` at ``base_image_seq_len`` to ``max_shift`` at
    ``max_image_seq_len`` (the schedule Flux, and SD3 with dynamic shifting, use)."""
    lo, hi = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    return base + (top - base) * (seq_len - lo) / (hi - lo)


class FlowMatchingGenerator(Generator):
    SCHEDULERS = SCHEDULERS

    def training_scheduler(self):
        return FlowMatchEulerDiscreteScheduler.from_config(self.scheduler.config)

    def denoising_loss(self, x0: torch.Tensor, cond: PromptEmbeds, generator: torch.Generator) -> torch.Tensor:
        """Flow-matching loss: MSE of the predicted velocity to ``noise - x0`` at a
        training sigma drawn uniformly from the model's (shifted) schedule, for clean
        ``x0`` ``(B, C, h, w)`` conditioned on ``cond`` (B rows)."""
        sched = self.training_scheduler()
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        i = torch.randint(0, len(sched.timesteps), (x0.shape[0],), generator=generator)
        sigma = sched.sigmas[i].to(x0).view(-1, 1, 1, 1)
        xt = (1 - sigma) * x0 + sigma * noise
        out = self.predict(self.to_sampler(xt).to(self.dtype), sched.timesteps[i].to(x0.device),
                           cond.to(x0.device, self.dtype))
        return torch.nn.functional.mse_loss(self.from_sampler(out), noise - x0)
