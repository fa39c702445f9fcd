"""A parameter left at "auto" takes its model's world's value: toy judges for toy models, the
README's hub models for real ones, or a refusal before any work that names the parameter."""

import pytest

from sagekit.report import notebook_parameters
from sagekit.studies import STUDIES
from sagekit.studies.defaults import AD_CLIP, REAL, REAL_CLIP, REAL_VERIFIER, TOY, WORLD_DEFAULTS, resolve
from sagekit.studies.parameters import ParameterError
from sagekit.studies.validation import validate


def defaults(study):
    return notebook_parameters(STUDIES[study].path)


@pytest.mark.parametrize("study", ["prompt-failures", "distorted-latents", "unrelated-latents", "adversarial-tokens",
                                   "seed-shifts", "implosion"])
def test_every_judge_like_parameter_defaults_to_auto(study):
    """No notebook names a toy judge as a default any more: it names "auto"."""
    params = defaults(study)
    for name in ("judge", "verifier", "clip", "realism", "empty", "lm", "label_set", "targets", "trainable"):
        if name in params:
            assert params[name] == "auto", (study, name)


def test_the_world_of_the_model_decides(tiny_sd):
    toy = resolve("distorted-latents", defaults("distorted-latents"))
    assert {k: toy[k] for k in ("judge", "verifier", "realism", "empty", "label_set")} == \
        {k: WORLD_DEFAULTS[TOY][k] for k in ("judge", "verifier", "realism", "empty", "label_set")}
    real = resolve("distorted-latents", {**defaults("distorted-latents"), "model": str(tiny_sd)})
    assert (real["verifier"], real["realism"], real["empty"], real["label_set"]) == (REAL_VERIFIER, REAL_CLIP, "",
                                                                                      "imagenet100")
    assert resolve("implosion", {**defaults("implosion"), "model": str(tiny_sd)})["clip"] == AD_CLIP
    shifts = resolve("seed-shifts", {**defaults("seed-shifts"), "models": [str(tiny_sd)]})
    assert (shifts["judge"], shifts["protocol"], shifts["n_labels"], shifts["steps"]) == (REAL_VERIFIER, "paper", 100, 50)
    # a value given wins; "auto" of the precision is not the world's
    mine = resolve("distorted-latents", {**defaults("distorted-latents"), "model": str(tiny_sd), "empty": "toy-count"})
    assert mine["empty"] == "toy-count" and mine["dtype"] == "auto"
    assert WORLD_DEFAULTS[REAL]["trainable"] == "lora"


def test_a_real_model_is_refused_before_work_when_a_default_is_not_on_this_machine(tiny_sd, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    base = STUDIES["unrelated-latents"].path.parent
    with pytest.raises(ParameterError) as e:
        validate("unrelated-latents", {**defaults("unrelated-latents"), "model": str(tiny_sd)}, base)
    # it names the parameter, the model it defaulted to, how to fetch it and how to choose another
    assert "parameter 'judge'" in str(e.value) and "hf download timm/convnext_base" in str(e.value)
    assert "it was 'auto': the real world's default" in str(e.value) and "-p judge=" in str(e.value)


def test_models_of_both_worlds_need_their_judges_named(tiny_sd):
    base = STUDIES["seed-shifts"].path.parent
    mixed = {**defaults("seed-shifts"), "models": ["toy", str(tiny_sd)]}
    with pytest.raises(ParameterError, match=r"mix the toy world \(toy\) and real models \(.*tiny-sd\)"):
        validate("seed-shifts", mixed, base)
    # named, they need no world; the protocol's sizes need none either
    named = {**mixed, "judge": "toy-ensemble", "clip": "toy-clip", "label_set": "toy", "protocol": "toy"}
    assert resolve("seed-shifts", named)["n_labels"] == 4
    # a typo is not a real model in disguise: the message names it
    with pytest.raises(ParameterError, match=r"real models \(toy-ddpn\)"):
        validate("seed-shifts", {**mixed, "models": ["toy", "toy-ddpn"]}, base)


def test_implosion_on_a_real_model_needs_its_data(tiny_sd, real_world):
    base = STUDIES["implosion"].path.parent
    with pytest.raises(ParameterError, match="'data' must name a folder of image \\+ caption pairs"):
        validate("implosion", {**defaults("implosion"), "model": str(tiny_sd)}, base)


def test_the_cli_refuses_with_exit_2_and_writes_nothing(tiny_sd, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    from sagekit.cli import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "reports"
    assert main(["run", "prompt-failures", "-p", f"model={str(tiny_sd)!r}", "--out", str(out)]) == 2
    assert "hf download" in capsys.readouterr().err and not out.exists()


def test_a_folder_run_checks_the_poison_of_every_k_before_work(tiny_sd, real_world, tmp_path):
    """A total budget of 8 puts all 8 on one concept at k = 1: a folder with 4 images of its
    target is refused before any work, not in the kernel (the check once looked at max(ks))."""
    from test_readme import captioned_pairs

    pairs = captioned_pairs(tmp_path / "pairs", ["dog", "cat", "car", "bus", "tree", "boat"], per_concept=4)
    base = STUDIES["implosion"].path.parent
    params = {**defaults("implosion"), "model": str(tiny_sd), "data": str(pairs), "concepts": "dog:cat,car:bus",
              "unpoisoned": ["tree", "boat"], "ks": [0, 1, 2], "n_train": 16, "budget": 8,
              "judge": "timm:" + str(_concept_judge(tmp_path))}
    with pytest.raises(ParameterError, match="needs 8 images of 'cat'"):
        validate("implosion", params, base)
    assert validate("implosion", {**params, "budget": 4}, base) > 0


def _concept_judge(tmp_path):
    from sagekit.testing import save_random_timm_judge

    return save_random_timm_judge(tmp_path / "judge", ["dog", "cat", "car", "bus", "tree", "boat"])


@pytest.mark.parametrize("study", ["prompt-failures", "distorted-latents", "unrelated-latents", "adversarial-tokens",
                                   "seed-shifts", "implosion"])
def test_each_notebook_resolves_every_auto_it_declares(study):
    """A notebook's fill(...) names every world-dependent parameter its parameters cell leaves
    at "auto" (one it missed would reach the library as the string "auto")."""
    import ast

    import nbformat

    from sagekit.studies.defaults import world_dependent

    nb = nbformat.read(STUDIES[study].path, as_version=4)
    calls = [n for c in nb.cells if c.cell_type == "code" for n in ast.walk(ast.parse(c.source))
             if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "fill"]
    assert len(calls) == 1 and calls[0].args[0].value == study
    named = {kw.arg for kw in calls[0].keywords}
    auto = {k for k, v in defaults(study).items() if v == "auto" and k in world_dependent(study)}
    assert auto <= named and ({"model", "models"} & named)
