"""Statistics for comparing evals: intervals, paired tests, power.

Pure functions on numpy arrays, following Evan Miller, "Adding Error Bars to
Evals: A Statistical Approach to Language Model Evaluations" (Anthropic, 2024):

- the unit of analysis is the item, so repeats are averaged per item first
  (`item_means`);
- a mean gets a CLT interval, with clustered standard errors when items come
  in groups (`mean_ci`);
- two variants run on the same items are compared pairwise
  (`paired_difference`, `mcnemar_exact`), which removes the between-item
  variance the two share;
- the power formula tells how many items a comparison needs
  (`sample_size_needed`, `minimum_detectable_effect`).

For skewed metrics such as latency and cost there are `bootstrap_difference`
and `mann_whitney`; for pairwise human or model preferences, `preference`;
for several comparisons at once, `holm`; and `verdict` puts a result into
words.

Every function accepts lists or arrays (booleans count as 0 and 1). NaN marks
a missing score: it is dropped, pairwise in the paired functions, and ``n``
reports what was left. An infinity is no score either (one rule with the
scorers, which record a non-finite result as not scored): it is dropped like
NaN, and the ``notes`` of `Estimate` and `PairedDifference` say how many
were. Degenerate input gives NaN rather than an error.

Cluster labels may be missing for some items (None or NaN): each such item is
then its own cluster, and ``notes`` says how many were.

Formula choices:

- Clustered standard errors use the CR1 small-sample factor G/(G-1)::

      se = sqrt(G / (G - 1) * sum_g (sum_{i in g} (x_i - mean))**2) / n

  This is Miller's clustered SE (his sum of within-cluster cross terms
  rewritten as squared cluster sums) times G/(G-1), and equals what Stata and
  statsmodels report for a constant-only regression with clustered errors.
  When every item is its own cluster it equals the unclustered
  ``sd(ddof=1) / sqrt(n)`` exactly.
- `mean_ci` uses the normal quantile, as Miller does. `paired_difference`
  uses Student's t with n - 1 degrees of freedom (G - 1 when clustered) for
  both its interval and its p-value: at the sizes evals often have (tens of
  items) the normal is too optimistic, and the two agree as n grows. The
  interval and the p-value come from the same distribution, so p < alpha
  exactly when the (1 - alpha) interval excludes 0.
- When the paired differences have no variance (every item moved by the same
  amount) the t statistic is undefined: it would give SE 0, a zero-width
  interval and p = 0. `paired_difference` then uses the exact sign test over
  the units (items, or clusters), as McNemar's exact test does for pass/fail,
  and the distribution-free interval for the median difference that inverts
  it, which exists only once the sign test can reach the confidence level
  (6 units at 95%). ``test`` and ``notes`` say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special as _sp

from . import _format
from .errors import ConfigError

__all__ = [
    "BootstrapDifference",
    "Estimate",
    "McNemar",
    "PairedDifference",
    "Preference",
    "bootstrap_difference",
    "detectable_effect_from_se",
    "holm",
    "item_means",
    "mann_whitney",
    "mcnemar_exact",
    "mean_ci",
    "minimum_detectable_effect",
    "paired_difference",
    "preference",
    "sample_size_needed",
    "verdict",
    "wilson_interval",
]

NAN = float("nan")

BOOTSTRAP_STATS = ("mean", "median", "p95")
"""Statistics `bootstrap_difference` knows."""

_QUANTILE_OF = {"median": 0.5, "p95": 0.95}

_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22
"""Resample indices drawn at once; bounds memory (tens of MiB) however large the samples."""


# --- records -----------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Estimate:
    """A mean with its standard error and confidence interval."""

    mean: float
    """The mean of the values."""
    se: float
    """Standard error of the mean (clustered when clusters were given); NaN when n < 2."""
    ci_low: float
    """Lower end of the confidence interval."""
    ci_high: float
    """Upper end of the confidence interval."""
    n: int
    """Number of units (items) the mean is over, after dropping NaN."""
    n_clusters: int | None
    """Number of clusters, or None when the standard error is not clustered."""
    confidence: float
    """Confidence level of the interval, e.g. 0.95."""
    notes: tuple[str, ...] = ()
    """What a reader must know about the input: values left out for not being
    finite, items without a cluster counted as their own."""

    def format(self, digits: int = 3) -> str:
        """One line such as ``0.712 ± 0.041 (95% CI 0.671–0.753, n=60)``."""
        f = f".{digits}f"
        size = f"n={self.n}"
        if self.n_clusters is not None:
            size += f", {self.n_clusters} clusters"
        return (
            f"{self.mean:{f}} ± {self.se:{f}} "
            f"({self.confidence * 100:g}% CI {self.ci_low:{f}}–{self.ci_high:{f}}, {size})"
        )

    def __repr__(self) -> str:
        return self.format()


@dataclass(frozen=True)
class PairedDifference:
    """The difference between two variants scored on the same items."""

    mean_a: float
    """Mean of A over the paired items."""
    mean_b: float
    """Mean of B over the paired items."""
    diff: float
    """Mean of the per-item differences, B − A."""
    se: float
    """Standard error of ``diff`` (clustered when clusters were given); NaN when n < 2."""
    ci_low: float
    """Lower end of the t interval for ``diff``."""
    ci_high: float
    """Upper end of the t interval for ``diff``."""
    p_value: float
    """Two-sided paired t-test p-value for ``diff`` ≠ 0."""
    correlation: float
    """Pearson correlation between A and B across items; NaN when either is constant or n < 2."""
    n: int
    """Number of items with scores for both A and B."""
    n_clusters: int | None
    """Number of clusters, or None when the standard error is not clustered."""
    confidence: float
    """Confidence level of the interval, e.g. 0.95."""
    test: str = "t"
    """``"t"``: Student's t on the differences; ``"sign"``: the exact sign test,
    used when the differences have no variance (the interval is then for the
    median difference)."""
    notes: tuple[str, ...] = ()
    """What a reader must know: the sign-test fallback, values left out for not
    being finite, items without a cluster counted as their own."""


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on paired pass/fail outcomes."""

    a_only: int
    """Items A passes and B fails."""
    b_only: int
    """Items B passes and A fails."""
    n: int
    """Number of paired items."""
    p_value: float
    """Exact two-sided binomial p-value on the discordant pairs; 1.0 when there are none."""


