"""Parameters and rules several studies share, declared once (``sagekit.studies.parameters``
holds the kinds). A study takes one of these as it is, or with its own help
(``dataclasses.replace``)."""

from __future__ import annotations

from dataclasses import replace

from .parameters import (Choice, Device, Float, Folder, Int, LabelSet, ModelName, Parameter, ParameterError,
                         Text, short)

MODEL_DEFAULT = "the model's default"

# ---------------------------------------------------------------------------- shared declarations
MODEL = Parameter(ModelName("generator"), "toy", "generator name, local diffusers folder or cached hub id")
JUDGE = Parameter(ModelName("ensemble"), "auto", "an ensemble of judges (toy: toy-ensemble)")
VERIFIER = Parameter(ModelName("ensemble"), "auto",
                     "held-out judges, never used in the search, confirm each failure on fresh seeds (toy: toy-clip)")
CLIP = Parameter(ModelName("clip"), "auto", "the CLIP scorer (toy: toy-clip)")
REALISM = Parameter(ModelName("realism"), "auto", "a judge with labels real/corrupted, or a CLIP model: embedding "
                    "distance (toy: toy-realism)")
LABEL_SET = Parameter(LabelSet(), "auto",
                      '"toy", "imagenet100", "imagenet" or a .txt file (toy: toy; real: imagenet100)')
N_LABELS = Parameter(Int(1, 1000, note=" (labels used, evenly spaced over the label set)"), 3,
                     "labels used, evenly spaced over the label set")
SEEDS = Int(1, 10_000)
ITERATIONS = Int(1, 10_000)
LR = Float(0, 100, lo_open=True)
PROB = Float(0, 1)
MODE = Choice(("exact", "residual"))
K = Parameter(Int(1, 1000, note=" (and at most steps)"), 2, "residual: sampling steps with gradient")
STEPS = Parameter(Int(1, 1000, none=MODEL_DEFAULT), None, "sampling steps; None: the model's default (toy: 20)")
SEARCH_STEPS = Int(1, 1000)
GUIDANCE_SCALE = Float(0, 100, none=MODEL_DEFAULT)
GUIDANCE = Parameter(GUIDANCE_SCALE, None, "classifier-free guidance; None: the model's default (toy: 7.5)")
DEVICE = Parameter(Device(), "cpu")
DTYPE = Parameter(Choice(("auto", "float32", "float16", "bfloat16")), "auto",
                  "weights' precision: \"auto\" (float16 on CUDA, float32 on CPU), \"float32\", \"float16\", "
                  "\"bfloat16\"")
SEED = Parameter(Int(0, 2**32 - 1), 0)
EXECUTOR = {
    "executor": Parameter(Choice(("local", "ray")), "local",
                          '"local", or "ray": one search per task on Ray workers, one per GPU or CPU slot'),
    "address": Parameter(Text(400, empty=True), "",
                         'Ray cluster to join ("auto": the running one); "": start a local instance'),
}
SEARCHES = {**EXECUTOR, "per_task": Parameter(Int(0, 100_000, note=" (0: one label, seed or target per Ray task)"), 0,
                                              "Ray: labels, seeds or targets per task; 0 means one each")}
TAXONOMY = ["word overrides the object", "attribute leakage", "background takes over", "ambiguous word", "other"]


def store_dir(study: str, help: str = "search checkpoints: a rerun after a kill resumes") -> Parameter:
    """A study's results store, ``../results/<study>`` beside the notebooks."""
    return Parameter(Folder(), f"../results/{study}", help)


def helped(param: Parameter, help: str, **changes) -> Parameter:
    """A shared declaration with a study's own help (and default or small size)."""
    return replace(param, help=help, **changes)


# ---------------------------------------------------------------------------- shared rules
def n_labels(p: dict) -> int:
    from ..labels import get_label_set

    return min(p["n_labels"], len(get_label_set(p["label_set"])))


def labels_are_judged(p: dict, which: str = "judge") -> None:
    """Every label the study prompts for must be one the judge (or ``which``) can see."""
    from ..labels import pick
    from ..models.registry import judge_label_names

    known = judge_label_names(p["judge"])
    if known is None:
        return
    missing = [l for l in pick(p["label_set"], p["n_labels"]) if l not in set(known)]
    if missing:
        raise ParameterError(f"label_set {short(p['label_set'])} has labels that {which} {p['judge']!r} does not know: "
                             + ", ".join(map(short, missing[:5])) + (" ..." if len(missing) > 5 else ""))


def k_within_steps(p: dict) -> None:
    if p["steps"] is not None and p["k"] > p["steps"]:
        raise ParameterError(f"parameter 'k' ({p['k']}) must be at most steps ({p['steps']})")


def judged_and_verified(p: dict) -> None:
    labels_are_judged(p)
    verifier_is_held_out(p)


def verifier_is_held_out(p: dict) -> None:
    """The verifier shares no judge with the search's ensemble and sees every label."""
    verifier_shares_no_judge(p)
    labels_are_judged({**p, "judge": p["verifier"]}, "verifier")


def verifier_shares_no_judge(p: dict) -> None:
    from ..models.registry import judge_leaves

    shared = judge_leaves(p["verifier"]) & judge_leaves(p["judge"])
    if shared:
        raise ParameterError(f"parameter 'verifier' ({p['verifier']!r}) must hold no judge the search uses; "
                             f"it shares {', '.join(sorted(shared))} with judge {p['judge']!r}")


def concat(parts: list, tensors: tuple[str, ...], **fields):
    """The results of disjoint units (a study's tasks, :mod:`sagekit.spread`) as one, in
    this order: the ``table`` rows and the row-aligned ``tensors`` concatenated; every
    other field the first part's unless ``fields`` gives it."""
    from dataclasses import replace

    import pandas as pd
    import torch

    if len(parts) == 1 and not fields:
        return parts[0]
    return replace(parts[0], table=pd.concat([p.table for p in parts], ignore_index=True),
                   **{name: torch.cat([getattr(p, name) for p in parts]) for name in tensors}, **fields)
