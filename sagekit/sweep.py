"""Sweeps: a grid of cells -> batches -> the results store, resumable.

A cell is a flat dict of JSON values that determines one output (model id, prompt or
label, seed, shift, level, sampling settings, ...). Cells that share the ``group_by``
fields (the ones one sampling call must share: model, guidance, steps) are batched
together; everything else (prompts, seeds, shifts) may vary inside a batch. Finished cells
are skipped, so a killed sweep is resumed by running it again.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from .store import ResultStore, cell_key

# process(cells) -> (one metrics dict per cell, images (N, 3, H, W) in [0, 1] or None)
BatchFn = Callable[[list[dict]], tuple[list[dict], torch.Tensor | None]]


def grid(**axes: Sequence) -> list[dict]:
    """Cartesian product of named axes: ``grid(seed=[0, 1], shift=["none"])`` -> 2 cells."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def plan_batches(cells: list[dict], batch_size: int, group_by: Sequence[str]) -> list[list[dict]]:
    """Split cells into batches of at most ``batch_size`` that agree on ``group_by``,
    keeping the cells' order within each group."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault(tuple(repr(c.get(k)) for k in group_by), []).append(c)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


def run_sweep(study: str, cells: list[dict], store: ResultStore, process: BatchFn, batch_size: int = 32,
              group_by: Sequence[str] = ("model", "guidance", "steps"), progress: bool = True,
              keep_images: bool = True) -> pd.DataFrame:
    """Compute every cell not yet in ``store`` and return all of ``cells``' results.

    Duplicate cells are computed once. Each batch is committed before the next starts.
    """
    keys = [cell_key(c) for c in cells]
    unique = dict(zip(keys, cells))
    done = store.done(unique)
    todo = [c for k, c in unique.items() if k not in done]
    bar = tqdm(total=len(todo), desc=study, disable=not progress, unit="cell", leave=False)
    for batch in plan_batches(todo, batch_size, group_by):
        metrics, images = process(batch)
        store.put_batch(study, batch, metrics, images if keep_images else None)
        bar.update(len(batch))
    bar.close()
    frame = store.frame(study)
    return frame[frame["key"].isin(set(keys))].reset_index(drop=True)
