"""Train the toy judges: timm classifiers over the 36 "{colour} {shape}" labels."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F

from ...models.judges import EdgeJudge, Judge, TimmJudge
from ..architectures import JUDGE_ARCHS, JUDGE_INPUT
from ..shapes import LABELS, ShapesBatch
from .common import augment, progress, seeded_batches, warmup_cosine

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def new_judge(kind: str) -> Judge:
    """A randomly initialised toy judge of kind ``"resnet"``, ``"mobilenet"`` or ``"edge"``."""
    model = timm.create_model(
        JUDGE_ARCHS[kind], pretrained=False, num_classes=len(LABELS),
        pretrained_cfg_overlay=dict(input_size=(3, JUDGE_INPUT, JUDGE_INPUT), mean=MEAN, std=STD,
                                    label_names=list(LABELS)),
    )
    inner = TimmJudge(f"toy-{kind}", model, LABELS)
    return EdgeJudge("toy-edge", inner) if kind == "edge" else inner


def timm_model(judge: Judge):
    """The timm module inside a toy judge (edge judges wrap one)."""
    return judge.inner.model if isinstance(judge, EdgeJudge) else judge.model


def train_judge(kind: str, data: ShapesBatch, seed: int, steps: int = 400, batch_size: int = 128,
                lr: float = 2e-3) -> Judge:
    torch.manual_seed(seed)
    judge = new_judge(kind)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=0.05)
    sched = warmup_cosine(opt, steps, warmup=30)
    g = torch.Generator().manual_seed(seed + 1)
    judge.train()
    batches = seeded_batches(len(data.labels), batch_size, steps, seed)
    for _ in progress(steps, f"judge {kind}"):
        idx = next(batches)
        images = augment(data.images[idx].float() / 255, g)
        loss = F.cross_entropy(judge.logits(images), data.labels[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return judge.eval()


@torch.no_grad()
def accuracy(judge: Judge, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy; images float ``(N, 3, H, W)`` in [0, 1]."""
    judge.eval()
    hits = 0
    for i in range(0, len(labels), batch_size):
        hits += (judge(images[i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum().item()
    return hits / len(labels)
