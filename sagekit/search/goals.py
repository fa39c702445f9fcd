"""Goals: what a search minimises and when a sample counts as found (paper 000, the
robust surrogate loss). Every goal reads an ``Ensemble`` of judges; SAGE's includes an
edge-map judge, so that a texture trick against one classifier does not count."""

from __future__ import annotations

import copy

import torch

from ..models.judges import Ensemble


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

    def spec(self) -> dict:
        """The goal without its judges, as plain data: ``{"goal": class name, **its
        thresholds}`` (what a stored failure case records; :func:`goal_from_spec` inverts it)."""
        return {"goal": type(self).__name__, **{k: v for k, v in vars(self).items() if k in self.THRESHOLDS}}

    THRESHOLDS: tuple[str, ...] = ()


class UnrelatedGoal(RobustGoal):
    """A natural image of something else: the target is absent for every judge, and the
    judges agree, with mean confidence >= ``confidence``, on one other label. The loss
    adds ``-weight * max_{l != target} mean_j p_j(l)`` to pull towards a confident other label."""

    THRESHOLDS = ("confidence", "weight")

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


class DistortedGoal(RobustGoal):
    """An image of nothing: every judge misses the target and the ensemble is unsure of
    every label (max mean probability < ``low_confidence``). loss = sum_j w_j max_k
    p_j(k | image): the judges' confidence in whatever they see, target included."""

    THRESHOLDS = ("low_confidence",)

    def __init__(self, ensemble: Ensemble, low_confidence: float = 0.5):
        super().__init__(ensemble)
        self.low_confidence = low_confidence

    def loss(self, images, target):
        probs = self.ensemble.per_judge(images)
        return torch.einsum("j,jb->b", self.ensemble.weights.to(probs.device), probs.max(-1).values)

    @torch.no_grad()
    def found(self, images, target):
        unsure = (self.ensemble(images).max(-1).values < self.low_confidence).cpu()
        return super().found(images, target) & unsure


GOALS = {cls.__name__: cls for cls in (RobustGoal, UnrelatedGoal, TargetGoal, DistortedGoal)}


def goal_from_spec(spec: dict, ensemble: Ensemble) -> RobustGoal:
    """The goal a :meth:`RobustGoal.spec` describes, decided by ``ensemble``."""
    spec = dict(spec)
    name = spec.pop("goal", None)
    if name not in GOALS:
        raise ValueError(f"unknown goal {name!r}; known: {', '.join(GOALS)}")
    return GOALS[name](ensemble, **spec)
