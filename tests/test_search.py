"""The search engine's parts (goals, certificates, projections, the signed-descent loop
and its checkpoints) and the latent search on a tiny random Stable-Diffusion-architecture
pipeline."""

import pytest
import timm
import torch

from sagekit.models import load_generator
from sagekit.models.judges import EdgeJudge, Ensemble, Judge, TimmJudge
from sagekit.studies.latent_search import (LatentSearchConfig, cost_per_iteration, found_verified,
                                          residual_speedup_bound, search_latents)
from sagekit.search import (Checkpoint, RobustGoal, SearchState, TargetGoal, TokenRows, UnrelatedGoal, certify,
                            chi2_bounds, project_norm, project_normal, signed_descent)

from fixed_judge import LABELS, ColourJudge, FixedJudge
from interrupt import killed




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


def test_norm_projection():
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
    # targets the first judge sees in the unsearched images: the goal (every judge misses it) is not met at once
    with torch.no_grad():
        targets = ens.judges[0](gen.generate(["a cat", "a dog"], [3, 4], guidance=2.0, steps=3)).argmax(-1).tolist()
    res = search_latents(gen, RobustGoal(ens), ["a cat", "a dog"], targets, [3, 4], cfg, progress=False)
    t = res.table
    assert len(t) == 2 and {"found", "verified", "certified", "chi2_p", "ks_p", "iterations"} <= set(t.columns)
    assert res.z.shape == res.z0.shape == (2, 4, 8, 8)
    assert (res.z - res.z0).abs().max() <= 1.0 + 1e-6
    assert res.images_after.shape == (2, 3, 16, 16)
    # the search stepped (a sample that met the goal at once would prove nothing), and every sample that
    # stepped moved, by signed steps of lr inside the bound
    stepped = (~t["failed_at_start"]).tolist()
    moved = ((res.z - res.z0).flatten(1).abs().sum(1) > 0).tolist()
    assert any(stepped) and all(m for m, s in zip(moved, stepped) if s)
    assert all(not m for m, s in zip(moved, stepped) if not s)
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
    """A config built in Python obeys the study's declared rules, with the same message."""
    with pytest.raises(ValueError, match="'mode' must be one of 'exact', 'residual'"):
        LatentSearchConfig(mode="approx")
    with pytest.raises(ValueError, match="'lr' must be a number above 0"):
        LatentSearchConfig(lr=-1)
    with pytest.raises(ValueError, match="'steps' must be an integer from 1"):
        LatentSearchConfig(steps=0)  # None, not 0, is the model's default


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


class _Box:
    """A transformation for the loop's own tests: steps of 0.25, values kept in [-1, 1]."""

    step = 0.25

    def project(self, rows, index):
        return rows.clamp(-1, 1)


class _Quadratic:
    """loss = ||x - c||^2 per row, found when below 0.2; records the iterations it saw,
    and can be told to die (a killed run) at one of them."""

    def __init__(self, centres, die_at=None):
        self.c, self.die_at, self.seen = torch.tensor(centres), die_at, []

    def __call__(self, rows, index, it, grad):
        if it == self.die_at:
            raise KeyboardInterrupt
        self.seen.append(it)
        loss = (rows["x"] - self.c[index]).pow(2).sum(1)
        return loss, (loss < 0.2).cpu()


def _quadratic_search(objective, iterations=6, checkpoint=None):
    state = SearchState({"x": torch.zeros(3, 2)})
    return signed_descent(objective, {"x": _Box()}, state, iterations, checkpoint=checkpoint, progress=False)


def test_signed_descent_steps_projects_and_stops_each_row_at_its_goal():
    # row 0 walks to (1, 1) in steps of 0.25 and meets the goal at (0.75, 0.75), after 3 steps;
    # row 1 meets it before any step; row 2 is pushed along one axis (the other's gradient is 0) into the box wall
    state = _quadratic_search(_Quadratic([[1.0, 1.0], [0.25, 0.0], [-3.0, 0.0]]))
    assert state.found_at.tolist() == [3, 0, -1]
    assert torch.equal(state.values["x"], torch.tensor([[0.75, 0.75], [0.0, 0.0], [-1.0, 0.0]]))
    assert state.iteration == 6 and len(state.losses) == 6
    assert state.losses[-1] == 4.0  # the mean over the rows still searching: row 2 alone, at the wall


