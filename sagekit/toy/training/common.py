"""Small helpers shared by the toy trainers."""

from __future__ import annotations

import math
import time

import torch
from ...progress import bar


def seeded_batches(n: int, batch_size: int, steps: int, seed: int):
    """Yield ``steps`` index tensors of ``batch_size`` drawn from ``range(n)``, epoch by epoch."""
    g = torch.Generator().manual_seed(seed)
    perm, pos = torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        yield perm[pos:pos + batch_size]
        pos += batch_size


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int, warmup: int = 50):
    """Linear warm-up then cosine decay to 5% of the base rate."""
    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        p = (i - warmup) / max(1, steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def progress(steps: int, desc: str, start: int = 0):
    """Steps ``start .. steps - 1`` under a progress bar (``start`` > 0: a resumed run)."""
    return bar(range(start, steps), desc=desc, initial=start, total=steps, mininterval=5.0)


class Timer:
    """Records wall seconds per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = round(time.perf_counter() - self.t0, 1)

        return _Stage()


def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blur, noise and brightness jitter so judges also read imperfect, generated images.

    images: float ``(B, 3, H, W)`` in [0, 1]; returns the same shape and range.
    """
    b = images.shape[0]
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    mix = torch.rand(b, 1, 1, 1, generator=g)
    out = images * (1 - mix) + blurred * mix
    out = out * (0.85 + 0.3 * torch.rand(b, 1, 1, 1, generator=g))
    out = out + torch.randn(out.shape, generator=g) * 0.04 * torch.rand(b, 1, 1, 1, generator=g)
    return out.clamp(0, 1)


def check_finite(model: torch.nn.Module, name: str) -> None:
    """Raise if any weight of a freshly trained model is NaN or infinite: a diverged stage
    must stop the training, not poison every model trained after it."""
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(f"{name} diverged: {len(bad)} tensors hold NaN or inf (first: {bad[0]})")
