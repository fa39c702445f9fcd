"""What every study parameter may be: ranges, choice sets, names that must resolve.

A notebook's ``parameters`` cell gives each parameter its default (and so its type); the
schema here gives what values are allowed. ``sagekit run`` checks both before a kernel
starts, so bad input costs a one-line error instead of a traceback minutes later. Each
study also estimates how many images its grid will generate, and grids beyond
:data:`MAX_IMAGES` are refused.

Parameters shared by studies (``model``, ``judge``, ``device``, ``seed`` ...) are declared
once and reused.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..shifts import URMS_DRAWS

MAX_IMAGES = 2_000_000  # a week of an H100 at SD 1.5's batched ceiling; beyond that, split the grid


class ParameterError(ValueError):
    """A ``-p key=value`` that the notebook does not take, of the wrong type or out of range."""


def _fail(name: str, message: str) -> ParameterError:
    return ParameterError(f"parameter {name!r} {message}")


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

    def check(self, name, value, ctx):
        if not isinstance(value, int) or isinstance(value, bool) or not self.lo <= value <= self.hi:
            raise _fail(name, f"must be an integer from {self.lo} to {self.hi}{self.note}, got {value!r}")


@dataclass(frozen=True)
class Float(Param):
    lo: float
    hi: float
    lo_open: bool = False
    note: str = ""

    def check(self, name, value, ctx):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (self.lo < value if self.lo_open else self.lo <= value) and value <= self.hi
        if not ok:
            lo = f"above {self.lo}" if self.lo_open else f"at least {self.lo}"
            raise _fail(name, f"must be a number {lo} and at most {self.hi}{self.note}, got {value!r}")


@dataclass(frozen=True)
class Choice(Param):
    options: tuple

    def check(self, name, value, ctx):
        if value not in self.options:
            raise _fail(name, f"must be one of {', '.join(map(repr, self.options))}, got {value!r}")


@dataclass(frozen=True)
class ListOf(Param):
    item: Param
    lo: int = 1
    hi: int = 64
    unique: bool = False

    def check(self, name, value, ctx):
        if not isinstance(value, (list, tuple)) or not self.lo <= len(value) <= self.hi:
            raise _fail(name, f"must be a list of {self.lo} to {self.hi} items, got {value!r}")
        if self.unique and len(set(map(repr, value))) != len(value):
            raise _fail(name, f"must not repeat an item, got {value!r}")
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
            raise _fail(name, f"must be a non-empty string of at most {self.max_len} characters, got {value!r}")


@dataclass(frozen=True)
class Flag(Param):
    def check(self, name, value, ctx):
        if not isinstance(value, bool):
            raise _fail(name, f"must be True or False, got {value!r}")


@dataclass(frozen=True)
class Device(Param):
    """A torch device that exists on this machine."""

    def check(self, name, value, ctx):
        import torch

        try:
            dev = torch.device(value)
        except (RuntimeError, TypeError):
            raise _fail(name, f"must be a device such as 'cpu' or 'cuda:0', got {value!r}") from None
        if dev.type == "cpu":
            return
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise _fail(name, f"is {value!r} but this machine has no CUDA device")
            if dev.index is not None and dev.index >= count:
                raise _fail(name, f"is {value!r} but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
            return
        if dev.type == "mps" and torch.backends.mps.is_available():
            return
        raise _fail(name, f"is {value!r}, which is not available here (use 'cpu' or 'cuda:N')")


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
            raise _fail(name, f"must name a {self.kind}, got {value!r}")
        try:
            resolve(value)
        except (registry.UnknownModelError, registry.ModelNotFoundError, registry.UnsafeWeightsError) as e:
            raise _fail(name, f"({value!r}): {e}") from None


    @staticmethod
    def _check_empty(name, value):
        from ..models import registry
        from ..search.goals import EMPTY_LABEL

        if not isinstance(value, str) or not value:
            raise _fail(name, f"must name a judge with a label {EMPTY_LABEL!r} (or be ''), got {value!r}")
        try:
            registry.resolve_judge(value)
            labels = registry.judge_label_names(value)
        except (registry.UnknownModelError, registry.ModelNotFoundError, registry.UnsafeWeightsError) as e:
            raise _fail(name, f"({value!r}): {e}") from None
        if labels is not None and EMPTY_LABEL not in labels:
            raise _fail(name, f"({value!r}) must be a judge with a label {EMPTY_LABEL!r} (an empty scene), "
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
    """A folder that exists and is writable, or can be created (relative to the notebook)."""

    def check(self, name, value, ctx):
        if not isinstance(value, str) or not value:
            raise _fail(name, f"must be a folder path, got {value!r}")
        problem = unwritable(Path(ctx["__base__"]) / Path(value).expanduser())
        if problem:
            raise _fail(name, f"({value!r}): {problem}")


def unwritable(path: Path) -> str | None:
    """Why ``path`` can't be a folder we write into, or None. Creates nothing."""
    path = Path(path).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
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
                              f"got {value!r}")
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
            raise _fail(name, f"must be a pair [alpha_s, alpha_c], got {value!r}")
        self.first.check(f"{name}[0]", value[0], ctx)
        self.second.check(f"{name}[1]", value[1], ctx)


