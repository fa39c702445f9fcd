"""Stable Diffusion XL base.

Two CLIP text encoders: their penultimate hidden states, concatenated, condition the UNet's
cross-attention; the second (with projection) gives a pooled embedding that, with the
``add_time_ids`` micro-conditioning (original size, crop corner, target size), enters the
UNet's time embedding. With ``force_zeros_for_empty_prompt`` the unconditional embedding
of guidance is all zeros, as in the stock pipeline.
"""

from __future__ import annotations

import torch

from ..generator import Generator, PromptEmbeds


class StableDiffusionXLGenerator(Generator):
    DEFAULT_STEPS, DEFAULT_GUIDANCE = 50, 5.0

    def __init__(self, *args, force_zeros_for_empty_prompt: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt

    @classmethod
    def from_pipeline(cls, name: str, pipe, **defaults) -> "StableDiffusionXLGenerator":
        pairs = [(e, t) for e, t in ((pipe.text_encoder, pipe.tokenizer), (pipe.text_encoder_2, pipe.tokenizer_2))
                 if e is not None]
        return cls(name, pipe.unet, pipe.scheduler, [e for e, _ in pairs], [t for _, t in pairs], vae=pipe.vae,
                   force_zeros_for_empty_prompt=pipe.config.force_zeros_for_empty_prompt, **defaults)

    unet = property(lambda self: self.denoiser)

    def _encode(self, prompts: list[str]) -> PromptEmbeds:
        hidden, pooled = [], None
        for tokenizer, enc in zip(self.tokenizers, self.text_encoders):
            ids, _ = self._token_ids(tokenizer, prompts, tokenizer.model_max_length)
            out = enc(ids.to(enc.device), output_hidden_states=True)
            if pooled is None and out[0].dim() == 2:  # the projected encoder's text embedding
                pooled = out[0]
            hidden.append(out.hidden_states[-2])
        return PromptEmbeds(torch.cat(hidden, -1), pooled)

    def uncond_embedding(self) -> PromptEmbeds:
        empty = self.encode_prompts([""])
        if not self.force_zeros_for_empty_prompt:
            return empty
        return PromptEmbeds(torch.zeros_like(empty.hidden), torch.zeros_like(empty.pooled))

    def _time_ids(self, batch: int) -> torch.Tensor:
        """``(batch, 6)``: original size, crop top-left (0, 0), target size, all the image size."""
        size = self.image_size
        return torch.tensor([[size, size, 0, 0, size, size]], dtype=self.dtype, device=self.device).repeat(batch, 1)

    def predict(self, x: torch.Tensor, t, cond: PromptEmbeds, guidance: float | None = None) -> torch.Tensor:
        added = {"text_embeds": cond.pooled, "time_ids": self._time_ids(x.shape[0])}
        return self.denoiser(x, t, encoder_hidden_states=cond.hidden, added_cond_kwargs=added).sample.float()

    def to(self, device=None, dtype=None) -> "StableDiffusionXLGenerator":
        super().to(device, dtype)
        # SDXL's VAE overflows in float16; the stock pipeline decodes it in float32 too
        if self.vae.dtype == torch.float16 and getattr(self.vae.config, "force_upcast", False):
            self.vae.to(torch.float32)
        return self
