"""The model families sagekit's Generator supports, one module each, told apart by the
pipeline class in a folder's ``model_index.json``.

A folder of any other class is refused when it is resolved, before anything loads, with
this list: a family the Generator does not know would otherwise load and fail later inside
diffusers.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

# pipeline class -> (module, Generator subclass, what sagekit supports of it: shown in refusals and docs)
FAMILIES = {
    "StableDiffusionPipeline": ("stable_diffusion", "StableDiffusionGenerator",
                                "Stable Diffusion 1.x / 2.x (epsilon and v-prediction) and the toy latent models"),
    "StableDiffusionXLPipeline": ("stable_diffusion_xl", "StableDiffusionXLGenerator", "Stable Diffusion XL base"),
    "StableDiffusion3Pipeline": ("stable_diffusion_3", "StableDiffusion3Generator", "Stable Diffusion 3 / 3.5"),
    "FluxPipeline": ("flux", "FluxGenerator", "Flux.1 dev and schnell"),
    "PixArtAlphaPipeline": ("pixart", "PixArtGenerator", "PixArt-alpha"),
    "PixArtSigmaPipeline": ("pixart", "PixArtGenerator", "PixArt-sigma"),
    "IFPipeline": ("deepfloyd_if", "IFGenerator", "DeepFloyd IF stage I and the toy pixel model"),
}


class UnsupportedFamilyError(KeyError):
    """A diffusers pipeline of a class the Generator does not support."""

    def __str__(self) -> str:
        return str(self.args[0])


def supported() -> str:
    """One line naming every supported pipeline class and what it covers."""
    return "; ".join(f"{cls} ({what})" for cls, (_, _, what) in FAMILIES.items())


def family_of(folder: str | Path) -> str:
    """The pipeline class of a diffusers folder, if it is a supported family; raises
    ``FileNotFoundError`` without a readable ``model_index.json`` and
    :class:`UnsupportedFamilyError` for any other class."""
    index = Path(folder) / "model_index.json"
    try:
        cls = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{folder} is not a diffusers pipeline folder (no readable model_index.json: {e})")
    if cls not in FAMILIES:
        raise UnsupportedFamilyError(f"{folder}: pipeline class {cls!r} is not supported; sagekit supports {supported()}")
    return cls


def generator_class(pipeline_class: str):
    """The Generator subclass serving ``pipeline_class`` (imported on first use)."""
    module, cls, _ = FAMILIES[pipeline_class]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
