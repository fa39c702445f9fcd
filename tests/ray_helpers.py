"""Batch functions that Ray workers build by name in the executor tests (tests/test_ray.py)."""

import os
import signal
import time

import torch


def _result(cells):
    metrics = [{"double": 2 * c["seed"], "pid": os.getpid()} for c in cells]
    images = torch.stack([torch.full((3, 4, 4), c["seed"] / 100) for c in cells])
    return metrics, images


def build_dying(marker: str, die_on_seed: int):
    """Dies (SIGKILL, mid-batch) the first time it meets ``die_on_seed``, noting its pid in ``marker``."""

    def process(cells):
        if any(c["seed"] == die_on_seed for c in cells) and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return _result(cells)

    return process


def build_slow(log: str, seconds: float = 0.4):
    """Takes ``seconds`` per batch and appends the seeds it computed to ``log``."""

    def process(cells):
        time.sleep(seconds)
        with open(log, "a") as f:
            f.write("".join(f"{c['seed']}\n" for c in cells))
        return _result(cells)

    return process
