"""The toy-world study: how good is the world the other studies run on? Its logic lives in
``sagekit.toy.evaluate`` and ``sagekit.toy.probe``; this module declares its parameters."""

from __future__ import annotations

from ..toy.evaluate import MAX_PER_LABEL
from . import common
from .parameters import Int, Parameter, Schema

STUDY = "toy-world"


def _images(p: dict) -> int:
    return (36 * p["per_label"] * 6 + 9 * p["n_judge"] + 120 * p["per_probe"]
            + 9 * p["probe_pairs"] * p["probe_seeds"])


SCHEMA = Schema({
    "per_label": Parameter(Int(1, MAX_PER_LABEL), 2, "generated images per label, model and guidance setting (36 labels)",
                           small=1),
    "n_judge": Parameter(Int(1, 100_000), 1000, "held-out scenes per judge for accuracy and calibration", small=200),
    "grid_labels": Parameter(Int(1, 36), 12, "labels shown in the image grids", small=4),
    "per_probe": Parameter(Int(1, 1000), 2, "images per prompt of the bias probes", small=1),
    "probe_pairs": Parameter(Int(1, 1000), 6, "label pairs of the word probe (per generator)", small=2),
    "probe_seeds": Parameter(Int(1, 1000), 4, "images per pair and conditioning of the word probe", small=2),
    "seed": common.helped(common.SEED, "seed of the first generated image"),
}, _images, streams={"images": lambda p: 36 * MAX_PER_LABEL, "bias-probe": lambda p: 200 * p["per_probe"],
                      "word-probe": lambda p: p["probe_pairs"] * p["probe_seeds"]})
