"""Where work runs: in this process (``local``, the default) or on Ray workers.

An executor maps a batch function over lists of items. A function that closes over
loaded models cannot travel to another process, so for Ray it is described as data: a
:class:`Processor` names an importable factory (``"module:function"``) and the plain
arguments it takes, and each worker builds it once and keeps it. Studies never build one
themselves: :func:`sagekit.spread.spread` does, the same way for a sweep's batches, a
SAGE study's searches and implosion's points (its factory loads the models by name).

The driver (this process) stays the only writer of the results store: workers return
their results, and the driver stores them. A Ray worker that dies is restarted and its
task retried; a batch that arrived twice would still be stored once (the store ignores a
cell it holds), and a driver that dies is rerun: finished cells are skipped as with the
local executor.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Processor:
    """A batch function as data: ``factory`` ``"module:function"`` called with ``kwargs``
    returns the batch function ``cells -> (metrics, images)``."""

    factory: str
    kwargs: dict = field(default_factory=dict)

    def build(self) -> Callable:
        return resolve(self.factory)(**self.kwargs)


def resolve(name: str) -> Callable:
    """The function ``"module:function"`` names, imported."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


class LocalExecutor:
    """Every batch in this process, one after another, with the batch function built once."""

    name = "local"

    def map(self, process: Callable | Processor, batches: list[list[dict]]) -> Iterator[tuple[list[dict], tuple]]:
        """``(batch, process(batch))`` for each batch, in order."""
        fn = process.build() if isinstance(process, Processor) else process
        for batch in batches:
            yield batch, fn(batch)


class _Worker:
    """A Ray actor: builds the batch function once and keeps its models."""

    def __init__(self, processor: Processor, threads: int | None):
        if threads:
            torch.set_num_threads(threads)
        self.process = processor.build()

    def pid(self) -> int:
        return os.getpid()

    def run(self, batch: list[dict]):
        return self.process(batch)


class RayExecutor:
    """Batches spread over Ray workers, results in the order they finish.

    ``workers``: how many (default: one per GPU of the cluster, else one per CPU slot, at
    most 8 then); each takes one GPU (``num_gpus=1``) when ``gpus`` (default: the cluster
    has any) or ``cpus`` CPU slots. ``threads``: torch threads per worker. ``address``:
    a running cluster (``"auto"``); without one, and when Ray is not initialised yet, a
    local instance is started. Workers are restarted when they die and their batches
    retried (``max_restarts`` / ``max_task_retries``)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, gpus: bool | None = None,
                 cpus: float = 1, threads: int | None = None, max_restarts: int = 3):
        try:
            import ray
        except ImportError:
            raise ImportError("the ray executor needs Ray: pip install 'sagekit[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            said, main = io.StringIO(), threading.current_thread() is threading.main_thread()
            before = signal.getsignal(signal.SIGTERM) if main else None
            with contextlib.redirect_stderr(said):  # Ray announces its token authentication at every start
                ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            if main:  # Ray's SIGTERM handler prints a stack trace when a finished notebook's kernel is stopped
                signal.signal(signal.SIGTERM, before)
            rest = [line for line in said.getvalue().splitlines() if not line.startswith("Token authentication")]
            if rest:
                print("\n".join(rest), file=sys.stderr)
        res = ray.cluster_resources()
        self.gpus = bool(res.get("GPU", 0)) if gpus is None else gpus
        slots = int(res.get("GPU", 0)) if self.gpus else int(res.get("CPU", 1) // cpus)
        self.workers = workers or max(1, min(slots, 8))
        self.cpus, self.threads, self.max_restarts = cpus, threads, max_restarts
        self.actors: list = []
        self.processor: Processor | None = None

    def start(self, processor: Processor) -> list:
        """Start the workers (each builds ``processor`` once); returns the actor handles."""
        remote = self.ray.remote(num_gpus=1 if self.gpus else 0, num_cpus=self.cpus, max_restarts=self.max_restarts,
                                 max_task_retries=self.max_restarts)(_Worker)
        self.actors = [remote.remote(processor, self.threads) for _ in range(self.workers)]
        self.processor = processor
        self.ray.get([a.pid.remote() for a in self.actors])  # wait until every worker has built its models
        return self.actors

    def map(self, process: Callable | Processor, batches: list[list[dict]]) -> Iterator[tuple[list[dict], tuple]]:
        """``(batch, result)`` for each batch as workers finish them; at most two batches
        wait at each worker, so results stream back while others compute."""
        if not isinstance(process, Processor):
            raise TypeError("the ray executor needs a Processor (a batch function described as data): a function "
                            "that closes over loaded models cannot be sent to another process")
        if self.actors and process != self.processor:  # workers hold another batch function's models
            self.shutdown()
        if not self.actors:
            self.start(process)
        pending, todo, idle = {}, list(enumerate(batches)), [a for a in self.actors for _ in range(2)]
        try:
            while todo or pending:
                while todo and idle:
                    i, batch = todo.pop(0)
                    actor = idle.pop(0)
                    pending[actor.run.remote(batch)] = (i, actor)
                done, _ = self.ray.wait(list(pending), num_returns=1)
                i, actor = pending.pop(done[0])
                idle.append(actor)
                yield batches[i], self.ray.get(done[0])
        finally:
            for ref in pending:
                self.ray.cancel(ref, force=False)

    def shutdown(self) -> None:
        """Stop the workers (a started local instance stays for reuse until the process ends)."""
        for a in self.actors:
            self.ray.kill(a)
        self.actors, self.processor = [], None


RAY_CONNECT_SECONDS = 5.0  # how long `sagekit run` waits for a named Ray head before refusing it


def unreachable_ray(address: str) -> str | None:
    """Why Ray cluster ``address`` (``"host:port"`` or ``"ray://host:port"``) cannot be
    joined, or None (also for ``""``: a local instance, and ``"auto"``, which Ray resolves
    itself and refuses at once when nothing runs). Ray's own join retries without end, so
    the head's port is tried first, for at most :data:`RAY_CONNECT_SECONDS`."""
    if address in ("", "auto", "local"):
        return None
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"{address!r} is not a Ray address: \"auto\", \"host:port\" or \"ray://host:port\""
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_SECONDS).close()
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        return f"no Ray head answers at {address} ({why} within {RAY_CONNECT_SECONDS:g} s)"
    return None


def get_executor(name: str = "local", address: str = "", **options):
    """``"local"`` or ``"ray"`` (with ``address``, e.g. ``"auto"``, and :class:`RayExecutor`'s options)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address or None, **options)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


def describe(executor) -> str:
    """Where the work runs, for reports: ``"local"`` or ``"ray (2 workers, GPU each)"``."""
    if executor.name == "local":
        return "local"
    return f"ray ({executor.workers} workers, {'a GPU' if executor.gpus else f'{executor.cpus:g} CPU'} each)"
