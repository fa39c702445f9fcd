"""The project's own files agree with each other."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    """Normalise the name part of a requirement (``open-clip_torch`` == ``open_clip_torch``)."""
    m = re.match(r"([A-Za-z0-9_.-]+)(.*)", req.strip())
    return re.sub(r"[-_.]+", "-", m.group(1).lower()) + m.group(2).replace(" ", "")


def test_environment_yml_pins_what_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    text = (ROOT / "environment.yml").read_text()
    pip_part = text.split("- pip:", 1)[1]
    listed = {_norm(l.strip()[2:]) for l in pip_part.splitlines() if l.strip().startswith("- ") and "-e ." not in l}
    assert listed == wanted
    assert "torch==2.14.1" in wanted and "torchvision==0.29.1" in wanted


def test_make_demo_runs_every_ready_study():
    from sagekit.studies import STUDIES

    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if l.startswith("STUDIES :="))
    assert line.split(":=", 1)[1].split() == [s for s, study in STUDIES.items() if study.ready]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
