"""SAGE's search parts (paper 000), written once and composed by four studies.

Following TextAttack's decomposition:
  goal            what to minimise and when a sample counts as found (``RobustGoal``,
                  ``UnrelatedGoal``, ``TargetGoal``), over an ensemble of judges that
                  includes an edge-map judge, so texture tricks against one classifier
                  do not count;
  constraints     the non-outlier certificate of a latent (``certify``), naturalness of
                  a prompt (LM perplexity, in the prompt studies);
  transformation  latent delta, appended token embedding, appended word;
  search          signed-gradient steps with projection (``signed_step``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from ..models.judges import Ensemble


# ---------------------------------------------------------------------------- goals
class RobustGoal:
    """Make the target disappear. loss = sum_j w_j p_j(target | image), per sample ``(B,)``;
    found when *every* judge's top-1 is another label."""

    def __init__(self, ensemble: Ensemble):
        self.ensemble = ensemble

    def loss(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = self.ensemble.per_judge(images)  # (J, B, K)
        p_t = probs.gather(-1, target.to(probs.device).view(1, -1, 1).expand(probs.shape[0], -1, 1))[..., 0]
        return torch.einsum("j,jb->b", self.ensemble.weights.to(probs.device), p_t)

    @torch.no_grad()
    def found(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ensemble.absent(images, target).cpu()

    def judged_by(self, ensemble: Ensemble) -> "RobustGoal":
        """The same goal, with the same rule, decided by other judges (a held-out verifier)."""
        other = copy.copy(self)
        other.ensemble = ensemble
        return other


class UnrelatedGoal(RobustGoal):
    """A natural image of something else: the target is absent for every judge, and the
    judges agree, with mean confidence >= ``confidence``, on one other label. The loss
    adds ``-weight * max_{l != target} mean_j p_j(l)`` to pull towards a confident other label."""

    def __init__(self, ensemble: Ensemble, confidence: float = 0.5, weight: float = 1.0):
        super().__init__(ensemble)
        self.confidence, self.weight = confidence, weight

    def _other(self, images, target):
        probs = self.ensemble.per_judge(images)
        mean = torch.einsum("j,jbk->bk", self.ensemble.weights.to(probs.device), probs)
        mean = mean.scatter(-1, target.to(mean.device).view(-1, 1), -1.0)  # exclude the target
        return probs, mean.max(-1)

    def loss(self, images, target):
        _, (best, _) = self._other(images, target)
        return super().loss(images, target) - self.weight * best

    @torch.no_grad()
    def found(self, images, target):
        probs, (best, other) = self._other(images, target)
        agree = (probs.argmax(-1) == other.view(1, -1)).all(0)
        return (super().found(images, target) & agree.cpu() & (best >= self.confidence).cpu())


class TargetGoal(RobustGoal):
    """Make a chosen label appear: loss = -sum_j w_j p_j(target); found when every judge's
    top-1 is the target."""

    def loss(self, images, target):
        return -super().loss(images, target)

    @torch.no_grad()
    def found(self, images, target):
        probs = self.ensemble.per_judge(images)
        return (probs.argmax(-1) == target.to(probs.device).view(1, -1)).all(0).cpu()


# ---------------------------------------------------------------------------- constraints
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


# ---------------------------------------------------------------------------- search
def signed_step(x: torch.Tensor, grad: torch.Tensor, lr: float, bound: float,
                active: torch.Tensor | None = None) -> torch.Tensor:
    """One signed-gradient descent step, clamped to [-bound, bound]; samples where
    ``active`` (``(B,)`` bool) is False stay where they are."""
    step = lr * grad.sign()
    if active is not None:
        step = step * active.to(step.device, step.dtype).view(-1, *([1] * (x.dim() - 1)))
    return (x - step).clamp(-bound, bound)


def summary_stats(values) -> dict:
    """Mean, median and count of a list of numbers (NaN-safe)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    return {"mean": float(arr.mean()) if arr.size else float("nan"),
            "median": float(np.median(arr)) if arr.size else float("nan"), "n": int(arr.size)}
