"""Cross-attention maps: per-token attention probabilities of a diffusers UNet.

``capture_cross_attention(unet)`` swaps the processor of every cross-attention layer
(``attn2``) for one that computes the attention probabilities explicitly and keeps their
mean over heads; the other layers keep their processors.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F


class CrossAttentionRecorder:
    """A diffusers attention processor that records ``(B, Q, L)`` head-averaged attention
    probabilities into ``maps[name]`` (one entry per call) and returns the usual output."""

    def __init__(self, maps: dict, name: str):
        self.maps, self.name = maps, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        b, q_len, _ = hidden_states.shape
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B * heads, Q, L)
        self.maps.setdefault(self.name, []).append(
            probs.detach().float().view(b, attn.heads, q_len, -1).mean(1).cpu())
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextmanager
def capture_cross_attention(unet):
    """Within the block, every UNet call appends each cross-attention layer's maps to the
    yielded dict ``{layer name: [ (B, Q, L), ... ]}``."""
    maps: dict[str, list[torch.Tensor]] = {}
    original = unet.attn_processors
    unet.set_attn_processor({name: CrossAttentionRecorder(maps, name) if "attn2" in name else proc
                             for name, proc in original.items()})
    try:
        yield maps
    finally:
        unet.set_attn_processor(original)


def token_maps(maps: dict[str, list[torch.Tensor]], size: int) -> torch.Tensor:
    """Average every recorded layer and call into one map per token: ``(B, L, size, size)``,
    each layer's square map resized (bilinear) to ``size``."""
    resized = []
    for calls in maps.values():
        for m in calls:  # (B, Q, L)
            side = int(math.isqrt(m.shape[1]))
            grid = m.transpose(1, 2).reshape(m.shape[0], m.shape[2], side, side)
            resized.append(F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False))
    if not resized:
        raise ValueError("no cross-attention maps were recorded")
    return torch.stack(resized).mean(0)


def spread(token_map: torch.Tensor) -> torch.Tensor:
    """How spread out an attention map is: normalised entropy in [0, 1] per map
    (``(..., H, W)`` -> ``(...)``); 1 = uniform over the image."""
    p = token_map.flatten(-2)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
    return ent / math.log(p.shape[-1])
