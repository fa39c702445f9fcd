"""Adapters: the only code that knows diffusers, transformers, timm and open_clip.

Its names are imported on first use (PEP 562), so that registering a model name
(``sagekit.models.catalog``) does not load torch."""

import importlib

_WHERE = {
    "ClipEmbedder": "clip", "ClipScorer": "clip", "Generator": "generator",
    **{name: "judges" for name in ("ClipZeroShotJudge", "EdgeJudge", "Ensemble", "HFJudge", "Judge", "TimmJudge")},
    **{name: "registry" for name in ("ModelNotFoundError", "UnknownModelError", "load_clip_embedder",
                                     "load_clip_scorer", "load_ensemble", "load_generator", "load_judge")},
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
