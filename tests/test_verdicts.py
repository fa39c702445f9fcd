"""People's verdicts on found failures: stored as tags, and their agreement with the judges."""

import pytest
import torch

from sagekit import verdicts
from sagekit.store import ResultStore


def _store(tmp_path, verified):
    store = ResultStore(tmp_path)
    keys = store.put_batch("prompt-failures", [{"prompt": f"p{i}"} for i in range(len(verified))],
                           [{"verified": v} for v in verified])
    return store, keys


def test_a_verdict_replaces_the_last_one_and_keeps_other_tags(tmp_path):
    store, (key,) = _store(tmp_path, [True])
    store.tag(key, ["attribute leakage"])
    verdicts.record(store, key, "judges erred")
    verdicts.record(store, key, "model failed")
    assert sorted(store.frame()["tags"][0]) == ["attribute leakage", "verdict:model failed"]
    with pytest.raises(ValueError, match="unknown verdict"):
        verdicts.record(store, key, "maybe")
    with pytest.raises(KeyError):
        verdicts.record(store, "0" * 20, "unsure")


def test_agreement_counts_people_against_the_ensemble_and_the_verifier(tmp_path):
    store, keys = _store(tmp_path, [True, True, False, False, True])
    assert verdicts.agreement(store.frame()) is None  # no verdict yet
    for key, v in zip(keys, ["model failed", "judges erred", "judges erred", "model failed", "unsure"]):
        verdicts.record(store, key, v)
    a = verdicts.agreement(store.frame())
    assert a["judged"] == 4  # "unsure" is left out
    assert (a["people_and_ensemble"]["k"], a["people_and_verifier"]["k"], a["verifier_and_ensemble"]["k"]) == (2, 2, 2)
    assert a["people_and_ensemble"]["lo"] < 0.5 < a["people_and_ensemble"]["hi"]
    table = verdicts.agreement_table(a)
    assert table["agree"].tolist() == [2, 2, 2] and table["of"].tolist() == [4, 4, 4]


def test_the_panel_records_a_choice(tmp_path):
    pytest.importorskip("ipywidgets")
    store, keys = _store(tmp_path, [True, False])
    box = verdicts.panel(store, keys, ["p0", "p1"], torch.rand(2, 3, 16, 16))
    choice = box.children[2].children[2]  # second failure's toggle buttons
    choice.value = "judges erred"
    assert store.frame()["tags"][1] == ["verdict:judges erred"]


def test_the_taggers_save_keeps_the_verdict(tmp_path):
    pytest.importorskip("ipywidgets")
    store, keys = _store(tmp_path, [True, False])
    verdicts.record(store, keys[0], "model failed")
    box = verdicts.tagger(store, keys, ["p0", "p1"], ["rare word", "count"])
    causes, save = box.children[0].children[1:]
    causes.value = ("count",)
    save.click()
    assert sorted(store.frame()["tags"][0]) == ["count", "verdict:model failed"]
    causes.value = ()
    save.click()  # causes cleared, the verdict stays
    assert store.frame()["tags"][0] == ["verdict:model failed"]
