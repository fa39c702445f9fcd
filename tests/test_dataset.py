"""Failure cases -> a dataset anyone can load (datasets) and draw again (sagekit verify)."""

import json
import os

import pytest
import torch

from sagekit.cli import main
from sagekit.dataset import export, read, verify
from sagekit.failures import FailureCase, draw, keep, settings
from sagekit.models.registry import load_ensemble, load_generator
from sagekit.report import run_study
from sagekit.search import RobustGoal, TargetGoal, UnrelatedGoal, goal_from_spec
from sagekit.store import ResultStore


@pytest.fixture(scope="module")
def toy():
    return load_generator("toy")


def test_goal_specs_round_trip():
    ens = load_ensemble("toy-ensemble")
    for goal in (RobustGoal(ens), UnrelatedGoal(ens, confidence=0.7, weight=2.0), TargetGoal(ens)):
        again = goal_from_spec(json.loads(json.dumps(goal.spec())), ens)
        assert type(again) is type(goal) and vars(again) == vars(goal)
    with pytest.raises(ValueError, match="unknown goal"):
        goal_from_spec({"goal": "Nope"}, ens)


@pytest.fixture(scope="module")
def prompt_run(tmp_path_factory):
    """A small toy prompt-failure run that finds failures: unguided, some of 12 toy labels fail
    on half their seeds (2 of them with these seeds)."""
    tmp = tmp_path_factory.mktemp("pf")
    params = ["n_labels=12", "max_words=1", "top_k=3", "iterations=2", "eval_seeds=4", "fail_fraction=0.5",
              "train_seeds=1", "search_steps=3", "baseline_prompts=1", "steps=10", "guidance=1.0",
              f"store_dir={str(tmp / 'store')!r}"]
    summary = run_study("prompt-failures", params, tmp / "reports", timeout=600)
    return tmp, tmp / "reports" / summary["html"].replace(".html", ".json"), summary


