"""Statistics of online comparisons: two groups of units, each making many calls.

Pure functions on numpy arrays. In production a version is served to units (users
or sessions), not to items, so the two arms share no items and a comparison is
unpaired; and one unit's calls are not independent (a heavy user's calls look
alike), so the unit is the cluster:

- a mean per call (cost, a quality score) gets each arm's clustered standard error
  (`stats.mean_ci`, CR1), and the difference Welch's t with Satterthwaite's degrees
  of freedom over clusters (`two_sample`). With one call per unit this is exactly
  ``scipy.stats.ttest_ind(b, a, equal_var=False)``; with many, each arm's standard
  error equals the delta-method one of a ratio metric (sum over units of values
  over sum of calls) times sqrt(G/(G-1)).
- a share of calls (errors, a pass/fail score) gets Newcombe's hybrid score
  interval (`rate_difference`), with each arm's calls deflated by its design effect
  (clustered variance over binomial variance), so it stays honest near 0% where
  ``p ± z·se`` collapses to a point: 0 errors in 50 calls does not prove a rate of 0.
- a percentile of latency gets Woodruff's interval, from the clustered standard
  error of the share of calls below it (`quantile_difference`): what survey
  statistics uses for quantiles under cluster sampling, and linear in the calls.
- the split itself gets a chi-square test of units per version against the
  configured weights (`sample_ratio`): a mismatch means the assignment is broken
  and no comparison of the arms can be trusted.

`judge` turns an interval into a non-inferiority decision against a margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from .. import stats

NAN = float("nan")
SRM_ALPHA = 0.001
"""A sample ratio this unlikely under the configured weights means broken assignment (the usual threshold:
mismatches are common enough in practice that 0.05 would raise false alarms every few weeks)."""


@dataclass(frozen=True)
class Difference:
    """B − A between two independent groups of clustered calls."""

    a: float
    """A's mean (or share, or percentile)."""
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    """Two-sided."""
    n_a: int
    """Calls of A that count."""
    n_b: int
    units_a: int
    """Units (clusters) of A."""
    units_b: int
    se: float = NAN
    """Standard error of ``diff``."""


def _arm(values: np.ndarray, units: np.ndarray | None) -> stats.Estimate:
    return stats.mean_ci(values, clusters=units)


def _units(units: Any, n: int) -> np.ndarray:
    return np.arange(n) if units is None else np.asarray(units)


