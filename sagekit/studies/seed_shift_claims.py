"""The nine claims of paper 001, tested on a seed-shift run.

Each claim gets a verdict decided by 95% intervals, never by point estimates alone:
``supported`` when the intervals say so, ``contradicted`` when they say the opposite, and
``inconclusive`` otherwise (intervals overlap, or the run lacks what the claim needs). A
claim tested on several cases (models, shifts) is supported only if every case is, and
contradicted only if every case is; mixed cases are inconclusive.

Whom a claim is about follows the paper: (a)-(e), (g), (h) are about latent models with a
fixed variance (Stable Diffusion), tested at their guided setting ((e) compares guided and
unguided); (f) and (i) compare a learned-variance model with a fixed-variance one, both in
latent space when the run has both (``toy-latent-learned`` vs ``toy``), so that the
variance is the only difference.

Definitions (``acc`` is top-1, Wilson intervals; "retention" is the accuracy under the
mean shifts UMS and URMS divided by the unshifted accuracy, bootstrap intervals):

(a) UMS and URMS at their most negative and most positive level: both below the unshifted.
(b) drop(UMS) / drop(URMS) over their common levels: interval above 1 and containing 2
    (contradicted if it excludes 2).
(c) SDS at +a below SDS at -a, for the largest a run with both signs.
(d) some UMS, URMS or SDS level in (0, 0.1] above the unshifted (contradicted if all below).
(e) retention with guidance minus retention without: interval above 0.
(f) retention of the learned-variance model minus the fixed one's: interval above 0.
(g) the least and the most robust label (all shifted images) have disjoint intervals,
    Bonferroni-corrected for the number of labels (never contradicted: equality cannot be shown).
(h) signed horizontal drift of the object's centre under URMS: right (> 0) at the most
    positive level and left (< 0) at the most negative one.
(i) the learned-variance model's early gap (mean step-to-step distance over the first 10%
    of steps divided by the mean over all steps) minus the fixed model's: interval above 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..stats import mean_ci, relation, statistic_ci, wilson

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
MEAN_SHIFTS = ("UMS", "URMS")

CLAIMS = {
    "a": "accuracy falls for both signs of a mean shift",
    "b": "UMS hurts about twice as fast as URMS",
    "c": "a positive SDS hurts faster than a negative one",
    "d": "a small positive shift can raise accuracy",
    "e": "guidance is more robust than no guidance",
    "f": "learned variance is more robust than fixed variance",
    "g": "robustness differs by class",
    "h": "positive URMS moves the object right, negative left",
    "i": "the learned-variance model has a large early step-to-step gap",
}


def combine(verdicts: Sequence[str]) -> str:
    """All cases supported -> supported; all contradicted -> contradicted; else inconclusive."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if verdicts and all(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    return INCONCLUSIVE


def _fmt(ci) -> str:
    return f"{ci[0]:.2f} [{ci[1]:.2f}, {ci[2]:.2f}]"


def _rate(hits) -> tuple[float, float, float]:
    hits = np.asarray(hits, dtype=bool)
    return wilson(int(hits.sum()), len(hits))


