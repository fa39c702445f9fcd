"""Parameter validation, summary JSON and the escaped index."""

import json

import pytest

from sagekit.report import ParameterError, _coerce, _parse_value, parse_parameters, write_index
from sagekit.studies import get_study


@pytest.mark.parametrize("raw,default,want", [
    ("3", 1, 3), ("3", 1.0, 3.0), ("true", False, True), ("False", True, False), ("toy", "x", "toy"),
    ("'a b'", "x", "a b"), ("[1, 2]", [0], [1, 2]), ("5", [0], [5]), ("['toy','toy-pixel']", ["toy"], ["toy", "toy-pixel"]),
    ("none", 1, None),
])
def test_values_are_parsed_and_coerced(raw, default, want):
    assert _coerce("k", _parse_value(raw), default) == want


@pytest.mark.parametrize("raw,default", [("x", 1), ("1.5", 1), ("true", 1), ("3", True), ("[1]", 1), ("['a']", [0])])
def test_wrong_types_are_refused(raw, default):
    with pytest.raises(ParameterError, match="takes"):
        _coerce("k", _parse_value(raw), default)


def test_parse_parameters_against_the_notebook():
    study = get_study("toy-world")
    assert parse_parameters(study, ["per_label=2", "seed=7"]) == {"per_label": 2, "seed": 7}
    with pytest.raises(ParameterError, match="no parameter 'x'"):
        parse_parameters(study, ["x=1"])


def test_index_escapes_every_string(tmp_path):
    evil = "<script>alert('x')</script>"
    (tmp_path / "s-1.json").write_text(json.dumps({
        "study": "toy-world", "started": "20260101-000000", "wall_seconds": 3.0, "html": "s-1.html",
        "parameters": {"prompt": evil}, "findings": {"headline": {evil: 0.5}, "models": [evil]},
    }))
    page = write_index(tmp_path).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="s-1.html"' in page


def test_index_shows_a_headline_rate_with_its_count_and_interval(tmp_path):
    from sagekit.stats import rate

    (tmp_path / "s-1.json").write_text(json.dumps({
        "study": "prompt-failures", "started": "20260101-000000", "wall_seconds": 3.0, "html": "s-1.html",
        "parameters": {}, "findings": {"headline": {"labels": rate(5, 8), "other": {"k": 1}}, "models": ["toy"]},
    }))
    page = write_index(tmp_path).read_text()
    assert "labels: 5/8 = 0.62 [0.31, 0.86]" in page
    assert "other: {&quot;k&quot;: 1}" in page  # any other dict stays JSON
