"""Report intervals: Wilson for rates, seeded bootstrap for means (both scipy)."""

import math

import numpy as np
import pytest

from sagekit.stats import mean_ci, wilson


def test_wilson_matches_the_closed_form():
    z = 1.959963984540054
    for k, n in [(0, 10), (5, 10), (9, 12), (300, 400)]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        rate, lo, hi = wilson(k, n)
        assert rate == p and lo == pytest.approx(centre - half, abs=1e-9) and hi == pytest.approx(centre + half, abs=1e-9)
    assert wilson(0, 10)[1] == 0.0 and all(math.isnan(v) for v in wilson(0, 0))


def test_wilson_narrows_with_more_images():
    _, lo12, hi12 = wilson(11, 12)
    _, lo400, hi400 = wilson(367, 400)
    assert hi400 - lo400 < 0.06 < hi12 - lo12  # hundreds of images give a half-width under 0.03


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(0).normal(30, 5, size=200)
    mean, lo, hi = mean_ci(x)
    assert lo < mean < hi and hi - lo < 2.5 and mean_ci(x) == (mean, lo, hi)
    assert mean_ci([4.0]) == (4.0, 4.0, 4.0) and mean_ci([2.0, 2.0]) == (2.0, 2.0, 2.0)
