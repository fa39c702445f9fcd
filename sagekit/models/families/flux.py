"""Flux.1 (dev and schnell): a ``FluxTransformer2DModel`` with flow matching on packed latents.

Noise is drawn, shifted and returned in the VAE's latent layout ``(C, h, w)``, so the seed
shifts act per channel as on SD; the sampler works on 2x2 patches packed into tokens
``(h/2 * w/2, 4C)``. The CLIP text encoder's pooled output and T5's hidden states condition
the transformer; Flux-dev embeds the guidance scale instead of running a second,
unconditional pass, and schnell takes no guidance at all. Timesteps follow the
resolution-dependent shift of the stock pipeline.
"""

from __future__ import annotations

import numpy as np
import torch

from ..generator import PromptEmbeds
from .flow_matching import FlowMatchingGenerator, resolution_shift

T5_MAX_LENGTH = 512  # the pipeline's default ``max_sequence_length``
DEFAULT_RESOLUTION = 1024


class FluxGenerator(FlowMatchingGenerator):
    DEFAULT_STEPS, DEFAULT_GUIDANCE = 28, 3.5
    SETS_RESOLUTION = True

    def __init__(self, *args, resolution: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.denoiser.config.guidance_embeds and kwargs.get("default_steps") is None:
            self.default_steps, self.default_guidance = 4, 0.0  # schnell: a few steps, no guidance
        self.resolution = resolution or DEFAULT_RESOLUTION

    @classmethod
    def from_pipeline(cls, name: str, pipe, **defaults) -> "FluxGenerator":
        return cls(name, pipe.transformer, pipe.scheduler, [pipe.text_encoder, pipe.text_encoder_2],
                   [pipe.tokenizer, pipe.tokenizer_2], vae=pipe.vae, **defaults)

    transformer = property(lambda self: self.denoiser)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = 2 * (self.resolution // (self.vae_scale_factor * 2))  # packing needs an even side
        return (self.denoiser.config.in_channels // 4, side, side)

    def uses_guidance(self, guidance: float) -> bool:
        return False  # dev embeds guidance; neither runs an unconditional pass

    # ------------------------------------------------------------------ packing
    def to_sampler(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` -> ``(N, h/2 * w/2, 4C)``: each 2x2 patch becomes one token."""
        n, c, h, w = x.shape
        return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // 2) * (w // 2), 4 * c)

    def from_sampler(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.latent_shape
        n = x.shape[0]
        return x.view(n, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)

    def _image_ids(self) -> torch.Tensor:
        """``(h/2 * w/2, 3)`` position ids of the packed tokens: (0, row, column)."""
        _, h, w = self.latent_shape
        rows, cols = torch.meshgrid(torch.arange(h // 2), torch.arange(w // 2), indexing="ij")
        return torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).to(self.device, self.dtype)

    # ------------------------------------------------------------------ sampling
    def _set_timesteps(self, sched, steps: int) -> None:
        _, h, w = self.latent_shape
        mu = resolution_shift((h // 2) * (w // 2), sched.config)
        if sched.config.get("use_flow_sigmas", False):
            sched.set_timesteps(steps, device=self.device, mu=mu)
        else:  # the pipeline's sigmas: evenly from 1 down to 1/steps, then shifted by mu
            sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), device=self.device, mu=mu)
        sched.set_begin_index(0)

    def _encode(self, prompts: list[str]) -> PromptEmbeds:
        clip_tok, t5_tok = self.tokenizers
        clip, t5 = self.text_encoders
        ids, _ = self._token_ids(clip_tok, prompts, clip_tok.model_max_length)
        pooled = clip(ids.to(clip.device), output_hidden_states=False).pooler_output
        ids, _ = self._token_ids(t5_tok, prompts, T5_MAX_LENGTH)
        hidden = t5(ids.to(t5.device), output_hidden_states=False)[0]
        return PromptEmbeds(hidden, pooled.to(hidden.dtype))

    def capture_attention(self):
        """The image-to-text block of every double-stream block's joint attention, with
        the image queries rotated by their positions as the transformer rotates them (text
        positions are all zero, so text keys are not rotated)."""
        from diffusers.models.embeddings import apply_rotary_emb

        from ..attention_maps import capture_added_kv_attention

        rope = self.denoiser.pos_embed(self._image_ids())
        return capture_added_kv_attention(self.denoiser, lambda q: apply_rotary_emb(q, rope, sequence_dim=1))

    def predict(self, x: torch.Tensor, t, cond: PromptEmbeds, guidance: float | None = None) -> torch.Tensor:
        t = (t.expand(x.shape[0]) if t.dim() == 0 else t).to(x.dtype)
        g = None
        if self.denoiser.config.guidance_embeds:
            g = torch.full((x.shape[0],), self.guidance_of(guidance),
                           device=x.device, dtype=torch.float32)
        text_ids = torch.zeros(cond.hidden.shape[1], 3, device=x.device, dtype=x.dtype)
        return self.denoiser(hidden_states=x, timestep=t / 1000, guidance=g, pooled_projections=cond.pooled,
                             encoder_hidden_states=cond.hidden, txt_ids=text_ids, img_ids=self._image_ids(),
                             return_dict=False)[0].float()
