"""Adapters: the only code that knows diffusers, transformers, timm and open_clip."""

from .clip import ClipEmbedder, ClipScorer
from .generator import Generator
from .judges import ClipZeroShotJudge, EdgeJudge, Ensemble, HFJudge, Judge, TimmJudge
from .registry import (ModelNotFoundError, UnknownModelError, load_clip_embedder, load_clip_scorer, load_generator,
                       load_ensemble, load_judge)

__all__ = [
    "ClipEmbedder", "ClipScorer", "ClipZeroShotJudge", "EdgeJudge", "Ensemble", "Generator", "HFJudge", "Judge",
    "ModelNotFoundError", "TimmJudge", "UnknownModelError", "load_clip_embedder", "load_clip_scorer",
    "load_ensemble", "load_generator", "load_judge",
]
