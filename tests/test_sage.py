"""SAGE parts: goals, certificates, projection, signed steps, and the latent search on a
tiny random Stable-Diffusion-architecture pipeline."""

import pytest
import timm
import torch

from sagekit.models import load_generator
from sagekit.models.judges import EdgeJudge, Ensemble, Judge, TimmJudge
from sagekit.studies.latent_search import (LatentSearchConfig, cost_per_iteration, found_verified,
                                          residual_speedup_bound, search_latents)
from sagekit.studies.sage import (RobustGoal, TargetGoal, UnrelatedGoal, certify, chi2_bounds, project_norm,
                                  project_normal, signed_step)

from fixed_judge import LABELS, FixedJudge




def fixed_ensemble(*tables, weights=None):
    return Ensemble("e", [FixedJudge(str(i), t) for i, t in enumerate(tables)], weights=weights)


def test_robust_goal_loss_and_found():
    ens = fixed_ensemble([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], [[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]], weights=[3, 1])
    x, target = torch.zeros(2, 3, 4, 4), torch.tensor([0, 0])
    assert torch.allclose(RobustGoal(ens).loss(x, target), torch.tensor([0.75 * 0.7 + 0.25 * 0.2, 0.1]))
    assert RobustGoal(ens).found(x, target).tolist() == [False, True]
    # image 1: both judges confidently say "car" -> unrelated; a lower bar than 0.8 is met, a higher is not
    assert UnrelatedGoal(ens, confidence=0.8).found(x, target).tolist() == [False, True]
    assert UnrelatedGoal(ens, confidence=0.9).found(x, target).tolist() == [False, False]
    assert TargetGoal(ens).found(x, torch.tensor([2, 2])).tolist() == [False, True]


def test_certificates():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 32, 32, generator=g)
    assert certify(z).passed
    assert not certify(1.3 * z).norm_ok and not certify(1.3 * z).passed
    # right variance, wrong shape: uniform on [-sqrt(3), sqrt(3)]
    u = (torch.rand(4, 32, 32, generator=g) * 2 - 1) * 3 ** 0.5
    c = certify(u)
    assert c.norm_ok and not c.normal_ok


def test_projection_and_signed_step():
    lo, hi = chi2_bounds(1024)
    assert lo < 1024 < hi
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 4, 16, 16, generator=g) * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1)
    inside = (z.flatten(1).pow(2).sum(1) >= lo) & (z.flatten(1).pow(2).sum(1) <= hi)
    assert inside.tolist() == [False, True, False]
    p = project_norm(z, lo, hi)
    sq = p.flatten(1).pow(2).sum(1)
    # too short -> lifted to lo, typical -> untouched, too long -> shrunk to hi; direction kept
    assert torch.allclose(sq, torch.tensor([lo, z[1].pow(2).sum().item(), hi]), rtol=1e-4)
    assert torch.allclose(p[1], z[1])
    assert torch.allclose(torch.nn.functional.cosine_similarity(p.flatten(1), z.flatten(1)), torch.ones(3))
    x = torch.zeros(2, 3)
    grad = torch.tensor([[1.0, -2.0, 0.0], [5.0, 5.0, 5.0]])
    out = signed_step(x, grad, 0.5, 0.3, active=torch.tensor([True, False]))
    assert torch.allclose(out, torch.tensor([[-0.3, 0.3, 0.0], [0.0, 0.0, 0.0]]))


@pytest.fixture(scope="module")
def tiny(tiny_sd):
    gen = load_generator(str(tiny_sd))
    torch.manual_seed(0)
    judges = [TimmJudge("r", timm.create_model("test_resnet", pretrained=False, num_classes=3).eval(), LABELS),
              EdgeJudge("e", TimmJudge("r2", timm.create_model("test_resnet", pretrained=False, num_classes=3).eval(), LABELS))]
    ens = Ensemble("ens", judges).eval().requires_grad_(False)
    return gen, ens


@pytest.mark.parametrize("mode", ["exact", "residual"])
def test_latent_search_runs_and_reports(tiny, mode):
    gen, ens = tiny
    cfg = LatentSearchConfig(iterations=2, mode=mode, k=1, steps=3, guidance=2.0)
    res = search_latents(gen, RobustGoal(ens), ["a cat", "a dog"], [0, 1], [3, 4], cfg, progress=False)
    t = res.table
    assert len(t) == 2 and {"found", "verified", "certified", "chi2_p", "ks_p", "iterations"} <= set(t.columns)
    assert res.z.shape == res.z0.shape == (2, 4, 8, 8)
    assert (res.z - res.z0).abs().max() <= 1.0 + 1e-6
    assert res.images_after.shape == (2, 3, 16, 16)
    # every sample either met the goal at once (no step taken) or moved
    moved = (res.z - res.z0).flatten(1).abs().sum(1) > 0
    assert all(m or f for m, f in zip(moved.tolist(), (t["iterations"] == 0).tolist()))
    cost = cost_per_iteration(gen, RobustGoal(ens), "a cat", 0, 1, cfg, iterations=1)
    assert cost["seconds"] > 0 and cost["peak_memory_mb"] > 0


