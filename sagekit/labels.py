"""Label sets shipped as data: ImageNet-1k, the standard ImageNet-100 subset, the toy labels."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _lines(name: str) -> list[str]:
    return [l for l in (DATA / name).read_text().splitlines() if l]


@lru_cache
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 WordNet ids in the standard class-index order."""
    return tuple(_lines("imagenet_synsets.txt"))


@lru_cache
def imagenet_labels() -> tuple[str, ...]:
    """1000 readable, unique class names in class-index order ("tench", "goldfish", ...)."""
    return tuple(_lines("imagenet_classes.txt"))


@lru_cache
def imagenet100_labels() -> tuple[str, ...]:
    """The ImageNet-100 subset of Tian et al. (CMC, 2019), as class names."""
    index = {s: i for i, s in enumerate(imagenet_synsets())}
    return tuple(imagenet_labels()[index[s]] for s in _lines("imagenet100_synsets.txt"))


def toy_labels() -> tuple[str, ...]:
    from .toy.shapes import LABELS

    return LABELS


LABEL_SETS = {"imagenet": imagenet_labels, "imagenet100": imagenet100_labels, "toy": toy_labels}


def get_label_set(name: str) -> tuple[str, ...]:
    if name not in LABEL_SETS:
        raise KeyError(f"unknown label set {name!r}; known: {', '.join(LABEL_SETS)}")
    return LABEL_SETS[name]()