def test_a_killed_search_resumes_from_its_checkpoint_and_ends_the_same(tmp_path):
    centres = [[1.0, 1.0], [0.25, 0.0], [-3.0, 0.0]]
    whole = _quadratic_search(_Quadratic(centres))
    ckpt = Checkpoint.under(tmp_path, {"search": "quadratic"})
    with pytest.raises(KeyboardInterrupt):
        _quadratic_search(_Quadratic(centres, die_at=2), checkpoint=ckpt)
    again = _Quadratic(centres)
    resumed = _quadratic_search(again, checkpoint=ckpt)
    assert again.seen[0] == 2  # it went on from the last finished step, not from the start
    assert torch.equal(resumed.values["x"], whole.values["x"]) and torch.equal(resumed.found_at, whole.found_at)
    assert resumed.losses == whole.losses
    # another search's checkpoint is never resumed
    other = _Quadratic(centres)
    _quadratic_search(other, checkpoint=Checkpoint(ckpt.path, "another search"))
    assert other.seen[0] == 0
    # a garbled checkpoint is set aside, named, and the search starts afresh and ends the same
    ckpt.path.write_bytes(ckpt.path.read_bytes()[:40])
    fresh = _Quadratic(centres)
    with pytest.warns(UserWarning, match=f"{ckpt.path.name}.*set aside"):
        again = _quadratic_search(fresh, checkpoint=ckpt)
    assert fresh.seen[0] == 0 and torch.equal(again.values["x"], whole.values["x"])
    assert ckpt.path.with_name(ckpt.path.name + ".corrupt").exists()


def test_token_rows_move_in_units_of_the_table_spread():
    mean, std = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.1, 2.0, 0.5])
    rows = TokenRows(mean, std, lr=0.05, bound=2.5)
    assert torch.allclose(rows.step, torch.tensor([0.005, 0.1, 0.025]))
    far = torch.tensor([[9.0, -9.0, 0.0]])
    assert torch.allclose(rows.project(far), torch.tensor([[0.25, -4.0, 0.0]]))  # mean +- 2.5 spreads


def test_the_latent_search_lowers_a_differentiable_judges_loss(tiny):
    """On a fixed judge that reads colour (every pixel has a gradient), the search must
    move the latents, and the goal's loss must fall."""
    gen, _ = tiny
    goal = RobustGoal(Ensemble("colour", [ColourJudge()]))
    cfg = LatentSearchConfig(iterations=4, lr=0.1, mode="exact", steps=2, guidance=2.0)
    # the target is what the judge sees at the start: no sample meets the goal before a step
    target = goal.ensemble(gen.generate(["a cat", "a dog"], [3, 4], 2.0, 2)).argmax(-1)
    res = search_latents(gen, goal, ["a cat", "a dog"], target.tolist(), [3, 4], cfg, progress=False)
    before, after = (goal.loss(x, target) for x in (res.images_before, res.images_after))
    assert not res.table["failed_at_start"].any() and (after < before).all(), (before, after)
    assert ((res.z - res.z0).flatten(1).abs().sum(1) > 0).all()


def test_a_killed_latent_search_resumes_and_ends_as_an_uninterrupted_one(tiny, tmp_path, monkeypatch):
    gen, _ = tiny
    goal = RobustGoal(Ensemble("colour", [ColourJudge()]))
    cfg = LatentSearchConfig(iterations=4, lr=0.1, mode="exact", steps=2, guidance=2.0)
    target = goal.ensemble(gen.generate(["a cat", "a dog"], [3, 4], 2.0, 2)).argmax(-1).tolist()
    args = (gen, goal, ["a cat", "a dog"], target, [3, 4], cfg)
    whole = search_latents(*args, progress=False)
    killed(monkeypatch, gen, 3, lambda: search_latents(*args, progress=False, checkpoints=tmp_path))
    assert len(list((tmp_path / "checkpoints").glob("*.safetensors"))) == 1
    resumed = search_latents(*args, progress=False, checkpoints=tmp_path)
    assert torch.equal(resumed.z, whole.z)
    cols = ["found", "iterations", "verified", "certified", "pred_after"]
    assert resumed.table[cols].equals(whole.table[cols])
    assert (whole.table["iterations"].fillna(cfg.iterations) >= 2).all()  # the kill came mid-search


