"""The README is code. Its fenced bash blocks run in order, as written, in one shell; its Python
snippets run after them; its inline ``sagekit run ...`` commands pass ``sagekit run --check``.
Every hub model the README names is a tiny random-weight stand-in of the same classes in an
offline Hugging Face cache under that id (``sagekit.testing.HUB_STAND_INS``). Only sizes and
the device are replaced, by the ``sagekit`` and ``hf`` put first on PATH (tests/readme_run.py)."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sagekit.models.registry import PICKLE_SUFFIXES
from sagekit.testing import HUB_STAND_INS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FENCED = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCED.findall(README) if lang == language]


def commands(block: str) -> list[str]:
    """A block's command lines (continuations joined, comments dropped)."""
    lines = re.sub(r"\\\n\s*", " ", block).splitlines()
    return [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]


def runnable(block: str) -> bool:
    """Blocks of sagekit or hf commands; the two `make` commands are what runs this test."""
    return any(re.match(r"(sagekit|hf|for) ", c) for c in commands(block))


def captioned_pairs(folder: Path, concepts: list[str], per_concept: int = 8) -> Path:
    """The reader's `pairs/`: images with a caption each, ``per_concept`` of every concept."""
    folder.mkdir(parents=True)
    for i, concept in enumerate(concepts):
        for j in range(per_concept):
            Image.new("RGB", (32, 32), ((37 * i) % 256, (91 * j) % 256, 128)).save(folder / f"{i:02d}-{j}.png")
            (folder / f"{i:02d}-{j}.txt").write_text(f"a photo of a {concept}")
    return folder


def readme_concepts() -> list[str]:
    """The concepts the README's poisoning and implosion commands name."""
    found = set()
    for m in re.finditer(r"--concepts '([^']+)'|concepts=\"'([^']+)'\"", README):
        for pair in (m[1] or m[2]).split(","):
            found |= set(pair.split(":"))
    return sorted(found)


@pytest.fixture
def shell(hub_cache, tmp_path):
    """Environment for the README's commands: stand-ins on PATH, the offline cache, a log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sagekit", "hf"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\n"
                                    f"import readme_run\nsys.exit(readme_run.{tool}(sys.argv[1:]))\n")
        (bin_dir / tool).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HF_HUB_CACHE": str(hub_cache),
           "HF_HUB_OFFLINE": "1", "README_TMP": str(tmp_path / "tmp"), "README_LOG": str(tmp_path / "log.jsonl"),
           "README_STAND_INS": json.dumps(sorted(HUB_STAND_INS)), "README_PICKLES": json.dumps(PICKLE_SUFFIXES)}
    return work, env, tmp_path / "log.jsonl"


def logged(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def test_every_readme_command_and_snippet_runs_as_written(shell):
    work, env, log = shell
    captioned_pairs(work / "pairs", readme_concepts())
    script = "set -euo pipefail\n" + "\n".join(b for b in blocks("bash") if runnable(b))
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=3000)
    calls = logged(log)
    failed = [c for c in calls if c["rc"] != 0]
    assert done.returncode == 0 and not failed, (failed, done.stderr[-3000:])
    # every command of every runnable block ran (none was skipped by an early exit)
    expected = [c for b in blocks("bash") if runnable(b) for c in commands(b) if re.match(r"(sagekit|hf) ", c)]
    ran = [c for c in calls if c["tool"] == "sagekit"]
    assert len([c for c in expected if c.startswith("sagekit ")]) == len(ran)
    # each study run wrote its report; the real studies ran on the README's models with their real defaults
    runs = [c for c in ran if c["readme"][0] == "run"]
    reports = sorted((work / "reports").glob("*.json"))
    assert len(reports) == len(runs) >= 7
    for path in reports:
        summary = json.loads(path.read_text())
        assert (work / "reports" / summary["html"]).is_file()
        values = [v for k, v in summary["parameters"].items() if k not in ("model", "models")]
        if summary["study"] != "toy-world":
            assert not any(isinstance(v, str) and v.startswith("toy") for v in values), summary["parameters"]
    studies = {json.loads(p.read_text())["study"] for p in reports}
    assert studies == {"toy-world", "prompt-failures", "distorted-latents", "unrelated-latents", "adversarial-tokens",
                       "seed-shifts", "implosion", "prompt-audit"}
    # every model the README downloads has a stand-in, and was fetched with its pickles left out
    downloads = [c["readme"][1] for c in calls if c["tool"] == "hf"]
    assert downloads and set(downloads) <= set(HUB_STAND_INS)
    assert (work / "failures" / "metadata.parquet").is_file() and (work / "poisoned" / "poison.json").is_file()
    for snippet in blocks("python"):
        done = subprocess.run([sys.executable, "-c", snippet], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (snippet, done.stderr[-2000:])


def test_an_unquoted_pattern_is_caught(shell):
    """The README once had `hf download ... $EXCL`: in a folder with a .bin file, bash turns
    the pattern into that file's name. The stand-in `hf` refuses what reached it then."""
    work, env, log = shell
    (work / "weights.bin").write_text("")
    line = "EXCL=\"--exclude *.bin --exclude *.pt\"; hf download openai-community/gpt2 $EXCL"
    done = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "expanded" in done.stderr
    assert "weights.bin" in logged(log)[0]["readme"]  # what bash made of *.bin
    quoted = "EXCL=(--exclude '*.bin' --exclude '*.pt'); hf download openai-community/gpt2 \"${EXCL[@]}\""
    done = subprocess.run(["bash", "-c", quoted], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "does not leave out" in done.stderr  # passed as patterns, but too few of them


def test_inline_study_commands_pass_the_checks(shell):
    """Commands quoted in the README's prose: each passes `sagekit run --check` (parameters,
    models on disk, images), which runs nothing."""
    work, env, log = shell
    inline = sorted(set(re.findall(r"`(sagekit run [a-z][a-z-]*(?: [^`]*)?)`", README)))
    assert len(inline) >= 3
    for command in inline:
        argv = shlex.split(command)[1:] + ["--check"]
        done = subprocess.run(["sagekit", *argv], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (command, done.stderr[-1000:])
        assert json.loads(done.stdout)["images"] >= 1
