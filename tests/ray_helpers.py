"""Tasks that Ray workers import by name in the executor tests (tests/test_ray.py)."""

import os
import signal
import time

import torch


def _result(cells):
    metrics = [{"double": 2 * c["seed"], "pid": os.getpid()} for c in cells]
    images = torch.stack([torch.full((3, 4, 4), c["seed"] / 100) for c in cells])
    return metrics, images


def dying(models, cells, marker: str, die_on_seed: int):
    """A sweep task that dies (SIGKILL, mid-batch) the first time it meets ``die_on_seed``,
    noting its pid in ``marker``."""
    if any(c["seed"] == die_on_seed for c in cells) and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return _result(cells)


def slow(models, cells, log: str, seconds: float = 0.4):
    """A sweep task that takes ``seconds`` per batch and appends the seeds it computed to ``log``."""
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write("".join(f"{c['seed']}\n" for c in cells))
    return _result(cells)


def dying_search(models, items, marker: str, after: int, **settings):
    """The unrelated-latent search task, but the first worker to run it dies (SIGKILL) once
    its search has checkpointed ``after`` iterations; a retried task notes in ``marker``
    the iteration its search found checkpointed (what it resumes from)."""
    import threading
    from pathlib import Path

    from safetensors import safe_open

    from sagekit.studies import unrelated_latents

    folder = Path(settings["checkpoints"]) / "checkpoints"

    def checkpointed() -> int:
        done = 0
        for f in folder.glob("*.safetensors"):
            with safe_open(str(f), "pt") as s:
                done = max(done, int(s.metadata()["iteration"]))
        return done

    if os.path.exists(marker):
        with open(marker, "a") as f:
            f.write(f"resumed {os.getpid()} {checkpointed()}\n")
    else:
        with open(marker, "w") as f:
            f.write(f"died {os.getpid()}\n")

        def watch():
            while checkpointed() < after:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()
    return unrelated_latents._search_task(models, items, **settings)
