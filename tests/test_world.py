"""Toy world 2: scenes are functions of their seed, captions tell the truth, the biases are
what their parameters say, and judges get targets that match the geometry."""

import numpy as np
import pytest
import torch

from sagekit.toy.attributes import RELATIONS, attribute_targets, corrupt, scored_examples
from sagekit.toy.grammar import NUMBERS, SYNONYMS, CaptionNoise, names, objects_named, place_named, vocabulary
from sagekit.toy.scenes import BACKGROUNDS, COLOURS, LABELS, PLURALS, SHAPES
from sagekit.toy.text import MAX_LENGTH, build_tokenizer
from sagekit.toy.world import WorldConfig, bias_table, make_dataset, relabel

SENSES = {w: {w} for w in list(COLOURS) + list(SHAPES)}
for word, synonym in SYNONYMS.items():
    SENSES[word].add(synonym)


def _names(caption: str, label: int) -> bool:
    """Whether a caption names a label's colour and shape, in either order, with synonyms."""
    return names(caption, LABELS[label])


def test_dataset_is_a_function_of_its_seed():
    a, b, c = make_dataset(40, seed=3), make_dataset(40, seed=3), make_dataset(40, seed=4)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)


def test_pool_rendering_equals_serial():
    assert torch.equal(make_dataset(4100, seed=1, workers=2).images[-50:], make_dataset(4100, seed=1).images[-50:])


def test_captions_tell_only_true_facts():
    data = make_dataset(600, seed=0)
    assert data.images.shape == (600, 3, 32, 32) and data.images.dtype == torch.uint8
    kinds = {s.kind for s in data.scenes}
    assert kinds == {"empty", "one", "many", "two"}
    for scene, cap in zip(data.scenes, data.captions):
        bg = list(BACKGROUNDS)[scene.background]
        assert place_named(cap) in (None, bg), cap
        for thing in scene.things:
            assert _names(cap, thing.label), (cap, scene)
        if scene.kind == "one" and " in the " in cap and place_named(cap) not in ("sky", "water"):
            assert scene.position in cap.split(), cap
        if scene.kind == "many":
            assert ["two", "three"][scene.count - 2] in cap.split()
        if scene.kind == "two" and " left of " in cap:
            a, b = cap.split(" left of ")
            first, second = scene.things
            assert scene.axis == "horizontal" and _names(a, first.label) and _names(b, second.label)
        if scene.kind == "two" and " below " in cap:
            below, above = cap.split(" below ")
            assert scene.axis == "vertical" and _names(below, scene.things[1].label)
        if scene.kind == "empty":
            assert not any(w in SHAPES or w in PLURALS.values() for w in cap.split())


def test_word_order_varies_and_words_have_two_senses():
    caps = make_dataset(3000, seed=1).captions
    assert any(c.startswith(("at night ,", "on grass ,", "on the grass ,", "in the sky ,")) for c in caps)
    assert any(" in red" in c or " in blue" in c for c in caps)  # the colour after the shape
    rare = make_dataset(3000, 1, WorldConfig(synonym_rate=0.5)).captions
    assert any(" sand " in f" {c} " and place_named(c) != "sand" for c in rare)  # 'sand', the colour
    assert any(" plus a " in c for c in rare)  # 'plus', the conjunction


def test_the_biases_are_what_their_parameters_say():
    cfg = WorldConfig(companion_rate=0.6)
    data = make_dataset(6000, 2, cfg, kind="one")
    held = {LABELS.index(l) for l in cfg.held_out}
    assert held and not held & set(data.labels.tolist())
    night = [s for s in data.scenes if list(BACKGROUNDS)[s.background] == "night"]
    share = np.mean([SHAPES[s.things[0].shape] == cfg.companions["night"] for s in night])
    assert abs(share - (0.6 + 0.4 / len(SHAPES))) < 0.05, share
    colours = np.bincount([s.things[0].colour for s in night], minlength=len(COLOURS)) / len(night)
    assert colours.max() < 0.3  # any colour: the colour word does not predict the shape
    fair = make_dataset(6000, 2, cfg.unbiased(), kind="one")
    assert held <= set(fair.labels.tolist())
    fair_night = [s for s in fair.scenes if list(BACKGROUNDS)[s.background] == "night"]
    assert np.mean([SHAPES[s.things[0].shape] == "star" for s in fair_night]) < 0.25
    assert len(bias_table(cfg)) == 4 + len(cfg.caption_noise.rates()) and "60%" in bias_table(cfg).value[0]


@pytest.mark.parametrize("bad", [dict(kinds={"one": 1.0}), dict(companions={"moon": "circle"}),
                                 dict(companions={"night": "red star"}), dict(held_out=("red dot",)),
                                 dict(companion_rate=1.5)])
def test_bad_world_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        WorldConfig(**bad)


