"""A prompt-level goal: make any fact a prompt states fail (TIFA / DSG's reading of a
prompt, as a search objective).

Where :class:`~sagekit.search.goals.RobustGoal` asks one classifier ensemble about one
label, :class:`FactsGoal` asks, per target prompt, every :class:`~sagekit.models.facts.Fact`
it states of the judge that reads it: a label fact holds with the judge's probability of
its labels, a question fact with a VLM's P("yes"). The loss is the mean of those
probabilities over the prompt's facts (push them all down); a sample is found when
:func:`~sagekit.models.facts.check` reads at least one fact as failed. It answers to the
search's interface (``loss``, ``found``, ``judged_by``, ``spec`` and an ``ensemble`` that
names the targets), so SAGE's prompt search runs on it unchanged.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..models.facts import Fact, check


class FactJudges:
    """The judges of a :class:`FactsGoal`, seen as the search sees an ensemble: a ``name``
    (the judge spec, e.g. ``"toy-facts"``), one "label" per target prompt, a device, and
    the judges' ``revision`` (for checkpoint keys)."""

    def __init__(self, name: str, judges: Mapping[str, torch.nn.Module], prompts: Sequence[str],
                 facts: Sequence[Sequence[Fact]] = ()):
        import hashlib
        import json

        self.name, self.judges, self.labels = name, dict(judges), tuple(prompts)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("each target prompt of a FactsGoal must be given once")
        first = next(iter(self.judges.values()))
        self.weights = torch.ones(1, device=_device(first))  # where the judges' inputs go
        # the judges' weights and what they are asked: a search resumed under other facts or templates is another
        asked = hashlib.sha256(json.dumps([[repr(f) for f in fs] for fs in facts]).encode()).hexdigest()[:12]
        self.revision = "+".join(getattr(j, "revision", "") for _, j in sorted(self.judges.items())) + f"@{asked}"

    def label_index(self, prompt: str) -> int:
        try:
            return self.labels.index(prompt)
        except ValueError:
            raise KeyError(f"{prompt!r} is not a prompt of this goal") from None


def _device(judge) -> torch.device:
    return judge.device if hasattr(judge, "device") else next(judge.parameters()).device


class FactsGoal:
    """Make a fact of the prompt fail. ``facts[i]``: the facts of target prompt ``i``
    (``prompts[i]``); ``judges``: spec -> loaded judge for every judge they name."""

    def __init__(self, name: str, judges: Mapping[str, torch.nn.Module], prompts: Sequence[str],
                 facts: Sequence[Sequence[Fact]]):
        if len(prompts) != len(facts):
            raise ValueError(f"{len(prompts)} prompts but {len(facts)} lists of facts")
        missing = sorted({f.judge for fs in facts for f in fs} - set(judges))
        if missing:
            raise KeyError(f"these facts need the judges {', '.join(missing)}")
        self.ensemble = FactJudges(name, judges, prompts, facts)
        self.facts = [list(fs) for fs in facts]

    def p_holds(self, images: torch.Tensor, fact: Fact) -> torch.Tensor:
        """``(B,)`` the probability that ``fact`` holds in each image, differentiable: P("yes")
        of its question, or its judge's probability of its labels (summed)."""
        judge = self.ensemble.judges[fact.judge]
        x = images.to(_device(judge))
        if fact.question:
            return judge.yes(x, [fact.question] * len(x)).float()
        probs = judge(x)
        return probs[:, [judge.label_index(l) for l in fact.holds]].sum(-1).float()

    def loss(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B,)``: the mean P(holds) of sample b's target prompt's facts (lower: a fact nearer failing)."""
        target = target.cpu()
        out = torch.zeros(len(images), device=images.device)
        for t in target.unique().tolist():
            rows = (target == t).nonzero()[:, 0].to(images.device)
            held = torch.stack([self.p_holds(images[rows], f).to(images.device) for f in self.facts[t]])
            out = out.index_put((rows,), held.mean(0))
        return out

    @torch.no_grad()
    def found(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: a fact of the target prompt fails in the image."""
        return torch.tensor([not all(r.held for r in self.readings(images[i:i + 1], int(t))[0])
                             for i, t in enumerate(target.tolist())])

    @torch.no_grad()
    def readings(self, images: torch.Tensor, target: int):
        """:func:`~sagekit.models.facts.check` of target prompt ``target``'s facts in ``images``."""
        return check(self.ensemble.judges, images, self.facts[target])

    def judged_by(self, other: "FactsGoal") -> "FactsGoal":
        """The same prompts read by another reader (a held-out verifier's :class:`FactsGoal`)."""
        if other.ensemble.labels != self.ensemble.labels:
            raise ValueError("a verifier's FactsGoal must be built for the same prompts")
        return other

    def spec(self) -> dict:
        """Plain data: the goal and each prompt's facts (what a kept case records)."""
        from ..audit import goal_of

        return {"goal": "FactsGoal", "judge": self.ensemble.name,
                "prompts": {p: goal_of(fs)["facts"] for p, fs in zip(self.ensemble.labels, self.facts)}}