def test_the_distorted_goal_needs_every_judge_to_miss_and_the_ensemble_unsure():
    from sagekit.search import DistortedGoal

    # image 0: both judges unsure (max 0.4) and neither sees "cat"; image 1: "cat" gone but "car" is confident
    ens = fixed_ensemble([[0.3, 0.4, 0.3], [0.1, 0.1, 0.8]], [[0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])
    x, target = torch.zeros(2, 3, 4, 4), torch.tensor([0, 0])
    assert DistortedGoal(ens, 0.5).found(x, target).tolist() == [True, False]
    assert torch.allclose(DistortedGoal(ens).loss(x, target), torch.tensor([0.4, 0.8]))


def test_an_empty_scene_judge_makes_nothing_unrelated_and_not_distorted():
    """With a judge that can say "none": image 0 is an empty scene (object judges unsure,
    "none" at 0.9), image 1 an unreadable one ("none" at 0.1)."""
    import json

    from sagekit.search import DistortedGoal, goal_from_spec

    ens = fixed_ensemble([[0.3, 0.4, 0.3], [0.3, 0.4, 0.3]], [[0.3, 0.3, 0.4], [0.3, 0.3, 0.4]])
    count = FixedJudge("count", [[0.9, 0.1], [0.1, 0.9]], labels=("none", "one"))
    x, target = torch.zeros(2, 3, 4, 4), torch.tensor([0, 0])
    assert UnrelatedGoal(ens, 0.5).found(x, target).tolist() == [False, False]
    assert UnrelatedGoal(ens, 0.5, empty=count).found(x, target).tolist() == [True, False]
    assert DistortedGoal(ens, 0.5).found(x, target).tolist() == [True, True]
    assert DistortedGoal(ens, 0.5, empty=count).found(x, target).tolist() == [False, True]
    assert torch.allclose(DistortedGoal(ens, empty=count).loss(x, target), torch.tensor([1.3, 0.5]))
    # the unrelated pull takes whichever is nearer: a confident other label or nothing at all
    base = UnrelatedGoal(ens).loss(x, target)
    assert torch.allclose(UnrelatedGoal(ens, empty=count).loss(x, target), base + torch.tensor([0.35 - 0.9, 0.0]))
    spec = json.loads(json.dumps(UnrelatedGoal(ens, 0.6, empty=count).spec()))
    assert spec == {"goal": "UnrelatedGoal", "confidence": 0.6, "weight": 1.0, "empty": "count"}
    again = goal_from_spec(spec, ens, {"count": count}.__getitem__)
    assert again.empty is count and again.found(x, target).tolist() == [True, False]
    with pytest.raises(ValueError, match="load_judge"):
        goal_from_spec(spec, ens)
    with pytest.raises(ValueError, match="'none'"):
        UnrelatedGoal(ens, empty=FixedJudge("c", [[0.5, 0.5]] * 2, labels=("a", "b")))


def test_a_realism_judge_makes_distorted_images_damaged_and_unrelated_ones_natural():
    """Images 0 and 1 show something else confidently (dog at 0.8); image 0 looks clean
    ("real" 0.9), image 1 damaged (0.2). Images 2 and 3: judges unsure, clean and damaged."""
    import json

    from sagekit.search import DistortedGoal, goal_from_spec

    sure, unsure = [0.1, 0.8, 0.1], [0.3, 0.4, 0.3]
    ens = fixed_ensemble([sure, sure, unsure, unsure], [sure, sure, unsure, unsure])
    real = FixedJudge("realism", [[0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.2, 0.8]], labels=("real", "corrupted"))
    x, target = torch.zeros(4, 3, 4, 4), torch.tensor([0, 0, 0, 0])
    assert UnrelatedGoal(ens, 0.5).found(x, target).tolist() == [True, True, False, False]
    assert UnrelatedGoal(ens, 0.5, realism=real).found(x, target).tolist() == [True, False, False, False]
    assert DistortedGoal(ens, 0.5).found(x, target).tolist() == [False, False, True, True]
    assert DistortedGoal(ens, 0.5, realism=real).found(x, target).tolist() == [False, False, False, True]
    # the terms: distorted adds p(real) to be lowered, unrelated subtracts it (weighted) to be raised
    p_real = torch.tensor([0.9, 0.2, 0.9, 0.2])
    assert torch.allclose(DistortedGoal(ens, realism=real).loss(x, target), DistortedGoal(ens).loss(x, target) + p_real)
    assert torch.allclose(UnrelatedGoal(ens, weight=2.0, realism=real).loss(x, target),
                          UnrelatedGoal(ens, weight=2.0).loss(x, target) - 2.0 * p_real)
    spec = json.loads(json.dumps(DistortedGoal(ens, 0.45, realism=real).spec()))
    assert spec == {"goal": "DistortedGoal", "low_confidence": 0.45, "realism": "realism"}
    again = goal_from_spec(spec, ens, {"realism": real}.__getitem__)
    assert again.realism is real and again.found(x, target).tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="real"):
        DistortedGoal(ens, realism=FixedJudge("c", [[0.5, 0.5]] * 4, labels=("a", "b")))
    # what the latent studies put in their goals: the realism judge when asked, never a CLIP distance
    from sagekit.studies.latent_search import goal_realism

    assert goal_realism(real, True) is real and goal_realism(real, False) is None
    assert goal_realism(FixedJudge("clip-like", [[0.5, 0.5]] * 4, labels=("a", "b")), True) is None


