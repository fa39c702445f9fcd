"""Seed shifts: perturbations of the initial noise z ~ N(0, I), applied before the
scheduler scales it, as paper 001 ("brittle latent space", §3.2) defines them: z' = z + eta.

Every shift is a pure function ``(z, level, generator) -> z'`` on ``(N, C, H, W)``
float tensors; ``generator`` is a CPU ``torch.Generator`` (or one per sample) and is only
used by URMS. Names and levels are the paper's:

=========  ==========================  ==============================================
shift      level                       z'
=========  ==========================  ==============================================
``none``   ignored                     z
``UMS``    alpha_c (float)             z + alpha_c                 (uniform mean shift)
``URMS``   alpha_u (float)             z + alpha_u * u, u ~ U(0, 1) per element (or
                                       per image): uniform random mean shift, the
                                       mean moves alpha_u / 2
``SDS``    alpha_s (float, < 1)        (1 - alpha_s) * z           (eta_s = -alpha_s * z)
``MS``     (alpha_s, alpha_c)          (1 - alpha_s) * z + alpha_c (mixed: eta_s + eta_m)
``PAS``    n (int)                     the first n values of each channel, in raster
                                       order from the top-left, sorted ascending
                                       (arrangement shift: the values are unchanged)
=========  ==========================  ==============================================
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


URMS_DRAWS = ("element", "image")


def uniform_mean(z: torch.Tensor, alpha: float, generator=None, draw: str = "element") -> torch.Tensor:
    """``z + alpha * u``, u ~ U(0, 1). ``draw``: ``"element"`` (one u per element, the
    default: the mean moves by ``alpha / 2`` and the std grows to ``sqrt(1 + alpha^2 / 12)``)
    or ``"image"`` (one u per image: a constant shift of random size, the std unchanged);
    paper 001 does not say which it drew. ``generator``: one CPU generator, or a list
    with one per sample (so a sample's shift does not depend on its batch)."""
    if generator is None:
        raise ValueError("the uniform shift needs a seeded generator")
    if draw not in URMS_DRAWS:
        raise ValueError(f"the uniform shift draws u per {' or per '.join(URMS_DRAWS)}, got {draw!r}")
    shape = z.shape[1:] if draw == "element" else (1,) * (z.dim() - 1)
    if isinstance(generator, (list, tuple)):
        if len(generator) != z.shape[0]:
            raise ValueError(f"{len(generator)} generators for {z.shape[0]} samples")
        u = torch.stack([torch.rand(shape, generator=g) for g in generator])
    else:
        u = torch.rand((z.shape[0], *shape), generator=generator)
    return z + float(alpha) * u.to(z.device, z.dtype)


def std_shift(z: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """eta_s = -alpha * z: the std becomes ``1 - alpha`` (a positive alpha shrinks the
    noise); requires ``alpha < 1``."""
    if alpha >= 1:
        raise ValueError(f"SDS needs alpha_s < 1 (the std becomes 1 - alpha_s), got {alpha}")
    return (1 - float(alpha)) * z


def mixed(z: torch.Tensor, level: tuple[float, float], generator: torch.Generator | None = None) -> torch.Tensor:
    """``level = (alpha_s, alpha_c)``: std ``1 - alpha_s``, then mean ``alpha_c``."""
    alpha_s, alpha_c = level
    return constant_mean(std_shift(z, alpha_s), alpha_c)


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
    "UMS": constant_mean,
    "URMS": uniform_mean,
    "SDS": std_shift,
    "MS": mixed,
    "PAS": arrangement,
}

# What each shift does, as reports print it.
FORMULAS = {
    "UMS": "uniform mean shift: z + α_c",
    "URMS": "uniform random mean shift: z + α_u·u, u ~ U[0, 1] per element (the mean moves by α_u/2; "
            "with urms_draw \"image\": one u per image)",
    "SDS": "standard-deviation shift: (1 − α_s)·z",
    "MS": "mixed shift: (1 − α_s)·z + α_c, level (α_s, α_c)",
    "PAS": "arrangement shift: the first n values of each channel, in raster order from the top left, sorted",
}

# The paper's grids (§4.1).
DEFAULT_LEVELS: dict[str, list] = {
    "UMS": [round(-0.2 + 0.05 * i, 2) for i in range(9)],
    "URMS": [round(-0.2 + 0.05 * i, 2) for i in range(9)],
    "SDS": [round(-0.3 + 0.1 * i, 1) for i in range(7)],
    "MS": [(round(s, 1), round(c, 2)) for s in (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)
           for c in (-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15)],
    "PAS": [8, 16, 32, 64],
}


def grid(spec) -> dict[str, list]:
    """A study's shift grid: ``"paper"`` is paper 001's (:data:`DEFAULT_LEVELS`); a dict
    ``{shift: [levels]}`` is used as it is."""
    if spec == "paper":
        return {name: list(levels) for name, levels in DEFAULT_LEVELS.items()}
    if isinstance(spec, dict):
        return dict(spec)
    raise ValueError(f"a shift grid is 'paper' or a dict {{shift: [levels]}}, got {spec!r}")


# Offset for the uniform draw so that u is not the noise of the same seed again.
UNIFORM_SEED_OFFSET = 104_729


def apply_shift(name: str, z: torch.Tensor, level: Level, seeds: list[int] | None = None,
                urms_draw: str = "element") -> torch.Tensor:
    """Apply shift ``name`` at ``level`` to ``z`` ``(N, C, H, W)``; ``seeds`` (one per
    sample, the seeds of the noise) seed the random-uniform draws, which ``urms_draw``
    takes per element or per image (:func:`uniform_mean`)."""
    if name not in SHIFTS:
        raise KeyError(f"unknown shift {name!r}; known: {', '.join(SHIFTS)}")
    if name != "URMS":
        return SHIFTS[name](z, level)
    if seeds is None:
        raise ValueError("the uniform shift needs the samples' seeds")
    gens = [torch.Generator().manual_seed(int(s) + UNIFORM_SEED_OFFSET) for s in seeds]
    return uniform_mean(z, level, gens, urms_draw)
