import torch

from sagekit.models import load_generator
from sagekit.models.attention_maps import capture_cross_attention, spread, token_maps


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
    assert abs(spread(uniform).item() - 1) < 1e-6 and spread(peak).item() < 1e-6
