"""Parameter kinds, and how a study's one declaration of its parameters is used.

A study module declares each of its parameters once, as a :class:`Parameter` (kind,
default, help, the fast tests' small value) in its :data:`SCHEMA`; everything else is
derived from that: validation here, the notebook's ``parameters`` cell
(:func:`parameters_cell`; a test fails when the two differ), the small sizes of the
fast tests, the defaults ``sagekit run`` merges with ``-p`` overrides. ``sagekit run``
checks every value before a kernel starts, so bad input costs a one-line error instead of
a traceback minutes later.

``None`` is the one sentinel for "the model's default" (steps, guidance); the generator
resolves it (``Generator.steps_of`` / ``guidance_of``).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..markup import short


class ParameterError(ValueError):
    """A ``-p key=value`` that the notebook does not take, of the wrong type or out of range."""


def _fail(name: str, message: str) -> ParameterError:
    return ParameterError(f"parameter {name!r} {message}")


def _none(meaning: str) -> str:
    return f", or None ({meaning})" if meaning else ""


# ---------------------------------------------------------------------------- kinds
class Param:
    """One parameter's rule. ``check`` raises ParameterError; ``ctx`` holds all the
    parameters (for rules that depend on another one) and ``base`` (the notebook folder)."""

    def check(self, name: str, value: Any, ctx: dict) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Param):
    lo: int
    hi: int
    note: str = ""
    none: str = ""  # what None means, where None is allowed ("the model's default")

    def check(self, name, value, ctx):
        if value is None and self.none:
            return
        if not isinstance(value, int) or isinstance(value, bool) or not self.lo <= value <= self.hi:
            raise _fail(name, f"must be an integer from {self.lo} to {self.hi}{self.note}{_none(self.none)}, got {short(value)}")


@dataclass(frozen=True)
class Float(Param):
    lo: float
    hi: float
    lo_open: bool = False
    note: str = ""
    none: str = ""  # what None means, where None is allowed

    def check(self, name, value, ctx):
        if value is None and self.none:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (self.lo < value if self.lo_open else self.lo <= value) and value <= self.hi
        if not ok:
            lo = f"above {self.lo}" if self.lo_open else f"at least {self.lo}"
            raise _fail(name, f"must be a number {lo} and at most {self.hi}{self.note}{_none(self.none)}, got {short(value)}")


@dataclass(frozen=True)
class Choice(Param):
    options: tuple

    def check(self, name, value, ctx):
        if value not in self.options:
            raise _fail(name, f"must be one of {', '.join(map(repr, self.options))}, got {short(value)}")


@dataclass(frozen=True)
class ListOf(Param):
    item: Param
    lo: int = 1
    hi: int = 64
    unique: bool = False

    def check(self, name, value, ctx):
        if not isinstance(value, (list, tuple)) or not self.lo <= len(value) <= self.hi:
            raise _fail(name, f"must be a list of {self.lo} to {self.hi} items, got {short(value)}")
        if self.unique and len(set(map(repr, value))) != len(value):
            raise _fail(name, f"must not repeat an item, got {short(value)}")
        for i, v in enumerate(value):
            self.item.check(f"{name}[{i}]", v, ctx)


@dataclass(frozen=True)
class Text(Param):
    max_len: int = 200
    empty: bool = False  # "" allowed (an option left unset)

    def check(self, name, value, ctx):
        if value == "" and self.empty:
            return
        if not isinstance(value, str) or not value.strip() or len(value) > self.max_len:
            raise _fail(name, f"must be a non-empty string of at most {self.max_len} characters, got {short(value)}")


@dataclass(frozen=True)
class Flag(Param):
    def check(self, name, value, ctx):
        if not isinstance(value, bool):
            raise _fail(name, f"must be True or False, got {short(value)}")


@dataclass(frozen=True)
class Device(Param):
    """A torch device that exists on this machine."""

    def check(self, name, value, ctx):
        import torch

        try:
            dev = torch.device(value)
        except (RuntimeError, TypeError):
            raise _fail(name, f"must be a device such as 'cpu' or 'cuda:0', got {short(value)}") from None
        if dev.type == "cpu":
            return
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise _fail(name, f"is {short(value)} but this machine has no CUDA device")
            if dev.index is not None and dev.index >= count:
                raise _fail(name, f"is {short(value)} but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
            return
        if dev.type == "mps" and torch.backends.mps.is_available():
            return
        raise _fail(name, f"is {short(value)}, which is not available here (use 'cpu' or 'cuda:N')")


@dataclass(frozen=True)
class ModelName(Param):
    """A model name that resolves to checked weights on this machine (nothing is loaded)."""

    kind: str  # "generator", "judge", "ensemble" (any judge; a single one is an ensemble of one), "clip",
    #            "realism" (a realism judge or a CLIP model), "empty" (a judge with a label "none") or "lm"
    optional: bool = False  # "" means none

    def check(self, name, value, ctx):
        from ..models import registry

        if self.optional and value == "":
            return
        if self.kind == "empty":
            self._check_empty(name, value)
            return

        resolve = {"generator": registry.resolve_generator, "judge": registry.resolve_judge,
                   "ensemble": registry.resolve_judge, "clip": registry.resolve_clip,
                   "realism": registry.resolve_realism, "lm": registry.resolve_caption_lm}[self.kind]
        if not isinstance(value, str) or not value:
            raise _fail(name, f"must name a {self.kind}, got {short(value)}")
        try:
            resolve(value)
        except (registry.UnknownModelError, registry.ModelNotFoundError, registry.UnsafeWeightsError) as e:
            raise _fail(name, f"({short(value)}): {e}") from None


    @staticmethod
    def _check_empty(name, value):
        from ..models import registry
        from ..search.goals import EMPTY_LABEL

        if not isinstance(value, str) or not value:
            raise _fail(name, f"must name a judge with a label {EMPTY_LABEL!r} (or be ''), got {short(value)}")
        try:
            registry.resolve_judge(value)
            labels = registry.judge_label_names(value)
        except (registry.UnknownModelError, registry.ModelNotFoundError, registry.UnsafeWeightsError) as e:
            raise _fail(name, f"({short(value)}): {e}") from None
        if labels is not None and EMPTY_LABEL not in labels:
            raise _fail(name, f"({short(value)}) must be a judge with a label {EMPTY_LABEL!r} (an empty scene), "
                              f"such as 'toy-count'")


@dataclass(frozen=True)
class LabelSet(Param):
    """A shipped label set's name or a ``.txt`` file of labels."""

    def check(self, name, value, ctx):
        from ..labels import get_label_set

        try:
            get_label_set(value)
        except (KeyError, ValueError, OSError) as e:
            raise _fail(name, str(e.args[0] if isinstance(e, KeyError) else e)) from None


