"""Every study run with a hostile model folder, judge spec, CLIP spec and label: the
report shows every one of them as text, and no injected script or handler runs. (The
toy-world report takes no string from its user: its parameters are counts and a seed.)

The report is opened twice in headless Chromium: as written (its Content-Security-Policy
forbids every script), and as a copy without that policy, so the escaping and the
sanitizer are tested on their own: any payload that reached the page as markup would run
there and change ``document.title``.
"""

import html
import json
import re
import shutil

import pytest
from chromium import dump_dom, require_chromium

from captioned import CONCEPTS, captioned_folder

from sagekit.report import run_study
from sagekit.studies import STUDIES
from sagekit.studies.parameters import literal
from sagekit.toy.names import TOY_DIR
from sagekit.toy.scenes import LABELS

# A folder name can't hold "/", so the script tag is split over two folder levels: the
# model's path then reads <script>...</script><img ... onerror=...>.
MODEL_DIRS = ("<script>document.title='PWNED-script'<", "script><img src=x onerror=\"document.title='PWNED-img'\">")
JUDGE_DIR = "j`<img src=y onerror=\"document.title='PWNED-judge'\">`*x*"
CLIP_DIR = "c`</code><b onmouseover=alert(1)>[a](javascript:alert(1))$x$"
LABEL = "red <svg onload=\"document.title='PWNED-label'\"> circle"
CSP = re.compile(r'<meta[^>]*http-equiv="Content-Security-Policy"[^>]*>')
PROBE = """<script>window.addEventListener("load", () => {
  const d = document.createElement("pre"); d.id = "sagekit-probe";
  d.textContent = JSON.stringify({title: document.title, text: document.body.innerText,
    scripts: document.scripts.length, handlers: document.querySelectorAll("[onerror],[onload],[onmouseover]").length});
  document.body.appendChild(d);
});</script>"""


VERIFIER_DIR = "v<i>\\`*_{}[]()#+-.!|~&amp;"  # every Markdown metacharacter, and an entity
LM_DIR = "lm<style>body{display:none}"  # an unclosed style element would hide the page
PROMPT = "a photo of a <img src=z onerror=\"document.title='PWNED-prompt'\"> dog"
CATEGORY = "count</td><script>document.title='PWNED-cat'</script>"
QUESTION = "Is there a *dog* `x` [a](javascript:alert(1)) <u>?"


@pytest.fixture(scope="module")
def hostile_world(tmp_path_factory):
    """The toy world's models in folders with hostile names, judges whose labels include a
    hostile one, and a label file: the strings a user can hand any study."""
    root = tmp_path_factory.mktemp("hostile")
    model = root.joinpath(*MODEL_DIRS)
    shutil.copytree(TOY_DIR / "toy", model)
    labels = [LABEL if l == "red circle" else l for l in LABELS]
    # implosion's judge knows the concepts of the captioned folder (tests/captioned.py)
    concepts = list(CONCEPTS) + labels[len(CONCEPTS):]
    judges = {}
    for name, source, names in ((JUDGE_DIR, "resnet", labels), (VERIFIER_DIR, "mobilenet", labels),
                                (JUDGE_DIR + " concepts", "resnet", concepts)):
        shutil.copytree(TOY_DIR / "judges" / source, root / name)
        cfg = json.loads((root / name / "config.json").read_text())
        cfg["label_names"] = names
        (root / name / "config.json").write_text(json.dumps(cfg))
        judges[name] = "timm:" + str(root / name)
    (root / "labels.txt").write_text("\n".join(labels))
    shutil.copytree(TOY_DIR / "clip", root / CLIP_DIR)
    shutil.copytree(TOY_DIR / "caption-lm", root / LM_DIR)
    return {"root": root, "model": str(model), "judge": judges[JUDGE_DIR], "verifier": judges[VERIFIER_DIR],
            "concept_judge": judges[JUDGE_DIR + " concepts"],
            "clip": "hf:" + str(root / CLIP_DIR), "lm": str(root / LM_DIR), "label_set": str(root / "labels.txt"),
            "labels": labels}


