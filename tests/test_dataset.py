"""Failure cases -> a dataset anyone can load (datasets) and draw again (sagekit verify)."""

import json
import os
import shutil
import struct

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from sagekit.cli import main
from sagekit.dataset import export, read, verify, write_manifest
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
    assert card.startswith("---\n") and "sagekit verify" in card and "fail_fraction" in card and "| n&#95;labels | <code>12</code> |" in card
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


def test_a_verdict_given_in_the_lab_reaches_the_report_and_the_dataset(prompt_run, tmp_path):
    """A click in the verdict panel (``verdicts.record``, what the panel's buttons call) and a
    tag: the next run of the same study reports the agreement, its export carries both."""
    from sagekit.verdicts import agreement, record, tag_causes

    tmp, run, summary = prompt_run
    store = ResultStore(tmp / "store")
    key = summary["findings"]["cases"][0]
    tag_causes(store, key, ["rare word"])  # the tagger's save, then the panel's click: both stay
    record(store, key, "judges erred")
    params = [f"{k}={v!r}" for k, v in summary["parameters"].items() if k in (
        "n_labels", "max_words", "top_k", "iterations", "eval_seeds", "fail_fraction", "train_seeds", "search_steps",
        "baseline_prompts", "steps", "guidance", "store_dir")]
    again = run_study("prompt-failures", params, tmp_path / "reports", timeout=600)
    said = again["findings"]["agreement"]
    assert said == agreement(store.frame()) and said["judged"] == 1 and said["people_and_ensemble"]["k"] == 0
    assert main(["export", str(tmp_path / "reports" / again["html"]), "--to", str(tmp_path / "ds")]) == 0
    table = read(tmp_path / "ds").set_index("key")
    assert table.loc[key, "verdict"] == "judges erred" and json.loads(table.loc[key, "tags"]) == ["rare word"]
    others = table.drop(index=key)
    assert others["verdict"].isna().all() and (others["tags"] == "[]").all()


@pytest.fixture(scope="module")
def three_cases(toy, tmp_path_factory):
    """A latent case, a token case and a plain prompt case of the toy model, stored and
    exported: (store, keys, cases, dataset folder)."""
    tmp = tmp_path_factory.mktemp("cases")
    ens = load_ensemble("toy-ensemble")
    how = settings(toy, None, 3)
    # at 3 steps this latent draws a failure with the model's sampler (DPM) and none with DDIM:
    # the verifier's rate, measured on DDIM's drawing, is 0 and verify must measure it there too
    z = torch.randn(toy.latent_shape, generator=torch.Generator().manual_seed(5)) * 1.1
    emb = toy.token_statistics()[0] + 0.5
    cases, images = [], []
    for goal, prompt, label, extra in ((UnrelatedGoal(ens), "a photo of a red circle", "red circle",
                                        {"latent": z, "verifier_sampler": "DDIMScheduler"}),
                                       (TargetGoal(ens), "a photo of a blue star <t>", "green heart",
                                        {"embedding": emb, "token": "<t>"}),
                                       (UnrelatedGoal(ens), "a photo of a green heart", "green heart", {})):
        tensors = {k: v for k, v in extra.items() if k in ("latent", "embedding")}
        drawn = [draw(toy, prompt, [7], sampler, how["steps"], how["guidance"], extra.get("token"), tensors)
                 for sampler in (how["sampler"], extra.get("verifier_sampler", how["sampler"]))]
        rates = [float(goal.found(img, torch.tensor([ens.label_index(label)])).float().mean()) for img in drawn]
        images.append(drawn[0][0])
        cases.append(FailureCase(study="unit", model="toy", prompt=prompt, label=label, seeds=[7], goal=goal.spec(),
                                 judge=ens.name, verifier=ens.name, fail_fraction=1.0, judge_failure_rate=rates[0],
                                 verifier_failure_rate=rates[1], **extra, **how))
    assert (cases[0].judge_failure_rate, cases[0].verifier_failure_rate) == (1.0, 0.0)
    store = ResultStore(tmp / "store")
    keys = keep(store, cases, torch.stack(images))
    export(tmp / "store", tmp / "ds")
    return store, keys, cases, tmp / "ds"


