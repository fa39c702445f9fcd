"""The prompt-audit study: its parameters refused in one line, a toy audit whose failing
images are kept as failure cases that say which facts failed and who judged them, and the
study on a tiny SD folder judged by tiny VQA models."""

import json
import math

import pandas as pd
import pytest
import torch

from sagekit.audit import audit, failing_images, judge_agreement
from sagekit.cli import main
from sagekit.models.facts import check
from sagekit.dataset import export, verify
from sagekit.models.registry import load_generator, load_judge
from sagekit.toy.facts import facts
from sagekit.report import check_study, run_study
from sagekit.seeds import seeds
from sagekit.store import ResultStore
from sagekit.studies import prompt_audit as pa
from sagekit.studies.parameters import ParameterError
from sagekit.testing import save_tiny_blip_vqa, save_tiny_gpt2, save_tiny_smolvlm

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
           ([f"model={str(tiny_sd)!r}", "judge='toy-facts'", "verifier=''", "search=0"], "is a real model"),
           ([f"judge={blip!r}", f"verifier={blip!r}"], "another 'vqa:<model>' judge"),
           ([f"verifier={blip!r}"], "must be a judge of the toy world's labels")]
    for given, said in bad:
        with pytest.raises(ParameterError, match=said.replace("{", r"\{").replace("}", r"\}")):
            check_study("prompt-audit", given)
    long = tmp_path / "long.txt"
    long.write_text("a red circle" + " on the grass" * 10 + "\n")
    with pytest.raises(ParameterError, match="reads 24; set search=0"):
        check_study("prompt-audit", [f"prompts={str(long)!r}"])
    assert check_study("prompt-audit", [f"prompts={str(long)!r}", "search=0"])[4] == 8  # 1 prompt, 8 seeds
    listed = tmp_path / "mine.txt"
    listed.write_text("a red circle\n")
    _, _, _, resolved, images = check_study("prompt-audit", [f"prompts={str(listed)!r}", "seeds_per_prompt=3", "search=0"])
    assert images == 3 and resolved["judge"] == "toy-facts" and resolved["verifier"] == "toy-clip"
    assert check_study("prompt-audit", [f"model={str(tiny_sd)!r}", f"judge={blip!r}", f"verifier={smol!r}",
                        "search=0"])[3][
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
    # a person's verdict on a kept image reaches the agreement table (and the exported dataset)
    from sagekit.verdicts import agreement, record

    record(store, keys[0], "judges erred")
    said = agreement(store.frame("prompt-audit"))
    assert said["judged"] == 1 and said["people_and_ensemble"]["k"] == 0
    could = not math.isnan(frame.loc[keys[0], "verifier_failure_rate"])  # the verifier could say (or not)
    assert said["people_and_verifier"]["n"] == int(could)
    assert said["people_and_verifier"]["k"] == int(could and not frame.loc[keys[0], "verified"])
    # exported, the cases are drawn again and read under their facts: each still fails, and the verifier
    # says again what it said
    export(tmp_path / "store", tmp_path / "dataset")
    again = verify(tmp_path / "dataset", "toy", progress=False).set_index("key").loc[keys]
    assert again["still_fails"].all()
    assert [None if math.isnan(v) else v for v in again["verifier_now"]] == [
        None if v is None else float(v) for v in failing["verifier_failed"]]
    from sagekit.dataset import read

    exported = read(tmp_path / "dataset").set_index("key")
    assert exported.loc[keys[0], "verdict"] == "judges erred"
    extra = json.loads(exported.loc[keys[0], "extra"])
    assert set(extra["judge_revisions"]) == set(plan.judges) and extra["templates"]["prompt"] == pa.PROMPT_QUESTION


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
    lm = save_tiny_gpt2(tmp_path / "gpt2")
    params = small("prompt-audit", tmp_path) + [f"model={str(tiny_sd)!r}", f"judge={blip!r}", f"verifier={smol!r}",
                                                "steps=2", "n_prompts=3", f"lm={str(lm)!r}"]
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
    assert f["images_failing"]["k"] == 6 and len(f["cases"]) == 6 + f["search"]["found"]["k"]  # and found prompts
    store = ResultStore(tmp_path / "store")
    case = store.frame("prompt-audit").iloc[0]
    assert case["templates"]["object"] == "Is there a {name} in the image?"
    assert case["goal"]["facts"][0]["question"] == "Is there a dog in the image?"
    html = (tmp_path / "reports" / summary["html"]).read_text()
    assert "Is the bicycle red?" in html and "No accuracy on fresh scenes" in html
    # the search from the prompt the model fails least, judged by the VLM's questions of it
    assert f["search"]["searched"] == 1 and f["search"]["prompts"][0]["start"] in {"a photo of a dog",
                                                                                  "a photo of a red bicycle",
                                                                                  "a photo of a blue car"}


def test_the_prompt_level_goal_reads_every_fact_and_has_a_gradient(vqa_pair):
    from sagekit.models.registry import load_judge
    from sagekit.search.facts_goal import FactsGoal
    from sagekit.toy.facts import facts

    gen = load_generator("toy")
    drawn = gen.generate(["a photo of a red circle"] * 2 + ["a photo of a blue star"] * 2, seeds("eval", 0, 4), steps=10)
    stated = facts("a photo of a red circle")
    goal = FactsGoal("toy-facts", {"toy-ensemble": load_judge("toy-ensemble")}, ["a red circle"], [stated])
    target = torch.zeros(4, dtype=torch.long)
    x = drawn.clone().requires_grad_(True)
    loss = goal.loss(x, target)
    (grad,) = torch.autograd.grad(loss.sum(), [x])
    assert grad.abs().sum() > 0 and loss.shape == (4,)
    # P(red circle) high where it is drawn, low where a blue star is; found agrees with the facts' reading
    assert loss[:2].min() > 0.9 and loss[2:].max() < 0.1
    assert goal.found(drawn, target).tolist() == [not all(r.held for r in row) for row in goal.readings(drawn, 0)]
    assert goal.found(drawn, target).tolist() == [False, False, True, True]
    # a question fact: the VLM's P("yes"), differentiable too; two prompts' facts kept apart by target
    blip = load_judge(vqa_pair[0])
    asked = pa.plan([pa.AuditPrompt("a red circle", (("object", "Is there a red circle?"),)),
                     pa.AuditPrompt("two stars", (("count", "Are there two stars?"), ("object", "Is there a star?")))],
                    vqa_pair[0], "")
    vgoal = FactsGoal(vqa_pair[0], asked.judges, ["a red circle", "two stars"], asked.facts)
    x = drawn[:2].clone().requires_grad_(True)
    loss = vgoal.loss(x, torch.tensor([0, 1]))
    (grad,) = torch.autograd.grad(loss.sum(), [x])
    want = [blip.yes(drawn[:1], ["Is there a red circle?"]).item(),
            blip.yes(drawn[1:2], ["Are there two stars?", "Is there a star?"][:1]).item() / 2
            + blip.yes(drawn[1:2], ["Is there a star?"]).item() / 2]
    assert torch.allclose(loss.detach(), torch.tensor(want), atol=1e-6) and grad.abs().sum() > 0


def test_the_search_from_audited_prompts_grows_them_until_a_fact_fails(tmp_path):
    from sagekit.models.registry import load_caption_lm

    gen = load_generator("toy")
    items = pa.load_prompts("toy", 1)  # "a photo of a red circle": drawn right on every seed
    plan = pa.plan(items, "toy-facts", "toy-clip")
    lm, tok = load_caption_lm("toy")
    cfg = pa.search_config(1, 2, 4, 0.5, 10, None, "toy-facts")
    result, table = pa.search_from(gen, plan, [0], "toy-facts", "toy-clip", lm, tok, cfg, progress=False)
    row = table.iloc[0]
    assert row["label"] == items[0].prompt and row["prompt"].startswith(items[0].prompt) and len(row["words"].split()) == 1
    assert not set(row["words"].split()) & set(pa.search_config(1, 2, 4, 0.5, 10, None, "toy-facts").banned)
    # the category of each failure: the start prompt's facts read in the found prompt's fresh images
    readings = check(plan.judges, result.images[0], plan.facts[0])
    failed = [r.category for rs in readings for r in rs if not r.held]
    assert row["failure_rate"] == sum(not all(r.held for r in rs) for rs in readings) / 4
    assert row["failed_as"] == ", ".join(f"{c} ×{failed.count(c)}" for c in dict.fromkeys(failed))
    store = ResultStore(tmp_path / "store")
    keys = pa.keep_found(store, gen, plan, [0], result, table, cfg, 0, "toy-facts", "toy-clip", None, "q {prompt}")
    assert len(keys) == int(row["failure"])
    empty, none = pa.search_from(gen, plan, [], "toy-facts", "toy-clip", lm, tok, cfg, progress=False)
    assert none.empty and "No search ran" in pa.search_line(none).data


def test_the_audit_explorer_reads_any_prompt_fact_by_fact():
    from sagekit.explore.audit import explorer

    gen = load_generator("toy")
    plan = pa.plan(pa.load_prompts("toy", 2), "toy-facts", "")  # object facts only: toy-ensemble alone
    ex = explorer(gen, plan, "toy-facts", "q {prompt}", steps=10)
    assert ex.frame.note.startswith("'a photo of a red circle'") and len(ex.frame.images) == 3
    ex.controls["prompt"].value = "two green hearts at night"  # a count and a place: judges the plan had not loaded
    ex.redraw_frame()
    again = check({n: load_judge(n) for n in ("toy-ensemble", "toy-count", "toy-background")}, ex.frame.images,
                  facts("two green hearts at night"))
    for caption, row, mark in zip(ex.frame.captions, again, ex.frame.marks):
        lines = caption.split("\n")[1:]
        assert [line.startswith("✓") for line in lines] == [r.held for r in row] and mark == all(r.held for r in row)
    assert [line.split(":")[0][2:] for line in ex.frame.captions[0].split("\n")[1:]] == [
        "green heart", "two hearts", "at night"]
    ex.controls["draw"].value = 1  # other fresh seeds, never the audit's
    before = ex.frame.images
    ex.redraw_frame()
    assert not torch.equal(before, ex.frame.images)


def test_the_verifier_confirms_denies_or_cannot_say():
    from sagekit.audit import verifier_verdict

    assert verifier_verdict([False, True], [False, None]) is True  # it sees the failed fact fail
    assert verifier_verdict([True, False], [False, None]) is True  # it sees another fact fail
    assert verifier_verdict([False, True], [True, True]) is False  # it holds the fact the judge failed
    assert verifier_verdict([True, False], [True, None]) is None  # it cannot read the failed fact
    assert verifier_verdict([False], [None]) is None


def test_an_audit_without_failures_or_facts_says_so(tmp_path):
    from sagekit.audit import rates

    empty = pd.DataFrame(columns=["prompt_index", "prompt", "seed", "image", "fact", "category", "text", "held",
                                  "seen", "failed_as", "p_yes", "verifier_held"])
    by_prompt, by_category = rates(empty)
    assert list(by_category.columns) == ["category", "k", "n", "rate", "lo", "hi"] and by_category.empty
    assert "No image failed" in pa.failures_view(torch.zeros(0, 3, 8, 8), empty, 4).data
    silent = tmp_path / "dogs.txt"
    silent.write_text("a red circle\na photo of a dog\n")
    with pytest.raises(ParameterError, match="'a photo of a dog' .* states nothing the toy grammar reads"):
        check_study("prompt-audit", [f"prompts={str(silent)!r}", "search=0"])
    assert check_study("prompt-audit", [f"prompts={str(silent)!r}", "search=0", "n_prompts=1"])[4] == 8
