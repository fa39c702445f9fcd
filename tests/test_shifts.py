"""The seed shifts are paper 001's (§3.2) and move exactly the statistics they claim to move."""

import pytest
import torch

from sagekit.shifts import DEFAULT_LEVELS, FORMULAS, SHIFTS, apply_shift, grid


@pytest.fixture
def z():
    return torch.randn(64, 4, 16, 16, generator=torch.Generator().manual_seed(0))


def test_constant_mean_shift(z):
    out = apply_shift("UMS", z, 0.15)
    assert torch.allclose(out.mean(), z.mean() + 0.15, atol=1e-5)
    assert torch.allclose(out.std(), z.std(), atol=1e-5)


def test_uniform_mean_shift_moves_the_mean_by_half(z):
    seeds = list(range(64))
    out = apply_shift("URMS", z, 0.4, seeds)
    assert abs((out - z).mean().item() - 0.2) < 0.005
    assert (out - z).min() >= 0 and (out - z).max() <= 0.4 + 1e-6
    # per-sample draws: the first sample does not depend on the batch
    assert torch.equal(apply_shift("URMS", z[:1], 0.4, seeds[:1]), out[:1])
    assert not torch.equal(out[0] - z[0], out[1] - z[1])
    with pytest.raises(ValueError, match="seeds"):
        apply_shift("URMS", z, 0.4)


def test_std_and_mixed_shifts_follow_the_paper_sign(z):
    """eta_s = -alpha_s * z (paper 001 §3.2): a positive alpha_s shrinks the noise."""
    assert torch.equal(apply_shift("SDS", z, 0.1), 0.9 * z)
    assert torch.equal(apply_shift("SDS", z, -0.3), 1.3 * z)
    assert torch.allclose(apply_shift("SDS", z, 0.3).std(), 0.7 * z.std(), atol=1e-5)
    assert torch.equal(apply_shift("MS", z, (0.1, 0.05)), 0.9 * z + 0.05)
    mix = apply_shift("MS", z, (-0.2, -0.1))
    assert torch.allclose(mix.std(), 1.2 * z.std(), atol=1e-5)
    assert torch.allclose(mix.mean(), 1.2 * z.mean() - 0.1, atol=1e-5)
    with pytest.raises(ValueError, match="alpha_s < 1"):
        apply_shift("SDS", z, 1.0)


@pytest.mark.parametrize("n", [8, 16, 32, 64, 256])
def test_sort_shift_keeps_the_multiset_and_sorts_the_raster_prefix(z, n):
    out = apply_shift("PAS", z, n)
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
        apply_shift("PAS", z, 10_000)


def test_default_levels_are_the_paper_grid():
    """§4.1: UMS and URMS in [-0.2, 0.2] step 0.05; SDS in [-0.3, 0.3] step 0.1; MS alpha_c in
    [-0.15, 0.15] step 0.05 x alpha_s in [-0.3, 0.3] step 0.1; PAS n in {8, 16, 32, 64}."""
    assert set(DEFAULT_LEVELS) == set(SHIFTS) - {"none"} == set(FORMULAS)
    for name in ("UMS", "URMS"):
        assert DEFAULT_LEVELS[name] == [-0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2]
    assert DEFAULT_LEVELS["SDS"] == [-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3]
    assert len(DEFAULT_LEVELS["MS"]) == 49 and {c for _, c in DEFAULT_LEVELS["MS"]} == {-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15}
    assert DEFAULT_LEVELS["PAS"] == [8, 16, 32, 64]


def test_a_grid_is_named_paper_or_given():
    paper = grid("paper")
    assert paper == {k: list(v) for k, v in DEFAULT_LEVELS.items()} and paper is not DEFAULT_LEVELS
    paper["UMS"].append(9.0)  # a copy: the paper's grid stays as it is
    assert 9.0 not in DEFAULT_LEVELS["UMS"]
    assert grid({"SDS": [0.1]}) == {"SDS": [0.1]}
    with pytest.raises(ValueError, match="'paper' or a dict"):
        grid("papers")


def test_urms_draws_per_element_or_per_image(z):
    """Per element (the default) the mean moves by alpha/2 and the spread grows; per image the
    whole latent moves by one draw alpha*u: its spread is unchanged, and so is a sample's
    shift when its batch changes."""
    seeds = list(range(z.shape[0]))
    element, image = apply_shift("URMS", z, 1.0, seeds), apply_shift("URMS", z, 1.0, seeds, urms_draw="image")
    moved = (image - z).flatten(1)
    assert torch.allclose(moved, moved[:, :1].expand_as(moved)) and ((moved[:, 0] >= 0) & (moved[:, 0] <= 1)).all()
    assert torch.allclose(image.flatten(1).std(1), z.flatten(1).std(1), atol=1e-5)
    assert (element - z).flatten(1).std(1).min() > 0.2  # U[0, 1] per element: std 0.29
    assert torch.equal(apply_shift("URMS", z[1:2], 1.0, seeds[1:2], urms_draw="image"), image[1:2])
    with pytest.raises(ValueError, match="per element or per image"):
        apply_shift("URMS", z, 1.0, seeds, urms_draw="channel")
