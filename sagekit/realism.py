"""How real does an image look, next to the model's own clean images?

The reference is a set of images the model drew from ordinary N(0, I) latents. Each image
gets a *realism score* (higher: more real), and its *realism* is the share of reference
images that score no higher: about uniform on [0, 1] for images like the reference, near
0 for an image less real than all of them (distorted). Two scores:

- ``from_embedding``: minus the Mahalanobis distance of a CLIP image embedding to the
  reference's mean and (shrunk) covariance; needs no judge of anything.
- ``from_judge``: the log-odds of "real" of a realism judge (a classifier with labels
  ``("real", "corrupted")``, such as the toy world's ``toy-realism``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

REALISM_LABELS = ("real", "corrupted")


@dataclass
class RealismReference:
    """``score``: images ``(B, 3, H, W)`` in [0, 1] -> ``(B,)``, higher is more real;
    ``reference``: the scores of the reference images ``(N,)``."""

    score: Callable[[torch.Tensor], torch.Tensor]
    reference: torch.Tensor

    @classmethod
    @torch.no_grad()
    def from_embedding(cls, embed, images: torch.Tensor, shrink: float = 0.1) -> "RealismReference":
        """From clean images ``(N, 3, H, W)`` in [0, 1] and an embedding ``images -> (B, D)``;
        the covariance is shrunk towards its mean variance by ``shrink`` (few images, many
        dimensions)."""
        f = embed(images).double().cpu()
        mean = f.mean(0)
        x = f - mean
        cov = x.T @ x / max(len(f) - 1, 1)
        target = torch.eye(len(mean), dtype=cov.dtype) * cov.diagonal().mean()
        precision = torch.linalg.inv((1 - shrink) * cov + shrink * target)

        def score(batch: torch.Tensor) -> torch.Tensor:
            d = embed(batch).double().cpu() - mean
            return -torch.einsum("bi,ij,bj->b", d, precision, d).clamp_min(0).sqrt()

        return cls(score, score(images))

    @classmethod
    @torch.no_grad()
    def from_judge(cls, judge, images: torch.Tensor) -> "RealismReference":
        """From clean images and a realism judge whose labels are :data:`REALISM_LABELS`."""
        if tuple(judge.labels) != REALISM_LABELS:
            raise ValueError(f"a realism judge has the labels {REALISM_LABELS}; {judge.name!r} has "
                             f"{tuple(judge.labels)[:4]}")

        def score(batch: torch.Tensor) -> torch.Tensor:
            logits = judge.logits(batch).double().cpu()
            return logits[:, 0] - logits[:, 1]

        return cls(score, score(images))

    @torch.no_grad()
    def realism(self, images: torch.Tensor) -> torch.Tensor:
        """Share ``(B,)`` in [0, 1] of reference images that score no higher."""
        s = self.score(images).double().cpu()
        return (self.reference[None, :] <= s[:, None]).double().mean(1)