def _grid(spec) -> dict:
    from ..shifts import grid

    return grid(spec)


# ---------------------------------------------------------------------------- shared declarations
COUNT = Int(1, 100_000)
SEED = Int(0, 2**32 - 1)
LABELS_N = Int(1, 1000, note=" (labels used, evenly spaced over the label set)")
SEEDS_N = Int(1, 10_000)
ITERATIONS = Int(1, 10_000)
STEPS = Int(0, 1000, note=" (0 = the model's default)")
SEARCH_STEPS = Int(1, 1000)
GUIDANCE = Float(0, 100, note=" (0 = the model's default, 1 = no guidance)")
LR = Float(0, 100, lo_open=True)
PROB = Float(0, 1)
MODE = Choice(("exact", "residual"))
PRECISION = Choice(("auto", "float32", "float16", "bfloat16"))  # "auto": float16 on CUDA, float32 on CPU
EXECUTOR = {"executor": Choice(("local", "ray")), "address": Text(400, empty=True)}  # studies that run on Ray
SEARCHES = {**EXECUTOR, "per_task": Int(0, 100_000, note=" (0: one label, seed or target per Ray task)")}
COMMON = {"model": ModelName("generator"), "judge": ModelName("ensemble"), "device": Device(), "seed": SEED,
          "dtype": PRECISION}
LATENT = {
    **COMMON, "verifier": ModelName("ensemble"), "label_set": LabelSet(), "n_labels": LABELS_N,
    "iterations": ITERATIONS, "lr": LR, "delta_bound": Float(0, 10, lo_open=True), "mode": MODE,
    "k": Int(1, 1000, note=" (and at most steps)"), "c": Float(0, 10), "alpha": Float(0, 0.5, lo_open=True),
    "guidance": GUIDANCE, "steps": STEPS, "compare_iterations": Int(1, 1000), "store_dir": Folder(),
}


@dataclass(frozen=True)
class Schema:
    params: dict[str, Param]
    estimate: Callable[[dict], int]  # images the grid generates, about
    cross: Callable[[dict], None] | None = None  # rules between parameters


def _n_labels(p: dict) -> int:
    from ..labels import get_label_set

    return min(p["n_labels"], len(get_label_set(p["label_set"])))


def _labels_are_judged(p: dict, which: str = "judge") -> None:
    """Every label the study prompts for must be one the judge (or ``which``) can see."""
    from ..labels import pick
    from ..models.registry import judge_label_names

    known = judge_label_names(p["judge"])
    if known is None:
        return
    missing = [l for l in pick(p["label_set"], p["n_labels"]) if l not in set(known)]
    if missing:
        raise ParameterError(f"label_set {p['label_set']!r} has labels that {which} {p['judge']!r} does not know: "
                             + ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else ""))


def _k_within_steps(p: dict) -> None:
    if p["steps"] and p["k"] > p["steps"]:
        raise ParameterError(f"parameter 'k' ({p['k']}) must be at most steps ({p['steps']})")
    _judged_and_verified(p)


def _distorted_rules(p: dict) -> None:
    """The searched and the held-out labels are disjoint parts of the label set, and
    every one of them is judged."""
    from ..labels import get_label_set

    size = len(get_label_set(p["label_set"]))
    if p["n_labels"] + p["heldout"] > size:
        raise ParameterError(f"n_labels + heldout must be at most {size} (the labels of {p['label_set']!r}), "
                             f"got {p['n_labels'] + p['heldout']}")
    _k_within_steps(p)
    _labels_are_judged({**p, "n_labels": size})
    _labels_are_judged({**p, "n_labels": size, "judge": p["verifier"]}, "verifier")


def _judged_and_verified(p: dict) -> None:
    _labels_are_judged(p)
    _verifier_is_held_out(p)