def test_exported_prompt_failures_load_and_verify(prompt_run, capsys):
    tmp, run, summary = prompt_run
    found = [p for p in summary["findings"]["prompts"] if p["failure"]]
    assert len(found) == summary["findings"]["found"] == len(summary["findings"]["cases"]) >= 1
    assert main(["export", str(run).replace(".json", ".html"), "--to", str(tmp / "ds")]) == 0
    from datasets import load_dataset

    from sagekit.seeds import seeds

    images = load_dataset("imagefolder", data_dir=str(tmp / "ds"), split="train")
    table = load_dataset("parquet", data_files=str(tmp / "ds" / "metadata.parquet"), split="train")
    assert len(images) == len(table) == len(found)
    assert sorted(images["prompt"]) == sorted(p["prompt"] for p in found)
    assert images[0]["image"].size == (32, 32) and images[0]["seeds"] == seeds("eval", 0, 4)  # the failure test's fresh seeds
    assert set(table["sampler"]) == {"DPMSolverMultistepScheduler"} and set(table["steps"]) == {10} and set(table["guidance"]) == {1.0}
    card = (tmp / "ds" / "README.md").read_text()
    assert card.startswith("---\n") and "sagekit verify" in card and "fail_fraction" in card and "| n_labels | `12` |" in card
    # drawn again, the same failures at the same rates
    res = verify(tmp / "ds", "toy", progress=False)
    by_prompt = {p["prompt"]: p for p in found}
    assert res["still_fails"].all() and res["same_revision"].all()
    for r in res.itertuples():
        assert r.now == r.recorded == by_prompt[r.prompt]["failure_rate"]
        assert r.verifier_now == r.verifier_recorded == by_prompt[r.prompt]["verifier_failure_rate"]
    capsys.readouterr()
    assert main(["verify", str(tmp / "ds"), "--model", "toy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cases"] == out["still_fail"] == len(found)


def test_latent_and_token_cases_survive_the_round_trip(toy, tmp_path, capsys):
    """A latent case, a token case and a plain prompt case, stored, exported and drawn
    again: the tensors come back bit for bit, and the images (hence the rates) are the ones
    the study drew. (A store with cases with and without tensors once crashed verify.)"""
    ens = load_ensemble("toy-ensemble")
    how = settings(toy, None, 8)
    z = torch.randn(toy.latent_shape, generator=torch.Generator().manual_seed(3)) * 1.1
    emb = toy.token_statistics()[0] + 0.5
    cases, images = [], []
    for goal, prompt, label, extra in ((UnrelatedGoal(ens), "a photo of a red circle", "red circle", {"latent": z}),
                                       (TargetGoal(ens), "a photo of a blue star <t>", "green heart",
                                        {"embedding": emb, "token": "<t>"}),
                                       (UnrelatedGoal(ens), "a photo of a green heart", "green heart", {})):
        tensors = {k: v for k, v in extra.items() if k != "token"}
        img = draw(toy, prompt, [7], how["sampler"], how["steps"], how["guidance"], extra.get("token"), tensors)
        rate = float(goal.found(img, torch.tensor([ens.label_index(label)])).float().mean())
        cases.append(FailureCase(study="unit", model="toy", prompt=prompt, label=label, seeds=[7], goal=goal.spec(),
                                 judge=ens.name, verifier="toy-clip", fail_fraction=1.0, judge_failure_rate=rate,
                                 verifier_failure_rate=0.0, **extra, **how))
        images.append(img[0])
    store = ResultStore(tmp_path / "store")
    keys = keep(store, cases, torch.stack(images))
    assert torch.equal(store.tensors(keys[0])["latent"], z) and torch.equal(store.tensors(keys[1])["embedding"], emb)
    export(tmp_path / "store", tmp_path / "ds")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "ds").stat().st_mode & 0o777 == 0o777 & ~mask  # as mkdir makes it (mkdtemp's is 0700)
    table = read(tmp_path / "ds").set_index("key")
    assert table.loc[keys[0], "tensor_file"].endswith(".safetensors") and table.loc[keys[1], "token"] == "<t>"
    assert table["tensor_file"].isna().sum() == 1
    res = verify(tmp_path / "ds", "toy", progress=False).set_index("key")
    for key, case in zip(keys, cases):
        assert res.loc[key, "now"] == case.judge_failure_rate
    # a store that lost a case's latent, or its image, exports nothing and says which file
    store.image_path(keys[2]).unlink()
    assert main(["export", str(tmp_path / "store"), "--to", str(tmp_path / "ds2")]) == 2
    assert f"case {keys[2]}: its image" in capsys.readouterr().err
    store.tensor_path(keys[0]).unlink()
    assert main(["export", str(tmp_path / "store"), "--to", str(tmp_path / "ds3")]) == 2
    assert f"case {keys[0]}: its tensors" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists() and not (tmp_path / "ds3").exists()


@pytest.mark.parametrize("make,args,message", [
    (None, ["export", "/no/such/run.json", "--to", "OUT"], "not a run's summary"),
    ("seed-shifts", ["export", "RUN", "--to", "OUT"], "kept no failure cases"),
    ("store", ["export", "STORE", "--to", "OUT"], "no failure cases to export"),
    ("full", ["export", "STORE", "--to", "FULL"], "is not an empty folder"),
    (None, ["verify", "TMP", "--model", "toy"], "not a sagekit failure dataset"),
])
def test_export_and_verify_refuse_bad_input(tmp_path, capsys, make, args, message):
    run = tmp_path / "run.json"
    if make == "seed-shifts":
        run.write_text(json.dumps({"study": "seed-shifts", "parameters": {"store_dir": "x"}, "findings": {}}))
    if make in ("store", "full"):
        ResultStore(tmp_path / "store")
    if make == "full":
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "keep.txt").write_text("mine")
    swap = {"RUN": str(run), "OUT": str(tmp_path / "out"), "STORE": str(tmp_path / "store"),
            "FULL": str(tmp_path / "full"), "TMP": str(tmp_path)}
    assert main([swap.get(a, a) for a in args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert make != "full" or [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
