"""One way to spread work: a task over items, in this process or on Ray workers that load
the same models by name.

Every study that may run elsewhere (a seed-shift sweep's batches, a SAGE study's
searches, implosion's fine-tuning points) writes its unit of work as a *task function*
``fn(models: Models, items: list, **settings) -> result`` in its own module, so that a
worker of another process can import it by name (``"module:function"``). Locally the
task runs on the models already loaded. On Ray (:mod:`sagekit.executors`) each worker
loads the same models once from their names (:class:`ModelSpec`: generators, precision,
``torch.compile``, judge, goal, verifier, caption LM, CLIP) and keeps them for every
task it is sent.

:func:`spread` yields each task's result as it finishes (a sweep stores it at once);
:func:`gather` returns the results in the items' order (searches, fine-tuning points).
``settings`` travel to the workers as they are: plain data, and a ``checkpoints`` folder
in them is made absolute (a worker's working directory is not the driver's); on a
cluster that folder must be shared for a retried task to resume rather than restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .progress import bar as progress_bar

from .executors import LocalExecutor, Processor, resolve

# fn(models, items, **settings) -> result; or its "module:function" name
Task = Callable[..., Any] | str


@dataclass
class Models:
    """The loaded models a task uses: the generators by name (``gen``: the first), the
    judge, the goal (with its judges: the SAGE studies), the held-out verifier, the caption
    LM and its tokenizer, the CLIP scorer; any of them may be absent."""

    generators: dict[str, Any] = field(default_factory=dict)
    judge: Any = None
    goal: Any = None
    verifier: Any = None
    lm: Any = None
    tokenizer: Any = None
    clip: Any = None

    @property
    def gen(self):
        return next(iter(self.generators.values()))


@dataclass(frozen=True)
class ModelSpec:
    """:class:`Models` by name, plain data that a worker of another process loads
    (:meth:`load`) the way this process loaded them: on its own device of the same kind (a
    Ray worker's ``"cuda"`` is its own GPU), in the same precision."""

    generators: tuple[str, ...] = ()
    device: str = "cpu"
    dtype: str = "float32"
    compile: bool = False
    judge: str | None = None
    goal: dict | None = None
    verifier: str | None = None
    lm: str | None = None
    clip: str | None = None

    @classmethod
    def of(cls, models: Models) -> "ModelSpec":
        first = next(iter(models.generators.values()), None)
        judge = models.goal.ensemble if models.goal is not None else models.judge
        name = lambda m: None if m is None else m.name  # noqa: E731
        return cls(tuple(models.generators), first.device.type if first is not None else "cpu",
                   str(first.dtype).removeprefix("torch.") if first is not None else "float32",
                   bool(getattr(first, "compiled", False)), name(judge),
                   None if models.goal is None else models.goal.spec(), name(models.verifier),
                   None if models.lm is None else str(models.lm.name_or_path),  # the folder it was loaded from
                   name(models.clip))

    def load(self) -> Models:
        from .models.registry import (load_caption_lm, load_clip_scorer, load_ensemble, load_generators,
                                      load_judge)
        from .search.goals import goal_from_spec

        device = self.device
        gens = load_generators(list(self.generators), device, dtype=self.dtype, compile=self.compile) \
            if self.generators else {}
        goal = judge = None
        if self.goal is not None:
            goal = goal_from_spec(self.goal, load_ensemble(self.judge, device), lambda n: load_judge(n, device))
            judge = goal.ensemble
        elif self.judge:
            judge = load_judge(self.judge, device)
        lm, tokenizer = load_caption_lm(self.lm, device) if self.lm else (None, None)
        return Models(gens, judge, goal, load_ensemble(self.verifier, device) if self.verifier else None, lm,
                      tokenizer, load_clip_scorer(self.clip, device) if self.clip else None)


def build_worker(models: ModelSpec, task: str, settings: dict) -> Callable[[list], Any]:
    """What a worker builds once: the models loaded by name, and ``items -> task(models, items, **settings)``."""
    loaded, fn = models.load(), resolve(task)
    return lambda items: fn(loaded, items, **settings)


def chunks(items: list, per_task: int) -> list[list]:
    """``items`` in consecutive tasks of at most ``per_task``."""
    if per_task < 1:
        raise ValueError(f"per_task must be at least 1, got {per_task}")
    return [items[i:i + per_task] for i in range(0, len(items), per_task)]


def spread(task: Task, models: Models, tasks: list[list], settings: dict | None = None,
           executor=None) -> Iterator[tuple[list, Any]]:
    """``(items, task(models, items, **settings))`` for each list of items in ``tasks``, as
    each finishes: in order in this process (``executor`` None or local), in the order the
    workers finish on Ray, where ``task`` must be a ``"module:function"`` name."""
    settings = dict(settings or {})
    if settings.get("checkpoints"):
        settings["checkpoints"] = os.path.abspath(settings["checkpoints"])
    executor = executor or LocalExecutor()
    if executor.name == "local":
        fn = resolve(task) if isinstance(task, str) else task
        process = lambda items: fn(models, items, **settings)  # noqa: E731
    elif not isinstance(task, str):
        raise TypeError("work on Ray needs its task named 'module:function': a function that closes over loaded "
                        "models cannot be sent to another process")
    else:
        process = worker_processor(task, models, settings)
    yield from executor.map(process, tasks)


def worker_processor(task: str, models: Models, settings: dict | None = None) -> Processor:
    """What each Ray worker builds once for ``task`` on ``models`` (loaded there by name):
    :func:`spread` sends this; start an executor with it to time the workers' start alone."""
    return Processor(f"{__name__}:build_worker", {"models": ModelSpec.of(models), "task": task,
                                                  "settings": dict(settings or {})})


def gather(task: Task, models: Models, items: list, settings: dict | None = None, executor=None,
           per_task: int = 0, progress: bool = True, desc: str = "tasks") -> list:
    """The results of ``task`` over ``items`` in tasks of ``per_task`` items (0: every item
    in one task in this process; one item per task on Ray), in the items' order: one
    result per task. The task gets ``progress`` too (False on Ray workers, whose bars would
    go nowhere)."""
    remote = executor is not None and executor.name != "local"
    tasks = chunks(list(items), per_task or (1 if remote else max(1, len(items))))
    settings = {**(settings or {}), "progress": progress and not remote}
    order = {id(t): i for i, t in enumerate(tasks)}
    results: dict[int, Any] = {}
    with progress_bar(total=len(tasks), desc=desc, progress=progress and len(tasks) > 1) as bar:
        for t, result in spread(task, models, tasks, settings, executor):
            results[order[id(t)]] = result
            bar.update()
    return [results[i] for i in range(len(tasks))]