@dataclass(frozen=True)
class BootstrapDifference:
    """A percentile-bootstrap interval for the difference of a statistic, B − A."""

    stat: str
    """The statistic: ``"mean"``, ``"median"`` or ``"p95"``."""
    a: float
    """The statistic on sample A."""
    b: float
    """The statistic on sample B."""
    diff: float
    """``b − a``."""
    ci_low: float
    """Lower percentile of the bootstrapped differences."""
    ci_high: float
    """Upper percentile of the bootstrapped differences."""
    n_a: int
    """Size of sample A after dropping NaN."""
    n_b: int
    """Size of sample B after dropping NaN."""
    n_boot: int
    """Number of bootstrap resamples."""
    seed: int | None
    """Seed of the numpy Generator; the same seed and data give the same interval."""


@dataclass(frozen=True)
class Preference:
    """Pairwise preferences between two variants, ties excluded from the rate."""

    wins_b: int
    """Comparisons B won."""
    wins_a: int
    """Comparisons A won."""
    ties: int
    """Comparisons neither won."""
    n: int
    """All comparisons, ties included."""
    win_rate: float
    """``wins_b / (wins_a + wins_b)``; NaN when every comparison tied."""
    ci_low: float
    """Lower end of the Wilson interval for ``win_rate``."""
    ci_high: float
    """Upper end of the Wilson interval for ``win_rate``."""
    p_value: float
    """Exact two-sided sign test of wins against losses; 1.0 when there are none."""


# --- input handling ----------------------------------------------------------


