"""The one search loop: signed-gradient descent with projection, per-sample early stop,
and a checkpoint after every iteration so that a killed search resumes where it stopped.

A search is a set of named variables, each a batch ``(B, ...)`` owned by a
*transformation* that knows its step size and how to project a row back into the
allowed set; an *objective* maps the rows still searching to a loss per row (and, for
a goal with a success rule, which rows already meet it). Everything random in an
objective must derive from its arguments (the iteration, the row indices), so that a
resumed search is the same search.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from ..progress import bar as progress_bar

from ..store import cell_key


class Transformation(Protocol):
    """What a search may change, and how far."""

    step: torch.Tensor | float          # size of one signed step, broadcastable to a row

    def project(self, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``rows`` ``(b, ...)`` (the batch rows ``index``) moved back into the allowed set."""


# objective(rows, index, iteration, grad) -> (loss (b,), found (b,) bool on the CPU, or None)
Objective = Callable[[dict[str, torch.Tensor], torch.Tensor, int, bool], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class SearchState:
    """Where a search stands: ``values`` (name -> ``(B, ...)``), the next ``iteration``,
    ``found_at`` ``(B,)`` (the iteration a row first met the goal, -1 while it has not),
    and the mean loss and the seconds of every iteration so far."""

    values: dict[str, torch.Tensor]
    iteration: int = 0
    found_at: torch.Tensor | None = None
    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.found_at is None:
            n = len(next(iter(self.values.values())))
            self.found_at = torch.full((n,), -1, dtype=torch.long)


def weights_in_key(gen, goal, **others) -> dict:
    """What a search's checkpoint key must hold of the weights it ran on: the generator's
    name and fingerprint, its judges' (goal, empty-scene and realism judges) and those of
    ``others`` (name -> a loaded model with a ``revision``, e.g. the caption LM), so a
    state searched on other or retrained weights is never resumed."""
    from ..models.registry import model_revision

    judges = {"judges": goal.ensemble} | {r: getattr(goal, r, None) for r in ("empty", "realism")}
    return {"model": gen.name, "revision": model_revision(gen), "judges": goal.ensemble.name,
            "weights": {role: getattr(m, "revision", "") for role, m in (judges | others).items() if m is not None}}


class Checkpoint:
    """One search's state in a safetensors file (tensors only, never pickle), written
    atomically; ``key`` names the search (its inputs and settings), so a file left by a
    different search is never resumed."""

    def __init__(self, path: str | Path, key: str):
        self.path, self.key = Path(path), key

    @classmethod
    def under(cls, folder: str | Path | None, search: dict) -> "Checkpoint | None":
        """The checkpoint of the search described by ``search`` (a JSON dict of
        everything that determines it) in ``folder``; None without a folder."""
        if folder is None:
            return None
        key = cell_key(search)
        return cls(Path(folder) / "checkpoints" / f"{key}.safetensors", key)

    def save(self, state: SearchState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"key": self.key, "iteration": str(state.iteration), "losses": json.dumps(state.losses),
                "seconds": json.dumps(state.seconds)}
        tensors = {f"value.{k}": v.detach().cpu().contiguous() for k, v in state.values.items()}
        tensors["found_at"] = state.found_at.cpu().contiguous()
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, self.path)

    def load(self) -> SearchState | None:
        """The saved state, or None when there is none for this key. A file that cannot be
        read (cut short, garbled) is set aside as ``<name>.corrupt`` with a warning that
        names it, and the search starts afresh: a checkpoint only saves time."""
        if not self.path.exists():
            return None
        try:
            with safe_open(str(self.path), "pt") as f:
                meta = f.metadata() or {}
            if meta.get("key") != self.key:
                return None
            tensors = load_file(str(self.path))
            values = {k[len("value."):]: v for k, v in tensors.items() if k.startswith("value.")}
            return SearchState(values, int(meta["iteration"]), tensors["found_at"], json.loads(meta["losses"]),
                               json.loads(meta["seconds"]))
        except Exception as e:  # safetensors raises its own error types; any unreadable file is set aside
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            warnings.warn(f"search checkpoint {self.path} could not be read ({type(e).__name__}: {e}); "
                          f"set aside as {aside.name}, the search starts afresh")
            return None


def signed_descent(objective: Objective, transformations: dict[str, Transformation], state: SearchState,
                   iterations: int, stop_when_found: bool = True, checkpoint: Checkpoint | None = None,
                   progress: bool = True, desc: str = "search") -> SearchState:
    """Run ``state`` on to ``iterations`` signed-gradient steps: x <- project(x - step *
    sign(grad loss)), for every variable at once. Each iteration evaluates the rows still
    searching (with ``stop_when_found``, a row leaves at the first iteration it meets the
    goal and keeps the values that met it, and a final evaluation without gradient at
    ``iterations`` records the last rows found). Resumes from ``checkpoint`` when it holds
    this search, and saves it after every step. Returns the state."""
    if checkpoint is not None and (saved := checkpoint.load()) is not None:
        saved.values = {k: v.to(state.values[k].device, state.values[k].dtype) for k, v in saved.values.items()}
        state = saved
    values = state.values
    bar = progress_bar(total=iterations, initial=min(state.iteration, iterations), desc=desc, progress=progress)
    while True:
        t0 = time.perf_counter()
        it, last = state.iteration, state.iteration >= iterations
        if last and not stop_when_found:
            break  # the final evaluation only records rows found; without early stop there are none to record
        index = torch.nonzero(state.found_at < 0).flatten() if stop_when_found else torch.arange(len(state.found_at))
        if len(index) == 0:
            break
        rows = {k: v[index].requires_grad_(not last) for k, v in values.items()}
        with torch.set_grad_enabled(not last):
            loss, hit = objective(rows, index, it, not last)
        if hit is not None:
            fresh = hit & (state.found_at[index] < 0)
            state.found_at[index[fresh]] = it
        if last or (stop_when_found and hit is not None and bool(hit.all())):
            break
        grads = torch.autograd.grad(loss.sum(), list(rows.values()))
        # rows that met the goal this iteration keep the values that met it
        move = ~hit if (stop_when_found and hit is not None) else torch.ones(len(index), dtype=torch.bool)
        with torch.no_grad():
            for (name, r), g in zip(rows.items(), grads):
                t = transformations[name]
                step = t.step.to(r.device) if torch.is_tensor(t.step) else t.step
                new = t.project(r.detach()[move.to(r.device)] - step * g[move.to(g.device)].sign(), index[move])
                values[name][index[move]] = new.to(values[name].device, values[name].dtype)
        state.iteration += 1
        state.losses.append(float(loss.detach().mean()))
        state.seconds.append(time.perf_counter() - t0)
        if checkpoint is not None:
            checkpoint.save(state)
        bar.update(1)
        bar.set_postfix(loss=f"{state.losses[-1]:.3f}",
                        **({"found": int((state.found_at >= 0).sum())} if stop_when_found else {}))
    bar.close()
    return state
