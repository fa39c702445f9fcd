import torch

from sagekit.toy.shapes import BACKGROUNDS, COLOURS, LABELS, SHAPES, make_dataset
from sagekit.toy.text import build_tokenizer


def test_dataset_is_a_function_of_its_seed():
    a, b, c = make_dataset(40, seed=3), make_dataset(40, seed=3), make_dataset(40, seed=4)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)


def test_pool_rendering_equals_serial():
    assert torch.equal(make_dataset(4100, seed=1, workers=2).images[-50:], make_dataset(4100, seed=1).images[-50:])


def test_size_of_the_world():
    assert len(SHAPES) >= 6 and len(COLOURS) >= 6 and len(BACKGROUNDS) >= 2
    assert len(LABELS) == len(SHAPES) * len(COLOURS) == len(set(LABELS))


def test_captions_name_the_label_and_only_true_facts():
    data = make_dataset(300, seed=0)
    assert data.images.shape == (300, 3, 32, 32) and data.images.dtype == torch.uint8
    for spec, cap, label in zip(data.specs, data.captions, data.labels):
        colour, shape = LABELS[label].split()
        assert f"{colour} {shape}" in cap
        if "background" in cap:
            assert list(BACKGROUNDS)[spec.background] in cap
        if " in the " in cap:
            assert spec.position in cap


def test_fixed_labels_and_colour_is_visible():
    labels = [LABELS.index("red square")] * 8
    data = make_dataset(8, seed=5, labels=labels)
    assert (data.labels == labels[0]).all()
    img = data.float_images()
    # the brightest pixels of a red shape are red
    flat = img.permute(0, 2, 3, 1).reshape(-1, 3)
    bright = flat[flat.sum(1) > 0.8]
    assert (bright[:, 0] > bright[:, 1] + 0.3).float().mean() > 0.9


def test_tokenizer_round_trips_offline(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = ["a photo of a red star", "a cyan heart on a brown background"]
    assert again(text).input_ids == tok(text).input_ids
    ids = tok("a photo of a red star").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "a photo of a red star"
    assert tok("a zebra").input_ids[2] == tok.unk_token_id
