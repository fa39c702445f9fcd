"""Validation of a study's parameters before a kernel starts: each value against its
declared kind, after every "auto" took its value (``sagekit.studies.defaults``), then the
study's rules between parameters and its image estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import STUDIES
from .defaults import WORLD_DEFAULTS, is_auto, resolve, world_dependent, world_of_models
from .parameters import ParameterError

MAX_IMAGES = 2_000_000  # a week of an H100 at SD 1.5's batched ceiling; beyond that, split the grid


def _ray_installed(p: dict) -> None:
    if p.get("executor") == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ParameterError("parameter 'executor' is 'ray' but Ray is not installed: pip install 'sagekit[ray]'")
        from ..executors import unreachable_ray

        problem = unreachable_ray(p.get("address", ""))
        if problem:
            raise ParameterError(f"parameter 'address': {problem}")


def _whose_default(study_id: str, name: str, params: dict) -> str:
    from .defaults import STUDY_DEFAULTS

    if name in WORLD_DEFAULTS["toy"] or any(s == study_id and name in t for (s, _), t in STUDY_DEFAULTS.items()):
        return f"the {world_of_models(params)} world's default"
    return "the protocol's value"


def validate(study_id: str, params: dict[str, Any], base: Path) -> int:
    """Check every parameter of a study (defaults merged with overrides) against its
    schema, after every ``"auto"`` took its value (``sagekit.studies.defaults``); ``base``
    is the notebook's folder (relative paths start there). Returns the estimated number of
    images; raises ParameterError."""
    schema = STUDIES[study_id].schema
    unknown = [name for name in params if name not in schema.params]
    if unknown:
        raise ParameterError(f"study {study_id!r} declares no rule for parameter {unknown[0]!r}")
    resolved = resolve(study_id, params)
    ctx = {**resolved, "__base__": str(base)}
    for name, value in resolved.items():
        try:
            schema.params[name].rule.check(name, value, ctx)
        except ParameterError as e:
            if not is_auto(params[name]) or name not in world_dependent(study_id):
                raise
            raise ParameterError(f"{e} (it was 'auto': {_whose_default(study_id, name, params)}; "
                                 f"name another with -p {name}=...)") from None
    params = resolved
    if schema.cross:
        schema.cross(params)
    _ray_installed(params)
    images = int(schema.estimate(params))
    if images > MAX_IMAGES:
        raise ParameterError(f"study {study_id!r} would generate about {images:,} images (the limit is "
                             f"{MAX_IMAGES:,}); lower the counts, or split the grid over several runs")
    return images