@dataclass(frozen=True)
class Folder(Param):
    """A folder that exists and is writable, or can be created (relative to the notebook);
    a results store already in it must be one SQLite can read."""

    def check(self, name, value, ctx):
        if not isinstance(value, str) or not value:
            raise _fail(name, f"must be a folder path, got {short(value)}")
        folder = Path(ctx["__base__"]) / Path(value).expanduser()
        problem = unwritable(folder) or _unreadable_store(folder)
        if problem:
            raise _fail(name, f"({short(value)}): {problem}")


def _unreadable_store(folder: Path) -> str | None:
    from ..store import unreadable_store

    return unreadable_store(folder)


def nearest_existing(path: Path) -> Path:
    """``path`` (made absolute) or its nearest ancestor that exists: where a new folder would go."""
    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    return probe


def unwritable(path: Path) -> str | None:
    """Why ``path`` can't be a folder we write into, or None. Creates nothing."""
    path = Path(path).absolute()
    if any(len(part.encode()) > 255 for part in path.parts):  # every file system's limit on a name
        return f"{short(str(path))} has a name longer than a file system takes"
    probe = nearest_existing(path)
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:  # os.access says yes to root even where nothing can be created (e.g. /proc)
        os.rmdir(tempfile.mkdtemp(prefix=".sagekit-probe-", dir=probe))
    except OSError:
        return f"{probe} is not writable"
    return None


