"""Explorers redraw what their controls say, with the studies' own drawing and judging."""

import pytest
import torch

from sagekit.labels import pick
from sagekit.models.registry import load_clip_scorer, load_generators, load_judge
from sagekit.report import FINDINGS_ENV
from sagekit.spread import Models
from sagekit.studies import seed_shifts as ss


@pytest.fixture(scope="module")
def toy_shift_world():
    generators = load_generators(["toy"], "cpu")
    judge, clip = load_judge("toy-ensemble", "cpu"), load_clip_scorer("toy-clip", "cpu")
    labels = pick("toy", 4)
    grid = {"UMS": [-0.4, 0.4], "SDS": [0.5], "MS": [[0.2, 0.1]], "PAS": [64]}
    plan = ss.plan(generators, grid, labels, 0, 1, 1, [None], 4, judge, clip)
    return generators, judge, clip, labels, grid, plan


def test_the_seed_shift_explorer_redraws_the_shifted_row_only(toy_shift_world):
    from sagekit.explore.seed_shifts import explorer

    generators, judge, clip, labels, grid, plan = toy_shift_world
    ex = explorer(generators, judge, clip, labels, grid, plan, seed=3, shown=2)
    ex.widget  # the controls are observed once the view exists
    assert list(ex.controls["shift"].options) == ["UMS", "SDS", "PAS"]  # MS's level is a pair: no slider
    assert ex.frame.row_labels == ["unshifted", "UMS +0.40"] and ex.frame.images.shape[0] == 4
    # the grid's level shows the sweep's own image and judgment
    cells = [c for c in ss.build_cells(["toy"], {"UMS": [0.4]}, labels[:2], [3], [plan.first_scale["toy"]],
                                       plan.steps["toy"], judge.name, clip.name) if c["shift"] == "UMS"]
    metrics, stored = ss.judge_batch(Models(generators, judge=judge, clip=clip), cells)
    assert torch.equal((ex.frame.images[2:] * 255).round().to(torch.uint8), stored)
    assert [m["pred"] in cap.split("\n")[4] for m, cap in zip(metrics, ex.frame.captions[2:])] == [True, True]
    # every member of the ensemble has its own line, then the ensemble, then CLIP
    first = ex.frame.captions[0].split("\n")
    assert first[0] == labels[0] and [line.split(":")[0] for line in first[1:5]] == [
        *(j.name for j in judge.judges), judge.name] and first[5].startswith("CLIP ")
    before = ex.frame.images.clone()
    ex.controls["level"].value = -0.6  # past the grid, within the slider's reach
    assert ex.frame.row_labels[1] == "UMS -0.60" and len(ex.times) == 2
    assert torch.equal(ex.frame.images[:2], before[:2])  # the unshifted row is kept
    assert (ex.frame.images[2:] - before[2:]).abs().amax() > 0.05
    # a new shift type brings its own range, with one redraw
    ex.controls["shift"].value = "PAS"
    latent = generators["toy"].latent_shape
    level = ex.controls["level"]
    assert (level.min, level.max, level.step) == (0, latent[1] * latent[2], 1) and level.value == 64
    assert ex.frame.row_labels[1] == "PAS n=64" and len(ex.times) == 3
    ex.controls["shift"].value = "SDS"
    assert ex.controls["level"].max <= 0.95 and ex.frame.row_labels[1] == "SDS +0.50"


def test_an_explorer_shows_a_still_in_a_report_and_widgets_in_a_lab(toy_shift_world, monkeypatch):
    from sagekit.explore.seed_shifts import explorer

    generators, judge, clip, labels, grid, plan = toy_shift_world
    ex = explorer(generators, judge, clip, labels, {"UMS": [0.4]}, plan, seed=0, shown=1)
    monkeypatch.delenv(FINDINGS_ENV, raising=False)
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()
    monkeypatch.setenv(FINDINGS_ENV, "/nonexistent/findings.json")  # inside `sagekit run`
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"image/png", "text/plain"} and bundle["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no shift a slider can move"):
        explorer(generators, judge, clip, labels, {"MS": [[0.2, 0.1]]}, plan, seed=0)


