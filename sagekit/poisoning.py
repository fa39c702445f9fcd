"""Dirty-label poisoning of a folder of image + caption pairs (paper 002's threat model).

For each concept pair A:B, images whose caption mentions B are captioned as A instead
(every mention of B replaced by A): captions about A paired with images of B. The poison
budget P is split evenly over the pairs (``implosion.budget_split``, the toy study's
rule); the poison images are drawn (seeded) from the captions that mention B and not A,
and replace their clean pairs, so a poisoned set has as many pairs as the folder. The
clean control keeps the same images with their true captions.

``sagekit poison FOLDER --concepts A:B,C:D --budget P --out DIR`` writes such a set;
the implosion study builds one per k from a folder (``training_set``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .markup import short
from .store import new_folder, occupied
from .studies.alignment import read_pairs


def budget_split(budget: int, k: int) -> list[int]:
    """Poisoned pairs per concept: ``budget`` split as evenly as integers allow (the first
    ``budget % k`` concepts get one more); sums to ``budget`` for every k >= 1."""
    if k < 1:
        return []
    if budget < k:
        raise ValueError(f"a budget of {budget} poisoned pairs cannot cover {k} concepts")
    return [budget // k + (1 if i < budget % k else 0) for i in range(k)]


@dataclass
class PoisonedSet:
    """images uint8 ``(N, 3, H, W)``; captions; what each image shows and what its caption
    says (label indices); which pairs are poison."""

    images: torch.Tensor
    captions: list[str]
    image_labels: torch.Tensor
    caption_labels: torch.Tensor
    poisoned: torch.Tensor


def counts_of(budget: int | list[int], k: int) -> list[int]:
    """Poisoned pairs per concept: a list as it is, a number split evenly over k."""
    return list(budget) if isinstance(budget, (list, tuple)) else budget_split(budget, k)


class PoisonError(ValueError):
    """Bad input for poisoning: the folder, the concepts or the budget."""


def parse_concepts(text: str) -> list[tuple[str, str]]:
    """``"dog:cat, car:bus"`` -> ``[("dog", "cat"), ("car", "bus")]`` (A is poisoned with
    images of B). Raises :class:`PoisonError` for anything else."""
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        a, sep, b = part.partition(":")
        a, b = a.strip(), b.strip()
        if not sep or not a or not b or ":" in b:
            raise PoisonError(f"--concepts: {part!r} is not 'A:B' (captions about A paired with images of B)")
        if a.lower() == b.lower():
            raise PoisonError(f"--concepts: {part!r} poisons a concept with itself")
        pairs.append((a, b))
    sources = [a.lower() for a, _ in pairs]
    if len(set(sources)) < len(sources):
        raise PoisonError("--concepts: a concept is poisoned twice")
    if set(sources) & {b.lower() for _, b in pairs}:
        raise PoisonError("--concepts: a poisoned concept cannot also be another pair's target")
    return pairs


def _pattern(concept: str) -> re.Pattern:
    return re.compile(rf"(?<![\w-]){re.escape(concept)}(?![\w-])", re.IGNORECASE)


def mentions(caption: str, concept: str) -> bool:
    """Whether ``caption`` names ``concept`` as a whole word or phrase (any case)."""
    return _pattern(concept).search(caption) is not None


def recaption(caption: str, source: str, target: str) -> str:
    """The dirty label: every mention of ``target`` (what the image shows) becomes ``source``."""
    return _pattern(target).sub(source, caption)


@dataclass
class CaptionedFolder:
    """A folder's image paths and their captions, every file paired."""

    images: list[Path]
    captions: list[str]


def read_folder(folder) -> CaptionedFolder:
    """The (image, caption) pairs of ``folder`` (``name.png`` + ``name.txt``), strictly:
    an image without a caption or a caption without an image is refused by name, as is an
    unreadable image (:class:`PoisonError`)."""
    try:
        found = read_pairs(folder)
    except FileNotFoundError as e:
        raise PoisonError(str(e)) from None
    except ValueError as e:
        raise PoisonError(str(e)) from None
    if found.captions_without_image:
        raise PoisonError(f"{folder}: caption file(s) without an image: {', '.join(found.captions_without_image[:5])}")
    if found.uncaptioned:
        raise PoisonError(f"{folder}: image(s) without a caption (.txt of the same name): "
                          f"{', '.join(found.uncaptioned[:5])}")
    return CaptionedFolder([p for p, _ in found.pairs], [c for _, c in found.pairs])