def test_latent_and_token_cases_survive_the_round_trip(three_cases, tmp_path, capsys):
    """The tensors come back bit for bit, and the images (hence the rates) are the ones
    the study drew. (A store with cases with and without tensors once crashed verify.)"""
    store, keys, cases, ds = three_cases
    assert torch.equal(store.tensors(keys[0])["latent"], cases[0].latent)
    assert torch.equal(store.tensors(keys[1])["embedding"], cases[1].embedding)
    mask = os.umask(0o022)
    os.umask(mask)
    assert ds.stat().st_mode & 0o777 == 0o777 & ~mask  # as mkdir makes it (mkdtemp's is 0700)
    table = read(ds).set_index("key")
    assert table.loc[keys[0], "tensor_file"].endswith(".safetensors") and table.loc[keys[1], "token"] == "<t>"
    assert table["tensor_file"].isna().sum() == 1
    res = verify(ds, "toy", progress=False).set_index("key")
    for key, case in zip(keys, cases):  # the verifier's rate on the sampler it was measured with
        assert res.loc[key, "now"] == case.judge_failure_rate
        assert res.loc[key, "verifier_now"] == case.verifier_failure_rate
    # a store that lost a case's latent, or its image, exports nothing and says which file
    shutil.copytree(store.root, tmp_path / "store")
    damaged = ResultStore(tmp_path / "store")
    damaged.image_path(keys[2]).unlink()
    assert main(["export", str(tmp_path / "store"), "--to", str(tmp_path / "ds2")]) == 2
    assert f"case {keys[2]}: its image" in capsys.readouterr().err
    damaged.tensor_path(keys[0]).unlink()
    assert main(["export", str(tmp_path / "store"), "--to", str(tmp_path / "ds3")]) == 2
    assert f"case {keys[0]}: its tensors" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists() and not (tmp_path / "ds3").exists()


def _edit_table(ds, **columns):
    frame = pd.read_parquet(ds / "metadata.parquet")
    for name, change in columns.items():
        frame[name] = [change(v) for v in frame[name]]
    frame.to_parquet(ds / "metadata.parquet")


def _outside(ds, key):
    (ds.parent / "secret.safetensors").write_bytes((ds / "tensors" / f"{key}.safetensors").read_bytes())
    _edit_table(ds, tensor_file=lambda v: "../secret.safetensors" if isinstance(v, str) else v)


def _symlink(ds, key):
    (ds.parent / "secret.safetensors").write_bytes((ds / "tensors" / f"{key}.safetensors").read_bytes())
    target = ds / "tensors" / f"{key}.safetensors"
    target.unlink()
    target.symlink_to(ds.parent / "secret.safetensors")


def _pickle(ds, key):
    torch.save({"latent": torch.zeros(3)}, ds / "tensors" / f"{key}.safetensors")  # a pickle, renamed


def _huge_header(ds, key):
    (ds / "tensors" / f"{key}.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")


def _wrong_shape(ds, key):
    save_file({"latent": torch.zeros(1, 2, 2)}, str(ds / "tensors" / f"{key}.safetensors"))


# (edit, whether the attacker rewrote the manifest to match, what the one-line error says)
HOSTILE = {
    "edited prompt": (lambda ds, key: _edit_table(ds, prompt=lambda p: p + " edited"), False, "was edited or damaged"),
    "edited rate": (lambda ds, key: _edit_table(ds, judge_failure_rate=lambda r: 1.0 - r), False, "edited or damaged"),
    "replaced image": (lambda ds, key: shutil.copyfile(next(f for f in (ds / "images").iterdir() if key not in f.name),
                                                       ds / "images" / f"{key}.png"), False, "edited or damaged"),
    "edited key": (lambda ds, key: _edit_table(ds, key=lambda k: "0" * 20 if k == key else k), True,
                   "its files must be images/"),
    "path outside": (_outside, True, "its files must be"),
    "symlink": (_symlink, True, "symbolic link"),
    "a million seeds": (lambda ds, key: _edit_table(ds, seeds=lambda s: list(range(10**6))), True,
                        "seeds must be 1 to 10000"),
    "made-up verdict": (lambda ds, key: _edit_table(ds, verdict=lambda v: "<b>trust me</b>"), True,
                        "verdict '<b>trust me</b>' is none of"),
    "renamed pickle": (_pickle, True, "is not a safetensors file"),
    "huge header": (_huge_header, True, "is not a safetensors file"),
    "wrong shape": (_wrong_shape, True, "holds latent (1, 2, 2)"),
    "no manifest": (lambda ds, key: (ds / "manifest.json").unlink(), False, "has no manifest.json"),
}


@pytest.mark.parametrize("edit", HOSTILE)
def test_verify_refuses_a_dataset_that_is_not_what_the_export_wrote(three_cases, tmp_path, capsys, edit):
    """Edits the manifest catches (prompts, rates, images), and those an attacker who
    rewrote the manifest could still make (paths, sizes, file formats): one line, exit 2,
    before any case counts as reproduced."""
    _, keys, _, exported = three_cases
    ds = tmp_path / "ds"
    shutil.copytree(exported, ds)
    change, reseal, message = HOSTILE[edit]
    change(ds, keys[0])
    if reseal:
        write_manifest(ds)
    capsys.readouterr()
    assert main(["verify", str(ds), "--model", "toy", "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and message in out.err and len(out.err.strip().splitlines()) == 1, out.err


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