def two_sample(a: Any, b: Any, units_a: Any = None, units_b: Any = None, confidence: float = 0.95) -> Difference:
    """Welch's difference of means, B − A, with standard errors clustered by unit.

    Args:
        a: One value per call of A (NaN: not counted).
        b: One value per call of B.
        units_a: The unit of each call of A (None: every call its own unit).
        units_b: The unit of each call of B.
        confidence: Of the interval.

    Returns:
        The difference with a t interval and p-value on Satterthwaite's degrees
        of freedom, each arm contributing its clusters minus one.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ea = _arm(xa, _units(units_a, len(xa)))
    eb = _arm(xb, _units(units_b, len(xb)))
    ga, gb = ea.n_clusters or 0, eb.n_clusters or 0
    diff = eb.mean - ea.mean
    se = math.sqrt(ea.se**2 + eb.se**2) if not (math.isnan(ea.se) or math.isnan(eb.se)) else NAN
    if math.isnan(se) or math.isnan(diff):
        low = high = p = NAN
    elif se == 0:
        low = high = diff
        p = 1.0 if diff == 0 else 0.0
    else:
        terms = [e.se**4 / (g - 1) for e, g in ((ea, ga), (eb, gb)) if e.se > 0 and g > 1]
        df = se**4 / sum(terms) if terms else math.inf
        t = float(_st.t.ppf(0.5 + confidence / 2, df))
        low, high = diff - t * se, diff + t * se
        p = float(2 * _st.t.sf(abs(diff) / se, df))
    return Difference(ea.mean, eb.mean, diff, low, high, p, ea.n, eb.n, ga, gb, se)


def _effective_calls(x: np.ndarray, est: stats.Estimate) -> float:
    """Calls deflated by the design effect (clustered variance over binomial variance, at least 1).

    At a share of 0 or 1 nothing varies, so the clustering cannot be measured and
    every call counts; Wilson's interval still keeps its upper end above 0 (about
    3.8/n at 95%).
    """
    n, p = len(x), est.mean
    if n < 2 or p <= 0 or p >= 1 or math.isnan(est.se):
        return float(n)
    binomial = p * (1 - p) / (n - 1)  # what the clustered SE is, squared, when every call is its own unit
    design_effect = max(1.0, est.se**2 / binomial)
    return n / design_effect


def rate_difference(a: Any, b: Any, units_a: Any = None, units_b: Any = None, confidence: float = 0.95) -> Difference:
    """B − A of a share of calls (values 0 or 1), Newcombe's interval on design-effect-adjusted calls.

    With one call per unit this is Newcombe's hybrid score interval ("method 10"),
    as ``statsmodels``' ``confint_proportions_2indep(method="newcomb")`` computes it.
    The p-value inverts the same interval (`_newcombe_p`), so p < alpha exactly
    when the interval leaves out 0.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ua, ub = _units(units_a, len(xa)), _units(units_b, len(xb))
    ka, kb = ~np.isnan(xa), ~np.isnan(xb)
    xa, xb, ua, ub = xa[ka], xb[kb], ua[ka], ub[kb]
    ea, eb = _arm(xa, ua), _arm(xb, ub)
    ga, gb = ea.n_clusters or 0, eb.n_clusters or 0
    if not len(xa) or not len(xb):
        return Difference(ea.mean, eb.mean, NAN, NAN, NAN, NAN, len(xa), len(xb), ga, gb)
    pa, pb = float(ea.mean), float(eb.mean)
    na, nb = _effective_calls(xa, ea), _effective_calls(xb, eb)
    low, high = _newcombe(pa, na, pb, nb, confidence)
    se_a = ea.se if not math.isnan(ea.se) else 0.0
    se_b = eb.se if not math.isnan(eb.se) else 0.0
    return Difference(pa, pb, pb - pa, low, high, _newcombe_p(pa, na, pb, nb), len(xa), len(xb), ga, gb,
                      math.sqrt(se_a**2 + se_b**2))


