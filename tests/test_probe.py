"""The word probe's parts: pairs that differ in both words, object masks that find the
drawn object and never a background, and an attention ratio that reads 1 for a uniform map."""

import pytest
import torch

from sagekit.toy.probe import attention_ratio, mask_of, swap_pairs
from sagekit.toy.scenes import BACKGROUNDS, COLOURS, LABELS, SHAPES, Scene, Thing, backdrop, render
from sagekit.toy.world import WorldConfig


def test_pairs_differ_in_shape_and_colour_and_are_learned_labels():
    pairs = swap_pairs(40, seed=3)
    assert pairs == swap_pairs(40, seed=3) and pairs != swap_pairs(40, seed=4)
    held = {LABELS.index(l) for l in WorldConfig().held_out}
    for a, b in pairs:
        assert a % len(SHAPES) != b % len(SHAPES) and a // len(SHAPES) != b // len(SHAPES)
        assert a not in held and b not in held


@pytest.mark.parametrize("background", range(len(BACKGROUNDS)))
def test_the_object_mask_is_the_drawn_object_never_the_background(background):
    side = 32
    plain = torch.from_numpy(backdrop(background, side)).permute(2, 0, 1).float()[None] / 255
    for label in range(len(LABELS)):
        assert not mask_of(plain, label).any()  # no background pixel has an object's colour
        scene = Scene(background, (Thing(label % len(SHAPES), label // len(SHAPES), "big", 0.5, 0.5, 0.28),), "one")
        image = torch.from_numpy(render(scene, side).copy()).permute(2, 0, 1).float()[None] / 255
        drawn = (image - plain).abs().amax(1)[0] > 0.25  # pixels clearly changed by the object
        mask = mask_of(image, label)[0]
        iou = (mask & drawn).sum() / (mask | drawn).sum()
        assert iou > 0.8, (LABELS[label], list(BACKGROUNDS)[background], float(iou))
        other = (label + len(SHAPES)) % len(LABELS)  # the same shape in the next colour
        assert (mask_of(image, other)[0] & drawn).float().mean() < 0.05


def test_the_attention_ratio_is_one_for_a_uniform_map_and_one_over_share_inside():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:4, 2:6] = True  # 8 of 64 pixels
    assert attention_ratio(torch.ones(8, 8), mask) == pytest.approx(1.0)
    inside = mask.float() * 3.0
    assert attention_ratio(inside, mask) == pytest.approx(8.0)
    assert attention_ratio(1 - mask.float(), mask) == 0.0
    with pytest.raises(ValueError):
        attention_ratio(torch.ones(8, 8), torch.zeros(8, 8, dtype=torch.bool))
