"""Safe report text: the escaping helper, the sanitizer, and notebooks that use only them."""

import ast
import logging

import nbformat
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune as markdown2html

from sagekit.markup import clean_html, code, escape, md_rows, md_text
from sagekit.report import notebook_parameters
from sagekit.studies import STUDIES

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "`a` *b* _c_ [d](javascript:alert(1))",
           "$x$ \\$ | # h", "line\n# heading\n- item", "&lt;already&gt; &amp;", "```fence```", "<!-- c --> ]]> <![CDATA["]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("template", ["plain {v} text", "**{v}**", "- {v}", "{v!c}", "a | {v} |"])
def test_a_value_renders_as_its_own_text(template, value):
    """Through nbconvert's own Markdown renderer, a value is text: no tag, link or emphasis
    appears that the template did not write, and the reader sees the value's characters."""
    import html as h
    import re

    page = markdown2html(md_text(template, v=value))
    tags = set(re.findall(r"<(\w+)", page))
    assert tags <= {"p", "strong", "ul", "li", "code"}, page
    shown = h.unescape(re.sub(r"<[^>]+>", "", page)).strip()
    assert " ".join(value.split()) in " ".join(shown.split())


def test_escape_and_code():
    assert escape(3.5) == "3&#46;5" and escape("ab c") == "ab c"
    assert code("a`b") == "<code>a&#96;b</code>"
    assert md_text("{x:.2f} {y!r}", x=0.5, y="q") == "0&#46;50 &#39;q&#39;"
    inner = md_text("**{v}**", v="<b>")
    assert md_text("{a}\n{b}", a=inner, b="*") == "**&#60;b&#62;**\n&#42;"  # pieces made by md_text pass as they are
    assert md_rows("- {n}: {v}", [{"n": 1, "v": "<"}, {"n": 2, "v": ">"}]).data == "- 1: &#60;\n- 2: &#62;"


def test_clean_html_keeps_a_report_and_drops_scripts():
    kept = ('<h2 id="x">T</h2><p><strong>a</strong> <code>b</code></p><table class="dataframe"><thead><tr><th>c</th>'
            '</tr></thead><tbody><tr><td>1</td></tr></tbody></table><a href="https://example.org">l</a>')
    assert clean_html(kept) == kept
    dirty = ('<script>alert(1)</script><img src=x onerror=alert(1)><a href="javascript:alert(1)">x</a>'
             '<iframe src="x"></iframe><p onclick="alert(1)">p</p><svg onload=alert(1)></svg>')
    out = clean_html(dirty)
    assert "<script" not in out and "<img" not in out and "<iframe" not in out and "<svg" not in out
    assert "<a>x</a>" in out  # the javascript: link lost its href
    assert "onclick" not in out and "<p>p</p>" in out


def _code_cells(study):
    return [c for c in nbformat.read(study.path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_notebooks_build_markdown_only_through_md(study):
    """Escaping by construction: no notebook calls IPython's Markdown or HTML, and every
    md / md_rows template is a literal (an f-string would paste values unescaped)."""
    for cell in _code_cells(STUDIES[study])[1:]:
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and node.module == "IPython.display":
                assert {a.name for a in node.names} <= {"display"}, cell.source
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("Markdown", "HTML"), cell.source
                if node.func.id in ("md", "md_text", "md_rows"):
                    first = node.args[0]
                    literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
                    assert literal, f"{study}: {node.func.id}() template must be a string literal: {ast.unparse(first)}"


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_papermill_reads_every_parameter_without_a_warning(study, caplog):
    """papermill parses the parameters cell line by line (a second '=' in a comment breaks
    it); it must see exactly the parameters that sagekit reads."""
    from papermill.inspection import inspect_notebook

    with caplog.at_level(logging.WARNING):
        seen = inspect_notebook(str(STUDIES[study].path))
    assert set(seen) == set(notebook_parameters(STUDIES[study].path))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_display_name_shortens_local_folders_only(tmp_path):
    from sagekit.markup import display_name

    folder = tmp_path / "tiny-sdxl"
    folder.mkdir()
    assert display_name(str(folder)) == "tiny-sdxl" and display_name("./models/sd") == "sd"
    assert display_name("stabilityai/stable-diffusion-xl-base-1.0") == "stabilityai/stable-diffusion-xl-base-1.0"
    assert display_name("toy-pixel") == "toy-pixel"


def test_summaries_are_strict_json():
    """json.dumps writes NaN as `NaN`, which is not JSON: findings and summaries go through
    report.dumps, which writes null."""
    import json
    import math

    import numpy as np

    from sagekit.report import dumps

    text = dumps({"acc": float("nan"), "hi": np.float32(0.5), "n": np.int64(3), "rows": [math.inf, (1, 2)]})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"acc": None, "hi": 0.5, "n": 3,
                                                                         "rows": [None, [1, 2]]}
