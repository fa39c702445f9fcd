"""The toy world's model names, registered with ``sagekit.models.catalog`` (imported by
``sagekit/__init__.py``, so every name is known as soon as sagekit is): four generators,
the object and attribute judges and their ensemble, the toy CLIP and the caption LM, all
read from :data:`TOY_DIR` (``sagekit toy train`` writes it)."""

from __future__ import annotations

import json
from pathlib import Path

from ..models import catalog

WORLD = "toy"
TOY_DIR = Path(__file__).resolve().parent / "weights"
HINT = "run `sagekit toy train` to rebuild them"

# Generator name -> the UNet folder it draws with.
TOY_GENERATORS = {"toy": "toy", "toy-ddpm": "toy", "toy-latent-learned": "toy-latent-learned", "toy-pixel": "toy-pixel"}
# Sampling defaults per toy model (steps, guidance), measured to be good in `sagekit toy eval`.
# `toy` reads the words (world 3) and needs DPM-Solver++ 20 steps and guidance 7.5 to draw them
# right (shipped weights: 0.945 of 384; a first run of the recipe: 0.91, against 0.80 at world 2's
# 10 steps and guidance 5; architectures.sample_scheduler).
TOY_SAMPLING = {"toy": (20, 7.5), "toy-ddpm": (15, 5.0), "toy-latent-learned": (15, 5.0), "toy-pixel": (15, 7.0)}
# A toy model drawn with another sampler than it ships with: name -> (scheduler name, config changes).
# `toy-ddpm` is `toy` with the sampler, steps and guidance of `toy-latent-learned` (DDPM ancestral,
# 15 steps, guidance 5) and a fixed variance: the two differ only in the variance (paper 001's claim).
TOY_SAMPLERS = {"toy-ddpm": ("ddpm", {"variance_type": "fixed_small"})}
# Object judges ("{colour} {shape}"), then the attribute judges of toy world 2 and its realism
# judge (labels "real", "corrupted"); their ensemble and the CLIP verifier.
OBJECT_JUDGES = ("toy-resnet", "toy-mobilenet", "toy-edge")
TOY_ATTRIBUTE_JUDGES = ("toy-count", "toy-background", "toy-position", "toy-relation", "toy-realism")
TOY_JUDGES = OBJECT_JUDGES + ("toy-clip", "toy-ensemble") + TOY_ATTRIBUTE_JUDGES


def _labels(judge: str):
    def labels() -> tuple[str, ...]:
        from .attributes import JUDGE_LABELS

        return tuple(JUDGE_LABELS.get(judge.removeprefix("toy-"), JUDGE_LABELS["resnet"]))

    return labels


def training_recipe(name: str) -> dict | None:
    """How a toy model's UNet was trained: its ``TrainConfig.unets`` entry in the shipped
    ``training.json`` (``toy-ddpm`` shares ``toy``'s); None for any other model (a real
    checkpoint's recipe is not known here) or a log without recipes."""
    part = TOY_GENERATORS.get(name)
    log = TOY_DIR / "training.json"
    if part is None or not log.exists():
        return None
    return json.loads(log.read_text()).get("config", {}).get("unets", {}).get(part)


for _name, _folder in TOY_GENERATORS.items():
    catalog.register_generator(_name, catalog.NamedGenerator(TOY_DIR / _folder, WORLD, *TOY_SAMPLING[_name],
                                                             sampler=TOY_SAMPLERS.get(_name), hint=HINT))
for _name in OBJECT_JUDGES + TOY_ATTRIBUTE_JUDGES:
    catalog.register_judge(_name, catalog.NamedJudge(_labels(_name), folder=TOY_DIR / "judges" / _name[4:], hint=HINT))
catalog.register_judge("toy-ensemble", catalog.NamedJudge(_labels("toy-ensemble"), members=OBJECT_JUDGES))
catalog.register_judge("toy-clip", catalog.NamedJudge(_labels("toy-clip"), clip="toy-clip"))
catalog.register_clip("toy-clip", catalog.NamedFolder(TOY_DIR / "clip", HINT))
catalog.register_lm("toy", catalog.NamedFolder(TOY_DIR / "caption-lm", HINT))