def test_normality_projection_moves_only_failing_samples_and_keeps_order():
    g = torch.Generator().manual_seed(1)
    normal = torch.randn(4, 16, 16, generator=g)
    uniform = (torch.rand(4, 16, 16, generator=g) * 2 - 1) * 3 ** 0.5  # unit variance, not normal
    z = torch.stack([normal, uniform])
    assert certify(z[0]).normal_ok and not certify(z[1]).normal_ok
    p = project_normal(z, alpha=0.02)
    assert torch.equal(p[0], z[0])
    assert certify(p[1], alpha=0.02).normal_ok
    # the rank order of the values is kept, and the move is a partial one
    assert torch.equal(p[1].flatten().argsort(), z[1].flatten().argsort())
    assert 0 < (p[1] - z[1]).abs().max() < 1


def test_residual_speedup_bound():
    # 25 steps, 2 with gradient: 100 forward-pass units against 29
    assert residual_speedup_bound(25, 2) == pytest.approx(100 / 29)
    # a residual pass through every step is exact's cost without checkpointing (4N vs 3N)
    assert residual_speedup_bound(10, 10) == pytest.approx(4 / 3)
    # below 4 whatever k is: 5x needs more than the residual gradient
    assert all(residual_speedup_bound(n, k) < 4 for n in (10, 25, 50, 1000) for k in range(1, min(n, 8) + 1))
    with pytest.raises(ValueError):
        residual_speedup_bound(5, 0)


def test_bad_search_parameters_are_refused():
    with pytest.raises(ValueError, match="mode"):
        LatentSearchConfig(mode="approx")
    with pytest.raises(ValueError, match="invalid"):
        LatentSearchConfig(lr=-1)


class _Says(Judge):
    """A verifier with a fixed opinion (it is never in a search's gradient path)."""

    def __init__(self, name, probs, labels=LABELS):
        super().__init__(name, labels)
        self.register_buffer("p", torch.tensor(probs))

    def logits(self, images):
        return self.p.log().expand(len(images), -1)


def test_the_held_out_verifier_decides_verified_on_another_sampler(tiny):
    """`found` is the search ensemble's; `verified` is the verifier's alone, judged on the
    latent drawn again with another sampler; the verifier's labels are matched by name."""
    gen, ens = tiny
    cfg = LatentSearchConfig(iterations=2, mode="residual", k=1, steps=3, guidance=2.0)
    args = (gen, RobustGoal(ens), ["a cat", "a dog", "a car"], [0, 1, 2], [3, 4, 5], cfg)
    sees_all = Ensemble("sees", [_Says("v", [0.34, 0.33, 0.33])])  # top-1 always "cat"
    # the same labels in another order: "cat" is the verifier's last label
    reordered = Ensemble("reordered", [_Says("w", [0.2, 0.2, 0.6], labels=("dog", "car", "cat"))])
    plain = search_latents(*args, progress=False)
    res = search_latents(*args, progress=False, verifier=sees_all)
    assert res.verifier == "sees" and res.verify_sampler == gen.other_sampler() == "dpm"  # the tiny SD samples with DDIM
    assert res.table["found"].tolist() == plain.table["found"].tolist()
    # this verifier sees "cat" in every image: only the "cat" search can never be verified
    assert not res.table["verified"][0] and list(res.table["verified"][1:]) == list(res.table["found"][1:])
    again = search_latents(*args, progress=False, verifier=reordered)
    assert again.table["verified"].tolist() == res.table["verified"].tolist()
    assert res.table["found"][1:].any()  # the check above is not vacuous
    counts = found_verified(res)
    assert counts["verified"] <= counts["found"] <= counts["searched"] == 3


def test_the_spatial_certificate_rejects_arranged_latents_and_keeps_its_level():
    """PAS (sorting values in place) keeps the norm and the value distribution, so the
    chi-square and KS certificates pass it; the lag-1 autocorrelation test does not. On
    fresh N(0, I) draws each test rejects at about its level alpha."""
    from scipy.stats import binomtest

    from sagekit.shifts import apply_shift

    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 4, 16, 16, generator=g)
    certs = [certify(x, alpha=0.05) for x in z]
    for name in ("norm_ok", "normal_ok", "spatial_ok"):
        rejected = sum(not getattr(c, name) for c in certs)
        assert binomtest(rejected, len(certs), 0.05).pvalue > 0.001, (name, rejected)
    arranged = apply_shift("PAS", z[:20], 64, list(range(20)))
    for x, before in zip(arranged, certs):
        c = certify(x, alpha=0.05)
        # the same values: the norm and KS verdicts cannot change; the arrangement is caught
        assert (c.chi2_p, c.ks_p) == pytest.approx((before.chi2_p, before.ks_p))
        assert before.spatial_ok and not c.spatial_ok and not c.passed
