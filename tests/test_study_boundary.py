"""Studies talk only to the Generator: no study module imports diffusers or reaches into a
Generator's denoiser, VAE, scheduler, tokenizer, text encoder or private fields (issue 13),
so that a new model family needs no change to any study."""

import ast
from pathlib import Path

import sagekit.studies

INTERNALS = {"unet", "vae", "scheduler", "tokenizer", "text_encoder", "transformer"}


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == "diffusers"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "diffusers":
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("gen", "tuned"):
            if node.attr in INTERNALS or node.attr.startswith("_"):
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_study_reaches_past_the_generator():
    folder = Path(sagekit.studies.__file__).parent
    bad = {p.name: v for p in sorted(folder.glob("*.py")) if (v := _violations(p))}
    assert not bad, bad


def test_the_check_sees_what_it_forbids(tmp_path):
    sample = tmp_path / "study.py"
    sample.write_text("from diffusers import DDPMScheduler\nx = gen.unet(1)\ny = gen._prompt_cache\nz = gen.decode(1)\n")
    assert sorted(_violations(sample)) == ["from diffusers import ...", "line 2: gen.unet", "line 3: gen._prompt_cache"]
