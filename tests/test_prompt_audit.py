"""The prompt-audit study: its parameters refused in one line, a toy audit whose failing
images are kept as failure cases that say which facts failed and who judged them, and the
study on a tiny SD folder judged by tiny VQA models."""

import json

import pytest
import torch

from sagekit.audit import audit, failing_images, judge_agreement
from sagekit.cli import main
from sagekit.dataset import export, verify
from sagekit.models.registry import load_generator
from sagekit.report import check_study, run_study
from sagekit.seeds import seeds
from sagekit.store import ResultStore
from sagekit.studies import prompt_audit as pa
from sagekit.studies.parameters import ParameterError
from sagekit.testing import save_tiny_blip_vqa, save_tiny_smolvlm

from test_notebooks import small


@pytest.fixture(scope="module")
def vqa_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vqa")
    return f"vqa:{save_tiny_blip_vqa(folder / 'blip')}", f"vqa:{save_tiny_smolvlm(folder / 'smol')}"


def test_bad_audit_parameters_are_refused_before_anything_runs(tmp_path, vqa_pair, tiny_sd, capsys):
    blip, smol = vqa_pair
    bad = [(["prompts='missing.txt'"], "no prompt file"), (["judge='toy-ensemble'"], "'toy-facts'"),
           (["question='Is this a photo?'"], "must name {prompt}"),
           (["count_question='Are there {n} {name}s?'"], "may name only {name}, {count}"),
           (["verifier='toy-resnet'"], "shares toy-resnet"),
           ([f"model={str(tiny_sd)!r}", "judge='toy-facts'", "verifier=''"], "is a real model"),
           ([f"judge={blip!r}", f"verifier={blip!r}"], "another 'vqa:<model>' judge"),
           ([f"verifier={blip!r}"], "must be a judge of the toy world's labels")]
    for given, said in bad:
        with pytest.raises(ParameterError, match=said.replace("{", r"\{").replace("}", r"\}")):
            check_study("prompt-audit", given)
    listed = tmp_path / "mine.txt"
    listed.write_text("a red circle\n")
    _, _, _, resolved, images = check_study("prompt-audit", [f"prompts={str(listed)!r}", "seeds_per_prompt=3"])
    assert images == 3 and resolved["judge"] == "toy-facts" and resolved["verifier"] == "toy-clip"
    assert check_study("prompt-audit", [f"model={str(tiny_sd)!r}", f"judge={blip!r}", f"verifier={smol!r}"])[3][
        "prompts"] == "objects"  # a real model's default list
    assert main(["run", "prompt-audit", "-p", "prompts='missing.txt'", "--out", str(tmp_path / "out")]) == 2
    assert "no prompt file" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_toy_audit_keeps_each_failing_image_as_a_case_of_its_failed_facts(tmp_path):
    gen = load_generator("toy")
    items = pa.load_prompts("toy")[::5]  # one prompt of each kind: objects, place, position, count, relation
    plan = pa.plan(items, "toy-facts", "toy-clip")
    store = ResultStore(tmp_path / "store")
    audit_seeds = seeds("eval", 0, 3)
    readings, images, keys = pa.run(gen, plan, audit_seeds, "toy-facts", "toy-clip", steps=10, batch=4, store=store)
    failing = failing_images(readings)
    assert len(failing) and len(keys) == len(failing) == len(set(keys))
    frame = store.frame("prompt-audit").set_index("key")
    for key, row in zip(keys, failing.itertuples()):
        case = frame.loc[key]
        assert case["prompt"] == row.prompt and case["seeds"] == [row.seed]
        failed = [f["text"] for f in case["goal"]["facts"] if f["text"] in row.failed]
        assert case["label"] == "; ".join(row.failed) and failed == row.failed
        assert case["failed"] == row.categories and set(case["judge_revisions"]) == set(plan.judges)
        assert case["judge"] == "toy-facts" and case["verifier"] == "toy-clip"
        assert case["verified"] == bool(row.verifier_failed)
        # the kept image is the one judged (toy images are 32 px: no thumbnail shrinks them)
        assert (store.image(key) - images[row.image]).abs().max() <= 1 / 255
    # the verifier read the object facts and nothing else; its agreement counts them
    objects = readings[readings["category"] == "object"]
    assert objects["verifier_held"].notna().all() and readings.loc[readings["category"] != "object",
                                                                   "verifier_held"].isna().all()
    agree = judge_agreement(readings).set_index("category")
    assert agree.loc["all", "n"] == len(objects)
    assert agree.loc["all", "k"] == int((objects["held"] == objects["verifier_held"].astype(bool)).sum())
    worst = pa.worst_facts(readings)
    assert worst["k"].sum() == int((~readings["held"]).sum()) and worst["rate"].is_monotonic_decreasing
    # a second run over the same store keeps one case per failing image (the cell is the case's identity)
    pa.run(gen, plan, audit_seeds, "toy-facts", "toy-clip", steps=10, batch=4, store=store)
    assert len(store.frame("prompt-audit")) == len(failing)
    # exported, the cases are drawn again and read under their facts: each still fails, and the verifier
    # says again what it said
    export(tmp_path / "store", tmp_path / "dataset")
    again = verify(tmp_path / "dataset", "toy", progress=False).set_index("key").loc[keys]
    assert again["still_fails"].all() and list(again["verifier_now"]) == [float(v) for v in failing["verifier_failed"]]