def _as_floats(values: Any, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional, got shape {x.shape}")
    return x


def _check_same_length(x: np.ndarray, y: Any, x_name: str, y_name: str) -> None:
    if len(x) != len(y):
        raise ConfigError(
            f"{x_name} has {len(x)} values but {y_name} has {len(y)}; "
            "they must be aligned item by item"
        )


def _labels(labels: Any, name: str) -> np.ndarray:
    if isinstance(labels, (list, tuple)):
        # Built by hand: np.asarray of strings and None (or tuples) guesses a dtype or a shape.
        arr = np.empty(len(labels), dtype=object)
        arr[:] = labels
        return arr
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _unlabelled(labels: np.ndarray) -> np.ndarray:
    """Where a cluster label is missing: None, or NaN."""
    if labels.dtype.kind == "f":
        return np.isnan(labels)
    if labels.dtype.kind != "O":
        return np.zeros(len(labels), dtype=bool)
    return np.fromiter((x is None or (isinstance(x, float) and math.isnan(x)) for x in labels),
                       dtype=bool, count=len(labels))


def _codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 for the labels, and G; each unlabelled item gets a code of its own."""
    missing = _unlabelled(labels)
    present = labels[~missing] if missing.any() else labels
    if present.dtype.kind == "O":
        # Mixed types (1 and "a") do not sort; a first-seen numbering needs no order.
        seen: dict[Any, int] = {}
        codes = np.fromiter((seen.setdefault(x, len(seen)) for x in present), dtype=np.intp, count=len(present))
        groups = len(seen)
    else:
        uniq, inverse = np.unique(present, return_inverse=True)
        codes, groups = inverse.ravel(), len(uniq)
    if not missing.any():
        return codes, groups
    out = np.empty(len(labels), dtype=np.intp)
    out[~missing] = codes
    lone = int(missing.sum())
    out[missing] = groups + np.arange(lone)
    return out, groups + lone


def _finite(x: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """Where ``x`` is a usable value; an infinity is left out like NaN, and noted."""
    infinite = int(np.isinf(x).sum())
    if infinite:
        notes.append(
            f"{infinite} value{'s' if infinite != 1 else ''} of {name} {'were' if infinite != 1 else 'was'} "
            "infinite and left out, as missing scores are"
        )
    return np.isfinite(x)


def _note_unclustered(groups: np.ndarray | None, notes: list[str]) -> None:
    if groups is None:
        return
    lone = int(_unlabelled(groups).sum())
    if lone:
        notes.append(
            f"{lone} of {len(groups)} items have no cluster; each counts as a cluster of its own"
        )


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")


def _two_sided_quantile(confidence: float) -> float:
    return _normal_quantile(0.5 + confidence / 2)


# Quantiles and tails from scipy.special, the functions scipy.stats' norm and t call
# themselves (bit for bit the same values): importing scipy.stats costs 0.4 to 1.2 s
# in a fresh process, scipy.special a third of that.


def _normal_quantile(q: float) -> float:
    """``scipy.stats.norm.ppf(q)``."""
    return float(_sp.ndtri(q))


def _t_quantile(q: float, df: float) -> float:
    """``scipy.stats.t.ppf(q, df)``."""
    return float(_sp.stdtrit(df, q))


def _t_upper_tail(x: float, df: float) -> float:
    """``scipy.stats.t.sf(x, df)``."""
    return float(_sp.stdtr(df, -x))


EXACT_BINOMIAL_MAX = 20_000
"""Trials up to which a binomial tail is summed exactly in integers (25 ms at the limit)."""


def _half_binomial_cdf(k: int, m: int) -> float:
    """P(X <= k) for X ~ Binomial(m, 1/2).

    Summed exactly in integers and divided once, so it is the correctly rounded
    value; ``scipy.stats.binom.cdf`` is within 1e-12 of it (its own rounding). Past
    ``EXACT_BINOMIAL_MAX`` trials that is used instead.
    """
    if k < 0:
        return 0.0
    if k >= m:
        return 1.0
    if m > EXACT_BINOMIAL_MAX:
        from scipy import stats

        return float(stats.binom.cdf(k, m, 0.5))
    term = total = 1
    for i in range(k):  # C(m, i + 1) from C(m, i)
        term = term * (m - i) // (i + 1)
        total += term
    return total / (1 << m)


# --- means and intervals -----------------------------------------------------


def item_means(values: Any, item_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Average repeated scores per item.

    Miller's unit of analysis is the item: repeats of one item are not
    independent draws, so they are averaged before any interval is computed.

    Args:
        values: One score per row.
        item_ids: The item each row belongs to, aligned with ``values``.

    Returns:
        The unique item ids in first-seen order, and each item's mean score.
        NaN and infinite scores are dropped first; an item with no finite
        score is left out.

    Raises:
        ValueError: If the two inputs differ in length.
    """
    x = _as_floats(values, "values")
    ids = _labels(item_ids, "item_ids")
    _check_same_length(x, ids, "values", "item_ids")
    keep = np.isfinite(x)
    x, ids = x[keep], ids[keep]
    if len(x) == 0:
        return ids, x
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    means = np.bincount(inverse, weights=x) / np.bincount(inverse)
    order = np.argsort(first, kind="stable")
    return uniq[order], means[order]


def _standard_error(x: np.ndarray, codes: np.ndarray | None, n_clusters: int) -> float:
    """SE of the mean of ``x`` (no NaN, n >= 2 and not all equal), CR1-clustered if codes given."""
    n = len(x)
    if codes is None:
        return float(np.std(x, ddof=1) / math.sqrt(n))
    if n_clusters < 2:
        # One cluster carries no information about between-cluster variance.
        return NAN
    residual_sums = np.bincount(codes, weights=x - x.mean(), minlength=n_clusters)
    return math.sqrt(n_clusters / (n_clusters - 1) * float(np.sum(residual_sums**2))) / n


def _mean_and_se(
    x: np.ndarray, clusters: np.ndarray | None
) -> tuple[float, float, int | None]:
    """Mean, standard error and cluster count of NaN-free ``x``."""
    n = len(x)
    codes, n_clusters = (None, 0) if clusters is None else _codes(clusters)
    reported_clusters = None if clusters is None else n_clusters
    if n == 0:
        return NAN, NAN, reported_clusters
    if n == 1:
        return float(x[0]), NAN, reported_clusters
    if np.all(x == x[0]):
        # Exact, where np.mean and np.std would leave rounding noise.
        return float(x[0]), 0.0, reported_clusters
    return float(np.mean(x)), _standard_error(x, codes, n_clusters), reported_clusters


def mean_ci(values: Any, clusters: Any = None, confidence: float = 0.95) -> Estimate:
    """Mean with a CLT confidence interval.

    Args:
        values: One value per item (average repeats first with `item_means`).
        clusters: Optional cluster label per item, for items that come in
            groups (several questions on one passage). The standard error is
            then clustered, with the CR1 factor G/(G-1). An item whose label
            is None or NaN is a cluster of its own.
        confidence: Confidence level of the interval.

    Returns:
        The estimate. The interval is ``mean ± z * se`` with the normal
        quantile z. With n == 1 (or a single cluster) the standard error and
        interval are NaN; with all values equal the standard error is 0.
        NaN and infinite values are left out (infinities are noted).

    Raises:
        ValueError: If ``clusters`` differs in length from ``values``, or the
            confidence is not between 0 and 1.
    """
    _check_confidence(confidence)
    x = _as_floats(values, "values")
    groups = None
    if clusters is not None:
        groups = _labels(clusters, "clusters")
        _check_same_length(x, groups, "values", "clusters")
    notes: list[str] = []
    keep = _finite(x, "the values", notes)
    x = x[keep]
    if groups is not None:
        groups = groups[keep]
    _note_unclustered(groups, notes)
    mean, se, n_clusters = _mean_and_se(x, groups)
    half = _two_sided_quantile(confidence) * se
    return Estimate(
        mean=mean,
        se=se,
        ci_low=mean - half,
        ci_high=mean + half,
        n=len(x),
        n_clusters=n_clusters,
        confidence=confidence,
        notes=tuple(notes),
    )


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return NAN
    da, db = a - a.mean(), b - b.mean()
    r = float(np.dot(da, db) / math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db))))
    return min(1.0, max(-1.0, r))


