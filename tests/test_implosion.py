"""Poison builder, and fine-tuning that works on any Generator (a tiny random SD one here)."""

import pytest
import torch

from sagekit.studies.implosion import build_poisoned_set, choose_pairs, finetune
from sagekit.toy.shapes import LABELS


def test_pairs_are_nested_deterministic_and_never_poison_a_target():
    big = choose_pairs(LABELS, 16, seed=0)
    assert choose_pairs(LABELS, 4, seed=0) == big[:4] and choose_pairs(LABELS, 4, seed=1) != big[:4]
    sources, targets = {a for a, _ in big}, {b for _, b in big}
    assert len(sources) == 16 and not sources & targets
    with pytest.raises(ValueError):
        choose_pairs(LABELS, 19)


def test_poisoned_set_pairs_captions_about_a_with_images_of_b():
    pairs = choose_pairs(LABELS, 2, seed=0)
    data = build_poisoned_set(pairs, n_clean=50, poison_per_concept=10, seed=0)
    assert len(data.captions) == len(data.images) == 70 and int(data.poisoned.sum()) == 20
    clean = ~data.poisoned
    assert torch.equal(data.image_labels[clean], data.caption_labels[clean])
    for (a, b), block in zip(pairs, (slice(50, 60), slice(60, 70))):
        assert (data.image_labels[block] == LABELS.index(b)).all()
        assert all(a in c for c in data.captions[block])
    again = build_poisoned_set(pairs, n_clean=50, poison_per_concept=10, seed=0)
    assert torch.equal(again.images, data.images) and again.captions == data.captions


@pytest.mark.parametrize("trainable", ["all", "cross-attention"])
def test_finetune_changes_only_what_it_should_on_a_tiny_sd_pipeline(tiny_sd, trainable):
    from sagekit.models import load_generator

    gen = load_generator(str(tiny_sd))
    data = build_poisoned_set(choose_pairs(LABELS, 1), n_clean=16, poison_per_concept=8)
    data.images = torch.nn.functional.interpolate(data.images.float(), size=16).round().to(torch.uint8)
    before = {n: p.clone() for n, p in gen.unet.named_parameters()}
    tuned = finetune(gen, data, steps=2, lr=1e-3, trainable=trainable, batch_size=8)
    changed = {n for n, p in tuned.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed
    if trainable == "cross-attention":
        assert all("attn2.to_k" in n or "attn2.to_v" in n for n in changed)
    assert all(torch.equal(p, before[n]) for n, p in gen.unet.named_parameters())  # the original is untouched