def _verifier_is_held_out(p: dict) -> None:
    """The verifier shares no judge with the search's ensemble and sees every label."""
    _verifier_is_shared_with_no_judge(p)
    _labels_are_judged({**p, "judge": p["verifier"]}, "verifier")


def _verifier_is_shared_with_no_judge(p: dict) -> None:
    from ..models.registry import judge_leaves

    shared = judge_leaves(p["verifier"]) & judge_leaves(p["judge"])
    if shared:
        raise ParameterError(f"parameter 'verifier' ({p['verifier']!r}) must hold no judge the search uses; "
                             f"it shares {', '.join(sorted(shared))} with judge {p['judge']!r}")


def _targets_are_judged(p: dict) -> None:
    from ..models.registry import judge_label_names

    known = judge_label_names(p["judge"])
    if known is None:
        return
    for t in p["targets"]:
        if t not in known:
            raise ParameterError(f"target {t!r} is not a label of judge {p['judge']!r}")
    if p["n_train_labels"] + p["n_heldout_labels"] > len(known) - 1:
        raise ParameterError(f"n_train_labels + n_heldout_labels must be at most {len(known) - 1} "
                             f"(the judge's other labels), got {p['n_train_labels'] + p['n_heldout_labels']}")


def _tokens_rules(p: dict) -> None:
    _targets_are_judged(p)
    _targets_are_judged({**p, "judge": p["verifier"]})
    _verifier_is_shared_with_no_judge(p)


def _implosion_rules(p: dict) -> None:
    from ..models.registry import world_of
    from .implosion import MAX_K, rules_of, sweep_plan

    if p["data"]:
        _poisoned_folder_rules(p)
    elif world_of(p["model"]) == "real":
        raise ParameterError(f"parameter 'data' must name a folder of image + caption pairs (name.png + name.txt) for "
                             f"a real model such as {p['model']!r}: the toy world's 32-pixel scenes are not its data")
    elif p["concepts"] or p["unpoisoned"]:
        raise ParameterError("parameters 'concepts' and 'unpoisoned' apply to a folder run: set 'data' too")
    elif max(p["ks"]) > MAX_K:
        raise ParameterError(f"parameter 'ks' may poison at most {MAX_K} concepts on the toy world "
                             f"(its unpoisoned concepts share no word with a poisoned one), got {max(p['ks'])}")
    rules = rules_of(p["budget_rule"])
    if "total" in rules and max(p["ks"]) > p["budget"]:
        raise ParameterError(f"parameter 'budget' ({p['budget']}) must give every poisoned concept at least one "
                             f"pair: it must be at least max(ks) = {max(p['ks'])}")
    for (rule, k, _), (counts, _) in sweep_plan(p["ks"], p["budget"], p["budget_rule"], p["per_concept"]).items():
        if sum(counts) > p["n_train"]:
            raise ParameterError(f"the {rule} rule poisons {sum(counts)} pairs at k = {k}; they must be at most "
                                 f"'n_train' ({p['n_train']}): lower 'budget' or 'per_concept', or raise 'n_train'")
    if p["attention_seeds"] > p["eval_seeds"]:
        raise ParameterError(f"parameter 'attention_seeds' ({p['attention_seeds']}) must be at most 'eval_seeds' "
                             f"({p['eval_seeds']})")


def _poison_plans(p: dict) -> list[tuple[int, list[int]]]:
    """``(k, poisoned pairs per concept)`` of every poisoned fine-tuning set of the sweep (a
    small k puts the whole total budget on few concepts; a large one needs many concepts)."""
    from .implosion import sweep_plan

    plan = sweep_plan(p["ks"], p["budget"], p["budget_rule"], p["per_concept"])
    return [(len(counts), list(counts)) for counts, clean in dict.fromkeys(plan.values()) if not clean]


def _poisoned_folder_rules(p: dict) -> None:
    """A folder run: the folder pairs up, the concepts parse and are mentioned, every k
    has its pairs and its budget's images, the unpoisoned concepts are judged."""
    from ..poisoning import PoisonError, choose_poison, read_folder
    from . import STUDIES
    from .implosion import plan_split

    folder = Path(p["data"]).expanduser()
    folder = folder if folder.is_absolute() else STUDIES["implosion"].path.parent / folder
    try:
        data = read_folder(folder)
        split = plan_split(max(p["ks"]), p["seed"], str(folder), p["concepts"], p["unpoisoned"])
        for k, counts in _poison_plans(p):
            choose_poison(data.captions, split.pairs[:k], counts, p["seed"])
    except (PoisonError, ValueError) as e:
        raise ParameterError(f"data {p['data']!r}: {e}") from None
    if p["n_train"] > len(data.captions):  # the clean pairs and the poison come from the folder's own
        raise ParameterError(f"n_train ({p['n_train']}) is more than the {len(data.captions)} pairs of {p['data']!r}")
    from ..models.registry import judge_label_names

    known = judge_label_names(p["judge"])
    missing = [c for c in list(p["unpoisoned"]) + [a for a, _ in split.pairs] + [b for _, b in split.pairs]
               if known is not None and c not in known]
    if missing:
        raise ParameterError(f"judge {p['judge']!r} does not know the concepts {', '.join(map(repr, missing[:5]))}")