def paired_difference(
    a: Any, b: Any, clusters: Any = None, confidence: float = 0.95
) -> PairedDifference:
    """Compare two variants scored on the same items.

    Pairing removes the variance of item difficulty the two variants share:
    the standard error is that of the per-item differences, which is small
    when A and B are correlated. The interval and p-value use Student's t with
    n - 1 degrees of freedom (G - 1 with clusters), so without clusters they
    equal ``scipy.stats.ttest_rel(b, a)``.

    Args:
        a: Per-item scores of variant A.
        b: Per-item scores of variant B, aligned with ``a``.
        clusters: Optional cluster label per item; the standard error of the
            differences is then clustered (CR1).
        confidence: Confidence level of the interval.

    Returns:
        The difference B − A. Items where either score is NaN or infinite are
        dropped (infinities are noted). When every difference is exactly the
        same, the standard error is 0, ``test`` is ``"sign"``, the p-value is
        the exact sign test's over the items (clusters when clustered), and
        the interval is ``[diff, diff]`` where the sign test can reach the
        confidence level, else NaN; ``notes`` says so.

    Raises:
        ValueError: If the inputs differ in length, or the confidence is not
            between 0 and 1.
    """
    _check_confidence(confidence)
    xa = _as_floats(a, "a")
    xb = _as_floats(b, "b")
    _check_same_length(xa, xb, "a", "b")
    groups = None
    if clusters is not None:
        groups = _labels(clusters, "clusters")
        _check_same_length(xa, groups, "a", "clusters")
    notes: list[str] = []
    keep = _finite(xa, "a", notes) & _finite(xb, "b", notes)
    xa, xb = xa[keep], xb[keep]
    if groups is not None:
        groups = groups[keep]
    _note_unclustered(groups, notes)
    n = len(xa)
    d = xb - xa
    diff, se, n_clusters = _mean_and_se(d, groups)
    if n >= 2 and se != 0 and _constant(d, xa, xb):
        # Equal differences that rounding made unequal (0.7 - 0.45 vs 0.5 - 0.25): an SE
        # of 1e-17 is no information, and t would turn it into p = 0.
        se = 0.0
    mean_a = float(xa.mean()) if n else NAN
    mean_b = float(xb.mean()) if n else NAN

    test = "t"
    if se == 0:
        # No variance: t is undefined (it would say p = 0). Count the units instead.
        test = "sign"
        units = n if groups is None else n_clusters
        assert units is not None
        p_value = 1.0 if diff == 0 else _sign_test(0, units)
        low, high = _sign_interval(diff, units, confidence)
        notes.insert(0, (
            f"every {'item' if groups is None else 'cluster'} differs by the same {_format.num(diff, signed=True)}: "
            f"no variance, so the p-value is the exact sign test's over {units} "
            f"{'items' if groups is None else 'clusters'}"
            + ("" if math.isfinite(low) else
               f", and no {confidence * 100:g}% interval exists at this n (the sign test needs "
               f"{_sign_test_minimum(confidence)})")
        ))
    elif math.isnan(se):
        low = high = p_value = NAN
    else:
        df = (n_clusters if n_clusters is not None else n) - 1
        half = _t_quantile(0.5 + confidence / 2, df) * se
        low, high = diff - half, diff + half
        p_value = 2 * _t_upper_tail(abs(diff) / se, df)
    return PairedDifference(
        mean_a=mean_a,
        mean_b=mean_b,
        diff=diff,
        se=se,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        correlation=_correlation(xa, xb),
        n=n,
        n_clusters=n_clusters,
        confidence=confidence,
        test=test,
        notes=tuple(notes),
    )


