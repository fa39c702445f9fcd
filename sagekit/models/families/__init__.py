"""The model families sagekit's Generator supports, told apart by the pipeline class in a
folder's ``model_index.json``.

A folder of any other class is refused when it is resolved, before anything loads, with
this list: a family the Generator does not know would otherwise load and fail later inside
diffusers (an SDXL folder dies at its first step without its second text encoder).
"""

from __future__ import annotations

import json
from pathlib import Path

# pipeline class -> what sagekit supports of it (shown to users in refusals and docs)
FAMILIES = {
    "StableDiffusionPipeline": "Stable Diffusion 1.x / 2.x (epsilon and v-prediction) and the toy latent models",
    "IFPipeline": "the IF pixel-space layout with learned variance (the toy pixel model)",
}


class UnsupportedFamilyError(KeyError):
    """A diffusers pipeline of a class the Generator does not support."""

    def __str__(self) -> str:
        return str(self.args[0])


def supported() -> str:
    """One line naming every supported pipeline class and what it covers."""
    return "; ".join(f"{cls} ({what})" for cls, what in FAMILIES.items())


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
