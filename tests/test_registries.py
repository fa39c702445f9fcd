"""Every registered name and judge kind, tested by walking the registries (as timm's tests
walk its model registry): a name or kind registered without a test case here fails."""

import re

import pytest
import torch

from sagekit.models import catalog
from sagekit.models.judge_spec import parse_judge
from sagekit.models.registry import load_caption_lm, load_clip_scorer, load_generator, load_judge
from sagekit.testing import (save_random_timm_judge, save_tiny_blip_vqa, save_tiny_hf_classifier,
                             save_tiny_open_clip_folder)

FINGERPRINT = re.compile(r"^[0-9a-f]{12}$")
LABELS = ["red circle", "blue square", "green heart"]


def _timm(folder, seed):
    return f"timm:{save_random_timm_judge(folder, LABELS, seed=seed)}"


def _hf(folder, seed):
    return f"hf:{save_tiny_hf_classifier(folder, LABELS, seed=seed)}"


def _open_clip(folder, seed):
    return f"open_clip:ViT-S-32-alt:{save_tiny_open_clip_folder(folder, seed=seed) / 'open_clip_model.safetensors'}"


def _vqa(folder, seed):
    return f"vqa:{save_tiny_blip_vqa(folder, seed=seed)}"


# judge kind -> a spec of that kind on a tiny random-weight folder built with ``seed``
KIND_SPECS = {"timm": _timm, "hf": _hf, "open_clip": _open_clip, "vqa": _vqa}


def test_every_judge_kind_has_a_test_case():
    assert set(KIND_SPECS) == set(catalog.JUDGE_KINDS) - {"named"}  # "named": every registered judge, below


def _check_judge(spec: str):
    judge = load_judge(spec)
    images = torch.rand(2, 3, 40, 40, requires_grad=True)
    probs = judge(images)
    assert probs.shape == (2, len(judge.labels)) and torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    probs[:, 0].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # a search can learn through it
    known = parse_judge(spec).labels()
    assert known is None or tuple(known) == judge.labels  # labels read from files are the loaded ones
    assert FINGERPRINT.match(judge.revision)
    return judge


@pytest.mark.parametrize("kind", sorted(KIND_SPECS))
def test_each_judge_kind_loads_judges_and_tells_retrained_weights_apart(kind, tmp_path):
    first = _check_judge(KIND_SPECS[kind](tmp_path / "a", 0))
    again = _check_judge(KIND_SPECS[kind](tmp_path / "a", 0))
    other = _check_judge(KIND_SPECS[kind](tmp_path / "b", 1))
    assert first.revision == again.revision != other.revision


@pytest.mark.parametrize("name", sorted(catalog.JUDGES))
def test_each_registered_judge_loads(name):
    judge = _check_judge(name)
    assert judge.labels == tuple(catalog.JUDGES[name].labels())


@pytest.mark.parametrize("name", sorted(catalog.GENERATORS))
def test_each_registered_generator_draws_images(name):
    entry = catalog.GENERATORS[name]
    gen = load_generator(name)
    assert FINGERPRINT.match(gen.revision)
    # the registered sampling defaults are the ones a study's None takes
    assert entry.steps is None or gen.steps_of(None) == entry.steps
    assert entry.guidance is None or gen.guidance_of(None) == entry.guidance
    assert entry.sampler is None or isinstance(gen.scheduler, gen.SCHEDULERS[entry.sampler[0]])
    images = gen.decode(gen.denoise(gen.initial_noise([0, 1]), gen.encode_prompts(["a photo of a red star"] * 2),
                                    gen.guidance_of(None), 2, seeds=[0, 1]))
    assert images.shape[:2] == (2, 3) and 0 <= images.min() and images.max() <= 1
    assert not torch.equal(images[0], images[1])  # two seeds, two images


@pytest.mark.parametrize("name", sorted(catalog.CLIPS))
def test_each_registered_clip_model_scores(name):
    clip = load_clip_scorer(name)
    scores = clip(torch.rand(2, 3, 32, 32), ["a photo of a red star", "a photo of a blue circle"])
    assert scores.shape == (2,) and ((0 <= scores) & (scores <= 100)).all() and FINGERPRINT.match(clip.revision)


@pytest.mark.parametrize("name", sorted(catalog.LMS))
def test_each_registered_language_model_loads(name):
    lm, tok = load_caption_lm(name)
    ids = tok("a photo of a", return_tensors="pt").input_ids
    assert lm(ids).logits.shape[:2] == ids.shape and FINGERPRINT.match(lm.revision)
