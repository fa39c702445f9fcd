"""A pipeline of a family the Generator does not support is refused when it is resolved,
with the list of supported families (CLI: exit 2, nothing written)."""

import json
import shutil

import pytest

from sagekit.cli import main
from sagekit.models import load_generator
from sagekit.models.families import FAMILIES, family_of
from sagekit.models.registry import ModelNotFoundError, UnknownModelError, resolve_generator


@pytest.fixture
def sdxl_like(tiny_sd, tmp_path):
    """A folder whose model_index.json names StableDiffusionXLPipeline."""
    folder = tmp_path / "sdxl"
    shutil.copytree(tiny_sd, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionXLPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


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
