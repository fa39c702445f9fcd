"""Temperature scaling finds the temperature that made the data, and the reliability table
reads a calibrated and an overconfident judge apart."""

import pytest
import torch

from sagekit.calibration import fit_temperature, fold_temperature, reliability


def _sample(n: int, k: int, temperature: float, seed: int = 0):
    """Logits whose softmax at ``temperature`` is the true class distribution."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 3
    targets = torch.multinomial((logits / temperature).softmax(-1), 1, generator=g).squeeze(1)
    return logits, targets


def test_the_fitted_temperature_is_the_one_that_made_the_data():
    logits, targets = _sample(20000, 5, 2.0)
    assert abs(fit_temperature(logits, targets) - 2.0) < 0.1
    assert fit_temperature(logits, targets, bounds=(0.5, 1.5)) == pytest.approx(1.5, rel=1e-3)


def test_reliability_tells_calibrated_from_overconfident():
    logits, targets = _sample(20000, 5, 2.0)
    _, ece_raw = reliability(logits.softmax(-1), targets)
    table, ece = reliability((logits / 2.0).softmax(-1), targets)
    assert ece < 0.02 < ece_raw
    assert table.n.sum() == 20000 and (table.confidence.between(table.lo, table.hi)).all()


def test_folding_the_temperature_divides_the_logits():
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    before = layer(x)
    fold_temperature(layer, 2.5)
    assert torch.allclose(layer(x), before / 2.5, atol=1e-6)
