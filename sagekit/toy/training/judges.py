"""Train the toy judges: timm classifiers, one per attribute of a scene, and a realism judge.

The object judges (``resnet``, ``mobilenet``, ``edge``) name the "{colour} {shape}" of the
objects: soft targets, half each for two different objects and uniform for an empty scene,
so that their confidence in a label is the share of the picture it holds. The attribute
judges (``count``, ``background``, ``position``, ``relation``) learn only from scenes where
their attribute applies. The ``realism`` judge tells clean renders from corrupted ones.
Every judge is calibrated afterwards by a temperature folded into its last layer.
"""

from __future__ import annotations

from typing import Callable

import timm
import torch
import torch.nn.functional as F

from ...calibration import fit_temperature, fold_temperature, reliability
from ...models.judges import EdgeJudge, Judge, TimmJudge
from ..architectures import JUDGE_ARCHS, JUDGE_INPUT
from ..attributes import JUDGE_LABELS, corrupt
from .common import augment, progress, seeded_batches, warmup_cosine

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def new_judge(kind: str) -> Judge:
    """A randomly initialised toy judge of one of :data:`JUDGE_ARCHS`' kinds."""
    labels = JUDGE_LABELS[kind]
    model = timm.create_model(
        JUDGE_ARCHS[kind], pretrained=False, num_classes=len(labels),
        pretrained_cfg_overlay=dict(input_size=(3, JUDGE_INPUT, JUDGE_INPUT), mean=MEAN, std=STD,
                                    label_names=list(labels)),
    )
    inner = TimmJudge(f"toy-{kind}", model, labels)
    return EdgeJudge("toy-edge", inner) if kind == "edge" else inner


def timm_model(judge: Judge):
    """The timm module inside a toy judge (edge judges wrap one)."""
    return judge.inner.model if isinstance(judge, EdgeJudge) else judge.model


def _fit(judge: Judge, batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], steps: int, lr: float,
         desc: str) -> Judge:
    """AdamW with warm-up and cosine decay; ``batch()`` gives float images in [0, 1] and
    targets (hard ``(B,)`` or soft ``(B, K)``)."""
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=0.05)
    sched = warmup_cosine(opt, steps, warmup=min(30, max(1, steps // 10)))
    judge.train()
    for _ in progress(steps, desc):
        images, targets = batch()
        loss = F.cross_entropy(judge.logits(images), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return judge.eval()


def train_judge(kind: str, images: torch.Tensor, targets: torch.Tensor, seed: int, steps: int = 400,
                batch_size: int = 128, lr: float = 2e-3) -> Judge:
    """images: uint8 ``(N, 3, H, W)``; targets: hard ``(N,)`` (-1 where the attribute does
    not apply: those images are left out) or soft ``(N, K)``."""
    torch.manual_seed(seed)
    judge = new_judge(kind)
    if targets.dim() == 1:
        keep = targets >= 0
        images, targets = images[keep], targets[keep]
    g = torch.Generator().manual_seed(seed + 1)
    batches = seeded_batches(len(images), batch_size, steps, seed)

    def batch():
        idx = next(batches)
        return augment(images[idx].float() / 255, g), targets[idx]

    return _fit(judge, batch, steps, lr, f"judge {kind}")


def train_realism_judge(images: torch.Tensor, seed: int, steps: int = 400, batch_size: int = 128,
                        lr: float = 2e-3) -> Judge:
    """Clean renders (label 0, "real", with the usual mild augmentation) against
    :func:`corrupt`-ed ones (label 1), half and half in every batch."""
    torch.manual_seed(seed)
    judge = new_judge("realism")
    g = torch.Generator().manual_seed(seed + 1)
    batches = seeded_batches(len(images), batch_size, steps, seed)
    half = batch_size // 2

    def batch():
        x = augment(images[next(batches)].float() / 255, g)
        x = torch.cat([x[:half], corrupt(x[half:], g)])
        return x, (torch.arange(len(x)) >= half).long()

    return _fit(judge, batch, steps, lr, "judge realism")


@torch.no_grad()
def logits_of(judge: Judge, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits ``(N, K)`` of float images ``(N, 3, H, W)`` in [0, 1]."""
    judge.eval()
    return torch.cat([judge.logits(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def calibrate(judge: Judge, images: torch.Tensor, targets: torch.Tensor,
              bounds: tuple[float, float] = (0.05, 20)) -> float:
    """Fit the temperature (within ``bounds``) on held-out float images and hard targets,
    fold it into the judge's last layer; returns T."""
    t = fit_temperature(logits_of(judge, images), targets, bounds)
    fold_temperature(timm_model(judge).get_classifier(), t)
    return t


def scores(judge: Judge, images: torch.Tensor, targets: torch.Tensor) -> dict:
    """Held-out accuracy, ECE and count of a judge on float images and hard targets."""
    probs = logits_of(judge, images).float().softmax(-1)
    _, ece = reliability(probs, targets)
    return {"acc": round((probs.argmax(-1) == targets).float().mean().item(), 4), "ece": round(ece, 4),
            "n": len(targets)}


def accuracy(judge: Judge, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy; images float ``(N, 3, H, W)`` in [0, 1]."""
    return (logits_of(judge, images, batch_size).argmax(-1) == labels).float().mean().item()