class _Run:
    """Lookup of a run's per-image frame by model, guidance, shift and level."""

    def __init__(self, df: pd.DataFrame, kinds: dict[str, dict]):
        self.df, self.kinds = df, kinds

    def guided(self, model: str) -> float | None:
        gs = sorted(self.df[self.df["model"] == model]["guidance"].unique())
        return gs[-1] if gs and gs[-1] > 1 else None

    def unguided(self, model: str) -> float | None:
        gs = sorted(self.df[self.df["model"] == model]["guidance"].unique())
        return gs[0] if gs and gs[0] <= 1 else None

    def rows(self, model, guidance, shift=None, level=None) -> pd.DataFrame:
        d = self.df[(self.df["model"] == model) & (self.df["guidance"] == guidance)]
        if shift is not None:
            d = d[d["shift"] == shift]
        if level is not None:
            d = d[np.isclose(d["level_value"], level)]
        return d

    def hits(self, *args) -> np.ndarray:
        return self.rows(*args)["top1"].to_numpy(dtype=float)

    def levels(self, model, guidance, shift) -> list[float]:
        return sorted(self.rows(model, guidance, shift)["level_value"].unique())

    def fixed_latent(self) -> list[str]:
        return [m for m, k in self.kinds.items() if k["latent"] and not k["learned"] and self.guided(m) is not None]

    def learned_vs_fixed(self) -> tuple[str, str] | None:
        """(learned, fixed) with the same space, latent preferred; None if the run lacks one."""
        for latent in (True, False):
            learned = [m for m, k in self.kinds.items() if k["learned"] and k["latent"] == latent]
            fixed = [m for m, k in self.kinds.items() if not k["learned"] and k["latent"] == latent]
            if learned and fixed:
                return learned[0], fixed[0]
        return None

    def retention(self, model, guidance) -> tuple[np.ndarray, np.ndarray]:
        base = self.hits(model, guidance, "none")
        shifted = self.rows(model, guidance)
        return base, shifted[shifted["shift"].isin(MEAN_SHIFTS)]["top1"].to_numpy(dtype=float)


def _retention_gap(a: tuple, b: tuple, seed: int) -> tuple[float, float, float]:
    if any(len(x) == 0 for x in (*a, *b)):
        return (float("nan"),) * 3
    def stat(base_a, shift_a, base_b, shift_b):
        return shift_a.mean() / max(base_a.mean(), 1e-9) - shift_b.mean() / max(base_b.mean(), 1e-9)
    return statistic_ci((*a, *b), stat, seed=seed)


