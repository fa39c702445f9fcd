"""Seed shifts: perturbations of the initial noise z ~ N(0, I), applied before the
scheduler scales it (paper 001, "brittle latent space").

Every shift is a pure function ``(z, level, generator) -> z'`` on ``(N, C, H, W)``
float tensors; ``generator`` is a CPU ``torch.Generator`` and is only used by the
random-uniform shift. Levels:

=============  =====================  ==========================================
shift          level                  z'
=============  =====================  ==========================================
``none``       ignored                z
``constant``   alpha_c (float)        z + alpha_c
``uniform``    alpha_u (float)        z + alpha_u * u,  u ~ U(0, 1) elementwise
``std``        alpha_s (float)        (1 + alpha_s) * z
``mixed``      (alpha_s, alpha_c)     (1 + alpha_s) * z + alpha_c
``sort``       n (int)                the first n values of each channel, in raster
                                      order from the top-left, sorted ascending
=============  =====================  ==========================================
"""

from __future__ import annotations

from typing import Callable

import torch

Level = float | int | tuple[float, float]


def no_shift(z: torch.Tensor, level: Level = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    return z.clone()


def constant_mean(z: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean moves by ``alpha``; std unchanged."""
    return z + float(alpha)


def uniform_mean(z: torch.Tensor, alpha: float, generator=None) -> torch.Tensor:
    """Mean moves by ``alpha / 2``; std grows to ``sqrt(1 + alpha^2 / 12)``.
    ``generator``: one CPU generator, or a list with one per sample (so a sample's shift
    does not depend on its batch)."""
    if generator is None:
        raise ValueError("the uniform shift needs a seeded generator")
    if isinstance(generator, (list, tuple)):
        if len(generator) != z.shape[0]:
            raise ValueError(f"{len(generator)} generators for {z.shape[0]} samples")
        u = torch.stack([torch.rand(z.shape[1:], generator=g) for g in generator])
    else:
        u = torch.rand(z.shape, generator=generator)
    return z + float(alpha) * u.to(z.device, z.dtype)


def std_scale(z: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Std becomes ``1 + alpha``; requires ``alpha > -1``."""
    if alpha <= -1:
        raise ValueError(f"std shift needs alpha > -1, got {alpha}")
    return (1 + float(alpha)) * z


def mixed(z: torch.Tensor, level: tuple[float, float], generator: torch.Generator | None = None) -> torch.Tensor:
    """``level = (alpha_s, alpha_c)``: std ``1 + alpha_s``, mean ``alpha_c``."""
    alpha_s, alpha_c = level
    return constant_mean(std_scale(z, alpha_s), alpha_c)


def arrangement(z: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sort the first ``n`` raster positions of every channel: the multiset of values (so
    the marginal distribution) is unchanged, only their arrangement."""
    n = int(n)
    if not 0 <= n <= z.shape[-1] * z.shape[-2]:
        raise ValueError(f"sort shift needs 0 <= n <= H*W = {z.shape[-1] * z.shape[-2]}, got {n}")
    flat = z.flatten(-2).clone()
    flat[..., :n] = flat[..., :n].sort(dim=-1).values
    return flat.view_as(z)


SHIFTS: dict[str, Callable] = {
    "none": no_shift,
    "constant": constant_mean,
    "uniform": uniform_mean,
    "std": std_scale,
    "mixed": mixed,
    "sort": arrangement,
}

# The paper's sweeps (DESIGN, seed-shifts).
DEFAULT_LEVELS: dict[str, list] = {
    "constant": [round(-0.2 + 0.05 * i, 2) for i in range(9)],
    "uniform": [round(-0.4 + 0.1 * i, 2) for i in range(9)],
    "std": [round(-0.3 + 0.1 * i, 1) for i in range(7)],
    "mixed": [(round(s, 1), round(c, 2)) for s in (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)
              for c in (-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15)],
    "sort": [8, 16, 32, 64],
}


# Offset for the uniform draw so that u is not the noise of the same seed again.
UNIFORM_SEED_OFFSET = 104_729


def apply_shift(name: str, z: torch.Tensor, level: Level, seeds: list[int] | None = None) -> torch.Tensor:
    """Apply shift ``name`` at ``level`` to ``z`` ``(N, C, H, W)``; ``seeds`` (one per
    sample, the seeds of the noise) seed the random-uniform draws."""
    if name not in SHIFTS:
        raise KeyError(f"unknown shift {name!r}; known: {', '.join(SHIFTS)}")
    gens = None
    if name == "uniform":
        if seeds is None:
            raise ValueError("the uniform shift needs the samples' seeds")
        gens = [torch.Generator().manual_seed(int(s) + UNIFORM_SEED_OFFSET) for s in seeds]
    return SHIFTS[name](z, level, gens)