def test_a_shared_latent_is_found_only_when_every_prompt_fails(tiny):
    """Prompt independence by construction: one latent, several prompts, one verdict."""
    from sagekit.studies.latent_search import search_shared_latents

    gen, _ = tiny
    goal = RobustGoal(Ensemble("colour", [ColourJudge()]))
    cfg = LatentSearchConfig(iterations=3, lr=0.1, mode="exact", steps=2, guidance=2.0)
    seeds, prompts = [3, 4], ["a cat", "a dog", "a car"]
    shown = goal.ensemble(gen.generate([p for _ in seeds for p in prompts], [s for s in seeds for _ in prompts],
                                       2.0, 2)).argmax(-1).view(2, 3)
    res = search_shared_latents(gen, goal, prompts, shown[0].tolist(), seeds, cfg, progress=False)
    assert res.images_before.shape == res.images_after.shape == (2, 3, 3, 16, 16)
    met = goal.found(res.images_after.flatten(0, 1), torch.tensor(shown[0].tolist() * 2)).view(2, 3)
    assert res.table["found"].tolist() == met.all(1).tolist()
    assert res.table["prompts_broken"].tolist() == pytest.approx(met.float().mean(1).tolist())
    assert ((res.z - res.z0).flatten(1).abs().sum(1) > 0).any()


def test_realism_is_uniform_on_the_reference_and_low_far_from_it():
    from sagekit.realism import RealismReference

    g = torch.Generator().manual_seed(0)
    embed = lambda images: images.mean((2, 3))  # a 3-dimensional feature: the mean colour
    clean = 0.5 + 0.05 * torch.randn(200, 3, 8, 8, generator=g)
    ref = RealismReference.from_embedding(embed, clean)
    fresh = ref.realism(0.5 + 0.05 * torch.randn(100, 3, 8, 8, generator=g))
    assert 0.35 < float(fresh.mean()) < 0.65  # like the reference: about uniform
    assert float(ref.realism(torch.ones(1, 3, 8, 8))[0]) == 0.0  # white: farther than every clean image


def test_realism_from_a_judge_ranks_against_the_reference_and_refuses_other_judges():
    from sagekit.models.judges import Judge
    from sagekit.realism import RealismReference

    class Brightness(Judge):  # "real" the darker an image is
        def logits(self, images):
            m = images.mean((1, 2, 3))
            return torch.stack([-m, m], -1)

    clean = torch.linspace(0.2, 0.4, 50).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)
    ref = RealismReference.from_judge(Brightness("b", ("real", "corrupted")), clean)
    real = ref.realism(torch.tensor([0.1, 0.3, 0.9]).view(-1, 1, 1, 1).expand(-1, 3, 4, 4))
    assert real[0] == 1.0 and 0.4 < real[1] < 0.6 and real[2] == 0.0
    with pytest.raises(ValueError, match="real"):
        RealismReference.from_judge(Brightness("b", ("cat", "dog")), clean)


def test_the_non_outlier_projection_makes_a_smooth_delta_certifiable():
    """A spatially smooth delta (what signed steps shared across pixels produce) fails the
    lag-1 test; the projection decorrelates it, and the result passes all three tests."""
    from sagekit.search import NonOutlier

    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, 16, 16, generator=g)
    smooth = (2 * torch.nn.functional.avg_pool2d(torch.randn(6, 4, 18, 18, generator=g), 3, 1)).clamp(-1, 1)
    assert not any(certify(x).spatial_ok for x in z + smooth)
    delta = NonOutlier(z[0].numel(), alpha=0.01, bound=1.0)(z, smooth)
    assert delta.abs().max() <= 1.0
    assert all(certify(x, alpha=0.01).passed for x in z + delta)
    # a latent that already passes is left as it is
    assert torch.equal(NonOutlier(z[0].numel(), 0.01, 1.0)(z, torch.zeros_like(z)), torch.zeros_like(z))