def choose_poison(captions: list[str], pairs: list[tuple[str, str]], budget: int | list[int],
                  seed: int = 0) -> list[list[int]]:
    """Per pair A:B, the indices of the captions whose images become its poison: its share
    of ``budget`` (poisoned pairs in all, split evenly; or a list with one count per
    pair), drawn (seeded) from the captions that mention B and not A, never one image for
    two pairs."""
    if isinstance(budget, int) and budget < 1:
        raise PoisonError(f"--budget must be at least 1 poisoned pair, got {budget}")
    try:
        shares = counts_of(budget, len(pairs))
    except ValueError as e:
        raise PoisonError(str(e)) from None
    rng = np.random.default_rng(seed)
    used: set[int] = set()
    chosen = []
    for (a, b), n in zip(pairs, shares):
        if not any(mentions(c, a) for c in captions):
            raise PoisonError(f"--concepts: no caption mentions {a!r}")
        pool = [i for i, c in enumerate(captions) if mentions(c, b) and not mentions(c, a) and i not in used]
        if not pool:
            raise PoisonError(f"--concepts: no caption mentions {b!r} (without {a!r}): no image to poison {a!r} with")
        if len(pool) < n:
            raise PoisonError(f"{a}:{b} needs {n} images of {b!r} (poisoned pairs {budget} over {len(pairs)} pairs); "
                              f"the folder has {len(pool)}")
        pick = sorted(int(i) for i in rng.choice(pool, n, replace=False))
        used.update(pick)
        chosen.append(pick)
    return chosen


def write_poisoned(folder, concepts: str, budget: int, out, seed: int = 0) -> dict:
    """``sagekit poison``: copy ``folder`` to the new folder ``out`` with ``budget`` of its
    pairs dirty-labelled (see the module docstring) and a ``poison.json`` manifest (pairs,
    budget, per pair the files and their true captions). Nothing is written when the
    input is refused (:class:`PoisonError`)."""
    pairs = parse_concepts(concepts)
    data = read_folder(folder)
    chosen = choose_poison(data.captions, pairs, budget, seed)
    out = Path(out).expanduser()
    if occupied(out):
        raise PoisonError(f"--out {short(str(out))} exists and is not an empty folder")
    dirty = {i: recaption(data.captions[i], a, b) for (a, b), idx in zip(pairs, chosen) for i in idx}
    with new_folder(out) as tmp:
        for i, (image, caption) in enumerate(zip(data.images, data.captions)):
            shutil.copyfile(image, tmp / image.name)
            (tmp / f"{image.stem}.txt").write_text(dirty.get(i, caption) + "\n", encoding="utf-8")
        manifest = {"source": str(Path(folder).resolve()), "budget": budget, "seed": seed, "pairs": len(data.images),
                    "concepts": [{"source": a, "target": b, "poisoned": [
                        {"image": data.images[i].name, "caption": dirty[i], "true_caption": data.captions[i]}
                        for i in idx]} for (a, b), idx in zip(pairs, chosen)]}
        (tmp / "poison.json").write_text(json.dumps(manifest, indent=1))
    return {"pairs": len(data.images), "poisoned": sum(len(idx) for idx in chosen), "folder": str(out)}


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    """uint8 images ``(N, 3, size, size)``: each centre-cropped to a square and resized."""
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
            out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return torch.stack(out)


def training_set(folder, pairs: list[tuple[str, str]], n_train: int, budget: int | list[int], size: int,
                 seed: int = 0, control: bool = False) -> PoisonedSet:
    """The implosion study's set for the first k pairs from a folder: ``n_train`` pairs,
    ``budget`` of them (in all, or a count per pair) the pairs' images of B (captioned as
    A, or truly in the ``control``), the rest clean pairs drawn (seeded) from the others.
    Labels are not known for a folder: ``image_labels`` / ``caption_labels`` are -1."""
    data = read_folder(folder)
    chosen = choose_poison(data.captions, pairs, budget, seed) if pairs else []
    n_poison = sum(map(len, chosen))
    poison = [i for idx in chosen for i in idx]
    taken = set(poison)
    rest = [i for i in range(len(data.captions)) if i not in taken]
    if n_train - n_poison > len(rest) or n_train < n_poison:
        raise PoisonError(f"n_train={n_train} needs {n_train - n_poison} clean pairs besides the {n_poison} poisoned; "
                          f"{folder} has {len(rest)}")
    clean = sorted(int(i) for i in np.random.default_rng(seed + 1).choice(rest, n_train - n_poison, replace=False))
    captions = [data.captions[i] for i in clean]
    for (a, b), idx in zip(pairs, chosen):
        captions += [data.captions[i] if control else recaption(data.captions[i], a, b) for i in idx]
    images = load_images([data.images[i] for i in clean + poison], size)
    poisoned = torch.zeros(n_train, dtype=torch.bool)
    if not control:
        poisoned[n_train - n_poison:] = True
    unknown = torch.full((n_train,), -1)
    return PoisonedSet(images, captions, unknown, unknown.clone(), poisoned)
