"""The nine claims of paper 001, tested on a seed-shift run.

Each claim gets a verdict decided by intervals or tests at the 95% level, never by point
estimates alone: ``supported`` when they say so, ``contradicted`` when they say the
opposite, ``inconclusive`` otherwise (intervals overlap, or the run lacks what the claim
needs). A claim tested on several cases (models, shifts) is supported only if every case
is, and contradicted only if every case is; mixed cases are inconclusive.

Each claim's rule, with what it holds fixed, is written once in :data:`RULES`; the report
prints it beside the verdict. Whom a claim is about follows the paper: (a)-(e), (g), (h)
are about latent models with a fixed variance (Stable Diffusion), each at its guided
setting ((e) compares guided and unguided); (f) and (i) compare a model whose sampler
draws with a learned variance against one that differs from it only in the variance.

``acc`` is top-1 accuracy with a Wilson interval; "retention" is the accuracy under the
mean shifts UMS and URMS divided by the unshifted accuracy (bootstrap interval; none with
fewer than :data:`MIN_UNITS` independent units a side, so such a claim stays inconclusive). Where a
rule pools several shift levels, the unit is a (label, seed): its images at the pooled
levels share their noise, so they are averaged first and the units resampled, never the
images as if each were independent. Cells whose shift is the identity (level 0 in the
paper's grid) are not shifted and count with none.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..stats import above, holm, mean_ci, relation, statistic_ci, wilson

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
MEAN_SHIFTS = ("UMS", "URMS")
# (b): "about twice" is a ratio within this factor of 2, i.e. in [2 / 1.5, 2 * 1.5] = [1.33, 3]
TWICE_BAND = 1.5
SMALL = 0.1  # (d): a small positive shift is a level in (0, SMALL]
# A bootstrap interval needs this many independent units (images, (label, seed) means, seeds) a side:
# a percentile bootstrap of four units, the toy demo's, reads far narrower than the truth.
MIN_UNITS = 10

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

_SD = "Per fixed-variance latent model at its guided scale (model, guidance, steps and labels fixed)"
_PAIR = ("a learned-variance model against a fixed-variance one that differs from it only in the variance: the "
         "same space (latent or pixel), sampler class, steps, guidance and, where known, training recipe (a model "
         "counts as learned only when its sampler draws with the predicted variance: DDPM with learned_range; "
         "PixArt's DPM-Solver drops it)")
RULES = {
    "a": f"{_SD}, for UMS and URMS: accuracy at the most negative and at the most positive level each lies below the "
         "unshifted accuracy (Wilson 95% intervals disjoint). Contradicted when a level lies above it.",
    "b": f"{_SD}: drop(UMS) / drop(URMS), the accuracy lost over the levels both shifts ran, bootstrap 95% interval "
         "over (label, seed) units. "
         f"Supported when the interval lies within [{2 / TWICE_BAND:.2f}, {2 * TWICE_BAND:.2f}] (a factor "
         f"{TWICE_BAND:g} around 2, so it excludes 1); contradicted when it lies wholly outside that band.",
    "c": f"{_SD}: SDS at +a lies below SDS at -a (Wilson 95% intervals disjoint), a the largest level run with both "
         "signs.",
    "d": f"{_SD}: each UMS and URMS level in (0, {SMALL:g}] against the unshifted accuracy, one-sided Fisher exact "
         "tests, Holm-corrected over the levels tested (SDS left out: it moves the spread, not the mean). Supported "
         "when some level is above (adjusted p < 0.05); contradicted when every level is below.",
    "e": f"{_SD.replace(' at its guided scale', '')}: retention with guidance minus retention without, bootstrap "
         "95% interval over (label, seed) units above 0 (below 0: contradicted).",
    "f": f"Retention of {_PAIR}, at a guidance both ran: the learned model's minus the fixed one's, bootstrap 95% "
         "interval above 0 (below 0: contradicted).",
    "g": f"{_SD}: each label's drop, its unshifted accuracy minus its accuracy over all shifted images (each seed's "
         "mean over the shifts, so that a seed's images count once), with a bootstrap interval over seeds at "
         "1 - 0.05/L (Bonferroni over L labels). Supported when two labels' drop intervals are disjoint; never "
         "contradicted (equal drops cannot be shown).",
    "h": f"{_SD}: mean signed horizontal move of the object's centre (edge-energy centroid) from the unshifted image "
         "of the same label and seed, bootstrap 95% intervals: above 0 at the most positive URMS level and below 0 at "
         "the most negative one.",
    "i": f"The same pair as (f): the early gap (mean step-to-step distance over the first 10% of steps over the mean "
         "over all steps, unshifted trajectories) of the learned model minus the fixed one's, bootstrap 95% interval "
         "above 0 (below 0: contradicted).",
}


def combine(verdicts: Sequence[str]) -> str:
    """All cases supported -> supported; all contradicted -> contradicted; else inconclusive."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if verdicts and all(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    return INCONCLUSIVE