def _implosion_images(p: dict) -> int:
    from .implosion import HELD_COLOURS, HELD_SHAPES, sweep_plan

    # each fine-tune (rows that share a training set share one) draws the unpoisoned concepts and its k sources
    evaluated = len(p["unpoisoned"]) if p["data"] else HELD_COLOURS * HELD_SHAPES
    runs = set(sweep_plan(p["ks"], p["budget"], p["budget_rule"], p["per_concept"]).values())
    return sum((evaluated + len(counts)) * p["eval_seeds"] for counts, _ in runs)


def _ray_installed(p: dict) -> None:
    if p.get("executor") == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ParameterError("parameter 'executor' is 'ray' but Ray is not installed: pip install 'sagekit[ray]'")


SCHEMAS: dict[str, Schema] = {
    "toy-world": Schema(
        {"per_label": Int(1, 1000), "n_judge": COUNT, "grid_labels": Int(1, 36), "per_probe": Int(1, 1000),
         "probe_pairs": Int(1, 1000), "probe_seeds": Int(1, 1000), "seed": SEED},
        lambda p: 36 * p["per_label"] * 6 + 9 * p["n_judge"] + 120 * p["per_probe"]
        + 9 * p["probe_pairs"] * p["probe_seeds"]),
    "prompt-failures": Schema(
        {**COMMON, "verifier": ModelName("ensemble"), "clip": ModelName("clip"), "lm": ModelName("lm"),
         "label_set": LabelSet(), "n_labels": LABELS_N, "max_words": Int(1, 32), "top_k": Int(1, 1000),
         "ban": Choice(("label", "label set")),
         "rescore": Int(1, 1000), "project_every": Int(0, 100_000), "iterations": ITERATIONS, "lr": LR,
         "bound": Float(0, 100, lo_open=True), "train_seeds": SEEDS_N, "eval_seeds": SEEDS_N,
         "fail_fraction": Float(0, 1, lo_open=True), "mode": MODE, "k": Int(1, 1000), "search_steps": SEARCH_STEPS,
         "guidance": GUIDANCE, "steps": STEPS, "baseline_prompts": Int(1, 1000), "baseline_min_prob": PROB,
         "taxonomy": ListOf(Text(80), 1, 50, unique=True), "store_dir": Folder(), **SEARCHES},
        lambda p: _n_labels(p) * (p["max_words"] * (p["train_seeds"] * (p["iterations"] + 1 + p["rescore"])
                                                     + p["eval_seeds"])
                                  + p["baseline_prompts"] * p["eval_seeds"]),
        _judged_and_verified),
    "distorted-latents": Schema(
        {**LATENT, "realism": ModelName("realism"), "realism_goal": Flag(), "empty": ModelName("empty", optional=True),
         "heldout": Int(1, 1000), "latents": SEEDS_N, "low_confidence": PROB,
         "reference_images": Int(2, 100_000), **SEARCHES},
        lambda p: p["latents"] * (_n_labels(p) * (p["iterations"] + 3) + 2 * p["heldout"]) + 2 * p["compare_iterations"]
        + p["reference_images"],
        _distorted_rules),
    "unrelated-latents": Schema(
        {**LATENT, "seeds_per_label": SEEDS_N, "confidence": PROB, "realism": ModelName("realism"),
         "realism_goal": Flag(), "empty": ModelName("empty", optional=True), "reference_images": Int(2, 100_000), **SEARCHES},
        lambda p: _n_labels(p) * p["seeds_per_label"] * (p["iterations"] + 3) + 2 * p["compare_iterations"]
        + p["reference_images"],
        _k_within_steps),
    "adversarial-tokens": Schema(
        {**COMMON, "verifier": ModelName("ensemble"), "clip": ModelName("clip"), "targets": ListOf(Text(200), 1, 100, unique=True),
         "n_train_labels": Int(1, 1000), "n_heldout_labels": Int(1, 1000), "objective": Choice(("denoise", "judges")),
         "iterations": ITERATIONS, "lr": LR, "bound": Float(0, 100, lo_open=True), "batch": Int(1, 1024),
         "examples": Int(1, 10_000), "mode": MODE, "k": Int(1, 1000), "search_steps": SEARCH_STEPS,
         "guidance": GUIDANCE, "steps": STEPS, "eval_seeds": SEEDS_N, "store_dir": Folder(), **SEARCHES},
        lambda p: len(p["targets"]) * (p["iterations"] * p["batch"] + 4 * p["examples"]
                                       + 2 * p["n_heldout_labels"] * p["eval_seeds"]),
        _tokens_rules),
    "seed-shifts": Schema(
        {"models": ListOf(ModelName("generator"), 1, 16, unique=True),
         "guidance": ListOf(GUIDANCE, 1, 16, unique=True), "shifts": Shifts(), "label_set": LabelSet(),
         "n_labels": LABELS_N, "seeds_per_cell": SEEDS_N, "steps": STEPS, "judge": ModelName("judge"),
         "clip": ModelName("clip"), "batch_size": Int(0, 4096, note=" (0: from free GPU memory)"),
         "store_dir": Folder(), "device": Device(), "dtype": PRECISION, "compile": Flag(), "seed": SEED,
         **EXECUTOR, "baseline_seeds_per_cell": SEEDS_N, "trajectory_seeds": Int(1, 1000),
         "protocol": Choice(("auto", "toy", "paper")), "urms_draw": Choice(URMS_DRAWS)},
        lambda p: len(p["models"]) * len(p["guidance"]) * _n_labels(p)
        * (max(p["baseline_seeds_per_cell"], p["seeds_per_cell"])
           + p["seeds_per_cell"] * sum(len(v) for v in _grid(p["shifts"]).values())),
        _labels_are_judged),
    "implosion": Schema(
        {**COMMON, "judge": ModelName("judge"), "clip": ModelName("clip"), "ks": ListOf(Int(0, 1000), 1, 20, unique=True),
         "n_train": Int(1, 1_000_000), "budget": Int(1, 1_000_000),
         "budget_rule": Choice(("total", "per-concept", "both")),
         "per_concept": Int(0, 1_000_000, note=" (0: budget // max(ks))"), "finetune_steps": Int(1, 100_000),
         "lr": LR, "trainable": Choice(("all", "cross-attention", "lora")), "eval_seeds": SEEDS_N,
         "data": Text(4096, empty=True), "concepts": Text(4096, empty=True), "unpoisoned": ListOf(Text(200), 0, 1000, unique=True),
         "lora_rank": Int(1, 4096, note=" (the LoRA adapters' rank)"), "batch_size": Int(1, 100_000),
         "attention_seeds": Int(1, 10_000), "guidance": Float(1, 100, note=" (1 = no guidance)"),
         "steps": STEPS, **EXECUTOR},
        _implosion_images,
        _implosion_rules),
}


