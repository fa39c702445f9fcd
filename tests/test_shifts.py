"""The seed shifts move exactly the statistics they claim to move."""

import pytest
import torch

from sagekit.shifts import DEFAULT_LEVELS, SHIFTS, apply_shift


@pytest.fixture
def z():
    return torch.randn(64, 4, 16, 16, generator=torch.Generator().manual_seed(0))


def test_constant_mean_shift(z):
    out = apply_shift("constant", z, 0.15)
    assert torch.allclose(out.mean(), z.mean() + 0.15, atol=1e-5)
    assert torch.allclose(out.std(), z.std(), atol=1e-5)


def test_uniform_mean_shift_moves_the_mean_by_half(z):
    seeds = list(range(64))
    out = apply_shift("uniform", z, 0.4, seeds)
    assert abs((out - z).mean().item() - 0.2) < 0.005
    assert (out - z).min() >= 0 and (out - z).max() <= 0.4 + 1e-6
    # per-sample draws: the first sample does not depend on the batch
    assert torch.equal(apply_shift("uniform", z[:1], 0.4, seeds[:1]), out[:1])
    assert not torch.equal(out[0] - z[0], out[1] - z[1])
    with pytest.raises(ValueError, match="seeds"):
        apply_shift("uniform", z, 0.4)


def test_std_and_mixed_shifts(z):
    out = apply_shift("std", z, -0.3)
    assert torch.allclose(out.std(), 0.7 * z.std(), atol=1e-5)
    assert torch.allclose(out.mean(), 0.7 * z.mean(), atol=1e-6)
    mix = apply_shift("mixed", z, (0.2, -0.1))
    assert torch.allclose(mix.std(), 1.2 * z.std(), atol=1e-5)
    assert torch.allclose(mix.mean(), 1.2 * z.mean() - 0.1, atol=1e-5)
    with pytest.raises(ValueError):
        apply_shift("std", z, -1.0)


@pytest.mark.parametrize("n", [8, 16, 32, 64, 256])
def test_sort_shift_keeps_the_multiset_and_sorts_the_raster_prefix(z, n):
    out = apply_shift("sort", z, n)
    assert torch.equal(out.flatten(-2).sort(-1).values, z.flatten(-2).sort(-1).values)
    head = out.flatten(-2)[..., :n]
    assert (head[..., 1:] >= head[..., :-1]).all()
    assert torch.equal(out.flatten(-2)[..., n:], z.flatten(-2)[..., n:])
    if n < 256:
        assert not torch.equal(out, z)


def test_none_and_unknown(z):
    assert torch.equal(apply_shift("none", z, 0), z)
    with pytest.raises(KeyError, match="unknown shift"):
        apply_shift("rotate", z, 1)
    with pytest.raises(ValueError, match="n <= H\\*W"):
        apply_shift("sort", z, 10_000)


def test_default_levels_cover_the_paper_grid():
    assert set(DEFAULT_LEVELS) == set(SHIFTS) - {"none"}
    assert DEFAULT_LEVELS["constant"][0] == -0.2 and DEFAULT_LEVELS["constant"][-1] == 0.2
    assert len(DEFAULT_LEVELS["mixed"]) == 49 and DEFAULT_LEVELS["sort"] == [8, 16, 32, 64]
