"""The nine claims of paper 001 are decided by intervals: checked on frames whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from sagekit.studies.seed_shift_claims import combine, early_gap, evaluate_claims

KINDS = {"sd": {"latent": True, "learned": False}, "glide-latent": {"latent": True, "learned": True}}


def cells(model, guidance, shift, level, right, n=100, cx=0.5):
    """n images, the first ``right`` of them judged right, object centre at ``cx``."""
    return [{"model": model, "guidance": guidance, "shift": shift, "level_value": float(level),
             "label": f"label{i % 4}", "seed": i // 4, "top1": i < right, "cx": cx} for i in range(n)]


def frame(*groups):
    return pd.DataFrame([row for g in groups for row in g])


def verdict(claims, key):
    return {c["id"]: c for c in claims}[key]["verdict"]


def test_combine_needs_every_case():
    assert combine(["supported", "supported"]) == "supported"
    assert combine(["contradicted"]) == "contradicted"
    assert combine(["supported", "contradicted"]) == "inconclusive"
    assert combine([]) == "inconclusive"


def test_mean_shift_claims_follow_the_intervals():
    df = frame(cells("sd", 5.0, "none", 0, 90), cells("sd", 5.0, "UMS", -0.2, 10), cells("sd", 5.0, "UMS", 0.2, 20),
               cells("sd", 5.0, "URMS", -0.2, 50), cells("sd", 5.0, "URMS", 0.2, 50))
    claims = evaluate_claims(df, {"sd": KINDS["sd"]})
    assert verdict(claims, "a") == "supported"
    # drop(UMS) = 0.75, drop(URMS) = 0.40: ratio 1.9, an interval above 1 that holds 2
    b = {c["id"]: c for c in claims}["b"]
    assert verdict(claims, "b") == "supported" and b["numbers"]["sd"]["ratio"][0] == pytest.approx(0.75 / 0.40, abs=1e-3)
    # no SDS, no learned model, no unguided run, no step distances: those cannot be decided
    assert {verdict(claims, k) for k in "cefi"} == {"inconclusive"}

    same = frame(cells("sd", 5.0, "none", 0, 90), cells("sd", 5.0, "UMS", -0.2, 88), cells("sd", 5.0, "UMS", 0.2, 89))
    assert verdict(evaluate_claims(same, {"sd": KINDS["sd"]}), "a") == "inconclusive"
    better = frame(cells("sd", 5.0, "none", 0, 40), cells("sd", 5.0, "UMS", -0.2, 90), cells("sd", 5.0, "UMS", 0.2, 95))
    assert verdict(evaluate_claims(better, {"sd": KINDS["sd"]}), "a") == "contradicted"


def test_ums_hurting_ten_times_faster_is_not_about_twice():
    df = frame(cells("sd", 5.0, "none", 0, 95, n=400), cells("sd", 5.0, "UMS", 0.1, 15, n=400),
               cells("sd", 5.0, "URMS", 0.1, 87, n=400))
    assert verdict(evaluate_claims(df, {"sd": KINDS["sd"]}), "b") == "contradicted"


def test_std_shift_and_small_positive_shift():
    df = frame(cells("sd", 5.0, "none", 0, 60), cells("sd", 5.0, "SDS", 0.3, 95), cells("sd", 5.0, "SDS", -0.3, 40),
               cells("sd", 5.0, "SDS", 0.1, 85))
    claims = evaluate_claims(df, {"sd": KINDS["sd"]})
    assert verdict(claims, "c") == "contradicted"  # +0.3 is better than -0.3 here
    assert verdict(claims, "d") == "supported"  # +0.1 lies above the unshifted interval
    worse = frame(cells("sd", 5.0, "none", 0, 90), cells("sd", 5.0, "SDS", 0.3, 20), cells("sd", 5.0, "SDS", -0.3, 60),
                  cells("sd", 5.0, "SDS", 0.1, 50))
    claims = evaluate_claims(worse, {"sd": KINDS["sd"]})
    assert verdict(claims, "c") == "supported" and verdict(claims, "d") == "contradicted"


def test_guidance_and_learned_variance_compare_retention():
    df = frame(cells("sd", 5.0, "none", 0, 90), cells("sd", 5.0, "UMS", 0.2, 80),
               cells("sd", 1.0, "none", 0, 60), cells("sd", 1.0, "UMS", 0.2, 10),
               cells("glide-latent", 5.0, "none", 0, 80), cells("glide-latent", 5.0, "UMS", 0.2, 10))
    claims = evaluate_claims(df, KINDS)
    assert verdict(claims, "e") == "supported"  # guided keeps 0.89 of its accuracy, unguided 0.17
    assert verdict(claims, "f") == "contradicted"  # the learned model keeps 0.13, the fixed one 0.89


def test_drift_needs_a_signed_move_and_classes_need_disjoint_intervals():
    base = cells("sd", 5.0, "none", 0, 50, n=200, cx=0.5)
    right = cells("sd", 5.0, "URMS", 0.2, 50, n=200, cx=0.6)
    left = cells("sd", 5.0, "URMS", -0.2, 50, n=200, cx=0.4)
    for i, row in enumerate(right + left):
        row["cx"] += 0.01 * ((i % 7) - 3)  # spread, so the interval is not a point
    claims = evaluate_claims(frame(base, right, left), {"sd": KINDS["sd"]})
    assert verdict(claims, "h") == "supported"
    # every label is right equally often (the first 50 images cycle through the labels)
    assert verdict(claims, "g") == "inconclusive"
    by_label = [dict(r, top1=r["label"] == "label0") for r in right]
    assert verdict(evaluate_claims(frame(base, by_label, left), {"sd": KINDS["sd"]}), "g") == "supported"
    swapped = evaluate_claims(frame(base, [dict(r, cx=0.4) for r in right], [dict(r, cx=0.6) for r in left]),
                              {"sd": KINDS["sd"]})
    assert verdict(swapped, "h") == "contradicted"


def test_early_gap_of_a_learned_sampler():
    rng = np.random.default_rng(0)
    even = 1 + 0.05 * rng.standard_normal((8, 20))
    jumpy = even.copy()
    jumpy[:, :2] *= 4
    assert early_gap(even).mean() == pytest.approx(1, abs=0.05) and early_gap(jumpy).mean() > 2
    df = frame(cells("sd", 5.0, "none", 0, 90), cells("glide-latent", 5.0, "none", 0, 90))
    claims = evaluate_claims(df, KINDS, {"glide-latent": jumpy, "sd": even})
    assert verdict(claims, "i") == "supported"
    assert verdict(evaluate_claims(df, KINDS, {"glide-latent": even, "sd": jumpy}), "i") == "contradicted"
