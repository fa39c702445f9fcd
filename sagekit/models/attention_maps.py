"""Text attention maps: how much each image position attends to each text token.

Two kinds of layer carry them. Cross-attention (``attn2`` in the UNets of SD and SDXL and
in PixArt's DiT): ``capture_cross_attention`` swaps its processor for one that computes
the probabilities explicitly. Layers that project text keys of their own (``add_k_proj``:
the joint attention of SD3 and Flux, IF's added key/value attention) attend from image
queries to text and image keys at once; ``capture_added_kv_attention`` records their
image-to-text block, normalised over the text tokens, from forward hooks on the query and
text-key projections, leaving the processors alone. Maps are head-averaged ``(B, Q, L)``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F


class CrossAttentionRecorder:
    """A diffusers attention processor that records ``(B, Q, L)`` head-averaged attention
    probabilities into ``maps[name]`` (one entry per call) and returns the usual output.
    ``keep_grad``: keep them on the graph, on their device (for a loss on the maps)."""

    def __init__(self, maps: dict, name: str, keep_grad: bool = False):
        self.maps, self.name, self.keep_grad = maps, name, keep_grad

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        b, q_len, _ = hidden_states.shape
        # PixArt masks its padded text tokens: repeat the mask per head as diffusers does
        attention_mask = attn.prepare_attention_mask(attention_mask, encoder_hidden_states.shape[1], b)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B * heads, Q, L)
        mean = probs.float().view(b, attn.heads, q_len, -1).mean(1)
        self.maps.setdefault(self.name, []).append(mean if self.keep_grad else mean.detach().cpu())
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextmanager
def capture_cross_attention(unet, keep_grad: bool = False):
    """Within the block, every UNet call appends each cross-attention layer's maps to the
    yielded dict ``{layer name: [ (B, Q, L), ... ]}`` (on the graph with ``keep_grad``)."""
    maps: dict[str, list[torch.Tensor]] = {}
    original = unet.attn_processors
    unet.set_attn_processor({name: CrossAttentionRecorder(maps, name, keep_grad) if "attn2" in name else proc
                             for name, proc in original.items()})
    try:
        yield maps
    finally:
        unet.set_attn_processor(original)


def _record_added_kv(maps: dict, name: str, seen: dict, rotate, attn, inputs, output):
    """Forward hook of an attention layer: the softmax over text keys of its image queries."""
    q, k = seen.pop("q"), seen.pop("k")  # (B, Q, heads * D), (B, L, heads * D)
    q, k = q.unflatten(-1, (attn.heads, -1)), k.unflatten(-1, (attn.heads, -1))
    if getattr(attn, "norm_q", None) is not None:  # qk-normalisation acts per head, on D
        q = attn.norm_q(q)
    if getattr(attn, "norm_added_k", None) is not None:
        k = attn.norm_added_k(k)
    if rotate is not None:  # rotary position embedding of the image queries (Flux)
        q = rotate(q)
    scale = getattr(attn, "scale", q.shape[-1] ** -0.5)
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) * scale
    maps.setdefault(name, []).append(scores.softmax(-1).mean(1).detach().cpu())


@contextmanager
def capture_added_kv_attention(model, rotate=None):
    """Within the block, every call of each layer with its own text-key projection
    (``add_k_proj``) appends its image-to-text map ``(B, Q, L)`` to the yielded dict.
    ``rotate`` maps image queries ``(B, Q, heads, D)`` to their rotary-embedded form."""
    maps: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, attn in model.named_modules():
        if getattr(attn, "add_k_proj", None) is None or getattr(attn, "to_q", None) is None:
            continue
        seen: dict[str, torch.Tensor] = {}
        handles.append(attn.to_q.register_forward_hook(lambda m, i, o, seen=seen: seen.__setitem__("q", o)))
        handles.append(attn.add_k_proj.register_forward_hook(lambda m, i, o, seen=seen: seen.__setitem__("k", o)))
        handles.append(attn.register_forward_hook(partial(_record_added_kv, maps, name, seen, rotate)))
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


def capture_text_attention(model, rotate=None):
    """The text attention maps of ``model``: its added-key/value layers where it has them
    (SD3, Flux, IF), else its cross-attention layers (SD, SDXL, PixArt)."""
    if any(getattr(m, "add_k_proj", None) is not None for m in model.modules()):
        return capture_added_kv_attention(model, rotate)
    return capture_cross_attention(model)


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
        raise ValueError("no text attention maps were recorded")
    return torch.stack(resized).mean(0)


def attention_spread(token_map: torch.Tensor) -> torch.Tensor:
    """How spread out an attention map is: normalised entropy in [0, 1] per map
    (``(..., H, W)`` -> ``(...)``); 1 = uniform over the image."""
    p = token_map.flatten(-2)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
    return ent / math.log(p.shape[-1])
