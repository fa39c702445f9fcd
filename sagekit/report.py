"""Reports: validate parameters, execute a study notebook with papermill, render HTML
without input cells, write the summary JSON, rebuild ``index.html``.

For one run of study S at time T, ``out_dir`` receives::

    S-T.html    the report (self-contained: images are embedded)
    S-T.ipynb   the executed notebook, for anyone who wants the code next to the results
    S-T.json    summary: parameters, versions, wall time, findings

Nothing is written when the parameters are invalid.
"""

from __future__ import annotations

import ast
import datetime as dt
import html
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .studies import Study, get_study

KERNEL_NAME = "sagekit-py311"
FINDINGS_ENV = "SAGEKIT_FINDINGS"
VERSIONED = ("sagekit", "torch", "diffusers", "transformers", "timm", "open_clip_torch", "papermill")


class ParameterError(ValueError):
    """A ``-p key=value`` that the notebook does not take, or of the wrong type."""


# ---------------------------------------------------------------------------- parameters
def notebook_parameters(path: Path) -> dict[str, Any]:
    """Defaults of the notebook's ``parameters`` cell: {name: value}. The cell holds
    literals only (papermill practice), so it is read with ``ast``, not executed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            out = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, (ast.Assign, ast.AnnAssign)):
                    target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                    out[target.id] = ast.literal_eval(node.value)
            return out
    raise ParameterError(f"{path.name} has no cell tagged 'parameters'")


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string


def _type_name(v: Any) -> str:
    return type(v).__name__


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``, or ParameterError."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        return value if isinstance(value, str) else str(value)
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            if default and value:
                proto = default[0]
                return [_coerce(f"{name}[{i}]", v, proto) for i, v in enumerate(value)]
            return list(value)
        if default and not isinstance(default[0], (list, tuple)):
            return [_coerce(f"{name}[0]", value, default[0])]  # a single value for a list
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
    raise ParameterError(f"parameter {name!r} takes {_type_name(default)} (default {default!r}), "
                         f"got {_type_name(value)} {value!r}")


def parse_parameters(study: Study, assignments: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> validated {key: value} (only the given keys)."""
    defaults = notebook_parameters(study.path)
    out = {}
    for item in assignments:
        if "=" not in item:
            raise ParameterError(f"parameters are given as key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in defaults:
            raise ParameterError(f"study {study.id!r} has no parameter {key!r}; its parameters: "
                                 + ", ".join(f"{k}={v!r}" for k, v in defaults.items()))
        out[key] = _coerce(key, _parse_value(raw), defaults[key])
    return out


# ---------------------------------------------------------------------------- execution
def ensure_kernel() -> str:
    """A Jupyter kernelspec for this very interpreter (so papermill never picks another
    Python); written once into ``sys.prefix``."""
    spec_dir = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "sagekit (Python 3.11)", "language": "python"}
    path = spec_dir / "kernel.json"
    if not path.is_file() or json.loads(path.read_text()).get("argv") != spec["argv"]:
        spec_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec, indent=1))
    return KERNEL_NAME


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in VERSIONED:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def save_findings(findings: dict) -> None:
    """Called by a notebook's last cell: hands its findings to ``sagekit run``.
    Interactive runs (no ``sagekit run``) just skip this."""
    path = os.environ.get(FINDINGS_ENV)
    if path:
        Path(path).write_text(json.dumps(findings, indent=1, default=float))


def to_html(notebook_path: Path, title: str) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(notebook_path, as_version=4),
                                          resources={"metadata": {"name": title}})
    return body


def run_study(study_id: str, assignments: list[str] | None = None, out_dir: str | Path = "reports",
              timeout: int = 1800, log_output: bool = False) -> dict:
    """Validate, execute, render. Returns the summary dict (also written as JSON)."""
    import papermill as pm

    study = get_study(study_id)
    params = parse_parameters(study, assignments or [])  # raises before anything is written
    out = Path(out_dir)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{study.id}-{stamp}"
    with tempfile.TemporaryDirectory(prefix="sagekit-") as tmp:
        tmp = Path(tmp)
        findings_path = tmp / "findings.json"
        executed = tmp / f"{stem}.ipynb"
        os.environ[FINDINGS_ENV] = str(findings_path)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(study.path), str(executed), parameters=params, kernel_name=ensure_kernel(),
                execution_timeout=timeout, log_output=log_output, progress_bar=False,
                cwd=str(study.path.parent),
            )
        except Exception:
            out.mkdir(parents=True, exist_ok=True)
            if executed.exists():
                shutil.copy(executed, out / f"{stem}.failed.ipynb")
            raise
        finally:
            os.environ.pop(FINDINGS_ENV, None)
        wall = time.perf_counter() - t0
        findings = json.loads(findings_path.read_text()) if findings_path.exists() else {}
        summary = {
            "study": study.id, "question": study.question, "started": stamp,
            "parameters": {**notebook_parameters(study.path), **params},
            "versions": versions(), "wall_seconds": round(wall, 1),
            "html": f"{stem}.html", "notebook": f"{stem}.ipynb", "findings": findings,
        }
        page = to_html(executed, f"sagekit {study.id} {stamp}")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(executed, out / f"{stem}.ipynb")
        (out / f"{stem}.html").write_text(page)
        (out / f"{stem}.json").write_text(json.dumps(summary, indent=1, default=float))
    write_index(out)
    return summary


# ---------------------------------------------------------------------------- index
def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.3g}"
    elif isinstance(value, (dict, list)):
        value = json.dumps(value, default=str)
    return html.escape(str(value))


def write_index(out_dir: str | Path) -> Path:
    """``out_dir/index.html``: one row per report, newest first. Every string is escaped."""
    out = Path(out_dir)
    summaries = []
    for path in out.glob("*.json"):
        try:
            s = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(s, dict) and "study" in s and "html" in s:
            summaries.append(s)
    rows = []
    for s in sorted(summaries, key=lambda s: str(s.get("started", "")), reverse=True):  # newest first
        f = s.get("findings", {})
        models = f.get("models") or s["parameters"].get("models") or s["parameters"].get("model") or ""
        if isinstance(models, list):
            models = ", ".join(map(str, models))
        headline = f.get("headline", {})
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in (
            _cell(s["study"]), _cell(models),
            "<br>".join(f"{_cell(k)}={_cell(v)}" for k, v in s["parameters"].items()),
            _cell(s["started"]), _cell(f"{s['wall_seconds']:.0f} s"),
            "<br>".join(f"{_cell(k)}: {_cell(v)}" for k, v in headline.items()),
            f'<a href="{html.escape(s["html"], quote=True)}">report</a>',
        )) + "</tr>")
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>sagekit reports</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4em .6em;vertical-align:top;font-size:90%}} th{{background:#f3f3f3}}</style>
</head><body><h1>sagekit reports</h1>
<table><thead><tr><th>study</th><th>model(s)</th><th>parameters</th><th>date</th><th>wall time</th>
<th>headline numbers</th><th>link</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(page)
    return out / "index.html"
