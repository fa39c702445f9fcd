"""`sagekit bench ray`: a toy seed-shift sweep's images/s on the local executor (one torch
thread) and on 1, 2, ... Ray workers of one thread each.

Each run draws the same cells into a fresh store; workers are started (and load their
models) before the clock starts, and their start time is reported apart. On a machine of
N cores the driver, which stores every result, shares them with the workers.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from ..executors import RayExecutor
from ..models.registry import load_clip_scorer, load_generator, load_judge
from ..spread import Models, worker_processor
from ..store import ResultStore
from ..studies import seed_shifts


def bench_ray(workers: tuple[int, ...] = (1, 2), n_labels: int = 8, seeds: int = 6, steps: int = 10,
              batch_size: int = 8, model: str = "toy") -> dict:
    """Images/s of the sweep per executor, and each Ray run's speed-up over one worker."""
    gens = {model: load_generator(model)}
    judge, clip = load_judge("toy-resnet"), load_clip_scorer("toy-clip")
    labels = judge.labels[:: max(1, len(judge.labels) // n_labels)][:n_labels]
    cells = seed_shifts.build_cells([model], {"UMS": [0.4]}, labels, range(seeds), [gens[model].default_guidance],
                                    steps, judge.name, clip.name)
    out = {"cores": os.cpu_count(), "cells": len(cells), "batch_size": batch_size, "steps": steps}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t0 = time.perf_counter()
            seed_shifts.run(cells, ResultStore(Path(tmp) / "local"), gens, judge, clip, batch_size, progress=False)
            seconds["local_1_thread"] = time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
        spec = worker_processor(f"{seed_shifts.__name__}:judge_batch", Models(gens, judge=judge, clip=clip))
        for w in workers:
            executor = RayExecutor(workers=w, threads=1, gpus=False)
            t0 = time.perf_counter()
            executor.start(spec)
            started = time.perf_counter() - t0
            t0 = time.perf_counter()
            seed_shifts.run(cells, ResultStore(Path(tmp) / f"ray{w}"), gens, judge, clip, batch_size, progress=False,
                            executor=executor)
            seconds[f"ray_{w}_workers"] = time.perf_counter() - t0
            out[f"ray_{w}_workers_start_s"] = round(started, 1)
            executor.shutdown()
    out["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    out |= {k: round(len(cells) / v, 2) for k, v in seconds.items()}  # images/s
    if "ray_1_workers" in seconds:
        for w in workers:
            out[f"ray_{w}_over_1"] = round(seconds["ray_1_workers"] / seconds[f"ray_{w}_workers"], 2)
    return out