@dataclass(frozen=True)
class Shifts(Param):
    """``{shift: [levels]}`` with the level type of each shift (see ``sagekit.shifts``), or
    ``"paper"`` for paper 001's grid."""

    def check(self, name, value, ctx):
        from ..shifts import SHIFTS

        names = [s for s in SHIFTS if s != "none"]
        if value == "paper":
            return
        if not isinstance(value, dict) or not value:
            raise _fail(name, f"must be 'paper' or a dict {{shift: [levels]}} with shifts from {', '.join(names)}, "
                              f"got {short(value)}")
        alpha, std = Float(-10, 10), Float(-10, 0.999, note=" (the std becomes 1 - alpha_s)")
        for shift, levels in value.items():
            where = f"{name}[{shift!r}]"
            if shift not in names:
                raise _fail(name, f"has an unknown shift {shift!r}; known: {', '.join(names)}")
            if shift == "PAS":
                item = Int(1, 1 << 20, note=" (positions sorted per channel)")
            elif shift == "MS":
                item = _Pair(std, alpha)
            elif shift == "SDS":
                item = std
            else:
                item = alpha
            ListOf(item, 1, 100).check(where, levels, ctx)


@dataclass(frozen=True)
class _Pair(Param):
    first: Param
    second: Param

    def check(self, name, value, ctx):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise _fail(name, f"must be a pair [alpha_s, alpha_c], got {short(value)}")
        self.first.check(f"{name}[0]", value[0], ctx)
        self.second.check(f"{name}[1]", value[1], ctx)


# ---------------------------------------------------------------------------- declarations
_NO_SMALL = object()


@dataclass(frozen=True)
class Parameter:
    """One study parameter, declared once: its kind (the rule its values obey), default,
    one line of help for the notebook, and ``small``: the value the fast tests run with
    (unset: the default)."""

    rule: Param
    default: Any
    help: str = ""
    small: Any = _NO_SMALL

    @property
    def has_small(self) -> bool:
        return self.small is not _NO_SMALL


@dataclass(frozen=True)
class Schema:
    """A study's parameters in notebook order, its image estimate and its rules between
    parameters."""

    params: dict[str, Parameter]
    estimate: Callable[[dict], int]  # images the grid generates, about
    cross: Callable[[dict], None] | None = None  # rules between parameters, after each value passed its own
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)  # named sets of values for "auto"
    # the seed streams it draws from (``sagekit.seeds``) -> how many draws of each, from the parameters
    streams: dict[str, Callable[[dict], int]] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items()}

    def small(self) -> dict[str, Any]:
        """The fast tests' values of the parameters that have one."""
        return {name: p.small for name, p in self.params.items() if p.has_small}


def check_fields(params: dict[str, Parameter], values: dict[str, Any]) -> None:
    """Check the values of a config object's fields that are declared parameters (a
    config built in Python obeys the notebook's rules); ParameterError (a ValueError)."""
    for name, value in values.items():
        if name in params:
            params[name].rule.check(name, value, {})


HEADER = "# Parameters (papermill injects overrides below this cell)"
AUTO_NOTE = ('# "auto" takes the model\'s world\'s value (README, "Defaults per world"): the toy world\'s own judges\n'
             "# for a toy model, real ones for a diffusers folder or hub id; None: the model's default")
_HELP_COLUMN = 36
_WIDTH = 120


def literal(value: Any) -> str:
    """``value`` as Python source, strings in double quotes (as the notebooks write them)."""
    import json

    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(literal, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def parameters_cell(schema: Schema) -> str:
    """The notebook's ``parameters`` cell, written from the declaration: ``name = default``
    and its help as a comment beside it (above it when the value is long). papermill
    reads the cell line by line, so help never holds an ``=``."""
    import textwrap

    lines = [HEADER]
    if any(p.default == "auto" or p.default is None for p in schema.params.values()):
        lines += AUTO_NOTE.splitlines()
    for name, p in schema.params.items():
        code = f"{name} = {literal(p.default)}"
        if not p.help:
            lines.append(code)
        elif len(code) + 2 > _HELP_COLUMN:
            lines += [f"# {line}" for line in textwrap.wrap(p.help, _WIDTH - 2)] + [code]
        else:
            wrapped = textwrap.wrap(p.help, _WIDTH - _HELP_COLUMN - 2)
            lines.append(f"{code:<{_HELP_COLUMN}}# {wrapped[0]}")
            lines += [f"{'':<{_HELP_COLUMN}}# {more}" for more in wrapped[1:]]
    return "\n".join(lines)
