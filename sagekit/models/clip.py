"""CLIP embeddings and CLIP score over transformers or open_clip models."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .judges import _prepare


class ClipEmbedder(nn.Module):
    """L2-normalised image and text embeddings from one CLIP model.

    ``backend`` is ``"transformers"`` (a ``CLIPModel`` + tokenizer) or ``"open_clip"``
    (a model from ``open_clip.create_model`` + its tokenizer). ``revision``: a fingerprint
    of its weights (set by the loader).
    """

    revision = ""

    def __init__(self, name: str, model: nn.Module, tokenizer, backend: str,
                 size: tuple[int, int], mean, std, max_length: int | None = None):
        super().__init__()
        if backend not in ("transformers", "open_clip"):
            raise ValueError(f"unknown CLIP backend {backend!r}")
        self.name, self.model, self.tokenizer, self.backend = name, model, tokenizer, backend
        self.size, self.mean, self.std, self.max_length = tuple(size), mean, std, max_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> unit vectors ``(B, D)``."""
        pixels = _prepare(images, self.size, self.mean, self.std)
        if self.backend == "transformers":
            feats = self.model.get_image_features(pixel_values=pixels)
            feats = getattr(feats, "pooler_output", feats)
        else:
            feats = self.model.encode_image(pixels)
        return F.normalize(feats.float(), dim=-1)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """N strings -> unit vectors ``(N, D)``."""
        if self.backend == "transformers":
            tok = self.tokenizer(list(texts), padding="max_length", truncation=True,
                                 max_length=self.max_length or self.tokenizer.model_max_length, return_tensors="pt")
            feats = self.model.get_text_features(input_ids=tok.input_ids.to(self.device))
            feats = getattr(feats, "pooler_output", feats)
        else:
            feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))
        return F.normalize(feats.float(), dim=-1)


class ClipScorer(nn.Module):
    """CLIP score: ``100 * max(cos(image, text), 0)``, in [0, 100]."""

    def __init__(self, embedder: ClipEmbedder):
        super().__init__()
        self.embedder = embedder
        self.name = embedder.name
        self.revision = getattr(embedder, "revision", "")

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """images ``(B, 3, H, W)`` in [0, 1], B prompts -> scores ``(B,)``."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(prompts)} prompts")
        img = self.embedder.embed_images(images)
        txt = self.embedder.embed_text(prompts).to(img.device)
        return 100.0 * (img * txt).sum(-1).clamp_min(0)

    score = forward
