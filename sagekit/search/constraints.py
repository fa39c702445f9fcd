"""Constraints: what keeps a found input plausible. A latent must stay a non-outlier of
N(0, I) (``certify`` tests it, ``NonOutlier`` projects onto it); a prompt's naturalness is
its perplexity under a language model (``perplexity``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

@dataclass(frozen=True)
class Certificate:
    """Is a latent a plausible draw from N(0, I)? ``norm_sq`` against chi-square with
    ``dim`` degrees of freedom (two-sided p-value); a Kolmogorov-Smirnov test of its values
    against N(0, 1); and a spatial test, which the first two cannot be: they ignore where
    each value sits, so a latent with its values sorted (the seed-shift paper's PAS) passes
    them. The spatial test takes the lag-1 autocorrelations along rows and columns of every
    channel, r_h and r_v over n_h and n_v neighbour pairs; for independent values
    n_h r_h^2 + n_v r_v^2 is chi-square with 2 degrees of freedom (``spatial_p``)."""

    dim: int
    norm_sq: float
    chi2_p: float
    ks_stat: float
    ks_p: float
    alpha: float
    spatial_p: float

    @property
    def norm_ok(self) -> bool:
        return self.chi2_p >= self.alpha

    @property
    def normal_ok(self) -> bool:
        return self.ks_p >= self.alpha

    @property
    def spatial_ok(self) -> bool:
        return self.spatial_p >= self.alpha

    @property
    def passed(self) -> bool:
        return self.norm_ok and self.normal_ok and self.spatial_ok


def spatial_p(z: np.ndarray) -> float:
    """p-value of the lag-1 autocorrelation test of a latent ``(C, h, w)`` (see
    :class:`Certificate`); 1.0 for a latent without two spatial axes."""
    if z.ndim < 3 or min(z.shape[-2:]) < 2:
        return 1.0
    var = float((z ** 2).mean())
    q = 0.0
    for pairs in (z[..., :, 1:] * z[..., :, :-1], z[..., 1:, :] * z[..., :-1, :]):  # rows, then columns
        r = float(pairs.mean()) / var
        q += pairs.size * r ** 2
    return float(stats.chi2.sf(q, 2))


def certify(z: torch.Tensor, alpha: float = 0.01) -> Certificate:
    """Certificate of one latent ``(C, h, w)`` (any other shape: no spatial test)."""
    a = z.detach().double().cpu().numpy()
    v = a.flatten()
    d = v.size
    norm_sq = float((v ** 2).sum())
    cdf = stats.chi2.cdf(norm_sq, d)
    ks = stats.kstest(v, "norm")
    return Certificate(d, norm_sq, float(2 * min(cdf, 1 - cdf)), float(ks.statistic), float(ks.pvalue), alpha,
                       spatial_p(a))


def chi2_bounds(dim: int, alpha: float = 0.01) -> tuple[float, float]:
    """The central 1 - alpha range of ||z||^2 for z ~ N(0, I_dim)."""
    return float(stats.chi2.ppf(alpha / 2, dim)), float(stats.chi2.ppf(1 - alpha / 2, dim))


def project_norm(z: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Rescale each sample of ``z`` ``(B, ...)`` so its squared norm lies in [lo, hi]."""
    sq = z.flatten(1).pow(2).sum(1).clamp_min(1e-12)
    target = sq.clamp(lo, hi)
    return z * (target / sq).sqrt().view(-1, *([1] * (z.dim() - 1)))


def project_normal(z: torch.Tensor, alpha: float, blends=(0.25, 0.5, 0.75, 1.0)) -> torch.Tensor:
    """Pull each sample of ``z`` ``(B, ...)`` whose values fail a KS test against N(0, 1)
    at level ``alpha`` towards normality; samples that pass are returned unchanged.

    The L2-nearest vector whose values are exactly the N(0, 1) quantiles is the one that
    keeps z's rank order (rearrangement inequality): q_i = Phi^-1((rank_i + 0.5) / n).
    A failing sample moves to (1 - b) z + b q for the smallest b in ``blends`` that passes,
    so it changes no more than the constraint needs."""
    out = z.clone()
    flat = z.detach().flatten(1).double().cpu().numpy()
    n = flat.shape[1]
    for i, v in enumerate(flat):
        if stats.kstest(v, "norm").pvalue >= alpha:
            continue
        q = np.empty(n)
        q[v.argsort()] = stats.norm.ppf((np.arange(n) + 0.5) / n)
        for b in blends:
            w = (1 - b) * v + b * q
            if b == blends[-1] or stats.kstest(w, "norm").pvalue >= alpha:
                out[i] = torch.from_numpy(w).view(z.shape[1:]).to(z)
                break
    return out


def _lag1(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lag-1 autocorrelation along rows and along columns of each sample ``(B, C, h, w)``: ``(B,)`` each."""
    var = z.pow(2).mean((1, 2, 3)).clamp_min(1e-12)
    r_h = (z[..., :, 1:] * z[..., :, :-1]).mean((1, 2, 3)) / var
    r_v = (z[..., 1:, :] * z[..., :-1, :]).mean((1, 2, 3)) / var
    return r_h, r_v


def project_spatial(z: torch.Tensor, alpha: float, rounds: int = 4) -> torch.Tensor:
    """Decorrelate neighbouring values of each sample of ``z`` ``(B, C, h, w)`` whose lag-1
    test (:func:`spatial_p`) rejects at level ``alpha``; samples that pass are returned
    unchanged. A field whose neighbours correlate by r along an axis is whitened along
    that axis by the first-order filter x_i - r x_(i-1) (the inverse of an AR(1) with
    coefficient r), rescaled to its former variance; a few rounds, rows and columns in
    turn, until the test passes."""
    if z.dim() != 4 or min(z.shape[-2:]) < 2:
        return z
    out = z.clone()
    for _ in range(rounds):
        bad = torch.tensor([spatial_p(x) < alpha for x in out.detach().double().cpu().numpy()], device=z.device)
        if not bad.any():
            break
        x = out[bad]
        scale = x.pow(2).mean((1, 2, 3), keepdim=True).sqrt()
        r_h, r_v = (r.view(-1, 1, 1, 1) for r in _lag1(x))
        x = torch.cat([x[..., :, :1], x[..., :, 1:] - r_h * x[..., :, :-1]], -1)
        x = torch.cat([x[..., :1, :], x[..., 1:, :] - r_v * x[..., :-1, :]], -2)
        out[bad] = x * scale / x.pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return out


class NonOutlier:
    """Keeps latents ``z0 + delta`` certifiable: neighbouring values decorrelated where the
    lag-1 test rejects them, values pulled towards N(0, 1) where a KS test does, the norm
    projected into the chi-square range, ``delta`` clamped to [-bound, bound]. The
    projection works at level ``2 * alpha``: a latent on its boundary then has p-values of
    ``2 * alpha``, clear of the certificate's ``alpha``, not on it."""

    def __init__(self, dim: int, alpha: float, bound: float):
        self.margin = min(2 * alpha, 0.5)
        self.lo, self.hi = chi2_bounds(dim, self.margin)
        self.bound = bound

    def __call__(self, z0: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The projected ``delta`` ``(B, ...)`` for latents ``z0`` ``(B, ...)``."""
        delta = delta.clamp(-self.bound, self.bound)
        z = project_norm(project_normal(project_spatial(z0 + delta, self.margin), self.margin), self.lo, self.hi)
        return (z - z0).clamp(-self.bound, self.bound)


@torch.no_grad()
def perplexity(lm, tokenizer, prompt: str) -> float:
    """exp(mean negative log-likelihood) of the prompt's tokens under a causal LM: the
    naturalness of a prompt (lower is more natural)."""
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    x = torch.tensor([ids], device=lm.device)
    logp = lm(x).logits[0, :-1].float().log_softmax(-1)
    nll = -logp.gather(1, x[0, 1:, None]).mean()
    return float(math.exp(nll.item()))