def test_large_images_are_kept_as_thumbnails_and_stored_whole(tmp_path):
    items = pa.load_prompts("toy", 2)
    plan = pa.plan(items, "toy-facts", "")
    big = lambda prompts, s: torch.rand(len(prompts), 3, 64, 48, generator=torch.Generator().manual_seed(s[0] % 1000))
    seen = []
    readings, images = audit(big, plan.judges, items, plan.facts, [1, 2], batch=3,
                             keep=lambda rows, drawn, first: seen.append((len(rows), drawn.shape, first)),
                             thumbnail=16)
    assert images.shape == (4, 3, 16, 12) and [s[1][-2:] for s in seen] == [(64, 48)] * 2
    assert [s[2] for s in seen] == [0, 3] and sum(s[0] for s in seen) == len(readings)
    assert readings["verifier_held"].isna().all()


def test_prompt_audit_on_a_tiny_sd_folder_with_tiny_vqa_judges(tmp_path, tiny_sd, vqa_pair):
    blip, smol = vqa_pair
    params = small("prompt-audit", tmp_path) + [f"model={str(tiny_sd)!r}", f"judge={blip!r}", f"verifier={smol!r}",
                                                "steps=2", "n_prompts=3"]
    summary = run_study("prompt-audit", params, tmp_path / "reports", timeout=900)
    saved = json.loads((tmp_path / "reports" / summary["html"].replace(".html", ".json")).read_text())
    f = saved["findings"]
    assert saved["parameters"]["prompts"] == "objects" and f["judge"] == blip and f["verifier"] == smol
    # the first three prompts of the list: an object; an object and its colour, twice; two seeds each
    assert {c["category"]: c["n"] for c in f["by_category"] if c["category"] in ("object", "colour")} == \
        {"object": 6, "colour": 4}
    assert f["templates"]["colour"] == "Is the {name} {color}?" and "{prompt}" in f["templates"]["prompt"]
    assert f["images_failing"]["n"] == 6 and all(r["n"] == 10 for r in f["verifier_agreement"] if r["category"] == "all")  # facts, both read
    # random tiny VLMs answer "no" (P(yes) ~ 1e-4): every image fails and is kept, with the questions it was asked
    assert len(f["cases"]) == f["images_failing"]["k"] == 6
    store = ResultStore(tmp_path / "store")
    case = store.frame("prompt-audit").iloc[0]
    assert case["templates"]["object"] == "Is there a {name} in the image?"
    assert case["goal"]["facts"][0]["question"] == "Is there a dog in the image?"
    html = (tmp_path / "reports" / summary["html"]).read_text()
    assert "Is the bicycle red?" in html and "No accuracy on fresh scenes" in html
