"""Alignment Difficulty (AD) of a set of (image, caption) pairs (paper 002, implosion).

As in the paper's released code (wenxind/implosion, ``compute_AD.py``), on L2-normalised
CLIP embeddings:

    s_i    = clip((cos(img_i, txt_i) - 0.2) * 4, 0, 1)          rescaled similarity
    D_fea  = mean_i (1 - s_i)                                    feature misalignment
    D_stru = (2 / n^2) * sum_{i<j} |cos(img_i, img_j) - cos(txt_i, txt_j)|
    AD     = alpha * D_fea + (1 - alpha) * D_stru,  alpha = 0.8

Both D terms lie in [0, 1] (D_stru in [0, 2 (n-1)/n] in principle, well below 1 in practice).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


def alignment_difficulty(image_emb: torch.Tensor, text_emb: torch.Tensor, alpha: float = 0.8,
                         offset: float = 0.2, scale: float = 4.0) -> dict[str, float]:
    """image_emb, text_emb: ``(n, D)`` (normalised here). Returns AD, D_fea and D_stru.
    O(n^2 D) in two matrix products; no Python loop over pairs."""
    if image_emb.shape != text_emb.shape or image_emb.dim() != 2:
        raise ValueError(f"need two (n, D) embeddings of one shape, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = F.normalize(image_emb.double(), dim=-1)
    txt = F.normalize(text_emb.double(), dim=-1)
    n = img.shape[0]
    s = ((img * txt).sum(-1) - offset).mul(scale).clamp(0, 1)
    d_fea = (1 - s).mean()
    # |I - T| is symmetric with a zero diagonal, so the i<j sum is half of the full sum.
    d_stru = (img @ img.T - txt @ txt.T).abs().sum() / n**2
    ad = alpha * d_fea + (1 - alpha) * d_stru
    return {"ad": float(ad), "d_fea": float(d_fea), "d_stru": float(d_stru), "n": n}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class PairFolder:
    """A folder's (image, caption) pairs, and what in it did not pair up."""

    pairs: list[tuple[Path, str]]
    uncaptioned: list[str]  # images without a caption file
    captions_without_image: list[str]  # .txt files without an image


def read_pairs(folder) -> PairFolder:
    """(image, caption) pairs of a folder: every image file with a ``.txt`` of the same
    stem beside it holding its caption. Every paired image is checked readable here, so a
    broken file fails at once (ValueError naming it) and not after the CLIP model loaded."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of image/caption pairs")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = {p.stem: p for p in files if p.suffix.lower() in IMAGE_SUFFIXES}
    captions = {p.stem: p for p in files if p.suffix == ".txt"}
    pairs = []
    for stem, img in images.items():
        if stem not in captions:
            continue
        try:
            with Image.open(img) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"{img}: not a readable image ({e})") from None
        try:
            pairs.append((img, captions[stem].read_text(encoding="utf-8").strip()))
        except UnicodeDecodeError:
            raise ValueError(f"{captions[stem]}: a caption must be UTF-8 text") from None
    if len(pairs) < 2:
        raise ValueError(f"{folder} holds {len(pairs)} image/caption pairs; AD needs at least 2 "
                         "(name.png + name.txt with its caption)")
    return PairFolder(pairs, sorted(images[s].name for s in images.keys() - captions.keys()),
                      sorted(captions[s].name for s in captions.keys() - images.keys()))


def _load_rgb(path: Path, size: tuple[int, int]):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB").resize(size[::-1], Image.BICUBIC)
    except OSError as e:  # e.g. truncated: verify() reads headers only
        raise ValueError(f"{path}: not a readable image ({e})") from None


@torch.no_grad()
def folder_ad(folder, clip: str = "", device: str = "cpu",
              batch_size: int = 64, alpha: float = 0.8) -> dict:
    """AD of a folder of (image, caption) pairs under a CLIP model (``sagekit.models``
    name; an open_clip model whose weights are not on this machine fails at once with
    how to get them). Also counts the images without a caption and the captions without
    an image, which are left out. ``clip`` "": OpenAI's ViT-B/32, the paper's."""
    import numpy as np

    from ..models.registry import load_clip_embedder

    from .defaults import AD_CLIP

    found = read_pairs(folder)
    embedder = load_clip_embedder(clip or AD_CLIP, device)
    img, txt = [], []
    for i in range(0, len(found.pairs), batch_size):
        chunk = found.pairs[i:i + batch_size]
        ims = [np.asarray(_load_rgb(p, embedder.size)) for p, _ in chunk]
        x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float().div(255).to(embedder.device)
        img.append(embedder.embed_images(x).cpu())
        txt.append(embedder.embed_text([c for _, c in chunk]).cpu())
    return {**alignment_difficulty(torch.cat(img), torch.cat(txt), alpha=alpha),
            "uncaptioned": len(found.uncaptioned), "captions_without_image": len(found.captions_without_image),
            "left_out": found.uncaptioned[:5] + found.captions_without_image[:5]}
