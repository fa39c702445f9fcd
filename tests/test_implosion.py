"""Poison builder, and fine-tuning that works on any Generator (a tiny random SD one here)."""

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
