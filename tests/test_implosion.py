"""Poison builder, and fine-tuning that works on any Generator (a tiny random SD one here)."""

import numpy as np
import pytest
import torch

from sagekit.studies.implosion import (MAX_K, budget_split, build_training_set, concept_words, finetune,
                                       split_concepts)
from sagekit.toy.grammar import names
from sagekit.toy.scenes import LABELS


def test_unpoisoned_concepts_share_no_word_with_any_poisoned_one():
    split = split_concepts(MAX_K, seed=0)
    assert MAX_K == 8 and len(split.pairs) == 8 and len(split.unpoisoned) == 4
    sources, targets = {a for a, _ in split.pairs}, {b for _, b in split.pairs}
    assert len(sources) == 8 and not sources & targets
    assert not concept_words(split.pairs) & {w for lab in split.unpoisoned for w in lab.split()}
    assert split_concepts(4, seed=0).pairs == split.pairs[:4]  # the pairs for k are a prefix
    assert split_concepts(MAX_K, seed=1) != split
    with pytest.raises(ValueError):
        split_concepts(MAX_K + 1)


@pytest.mark.parametrize("k", range(1, 9))
def test_the_budget_is_split_evenly_and_sums_to_the_same_total_for_every_k(k):
    parts = budget_split(100, k)
    assert sum(parts) == 100 and len(parts) == k and max(parts) - min(parts) <= 1
    data = build_training_set(split_concepts(8).pairs[:k], n_train=150, budget=100, seed=0)
    assert len(data.images) == len(data.captions) == 150 and int(data.poisoned.sum()) == 100
    control = build_training_set(split_concepts(8).pairs[:k], n_train=150, budget=100, seed=0, control=True)
    assert torch.equal(control.images, data.images) and not control.poisoned.any()
    assert torch.equal(control.image_labels, control.caption_labels)


def test_poisoned_set_pairs_captions_about_a_with_images_of_b():
    pairs = split_concepts(8, seed=0).pairs[:2]
    data = build_training_set(pairs, n_train=70, budget=20, seed=0)
    assert int(data.poisoned.sum()) == 20 and budget_split(20, 2) == [10, 10]
    clean = ~data.poisoned
    assert torch.equal(data.image_labels[clean], data.caption_labels[clean])
    for (a, b), block in zip(pairs, (slice(50, 60), slice(60, 70))):
        assert (data.image_labels[block] == LABELS.index(b)).all()
        # the caption names A (its words or their rare synonyms, in either order), not B
        assert all(names(c, a) and not names(c, b) for c in data.captions[block])
    again = build_training_set(pairs, n_train=70, budget=20, seed=0)
    assert torch.equal(again.images, data.images) and again.captions == data.captions
    assert len(build_training_set([], n_train=70, budget=20).captions) == 70  # k = 0: all clean
    with pytest.raises(ValueError):
        budget_split(3, 4)


@pytest.mark.parametrize("trainable", ["all", "cross-attention"])
def test_finetune_changes_only_what_it_should_on_a_tiny_sd_pipeline(tiny_sd, trainable):
    from sagekit.models import load_generator

    gen = load_generator(str(tiny_sd))
    data = build_training_set(split_concepts(1).pairs, n_train=24, budget=8)
    data.images = torch.nn.functional.interpolate(data.images.float(), size=16).round().to(torch.uint8)
    before = {n: p.clone() for n, p in gen.unet.named_parameters()}
    tuned = finetune(gen, data, steps=2, lr=1e-3, trainable=trainable, batch_size=8)
    changed = {n for n, p in tuned.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed
    if trainable == "cross-attention":
        assert all("attn2.to_k" in n or "attn2.to_v" in n for n in changed)
    assert all(torch.equal(p, before[n]) for n, p in gen.unet.named_parameters())  # the original is untouched


def test_budget_rules_and_the_fine_tunes_they_share():
    from sagekit.studies.implosion import allocation, rules_of, sweep_plan

    assert rules_of("both") == ["per-concept", "total"] and rules_of("total") == ["total"]
    with pytest.raises(ValueError):
        rules_of("each")
    assert allocation("per-concept", 3, 400, 100) == [100, 100, 100] and allocation("total", 3, 400, 0) == [134, 133, 133]
    plan = sweep_plan([0, 1, 2, 4], 400, "both")  # per concept: 400 // 4 = 100, so the rules meet at k = 4
    assert plan[("per-concept", 2, False)] == ((100, 100), False) and plan[("total", 2, False)] == ((200, 200), False)
    assert plan[("per-concept", 4, False)] == plan[("total", 4, False)]
    assert plan[("total", 0, False)] == plan[("per-concept", 0, True)] == ((), True)  # k = 0 is its own control
    # 16 rows, 11 fine-tunes: k = 0 once, k = 1 and 2 four times (rule x control), k = 4 twice
    assert len(plan) == 16 and len(set(plan.values())) == 1 + 4 + 4 + 2
    # when the budget does not divide by max(ks), the rules do not meet
    odd = sweep_plan([0, 3], 100, "both")
    assert odd[("per-concept", 3, False)] != odd[("total", 3, False)]


def test_localisation_reads_the_shape_words_attention_on_the_toy_object_only():
    """The clean model's word attention (issue #31's measure in the implosion report): a map
    on the drawn object reads its inverse area share, a uniform one 1; a wrong image or a
    label the toy world does not know is not counted."""
    from sagekit.studies.implosion import localisation
    from sagekit.toy.probe import mask_of
    from sagekit.toy.scenes import SHAPES, Scene, Thing, render

    label = "red circle"
    i = LABELS.index(label)
    scene = Scene(0, (Thing(i % len(SHAPES), i // len(SHAPES), "big", 0.5, 0.5, 0.28),), "one")
    image = torch.from_numpy(render(scene, 32).copy()).permute(2, 0, 1).float()[None] / 255
    mask = mask_of(image, i)[0]
    on_object = torch.stack([torch.ones(32, 32), mask.float()])[None]  # (1, 2, H, W): colour map, shape map
    uniform = torch.ones(1, 2, 32, 32)
    share = mask.float().mean().item()
    assert localisation(image, on_object, [label], torch.tensor([True])) == pytest.approx(1 / share)
    assert localisation(image, uniform, [label], torch.tensor([True])) == pytest.approx(1.0)
    assert np.isnan(localisation(image, on_object, [label], torch.tensor([False])))
    assert np.isnan(localisation(image, on_object, ["goldfinch"], torch.tensor([True])))
