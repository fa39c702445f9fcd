"""Sweeps: a grid of cells -> batches -> the results store, resumable.

A cell is a flat dict of JSON values that determines one output (model id, prompt or
label, seed, shift, level, sampling settings, ...). Cells that share the ``group_by``
fields (the ones one sampling call must share: model, guidance, steps) are batched
together; everything else (prompts, seeds, shifts) may vary inside a batch. Finished cells
are skipped, so a killed sweep is resumed by running it again.

Storing a batch (PNG encoding, the SQLite commit) runs on one writer thread while the next
batch is generated, so on a GPU it costs little on top; the writer is still the only one
writing, and at most ``queue`` computed batches wait for it.
"""

from __future__ import annotations

import itertools
import queue as queues
import threading
from typing import Sequence

import pandas as pd
import torch
from .progress import bar as progress_bar

from .spread import Models, Task, spread
from .store import ResultStore, cell_key, to_uint8

# task(models, cells) -> (one metrics dict per cell, images (N, 3, H, W) in [0, 1] or uint8, or None)


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


def run_sweep(study: str, cells: list[dict], store: ResultStore, task: Task, batch_size: int = 32,
              group_by: Sequence[str] = ("model", "guidance", "steps"), progress: bool = True,
              keep_images: bool = True, queue: int = 2, executor=None, models: Models | None = None,
              settings: dict | None = None) -> pd.DataFrame:
    """Compute every cell not yet in ``store`` and return all of ``cells``' results.

    Each batch of cells is a task of :func:`sagekit.spread.spread`: ``task(models, batch,
    **settings)`` returns the batch's metrics and images, in this process or (``executor``,
    a task named ``"module:function"``) on workers that load ``models`` by name. Duplicate
    cells are computed once; a stored cell whose image is gone is computed again (its
    image drawn anew, its row kept). Results are committed as they arrive, each batch
    atomically, by a writer thread that overlaps the computation (``queue``: how many
    computed batches may wait; 0 stores each one before the next starts). An error in
    either stops the sweep; batches committed before it stay.
    """
    keys = [cell_key(c) for c in cells]
    unique = dict(zip(keys, cells))
    done = store.done(unique, with_images=keep_images)
    todo = [c for k, c in unique.items() if k not in done]
    bar = progress_bar(total=len(todo), desc=study, progress=progress, unit="cell")
    with BatchWriter(store, study, bar, queue) as writer:
        for batch, (metrics, images) in spread(task, models or Models(), plan_batches(todo, batch_size, group_by),
                                               settings, executor):
            writer.put(batch, metrics, images if keep_images else None)
    bar.close()
    frame = store.frame(study)
    return frame[frame["key"].isin(set(keys))].reset_index(drop=True)


class BatchWriter:
    """Commits batches to a store on one background thread, in the order given.

    ``put`` hands a batch over (its images quantised to uint8 where they are, then moved to
    the CPU, so the device can go on) and blocks while ``queue`` batches wait; leaving the
    ``with`` block waits for every batch to be stored and raises the writer's error, if it
    had one. ``queue=0`` stores on the calling thread."""

    _STOP = object()

    def __init__(self, store: ResultStore, study: str, bar=None, queue: int = 2):
        self.store, self.study, self.bar = store, study, bar
        self.inline = queue < 1
        self.error: BaseException | None = None
        if not self.inline:
            self.pending: queues.Queue = queues.Queue(maxsize=queue)
            self.thread = threading.Thread(target=self._loop, name=f"{study}-writer", daemon=True)

    def __enter__(self) -> "BatchWriter":
        if not self.inline:
            self.thread.start()
        return self

    def _store(self, cells, metrics, images) -> None:
        self.store.put_batch(self.study, cells, metrics, images)
        if self.bar is not None:
            self.bar.update(len(cells))

    def _loop(self) -> None:
        while (item := self.pending.get()) is not self._STOP:
            if self.error is None:  # after a failure, drain without storing so put() never blocks forever
                try:
                    self._store(*item)
                except BaseException as e:  # re-raised on the sweep's thread
                    self.error = e

    def put(self, cells: list[dict], metrics: list[dict], images: torch.Tensor | None) -> None:
        if self.error is not None:
            raise self.error
        images = None if images is None else to_uint8(images).cpu()
        if self.inline:
            self._store(cells, metrics, images)
        else:
            self.pending.put((cells, metrics, images))

    def __exit__(self, kind, value, tb) -> None:
        if not self.inline:
            self.pending.put(self._STOP)
            self.thread.join()
        if self.error is not None and kind is None:
            raise self.error