def _plain(x):
    """JSON-ready copy: tuples to lists, numpy scalars to floats, rounded to 4 places."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if np.isnan(x) else round(float(x), 4)
    return x


def _claim(key: str, verdict: str, evidence: list[str], numbers: dict) -> dict:
    return {"id": key, "claim": CLAIMS[key], "verdict": verdict,
            "evidence": "; ".join(evidence) or "not tested: the run has no case for it", "numbers": _plain(numbers)}


def claim_a(run: _Run) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        g = run.guided(m)
        base = _rate(run.hits(m, g, "none"))
        for shift in MEAN_SHIFTS:
            lv = run.levels(m, g, shift)
            neg, pos = [x for x in lv if x < 0], [x for x in lv if x > 0]
            if not neg or not pos:
                continue
            lo, hi = _rate(run.hits(m, g, shift, neg[0])), _rate(run.hits(m, g, shift, pos[-1]))
            rel = (relation(lo, base), relation(hi, base))
            verdicts.append(SUPPORTED if rel == ("below", "below") else CONTRADICTED if "above" in rel else INCONCLUSIVE)
            ev.append(f"{m} {shift}: {neg[0]:+.2f} → {_fmt(lo)}, unshifted {_fmt(base)}, {pos[-1]:+.2f} → {_fmt(hi)}")
            nums[f"{m} {shift}"] = {"neg": lo, "base": base, "pos": hi}
    return _claim("a", combine(verdicts), ev, nums)


def claim_b(run: _Run, seed: int) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        g = run.guided(m)
        common = sorted(set(run.levels(m, g, "UMS")) & set(run.levels(m, g, "URMS")))
        if not common:
            continue
        base = run.hits(m, g, "none")
        ums = np.concatenate([run.hits(m, g, "UMS", lv) for lv in common])
        urms = np.concatenate([run.hits(m, g, "URMS", lv) for lv in common])

        def ratio(b, u, r):
            # Ratios past 100 (URMS drop near zero) count as 100, so percentiles stay finite.
            drop_r = b.mean() - r.mean()
            return min((b.mean() - u.mean()) / drop_r, 100.0) if drop_r > 1e-9 else 100.0
        ci = statistic_ci((base, ums, urms), ratio, seed=seed)
        verdicts.append(INCONCLUSIVE if np.isnan(ci[1]) else CONTRADICTED if not ci[1] <= 2 <= ci[2]
                        else SUPPORTED if ci[1] > 1 else INCONCLUSIVE)
        ev.append(f"{m}: drop(UMS)/drop(URMS) over levels {', '.join(f'{x:+.2f}' for x in common)} = {_fmt(ci)}")
        nums[m] = {"ratio": ci, "levels": common}
    return _claim("b", combine(verdicts), ev, nums)


def claim_c(run: _Run) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        g = run.guided(m)
        lv = run.levels(m, g, "SDS")
        both = [a for a in lv if a > 0 and any(np.isclose(-a, x) for x in lv)]
        if not both:
            continue
        a = both[-1]
        pos, neg = _rate(run.hits(m, g, "SDS", a)), _rate(run.hits(m, g, "SDS", -a))
        rel = relation(pos, neg)
        verdicts.append({"below": SUPPORTED, "above": CONTRADICTED}.get(rel, INCONCLUSIVE))
        ev.append(f"{m}: SDS {a:+.2f} → {_fmt(pos)}, SDS {-a:+.2f} → {_fmt(neg)}")
        nums[m] = {"pos": pos, "neg": neg, "alpha": a}
    return _claim("c", combine(verdicts), ev, nums)


def claim_d(run: _Run) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        g = run.guided(m)
        base = _rate(run.hits(m, g, "none"))
        rels = []
        for shift in ("UMS", "URMS", "SDS"):
            for lv in run.levels(m, g, shift):
                if 0 < lv <= 0.1 + 1e-9:
                    r = _rate(run.hits(m, g, shift, lv))
                    rels.append(relation(r, base))
                    ev.append(f"{m} {shift} {lv:+.2f} → {_fmt(r)} (unshifted {_fmt(base)})")
                    nums[f"{m} {shift} {lv:+.2f}"] = r
        if rels:
            verdicts.append(SUPPORTED if "above" in rels else CONTRADICTED if all(r == "below" for r in rels)
                            else INCONCLUSIVE)
    return _claim("d", combine(verdicts), ev, nums)


def claim_e(run: _Run, seed: int) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        g, u = run.guided(m), run.unguided(m)
        if u is None:
            continue
        ci = _retention_gap(run.retention(m, g), run.retention(m, u), seed)
        verdicts.append(SUPPORTED if ci[1] > 0 else CONTRADICTED if ci[2] < 0 else INCONCLUSIVE)
        ev.append(f"{m}: retention under mean shifts, guidance {g:g} minus none = {_fmt(ci)}")
        nums[m] = ci
    return _claim("e", combine(verdicts), ev, nums)


def claim_f(run: _Run, seed: int) -> dict:
    pair = run.learned_vs_fixed()
    if pair is None:
        return _claim("f", INCONCLUSIVE, ["the run needs a learned-variance and a fixed-variance model"], {})
    learned, fixed = pair
    ci = _retention_gap(run.retention(learned, run.guided(learned) or run.unguided(learned)),
                        run.retention(fixed, run.guided(fixed) or run.unguided(fixed)), seed)
    verdict = SUPPORTED if ci[1] > 0 else CONTRADICTED if ci[2] < 0 else INCONCLUSIVE
    ev = [f"retention under mean shifts, {learned} minus {fixed} = {_fmt(ci)}"]
    # The paper's own comparison (pixel GLIDE vs latent SD) changes the space too: shown, not judged.
    for m, k in run.kinds.items():
        if k["learned"] and not k["latent"] and m != learned:
            other = _retention_gap(run.retention(m, run.guided(m) or run.unguided(m)),
                                   run.retention(fixed, run.guided(fixed) or run.unguided(fixed)), seed)
            ev.append(f"(space changes too, not judged) {m} minus {fixed} = {_fmt(other)}")
    return _claim("f", verdict, ev, {"learned": learned, "fixed": fixed, "gap": ci})


def claim_g(run: _Run) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        d = run.rows(m, run.guided(m))
        d = d[d["shift"] != "none"]
        per = d.groupby("label")["top1"]
        if per.ngroups < 2:
            continue
        level = 1 - 0.05 / per.ngroups
        means = per.mean()
        worst, best = means.idxmin(), means.idxmax()
        lo = wilson(int(per.get_group(worst).sum()), per.get_group(worst).size, level)
        hi = wilson(int(per.get_group(best).sum()), per.get_group(best).size, level)
        verdicts.append(SUPPORTED if relation(lo, hi) == "below" else INCONCLUSIVE)
        ev.append(f"{m}: least robust {worst} {_fmt(lo)}, most robust {best} {_fmt(hi)} "
                  f"({100 * level:.1f}% intervals, Bonferroni over {per.ngroups} labels)")
        nums[m] = {"least": [worst, *lo], "most": [best, *hi]}
    return _claim("g", combine(verdicts), ev, nums)


def claim_h(run: _Run) -> dict:
    verdicts, ev, nums = [], [], {}
    keys = ["label", "seed"]
    for m in run.fixed_latent():
        g = run.guided(m)
        lv = run.levels(m, g, "URMS")
        if not [x for x in lv if x < 0] or not [x for x in lv if x > 0]:
            continue
        base = run.rows(m, g, "none").set_index(keys)["cx"]
        drift = {}
        for level in (lv[0], lv[-1]):
            shifted = run.rows(m, g, "URMS", level).set_index(keys)["cx"]
            drift[level] = mean_ci((shifted - base.reindex(shifted.index)).dropna().to_numpy())
        neg, pos = drift[lv[0]], drift[lv[-1]]
        verdicts.append(SUPPORTED if pos[1] > 0 and neg[2] < 0 else CONTRADICTED if pos[2] < 0 or neg[1] > 0
                        else INCONCLUSIVE)
        ev.append(f"{m}: mean horizontal drift (fraction of the side) at URMS {lv[-1]:+.2f} = {_fmt(pos)}, "
                  f"at {lv[0]:+.2f} = {_fmt(neg)}")
        nums[m] = {"pos": pos, "neg": neg}
    return _claim("h", combine(verdicts), ev, nums)


def early_gap(step_distances: np.ndarray) -> np.ndarray:
    """Per sample: mean step-to-step distance over the first 10% of steps (at least one)
    divided by the mean over all steps. ``step_distances`` ``(N, S)``; returns ``(N,)``."""
    first = max(1, int(round(0.1 * step_distances.shape[1])))
    return step_distances[:, :first].mean(1) / step_distances.mean(1).clip(1e-12)


def claim_i(run: _Run, step_distances: dict[str, np.ndarray] | None, seed: int) -> dict:
    pair = run.learned_vs_fixed()
    if pair is None or not step_distances or any(m not in step_distances for m in pair):
        return _claim("i", INCONCLUSIVE, ["the run needs step distances of a learned- and a fixed-variance model"], {})
    learned, fixed = pair
    a, b = early_gap(step_distances[learned]), early_gap(step_distances[fixed])
    ci = statistic_ci((a, b), lambda x, y: x.mean() - y.mean(), seed=seed)
    verdict = SUPPORTED if ci[1] > 0 else CONTRADICTED if ci[2] < 0 else INCONCLUSIVE
    ev = [f"early gap {learned} {a.mean():.2f}, {fixed} {b.mean():.2f}; difference {_fmt(ci)}"]
    return _claim("i", verdict, ev, {"learned": float(a.mean()), "fixed": float(b.mean()), "difference": ci})


def evaluate_claims(df: pd.DataFrame, kinds: dict[str, dict], step_distances: dict[str, np.ndarray] | None = None,
                seed: int = 0) -> list[dict]:
    """All nine claims on a run's per-image frame (``seed_shifts.run``). ``kinds``: model ->
    ``{"latent": bool, "learned": bool}``; ``step_distances``: model -> ``(N, S)`` of the
    unshifted trajectories. Returns ``[{"id", "claim", "verdict", "evidence", "numbers"}]``."""
    run = _Run(df, kinds)
    return [claim_a(run), claim_b(run, seed), claim_c(run), claim_d(run), claim_e(run, seed), claim_f(run, seed),
            claim_g(run), claim_h(run), claim_i(run, step_distances, seed)]
