"""Reports: validate parameters, execute a study notebook with papermill, render HTML
without input cells, write the summary JSON, rebuild ``index.html``.

For one run of study S started at time T, ``out_dir`` receives (R: a random suffix, so
two runs in the same second never share a name)::

    S-T-R.html    the report (self-contained: images are embedded; no script runs in it)
    S-T-R.ipynb   the executed notebook, for anyone who wants the code next to the results
    S-T-R.json    summary: parameters, versions, wall time, findings

Every parameter, model name and ``out_dir`` is checked before a kernel starts; on bad input
nothing is written. A run works in a private temporary folder (kernel connection file
included) that is removed on every exit; one left by a killed run is removed by the next.
A study that fails inside its kernel raises :class:`StudyFailed` with the notebook's own
error, and its executed notebook is kept in a temporary folder it names, not in ``out_dir``.
"""

from __future__ import annotations

import ast
import datetime as dt
import fcntl
import html
import json
import os
import platform
import re
import secrets
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .markup import clean_html
from .progress import REPORT_ENV
from .stats import rate_text
from .studies import Study, get_study
from .studies.defaults import is_auto, resolve
from .studies.parameters import ListOf, ParameterError, nearest_existing, unwritable
from .studies.validation import validate

KERNEL_NAME = "sagekit-py311"
FINDINGS_ENV = REPORT_ENV  # where the study's findings go; set: a static report is being written
VERSIONED = ("sagekit", "torch", "diffusers", "transformers", "timm", "open_clip_torch", "papermill")
TEMPLATES = Path(__file__).resolve().parent / "templates"
RUN_PREFIX = "sagekit-run-"


class StudyFailed(RuntimeError):
    """The notebook raised inside its kernel (or the kernel died or timed out)."""


class ReportNotWritten(StudyFailed):
    """The study ran but its report could not be written (the disk filled up)."""


# free space --out needs before a study starts: a report's page and notebook (the toy demo's
# are 1-2 MB each; a paper-sized grid's tens of MB)
REPORT_SPACE = 64 * 2**20


# ---------------------------------------------------------------------------- parameters
def notebook_parameters(path: Path) -> dict[str, Any]:
    """What the notebook's ``parameters`` cell says: {name: value} (the cell is written from
    the study's declaration, and a test compares the two). It holds literals only, so it
    is read with ``ast``, not executed."""
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
    """``value`` converted to the type of ``default``, or ParameterError. A default of
    ``"auto"`` (a value that depends on the model: ``sagekit.studies.defaults``) takes any
    value as it is; the parameter's rule checks it."""
    if default is None or value is None or default == "auto":
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
        if not default:
            return [value]  # a single value for a list
        if not isinstance(default[0], (list, tuple)):
            return [_coerce(f"{name}[0]", value, default[0])]
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
    raise ParameterError(f"parameter {name!r} takes {_type_name(default)} (default {default!r}), "
                         f"got {_type_name(value)} {value!r}")


