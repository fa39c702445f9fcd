"""A pipeline of a family the Generator does not support is refused when it is resolved,
with the list of supported families (CLI: exit 2, nothing written)."""

import shutil

import pytest

from sagekit.cli import main
from sagekit.models import load_generator
from sagekit.models.families import FAMILIES, family_of
from sagekit.models.registry import ModelNotFoundError, UnknownModelError, resolve_generator


@pytest.fixture
def sdxl_like(tiny_sdxl):
    """A real (tiny, random) SDXL folder: stock diffusers draws from it, sagekit does not yet."""
    return tiny_sdxl


def test_the_tiny_sdxl_folder_is_a_real_sdxl_pipeline(tiny_sdxl):
    import torch
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl, use_safetensors=True, local_files_only=True)
    assert pipe.text_encoder_2 is not None and pipe.unet.config.addition_embed_type == "text_time"
    image = pipe("a cat", num_inference_steps=2, height=16, width=16, output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 3, 16, 16) and torch.isfinite(image).all()


def test_supported_folders_name_their_family(tiny_sd, tiny_pixel):
    assert family_of(tiny_sd) == "StableDiffusionPipeline" and family_of(tiny_pixel) == "IFPipeline"
    assert resolve_generator(str(tiny_sd)) == tiny_sd


def test_an_unsupported_pipeline_is_refused_before_loading(sdxl_like, tmp_path):
    with pytest.raises(UnknownModelError, match="'StableDiffusionXLPipeline' is not supported") as e:
        load_generator(str(sdxl_like))
    assert all(cls in str(e.value) for cls in FAMILIES)
    no_index = tmp_path / "plain"
    shutil.copytree(sdxl_like, no_index)
    (no_index / "model_index.json").unlink()
    with pytest.raises(ModelNotFoundError, match="not a diffusers pipeline folder"):
        resolve_generator(str(no_index))


def test_the_cli_exits_2_with_the_families_and_writes_nothing(sdxl_like, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "seed-shifts", "-p", f"models=[{str(sdxl_like)!r}]", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "StableDiffusionXLPipeline" in err and "StableDiffusionPipeline" in err and "IFPipeline" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
