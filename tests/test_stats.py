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


def test_a_rate_carries_its_count_and_interval_and_reads_as_one():
    from sagekit.stats import rate, rate_text

    r = rate(5, 8)
    assert (r["k"], r["n"], r["rate"]) == (5, 8, 0.625) and r["lo"] < 0.625 < r["hi"]
    assert rate_text(r) == "5/8 = 0.62 [0.31, 0.86]"
    assert rate(0, 0)["n"] == 0 and np.isnan(rate(0, 0)["rate"])


def test_the_best_distorted_latent_is_the_one_that_distorts_most_held_out_prompts():
    import pandas as pd

    from sagekit.studies.distorted_latents import best_latent

    rows = pd.DataFrame({"latent": [0, 0, 0, 1, 1, 1], "seed": [7, 7, 7, 9, 9, 9],
                         "distorted": [True, False, False, True, True, False],
                         "realism": [0.5, 0.4, 0.3, 0.02, 0.04, 0.9]})
    best = best_latent(rows)
    assert (best["latent"], best["seed"]) == (1, 9) and best["distorted"]["k"] == 2 and best["distorted"]["n"] == 3
    assert best["realism"] == pytest.approx(0.04)
    assert best_latent(rows.iloc[:0]) is None
