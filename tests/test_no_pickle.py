"""No pickle, ever: every folder a model is read from is walked before anything loads.

Each refused folder holds a real pickle that would create a marker file if it were ever
unpickled, so a test fails both when the folder is not refused and when the refusal comes
too late (after a library already loaded the pickle).
"""

import json
import pathlib
import pickle
import shutil

import pytest
import torch

from sagekit.cli import main
from sagekit.toy.names import TOY_DIR
from sagekit.models.registry import (ModelNotFoundError, UnsafeWeightsError, check_weights_folder,
                                     load_caption_lm, load_clip_embedder, load_generator, load_judge, resolve_clip,
                                     resolve_generator, resolve_judge)


class _Trap:
    """Unpickling this touches ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def trap(tmp_path):
    marker = tmp_path / "UNPICKLED"

    def plant(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"state_dict": _Trap(marker)}))
        return path

    yield plant
    assert not marker.exists(), "a pickle was loaded"


def test_the_trap_works(tmp_path, trap):
    """The marker appears when the planted file is unpickled (so its absence means something)."""
    f = trap(tmp_path / "x.bin")
    pickle.loads(f.read_bytes())
    assert (tmp_path / "UNPICKLED").exists()
    (tmp_path / "UNPICKLED").unlink()


@pytest.mark.parametrize("where", ["unet/diffusion_pytorch_model.bin", "text_encoder/pytorch_model.bin",
                                   "vae/diffusion_pytorch_model.pt", "model.ckpt", "scheduler/state.pkl",
                                   "unet/ema.pth"])
def test_a_generator_folder_with_any_pickle_is_refused(tmp_path, tiny_sd, trap, where):
    folder = tmp_path / "gen"
    shutil.copytree(tiny_sd, folder)
    trap(folder / where)  # beside the component's safetensors file
    with pytest.raises(UnsafeWeightsError, match=where.split("/")[-1].replace(".", r"\.")):
        load_generator(str(folder))
    with pytest.raises(UnsafeWeightsError):
        resolve_generator(str(folder))


def test_a_component_without_safetensors_is_refused(tmp_path, tiny_sd):
    folder = tmp_path / "gen"
    shutil.copytree(tiny_sd, folder)
    for f in (folder / "unet").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelNotFoundError, match=r"unet holds no \.safetensors"):
        load_generator(str(folder))


def test_clean_folders_load(tiny_sd):
    assert check_weights_folder(tiny_sd) == tiny_sd
    assert load_generator(str(tiny_sd)).latent_shape == (4, 8, 8)


def _toy_judge_copy(tmp_path):
    folder = tmp_path / "judge"
    shutil.copytree(TOY_DIR / "judges" / "resnet", folder)
    return folder


def test_timm_folders(tmp_path, trap):
    folder = _toy_judge_copy(tmp_path)
    judge = load_judge(f"timm:{folder}")
    assert judge.labels[0] == "red circle" and judge(torch.rand(1, 3, 32, 32)).shape == (1, 36)
    # the reported case: a pickle at the top, safetensors only in a subfolder
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(folder / "config.json", mixed / "config.json")
    shutil.copytree(folder, mixed / "sub")
    trap(mixed / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="pytorch_model.bin"):
        load_judge(f"timm:{mixed}")
    # a pickle beside model.safetensors
    trap(folder / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="pytorch_model.bin"):
        load_judge(f"timm:{folder}")


def test_timm_reads_the_safetensors_file_it_is_given(tmp_path, monkeypatch):
    """sagekit names model.safetensors to timm explicitly; without it, it refuses."""
    folder = _toy_judge_copy(tmp_path)
    (folder / "model.safetensors").rename(folder / "weights.safetensors")
    with pytest.raises(ModelNotFoundError, match="model.safetensors"):
        load_judge(f"timm:{folder}")


@pytest.fixture(scope="module")
def hf_classifier(tmp_path_factory):
    from sagekit.testing import save_tiny_hf_classifier

    return save_tiny_hf_classifier(tmp_path_factory.mktemp("hf") / "vit", ["a", "b", "c"])


def test_hf_classifier_folders(tmp_path, hf_classifier, trap):
    judge = load_judge(f"hf:{hf_classifier}")
    assert judge.labels == ("a", "b", "c") and judge(torch.rand(2, 3, 40, 40)).shape == (2, 3)
    folder = tmp_path / "vit"
    shutil.copytree(hf_classifier, folder)
    trap(folder / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="pytorch_model.bin"):
        load_judge(f"hf:{folder}")


def test_transformers_clip_and_caption_lm_folders(tmp_path, trap):
    clip = tmp_path / "clip"
    shutil.copytree(TOY_DIR / "clip", clip)
    assert load_clip_embedder(f"hf:{clip}").embed_text(["a photo of a red star"]).shape[0] == 1
    trap(clip / "training_args.bin")
    with pytest.raises(UnsafeWeightsError, match="training_args.bin"):
        load_clip_embedder(f"hf:{clip}")
    lm = tmp_path / "lm"
    shutil.copytree(TOY_DIR / "caption-lm", lm)
    trap(lm / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="pytorch_model.bin"):
        load_caption_lm(str(lm))


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """A tiny open_clip architecture registered from a config file, saved as safetensors."""
    import open_clip
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("open_clip")
    (root / "configs").mkdir()
    (root / "configs" / "sagekit-tiny-clip.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(root / "configs")
    torch.manual_seed(0)
    model = open_clip.create_model("sagekit-tiny-clip", pretrained=None)
    weights = root / "weights" / "open_clip_model.safetensors"
    weights.parent.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    return weights


def test_open_clip_weights(tmp_path, tiny_open_clip, trap):
    name = f"open_clip:sagekit-tiny-clip:{tiny_open_clip}"
    emb = load_clip_embedder(name)
    assert emb.embed_images(torch.rand(2, 3, 32, 32)).shape == (2, 16)
    # a pickle given as the weights file, and a pickle beside a safetensors file
    pickled = trap(tmp_path / "w" / "open_clip_pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="safetensors weights only"):
        load_clip_embedder(f"open_clip:sagekit-tiny-clip:{pickled}")
    beside = tmp_path / "w" / "open_clip_model.safetensors"
    shutil.copy(tiny_open_clip, beside)
    with pytest.raises(UnsafeWeightsError, match="open_clip_pytorch_model.bin"):
        resolve_clip(f"open_clip:sagekit-tiny-clip:{beside}")
    with pytest.raises(UnsafeWeightsError, match="open_clip_pytorch_model.bin"):
        resolve_judge(f"open_clip:sagekit-tiny-clip:{beside}")


def test_the_cli_refuses_pickles_with_exit_2(tmp_path, tiny_sd, trap, capsys):
    folder = tmp_path / "gen"
    shutil.copytree(tiny_sd, folder)
    trap(folder / "unet" / "diffusion_pytorch_model.bin")
    out = tmp_path / "out"
    assert main(["run", "seed-shifts", "-p", f"models=[{str(folder)!r}]", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "diffusion_pytorch_model.bin" in err and "safetensors only" in err and len(err.splitlines()) == 1
    assert not out.exists()
    clip = tmp_path / "clip"
    shutil.copytree(TOY_DIR / "clip", clip)
    trap(clip / "pytorch_model.bin")
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for i in range(2):
        (pairs / f"x{i}.txt").write_text("a photo of a red circle")
        _png(pairs / f"x{i}.png")
    assert main(["ad", str(pairs), "--clip", f"hf:{clip}"]) == 2
    err = capsys.readouterr().err
    assert "pytorch_model.bin" in err and len(err.strip().splitlines()) == 1


def _png(path):
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
