"""Stable Diffusion 3 / 3.5: an MMDiT (``SD3Transformer2DModel``) with flow matching.

Three text encoders: CLIP-L and CLIP-G (penultimate hidden states, concatenated and padded
to T5's width) and T5 (its last hidden states, appended along the sequence; zeros when the
folder has no T5). The two CLIPs' projected embeddings, concatenated, are the pooled
conditioning. The unconditional embedding of guidance is the encoded empty prompt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..generator import PromptEmbeds
from .flow_matching import FlowMatchingGenerator, resolution_shift

T5_MAX_LENGTH = 256  # the pipeline's default ``max_sequence_length``


class StableDiffusion3Generator(FlowMatchingGenerator):
    DEFAULT_STEPS, DEFAULT_GUIDANCE = 28, 7.0

    @classmethod
    def from_pipeline(cls, name: str, pipe, **defaults) -> "StableDiffusion3Generator":
        encoders = [pipe.text_encoder, pipe.text_encoder_2]
        tokenizers = [pipe.tokenizer, pipe.tokenizer_2]
        if pipe.text_encoder_3 is not None:
            encoders.append(pipe.text_encoder_3)
            tokenizers.append(pipe.tokenizer_3)
        return cls(name, pipe.transformer, pipe.scheduler, encoders, tokenizers, vae=pipe.vae, **defaults)

    transformer = property(lambda self: self.denoiser)

    def _set_timesteps(self, sched, steps: int) -> None:
        kwargs = {}
        if sched.config.get("use_dynamic_shifting", False):
            p = self.denoiser.config.patch_size
            kwargs["mu"] = resolution_shift((self.latent_shape[1] // p) * (self.latent_shape[2] // p), sched.config)
        sched.set_timesteps(steps, device=self.device, **kwargs)

    def _encode(self, prompts: list[str]) -> PromptEmbeds:
        clip_hidden, pooled = [], []
        clip_length = self.tokenizers[0].model_max_length
        for tokenizer, enc in zip(self.tokenizers[:2], self.text_encoders[:2]):
            ids, _ = self._token_ids(tokenizer, prompts, clip_length)
            out = enc(ids.to(enc.device), output_hidden_states=True)
            pooled.append(out[0])
            clip_hidden.append(out.hidden_states[-2])
        width = self.denoiser.config.joint_attention_dim
        if len(self.text_encoders) == 3:  # a folder may leave T5 out
            ids, _ = self._token_ids(self.tokenizers[2], prompts, T5_MAX_LENGTH)
            t5 = self.text_encoders[2](ids.to(self.text_encoders[2].device))[0]
        else:
            t5 = torch.zeros(len(prompts), T5_MAX_LENGTH, width, device=self.device, dtype=clip_hidden[0].dtype)
        clip = torch.cat(clip_hidden, -1)
        clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return PromptEmbeds(torch.cat([clip, t5.to(clip.dtype)], -2), torch.cat(pooled, -1))

    def predict(self, x: torch.Tensor, t, cond: PromptEmbeds, guidance: float | None = None) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        return self.denoiser(hidden_states=x, timestep=t, encoder_hidden_states=cond.hidden,
                             pooled_projections=cond.pooled, return_dict=False)[0].float()