def test_explorer_captions_are_escaped_in_the_widgets(toy_shift_world):
    from sagekit.explore.base import Explorer, Frame

    images = torch.rand(2, 3, 8, 8)
    ex = Explorer("<b>t</b>", {}, lambda: Frame(images, ["<img src=x onerror=alert(1)>", "a\nb"], ncol=2,
                                                  row_labels=["<script>"]))
    html = repr([c.value for c in ex.widget.children[0:1]]) + repr(
        [w.value for row in ex._grid.children for cell in row.children[1:] for w in cell.children[1:]]
        + [row.children[0].value for row in ex._grid.children])
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>" not in html and "a<br>b" in html and "&lt;b&gt;t&lt;/b&gt;" in html


# ---------------------------------------------------------------------------- the other studies' explorers

@pytest.fixture(scope="module")
def toy_gen():
    from sagekit.models.registry import load_ensemble, load_generator

    return load_generator("toy"), load_ensemble("toy-ensemble")


def test_the_latent_explorer_walks_from_z_through_the_found_latent_past_the_certificate(toy_gen):
    from sagekit.explore.latents import STEP, certificate_bound, explorer
    from sagekit.search import DistortedGoal, certify
    from sagekit.studies import latent_search as ls

    gen, ens = toy_gen
    cfg = ls.LatentSearchConfig(iterations=2, steps=6, lr=0.3)
    prompts = ["A photo of a red circle", "A photo of a blue square"]
    res = ls.search_shared_latents(gen, DistortedGoal(ens, 0.5), prompts, [ens.label_index("red circle"),
                                   ens.label_index("blue square")], [0], cfg, progress=False)
    ex = explorer(gen, ens, res, cfg, heldout=["green star"])
    ex.widget
    assert list(ex.controls["prompt"].options) == prompts + ["A photo of a green star"]
    # t = 0 and t = 1 are the search's own images of z and z'
    assert (ex.frame.images[0] - res.images_before[0, 0]).abs().amax() < 1e-4
    assert (ex.frame.images[1] - res.images_after[0, 0]).abs().amax() < 1e-4
    bound = certificate_bound(res.z0[0], res.z[0], cfg.alpha)
    assert bound is not None and bound > 1 and ex.controls["t"].max >= 1.5 * bound - STEP
    assert f"fails from t = {bound:.2f}" in ex.frame.note
    # the caption's p-values are the certificate's at that point; past the bound it fails
    c = certify(res.z0[0] + 1.0 * (res.z[0] - res.z0[0]), cfg.alpha)
    assert f"|z|² p {c.chi2_p:.3f} · KS p {c.ks_p:.3f}" in ex.frame.captions[1]
    ex.controls["t"].value = bound
    assert ex.frame.captions[2].startswith(f"t = {bound:.2f}") and "certificate fails" in ex.frame.captions[2]
    ex.controls["t"].value = round(bound - STEP, 2)
    assert "certificate passes" in ex.frame.captions[2]
    ex.controls["prompt"].value = "A photo of a green star"  # a held-out prompt: the same latent, another image
    assert ex.frame.row_labels == ["green star"] and len(ex.times) == 4


def test_the_latent_explorer_of_an_unrelated_latent_shows_its_own_prompt(toy_gen):
    from sagekit.explore.latents import explorer
    from sagekit.search import UnrelatedGoal
    from sagekit.studies import latent_search as ls

    gen, ens = toy_gen
    cfg = ls.LatentSearchConfig(iterations=1, steps=6)
    res = ls.search_latents(gen, UnrelatedGoal(ens, 0.5), ["A photo of a red circle"], [ens.label_index("red circle")],
                            [2], cfg, progress=False)
    ex = explorer(gen, ens, res, cfg, heldout=["green star"])  # a latent of its own prompt: no other offered
    p = ens(ex.frame.images[1:2])[0, ens.label_index("red circle")]
    assert f"P(red circle) {float(p):.2f}" in ex.frame.captions[1].split("\n")
    assert ex.frame.row_labels == ["red circle"] and list(ex.controls["prompt"].options) == ["A photo of a red circle"]


