"""A small folder of image + caption pairs (name.png + name.txt), drawn procedurally."""

from pathlib import Path

import numpy as np
from PIL import Image

# concept -> colour of its blob: what a "photo of a {concept}" shows in this folder
CONCEPTS = {"dog": (200, 120, 40), "cat": (90, 90, 90), "car": (200, 30, 30), "bus": (230, 200, 20),
            "tree": (30, 150, 40), "boat": (40, 80, 200)}


def captioned_folder(folder: Path, per_concept: int = 6, size: int = 24, seed: int = 0) -> Path:
    """``per_concept`` pairs per concept of ``CONCEPTS``: a coloured disc on a grey
    ground, captioned "a photo of a {concept} ..." with varied wording."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    n = 0
    for concept, colour in CONCEPTS.items():
        for i in range(per_concept):
            img = np.full((size, size, 3), 127, np.uint8)
            cx, cy, r = rng.integers(6, size - 6, 2).tolist() + [int(rng.integers(3, 6))]
            img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour
            Image.fromarray(img).save(folder / f"{n:04d}.png")
            where = ("on the left", "in the middle", "on the right")[i % 3]
            (folder / f"{n:04d}.txt").write_text(f"a photo of a {concept} {where}\n")
            n += 1
    return folder
