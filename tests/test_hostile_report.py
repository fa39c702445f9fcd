"""A study run with a hostile model folder, judge spec, CLIP spec and label: the report
shows every one of them as text, and no injected script or handler runs.

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

from sagekit.toy.names import TOY_DIR
from sagekit.report import run_study
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


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    model = root.joinpath(*MODEL_DIRS)
    shutil.copytree(TOY_DIR / "toy", model)
    judge = root / JUDGE_DIR
    shutil.copytree(TOY_DIR / "judges" / "resnet", judge)
    labels = [LABEL if l == "red circle" else l for l in LABELS]
    cfg = json.loads((judge / "config.json").read_text())
    cfg["label_names"] = labels
    (judge / "config.json").write_text(json.dumps(cfg))
    (root / "labels.txt").write_text("\n".join(labels))
    clip = root / CLIP_DIR
    shutil.copytree(TOY_DIR / "clip", clip)
    out = root / "out"
    summary = run_study("seed-shifts", [
        f"models=[{str(model)!r}]", "guidance=[None]", "shifts={'UMS': [0.1]}", "n_labels=2",
        f"label_set={str(root / 'labels.txt')!r}", f"judge={'timm:' + str(judge)!r}", f"clip={'hf:' + str(clip)!r}",
        f"store_dir={str(root / 'store')!r}"], out, timeout=900)
    return out / summary["html"], {"model": str(model), "judge": "timm:" + str(judge), "clip": "hf:" + str(clip),
                                   "label": LABEL}


def test_no_markup_from_user_strings_reaches_the_page(hostile_report):
    page, strings = hostile_report
    text = page.read_text()
    assert "<script" not in text and len(CSP.findall(text)) == 1
    for s in strings.values():  # each one is in the page, escaped
        assert html.escape(s, quote=False) in text or html.escape(s) in text, s
    assert "onerror=" not in re.sub(r"&lt;.*?&gt;", "", text)  # only ever inside escaped text


def test_nothing_runs_in_chromium_and_the_strings_are_visible(hostile_report, tmp_path):
    require_chromium()
    page, strings = hostile_report
    title = re.search(r"<title>(.*?)</title>", page.read_text()).group(1)
    assert title.startswith("sagekit seed-shifts")
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
