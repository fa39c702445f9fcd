import math

import pytest
import torch

from sagekit.models import load_generator
from sagekit.models.attention_maps import attention_spread, capture_cross_attention, token_maps


def test_recorder_keeps_the_output_and_records_probabilities(tiny_sd):
    gen = load_generator(str(tiny_sd))
    z = gen.initial_noise([1, 2])
    emb = gen.encode_prompts(["a cat", "a dog"])
    plain = gen.denoise(z, emb, guidance=1.0, steps=2)
    with capture_cross_attention(gen.unet) as maps:
        recorded = gen.denoise(z, emb, guidance=1.0, steps=2)
    assert torch.allclose(plain, recorded, atol=1e-5)
    assert maps and all("attn2" in name for name in maps)
    m = next(iter(maps.values()))[0]
    assert m.shape[0] == 2 and m.shape[2] == emb.hidden.shape[1]
    assert torch.allclose(m.sum(-1), torch.ones(m.shape[:2]), atol=1e-4)  # a distribution over tokens
    tm = token_maps(maps, 8)
    assert tm.shape == (2, emb.hidden.shape[1], 8, 8)
    # processors are restored
    assert not any(type(p).__name__ == "CrossAttentionRecorder" for p in gen.unet.attn_processors.values())


def test_spread():
    uniform = torch.ones(4, 4)
    peak = torch.zeros(4, 4)
    peak[1, 2] = 1
    assert abs(attention_spread(uniform).item() - 1) < 1e-6 and attention_spread(peak).item() < 1e-6


# ---------------------------------------------------------------------------- joint attention
JOINT = {  # family -> (where the attention function lives, layout, image-query rows, text-key columns)
    "StableDiffusion3Pipeline": ("sdpa", lambda q, t: (slice(0, q), slice(q, q + t))),   # [image, text]
    "FluxPipeline": ("flux", lambda q, t: (slice(t, t + q), slice(0, t))),               # [text, image]
    "IFPipeline": ("sdpa", lambda q, t: (slice(0, q), slice(0, t))),                     # image queries; [text, image] keys
}


@pytest.mark.parametrize("cls", list(JOINT))
def test_joint_attention_maps_are_the_image_to_text_block_the_model_computes(cls, tmp_path, monkeypatch):
    """The recorded map equals the attention probabilities the denoiser really uses (read
    from its attention function), restricted to image queries and text keys and
    normalised over the text tokens; recording changes no image."""
    import diffusers.models.transformers.transformer_flux as flux_module

    from sagekit.testing import TINY_BUILDERS

    build, extra = TINY_BUILDERS[cls]
    gen = load_generator(str(build(tmp_path / cls)), **extra)
    z, emb = gen.initial_noise([1, 2]), gen.encode_prompts(["a red cat", "a blue dog"])
    plain = gen.denoise(z, emb, guidance=1.0, steps=2)

    seen = []

    def explicit(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):  # (B, H, L, D)
        p = (q @ k.transpose(-1, -2) * (scale or q.shape[-1] ** -0.5))
        p = (p + attn_mask if attn_mask is not None else p).softmax(-1)
        seen.append(p)
        return p @ v

    where, block = JOINT[cls]
    if where == "flux":  # (B, L, H, D) layout
        monkeypatch.setattr(flux_module, "dispatch_attention_fn", lambda q, k, v, attn_mask=None, **kw:
                            explicit(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask).transpose(1, 2))
    else:
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", explicit)
    with gen.capture_attention() as maps:
        recorded = gen.denoise(z, emb, guidance=1.0, steps=2)
    assert torch.allclose(plain, recorded, atol=1e-5)
    first = next(iter(maps.values()))[0]  # the first layer's first call
    n, q_len, t_len = first.shape
    assert n == 2 and t_len == emb.hidden.shape[1] and math.isqrt(q_len) ** 2 == q_len
    assert torch.allclose(first.sum(-1), torch.ones(n, q_len), atol=1e-4)
    rows, cols = block(q_len, t_len)
    ref = seen[0][:, :, rows, cols]
    ref = (ref / ref.sum(-1, keepdim=True)).mean(1)
    assert torch.allclose(first, ref.float(), atol=1e-5)
    assert token_maps(maps, 8).shape == (2, t_len, 8, 8)