def _constant(d: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> bool:
    """Whether the differences are all equal up to the rounding of a subtraction."""
    scale = max(float(np.max(np.abs(xa))), float(np.max(np.abs(xb))))
    return float(np.ptp(d)) <= 1e-12 * scale


def _sign_interval(value: float, units: int, confidence: float) -> tuple[float, float]:
    """The sign-test interval for the median when all ``units`` values equal ``value``.

    The distribution-free interval runs between order statistics; with every
    value equal it is ``[value, value]``, once the widest such interval (the
    sample range) has coverage ``1 - 2 / 2**units`` at least ``confidence``.
    Below that, no interval at this level exists: NaN.
    """
    if 1 - 2 * 0.5**units >= confidence:
        return value, value
    return NAN, NAN


def _sign_test_minimum(confidence: float) -> str:
    """How many units the sign test needs before it can reach ``confidence``."""
    needed = max(1, math.ceil(math.log2(2 / (1 - confidence)) - 1e-12))
    return f"{needed} units"


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion.

    Unlike ``p ± z·se`` it stays inside [0, 1] and does not collapse to a
    point at 0 or n successes, which matters for pass rates near 100%.

    Args:
        successes: Number of successes, between 0 and ``n``.
        n: Number of trials.
        confidence: Confidence level of the interval.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when n is 0.

    Raises:
        ValueError: If the counts are negative or ``successes`` exceeds ``n``.
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ConfigError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return NAN, NAN
    z = _two_sided_quantile(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    # At the boundaries the closed form is 0 or 1 up to rounding; make it exact.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _sign_test(k: int, m: int) -> float:
    """Exact two-sided binomial p-value of k successes in m trials at p = 1/2."""
    if m == 0:
        return 1.0
    # The null is symmetric, so the two-sided p-value is twice the smaller tail.
    return min(1.0, 2 * _half_binomial_cdf(min(k, m - k), m))


def mcnemar_exact(a_pass: Any, b_pass: Any) -> McNemar:
    """McNemar's exact test for paired pass/fail outcomes.

    Only items where the variants disagree carry information about which is
    better; under no difference each disagreement is a fair coin.

    Args:
        a_pass: Per-item pass (1/True) or fail (0/False) of variant A.
        b_pass: The same for variant B, aligned with ``a_pass``.

    Returns:
        The discordant counts and the exact two-sided p-value. Items where
        either outcome is NaN are dropped.

    Raises:
        ValueError: If the inputs differ in length or hold values other than
            0, 1 and NaN.
    """
    xa = _as_floats(a_pass, "a_pass")
    xb = _as_floats(b_pass, "b_pass")
    _check_same_length(xa, xb, "a_pass", "b_pass")
    keep = ~(np.isnan(xa) | np.isnan(xb))
    xa, xb = xa[keep], xb[keep]
    for name, x in (("a_pass", xa), ("b_pass", xb)):
        bad = x[(x != 0) & (x != 1)]
        if len(bad):
            raise ConfigError(f"{name} must hold pass/fail values (0 or 1), found {bad[0]!r}")
    a_only = int(np.sum((xa == 1) & (xb == 0)))
    b_only = int(np.sum((xa == 0) & (xb == 1)))
    return McNemar(
        a_only=a_only, b_only=b_only, n=len(xa), p_value=_sign_test(b_only, a_only + b_only)
    )


# --- skewed metrics ----------------------------------------------------------


def _row_quantile(sorted_values: np.ndarray, ranks: np.ndarray, q: float) -> np.ndarray:
    """Linear-method quantile ``q`` of each row, given rows of positions in ``sorted_values``.

    Positions sort in the same order as the values they point to, so the
    selection partitions small integers rather than floats, which is cheaper.
    """
    n = ranks.shape[1]
    h = (n - 1) * q
    k = int(math.floor(h))
    frac = h - k
    part = np.partition(ranks, k, axis=1)
    low = sorted_values[part[:, k]]
    if frac == 0 or k + 1 >= n:
        return low
    high = sorted_values[part[:, k + 1 :].min(axis=1)]
    # numpy's own lerp: from the nearer end, so results match np.quantile.
    if frac < 0.5:
        return low + (high - low) * frac
    return high - (high - low) * (1 - frac)


class _Resampler:
    """Evaluates one statistic on rows of resample indices into one sample."""

    def __init__(self, x: np.ndarray, stat: str, paired: bool) -> None:
        self.q = _QUANTILE_OF.get(stat)
        self.values = x
        self.ranks: np.ndarray | None = None
        if self.q is not None:
            order = np.argsort(x, kind="stable")
            self.values = x[order]
            # Unpaired draws index the sorted copy directly: resampling the
            # sorted sample is resampling the sample, and it skips a gather.
            # Paired draws index items, so they go through each item's rank.
            if paired:
                # int32 ranks partition faster than 64-bit ones.
                self.ranks = np.empty(len(x), dtype=np.int32 if len(x) < 2**31 else np.intp)
                self.ranks[order] = np.arange(len(x))

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        if self.q is None:
            return self.values[idx.astype(np.intp, copy=False)].mean(axis=1)
        ranks = idx if self.ranks is None else self.ranks[idx.astype(np.intp, copy=False)]
        return _row_quantile(self.values, ranks, self.q)


def _chunks(n_boot: int, row_length: int) -> list[int]:
    rows = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // max(1, row_length))
    return [min(rows, n_boot - start) for start in range(0, n_boot, rows)]


def bootstrap_difference(
    a: Any,
    b: Any,
    stat: str = "median",
    n_boot: int = 2000,
    seed: int | None = 0,
    confidence: float = 0.95,
    paired: bool = False,
) -> BootstrapDifference:
    """Percentile-bootstrap interval for ``stat(b) − stat(a)``.

    For skewed metrics (latency, cost, tokens) where a median or p95 says
    more than a mean and no closed-form standard error fits.

    Args:
        a: Sample of variant A.
        b: Sample of variant B.
        stat: ``"mean"``, ``"median"`` or ``"p95"`` (numpy's default linear
            quantile).
        n_boot: Number of resamples.
        seed: Seed for ``numpy.random.default_rng``; None for fresh entropy.
        confidence: Confidence level of the interval.
        paired: Resample items jointly (``a`` and ``b`` aligned by item)
            instead of each sample on its own.

    Returns:
        The statistic on each sample, their difference and the interval. NaN
        and infinite values are dropped (pairwise when paired); if either
        sample is then empty, the numbers are NaN.

    Raises:
        ValueError: For an unknown ``stat``, ``n_boot`` < 1, a confidence not
            between 0 and 1, or paired samples of different lengths.
    """
    if stat not in BOOTSTRAP_STATS:
        raise ConfigError(f"unknown stat {stat!r}; use one of {', '.join(BOOTSTRAP_STATS)}")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}")
    _check_confidence(confidence)
    xa = _as_floats(a, "a")
    xb = _as_floats(b, "b")
    if paired:
        _check_same_length(xa, xb, "a", "b")
        keep = np.isfinite(xa) & np.isfinite(xb)
        xa, xb = xa[keep], xb[keep]
    else:
        xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    n_a, n_b = len(xa), len(xb)

    def result(stat_a: float, stat_b: float, low: float, high: float) -> BootstrapDifference:
        return BootstrapDifference(
            stat=stat,
            a=stat_a,
            b=stat_b,
            diff=stat_b - stat_a,
            ci_low=low,
            ci_high=high,
            n_a=n_a,
            n_b=n_b,
            n_boot=n_boot,
            seed=seed,
        )

    if n_a == 0 or n_b == 0:
        return result(NAN, NAN, NAN, NAN)

    q = _QUANTILE_OF.get(stat)
    point = (lambda x: float(np.mean(x))) if q is None else (lambda x: float(np.quantile(x, q)))
    resample_a, resample_b = _Resampler(xa, stat, paired), _Resampler(xb, stat, paired)
    rng = np.random.default_rng(seed)
    # int32 indices are several times cheaper to draw than int64, the bulk of the work.
    index_type = np.int32 if max(n_a, n_b) < 2**31 else np.int64
    diffs = []
    for rows in _chunks(n_boot, n_a if paired else n_a + n_b):
        if paired:
            # Cast once here rather than once per side.
            idx = rng.integers(0, n_a, size=(rows, n_a), dtype=index_type).astype(np.intp)
            diffs.append(resample_b(idx) - resample_a(idx))
        else:
            idx_a = rng.integers(0, n_a, size=(rows, n_a), dtype=index_type)
            idx_b = rng.integers(0, n_b, size=(rows, n_b), dtype=index_type)
            diffs.append(resample_b(idx_b) - resample_a(idx_a))
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.concatenate(diffs), [tail, 1 - tail])
    return result(point(xa), point(xb), float(low), float(high))


