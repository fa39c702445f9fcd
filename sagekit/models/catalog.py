"""Model names a world registers (timm-style), and the judge kinds a spec may name.

A world (the toy world: ``sagekit.toy.names``) registers its generators, judges, CLIP
models and language models here by name, with the folder its weights live in; the
registry (``sagekit.models.registry``) finds them here, so the adapters never import a
world. A judge *kind* is a spec prefix (``timm:``, ``hf:``, ``open_clip:``) with the three
things a judge spec needs of it: its checked files, the loaded judge, its labels.
Nothing here imports torch: registering a name costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class NamedGenerator:
    """A registered generator: its diffusers folder, its world (what a study's "auto"
    defaults follow), its sampling defaults and, optionally, another sampler
    ``(scheduler name, config changes)`` than the folder's own."""

    folder: Path
    world: str
    steps: int | None = None
    guidance: float | None = None
    sampler: tuple[str, dict] | None = None
    hint: str = ""  # how to get the weights when they are missing


@dataclass(frozen=True)
class NamedJudge:
    """A registered judge: a timm ``save_for_hf`` ``folder``, an ensemble of registered
    ``members``, or zero-shot over its labels with a registered ``clip``; ``labels`` gives
    its labels without loading anything."""

    labels: Callable[[], tuple[str, ...]]
    folder: Path | None = None
    members: tuple[str, ...] = ()
    clip: str = ""
    hint: str = ""


@dataclass(frozen=True)
class NamedFolder:
    """A registered CLIP model or language model: a transformers folder."""

    folder: Path
    hint: str = ""


@dataclass(frozen=True)
class JudgeKind:
    """What a judge spec prefix (``"timm"`` in ``timm:<model>``) means: ``resolve(arg,
    download)`` -> checked paths, ``load(name, arg, paths, download)`` -> Judge,
    ``labels(arg)`` -> label names or None (only loading would tell)."""

    resolve: Callable
    load: Callable
    labels: Callable
    usage: str  # how the spec is written, for error messages


GENERATORS: dict[str, NamedGenerator] = {}
JUDGES: dict[str, NamedJudge] = {}
CLIPS: dict[str, NamedFolder] = {}
LMS: dict[str, NamedFolder] = {}
JUDGE_KINDS: dict[str, JudgeKind] = {}


def register_generator(name: str, entry: NamedGenerator) -> None:
    GENERATORS[name] = entry


def register_judge(name: str, entry: NamedJudge) -> None:
    JUDGES[name] = entry


def register_clip(name: str, entry: NamedFolder) -> None:
    CLIPS[name] = entry


def register_lm(name: str, entry: NamedFolder) -> None:
    LMS[name] = entry


def register_judge_kind(prefix: str, kind: JudgeKind) -> None:
    JUDGE_KINDS[prefix] = kind
