"""The real path end to end: notebooks on tiny random-weight folders of real architectures
(SD-1.x, SDXL, flow matching), real-style judge specs (timm, open_clip), LoRA poisoning."""

import json

import pytest

from sagekit.report import run_study
from sagekit.testing import save_random_open_clip, save_random_timm_judge, save_tiny_gpt2
from sagekit.toy.scenes import LABELS

from captioned import CONCEPTS, captioned_folder
from chromium import rendered
from test_notebooks import html_text, small


@pytest.fixture(scope="module")
def open_clip_spec(tmp_path_factory):
    path = save_random_open_clip(tmp_path_factory.mktemp("open_clip"))
    return f"open_clip:ViT-S-32-alt:{path}"


@pytest.fixture(scope="module")
def judges(tmp_path_factory):
    """Real-style judge specs over the toy labels (the label set the notebooks prompt for):
    an ensemble of two random-weight timm judges, one behind an edge map, and a third
    timm architecture as the held-out verifier."""
    folder = tmp_path_factory.mktemp("judges")
    a = save_random_timm_judge(folder / "resnet", LABELS, seed=1)
    b = save_random_timm_judge(folder / "mobilenet", LABELS, arch="mobilenetv3_small_050", seed=2)
    c = save_random_timm_judge(folder / "efficientnet", LABELS, arch="test_efficientnet", seed=3)
    return {"judge": f"ensemble:timm:{a}+edge:timm:{b}", "verifier": f"timm:{c}"}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return save_tiny_gpt2(tmp_path_factory.mktemp("lm") / "gpt2")


def real_params(study, folder, tmp_path, judges, clip, lm):
    """A notebook's small parameters, pointed at a diffusers folder and real-style models."""
    params = small(study, tmp_path) + ["steps=3", f"judge={judges['judge']!r}"]
    if study != "adversarial-tokens":
        params.append("label_set='toy'")  # what these judges know (a real model's default is ImageNet-100)
    params += [f"models={[str(folder)]!r}" if study == "seed-shifts" else f"model={str(folder)!r}"]
    if study in ("prompt-failures", "distorted-latents", "unrelated-latents", "adversarial-tokens"):
        params.append(f"verifier={judges['verifier']!r}")
    if study in ("prompt-failures", "adversarial-tokens", "seed-shifts"):
        params.append(f"clip={clip!r}")
    if study in ("distorted-latents", "unrelated-latents"):
        params += [f"realism={clip!r}", "empty=''"]  # real worlds: CLIP embedding distance, no empty-scene judge
    if study == "prompt-failures":
        params.append(f"lm={str(lm)!r}")
    return params


def _rates(value):
    """Every rate (``{"k", "n", "rate", "lo", "hi"}``) anywhere in a findings dict."""
    if isinstance(value, dict):
        if set(value) >= {"k", "n", "rate", "lo", "hi"}:
            yield value
        for v in value.values():
            yield from _rates(v)
    elif isinstance(value, list):
        for v in value:
            yield from _rates(v)


NOTEBOOK_RUNS = [("seed-shifts", "tiny_sd3"), ("unrelated-latents", "tiny_sd3")]
# the other flow-matching runs: `make test-all` (SDXL runs every study in tests/test_readme.py)
NOTEBOOK_RUNS += [pytest.param(study, "tiny_sd3", marks=pytest.mark.slow)
                  for study in ("prompt-failures", "distorted-latents", "adversarial-tokens")]


@pytest.mark.parametrize("study,arch", NOTEBOOK_RUNS)
def test_notebook_on_a_real_architecture(study, arch, request, tmp_path, judges, open_clip_spec, gpt2):
    folder = request.getfixturevalue(arch)
    summary = run_study(study, real_params(study, folder, tmp_path, judges, open_clip_spec, gpt2),
                        tmp_path / "reports", timeout=900)
    saved = json.loads((tmp_path / "reports" / summary["html"].replace(".html", ".json")).read_text())
    assert saved["findings"]["models"] == [str(folder)]
    assert saved["parameters"]["judge"] == judges["judge"]
    html = (tmp_path / "reports" / summary["html"]).read_text()
    assert "Traceback" not in html
    # what the run measured: each rate a count with its interval around it
    rates = [{"k": round(r["top1"] * r["n"]), "n": r["n"], "rate": r["top1"], "lo": r["top1_lo"], "hi": r["top1_hi"]}
             for r in saved["findings"]["acc"]] if study == "seed-shifts" else list(_rates(saved["findings"]))
    assert any(r["n"] > 0 for r in rates)  # a rate of 0 trials (none found to verify) has no estimate: null
    assert all(0 <= r["k"] <= r["n"] and (r["lo"] <= r["rate"] <= r["hi"] if r["n"] else r["rate"] is None)
               for r in rates)
    images, loaded, tables = rendered(tmp_path / "reports" / summary["html"], tmp_path)
    assert images >= 1 and loaded == images and tables >= 1
    if study != "seed-shifts":  # the SAGE studies keep what they found as reproducible cases
        assert isinstance(saved["findings"]["cases"], list)