def mann_whitney(a: Any, b: Any) -> tuple[float, float]:
    """Mann–Whitney U test of two independent samples.

    Args:
        a: Sample of variant A.
        b: Sample of variant B.

    Returns:
        ``(U, p)``: the U statistic of ``a`` and the two-sided p-value of
        ``scipy.stats.mannwhitneyu``: its normal approximation with tie and
        continuity corrections computed here (the same arithmetic, so the same
        values), and its exact test, from scipy, when a sample has at most 8
        values and none are tied. NaN and infinite values are dropped;
        ``(nan, nan)`` when either sample is then empty.
    """
    xa = _as_floats(a, "a")
    xb = _as_floats(b, "b")
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    if len(xa) == 0 or len(xb) == 0:
        return NAN, NAN
    n1, n2 = len(xa), len(xb)
    values, inverse, counts = np.unique(np.concatenate([xa, xb]), return_inverse=True, return_counts=True)
    if (n1 <= 8 or n2 <= 8) and counts.max() == 1:
        from scipy import stats

        result = stats.mannwhitneyu(xa, xb, alternative="two-sided")
        return float(result.statistic), float(result.pvalue)
    # Average ranks: a run of t tied values shares the mean of the ranks it spans.
    ends = np.cumsum(counts).astype(float)
    ranks = (ends - (counts - 1) / 2)[inverse]
    u1 = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
    u = max(u1, n1 * n2 - u1)
    n = n1 + n2
    t = counts.astype(float)
    tie_term = float(np.sum(t**3 - t))
    with np.errstate(divide="ignore", invalid="ignore"):  # every value tied: s = 0, z = ±inf, p = 1 as scipy says
        s = np.sqrt(np.float64(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))))
        z = np.float64(u - n1 * n2 / 2 - 0.5) / s
    return u1, min(max(2 * float(_sp.ndtr(-z)), 0.0), 1.0)


