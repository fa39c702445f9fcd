"""Stable Diffusion 1.x / 2.x (epsilon and v-prediction) and the toy latent models.

A UNet conditioned on the last hidden states of one CLIP text encoder; a VAE decodes.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..generator import Generator, PromptEmbeds, unet_fine_tuned


class StableDiffusionGenerator(Generator):

    @classmethod
    def from_pipeline(cls, name: str, pipe, **defaults) -> "StableDiffusionGenerator":
        return cls(name, pipe.unet, pipe.scheduler, [pipe.text_encoder], [pipe.tokenizer],
                   vae=getattr(pipe, "vae", None), **defaults)

    # the diffusers names of the parts, for readers and tests
    unet = property(lambda self: self.denoiser)
    text_encoder = property(lambda self: self.text_encoders[0])
    tokenizer = property(lambda self: self.tokenizers[0])

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        s = self.denoiser.config.sample_size
        h, w = (s, s) if isinstance(s, int) else tuple(s)
        return (self.denoiser.config.in_channels, h, w)

    def _encode(self, prompts: list[str]) -> PromptEmbeds:
        ids, mask = self._token_ids(self.tokenizer, prompts, self.tokenizer.model_max_length)
        # SD passes the mask only to encoders configured for it (SD 1.x/2.x are not)
        use_mask = getattr(self.text_encoder.config, "use_attention_mask", False)
        enc = self.text_encoder(ids.to(self.text_encoder.device),
                                attention_mask=mask.to(self.text_encoder.device) if use_mask else None)
        return PromptEmbeds(enc[0])

    def predict(self, x: torch.Tensor, t, cond: PromptEmbeds, guidance: float | None = None) -> torch.Tensor:
        return self.denoiser(x, t, encoder_hidden_states=cond.hidden).sample.float()

    def fine_tuned(self, images: torch.Tensor, captions: Sequence[str], steps: int, lr: float = 5e-4,
                   trainable: str = "all", batch_size: int = 64, seed: int = 0, progress: bool = False) -> Generator:
        """A copy whose UNet continued training on (uint8 images ``(N, 3, H, W)``, captions)
        with the model's own noise schedule; this generator is left as it was.
        ``trainable``: ``"all"`` or ``"cross-attention"`` (key/value projections only)."""
        return unet_fine_tuned(self, images, captions, steps, lr, trainable, batch_size, seed, progress)
