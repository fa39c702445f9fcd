"""Failure categories come from the attribute judges and the prompt's parse; training
counts are looked up in the very data the generators learned from."""

import torch

from sagekit.models.registry import load_judge
from sagekit.toy.attributes import corrupt
from sagekit.toy.explain import CATEGORIES, Facts, categorize, facts_of, training_counts
from sagekit.toy.scenes import BACKGROUNDS, LABELS, SHAPES, Scene, Thing, render
from sagekit.toy.world import WorldConfig, draw_scenes, make_dataset


def test_prompts_parse_into_facts():
    assert facts_of("a photo of a red circle") == Facts(("red circle",), None, None)
    assert facts_of("a crimson disc left of a blue star") == Facts(("red circle", "blue star"), None,
                                                                 "red circle on the left")
    assert facts_of("a red circle right of a blue star").relation == "blue star on the left"
    assert facts_of("a star in teal below a red box").relation == "red square on top"
    assert facts_of("a photo of three green hearts at night") == Facts(("green heart",), 3, None)
    assert facts_of("a red circle next to a blue star").relation is None


def _image(scene: Scene) -> torch.Tensor:
    return torch.from_numpy(render(scene).copy()).permute(2, 0, 1).float()[None] / 255


def test_each_category_is_what_the_judges_see():
    judges = {"object": load_judge("toy-ensemble"), "count": load_judge("toy-count"),
              "relation": load_judge("toy-relation"), "realism": load_judge("toy-realism")}
    red_circle = LABELS.index("red circle")

    def one(label, cx=0.5):
        return Scene(0, (Thing(label % len(SHAPES), label // len(SHAPES), "big", cx, 0.5, 0.26),), "one")

    pair = Scene(0, (Thing(0, 0, "small", 0.27, 0.5, 0.14), Thing(3, 2, "small", 0.73, 0.5, 0.14)), "two",
                 "horizontal")  # red circle left of a blue star
    images = torch.cat([_image(one(red_circle)), _image(one(LABELS.index("green circle"))),
                        _image(one(LABELS.index("red star"))), _image(one(LABELS.index("blue heart"))),
                        _image(Scene(1, (), "empty")), _image(pair)])
    facts = facts_of("a photo of a red circle")
    got = categorize(images[:5], "red circle", facts, judges)
    assert got == ["right", "colour wrong", "another shape drawn", "named object missing", "empty scene"]
    # the pair's judges: blue star top-1 (the object judges split between the two), red circle on the left
    said_right = facts_of("a red circle left of a blue star")
    said_wrong = facts_of("a blue star left of a red circle")
    assert categorize(torch.cat([images[5:]] * 2), "blue star", said_right, judges) == ["right"] * 2
    assert categorize(images[5:], "blue star", said_wrong, judges) == ["relation wrong"]
    counted = categorize(images[:1], "red circle", facts_of("a photo of two red circles"), judges)
    assert counted == ["count wrong"]
    damaged = corrupt(images[:4].repeat(4, 1, 1, 1), torch.Generator().manual_seed(0))
    cats = categorize(damaged, "red circle", facts, judges)
    assert set(cats) <= set(CATEGORIES) and cats.count("distorted") >= 10


def test_training_counts_are_read_from_the_training_data():
    world = WorldConfig()
    scenes, captions = draw_scenes(3000, 5, world)
    batch = make_dataset(3000, 5, world)
    assert captions == batch.captions and [s.label for s in scenes] == batch.labels.tolist()
    table = training_counts(["a photo of a red circle", "a photo of a red circle at night"],
                            ["red circle", "red circle"], n=3000, seed=5)
    plain, night = table.to_dict("records")
    by_hand = [i for i, c in enumerate(captions) if {"red", "circle"} <= set(c.split())]
    assert plain["captions"] == len(by_hand)
    assert plain["with_label"] == sum(any(t.name == "red circle" for t in scenes[i].things) for i in by_hand)
    assert 0 < night["captions"] < plain["captions"] and 0 < plain["label_share"] <= 1
    # at night the usual shape is the star: "red circle ... at night" is rarer than "red circle"
    assert night["captions"] / plain["captions"] < 0.3