def _whose_default(study_id: str, name: str, params: dict) -> str:
    from .defaults import WORLD_DEFAULTS, world_of_models

    if name in WORLD_DEFAULTS["toy"]:
        return f"the {world_of_models(params)} world's default"
    return "the protocol's value"


def validate(study_id: str, params: dict[str, Any], base: Path) -> int:
    """Check every parameter of a study (defaults merged with overrides) against its
    schema, after every ``"auto"`` took its value (``sagekit.studies.defaults``); ``base``
    is the notebook's folder (relative paths start there). Returns the estimated number of
    images; raises ParameterError."""
    from .defaults import is_auto, resolve, world_dependent

    schema = SCHEMAS[study_id]
    unknown = [name for name in params if name not in schema.params]
    if unknown:
        raise ParameterError(f"study {study_id!r} declares no rule for parameter {unknown[0]!r}")
    resolved = resolve(study_id, params)
    ctx = {**resolved, "__base__": str(base)}
    for name, value in resolved.items():
        try:
            schema.params[name].check(name, value, ctx)
        except ParameterError as e:
            if not is_auto(params[name]) or name not in world_dependent(study_id):
                raise
            raise ParameterError(f"{e} (it was 'auto': {_whose_default(study_id, name, params)}; "
                                 f"name another with -p {name}=...)") from None
    params = resolved
    if schema.cross:
        schema.cross(params)
    _ray_installed(params)
    images = int(schema.estimate(params))
    if images > MAX_IMAGES:
        raise ParameterError(f"study {study_id!r} would generate about {images:,} images (the limit is "
                             f"{MAX_IMAGES:,}); lower the counts, or split the grid over several runs")
    return images
