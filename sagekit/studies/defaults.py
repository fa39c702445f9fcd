"""Defaults that depend on the model: its world's judges, labels and fine-tuning, and a
study's protocol.

A study parameter left at ``"auto"`` takes its value here, so that a real model is never
judged by a toy judge and a toy model never needs a download:

- the **world** of the study's model(s) (``registry.world_of``: a toy world name, or a
  diffusers folder / hub id, which is real) gives every judge-like parameter (``judge``,
  ``verifier``, ``clip``, ``realism``, ``empty``, ``lm``), the labels (``label_set``,
  ``targets``) and how to fine-tune (``trainable``): :data:`WORLD_DEFAULTS`, with a few
  per-study exceptions (:data:`STUDY_DEFAULTS`);
- a study with **protocols** (seed shifts: ``"toy"``, ``"paper"``) fills its sizes and
  grid from the protocol first; ``protocol="auto"`` is the world's (toy: ``"toy"``, real:
  ``"paper"``). A value given explicitly always wins over both.

:func:`resolve` is the one place that turns ``"auto"`` into a value: ``sagekit run`` calls
it before a kernel starts (so that what will load is checked), and each notebook calls
:func:`fill` right after papermill injects its parameters.
"""

from __future__ import annotations

import copy
from typing import Any

from .parameters import ParameterError

AUTO = "auto"
TOY, REAL = "toy", "real"

# The real world's judges, fetched once by the README's `hf download` lines. The ensemble is SAGE's
# design: two strong ImageNet classifiers of different families and one that sees only edges.
REAL_ENSEMBLE = ("ensemble:timm:convnext_base.fb_in22k_ft_in1k+timm:vit_base_patch16_224.augreg2_in21k_ft_in1k"
                 "+edge:timm:resnet50.a1_in1k")
REAL_VERIFIER = "timm:vit_huge_patch14_clip_224.laion2b_ft_in12k_in1k"  # held out: shares no judge with the ensemble
REAL_CLIP = "open_clip:ViT-H-14:laion2b_s32b_b79k"
AD_CLIP = "open_clip:ViT-B-32:openai"  # the CLIP of the implosion paper's compute_AD.py, its constants' calibration
REAL_VQA = "vqa:Salesforce/blip-vqa-base"
REAL_VQA_VERIFIER = "vqa:HuggingFaceTB/SmolVLM-256M-Instruct"

WORLD_DEFAULTS: dict[str, dict[str, Any]] = {
    TOY: {"judge": "toy-ensemble", "verifier": "toy-clip", "clip": "toy-clip", "realism": "toy-realism",
          "empty": "toy-count", "lm": "toy", "label_set": "toy", "targets": ["green square"], "trainable": "all"},
    REAL: {"judge": REAL_ENSEMBLE, "verifier": REAL_VERIFIER, "clip": REAL_CLIP,
           "realism": REAL_CLIP,  # CLIP-feature distance from the model's own ordinary images
           "empty": "",  # ImageNet has no "empty scene" label
           "lm": "openai-community/gpt2", "label_set": "imagenet100", "targets": ["goldfinch"],
           "trainable": "lora"},  # peft adapters: every family, and a GPU's memory
}
# Where a study needs another default than its world's.
STUDY_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # paper 001 judged with one ViT-H/14 classifier (SWAG weights, which exist only as pickles)
    ("seed-shifts", REAL): {"judge": REAL_VERIFIER},
    ("implosion", REAL): {"clip": AD_CLIP},
    # a prompt is judged fact by fact: by the toy judge of each fact, or by a VLM's yes/no answers
    # (BLIP-VQA, T2I-CompBench's judge; verified by a VLM of another family)
    ("prompt-audit", TOY): {"judge": "toy-facts", "verifier": "toy-clip", "prompts": "toy"},
    ("prompt-audit", REAL): {"judge": REAL_VQA, "verifier": REAL_VQA_VERIFIER, "prompts": "objects"},
}


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == AUTO


def _protocols(study: str) -> dict[str, dict[str, Any]]:
    """The study's named sets of values for "auto" (its declaration's ``protocols``)."""
    from . import STUDIES

    return STUDIES[study].schema.protocols if study in STUDIES else {}


def world_of_models(params: dict) -> str:
    """The world of a study's model (``model``) or models (``models``); ParameterError if
    the models come from both worlds."""
    from ..models.registry import world_of

    names = params["models"] if "models" in params else [params.get("model", "")]
    by_world: dict[str, list[str]] = {}
    for n in names:
        if isinstance(n, str):
            by_world.setdefault(world_of(n), []).append(n)
    if len(by_world) > 1:
        auto = ", ".join(k for k, v in params.items() if is_auto(v) and k in WORLD_DEFAULTS[TOY])
        raise ParameterError(f"the models mix the toy world ({', '.join(by_world[TOY])}) and real models "
                             f"({', '.join(by_world[REAL])}), so the 'auto' parameters ({auto}) have no default: "
                             "name each one (-p judge=... and so on)")
    return next(iter(by_world), TOY)


def world_dependent(study: str) -> set[str]:
    """The parameters whose "auto" this module resolves (``dtype="auto"``, for one, is the
    precision's own rule, not the world's)."""
    keys = {k for table in WORLD_DEFAULTS.values() for k in table}
    keys |= {k for (name, _), table in STUDY_DEFAULTS.items() if name == study for k in table}
    return keys | {k for table in _protocols(study).values() for k in table} | ({"protocol"} if _protocols(study) else set())


def resolve(study: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every world-dependent ``"auto"`` replaced: first from the study's
    protocol, then from the world of its model(s). Raises ParameterError when a value has
    no default."""
    keys = world_dependent(study)
    if not any(is_auto(v) for k, v in params.items() if k in keys):
        return dict(params)
    out = dict(params)
    # the models' world matters only to a world default (or to the protocol's choice)
    by_world = set(WORLD_DEFAULTS[TOY]) | {k for (name, _), t in STUDY_DEFAULTS.items() if name == study for k in t}
    needs_world = any(is_auto(v) for k, v in params.items() if k in by_world or k == "protocol")
    world = world_of_models({k: v for k, v in params.items() if k in keys or k in ("model", "models")}) \
        if needs_world else TOY
    protocols = _protocols(study)
    if protocols and "protocol" in out:
        if is_auto(out["protocol"]):
            out["protocol"] = "paper" if world == REAL else "toy"
        if out["protocol"] not in protocols:
            raise ParameterError(f"parameter 'protocol' must be one of 'auto', {', '.join(map(repr, protocols))}, "
                                 f"got {out['protocol']!r}")
        out.update({k: copy.deepcopy(v) for k, v in protocols[out["protocol"]].items() if is_auto(out.get(k))})
    table = {**WORLD_DEFAULTS[world], **STUDY_DEFAULTS.get((study, world), {})}
    out.update({k: copy.deepcopy(table[k]) for k, v in out.items() if is_auto(v) and k in table})
    left = [k for k, v in out.items() if is_auto(v) and k in keys]
    if left:
        raise ParameterError(f"parameter {left[0]!r} is 'auto' but study {study!r} has no default for it in the "
                             f"{world} world: give a value")
    return out


def fill(study: str, **params) -> tuple:
    """:func:`resolve` for a notebook: every parameter passed, in the order passed, with
    ``"auto"`` replaced (``model`` or ``models`` must be among them)."""
    out = resolve(study, params)
    return tuple(out[k] for k in params)
