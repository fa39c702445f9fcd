"""Is a judge's confidence a probability? Temperature scaling and reliability tables.

A judge is calibrated when, of the images it gives confidence 0.8, about 80% are right.
:func:`fit_temperature` finds the one number T that makes ``softmax(logits / T)`` most
likely on held-out images (Guo et al., 2017); :func:`reliability` bins confidences and
sets each bin's mean confidence beside its accuracy (the reliability diagram), with the
expected calibration error (ECE): the count-weighted mean gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, bounds: tuple[float, float] = (0.05, 20)) -> float:
    """T within ``bounds`` minimising the cross-entropy of ``logits / T`` ``(N, K)``
    against hard ``targets`` ``(N,)`` (a bounded search over log T)."""
    logits, targets = logits.detach().double(), targets.long()

    def nll(log_t: float) -> float:
        return F.cross_entropy(logits / np.exp(log_t), targets).item()

    return float(np.exp(minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded").x))


def reliability(probs: torch.Tensor, targets: torch.Tensor, bins: int = 10) -> tuple[pd.DataFrame, float]:
    """Reliability table of probabilities ``(N, K)`` against hard ``targets`` ``(N,)``:
    one row per non-empty confidence bin (``lo``, ``hi``, ``n``, ``confidence``,
    ``accuracy``), and the ECE in [0, 1]."""
    conf, pred = probs.detach().double().max(-1)
    right = (pred == targets).double()
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        n = int(inside.sum())
        if n:
            rows.append({"lo": lo, "hi": hi, "n": n, "confidence": conf[inside].mean().item(),
                         "accuracy": right[inside].mean().item()})
    table = pd.DataFrame(rows, columns=["lo", "hi", "n", "confidence", "accuracy"])
    ece = float((table.n * (table.confidence - table.accuracy).abs()).sum() / max(len(targets), 1))
    return table, ece


def fold_temperature(linear: torch.nn.Linear, temperature: float) -> None:
    """Divide a classifier's last layer by ``temperature`` in place, so that the model
    itself returns ``logits / T`` and no loader needs to know about calibration."""
    with torch.no_grad():
        linear.weight /= temperature
        if linear.bias is not None:
            linear.bias /= temperature
