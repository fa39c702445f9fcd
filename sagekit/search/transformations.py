"""Transformations: what a search may change, the size of one step and the set it is
projected back into.

  LatentDelta   z' = z0 + delta on the initial latent, kept a non-outlier (SAGE: steps
                of 0.05, |delta| <= 1);
  TokenRows     continuous token embeddings appended to a prompt ([x], [y], the
                universal token), steps and clamp in units of the embedding table's
                spread;
  the appended word is the discrete projection of a token row onto a language model's
  candidates (``prompt_failures.choose_words``).
"""

from __future__ import annotations

import torch

from .constraints import NonOutlier


class LatentDelta:
    """``delta`` ``(B, C, h, w)`` on latents ``z0``; each step moves every value by
    ``step``; projection: ``NonOutlier``."""

    def __init__(self, z0: torch.Tensor, step: float, bound: float, alpha: float):
        self.z0, self.step = z0, step
        self.constraint = NonOutlier(z0[0].numel(), alpha, bound)

    def init(self) -> torch.Tensor:
        return torch.zeros_like(self.z0)

    def apply(self, delta: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The latents ``z0[index] + delta``."""
        return self.z0[index.to(self.z0.device)] + delta

    def project(self, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.constraint(self.z0[index.to(self.z0.device)], rows)


class TokenRows:
    """Token embedding rows ``(B, E)`` that start at ``init`` and move in units of the
    table's spread ``std`` ``(E,)``: one signed step moves coordinate d by
    ``lr * std[d]``, and every coordinate stays within ``bound * std[d]`` of the mean
    word ``mean`` ``(E,)``.

    Why units: SAGE gives lr 0.05 and a clamp of 2.5 in the raw units of SD's CLIP table;
    raw numbers mean something different for every encoder (the toy CLIP's words are
    0.22 apart, where one raw 0.05 step moves 0.4). Read as multiples of the table's
    spread they mean the same everywhere: a step of 0.05 moves about 0.05 / sqrt(2) =
    3.5% of the typical distance between two words (std * sqrt(2E)), and a clamp of
    2.5 keeps each coordinate within 2.5 spreads of the mean word (where a normally
    spread table holds 98.8% of its values)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, lr: float, bound: float):
        self.mean, self.std = mean, std
        self.step = lr * std
        self.bound = bound

    def project(self, rows: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        mean, std = self.mean.to(rows.device), self.std.to(rows.device)
        return torch.maximum(torch.minimum(rows, mean + self.bound * std), mean - self.bound * std)
