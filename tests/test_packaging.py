"""The project's own files agree with each other."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    """Normalise the name part of a requirement (``open-clip_torch`` == ``open_clip_torch``)."""
    m = re.match(r"([A-Za-z0-9_.-]+)(.*)", req.strip())
    return re.sub(r"[-_.]+", "-", m.group(1).lower()) + m.group(2).replace(" ", "")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements() -> list[str]:
    """pyproject's requirements with the test and ray extras."""
    project = _project()
    extras = project["optional-dependencies"]
    return project["dependencies"] + extras["test"] + [r for r in extras["ray"] if r not in extras["test"]]


def test_environment_yml_lists_what_pyproject_requires():
    wanted = {_norm(r) for r in _requirements()}
    text = (ROOT / "environment.yml").read_text()
    pip_part = text.split("- pip:", 1)[1]
    listed = {_norm(l.strip()[2:]) for l in pip_part.splitlines() if l.strip().startswith("- ") and "-e ." not in l}
    assert listed == wanted


def test_the_lock_pins_a_version_in_every_range_and_the_local_torch():
    """`make` installs requirements.lock: one exact version of everything, each inside
    pyproject's range, torch and torchvision at the wheels on this machine's disk."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    for req in map(Requirement, _requirements()):
        version = pins.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} is outside {req.specifier}"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12", "3.13"])
def test_the_ranges_resolve_on_every_supported_python(python, tmp_path):
    """`pip install sagekit[ray]` can be resolved on each Python that requires-python
    allows: uv resolves the ranges (metadata only, nothing installed)."""
    assert _project()["requires-python"] == ">=3.10"
    uv = shutil.which("uv", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert uv, "uv is part of the test extra"
    out = tmp_path / "resolved.txt"
    done = subprocess.run([uv, "pip", "compile", str(ROOT / "pyproject.toml"), "--extra", "ray", "--python-version",
                           python, "--no-header", "--no-annotate", "--quiet", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resolved = dict(line.split("==") for line in out.read_text().splitlines() if "==" in line)
    assert resolved["torch"].startswith("2.1") and "ray" in resolved and "diffusers" in resolved


def test_make_demo_runs_every_ready_study():
    from sagekit.studies import STUDIES

    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if l.startswith("STUDIES :="))
    assert line.split(":=", 1)[1].split() == [s for s, study in STUDIES.items() if study.ready]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
