"""The real path end to end: notebooks on tiny random-weight folders of real architectures
(SD-1.x, SDXL, flow matching), real-style judge specs (timm, open_clip), LoRA poisoning."""

import json

import pytest

from sagekit.report import run_study
from sagekit.testing import save_random_open_clip, save_random_timm_judge

from captioned import CONCEPTS, captioned_folder


@pytest.fixture(scope="module")
def open_clip_spec(tmp_path_factory):
    path = save_random_open_clip(tmp_path_factory.mktemp("open_clip"))
    return f"open_clip:ViT-S-32-alt:{path}"


@pytest.fixture(scope="module")
def concept_judge(tmp_path_factory):
    """A random-weight timm judge over the captioned folder's concepts."""
    return "timm:" + str(save_random_timm_judge(tmp_path_factory.mktemp("judge") / "concepts", list(CONCEPTS)))


@pytest.mark.parametrize("arch", ["tiny_sd", "tiny_sdxl"])
def test_implosion_poisons_a_folder_with_lora(arch, request, tmp_path, open_clip_spec, concept_judge):
    folder = request.getfixturevalue(arch)
    pairs = captioned_folder(tmp_path / "pairs")
    params = [f"model={str(folder)!r}", f"judge={concept_judge!r}", f"clip={open_clip_spec!r}",
              f"data={str(pairs)!r}", "concepts='dog:cat,car:bus'", "unpoisoned=['tree', 'boat']",
              "trainable='lora'", "lora_rank=2", "ks=[0, 1, 2]", "n_train=20", "budget=4", "finetune_steps=2",
              "batch_size=4", "lr=1e-3", "eval_seeds=2", "attention_seeds=1", "steps=3", "guidance=3.0"]
    summary = run_study("implosion", params, tmp_path / "reports", timeout=900)
    saved = json.loads((tmp_path / "reports" / summary["html"].replace(".html", ".json")).read_text())
    points = saved["findings"]["points"]
    assert {(p["k"], p["control"]) for p in points} == {(k, c) for k in (0, 1, 2) for c in (False, True)}
    # each point evaluates the two unpoisoned concepts on two seeds; its k sources too
    assert all(p["n"] == 4 and p["n_poisoned"] == 2 * p["k"] for p in points)
    assert all(0 <= p["ad"] <= 1 for p in points) and {p["budget"] for p in points if p["k"]} == {4}
    html = (tmp_path / "reports" / summary["html"]).read_text()
    assert "dog → cat" in html and html.count("data:image/png;base64") >= 3