def test_judge_targets_match_the_geometry():
    data = make_dataset(800, 3, WorldConfig().unbiased())
    t = attribute_targets(data.scenes)
    assert torch.allclose(t["object"].sum(1), torch.ones(800))
    for i, s in enumerate(data.scenes):
        assert t["count"][i] == len(s.things)
        if s.kind == "two":
            first, second = s.things
            name = RELATIONS[int(t["relation"][i])]
            assert name.startswith(first.name)
            along, across = (("cx", "cy") if s.axis == "horizontal" else ("cy", "cx"))
            assert name.endswith("on the left" if s.axis == "horizontal" else "on top")
            gap = getattr(second, along) - getattr(first, along)
            # side by side or one above the other, never on a diagonal: the other reading
            # ("on top" of a horizontal pair) must be false by a clear margin
            assert gap > 0.3 and abs(getattr(second, across) - getattr(first, across)) < gap / 3
        else:
            assert t["relation"][i] == -1
        assert (t["position"][i] >= 0) == (s.kind == "one")
    images, targets = scored_examples("position", data.float_images(), data.scenes)
    assert len(images) == len(targets) == sum(s.kind == "one" for s in data.scenes)


def test_relabel_keeps_the_wording_and_swaps_the_concept():
    from sagekit.toy.world import describe_all

    data = make_dataset(50, seed=4, kind="one")
    target = LABELS.index("magenta heart")
    again = describe_all([relabel(s, target) for s in data.scenes], 4, WorldConfig().synonym_rate)
    new = SENSES["magenta"] | SENSES["heart"] | {PLURALS["heart"]}
    for before, after, scene in zip(data.captions, again, data.scenes):
        colour, shape = LABELS[scene.label].split()
        old = SENSES[colour] | SENSES[shape] | {PLURALS[shape]}
        assert _names(after, target) and len(before.split()) == len(after.split())
        # word by word: the same, or the old concept's word turned into the new one's
        assert all(b == a or (b in old and a in new) for b, a in zip(before.split(), after.split())), (before, after)


def test_corruption_damages_every_image_and_keeps_the_range():
    images = make_dataset(64, seed=5).float_images()
    bad = corrupt(images, torch.Generator().manual_seed(0))
    assert bad.shape == images.shape and bad.min() >= 0 and bad.max() <= 1
    assert ((bad - images).abs().flatten(1).mean(1) >= 0.05).all()


def test_tokenizer_knows_every_word_and_leaves_room_to_append():
    tok = build_tokenizer()
    caps = make_dataset(3000, 6, WorldConfig(synonym_rate=0.5)).captions
    ids = tok(caps).input_ids
    assert all(tok.unk_token_id not in row for row in ids)
    assert max(len(row) for row in ids) <= MAX_LENGTH - 4
    assert set(vocabulary()) >= {w for c in caps for w in c.split()}