def _newcombe(pa: float, na: float, pb: float, nb: float, confidence: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of pb − pa from the two Wilson intervals."""
    la, ha = stats.wilson_interval(pa * na, na, confidence)
    lb, hb = stats.wilson_interval(pb * nb, nb, confidence)
    diff = pb - pa
    return diff - math.sqrt((pb - lb) ** 2 + (ha - pa) ** 2), diff + math.sqrt((hb - pb) ** 2 + (pa - la) ** 2)


def _newcombe_p(pa: float, na: float, pb: float, nb: float) -> float:
    """The p-value that goes with Newcombe's interval: the smallest alpha whose interval leaves out 0.

    Found by bisection, so the p-value and the interval never disagree (a z test on
    the standard errors would call 0 errors against 1 in a thousand significant).
    """
    if pa == pb:
        return 1.0

    def excludes(alpha: float) -> bool:
        low, high = _newcombe(pa, na, pb, nb, 1 - alpha)
        return low > 0 or high < 0

    lo, hi = 1e-12, 1.0 - 1e-12
    if excludes(lo):
        return lo
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if excludes(mid) else (mid, hi)
    return hi


def _quantile(values: np.ndarray, q: float) -> float:
    """The inverted-CDF quantile: the smallest value with at least ``q`` of the calls at or below it."""
    return float(np.quantile(values, min(1.0, max(0.0, q)), method="inverted_cdf"))


def _quantile_se(values: np.ndarray, units: np.ndarray, q: float, z: float) -> tuple[float, float]:
    """A quantile and its standard error by Woodruff's method, with the clustered variance of a share.

    The share of calls at or below the quantile is a mean like any other, so its
    standard error can be clustered by unit; Woodruff turns the interval of that
    share back into an interval of values, and half its width over z is the
    quantile's standard error. No resampling: linear in the calls after one sort.
    """
    point = _quantile(values, q)
    below = (values <= point).astype(float)
    se_share = stats.mean_ci(below, clusters=units).se
    if math.isnan(se_share) or se_share == 0:
        se_share = math.sqrt(q * (1 - q) / len(values))  # one unit, or every call alike: fall back to calls
    low, high = _quantile(values, q - z * se_share), _quantile(values, q + z * se_share)
    return point, (high - low) / (2 * z)


def quantile_difference(
    a: Any, b: Any, units_a: Any = None, units_b: Any = None, *, q: float = 0.5, confidence: float = 0.95,
) -> Difference:
    """B − A of a percentile of calls (latency), with Woodruff intervals clustered by unit.

    Counting a heavy user's hundred similar calls as a hundred independent draws
    would make the interval too narrow; the clustered share does not. With one call
    per unit it agrees with a percentile bootstrap of the calls.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ua, ub = _units(units_a, len(xa)), _units(units_b, len(xb))
    ka, kb = ~np.isnan(xa), ~np.isnan(xb)
    xa, xb, ua, ub = xa[ka], xb[kb], ua[ka], ub[kb]
    ga, gb = len(np.unique(ua)), len(np.unique(ub))
    if not len(xa) or not len(xb):
        return Difference(NAN, NAN, NAN, NAN, NAN, NAN, len(xa), len(xb), ga, gb)
    z = float(_st.norm.ppf(0.5 + confidence / 2))
    qa, se_a = _quantile_se(xa, ua, q, z)
    qb, se_b = _quantile_se(xb, ub, q, z)
    diff, se = qb - qa, math.hypot(se_a, se_b)
    p = (1.0 if diff == 0 else 0.0) if se == 0 else float(2 * _st.norm.sf(abs(diff) / se))
    return Difference(qa, qb, diff, diff - z * se, diff + z * se, p, len(xa), len(xb), ga, gb, se)


@dataclass(frozen=True)
class SampleRatio:
    """Units per version against the configured weights."""

    observed: dict[int, int]
    expected: dict[int, float]
    """Units each version should have had under the weights."""
    chi2: float
    p_value: float
    outside: int
    """Units served a version the split does not hold."""

    @property
    def mismatch(self) -> bool:
        return self.outside > 0 or (not math.isnan(self.p_value) and self.p_value < SRM_ALPHA)


def sample_ratio(observed: Mapping[int, int], weights: Mapping[int, float]) -> SampleRatio:
    """Chi-square goodness of fit of units per version to the split's weights.

    Versions the weights leave out count as ``outside`` (any unit there is a
    mismatch). NaN p-value with fewer than two versions or no units.
    """
    total_w = sum(weights.values())
    inside = {v: int(observed.get(v, 0)) for v in weights}
    n = sum(inside.values())
    expected = {v: n * w / total_w for v, w in weights.items()}
    outside = sum(int(c) for v, c in observed.items() if v not in weights)
    if len(weights) < 2 or n == 0:
        return SampleRatio(dict(observed), expected, NAN, NAN, outside)
    obs = np.array([inside[v] for v in weights], dtype=float)
    exp = np.array([expected[v] for v in weights])
    chi2, p = _st.chisquare(obs, exp)
    return SampleRatio(dict(observed), expected, float(chi2), float(p), outside)


def mde(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference an unpaired comparison with this standard error detects."""
    if math.isnan(se):
        return NAN
    return float((_st.norm.ppf(1 - alpha / 2) + _st.norm.ppf(power)) * se)


HOLDS, REGRESSED, UNSURE = "holds", "regressed", "unsure"
"""What a guard's interval says against its margin."""


def judge(ci_low: float, ci_high: float, margin: float, *, higher_is_better: bool) -> str:
    """Non-inferiority on an interval of B − A: is B worse than A by more than ``margin``?

    ``holds`` when the whole interval of the harm (how much worse B is) lies at or
    below the margin; ``regressed`` when the whole interval lies beyond it; ``unsure``
    otherwise (more data decides), and for a missing interval.
    """
    if math.isnan(ci_low) or math.isnan(ci_high):
        return UNSURE
    harm_low, harm_high = (-ci_high, -ci_low) if higher_is_better else (ci_low, ci_high)
    if harm_high <= margin:
        return HOLDS
    if harm_low > margin:
        return REGRESSED
    return UNSURE
