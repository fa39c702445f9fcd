"""The project's own files agree with each other."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    """Normalise the name part of a requirement (``open-clip_torch`` == ``open_clip_torch``)."""
    m = re.match(r"([A-Za-z0-9_.-]+)(.*)", req.strip())
    return re.sub(r"[-_.]+", "-", m.group(1).lower()) + m.group(2).replace(" ", "")


def _project() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
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


def _pins() -> list[tuple[str, str, str]]:
    """requirements.lock's lines as (name, version, marker); marker "" where a pin applies everywhere."""
    from packaging.utils import canonicalize_name

    out = []
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            pin, _, marker = line.partition(";")
            name, _, version = pin.partition("==")
            out.append((canonicalize_name(name), version.strip(), marker.strip()))
    return out


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12", "3.13"])
@pytest.mark.parametrize("platform", [("linux", "x86_64"), ("linux", "aarch64"), ("darwin", "arm64")])
def test_the_lock_pins_one_version_in_every_range_for_each_platform_and_python(python, platform):
    """`make` installs requirements.lock on Linux x86_64 / aarch64 and macOS arm64, Python
    3.10-3.13: for each, exactly one pin of every requirement, inside pyproject's range;
    CUDA wheels only on Linux; torch and torchvision at the releases on this machine's disk.
    (Whether each pin has a wheel there is `make check-lock`'s question: it needs the registry.)"""
    from packaging.markers import Marker
    from packaging.requirements import Requirement

    for patch in ("0", "99"):  # a pin may split at a patch release (soupsieve at 3.11.5)
        env = {"python_version": python, "python_full_version": f"{python}.{patch}", "sys_platform": platform[0],
               "platform_system": {"linux": "Linux", "darwin": "Darwin"}[platform[0]],
               "platform_machine": platform[1], "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "os_name": "posix"}
        pins: dict[str, list[str]] = {}
        for name, version, marker in _pins():
            if not marker or Marker(marker).evaluate(env):
                pins.setdefault(name, []).append(version)
        assert all(len(v) == 1 for v in pins.values()), {n: v for n, v in pins.items() if len(v) > 1}
        for req in map(Requirement, _requirements()):
            name = req.name.lower().replace("_", "-")
            assert name in pins, f"{req.name} is not in requirements.lock for {platform} {python}"
            assert req.specifier.contains(pins[name][0], prereleases=True), f"{req.name}=={pins[name][0]}"
        cuda = {n for n in pins if n.startswith("nvidia-") or n in ("triton", "cuda-toolkit")}
        assert bool(cuda) == (platform[0] == "linux")
        assert pins["torch"] == ["2.14.1"] and pins["torchvision"] == ["0.29.1"]


def test_lock_and_check_lock_are_make_targets_that_ci_runs():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lock:", makefile, re.M) and re.search(r"^check-lock:", makefile, re.M)
    assert "make check-lock" in (ROOT / ".ci" / "run").read_text()
    assert "--universal" in (ROOT / "tools" / "lock.sh").read_text()


def test_make_demo_runs_every_ready_study():
    from sagekit.studies import STUDIES

    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if l.startswith("STUDIES :="))
    assert line.split(":=", 1)[1].split() == [s for s, study in STUDIES.items() if study.ready]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