def test_the_token_explorer_draws_the_learned_token_at_any_strength(toy_gen):
    from sagekit.explore.tokens import explorer
    from sagekit.models.registry import load_clip_scorer
    from sagekit.search import TargetGoal
    from sagekit.studies.adversarial_tokens import evaluate_token

    gen, ens = toy_gen
    emb = gen.token_statistics()[0] + 0.8 * torch.randn(gen.token_width, generator=torch.Generator().manual_seed(1))
    res = evaluate_token(gen, TargetGoal(ens), load_clip_scorer("toy-clip"), "blue star", ["a photo of a red circle"],
                         emb, [5, 6], steps=6)
    ex = explorer(gen, ens, res, [5, 6], steps=6)
    ex.widget
    assert ex.controls["prompt"].value == "a photo of a red circle"
    # at strength 1 the study's own images, with and without the token
    assert (ex.frame.images[:2] - res.plain).abs().amax() < 1e-4
    assert (ex.frame.images[2:] - res.token).abs().amax() < 1e-4
    assert ex.frame.captions[2].split("\n")[-1].startswith("P(blue star) ")
    strong = ex.frame.images[2:].clone()
    ex.controls["strength"].value = 0.0
    assert ex.frame.row_labels[1] == "with it × 0.00" and (ex.frame.images[2:] - strong).abs().amax() > 0.05
    assert torch.equal(ex.frame.images[:2], res.plain.float()) or (ex.frame.images[:2] - res.plain).abs().amax() < 1e-4
    ex.controls["prompt"].value = "a photo of a green heart"  # any typed prompt
    assert "'a photo of a green heart'" in ex.frame.note and len(ex.times) == 3


def test_the_prompt_explorer_draws_fresh_seeds_and_shows_peoples_verdict(toy_gen, tmp_path):
    import pandas as pd

    from sagekit.explore.prompts import explorer
    from sagekit.search import RobustGoal
    from sagekit.seeds import seeds as seed_stream
    from sagekit.store import ResultStore
    from sagekit.studies import prompt_failures as ps
    from sagekit.verdicts import record

    gen, ens = toy_gen
    goal, cfg = RobustGoal(ens), ps.PromptSearchConfig(steps=6, eval_seeds=2)
    table = pd.DataFrame([{"label": "red circle", "prompt": "A photo of a red circle at night", "words": "at night",
                           "base_failure_rate": 0.0, "failure_rate": 1.0, "verifier_failure_rate": 1.0,
                           "failure": True, "verified": True, "perplexity": 3.0}])
    result = ps.PromptSearchResult(table, gen.generate([table["prompt"][0]] * 2, [1, 2], None, 6).unsqueeze(0))
    store = ResultStore(tmp_path / "store")
    keys, prompts, _ = ps.store_failures(store, gen, goal, None, result, cfg)
    ex = explorer(gen, goal, None, result, cfg, seed=4, store=store, keys=dict(zip(prompts, keys)), shown=2)
    ex.widget
    fresh = seed_stream("explore", 4, 2)
    drawn = gen.generate([prompts[0]] * 2, fresh, None, 6)
    assert torch.equal(ex.frame.images, drawn) and "people's verdict: none yet" in ex.frame.note
    failed = goal.found(drawn, torch.full((2,), ens.label_index("red circle"))).tolist()
    assert ex.frame.marks == [not f for f in failed] and f"fails on {sum(failed)} of 2" in ex.frame.note
    record(store, keys[0], "judges erred")  # a click in the verdict panel
    ex.controls["draw"].value = 1  # the next fresh seeds
    assert torch.equal(ex.frame.images, gen.generate([prompts[0]] * 2, seed_stream("explore", 4, 2, start=2), None, 6))
    assert "people's verdict: judges erred" in ex.frame.note
    ex.controls["label"].value = "blue star"
    ex.controls["prompt"].value = "a photo of a green heart"  # a typed one keeps the label chosen
    assert ex.frame.row_labels == ["blue star"] and "people's verdict" not in ex.frame.note
    ex.controls["prompt"].value = "A photo of a red circle at night"  # a found prompt brings its label back
    assert ex.controls["label"].value == "red circle" and ex.frame.row_labels == ["red circle"]


def _implosion_result():
    """A sweep's shape without its fine-tunes (the explorer only shows what was recorded):
    k in (0, 1), one rule, poisoned runs and controls; at k = 1 "red circle" is poisoned
    towards "blue star"."""
    import pandas as pd

    from sagekit.studies.implosion import ImplosionResult

    g = torch.Generator().manual_seed(0)
    details, rows = {}, []
    for k in (0, 1):
        for control in (False, True):
            labels = ["green heart"] * 2 + (["red circle"] * 2 if k else [])
            details[("total", k, control)] = {
                "pairs": [("red circle", "blue star")][:k], "labels": labels,
                "kinds": ["unpoisoned"] * 2 + ["poisoned"] * (2 if k else 0),
                "pred": ["green heart", "cyan square"] + (["blue star", "red circle"] if k else []),
                "images": torch.rand(len(labels), 3, 32, 32, generator=g),
                "attention": {"index": list(range(len(labels))), "maps": torch.rand(len(labels), 2, 8, 8, generator=g)}}
            rows.append({"rule": "total", "k": k, "control": control, "budget": 10 * k, "unpoisoned_acc": 0.5,
                         "unpoisoned_lo": 0.1, "unpoisoned_hi": 0.9})
    return ImplosionResult(pd.DataFrame(rows), details)


