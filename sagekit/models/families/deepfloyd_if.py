"""DeepFloyd IF stage I and the toy pixel model: a UNet in pixel space with learned variance.

IF conditions on T5 states of the lower-cased prompt (77 tokens, with the attention mask);
its default sampler is DDPM with ``learned_range`` variance, whose step reads the predicted
variance channels. The toy pixel model has the IF layout with a CLIP text encoder, which it
was trained on without a mask, so CLIP encoders are called as Stable Diffusion calls them.
"""

from __future__ import annotations

from transformers import CLIPTextModel

from ..generator import PromptEmbeds
from .stable_diffusion import StableDiffusionGenerator

IF_MAX_LENGTH = 77


class IFGenerator(StableDiffusionGenerator):
    DEFAULT_STEPS, DEFAULT_GUIDANCE = 100, 7.0

    def _encode(self, prompts: list[str]) -> PromptEmbeds:
        if isinstance(self.text_encoder, CLIPTextModel):
            return super()._encode(prompts)
        # IF's own preprocessing without caption cleaning: lower case, no outer spaces
        ids, mask = self._token_ids(self.tokenizer, [p.lower().strip() for p in prompts], IF_MAX_LENGTH)
        dev = self.text_encoder.device
        return PromptEmbeds(self.text_encoder(ids.to(dev), attention_mask=mask.to(dev))[0])
