"""Word grounding: each named word's target is its own object's pixels, the loss reads
attention outside them, and training with it moves the maps onto the objects."""

import pytest
import torch

from sagekit.models.attention_maps import capture_cross_attention
from sagekit.toy.scenes import BACKGROUNDS, COLOURS, SHAPES, Scene, Thing, render
from sagekit.toy.text import build_tokenizer
from sagekit.toy.training.diffusion import train_unet
from sagekit.toy.training.grounding import grounding_loss, grounding_targets

RED, BLUE = list(COLOURS).index("red"), list(COLOURS).index("blue")
TWO = Scene(background=0, kind="two", axis="horizontal",
            things=(Thing(SHAPES.index("circle"), RED, "small", 0.25, 0.5, 0.15),
                    Thing(SHAPES.index("star"), BLUE, "small", 0.75, 0.5, 0.15)))


def _targets(scenes, captions, side=16):
    images = torch.stack([torch.from_numpy(render(s).copy()).permute(2, 0, 1) for s in scenes])
    return grounding_targets(scenes, captions, build_tokenizer(), images, side)


def test_each_named_word_points_at_its_own_object():
    caption = "a crimson disc left of a blue star on the grass"
    words, masks = _targets([TWO], [caption])
    tokens = build_tokenizer().convert_ids_to_tokens(build_tokenizer()(caption).input_ids)
    by_word = {w: int(words[0, i]) for i, w in enumerate(tokens)}
    assert by_word["crimson"] == by_word["disc"] == RED  # synonyms name it too
    assert by_word["blue"] == by_word["star"] == BLUE
    assert {by_word[w] for w in ("<bos>", "a", "left", "of", "grass", "<eos>")} == {-1}
    # the red mask sits on the left object, the blue one on the right; other colours are empty
    red, blue = masks[0, RED].float(), masks[0, BLUE].float()
    assert red[:, :8].sum() > 0 and red[:, 8:].sum() == 0
    assert blue[:, 8:].sum() > 0 and blue[:, :8].sum() == 0
    assert masks[0, [c for c in range(len(COLOURS)) if c not in (RED, BLUE)]].sum() == 0


def test_a_word_for_an_object_the_image_lacks_is_not_grounded():
    alone = Scene(background=0, kind="one", things=TWO.things[:1])
    words, _ = _targets([alone], ["a red circle and a blue star"])
    assert sorted(set(words[0].tolist())) == [-1, RED]


def test_the_loss_is_the_attention_outside_the_object():
    words, masks = _targets([TWO], ["a red circle left of a blue star"], side=8)
    uniform = torch.full((1, 64, 24), 1 / 24)
    on_object = uniform.clone()  # each named word attends to its object's cells, by how much it fills them
    for t, colour in enumerate(words[0].tolist()):
        if colour >= 0:
            on_object[0, :, t] = masks[0, colour].flatten().float() + 1e-6
    loose, tight = grounding_loss({"l": [uniform]}, words, masks), grounding_loss({"l": [on_object]}, words, masks)
    assert tight < 0.5 < 0.9 < loose  # uniform: 1 - the objects' small area share
    none = torch.full_like(words, -1)
    assert grounding_loss({"l": [uniform]}, none, masks) == 0


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_training_with_grounding_moves_the_maps_onto_the_objects(weight):
    from sagekit.toy.architectures import latent_unet, train_scheduler

    torch.manual_seed(0)
    scenes = [TWO] * 8
    captions = ["a red circle left of a blue star"] * 8
    targets = _targets(scenes, captions)
    text = torch.randn(1, 24, 64).repeat(8, 1, 1)
    x0 = torch.randn(8, 4, 16, 16)

    def loss_of(unet):
        with torch.no_grad(), capture_cross_attention(unet, keep_grad=True) as maps:
            unet(x0, torch.full((8,), 500), text)
            return float(grounding_loss(maps, *targets))

    unet = latent_unet()
    before = loss_of(unet)
    kw = dict(grounding=weight, grounding_targets=targets) if weight else {}
    unet = train_unet(unet, train_scheduler(False), x0, text, text[:1] * 0, seed=0, steps=60, batch_size=8, lr=5e-3,
                      ema_decay=0, progress_bar=False, cond_dropout=0.0, **kw)
    after = loss_of(unet)
    if weight:
        assert after < before - 0.2
    else:
        assert after > before - 0.1  # the noise loss alone has no reason to localise the words


def test_grounding_needs_its_targets():
    from sagekit.toy.architectures import latent_unet, train_scheduler

    with pytest.raises(ValueError, match="grounding_targets"):
        train_unet(latent_unet(), train_scheduler(False), torch.zeros(2, 4, 16, 16), torch.zeros(2, 24, 64),
                   torch.zeros(1, 24, 64), seed=0, steps=1, batch_size=2, grounding=0.1)
