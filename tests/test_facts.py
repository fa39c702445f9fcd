"""A toy prompt read back into facts (objects, count, relation, position, place), and
the toy judges checking each fact on procedural scenes."""

import numpy as np
import pytest
import torch

from sagekit.models.registry import load_judge
from sagekit.toy.attributes import RELATIONS, attribute_targets
from sagekit.models.facts import check, failed
from sagekit.toy.facts import CATEGORIES, FACT_JUDGES, facts
from sagekit.toy.grammar import CaptionNoise, describe
from sagekit.toy.scenes import BACKGROUNDS, COUNTS, LABELS, POSITIONS, render
from sagekit.toy.world import WorldConfig, sample_scene


def truth(scene) -> dict[str, set[str]]:
    """What each fact judge should say of ``scene``, from the judges' own training targets."""
    t = attribute_targets([scene])
    return {"toy-ensemble": {LABELS[x.label] for x in scene.things}, "toy-count": {COUNTS[int(t["count"][0])]},
            "toy-background": {list(BACKGROUNDS)[scene.background]},
            "toy-position": {POSITIONS[int(t["position"][0])]} if t["position"][0] >= 0 else set(),
            "toy-relation": {RELATIONS[int(t["relation"][0])]} if t["relation"][0] >= 0 else set()}


def test_every_fact_of_a_true_caption_holds_of_its_scene():
    rng, cfg = np.random.default_rng(0), WorldConfig()
    seen = set()
    for _ in range(2000):
        scene = sample_scene(rng, cfg)
        caption = describe(scene, rng)
        for f in facts(caption):
            assert set(f.holds) & truth(scene)[f.judge], (caption, f)
            seen.add(f.category)
    assert seen == set(FACT_JUDGES)  # every kind of fact is read from the grammar's captions


def test_a_wrong_caption_states_a_fact_its_scene_breaks():
    """Captions worded wrong on purpose (the world's caption noise): the fact the noise
    broke is false of the scene, by its category."""
    broken = {"wrong_relation": "relation", "wrong_count": "count", "wrong_shape": "object"}
    for noise, category in broken.items():
        rng, cfg, false = np.random.default_rng(1), WorldConfig(), 0
        kind = {"wrong_relation": "two", "wrong_count": "many", "wrong_shape": "one"}[noise]
        for _ in range(200):
            scene = sample_scene(rng, cfg, kind=kind)
            caption = describe(scene, rng, noise=CaptionNoise(**{noise: 1.0}))
            false += any(f.category == category and not set(f.holds) & truth(scene)[f.judge]
                         for f in facts(caption))
        assert false >= 100, (noise, false)  # "next to" and synonyms aside, most are caught


@pytest.mark.parametrize("prompt, expected", [
    ("a red circle left of a blue star", [("object", ("red circle",)), ("object", ("blue star",)),
                                          ("relation", ("red circle on the left",))]),
    ("a blue star right of a red circle on the grass",
     [("object", ("blue star",)), ("object", ("red circle",)), ("relation", ("red circle on the left",)),
      ("background", ("grass",))]),
    ("a green heart below a star in yellow", [("object", ("green heart",)), ("object", ("yellow star",)),
                                              ("relation", ("yellow star on top",))]),
    ("three teal squares at night", [("object", ("cyan square",)), ("count", ("three",)), ("background", ("night",))]),
    ("a photo of a big magenta cross in the left", [("object", ("magenta cross",)), ("position", ("left",))]),
    ("a red circle plus a blue star", [("object", ("red circle",)), ("object", ("blue star",))]),
    ("a photo of a dog", []),
])
def test_facts_of_a_prompt(prompt, expected):
    assert [(f.category, f.holds) for f in facts(prompt)] == expected


@pytest.fixture(scope="module")
def fact_judges():
    return {name: load_judge(name) for name in dict.fromkeys(FACT_JUDGES.values())}


def test_the_toy_judges_check_the_facts_of_drawn_scenes(fact_judges):
    """Procedural scenes with their true captions: (nearly) every fact holds; the same
    scenes with another colour word: the object fact fails, as a colour failure."""
    rng, cfg = np.random.default_rng(2), WorldConfig()
    scenes = [sample_scene(rng, cfg, kind="one") for _ in range(24)]
    images = torch.tensor(np.stack([render(s) for s in scenes])).permute(0, 3, 1, 2).float() / 255
    held = recoloured = 0
    for scene, image in zip(scenes, images):
        label = LABELS[scene.things[0].label]
        readings = check(fact_judges, image[None], facts(f"a photo of a {label}"))[0]
        held += all(r.held for r in readings)
        colour, shape = label.split()
        other = next(c for c in ("red", "blue") if c != colour)
        recoloured += failed(check(fact_judges, image[None], facts(f"a photo of a {other} {shape}"))[0]) == ["colour"]
    assert held >= 22 and recoloured >= 20
    assert set(CATEGORIES) >= {"colour", *FACT_JUDGES}
