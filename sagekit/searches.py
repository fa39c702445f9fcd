"""Independent SAGE searches spread over an executor: one search per label, seed or target.

A SAGE study searches many labels (or seeds, or targets) whose searches share nothing but
the models. Locally they run as one batch (the default: one task of every item). On Ray
(:mod:`sagekit.executors`) each task of ``per_task`` items is a search of its own on a
worker that loaded the models once, by name (:class:`SearchModels`), and kept them; the
driver merges the tasks' results in the items' order.

A study's task function has the form ``fn(models: Loaded, items: list, **settings)`` and
lives in the study's module, so that a worker of another process can import it. Searches
keep their checkpoints under an absolute folder: a worker that dies mid-search is
restarted by Ray and its search resumes from the last finished iteration (on a cluster,
that folder must be shared for a retry on another node to resume rather than restart).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from tqdm.auto import tqdm

from .executors import LocalExecutor, Processor, resolve


@dataclass
class Loaded:
    """The loaded models a search task uses: the generator, the goal (with its judges),
    the held-out verifier, and where a study needs them the LM and tokenizer and the CLIP scorer."""

    gen: Any
    goal: Any
    verifier: Any = None
    lm: Any = None
    tokenizer: Any = None
    clip: Any = None


@dataclass(frozen=True)
class SearchModels:
    """The same models by name, plain data a worker of another process loads
    (:meth:`load`): the generator's name, precision and ``torch.compile``; the goal as its
    spec and judge name; the verifier's, LM's and CLIP scorer's names; the device kind
    (a Ray worker's ``"cuda"`` is its own GPU)."""

    model: str
    judge: str
    goal: dict
    device: str = "cpu"
    dtype: str = "float32"
    compile: bool = False
    verifier: str | None = None
    lm: str | None = None
    clip: str | None = None

    @classmethod
    def of(cls, loaded: Loaded) -> "SearchModels":
        gen = loaded.gen
        lm = None if loaded.lm is None else str(loaded.lm.name_or_path)  # the folder it was loaded from
        return cls(gen.name, loaded.goal.ensemble.name, loaded.goal.spec(), gen.device.type,
                   str(gen.dtype).removeprefix("torch."), bool(getattr(gen, "compiled", False)),
                   None if loaded.verifier is None else loaded.verifier.name, lm,
                   None if loaded.clip is None else loaded.clip.name)

    def load(self) -> Loaded:
        from .models.registry import load_caption_lm, load_clip_scorer, load_ensemble, load_generator, load_judge
        from .search.goals import goal_from_spec

        gen = load_generator(self.model, self.device, dtype=self.dtype, compile=self.compile)
        goal = goal_from_spec(self.goal, load_ensemble(self.judge, self.device),
                              lambda name: load_judge(name, self.device))
        lm, tokenizer = load_caption_lm(self.lm, self.device) if self.lm else (None, None)
        return Loaded(gen, goal, load_ensemble(self.verifier, self.device) if self.verifier else None, lm, tokenizer,
                      load_clip_scorer(self.clip, self.device) if self.clip else None)


def build_worker(models: SearchModels, task: str, settings: dict) -> Callable[[list], Any]:
    """What a worker builds once: the models loaded by name, and ``items -> task(models, items, **settings)``."""
    loaded, fn = models.load(), resolve(task)
    return lambda items: fn(loaded, items, **settings)


def chunks(items: list, per_task: int) -> list[list]:
    """``items`` in consecutive tasks of at most ``per_task``."""
    if per_task < 1:
        raise ValueError(f"per_task must be at least 1, got {per_task}")
    return [items[i:i + per_task] for i in range(0, len(items), per_task)]


def spread(task: str, loaded: Loaded, items: list, settings: dict, executor=None, per_task: int = 0,
           progress: bool = True, desc: str = "searches") -> list:
    """The results of ``task`` (``"module:function"``) over ``items`` in tasks of
    ``per_task`` items (0: every item in one task in this process; one item per task on
    Ray), in the items' order: one result per task. ``settings`` must be plain data (it
    travels to the workers); the task also gets ``progress`` (False on Ray workers), and a
    ``checkpoints`` folder in it is made absolute, since a worker's working directory is
    not the driver's."""
    remote = executor is not None and executor.name != "local"
    tasks = chunks(list(items), per_task or (1 if remote else max(1, len(items))))
    settings = {**settings, "progress": progress and not remote}  # a worker's bars would go nowhere
    if settings.get("checkpoints"):
        settings["checkpoints"] = os.path.abspath(settings["checkpoints"])
    fn, executor = resolve(task), executor or LocalExecutor()
    process = (Processor(f"{__name__}:build_worker",
                         {"models": SearchModels.of(loaded), "task": task, "settings": settings}) if remote
               else lambda t: fn(loaded, t, **settings))
    order = {id(t): i for i, t in enumerate(tasks)}
    results: dict[int, Any] = {}
    with tqdm(total=len(tasks), desc=desc, disable=not progress or len(tasks) == 1, leave=False) as bar:
        for t, result in executor.map(process, tasks):
            results[order[id(t)]] = result
            bar.update()
    return [results[i] for i in range(len(tasks))]