def _fmt(ci) -> str:
    if np.isnan(ci[1]):
        return f"{ci[0]:.2f} (no interval: fewer than {MIN_UNITS} independent units a side)"
    return f"{ci[0]:.2f} [{ci[1]:.2f}, {ci[2]:.2f}]"


def _ci(samples, statistic, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """:func:`sagekit.stats.statistic_ci`, with no interval (NaN) when a sample has fewer than
    :data:`MIN_UNITS` values: a percentile bootstrap of a handful of units is too narrow."""
    if min(len(x) for x in samples) < MIN_UNITS:
        return float(statistic(*(np.asarray(x, dtype=float) for x in samples))), float("nan"), float("nan")
    return statistic_ci(samples, statistic, level=level, seed=seed)


def _rate(hits) -> tuple[float, float, float]:
    hits = np.asarray(hits, dtype=bool)
    return wilson(int(hits.sum()), len(hits))


class _Run:
    """Lookup of a run's per-image frame by model, guidance, shift and level."""

    def __init__(self, df: pd.DataFrame, kinds: dict[str, dict]):
        levels = df["level"] if "level" in df else df["level_value"]
        same = [s != "none" and is_identity(s, lv) for s, lv in zip(df["shift"], levels)]
        self.df, self.kinds = df[~np.asarray(same, dtype=bool)], kinds  # a shift of 0 is no shift

    def scales(self, model: str) -> list[float]:
        return sorted(self.df[self.df["model"] == model]["guidance"].unique())

    def guided(self, model: str) -> float | None:
        gs = self.scales(model)
        return gs[-1] if gs and gs[-1] > 1 else None

    def unguided(self, model: str) -> float | None:
        gs = self.scales(model)
        return gs[0] if gs and gs[0] <= 1 else None

    def steps(self, model: str) -> set[int]:
        return set(self.df[self.df["model"] == model]["steps"].unique()) if "steps" in self.df else set()

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

    def differences(self, a: str, b: str) -> list[str]:
        """What besides the variance differs between models ``a`` and ``b``."""
        ka, kb = self.kinds[a], self.kinds[b]
        out = [what for what, differs in (("space", ka["latent"] != kb["latent"]),
                                          ("sampler", ka.get("sampler") != kb.get("sampler")),
                                          ("steps", self.steps(a) != self.steps(b)),
                                          # two UNets trained differently differ in more than the variance
                                          ("training recipe", ka.get("recipe") != kb.get("recipe"))) if differs]
        return out + ([] if set(self.scales(a)) & set(self.scales(b)) else ["guidance"])

    def variance_pair(self) -> tuple[str, str, float] | None:
        """(learned, fixed, guidance): the first pair that differs only in the variance, at
        the largest guidance both ran; None if the run has none."""
        learned = [m for m, k in self.kinds.items() if k["learned"]]
        fixed = [m for m, k in self.kinds.items() if not k["learned"]]
        for a in learned:
            for b in fixed:
                if not self.differences(a, b):
                    return a, b, max(set(self.scales(a)) & set(self.scales(b)))
        return None

    def retention(self, model, guidance) -> tuple[np.ndarray, np.ndarray]:
        """Unshifted hits, and each (label, seed)'s mean hit under the mean shifts."""
        base = self.hits(model, guidance, "none")
        shifted = self.rows(model, guidance)
        return base, unit_means(shifted[shifted["shift"].isin(MEAN_SHIFTS)])


def is_identity(shift: str, level) -> bool:
    """Whether a shift at ``level`` leaves the noise as it is (UMS, URMS, SDS at 0; MS at
    (0, 0); PAS of 0 positions): the paper's grids hold such cells."""
    if shift == "none":
        return True
    values = level if isinstance(level, (list, tuple, np.ndarray)) else [level]
    return all(float(v) == 0 for v in values)


def unit_means(rows: pd.DataFrame) -> np.ndarray:
    """Mean top-1 hit of each (label, seed) over the rows: one value per unit of independent
    noise."""
    if rows.empty:
        return np.zeros(0)
    return rows.groupby(["label", "seed"], sort=False)["top1"].mean().to_numpy(dtype=float)


def _retention_gap(a: tuple, b: tuple, seed: int) -> tuple[float, float, float]:
    if any(len(x) == 0 for x in (*a, *b)):
        return (float("nan"),) * 3
    def stat(base_a, shift_a, base_b, shift_b):
        return shift_a.mean() / max(base_a.mean(), 1e-9) - shift_b.mean() / max(base_b.mean(), 1e-9)
    return _ci((*a, *b), stat, seed)


def _sign_verdict(ci) -> str:
    """An interval of a difference: above 0 supports, below 0 contradicts."""
    return SUPPORTED if ci[1] > 0 else CONTRADICTED if ci[2] < 0 else INCONCLUSIVE


def _plain(x):
    """JSON-ready copy: tuples to lists, numpy scalars to floats, rounded to 4 places."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if np.isnan(x) else round(float(x), 4)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _claim(key: str, verdict: str, evidence: list[str], numbers: dict) -> dict:
    return {"id": key, "claim": CLAIMS[key], "support": verdict, "rule": RULES[key],
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


def twice_verdict(ci) -> str:
    """(b)'s rule on an interval of drop(UMS) / drop(URMS)."""
    lo, hi = 2 / TWICE_BAND, 2 * TWICE_BAND
    if np.isnan(ci[1]):
        return INCONCLUSIVE
    if lo <= ci[1] and ci[2] <= hi:
        return SUPPORTED
    if ci[2] < lo or ci[1] > hi:
        return CONTRADICTED
    return INCONCLUSIVE


def claim_b(run: _Run, seed: int) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        g = run.guided(m)
        common = sorted(set(run.levels(m, g, "UMS")) & set(run.levels(m, g, "URMS")))
        if not common:
            continue
        base = run.hits(m, g, "none")
        ums = unit_means(pd.concat([run.rows(m, g, "UMS", lv) for lv in common]))
        urms = unit_means(pd.concat([run.rows(m, g, "URMS", lv) for lv in common]))

        def ratio(b, u, r):
            # Ratios past 100 (URMS drop near zero) count as 100, so percentiles stay finite.
            drop_r = b.mean() - r.mean()
            return min((b.mean() - u.mean()) / drop_r, 100.0) if drop_r > 1e-9 else 100.0
        ci = _ci((base, ums, urms), ratio, seed)
        verdicts.append(twice_verdict(ci))
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
        base = run.hits(m, g, "none")
        k0, n0 = int(base.sum()), len(base)
        tested = [(shift, lv) for shift in MEAN_SHIFTS for lv in run.levels(m, g, shift) if 0 < lv <= SMALL + 1e-9]
        if not tested or n0 == 0:
            continue
        hits = [run.hits(m, g, shift, lv) for shift, lv in tested]
        up = holm([above(int(h.sum()), len(h), k0, n0, "greater") for h in hits])
        down = holm([above(int(h.sum()), len(h), k0, n0, "less") for h in hits])
        verdicts.append(SUPPORTED if (up < 0.05).any() else CONTRADICTED if (down < 0.05).all() else INCONCLUSIVE)
        for (shift, lv), h, pu, pd_ in zip(tested, hits, up, down):
            r = _rate(h)
            ev.append(f"{m} {shift} {lv:+.2f} → {_fmt(r)} (unshifted {_fmt(_rate(base))}; Holm p above {pu:.3f}, "
                      f"below {pd_:.3f})")
            nums[f"{m} {shift} {lv:+.2f}"] = {"rate": r, "p_above": pu, "p_below": pd_}
    return _claim("d", combine(verdicts), ev, nums)


def claim_e(run: _Run, seed: int) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        g, u = run.guided(m), run.unguided(m)
        if u is None:
            continue
        ci = _retention_gap(run.retention(m, g), run.retention(m, u), seed)
        verdicts.append(_sign_verdict(ci))
        ev.append(f"{m}: retention under mean shifts, guidance {g:g} minus none = {_fmt(ci)}")
        nums[m] = ci
    return _claim("e", combine(verdicts), ev, nums)


def _no_pair(run: _Run) -> str:
    """Why the run has no pair for (f) and (i): what differs between its models."""
    learned = [m for m, k in run.kinds.items() if k["learned"]]
    fixed = [m for m, k in run.kinds.items() if not k["learned"]]
    if not learned or not fixed:
        return "the run needs a model whose sampler draws with a learned variance and one with a fixed variance"
    return "no learned/fixed pair differs only in the variance (" + "; ".join(
        f"{a} vs {b}: {', '.join(run.differences(a, b))} differ" for a in learned for b in fixed) + ")"


def claim_f(run: _Run, seed: int) -> dict:
    pair = run.variance_pair()
    if pair is None:
        return _claim("f", INCONCLUSIVE, [_no_pair(run)], {})
    learned, fixed, g = pair
    ci = _retention_gap(run.retention(learned, g), run.retention(fixed, g), seed)
    ev = [f"retention under mean shifts at guidance {g:g}, {learned} minus {fixed} = {_fmt(ci)}"]
    # The paper's own comparison (pixel GLIDE vs latent SD) changes more than the variance: shown, not judged.
    for m, k in run.kinds.items():
        if k["learned"] and m != learned and run.guided(m) is not None and run.guided(fixed) is not None:
            other = _retention_gap(run.retention(m, run.guided(m)), run.retention(fixed, run.guided(fixed)), seed)
            ev.append(f"(not judged: {', '.join(run.differences(m, fixed))} differ too) {m} minus {fixed} = "
                      f"{_fmt(other)}")
    return _claim("f", _sign_verdict(ci), ev, {"learned": learned, "fixed": fixed, "guidance": g, "gap": ci})


def label_drops(run: _Run, model: str, guidance: float, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per label: the unshifted accuracy over its seeds, the shifted one over its seeds
    (each seed's mean over every shift), and the drop between them with its bootstrap
    interval at ``level`` (the seeds resampled; NaN with fewer than two seeds a side)."""
    d = run.rows(model, guidance)
    rows = []
    for label, g in d.groupby("label", sort=False):
        base = g[g["shift"] == "none"]["top1"].to_numpy(dtype=float)
        shifted = unit_means(g[g["shift"] != "none"])
        if len(base) and len(shifted):
            drop = _ci((base, shifted), lambda b, s_: b.mean() - s_.mean(), seed, level)
            rows.append({"label": label, "base": base.mean(), "n_base": len(base), "shifted": shifted.mean(),
                         "n_seeds": len(shifted), "drop": drop[0], "lo": drop[1], "hi": drop[2]})
    return pd.DataFrame(rows)


def claim_g(run: _Run, seed: int = 0) -> dict:
    verdicts, ev, nums = [], [], {}
    for m in run.fixed_latent():
        g = run.guided(m)
        n_labels = run.rows(m, g)["label"].nunique()
        if n_labels < 2:
            continue
        level = 1 - 0.05 / n_labels
        drops = label_drops(run, m, g, level, seed)
        if len(drops) < 2:
            continue
        least, most = drops.loc[drops["drop"].idxmin()], drops.loc[drops["drop"].idxmax()]
        disjoint = bool(drops["lo"].max() > drops["hi"].min())  # False when an interval is NaN
        verdicts.append(SUPPORTED if disjoint else INCONCLUSIVE)
        ev.append(f"{m}: smallest drop {least['label']} {least['base']:.2f} → {least['shifted']:.2f}, "
                  f"{_fmt((least['drop'], least['lo'], least['hi']))}; largest {most['label']} {most['base']:.2f} → "
                  f"{most['shifted']:.2f}, {_fmt((most['drop'], most['lo'], most['hi']))} ({100 * level:.1f}% "
                  f"intervals, Bonferroni over {n_labels} labels)")
        nums[m] = {"least": [least["label"], least["drop"], least["lo"], least["hi"]],
                   "most": [most["label"], most["drop"], most["lo"], most["hi"]]}
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
    pair = run.variance_pair()
    if pair is None:
        return _claim("i", INCONCLUSIVE, [_no_pair(run)], {})
    learned, fixed, _ = pair
    if not step_distances or any(m not in step_distances for m in (learned, fixed)):
        return _claim("i", INCONCLUSIVE, [f"the run has no step distances of {learned} and {fixed}"], {})
    a, b = early_gap(step_distances[learned]), early_gap(step_distances[fixed])
    ci = _ci((a, b), lambda x, y: x.mean() - y.mean(), seed)
    ev = [f"early gap {learned} {a.mean():.2f}, {fixed} {b.mean():.2f}; difference {_fmt(ci)}"]
    return _claim("i", _sign_verdict(ci), ev, {"learned": float(a.mean()), "fixed": float(b.mean()), "difference": ci})


def evaluate_claims(df: pd.DataFrame, kinds: dict[str, dict], step_distances: dict[str, np.ndarray] | None = None,
                    seed: int = 0) -> list[dict]:
    """All nine claims on a run's per-image frame (``seed_shifts.run``). ``kinds``: model ->
    ``{"latent": bool, "learned": bool, "sampler": str}`` (``seed_shifts.model_kinds``);
    ``step_distances``: model -> ``(N, S)`` of the unshifted trajectories. Returns
    ``[{"id", "claim", "support", "rule", "evidence", "numbers"}]`` (``support``: supported,
    contradicted or inconclusive)."""
    run = _Run(df, kinds)
    return [claim_a(run), claim_b(run, seed), claim_c(run), claim_d(run), claim_e(run, seed), claim_f(run, seed),
            claim_g(run, seed), claim_h(run), claim_i(run, step_distances, seed)]
