"""The GPU path's levers, proven where a CPU can: half precision and SDPA attention on every
family, a compiled denoiser that draws the eager images, and the batch size chosen from
free memory."""

import pytest
import torch
import torch.nn.functional as F

from sagekit.models import load_generator
from sagekit.models.registry import model_revision
from sagekit.models.speed import attention_kernels, auto_batch_size, parse_dtype
from sagekit.testing import TINY_BUILDERS

PROMPTS, SEEDS = ["a red cat", "a blue dog"], [1, 2]


@pytest.fixture(scope="module", params=list(TINY_BUILDERS))
def folder(request, tmp_path_factory):
    build, extra = TINY_BUILDERS[request.param]
    return build(tmp_path_factory.mktemp("speed") / request.param), extra


@pytest.mark.parametrize("dtype, mean_err", [("float16", 0.005), ("bfloat16", 0.03)])
def test_every_family_draws_in_half_precision(folder, dtype, mean_err):
    path, extra = folder
    full = load_generator(str(path), **extra).generate(PROMPTS, SEEDS, steps=3)
    half = load_generator(str(path), dtype=dtype, **extra)
    assert half.dtype == getattr(torch, dtype)
    images = half.generate(PROMPTS, SEEDS, steps=3)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
    # the same images up to rounding: bfloat16 keeps 8 bits of mantissa, float16 11
    assert (images - full).abs().mean() <= mean_err


def test_every_attention_layer_runs_through_sdpa(folder, monkeypatch):
    """diffusers' processors call torch's scaled_dot_product_attention (flash / memory-
    efficient kernels on CUDA): one call per attention layer of the denoiser."""
    path, extra = folder
    gen = load_generator(str(path), **extra)
    x, emb = gen.to_sampler(gen.initial_noise([0])), gen.encode_prompts(["a cat"])  # the text encoders count not
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    with torch.no_grad():
        gen.predict(x, gen.make_scheduler(steps=3).timesteps[0], emb)
    assert len(calls) == sum(attention_kernels(gen.denoiser).values()) > 0


def test_a_compiled_denoiser_draws_the_eager_images(tiny_sd):
    eager = load_generator(str(tiny_sd)).generate(PROMPTS, SEEDS, steps=2)
    gen = load_generator(str(tiny_sd), compile=True)
    assert gen.compiled and gen.denoiser._compiled_call_impl is not None
    assert gen.vae.decoder._compiled_call_impl is not None
    assert set(attention_kernels(gen.denoiser)) == {"FusedAttnProcessor2_0"}  # q, k, v in one projection
    assert (gen.generate(PROMPTS, SEEDS, steps=2) - eager).abs().max() <= 1e-4


def _fake_cuda(monkeypatch, free_mib: int):
    """torch.cuda's memory counters, driven by a probe that sets the peak it would reach
    and runs out of memory beyond ``free_mib``."""
    mib, state = 2**20, {"peak": 0}
    for name in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: state["peak"])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (free_mib * mib, 80 * 1024 * mib))

    def uses(peak_mib):
        if peak_mib > free_mib:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        state["peak"] = peak_mib * mib

    return uses


def test_the_batch_size_fills_free_memory(monkeypatch):
    """Peak memory grows 100 MiB per item over 1 GiB fixed; 10 GiB free, 80% of it used:
    (8192 - 1024) // 100 = 71 items."""
    uses = _fake_cuda(monkeypatch, 10 * 1024)
    probe = lambda b: uses(1024 + 100 * b)
    assert auto_batch_size(probe, "cuda") == 71
    assert auto_batch_size(probe, "cuda", limit=16) == 16
    assert auto_batch_size(probe, "cpu", default=32) == 32  # nothing to measure on a CPU


def test_the_batch_size_is_checked_where_another_phase_dominates(monkeypatch):
    """The denoiser's 2 GiB dominate small batches and the decoder's 300 MiB per image large
    ones: the slope from 1 to 2 (10 MiB) says 256 fit; running it runs out of memory, and
    the batch shrinks until its measured peak is within 80% of the 10 GiB: 25 images
    (7.5 GiB; 27 would need 8.1)."""
    uses = _fake_cuda(monkeypatch, 10 * 1024)
    sizes = []

    def probe(b):
        sizes.append(b)
        uses(max(2000 + 10 * b, 300 * b))

    assert auto_batch_size(probe, "cuda") == 25
    assert sizes[:3] == [1, 2, 256] and 256 * 300 > 10 * 1024


def test_precision_names_and_revisions(tiny_sd):
    assert parse_dtype("bf16") is parse_dtype("bfloat16") is torch.bfloat16 and parse_dtype("auto") is None
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        parse_dtype("fp8")
    # results drawn in another precision are other results: the revision says which
    full, half = load_generator(str(tiny_sd)), load_generator(str(tiny_sd), dtype="float16")
    assert model_revision(half) == model_revision(full) + "@float16" and "@" not in model_revision(full)
