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


def test_holm_adjusts_step_down_and_fisher_is_one_sided():
    from sagekit.stats import above, holm

    # sorted 0.005, 0.01, 0.03, 0.04: times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, then non-decreasing
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm([0.5, 0.9]), [1.0, 1.0]) and holm([0.02]).tolist() == [0.02]
    # 60/100 against 40/100: above one way, not the other
    assert above(60, 100, 40, 100, "greater") < 0.01 and above(60, 100, 40, 100, "less") > 0.99
    assert above(40, 100, 60, 100, "less") == pytest.approx(above(60, 100, 40, 100, "greater"))