def parse_parameters(study: Study, assignments: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> validated {key: value} (only the given keys)."""
    declared = study.schema.params
    defaults = study.schema.defaults
    out = {}
    for item in assignments:
        if "=" not in item:
            raise ParameterError(f"parameters are given as key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in defaults:
            raise ParameterError(f"study {study.id!r} has no parameter {key!r}; its parameters: "
                                 + ", ".join(f"{k}={v!r}" for k, v in defaults.items()))
        value = _coerce(key, _parse_value(raw), defaults[key])
        if is_auto(defaults[key]) and isinstance(declared[key].rule, ListOf) \
                and not isinstance(value, (list, tuple)):
            value = [value]  # a single value for a list whose default is "auto"
        out[key] = value
    return out


# ---------------------------------------------------------------------------- execution
def ensure_kernel() -> str:
    """A Jupyter kernelspec for this very interpreter (so papermill never picks another
    Python); written once into ``sys.prefix``."""
    spec_dir = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"sagekit (Python {sys.version_info[0]}.{sys.version_info[1]})", "language": "python"}
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


def _plain(x: Any) -> Any:
    """A JSON-ready copy: numpy scalars and arrays to Python numbers and lists, NaN and
    infinities to None (JSON has no NaN; ``json.dumps`` would write an invalid ``NaN``)."""
    import math

    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy scalars and arrays, torch tensors
        return _plain(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON (no NaN) of findings, summaries and CLI results; anything else is str()."""
    return json.dumps(_plain(obj), indent=indent, allow_nan=False, default=str)


def save_findings(findings: dict, cases: list[str] | None = None) -> None:
    """Called by a notebook's last cell: hands its findings to ``sagekit run``; ``cases``:
    the results-store keys of the failure cases the run kept (``sagekit export`` reads
    them). Interactive runs (no ``sagekit run``) just skip this."""
    path = os.environ.get(FINDINGS_ENV)
    if path:
        out = findings if cases is None else {**findings, "cases": list(cases)}
        Path(path).write_text(dumps(out))


def to_html(notebook_path: Path, title: str) -> str:
    """The executed notebook as one static HTML page, without input cells. Every Markdown
    and HTML output passes :func:`sagekit.markup.clean_html`, and the page's template
    (``sagekit/templates/report``) loads no script and forbids all by its
    Content-Security-Policy: two lines of defence behind the escaping in the notebooks."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="report", extra_template_basedirs=[str(TEMPLATES)],
                            sanitize_html=True, filters={"clean_html": clean_html})
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(notebook_path, as_version=4),
                                          resources={"metadata": {"name": title}})
    return body


# ---------------------------------------------------------------------------- run folders
def clear_stale_runs(root: Path | None = None) -> list[Path]:
    """Remove the run folders of runs that are gone (killed). A live run holds a lock on
    its folder's ``lock`` file; the kernel's connection file (with its HMAC key) lives in
    the folder too, so it goes with it. Returns the folders removed."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in root.glob(RUN_PREFIX + "*"):
        try:
            if not (folder / "lock").exists():
                if time.time() - folder.stat().st_mtime < 60:
                    continue  # created a moment ago, its lock not yet there
            else:
                with open(folder / "lock") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken: nobody holds it any more
        except BlockingIOError:
            continue  # a live run
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@contextmanager
def run_folder() -> Iterator[Path]:
    """A private temporary folder for one run, locked while the run lives and removed on
    every exit path (error, Ctrl-C). The kernel's connection file and sockets go in it."""
    clear_stale_runs()
    folder = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
    lock = open(folder / "lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield folder
    finally:
        lock.close()
        shutil.rmtree(folder, ignore_errors=True)


def _kernel_manager_class(folder: Path):
    """A kernel manager whose connection file (it holds the kernel's HMAC key) lives in the
    run folder, and whose kernel talks over IPC sockets there rather than TCP ports on
    localhost (which any local user could reach; ipykernel warns about it)."""
    from jupyter_client import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class RunKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("connection_file")
        def _connection_file_default(self):
            return str(folder / "kernel.json")

    return RunKernelManager


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _failure(study: Study, error: Exception, executed: Path) -> StudyFailed:
    """A short account of a failed run; the executed notebook is kept outside ``out_dir``."""
    kept = None
    if executed.exists():
        kept = Path(tempfile.mkdtemp(prefix="sagekit-failed-")) / executed.name
        shutil.copy(executed, kept)
    ename, evalue = type(error).__name__, str(error)
    where, tail = "", []
    if hasattr(error, "ename"):  # papermill's PapermillExecutionError: the notebook's own exception
        ename, evalue = error.ename, error.evalue
        where = f" in cell {error.cell_index} (In [{error.exec_count}])"
        lines = [_ANSI.sub("", l).rstrip() for l in "\n".join(error.traceback).splitlines()]
        tail = [l.strip() for l in lines if re.match(r"\s*-+>", l)][:1]  # the cell's line that raised
    evalue = evalue.strip().splitlines()[-1] if evalue.strip() else ""
    msg = [f"study {study.id!r} failed{where}: {ename}: {evalue}"] + [f"    {l}" for l in tail]
    msg.append(f"the executed notebook is kept at {kept}" if kept else "no notebook was executed")
    return StudyFailed("\n".join(msg))


def _publish(folder: Path, name: str, data: str, replace: bool = False) -> None:
    """Write ``folder/name`` atomically; never over an existing file (FileExistsError)
    unless ``replace`` (for the placeholder this run reserved)."""
    part = folder / f".{name}.{secrets.token_hex(4)}.part"
    try:
        part.write_text(data)  # inside the try: a write cut short (a full disk) leaves no .part
        if replace:
            os.replace(part, folder / name)
        else:
            os.link(part, folder / name)  # atomic, and fails if the name is taken
    finally:
        part.unlink(missing_ok=True)


def _timestamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _reserve_stem(out: Path, study: Study, stamp: str) -> str:
    for _ in range(100):
        stem = f"{study.id}-{stamp}-{secrets.token_hex(3)}"
        try:
            (out / f"{stem}.html").open("x").close()  # placeholder until the page is published
            return stem
        except FileExistsError:
            continue
    raise FileExistsError(f"no free report name in {out}")


def auto_resolved(merged: dict, resolved: dict) -> list[str]:
    """The parameters whose "auto" took a value from the model's world or the protocol."""
    return sorted(k for k, v in merged.items() if is_auto(v) and resolved[k] != v)


def check_study(study_id: str, assignments: list[str] | None = None) -> tuple:
    """Everything ``sagekit run`` checks before a kernel starts, and nothing else:
    ``(study, given, merged, resolved, images)``: the study, the parameters given, merged
    with the notebook's defaults, with every "auto" resolved, and the images the grid
    generates. Raises ``KeyError`` or :class:`ParameterError`."""
    study = get_study(study_id)
    params = parse_parameters(study, assignments or [])
    merged = {**study.schema.defaults, **params}
    images = validate(study.id, merged, study.path.parent)
    return study, params, merged, resolve(study.id, merged), images


def run_study(study_id: str, assignments: list[str] | None = None, out_dir: str | Path = "reports",
              timeout: int = 0, log_output: bool = False, announce=None) -> dict:
    """Validate, execute, render. Returns the summary dict (also written as JSON).

    Raises ``KeyError`` (unknown study) or :class:`ParameterError` before anything runs or is
    written, and :class:`StudyFailed` when the notebook fails. ``timeout``: seconds a cell
    may run (0: no limit). ``announce`` (a callable) gets one line once the parameters are
    valid."""
    import papermill as pm

    study, params, merged, resolved, images = check_study(study_id, assignments)
    out = Path(out_dir)
    problem = unwritable(out) or _short_of_space(out)
    if problem:
        raise ParameterError(f"--out: {problem}")
    if timeout < 0:
        raise ParameterError(f"--timeout must be 0 (no limit) or a number of seconds, got {timeout}")
    hooks = {}
    if announce:
        announce(f"{study.id}: about {images:,} image{'' if images == 1 else 's'}; report into {out}")
        hooks["on_cell_start"] = _phase_announcer(study, announce)
    stamp = _timestamp()
    with run_folder() as tmp:
        findings_path = tmp / "findings.json"
        executed = tmp / f"{study.id}-{stamp}.ipynb"
        os.environ[FINDINGS_ENV] = str(findings_path)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(study.path), str(executed), parameters=params, kernel_name=ensure_kernel(),
                execution_timeout=timeout or None, log_output=log_output, progress_bar=False,
                cwd=str(study.path.parent), kernel_manager_class=_kernel_manager_class(tmp), **hooks,
            )
        except Exception as e:  # the notebook's error, a dead kernel or a cell timeout
            raise _failure(study, e, executed) from None
        finally:
            os.environ.pop(FINDINGS_ENV, None)
        wall = time.perf_counter() - t0
        findings = json.loads(findings_path.read_text()) if findings_path.exists() else {}
        page = to_html(executed, f"sagekit {study.id} {stamp}")
        out.mkdir(parents=True, exist_ok=True)
        stem = _reserve_stem(out, study, stamp)
        summary = {
            "study": study.id, "question": study.question, "started": stamp,
            "parameters": resolved, "auto": auto_resolved(merged, resolved),
            "estimated_images": images,
            "versions": versions(), "wall_seconds": round(wall, 1),
            "html": f"{stem}.html", "notebook": f"{stem}.ipynb", "findings": findings,
        }
        try:
            _publish(out, f"{stem}.html", page, replace=True)  # over this run's placeholder
            _publish(out, f"{stem}.ipynb", executed.read_text())
            _publish(out, f"{stem}.json", dumps(summary))  # last: the index reads it
        except OSError as e:  # e.g. the disk filled up while the study ran
            for suffix in (".json", ".ipynb", ".html"):
                (out / f"{stem}{suffix}").unlink(missing_ok=True)
            raise ReportNotWritten(f"the report could not be written into {out} ({e.strerror or e}); nothing of it "
                                   "was left there. The results store is kept: a rerun after freeing space computes "
                                   "only what is missing") from None
    write_index(out)
    return summary


def phases(notebook: dict) -> dict[str, str]:
    """A study notebook's phases: the id of the first code cell under each Markdown heading
    -> that heading's text (under the notebook's title: "loading the models")."""
    out, heading = {}, None
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "markdown":
            lines = [line for line in "".join(cell["source"]).splitlines() if line.startswith("#")]
            if lines:
                title = lines[0].startswith("# ")
                heading = "loading the models" if title else lines[0].lstrip("#").strip()
        elif cell["cell_type"] == "code" and heading is not None:
            out[cell.get("id", str(i))] = heading
            heading = None
    return out


def _phase_announcer(study: Study, announce):
    """papermill's ``on_cell_start`` hook: one line per phase of ``study``'s notebook, with
    the minutes and seconds since the run began (the report itself shows no bars)."""
    names = phases(json.loads(study.path.read_text()))
    order = {cid: i + 1 for i, cid in enumerate(names)}
    t0 = time.perf_counter()

    def hook(cell, cell_index, **_):
        cid = cell.get("id")
        if cid in names:
            m, s = divmod(int(time.perf_counter() - t0), 60)
            announce(f"{study.id} [{m}:{s:02d}] {order[cid]}/{len(names)} {names[cid]}")

    return hook


def _short_of_space(out: Path) -> str | None:
    """Why ``out``'s disk cannot take a report (too little free space), or None."""
    free = shutil.disk_usage(nearest_existing(out)).free
    if free < REPORT_SPACE:
        return f"only {free / 2**20:.1f} MiB free on its disk; a report needs about {REPORT_SPACE // 2**20} MiB"
    return None


# ---------------------------------------------------------------------------- index
def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.3g}"
    elif isinstance(value, dict) and set(value) == {"k", "n", "rate", "lo", "hi"}:
        value = rate_text(value)  # a rate of the findings: its count and interval
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
    _publish(out, "index.html", page, replace=True)  # atomic: runs finishing together never tear it
    return out / "index.html"
