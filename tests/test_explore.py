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