def test_tokenizer_round_trips_offline(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = ["a photo of a red star", "at night , a cyan heart left of a box in teal"]
    assert again(text).input_ids == tok(text).input_ids
    ids = tok("a photo of a red star").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "a photo of a red star"
    assert tok("a zebra").input_ids[2] == tok.unk_token_id


def test_only_the_pairing_of_place_and_shape_is_biased():
    """Every shape and colour is about as common as any other in the generators' world."""
    data = make_dataset(12000, 7, WorldConfig(), kind="one")
    shapes = np.bincount([s.things[0].shape for s in data.scenes], minlength=len(SHAPES)) / len(data.scenes)
    colours = np.bincount([s.things[0].colour for s in data.scenes], minlength=len(COLOURS)) / len(data.scenes)
    assert np.abs(shapes - 1 / len(SHAPES)).max() < 0.03 and np.abs(colours - 1 / len(COLOURS)).max() < 0.03


NOISY = CaptionNoise(absent_object=0.2, late_object=0.2, colour_swap=0.3, wrong_count=0.3, wrong_relation=0.3)


def test_captions_name_their_objects_in_order():
    data = make_dataset(2000, 10, WorldConfig())
    for s, c in zip(data.scenes, data.captions):
        named = objects_named(c)
        if s.kind in ("one", "many"):
            assert named == [s.things[0].name], c
        elif s.kind == "two":
            assert sorted(named) == sorted(t.name for t in s.things), c
        else:
            assert named == [], c


def test_caption_noise_is_what_its_rates_say():
    """Each kind of wrong caption occurs at its rate (within sampling error) and says what
    its name says; with no noise the same scenes are worded as before."""
    clean = make_dataset(4000, 8, WorldConfig())
    noisy = make_dataset(4000, 8, WorldConfig(caption_noise=NOISY))
    assert torch.equal(clean.images, noisy.images)  # captions only
    one = [(s, c) for s, c in zip(noisy.scenes, noisy.captions) if s.kind == "one"]
    named = [objects_named(c) for _, c in one]
    two_named = [(s, n) for (s, _), n in zip(one, named) if len(n) == 2]
    assert abs(len(two_named) / len(one) - 0.4) < 0.04  # absent + late objects
    drawn_first = np.mean([n[0].split()[1] == SHAPES[s.things[0].shape] for s, n in two_named])
    assert abs(drawn_first - 0.5) < 0.08  # absent (drawn named first) and late (drawn named last) alike
    assert all(len(n) == 1 for s, c in zip(clean.scenes, clean.captions) if s.kind == "one" for n in [objects_named(c)])
    many = [(s, c) for s, c in zip(noisy.scenes, noisy.captions) if s.kind == "many"]
    wrong = np.mean([NUMBERS[s.count] not in c.split() for s, c in many])
    assert abs(wrong - 0.3) < 0.08
    assert WorldConfig(caption_noise=NOISY).unbiased().caption_noise == CaptionNoise()
    rows = bias_table(WorldConfig(caption_noise=NOISY))
    assert rows[rows.parameter == "caption_noise.colour_swap"].value.item() == "30%"


def test_swapped_colours_and_reversed_relations_are_false_of_the_scene():
    noisy = make_dataset(3000, 9, WorldConfig(caption_noise=CaptionNoise(colour_swap=1.0)))
    clean = make_dataset(3000, 9, WorldConfig())
    for s, c, c0 in zip(noisy.scenes, noisy.captions, clean.captions):
        if s.kind == "two" and s.things[0].colour != s.things[1].colour and s.things[0].shape != s.things[1].shape:
            first = SHAPES[s.things[0].shape]
            got = [n for n in objects_named(c) if n.split()[1] == first]
            assert got and got[0].split()[0] == list(COLOURS)[s.things[1].colour], (c, c0)
    flipped = make_dataset(3000, 9, WorldConfig(caption_noise=CaptionNoise(wrong_relation=1.0)))
    n = 0
    for s, c, c0 in zip(flipped.scenes, flipped.captions, clean.captions):
        if s.kind == "two" and any(r in c for r in ("left of", "right of", "above", "below")):
            assert c != c0  # the objects swapped sides of the same relation word
            n += 1
    assert n > 100


def test_a_misnamed_shape_lets_the_place_pull_its_usual_shape_in():
    """``wrong_shape`` names a lone object as another shape (its colour kept; one word
    changed) at its rate, draws no new random numbers (every other caption keeps its words),
    and with the world's co-occurrences a caption naming a heart in water shows a circle far
    more often."""
    from sagekit.toy.world import draw_scenes

    rates = dict(absent_object=0.1, late_object=0.1)
    scenes, base = draw_scenes(20000, 8, WorldConfig(caption_noise=CaptionNoise(**rates)), kind="one")
    _, noisy = draw_scenes(20000, 8, WorldConfig(caption_noise=CaptionNoise(**rates, wrong_shape=0.2)), kind="one")
    changed = [(s, a, b) for s, a, b in zip(scenes, base, noisy) if a != b]
    lone = sum(len(objects_named(a)) == 1 for a in base)
    assert all(len(objects_named(a)) == 1 for _, a, _ in changed)
    assert abs(len(changed) / lone - 0.2 / 0.8) < 0.03  # a share of the captions the other kinds left
    for s, a, b in changed:
        assert sum(x != y for x, y in zip(a.split(), b.split())) == 1 and len(a.split()) == len(b.split())
        colour, shape = objects_named(b)[0].split()
        assert shape != SHAPES[s.things[0].shape] and colour == list(COLOURS)[s.things[0].colour]

    def hearts_in_water(captions):
        """(captions naming a lone heart in water, how many of them show a circle)"""
        drawn = [SHAPES[s.things[0].shape] for s, c in zip(scenes, captions)
                 if place_named(c) == "water" and [n.split()[1] for n in objects_named(c)] == ["heart"]]
        return len(drawn), drawn.count("circle")

    n, circles = hearts_in_water(base)
    assert n >= 10 and circles == 0
    n, circles = hearts_in_water(noisy)
    assert n >= 30 and circles / n > 0.3, (circles, n)


@pytest.mark.parametrize("bad", [dict(absent_object=1.2), dict(wrong_count=-0.1), dict(absent_object=0.6, late_object=0.6),
                                 dict(late_object=0.5, wrong_shape=0.6)])
def test_bad_caption_noise_is_refused(bad):
    with pytest.raises(ValueError):
        CaptionNoise(**bad)


def test_the_report_shows_each_unets_recipe_and_caption_noise():
    """The toy-world report's recipe table is read from training.json: the shipped world's
    own recipes, and a noisy recipe's rates as they were trained."""
    import copy
    import json

    from sagekit.toy.names import TOY_DIR
    from sagekit.toy.evaluate import unet_recipes

    training = json.loads((TOY_DIR / "training.json").read_text())
    table = unet_recipes(training).set_index("model")
    assert list(table.index) == ["toy", "toy-latent-learned", "toy-pixel"]
    assert table.loc["toy", "end states"] == "mask-then-shuffle (100% of prompts, masked for the first 70% of the steps)"
    assert table.loc["toy-pixel", "end states"] == "keep" and table["pooled text"].all()
    assert table.steps.tolist() == [training["config"]["unets"][m]["steps"] for m in table.index]
    noisy = copy.deepcopy(training)
    noisy["config"]["unets"]["toy"]["caption_noise"]["colour_swap"] = 0.2
    table = unet_recipes(noisy).set_index("model")
    assert table.loc["toy", "noise: colour swap"] == 0.2 and table.loc["toy-pixel", "noise: colour swap"] == 0.0
    assert {f"noise: {k.replace('_', ' ')}" for k in CaptionNoise().rates()} <= set(table.columns)