# --- power -------------------------------------------------------------------


def _difference_variance(sd_a: float, sd_b: float, correlation: float) -> float:
    for name, value in (("sd_a", sd_a), ("sd_b", sd_b)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if not -1 <= correlation <= 1:
        raise ConfigError(f"correlation must be between -1 and 1, got {correlation!r}")
    variance = sd_a**2 + sd_b**2 - 2 * correlation * sd_a * sd_b
    # Perfectly correlated equal spreads can round to a tiny negative number.
    return max(0.0, variance)


def _z_sum(alpha: float, power: float) -> float:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (exclusive), got {alpha!r}")
    if not 0 < power < 1:
        raise ConfigError(f"power must be between 0 and 1 (exclusive), got {power!r}")
    return _normal_quantile(1 - alpha / 2) + _normal_quantile(power)


def minimum_detectable_effect(
    sd_a: float,
    sd_b: float,
    correlation: float,
    n: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest true difference a paired comparison of n items detects.

    The inverse of `sample_size_needed`:
    ``(z_{1-alpha/2} + z_power) * sqrt((sd_a² + sd_b² − 2·rho·sd_a·sd_b) / n)``.

    Args:
        sd_a: Standard deviation of A's per-item scores.
        sd_b: Standard deviation of B's per-item scores.
        correlation: Correlation between A's and B's per-item scores.
        n: Number of items.
        alpha: Two-sided significance level.
        power: Probability of detecting the effect.

    Returns:
        The effect size, in the scores' units; 0.0 when the differences have
        no variance.

    Raises:
        ValueError: For n < 1, a negative or non-finite sd, a correlation
            outside [-1, 1], or alpha or power outside (0, 1).
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    variance = _difference_variance(sd_a, sd_b, correlation)
    return _z_sum(alpha, power) * math.sqrt(variance / n)


def sample_size_needed(
    effect: float,
    sd_a: float,
    sd_b: float,
    correlation: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Items a paired comparison needs to detect ``effect``.

    ``n = (z_{1-alpha/2} + z_power)² · (sd_a² + sd_b² − 2·rho·sd_a·sd_b) / effect²``,
    rounded up.

    Args:
        effect: The true difference to detect; its sign does not matter.
        sd_a: Standard deviation of A's per-item scores.
        sd_b: Standard deviation of B's per-item scores.
        correlation: Correlation between A's and B's per-item scores.
        alpha: Two-sided significance level.
        power: Probability of detecting the effect.

    Returns:
        The number of items, at least 1 (1 when the differences have no
        variance).

    Raises:
        ValueError: If ``effect`` is 0 or not finite (no finite sample detects
            a zero effect), or for the invalid inputs `minimum_detectable_effect`
            refuses.
    """
    if not math.isfinite(effect) or effect == 0:
        raise ConfigError(
            f"effect must be a non-zero finite difference, got {effect!r}: "
            "no number of items detects a zero effect"
        )
    variance = _difference_variance(sd_a, sd_b, correlation)
    n = _z_sum(alpha, power) ** 2 * variance / effect**2
    # Shave rounding error so an n computed from minimum_detectable_effect(n)
    # comes back as n, not n + 1.
    return max(1, math.ceil(n * (1 - 1e-9)))


def detectable_effect_from_se(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference a test with standard error ``se`` on ``df`` degrees of freedom detects.

    ``(t_{1-alpha/2, df} + t_{power, df}) * se``: the same t reference as the
    interval, so with clustered standard errors (df = clusters − 1) it says what
    the clustered interval can resolve, which a count of items overstates.
    """
    if not (math.isfinite(se) and se >= 0):
        raise ConfigError(f"se must be a finite number >= 0, got {se!r}")
    if not df >= 1:
        raise ConfigError(f"df must be at least 1, got {df!r}")
    _z_sum(alpha, power)  # validates alpha and power
    return float((_t_quantile(1 - alpha / 2, df) + _t_quantile(power, df)) * se)


# --- several comparisons, preferences, words ---------------------------------


def holm(p_values: Any) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values.

    Controls the chance of any false positive across the comparisons, and is
    never less powerful than plain Bonferroni.

    Args:
        p_values: P-values, each in [0, 1]; NaN for a comparison that has none.

    Returns:
        Adjusted p-values in the input's order and shape, monotone in the
        raw p-values and capped at 1. NaN stays NaN and does not count
        towards the number of comparisons.

    Raises:
        ValueError: If a p-value lies outside [0, 1].
    """
    p = np.asarray(p_values, dtype=float)
    flat = p.ravel()
    present = np.flatnonzero(~np.isnan(flat))
    values = flat[present]
    outside = values[(values < 0) | (values > 1)]
    if len(outside):
        raise ConfigError(f"p-values must lie in [0, 1], got {outside[0]!r}")
    m = len(values)
    order = np.argsort(values, kind="stable")
    scaled = (m - np.arange(m)) * values[order]
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.full(flat.shape, np.nan)
    out[present[order]] = adjusted_sorted
    return out.reshape(p.shape)


def preference(wins_b: int, wins_a: int, ties: int = 0, confidence: float = 0.95) -> Preference:
    """Summarise pairwise preferences of B over A.

    Args:
        wins_b: Comparisons B won.
        wins_a: Comparisons A won.
        ties: Comparisons neither won; reported but left out of the rate and test.
        confidence: Confidence level of the Wilson interval.

    Returns:
        B's win rate among decided comparisons, its Wilson interval and the
        exact two-sided sign-test p-value.

    Raises:
        ValueError: If a count is negative.
    """
    for name, value in (("wins_b", wins_b), ("wins_a", wins_a), ("ties", ties)):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
    decided = wins_a + wins_b
    low, high = wilson_interval(wins_b, decided, confidence)
    return Preference(
        wins_b=int(wins_b),
        wins_a=int(wins_a),
        ties=int(ties),
        n=int(decided + ties),
        win_rate=wins_b / decided if decided else NAN,
        ci_low=low,
        ci_high=high,
        p_value=_sign_test(int(wins_b), int(decided)),
    )


def verdict(
    diff: float,
    ci_low: float,
    ci_high: float,
    p_value: float,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    a: str = "A",
    b: str = "B",
) -> str:
    """Put a comparison of B against A into words.

    The difference counts only when ``p_value < alpha`` and the interval
    excludes 0 on the side of ``diff``; anything else, NaN included, is no
    detectable difference.

    Args:
        diff: Estimated difference B − A.
        ci_low: Lower end of its interval.
        ci_high: Upper end of its interval.
        p_value: P-value of the difference.
        alpha: Significance level.
        higher_is_better: False for metrics like latency or cost.
        a: Name of variant A (the verdicts name only B, so it is unused
            today; callers pass it for symmetry).
        b: Name of variant B.

    Returns:
        ``"{b} better"``, ``"{b} worse"`` or ``"no detectable difference at this n"``.
    """
    significant = p_value < alpha
    if significant and diff > 0 and ci_low > 0:
        return f"{b} better" if higher_is_better else f"{b} worse"
    if significant and diff < 0 and ci_high < 0:
        return f"{b} worse" if higher_is_better else f"{b} better"
    return "no detectable difference at this n"