def test_the_implosion_explorer_shows_the_recorded_images_and_word_attention():
    from sagekit.explore.implosion import explorer, heat

    result = _implosion_result()
    ex = explorer(result, [0, 1])
    ex.widget
    assert list(ex.controls["concept"].options) == ["green heart", "red circle"]
    ex.controls["concept"].value = "red circle"
    d = result.details[("total", 1, False)]
    f = ex.frame
    # k = 0 never drew the poisoned concept: one row, per image the image and its two words' maps
    assert f.row_labels == ["k = 1"] and f.ncol == 6 and torch.equal(f.images[0], d["images"][2])
    assert torch.equal(f.images[1:3], heat(d["attention"]["maps"][2:3].transpose(0, 1).flatten(0, 1), 32))
    assert f.captions[:3] == ["judged: blue star", "where 'red' looks", "where 'circle' looks"]
    assert f.marks[:3] == [False, None, None] and "poisoned: its captions name 'blue star'" in f.note
    ex.controls["concept"].value = "green heart"  # drawn at k = 0 too: that row first
    assert ex.frame.row_labels == ["k = 0", "k = 1"] and ex.frame.marks[0] is True and ex.frame.marks[3] is False
    ex.controls["k"].value = 0  # the concepts offered follow the point
    assert list(ex.controls["concept"].options) == ["green heart"] and ex.frame.row_labels == ["k = 0"]
    maps = heat(torch.tensor([[[0.0, 2.0], [1.0, 0.5]]]), 4)
    assert maps.shape == (1, 3, 4, 4) and 0 <= maps.min() and maps.max() <= 1


def test_the_toy_world_explorer_reads_every_judge_on_a_scene_and_its_drawing():
    import numpy as np

    from sagekit.explore.toy_world import explorer
    from sagekit.toy.grammar import describe
    from sagekit.toy.scenes import BACKGROUNDS, render
    from sagekit.toy.world import WorldConfig, sample_scene

    ex = explorer(["toy"], seed=3)
    ex.widget
    ex.controls["kind"].value = "one"
    ex.controls["number"].value = 7
    rng = np.random.default_rng([3, 7])
    scene = sample_scene(rng, WorldConfig(), "one")
    caption = describe(scene, rng, WorldConfig().synonym_rate)
    assert ex.frame.note == f"caption: {caption!r}"
    assert torch.equal((ex.frame.images[0] * 255).round().to(torch.uint8), torch.tensor(render(scene, 32)).permute(2, 0, 1))
    lines = ex.frame.captions[0].split("\n")
    assert [line.split(":")[0] for line in lines[1:]] == ["resnet", "mobilenet", "edge", "count", "background",
                                                          "position", "relation", "realism"]
    # a line is ticked exactly when the judge reads what the scene holds
    for line, right in ((lines[4], "one"), (lines[5], list(BACKGROUNDS)[scene.background]), (lines[6], scene.position)):
        assert line.endswith(" ✓") == (line.split(": ")[1].split(" (")[0] == right) and line.endswith(("✓", "✗"))
    assert not lines[7].endswith(("✓", "✗"))  # a lone object: the relation judge has nothing to say
    assert sum(line.endswith("✓") for line in lines) >= 5  # the judges read clean scenes well (98%+ each)
    ex.controls["kind"].value = "two"
    assert ex.frame.row_labels == ["two"] and ex.frame.captions[0].split("\n")[7].endswith(("✓", "✗"))


def test_no_progress_bar_inside_a_static_report(monkeypatch):
    from sagekit.progress import REPORT_ENV, bar

    monkeypatch.delenv(REPORT_ENV, raising=False)
    assert not bar(range(3)).disable and bar(range(3), progress=False).disable
    monkeypatch.setenv(REPORT_ENV, "/nonexistent/findings.json")
    assert bar(range(3)).disable
