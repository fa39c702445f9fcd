"""Auditing a prompt list: prompt files read (or refused, saying where), every prompt drawn
on its seeds and read fact by fact, failure rates per prompt and per category."""

import json

import pytest

from sagekit.audit import TOY_FACTS, AuditPrompt, PromptFileError, audit, facts_for, rates, read_prompts
from sagekit.models.facts import check
from sagekit.models.registry import load_generator, load_judge
from sagekit.seeds import seeds


def test_prompt_files_are_read_and_bad_ones_refused_by_line(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# a class\na red circle left of a blue star\n\n  two green hearts on the grass  \n")
    assert read_prompts(txt) == [AuditPrompt("a red circle left of a blue star"),
                                 AuditPrompt("two green hearts on the grass")]
    rows = [{"prompt": "two dogs", "questions": [{"category": "count", "question": "Are there two dogs?"},
                                                 "Is it a photo?"]},
            {"prompt": "a red car", "include": [{"class": "car", "count": 1, "color": "red"}]}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    assert read_prompts(jsonl) == [
        AuditPrompt("two dogs", (("count", "Are there two dogs?"), ("fact", "Is it a photo?"))),
        AuditPrompt("a red car", (("object", "Is there a car in the image?"), ("colour", "Is the car red?")))]
    bad = {"missing.txt": None, "p.csv": "a,b", "empty.txt": "# nothing\n", "broken.jsonl": '{"prompt": "a"}\n{oops',
           "keyless.jsonl": '{"text": "a"}', "blank.jsonl": '{"prompt": "  "}'}
    said = {"missing.txt": "no prompt file", "p.csv": ".txt (one prompt a line) or .jsonl",
            "empty.txt": "holds no prompt", "broken.jsonl": "line 2", "keyless.jsonl": "line 1: no 'prompt'",
            "blank.jsonl": "line 1: its prompt is not a non-empty string"}
    for name, text in bad.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(PromptFileError, match=said[name].replace("(", r"\(").replace(")", r"\)")):
            read_prompts(tmp_path / name)


def test_a_toy_audit_reads_every_fact_of_every_drawn_prompt():
    gen = load_generator("toy")
    items = [AuditPrompt("a red circle left of a blue star"), AuditPrompt("two green hearts on the grass"),
             AuditPrompt("a photo of a yellow cross in the top")]
    facts = [facts_for(item, TOY_FACTS) for item in items]
    judges = {name: load_judge(name) for name in {f.judge for fs in facts for f in fs}}
    audit_seeds = seeds("eval", 0, 3)
    table, images = audit(lambda p, s: gen.generate(p, s, steps=10), judges, items, facts, audit_seeds, batch=4)
    assert len(images) == 9 and len(table) == 3 * sum(len(f) for f in facts)
    # each row is the reading of its own image: read again, it says the same
    for image, rows in table.groupby("image"):
        item = rows["prompt_index"].iloc[0]
        again = check(judges, images[image:image + 1], facts[item])[0]
        assert rows["held"].tolist() == [r.held for r in again]
        assert rows["seed"].iloc[0] == audit_seeds[image % 3]
    by_prompt, by_category = rates(table)
    assert by_prompt["n"].tolist() == [3, 3, 3]
    failed_images = table.groupby("image")["held"].all().eq(False).groupby(table.groupby("image")["prompt_index"].first()).sum()
    assert by_prompt["k"].tolist() == failed_images.tolist()
    stated = table["category"].value_counts()
    for row in by_category.itertuples():
        assert row.k == (table["failed_as"] == row.category).sum()
        assert row.n == stated.get(row.category, stated["object"])  # colour failures: of the object facts
        assert row.lo <= row.rate <= row.hi
    assert {"object", "relation", "count", "background", "position"} <= set(by_category["category"])
