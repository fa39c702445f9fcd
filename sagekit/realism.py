"""How far an image is from the model's own clean images: a realism score that needs no
judge of the labels.

The reference is a set of images the model drew from ordinary N(0, I) latents. Each image
is embedded by a CLIP image tower; the reference's embeddings give a mean and a (shrunk)
covariance, and an image's distance is its Mahalanobis distance to them. The realism of
an image is the share of reference images at least as far away: about uniform on [0, 1]
for images like the reference, near 0 for an image unlike all of them (distorted).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RealismReference:
    """``mean`` ``(D,)``, ``precision`` ``(D, D)`` and the reference's own distances ``(N,)``."""

    embed: object            # images (B, 3, H, W) in [0, 1] -> (B, D)
    mean: torch.Tensor
    precision: torch.Tensor
    reference: torch.Tensor

    @classmethod
    @torch.no_grad()
    def fit(cls, embed, images: torch.Tensor, shrink: float = 0.1) -> "RealismReference":
        """From clean images ``(N, 3, H, W)`` in [0, 1]; the covariance is shrunk towards
        its mean variance by ``shrink`` (few images, many dimensions)."""
        f = embed(images).double().cpu()
        mean = f.mean(0)
        x = f - mean
        cov = x.T @ x / max(len(f) - 1, 1)
        target = torch.eye(len(mean), dtype=cov.dtype) * cov.diagonal().mean()
        precision = torch.linalg.inv((1 - shrink) * cov + shrink * target)
        ref = cls(embed, mean, precision, torch.empty(0))
        ref.reference = ref.distance_of(f)
        return ref

    def distance_of(self, features: torch.Tensor) -> torch.Tensor:
        x = features.double().cpu() - self.mean
        return torch.einsum("bi,ij,bj->b", x, self.precision, x).clamp_min(0).sqrt()

    @torch.no_grad()
    def distance(self, images: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance ``(B,)`` of images ``(B, 3, H, W)`` in [0, 1]."""
        return self.distance_of(self.embed(images))

    @torch.no_grad()
    def realism(self, images: torch.Tensor) -> torch.Tensor:
        """Share ``(B,)`` in [0, 1] of reference images at least as far from the mean."""
        d = self.distance(images)
        return (self.reference[None, :] >= d[:, None]).double().mean(1)
