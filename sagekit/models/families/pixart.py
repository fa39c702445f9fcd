"""PixArt-alpha and PixArt-sigma: a DiT (``PixArtTransformer2DModel``) in latent space with
learned sigma, conditioned on T5 states and their attention mask: the real-world
"latent GLIDE" of the seed-shift paper.

Prompts are lower-cased as the pipelines do without caption cleaning. The predicted
variance channels are dropped before the scheduler step, as in the stock pipelines; a model
trained at 1024 px (``use_additional_conditions``) also takes its resolution and aspect ratio.
"""

from __future__ import annotations

import torch

from ..generator import Generator, PromptEmbeds

MAX_LENGTH = {"PixArtAlphaPipeline": 120, "PixArtSigmaPipeline": 300}


class PixArtGenerator(Generator):
    DEFAULT_STEPS, DEFAULT_GUIDANCE = 20, 4.5

    def __init__(self, *args, max_length: int = 120, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_length = max_length

    @classmethod
    def from_pipeline(cls, name: str, pipe, **defaults) -> "PixArtGenerator":
        return cls(name, pipe.transformer, pipe.scheduler, [pipe.text_encoder], [pipe.tokenizer], vae=pipe.vae,
                   max_length=MAX_LENGTH[type(pipe).__name__], **defaults)

    transformer = property(lambda self: self.denoiser)

    def _encode(self, prompts: list[str]) -> PromptEmbeds:
        enc = self.text_encoders[0]
        ids, mask = self._token_ids(self.tokenizers[0], [p.lower().strip() for p in prompts], self.max_length)
        mask = mask.to(enc.device)
        return PromptEmbeds(enc(ids.to(enc.device), attention_mask=mask)[0], mask=mask)

    def predict(self, x: torch.Tensor, t, cond: PromptEmbeds, guidance: float | None = None) -> torch.Tensor:
        t = t.reshape(1).expand(x.shape[0]) if t.dim() == 0 else t
        added = {"resolution": None, "aspect_ratio": None}
        if self.denoiser.use_additional_conditions:
            size = float(self.image_size)
            added = {"resolution": torch.tensor([[size, size]], device=x.device, dtype=x.dtype).repeat(len(x), 1),
                     "aspect_ratio": torch.ones(len(x), 1, device=x.device, dtype=x.dtype)}
        return self.denoiser(x, encoder_hidden_states=cond.hidden, encoder_attention_mask=cond.mask, timestep=t,
                             added_cond_kwargs=added, return_dict=False)[0].float()
