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
        thresholds}``, and ``"empty"``: the name of its empty-scene judge if it has one
        and ``"realism"``: its realism judge's (what a stored failure case records;
        :func:`goal_from_spec` inverts it)."""
        out = {"goal": type(self).__name__, **{k: v for k, v in vars(self).items() if k in self.THRESHOLDS}}
        for role in ("empty", "realism"):
            if getattr(self, role, None) is not None:
                out[role] = getattr(self, role).name
        return out

    THRESHOLDS: tuple[str, ...] = ()


EMPTY_LABEL = "none"


def _empty_judge(judge):
    """Check an empty-scene judge: one with a label :data:`EMPTY_LABEL` (the toy world's
    ``toy-count``, whose labels are none/one/two/three). None passes through."""
    if judge is not None and EMPTY_LABEL not in judge.labels:
        raise ValueError(f"an empty-scene judge needs a label {EMPTY_LABEL!r}; {judge.name!r} has "
                         f"{', '.join(judge.labels[:5])}")
    return judge


def _p_empty(judge, images: torch.Tensor) -> torch.Tensor:
    """Probability ``(B,)`` that the scene holds nothing, by an empty-scene judge."""
    return judge(images)[:, judge.label_index(EMPTY_LABEL)]


def _realism_judge(judge):
    """Check a realism judge: labels ("real", "corrupted"), as ``toy-realism``. None passes."""
    from ..realism import REALISM_LABELS

    if judge is not None and tuple(judge.labels) != REALISM_LABELS:
        raise ValueError(f"a realism judge has the labels {REALISM_LABELS}; {judge.name!r} has "
                         f"{', '.join(judge.labels[:4])}")
    return judge


def _p_real(judge, images: torch.Tensor) -> torch.Tensor:
    """Probability ``(B,)`` that an image is a clean one, by a realism judge."""
    return judge(images)[:, judge.label_index("real")]


class UnrelatedGoal(RobustGoal):
    """A natural image of something else: the target is absent for every judge, and the
    judges agree, with mean confidence >= ``confidence``, on one other label. The loss
    adds ``-weight * max_{l != target} mean_j p_j(l)`` to pull towards a confident other label.

    With an ``empty`` judge (one that can say "none", e.g. ``toy-count``), a scene of
    nothing at all is something else too: found also when that judge says "none" with
    probability >= ``confidence``, and the pull is towards whichever of the two is nearer.

    With a ``realism`` judge (labels real/corrupted, e.g. ``toy-realism``) the image must
    also look natural: the loss adds ``-weight * p_real`` and a sample is found only when
    ``p_real >= confidence`` (a damaged image of something else is no unrelated image)."""

    THRESHOLDS = ("confidence", "weight")

    def __init__(self, ensemble: Ensemble, confidence: float = 0.5, weight: float = 1.0, empty=None, realism=None):
        super().__init__(ensemble)
        self.confidence, self.weight = confidence, weight
        self.empty = _empty_judge(empty)
        self.realism = _realism_judge(realism)

    def _other(self, images, target):
        probs = self.ensemble.per_judge(images)
        mean = torch.einsum("j,jbk->bk", self.ensemble.weights.to(probs.device), probs)
        mean = mean.scatter(-1, target.to(mean.device).view(-1, 1), -1.0)  # exclude the target
        return probs, mean.max(-1)

    def loss(self, images, target):
        _, (best, _) = self._other(images, target)
        if self.empty is not None:
            best = torch.maximum(best, _p_empty(self.empty, images).to(best.device))
        if self.realism is not None:
            best = best + _p_real(self.realism, images).to(best.device)
        return super().loss(images, target) - self.weight * best

    @torch.no_grad()
    def found(self, images, target):
        probs, (best, other) = self._other(images, target)
        agree = (probs.argmax(-1) == other.view(1, -1)).all(0)
        elsewhere = (agree & (best >= self.confidence)).cpu()
        if self.empty is not None:
            elsewhere |= (_p_empty(self.empty, images) >= self.confidence).cpu()
        if self.realism is not None:
            elsewhere &= (_p_real(self.realism, images) >= self.confidence).cpu()
        return super().found(images, target) & elsewhere


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
    """An image of nothing recognisable: every judge misses the target and the ensemble is
    unsure of every label (max mean probability < ``low_confidence``). loss = sum_j w_j
    max_k p_j(k | image): the judges' confidence in whatever they see, target included.

    With an ``empty`` judge (one that can say "none", e.g. ``toy-count``), a clean empty
    scene does not count: it is an image of something (a place), not a distorted one. Its
    "none" probability joins the loss and must stay below ``low_confidence``.

    With a ``realism`` judge (labels real/corrupted, e.g. ``toy-realism``) the image must
    look damaged too: its "real" probability joins the loss and must stay below
    ``low_confidence`` (SAGE's distorted images are ones no judge can read, people included)."""

    THRESHOLDS = ("low_confidence",)

    def __init__(self, ensemble: Ensemble, low_confidence: float = 0.5, empty=None, realism=None):
        super().__init__(ensemble)
        self.low_confidence = low_confidence
        self.empty = _empty_judge(empty)
        self.realism = _realism_judge(realism)

    def loss(self, images, target):
        probs = self.ensemble.per_judge(images)
        loss = torch.einsum("j,jb->b", self.ensemble.weights.to(probs.device), probs.max(-1).values)
        if self.empty is not None:
            loss = loss + _p_empty(self.empty, images).to(loss.device)
        if self.realism is not None:
            loss = loss + _p_real(self.realism, images).to(loss.device)
        return loss

    @torch.no_grad()
    def found(self, images, target):
        unsure = (self.ensemble(images).max(-1).values < self.low_confidence).cpu()
        if self.empty is not None:
            unsure &= (_p_empty(self.empty, images) < self.low_confidence).cpu()
        if self.realism is not None:
            unsure &= (_p_real(self.realism, images) < self.low_confidence).cpu()
        return super().found(images, target) & unsure


GOALS = {cls.__name__: cls for cls in (RobustGoal, UnrelatedGoal, TargetGoal, DistortedGoal)}


def goal_from_spec(spec: dict, ensemble: Ensemble, load_judge=None) -> RobustGoal:
    """The goal a :meth:`RobustGoal.spec` describes, decided by ``ensemble``; an empty-scene
    or realism judge it names is loaded with ``load_judge(name)``."""
    spec = dict(spec)
    name = spec.pop("goal", None)
    if name not in GOALS:
        raise ValueError(f"unknown goal {name!r}; known: {', '.join(GOALS)}")
    for role in ("empty", "realism"):
        if role in spec:
            if load_judge is None:
                raise ValueError(f"the goal names a judge ({spec[role]!r}): pass load_judge")
            spec[role] = load_judge(spec[role])
    return GOALS[name](ensemble, **spec)
