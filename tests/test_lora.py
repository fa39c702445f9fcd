"""LoRA fine-tuning (models/lora.py): only the adapters learn, the model it copied stays as
it was, and the adapters train in float32 under half precision."""

import pytest
import torch

from sagekit.models.lora import lora_fine_tuned, lora_parameters
from sagekit.models.registry import load_generator
from sagekit.toy.world import make_dataset


@pytest.fixture(scope="module")
def data():
    batch = make_dataset(8, seed=3)
    return batch.images, batch.captions


def _weights(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_only_the_adapters_learn_and_the_original_is_untouched(data, dtype):
    gen = load_generator("toy", dtype=dtype)
    before = _weights(gen.denoiser)
    tuned = lora_fine_tuned(gen, *data, steps=4, lr=1e-2, rank=2, batch_size=4, seed=0)
    after = _weights(tuned.denoiser)
    adapters = {n for n in after if "lora_" in n}
    assert adapters and lora_parameters(tuned) == sum(after[n].numel() for n in adapters)
    assert lora_parameters(gen) == 0 and all(torch.equal(before[n], p) for n, p in _weights(gen.denoiser).items())
    # peft names a wrapped projection's own weight "...to_q.base_layer.weight"
    base = {n: n.replace(".base_layer", "") for n in after if n not in adapters}
    assert all(torch.equal(after[n], before[o]) for n, o in base.items())
    # the zero-initialised up-projections (lora_B) moved: the adapters learned
    assert any(after[n].abs().max() > 0 for n in adapters if "lora_B" in n)
    assert all(after[n].dtype == torch.float32 for n in adapters)
    assert all(after[n].dtype == getattr(torch, dtype) for n in base)
    assert not any(p.requires_grad for p in tuned.denoiser.parameters())


def test_lora_refuses_bad_input(data):
    gen = load_generator("toy")
    images, captions = data
    with pytest.raises(ValueError, match="rank must be at least 1"):
        lora_fine_tuned(gen, images, captions, steps=1, rank=0)
    with pytest.raises(ValueError, match="as many captions as images"):
        lora_fine_tuned(gen, images, captions[:-1], steps=1)
    with pytest.raises(ValueError, match="px"):
        lora_fine_tuned(gen, images[..., :16, :16], captions, steps=1)
