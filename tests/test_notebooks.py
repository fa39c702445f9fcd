"""Every notebook runs on the toy world with small parameters and renders a report."""

import ast
import json
import re

import nbformat
import pytest

from sagekit.toy.names import TOY_SAMPLING
from sagekit.report import phases, run_study
from sagekit.studies import STUDIES



def html_text(page: str) -> str:
    """A report's text as a reader sees it: tags removed, entities decoded, spaces joined."""
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


imp_keys = ("k", "budget", "control", "ad", "poisoned_hit", "unpoisoned_acc", "unpoisoned_lo", "unpoisoned_hi", "n")


def small(study, tmp_path):
    """The declaration's small values (every notebook runs in the fast test set); every
    folder parameter points into ``tmp_path``."""
    from sagekit.studies.parameters import Folder, literal

    schema = STUDIES[study].schema
    values = {**schema.small(), **{n: str(tmp_path / "store") for n, p in schema.params.items()
                                   if isinstance(p.rule, Folder)}}
    return [f"{name}={literal(value)}" for name, value in values.items()]


def test_parameters_cells_are_written_from_the_declarations():
    """Each parameter is declared once, in its study's module; the notebook's cell is
    written from it (python tools/parameter_cells.py)."""
    from sagekit.report import notebook_parameters
    from sagekit.studies.parameters import parameters_cell

    for study in STUDIES.values():
        nb = nbformat.read(study.path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert cell.source == parameters_cell(study.schema), f"{study.notebook}: run python tools/parameter_cells.py"
        assert notebook_parameters(study.path) == study.schema.defaults


def test_notebooks_are_committed_clean():
    for study in STUDIES.values():
        nb = nbformat.read(study.path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), study.notebook
        assert all(not c.outputs and c.execution_count is None for c in code), study.notebook


def test_notebooks_hold_no_loops_or_definitions():
    """Library code holds the logic; a notebook holds parameters, calls, plots and prose."""
    for study in STUDIES.values():
        nb = nbformat.read(study.path, as_version=4)
        for c in (c for c in nb.cells if c.cell_type == "code"):
            found = [type(n).__name__ for n in ast.walk(ast.parse(c.source))
                     if isinstance(n, (ast.For, ast.While, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
            assert not found, (study.notebook, found, c.source[:80])


def test_notebooks_hold_no_logic():
    """No comprehension, lambda or branch either: what a notebook computes is a call."""
    logic = (ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp, ast.Lambda, ast.If, ast.IfExp)
    for study in STUDIES:
        nb = nbformat.read(STUDIES[study].path, as_version=4)
        for c in (c for c in nb.cells if c.cell_type == "code"):
            found = [type(n).__name__ for n in ast.walk(ast.parse(c.source)) if isinstance(n, logic)]
            assert not found, (study, found, c.source[:80])


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_study_report(study, tmp_path):
    said = []
    summary = run_study(study, small(study, tmp_path), tmp_path, timeout=900, announce=said.append)
    # the CLI's lines: the run's size, then one per phase of the notebook, in order
    names = list(phases(json.loads(STUDIES[study].path.read_text())).values())
    assert said[0].startswith(f"{study}: about ") and len(said) == 1 + len(names)
    assert [line.split("] ", 1)[1] for line in said[1:]] == [f"{i}/{len(names)} {n}" for i, n in
                                                             enumerate(names, 1)]
    assert names[0] == "loading the models" and all(line.startswith(f"{study} [") for line in said[1:])
    html = (tmp_path / summary["html"]).read_text()
    assert (tmp_path / summary["notebook"]).is_file()
    # strict JSON: NaN (e.g. no poisoned concept at k = 0) is written as null, which every parser reads
    saved = json.loads((tmp_path / summary["html"].replace(".html", ".json")).read_text(),
                       parse_constant=lambda c: pytest.fail(f"the summary holds {c}, which is not JSON"))
    assert saved["findings"] and saved["versions"]["torch"] and saved["wall_seconds"] > 0
    executed = nbformat.read(tmp_path / summary["notebook"], as_version=4)
    assert not [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    # no progress bar in a static report (tqdm's "  0%|" in a widget's text or a stream)
    shown = [o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in executed.cells
             for o in c.get("outputs", [])]
    assert not [t for t in shown if re.search(r"\d+%\|", t)]
    assert "import " not in re.sub(r"<[^>]+>", "", html)  # input cells are not rendered
    # plots are embedded in the page
    assert html.count("data:image/png;base64") >= (3 if study in ("toy-world", "seed-shifts") else 1)
    index = (tmp_path / "index.html").read_text()
    assert index.count(f'href="{summary["html"]}"') == 1 and study in index
    if study == "toy-world":
        f = saved["findings"]
        assert set(f["gen_acc"]) == {"toy", "toy-latent-learned", "toy-pixel"}
        assert all(0 <= v <= 1 for m in f["gen_acc"].values() for v in m.values())
        assert saved["parameters"]["per_label"] == 1
        assert {j["judge"] for j in f["judges"]} >= {"toy-count", "toy-relation", "toy-realism", "toy-clip"}
        assert all(j["lo"] <= j["acc"] <= j["hi"] and 0 <= j["ece"] <= 1 for j in f["judges"])
        assert [p["probe"] for p in f["probes"]] == ["plain", "context word", "unseen pair", "count", "relation",
                                                     "rare word"]
        assert all(p["n"] >= 4 and p["lo"] <= p["acc"] <= p["hi"] for p in f["probes"])
        words = f["word_probes"]
        assert [w["model"] for w in words] == ["toy", "toy-latent-learned", "toy-pixel"]
        assert all(w["n"] == 4 and w[f"{k}_lo"] <= w[k] <= w[f"{k}_hi"] for w in words
                   for k in ("word_swap", "end_swap", "own"))
        assert "attention ratio" in html.lower() or "attention inside the object" in html
    if study == "seed-shifts":
        rows = saved["findings"]["acc"]
        assert {r["shift"] for r in rows} == {"none", "UMS", "PAS"}
        # guidance None in the parameters means each model's default
        models = ("toy", "toy-ddpm", "toy-latent-learned", "toy-pixel")
        assert saved["parameters"]["protocol"] == "toy" and "protocol" in saved["auto"]
        assert {(r["model"], r["guidance"]) for r in rows} == {(m, g) for m in models for g in (TOY_SAMPLING[m][1], 1.0)}
        metrics = ("top1", "top5", "colour", "shape", "clip")
        assert all(set(r) == {"model", "guidance", "shift", "level", "n"} | {m + p for m in metrics
                                                                             for p in ("", "_lo", "_hi")} for r in rows)
        assert all(r[m + "_lo"] <= r[m] <= r[m + "_hi"] for r in rows for m in metrics)
        assert all(r["n"] == (8 if r["shift"] == "none" else 4) for r in rows)
        # a toy label is both right only when colour and shape are
        assert all(r["top1"] <= min(r["colour"], r["shape"]) for r in rows)
        claims = saved["findings"]["claims"]
        assert [c["id"] for c in claims] == list("abcdefghi")
        assert all(c["support"] in ("supported", "contradicted", "inconclusive") and c["evidence"] for c in claims)
        # (b) needs URMS, (c) needs SDS: not in this grid, so they cannot be decided
        assert {c["id"]: c["support"] for c in claims}["b"] == "inconclusive"
        # (f) and (i) compare toy-latent-learned with toy-ddpm, the model that differs from it in the variance
        # alone, while the two UNets were trained with one recipe; else the report says why there is no pair
        from sagekit.toy.names import training_recipe

        f = {c["id"]: c for c in claims}["f"]
        if training_recipe("toy") == training_recipe("toy-latent-learned"):
            assert f["numbers"]["learned"] == "toy-latent-learned" and f["numbers"]["fixed"] == "toy-ddpm"
        else:
            assert f["support"] == "inconclusive" and "toy-latent-learned vs toy-ddpm: training recipe differ" in \
                f["evidence"]
        text = html_text(html)
        assert all(c["rule"] in text for c in claims)  # every rule is printed beside its support
        assert "Paper 001's anchor" in text and "not comparable" in text
    if study in ("distorted-latents", "unrelated-latents"):
        f = saved["findings"]
        fv = f["found_verified"]
        assert fv["success"] <= fv["verified"] <= fv["found"] <= fv["searched"] == f["success"]["n"]
        assert f["success"]["k"] == fv["success"] and f["success"]["lo"] <= f["success"]["rate"] <= f["success"]["hi"]
        steps = saved["parameters"]["steps"] or TOY_SAMPLING[saved["parameters"]["model"]][0]  # None: the model's own
        assert f["residual_speedup"] > 0 and f["residual_speedup_bound"] == pytest.approx(4 * steps / (steps + 2 * 2))
        assert {m["mode"] for m in f["modes"]} == {"exact", "residual"}
        assert set(f["headline"]) >= {"found", "verified"}
        # the toy world's realism judge is part of the goal (low realism / a natural image)
        wanted = "requires low realism: True" if study == "distorted-latents" else "requires a real-looking image: True"
        assert wanted in html_text(html)
        if study == "distorted-latents":
            assert fv["searched"] == 2 and len(f["prompts"]) == 2
            assert set(f["realism"]) == set(f["heldout_failed"]) == {"found", "original"}
            best = f["best_latent"]
            assert (best is None) == (fv["success"] == 0)
            assert best is None or best["distorted"]["n"] == saved["parameters"]["heldout"]
        else:
            lw = f["labels_with_failure"]
            assert fv["searched"] == 2 and lw["n"] == 2 and (lw["k"] > 0) == (f["success"]["k"] > 0)
            r = f["realism"]
            assert r["original"]["n"] == 2 and 0 <= r["original"]["mean"] <= 1 and r["found"]["n"] == f["success"]["k"]
    if study == "implosion":
        points = saved["findings"]["points"]
        assert [(p["rule"], p["k"], p["control"]) for p in points] == [
            (r, k, c) for r in ("per-concept", "total") for k in (0, 1, 2) for c in (False, True)]
        assert all(set(imp_keys) <= set(p) for p in points)
        assert all(p["n"] == 4 * 2 and p["unpoisoned_lo"] <= p["unpoisoned_acc"] <= p["unpoisoned_hi"] for p in points)
        # total: 20 poisoned pairs at every k; per concept: 20 // max(ks) = 10 for each concept, so the rules meet at k = 2
        assert [p["budget"] for p in points if not p["control"]] == [0, 10, 20, 0, 20, 20]
        assert [p["n_poisoned"] for p in points if not p["control"]] == [0, 2, 4] * 2
        at = {(p["rule"], p["k"], p["control"]): p for p in points}
        assert at[("total", 2, False)] == {**at[("per-concept", 2, False)], "rule": "total"}  # one run, two rows
        assert at[("total", 1, False)]["ad"] != at[("per-concept", 1, False)]["ad"]
        assert set(saved["findings"]["ad_rises_every_step"]) == {"per-concept", "total"}
        head = saved["findings"]["headline"]
        hit = head["poisoned drawn as target k=2 (total)"]
        assert (hit["k"], hit["n"]) == (round(at[("total", 2, False)]["poisoned_hit"] * 4), 4)
        assert head["control acc k=2 (total)"]["n"] == 8 and hit["lo"] <= hit["rate"] <= hit["hi"]
    if study == "prompt-failures":
        f = saved["findings"]
        assert f["verified"] <= f["found"] <= f["searched"] == 2 and f["labels_verified"]["n"] == 2
        assert {p["label"] for p in saved["findings"]["prompts"]} == {"red circle", "magenta heart"}
        assert {p["label"] for p in saved["findings"]["baseline"]} == {"red circle", "magenta heart"}
        from sagekit.toy.explain import CATEGORIES

        explained = f["explained"]
        assert [e["prompt"] for e in explained] == [p["prompt"] for p in f["prompts"]]
        # two images per prompt, each in one category; a failing prompt's commonest is a failure's
        assert all(sum(e[c] for c in CATEGORIES) == 2 and e["category"] in CATEGORIES[:-1] + ("",) for e in explained)
        assert all(e["with_label"] <= e["captions"] for e in explained)
        assert sum(f["categories"].values()) == f["found"]
        head = f["headline"]
        assert head["labels searched"] == 2 and head["labels with a verified failing prompt"] == f["labels_verified"]
        assert head["labels failing for the LM's likeliest continuations"] == f["baseline_labels"]
    if study == "adversarial-tokens":
        f = saved["findings"]
        assert 0 <= f["success"]["rate"] <= 1 and -1 <= f["text_cosine"] <= 1 and "clip_delta" in f
        assert list(f["by_target"]) == ["red circle", "cyan star"] and f["best_target"] in f["by_target"]
        assert f["success"]["rate"] == pytest.approx(sum(t["success"] for t in f["by_target"].values()) / 2, abs=1e-3)
        best = f["headline"]["best target's held-out success"]
        assert best == f["best_target_success"] and best["n"] == f["success"]["n"] // 2
        assert best["rate"] == pytest.approx(f["by_target"][f["best_target"]]["success"], abs=1e-3)