def _params(study: str, w: dict, out) -> tuple[list[str], dict]:
    """A small run of ``study`` on the hostile world; the strings its report must show."""
    shown = {"model": w["model"], "judge": w["judge"], "label": LABEL}
    given = {"model": w["model"], "judge": w["judge"], "store_dir": str(out / "store")}
    if study == "seed-shifts":
        given |= {"models": [w["model"]], "guidance": [None], "shifts": {"UMS": [0.1]}, "n_labels": 2,
                  "label_set": w["label_set"], "clip": w["clip"]}
        del given["model"]
        shown["clip"] = w["clip"]
    elif study == "prompt-failures":
        given |= {"verifier": w["verifier"], "clip": w["clip"], "lm": w["lm"], "label_set": w["label_set"],
                  "n_labels": 2}
        shown |= {"verifier": w["verifier"], "clip": w["clip"], "lm": w["lm"]}
    elif study in ("distorted-latents", "unrelated-latents"):
        given |= {"verifier": w["verifier"], "realism": "toy-realism", "empty": "toy-count",
                  "label_set": w["label_set"]}
        shown["verifier"] = w["verifier"]
    elif study == "adversarial-tokens":
        given |= {"verifier": w["verifier"], "clip": w["clip"], "targets": [LABEL]}
        shown |= {"verifier": w["verifier"], "clip": w["clip"]}
    elif study == "implosion":
        data = captioned_folder(w["root"] / "pairs <b>x</b>")
        given |= {"judge": w["concept_judge"], "clip": w["clip"], "data": str(data), "concepts": "dog:cat",
                  "unpoisoned": ["tree"], "ks": [0, 1],
                  "budget_rule": "total", "budget": 4, "n_train": 20, "trainable": "all", "steps": 3}
        shown |= {"judge": w["concept_judge"], "clip": w["clip"], "data": str(data)}
        del shown["label"]  # the concepts are the data's, not the judge's labels
    elif study == "prompt-audit":  # a prompt list whose prompts and categories hold markup, judged by VLMs
        from sagekit.testing import save_tiny_blip_vqa, save_tiny_smolvlm

        blip = save_tiny_blip_vqa(w["root"] / (JUDGE_DIR + " vqa"))
        smol = save_tiny_smolvlm(w["root"] / (VERIFIER_DIR + " vqa"))
        prompts = w["root"] / "prompts <b>x.jsonl"  # (a file name holds no "/")
        prompts.write_text(json.dumps({"prompt": PROMPT, "questions": [{"category": CATEGORY, "question": QUESTION}]})
                           + "\n")
        given |= {"judge": f"vqa:{blip}", "verifier": f"vqa:{smol}", "prompts": str(prompts), "lm": w["lm"]}
        shown = {"model": w["model"], "judge": f"vqa:{blip}", "verifier": f"vqa:{smol}", "prompt": PROMPT,
                 "category": CATEGORY, "question": QUESTION, "prompts": str(prompts)}
    schema = STUDIES[study].schema
    if "store_dir" not in schema.params:
        del given["store_dir"]
    values = {**schema.small(), **given}
    return [f"{k}={literal(v)}" for k, v in values.items()], shown


HOSTILE_STUDIES = ["seed-shifts", "prompt-failures", "distorted-latents", "unrelated-latents", "adversarial-tokens",
                   "implosion", "prompt-audit"]


@pytest.fixture(scope="module", params=HOSTILE_STUDIES)
def hostile_report(request, hostile_world, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    values, shown = _params(request.param, hostile_world, out)
    summary = run_study(request.param, values, out / "reports", timeout=900)
    return out / "reports" / summary["html"], shown, request.param


def test_no_markup_from_user_strings_reaches_the_page(hostile_report):
    page, strings, _ = hostile_report
    text = page.read_text()
    assert "<script" not in text and len(CSP.findall(text)) == 1
    for s in strings.values():  # each one is in the page, escaped
        assert html.escape(s, quote=False) in text or html.escape(s) in text, s
    assert "onerror=" not in re.sub(r"&lt;.*?&gt;", "", text)  # only ever inside escaped text


def test_nothing_runs_in_chromium_and_the_strings_are_visible(hostile_report, tmp_path):
    require_chromium()
    page, strings, study = hostile_report
    title = re.search(r"<title>(.*?)</title>", page.read_text()).group(1)
    assert title.startswith(f"sagekit {study}")
    assert re.search(r"<title>(.*?)</title>", dump_dom(page)).group(1) == title  # as written: nothing ran
    # Without the CSP: only the escaping and the sanitizer stand between a payload and the page.
    bare = tmp_path / "bare.html"
    bare.write_text(CSP.sub("", page.read_text()).replace("</body>", PROBE + "</body>"))
    dom = dump_dom(bare)
    m = re.search(r'<pre id="sagekit-probe">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    seen = json.loads(html.unescape(m.group(1)))
    assert seen["title"] == html.unescape(title)  # no injected script or handler changed it
    assert seen["scripts"] == 1 and seen["handlers"] == 0  # the probe is the only script; no handler attribute
    for s in strings.values():
        assert s in seen["text"], s  # shown to the reader as text


def test_the_data_card_shows_hostile_paths_and_parameters_as_text(tmp_path):
    """An export's README.md (the data card) is rendered as Markdown by the hub and by
    editors: a model folder or a parameter that holds markup shows as text there too."""
    import mistune

    from sagekit.dataset import data_card

    model = "/data/" + "".join(MODEL_DIRS)
    rows = [{"study": "prompt-failures", "model": model, "revision": "abc`<b>", "verified": True}]
    summary = {"study": "prompt-failures", "started": "20260101-000000", "wall_seconds": 1.0, "question": "q",
               "parameters": {"judge": JUDGE_DIR, "label_set": LABEL, "clip": CLIP_DIR}, "versions": {"x": "<i>1</i>"}}
    card = data_card(rows, summary, tmp_path)
    page = tmp_path / "card.html"
    page.write_text("<!DOCTYPE html><html><head><title>card</title></head><body>"
                    + mistune.html(card.split("---\n", 2)[2]) + PROBE + "</body></html>")
    require_chromium()
    dom = dump_dom(page)
    probe = json.loads(html.unescape(re.search(r'<pre id="sagekit-probe">(.*?)</pre>', dom, re.S).group(1)))
    assert probe["title"] == "card" and probe["handlers"] == 0 and probe["scripts"] == 1  # the probe's own
    text = " ".join(probe["text"].split())
    for s in (model, *(json.dumps(v) for v in summary["parameters"].values())):  # each reads as the text it is
        assert " ".join(s.split()) in text, s