@pytest.fixture(scope="module")
def imagenet_judge(tmp_path_factory):
    """A random-weight ImageNet ensemble in local folders (not a hub id): the one parameter
    besides the model and the sizes that the defaults test gives."""
    from sagekit.labels import imagenet_labels

    folder = tmp_path_factory.mktemp("imagenet-judges")
    a = save_random_timm_judge(folder / "resnet", imagenet_labels(), seed=7)
    b = save_random_timm_judge(folder / "mobilenet", imagenet_labels(), arch="mobilenetv3_small_050", seed=8)
    return f"ensemble:timm:{a}+edge:timm:{b}"


@pytest.mark.parametrize("study", ["prompt-failures", "distorted-latents", "unrelated-latents", "adversarial-tokens",
                                   "seed-shifts"])
def test_a_real_model_given_only_its_judge_gets_the_real_worlds_defaults(study, tiny_sd, imagenet_judge, real_world,
                                                                          tmp_path):
    """Every study on a tiny real folder with only `model`, `judge` and sizes given: each other
    judge-like parameter is the real world's (the README's hub models, here their stand-ins),
    never a toy one, and the report names each."""
    from readme_run import SIZES

    from sagekit.studies.defaults import REAL, STUDY_DEFAULTS, WORLD_DEFAULTS

    model = [f"models={[str(tiny_sd)]!r}"] if study == "seed-shifts" else [f"model={str(tiny_sd)!r}"]
    params = model + [f"judge={imagenet_judge!r}", f"store_dir={str(tmp_path / 'store')!r}"] + SIZES[study]
    summary = run_study(study, params, tmp_path / "reports", timeout=900)
    saved = json.loads((tmp_path / "reports" / summary["html"].replace(".html", ".json")).read_text())
    want = {**WORLD_DEFAULTS[REAL], **STUDY_DEFAULTS.get((study, REAL), {})}
    got = saved["parameters"]
    assert saved["auto"] and all(got[k] == want[k] for k in saved["auto"] if k in want)
    assert not any(isinstance(v, str) and v.startswith("toy") for v in got.values())
    assert got.get("label_set", "imagenet100") == "imagenet100"
    text = " ".join(html_text((tmp_path / "reports" / summary["html"]).read_text()).split())
    for name in ("verifier", "realism", "clip", "lm"):
        if name in saved["auto"]:
            assert want[name] in text, name  # the report names what judged the model
    if study == "seed-shifts":
        assert got["protocol"] == "paper" and got["shifts"] == "paper" and "71% top-1, 90% top-5" in text


@pytest.fixture(scope="module")
def concept_judge(tmp_path_factory):
    """A random-weight timm judge over the captioned folder's concepts."""
    return "timm:" + str(save_random_timm_judge(tmp_path_factory.mktemp("judge") / "concepts", list(CONCEPTS)))


@pytest.mark.parametrize("arch", ["tiny_sd", pytest.param("tiny_sd3", marks=pytest.mark.slow)])
def test_implosion_poisons_a_folder_with_lora(arch, request, tmp_path, concept_judge, real_world):
    """Given the model, its judge, the data and sizes: LoRA (a real model's default) and
    OpenAI's ViT-B/32 for AD (compute_AD.py's, here its stand-in)."""
    folder = request.getfixturevalue(arch)
    pairs = captioned_folder(tmp_path / "pairs")
    params = [f"model={str(folder)!r}", f"judge={concept_judge!r}",
              f"data={str(pairs)!r}", "concepts='dog:cat,car:bus'", "unpoisoned=['tree', 'boat']",
              "lora_rank=2", "ks=[0, 1, 2]", "n_train=20", "budget=4", "finetune_steps=2",
              "batch_size=4", "lr=1e-3", "eval_seeds=2", "attention_seeds=1", "steps=3", "guidance=3.0"]
    summary = run_study("implosion", params, tmp_path / "reports", timeout=900)
    saved = json.loads((tmp_path / "reports" / summary["html"].replace(".html", ".json")).read_text())
    assert (saved["parameters"]["trainable"], saved["parameters"]["clip"]) == ("lora", "open_clip:ViT-B-32:openai")
    points = saved["findings"]["points"]
    assert {(p["k"], p["control"]) for p in points} == {(k, c) for k in (0, 1, 2) for c in (False, True)}
    # each point evaluates the two unpoisoned concepts on two seeds; its k sources too
    assert all(p["n"] == 4 and p["n_poisoned"] == 2 * p["k"] for p in points)
    assert all(0 <= p["ad"] <= 1 for p in points) and {p["budget"] for p in points if p["k"]} == {4}
    html = (tmp_path / "reports" / summary["html"]).read_text()
    assert "dog → cat" in html
    images, loaded, tables = rendered(tmp_path / "reports" / summary["html"], tmp_path)
    assert images >= 3 and loaded == images and tables >= 1
