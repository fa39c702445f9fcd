"""Found failures as self-contained cases: everything it takes to draw one again and judge it.

A case is one way a model failed that anyone can reproduce: the generator (name and
weights fingerprint), the prompt, the seeds, the sampler, steps and guidance, what the
search changed (nothing; a token embedding; an initial latent: kept as safetensors), the
goal that defines failure, the judges that decided it, the held-out verifier, and how
often each saw the failure. The SAGE studies keep their cases in the results store (the
cell is the case's identity, the metrics its outcome, the tensors beside them);
``sagekit.dataset`` exports them and draws them again.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import torch

from .models.generator import Generator

CASE = "sagekit-failure/1"  # marks a stored row as a failure case (and its schema version)


@dataclass
class FailureCase:
    """``label``: the label the goal is about (the object the prompt asks for; for a
    ``TargetGoal`` the object that should appear instead). ``seeds``: the seeds the rates
    were measured on; the case fails when the goal is met on at least ``fail_fraction`` of
    them. ``latent`` / ``embedding``: the changed initial noise ``(C, h, w)`` (one seed) or
    the appended token's embedding ``(E,)``, which ``token`` names in the prompt.
    ``verifier_sampler``: the sampler of the images the verifier judged, where it is not
    ``sampler`` (a found latent is drawn again with another sampler before it counts)."""

    study: str
    model: str
    revision: str
    prompt: str
    label: str
    seeds: list[int]
    sampler: str
    steps: int
    guidance: float
    goal: dict
    judge: str
    verifier: str
    fail_fraction: float
    judge_failure_rate: float
    verifier_failure_rate: float
    token: str | None = None
    verifier_sampler: str | None = None
    extra: dict = field(default_factory=dict)
    latent: torch.Tensor | None = None
    embedding: torch.Tensor | None = None

    @property
    def verified(self) -> bool:
        return self.verifier_failure_rate >= self.fail_fraction

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.float().cpu() for k, v in (("latent", self.latent), ("embedding", self.embedding))
                if v is not None}

    def identity(self) -> dict:
        """What determines the case (its store cell): everything but the outcome, with a
        digest of its tensors."""
        out = {k: v for k, v in asdict(self).items()
               if k not in ("judge_failure_rate", "verifier_failure_rate", "extra", "latent", "embedding")}
        h = hashlib.sha256()
        for name, t in sorted(self.tensors().items()):
            h.update(name.encode() + t.numpy().tobytes())
        out["tensors"] = h.hexdigest()[:16] if self.tensors() else None
        return out

    def outcome(self) -> dict:
        return {"case": CASE, "judge_failure_rate": self.judge_failure_rate,
                "verifier_failure_rate": self.verifier_failure_rate, "verified": self.verified, **self.extra}


def sampler_name(gen: Generator, scheduler: str | None = None) -> str:
    """The class name of the scheduler ``gen.make_scheduler(scheduler)`` would use."""
    return (gen.SCHEDULERS[scheduler] if scheduler else type(gen.scheduler)).__name__


def sampler_key(gen: Generator, name: str) -> str | None:
    """The ``make_scheduler`` argument that gives scheduler class ``name`` on ``gen``
    (None: its own); raises ``ValueError`` when the model offers no such sampler."""
    if name == type(gen.scheduler).__name__:
        return None
    for key, cls in gen.SCHEDULERS.items():
        if cls.__name__ == name:
            return key
    raise ValueError(f"{gen.name} has no sampler {name}; it offers {type(gen.scheduler).__name__} and "
                     f"{', '.join(c.__name__ for c in gen.SCHEDULERS.values())}")


def settings(gen: Generator, guidance: float | None, steps: int | None, scheduler: str | None = None) -> dict:
    """The sampling settings of a case as numbers (a study's None means the model default)."""
    return {"sampler": sampler_name(gen, scheduler), "steps": gen.steps_of(steps),
            "guidance": gen.guidance_of(guidance),
            "revision": getattr(gen, "revision", "")}


def keep(store, cases: list[FailureCase], images: torch.Tensor | None) -> list[str]:
    """Store the cases (one image each, ``(N, 3, H, W)`` in [0, 1]); returns their keys.
    Tensors are written before the rows, so a stored row never lacks its file."""
    from .store import cell_key

    for case in cases:
        if case.tensors():
            store.put_tensors(cell_key(case.identity()), case.tensors())
    if not cases:
        return []
    out = []
    for study in dict.fromkeys(c.study for c in cases):  # put_batch stores one study at a time
        idx = [i for i, c in enumerate(cases) if c.study == study]
        out += store.put_batch(study, [cases[i].identity() for i in idx], [cases[i].outcome() for i in idx],
                               None if images is None else images[idx])
    return out


@torch.no_grad()
def draw(gen: Generator, prompt: str, seeds: list[int], sampler: str, steps: int, guidance: float,
         token: str | None = None, tensors: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The images of a case drawn again, ``(len(seeds), 3, H, W)`` in [0, 1] on the CPU:
    the seeds' initial noise (or the case's latent), the prompt (with the case's token
    embedding in place of ``token``), the case's sampler, steps and guidance."""
    tensors = tensors or {}
    m = len(seeds)
    if "embedding" in tensors:
        gen.add_tokens([token])
        emb = gen.embed_prompts([prompt] * m, {token: tensors["embedding"].to(gen.device).expand(m, -1)})
    else:
        emb = gen.encode_prompts([prompt] * m)
    z = tensors["latent"].expand(m, -1, -1, -1) if "latent" in tensors else gen.initial_noise(seeds)
    lat = gen.denoise(z.to(gen.device), emb, guidance, steps, sampler_key(gen, sampler), seeds=list(seeds))
    return gen.decode(lat).float().cpu()
