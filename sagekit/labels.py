"""Label sets shipped as data: ImageNet-1k, the standard ImageNet-100 subset, the toy labels."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .markup import short
from .models.weights import local

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
    from .toy.scenes import LABELS

    return LABELS


def naming_words(name: str) -> set[str]:
    """Every word that names a label of set ``name``, lower case: the words of its labels,
    and for the toy world also their synonyms and plurals (but not the synonyms that mean
    something else too, "sand" and "plus": a word with two senses is a failure to find)."""
    words = {w.lower() for label in get_label_set(name) for w in label.replace("-", " ").replace("_", " ").split()}
    if name == "toy":
        from .toy.grammar import SYNONYMS, TWO_SENSES
        from .toy.scenes import PLURALS

        words |= {SYNONYMS[w] for w in words if w in SYNONYMS and SYNONYMS[w] not in TWO_SENSES}
        words |= {PLURALS[w] for w in words if w in PLURALS}
    return words


LABEL_SETS = {"imagenet": imagenet_labels, "imagenet100": imagenet100_labels, "toy": toy_labels}


def get_label_set(name: str) -> tuple[str, ...]:
    """A shipped set by name, or a text file of your own with one label per line (it must
    match the labels of the judge you use)."""
    if name in LABEL_SETS:
        return LABEL_SETS[name]()
    path = local(name, "file")  # None too for a name no file system takes (e.g. too long)
    if path is not None and path.suffix == ".txt":
        labels = tuple(dict.fromkeys(l.strip() for l in path.read_text().splitlines() if l.strip()))
        if labels:
            return labels
        raise ValueError(f"label file {path} holds no labels")
    raise KeyError(f"unknown label set {short(name)}; known: {', '.join(LABEL_SETS)}, or a .txt file with one label per line")


def spaced(items, n: int) -> list:
    """``n`` of ``items`` spread evenly over them, first and last included (all of them
    when ``n`` >= their number)."""
    import numpy as np

    items = list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, min(n, len(items))).astype(int)]


def pick(name: str, n: int) -> list[str]:
    """``n`` labels of set ``name`` spread evenly over it (all of them when ``n`` >= its size):
    the labels a study prompts for."""
    return spaced(get_label_set(name), n)
