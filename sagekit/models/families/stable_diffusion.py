"""Stable Diffusion 1.x / 2.x (epsilon and v-prediction) and the toy latent models.

A UNet conditioned on the last hidden states of one CLIP text encoder; a VAE decodes.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch

from ..generator import Generator, PromptEmbeds


class StableDiffusionGenerator(Generator):

    @classmethod
    def from_pipeline(cls, name: str, pipe, **defaults) -> "StableDiffusionGenerator":
        return cls(name, pipe.unet, pipe.scheduler, [pipe.text_encoder], [pipe.tokenizer],
                   vae=getattr(pipe, "vae", None), **defaults)

    # the diffusers names of the parts, for readers and tests
    unet = property(lambda self: self.denoiser)
    text_encoder = property(lambda self: self.text_encoders[0])
    tokenizer = property(lambda self: self.tokenizers[0])

    def _encode(self, prompts: list[str]) -> PromptEmbeds:
        ids, mask = self._token_ids(self.tokenizer, prompts, self.tokenizer.model_max_length)
        # SD passes the mask only to encoders configured for it (SD 1.x/2.x are not)
        use_mask = getattr(self.text_encoder.config, "use_attention_mask", False)
        enc = self.text_encoder(ids.to(self.text_encoder.device),
                                attention_mask=mask.to(self.text_encoder.device) if use_mask else None)
        return PromptEmbeds(enc[0])

    def predict(self, x: torch.Tensor, t, cond: PromptEmbeds, guidance: float | None = None) -> torch.Tensor:
        return self.denoiser(x, t, encoder_hidden_states=cond.hidden).sample.float()

    def fine_tune_data(self, images: torch.Tensor, captions: Sequence[str]) -> tuple:
        """A copy whose UNet may be trained (this generator is left as it was), and what it
        trains on: latents of uint8 images ``(N, 3, H, W)``, the captions' text states and
        the empty prompt's, float32 on the CPU."""
        tuned = copy.copy(self)
        tuned.denoiser = copy.deepcopy(self.denoiser)
        tuned._prompt_cache = {}
        x = self.encode_images(images)
        with torch.no_grad():
            text = torch.cat([self.embed_prompts(captions[i:i + 500]).hidden.float().cpu()
                              for i in range(0, len(captions), 500)])
            uncond = self.uncond_embedding().hidden.float().cpu()
        return tuned, x, text, uncond
