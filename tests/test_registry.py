"""Names -> models: clear, immediate errors; safetensors only; toy weights reload."""

import pytest
import torch

from sagekit.models import ModelNotFoundError, UnknownModelError, load_generator, load_judge
from sagekit.models.registry import load_clip_scorer
from sagekit.toy.names import TOY_DIR
from sagekit.toy.scenes import LABELS


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownModelError, match="toy, toy-ddpm, toy-latent-learned, toy-pixel"):
        load_generator("nope")
    with pytest.raises(UnknownModelError, match="toy-ensemble"):
        load_judge("nope")
    with pytest.raises(UnknownModelError, match="toy-clip"):
        load_clip_scorer("nope")


@pytest.mark.parametrize("call", [
    lambda: load_generator("sagekit-test/not-downloaded"),
    lambda: load_judge("hf:sagekit-test/not-downloaded"),
    lambda: load_judge("timm:resnet50.a1_in1k"),
    lambda: load_clip_scorer("open_clip:ViT-B-32:laion2b_s34b_b79k"),
])
def test_missing_weights_fail_at_once_with_how_to_get_them(call, monkeypatch):
    import socket

    def offline(*args):
        raise AssertionError("a missing model must not be looked for on the network")

    monkeypatch.setattr(socket.socket, "connect", offline)
    with pytest.raises(ModelNotFoundError, match="hf download"):
        call()


def test_unknown_timm_and_open_clip_names():
    with pytest.raises(UnknownModelError, match="no pretrained weights"):
        load_judge("timm:not_a_model")
    with pytest.raises(UnknownModelError, match="architecture"):
        load_clip_scorer("open_clip:Not-An-Arch:x")


def test_a_local_folder_loads(tiny_sd):
    assert load_generator(str(tiny_sd)).latent_shape == (4, 8, 8)


def test_toy_weights_are_safetensors_and_small():
    files = [f for f in TOY_DIR.rglob("*") if f.is_file()]
    weights = [f for f in files if f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    assert weights and all(f.suffix == ".safetensors" for f in weights)
    assert sum(f.stat().st_size for f in files) <= 50 * 10**6  # issue #16: 50 MB in all (eight judges now)


def test_toy_models_reload():
    for name, latent, learned in (("toy", True, False), ("toy-latent-learned", True, True), ("toy-pixel", False, True)):
        gen = load_generator(name)
        assert gen.is_latent == latent and gen.learned_variance == learned
        assert gen.image_size == 32 and gen.unet.dtype == torch.float32
    for name in ("toy-resnet", "toy-mobilenet", "toy-edge", "toy-clip", "toy-ensemble"):
        judge = load_judge(name)
        assert judge.labels == LABELS
        assert not any(p.requires_grad for p in judge.parameters())
    from sagekit.models.registry import judge_label_names, load_realism
    from sagekit.toy.names import TOY_ATTRIBUTE_JUDGES
    from sagekit.toy.attributes import JUDGE_LABELS

    for name in TOY_ATTRIBUTE_JUDGES:  # each attribute judge with its own labels, from config alone too
        assert load_judge(name).labels == JUDGE_LABELS[name[4:]] == judge_label_names(name)
    assert load_realism("toy-realism").labels == ("real", "corrupted")
    assert hasattr(load_realism("toy-clip"), "embed_images")
    with pytest.raises(UnknownModelError, match="neither a realism judge"):
        load_realism("toy-count")
    scorer = load_clip_scorer("toy-clip")
    s = scorer(torch.rand(2, 3, 32, 32), ["a photo of a red star", "a blue cross"])
    assert s.shape == (2,) and (s >= 0).all() and (s <= 100).all()
