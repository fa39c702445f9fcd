"""Resumable training state: a long UNet training (hours on 2 cores) survives a crash or a
closed laptop and continues where it stopped, to the same weights as an unbroken run.

A checkpoint is a folder with ``state.safetensors`` (every tensor: weights, EMA, AdamW
moments, random generator states) and ``state.json`` (the step, the optimiser's and the
learning-rate schedule's scalars, and a fingerprint of the run's inputs). Nothing is
pickled. It is written to a temporary folder and renamed into place, so a crash while
saving leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def save_training_state(folder: Path, step: int, fingerprint: dict, module: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, schedule, ema, generators: dict[str, torch.Tensor]) -> None:
    """Write the state after ``step`` finished steps to ``folder`` (replacing any older one).
    ``generators``: name → ``Generator.get_state()`` (uint8 tensors)."""
    tensors = {f"module.{k}": v.detach().contiguous() for k, v in module.state_dict().items()}
    opt = optimizer.state_dict()
    for i, state in opt["state"].items():
        for k, v in state.items():
            tensors[f"opt.{i}.{k}"] = v.detach().contiguous()
    meta = {"step": step, "fingerprint": fingerprint, "param_groups": opt["param_groups"],
            "schedule": schedule.state_dict()}
    if ema is not None:
        ema_state = ema.state_dict()
        for i, p in enumerate(ema_state.pop("shadow_params")):
            tensors[f"ema.{i}"] = p.detach().contiguous()
        meta["ema"] = ema_state
    tensors.update({f"rng.{k}": v for k, v in generators.items()})
    tmp, old = _sibling(folder, "writing"), _sibling(folder, "old")
    if old.exists() and not folder.exists():
        old.rename(folder)  # the last save crashed between its renames: keep its state until this one is whole
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, tmp / "state.safetensors")
    (tmp / "state.json").write_text(json.dumps(meta))
    for f in (tmp / "state.safetensors", tmp / "state.json", tmp):
        _fsync(f)  # on disk before the rename makes them the state to resume
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def discard_training_state(folder: Path) -> None:
    """Delete the state in ``folder`` and any copy of it a save or a load left beside it."""
    for f in (folder, *(_sibling(folder, suffix) for suffix in SIBLINGS)):
        shutil.rmtree(f, ignore_errors=True)


SIBLINGS = ("writing", "old", "unreadable")  # the folders beside a state: being written, replaced, set aside


def _sibling(folder: Path, suffix: str) -> Path:
    return folder.with_name(f"{folder.name}.{suffix}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_training_state(folder: Path, fingerprint: dict, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        schedule, ema) -> tuple[int, dict[str, torch.Tensor]] | None:
    """Restore the state in ``folder`` into the given objects and return ``(step, generators)``;
    ``None`` (nothing restored) when there is no checkpoint or it belongs to another run
    (a different ``fingerprint``: recipe, seed or data)."""
    if not folder.exists() and _sibling(folder, "old").exists():
        folder = _sibling(folder, "old")  # a crash between the two renames
    meta_path = folder / "state.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta["fingerprint"] != json.loads(json.dumps(fingerprint)):
            return None
        tensors = load_file(folder / "state.safetensors")
        weights = {k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")}
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        shadow = [tensors[f"ema.{i}"] for i in range(len(ema.shadow_params))] if ema is not None else None
        generators = {k[len("rng."):]: v for k, v in tensors.items() if k.startswith("rng.")}
        # Checked before anything is restored, so a refused state leaves the objects as they were.
        expected = module.state_dict()
        if weights.keys() != expected.keys() or any(weights[k].shape != v.shape for k, v in expected.items()):
            raise ValueError("the weights do not fit the model")
        if len(meta["param_groups"]) != len(optimizer.param_groups) or (ema is not None) != ("ema" in meta):
            raise ValueError("the optimiser or EMA state does not fit")
        step = int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        # A damaged state (a full disk, a copy cut short) must not stop the training: it is
        # set aside, named, and the run starts over.
        aside = _sibling(folder, "unreadable")
        shutil.rmtree(aside, ignore_errors=True)
        folder.rename(aside)
        print(f"the training state in {folder} is unreadable ({type(e).__name__}: {e}); moved to {aside}, "
              "starting over", file=sys.stderr)
        return None
    module.load_state_dict(weights)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    schedule.load_state_dict(meta["schedule"])
    if ema is not None:
        ema.load_state_dict({**meta["ema"], "shadow_params": shadow})
    return step, generators
