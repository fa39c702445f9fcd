"""Every checkpointed search survives a real SIGKILL: the prompt search, the shared
distorted-latent search and the adversarial-token learning, each killed mid-search in its
own process and run again, end with exactly the result of a run never interrupted.
(The sweep's SIGKILL test is in test_sweep.py, the unrelated-latent search's on a Ray
worker in test_ray.py.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import search_worker

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}


def _worker(kind: str, folder: Path) -> list[str]:
    return [sys.executable, str(HERE / "search_worker.py"), kind, str(folder), str(folder / "result.safetensors")]


def _checkpointed(folder: Path) -> int:
    """The furthest iteration any checkpoint under ``folder`` holds (0: none yet)."""
    done = 0
    for f in (folder / "checkpoints").glob("*.safetensors"):
        try:
            with safe_open(str(f), "pt") as s:
                done = max(done, int(s.metadata()["iteration"]))
        except Exception:  # being replaced at this moment: read it at the next poll
            continue
    return done


def _seconds(folder: Path) -> dict[str, list[float]]:
    """Each checkpoint's measured seconds per iteration (by file)."""
    out = {}
    for f in (folder / "checkpoints").glob("*.safetensors"):
        with safe_open(str(f), "pt") as s:
            out[f.name] = json.loads(s.metadata()["seconds"])
    return out


def _result(folder: Path):
    path = folder / "result.safetensors"
    with safe_open(str(path), "pt") as s:
        table = json.loads(s.metadata()["table"])
    return load_file(str(path)), table


@pytest.mark.parametrize("kind", ["prompt", "distorted", "token"])
def test_a_search_killed_with_sigkill_resumes_to_the_same_result(kind, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_worker(kind, whole), env=ENV, check=True, timeout=900)

    proc = subprocess.Popen(_worker(kind, killed), env=ENV)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and _checkpointed(killed) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (killed / "result.safetensors").exists()
    stopped_at = _checkpointed(killed)
    assert 2 <= stopped_at < search_worker.ITERATIONS  # killed mid-search, after a checkpoint

    before = _seconds(killed)
    subprocess.run(_worker(kind, killed), env=ENV, check=True, timeout=900)
    # it resumed: the iterations done before the kill keep the seconds measured then (a search
    # started afresh would have measured them again), and it went on to the end
    after = _seconds(killed)
    for name, seconds in before.items():
        assert after[name][:len(seconds)] == seconds and len(after[name]) == search_worker.ITERATIONS
    (a, table_a), (b, table_b) = _result(whole), _result(killed)
    assert table_a == table_b and set(a) == set(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
