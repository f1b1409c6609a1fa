"""The tests the detectors use, vectorised over scopes and check times (numpy and scipy).

Each returns a one-sided p-value that is valid whatever the traffic looks like,
so a rule's false-alarm rate can be set by its test level:

- `excess_in_window`: an exact conditional test (hypergeometric). Given the
  pooled calls of the current window and the baseline, and how many of them
  are "events" (errors, or calls above a threshold chosen from the pooled
  values), it asks how likely at least this many events fall in the window if
  the window's calls were a random draw from the pool. It needs no estimate of
  the baseline rate, so a short or empty baseline makes it cautious rather
  than jumpy (2 errors in 10 calls after 0 in 1,000 is p=0.0001, not 0).
- `spend_excess`: Bennett's inequality for a weighted sum of independent
  Bernoulli indicators, an upper bound on the p-value of the spend in a window
  against the same windows on earlier days, valid for any cost distribution.
- `mean_drop`: Welch's one-sided t-test for a drop in a mean score.
"""

from __future__ import annotations

import numpy as np


def excess_in_window(
    k: np.ndarray, n: np.ndarray, events: np.ndarray, pooled: np.ndarray, where: np.ndarray | None = None
) -> np.ndarray:
    """P(at least ``k`` events among ``n`` calls drawn from ``pooled`` calls holding ``events``).

    Arrays broadcast together; where ``n`` or ``pooled`` is 0 the p-value is 1.
    ``where`` limits the work to the cells that matter (scipy's hypergeometric
    tail costs tens of microseconds a cell); the others get 1.
    """
    from scipy.stats import hypergeom

    k, n, events, pooled = np.broadcast_arrays(
        *(np.rint(np.nan_to_num(np.asarray(a, dtype=np.float64))).astype(np.int64) for a in (k, n, events, pooled))
    )
    out = np.ones(k.shape, dtype=np.float64)
    live = (n > 0) & (pooled > 0) & (k > 0)
    if where is not None:
        live &= np.broadcast_to(where, k.shape)
    if live.any():
        out[live] = hypergeom.sf(k[live] - 1, pooled[live], events[live], n[live])
    return np.clip(out, 0.0, 1.0)


def spend_excess(
    current: np.ndarray, pooled_sum: np.ndarray, pooled_sq: np.ndarray, pooled_max: np.ndarray, share: np.ndarray
) -> np.ndarray:
    """An upper bound on P(window spend >= ``current``) if every pooled call fell in the window with chance ``share``.

    Under the null the window and the earlier same-time windows are equally
    busy and equally costly, so each pooled call landed in the current window
    independently with chance ``share = 1 / (days + 1)`` (a Poisson process
    conditioned on its total). Bennett: with variance v = share(1-share)Σc² and
    each term bounded by b = max(c)(1-share), P(S - E[S] >= t) <=
    exp(-(v/b²) h(b t / v)), h(u) = (1+u) ln(1+u) - u.
    """
    current, pooled_sum, pooled_sq, pooled_max, share = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (current, pooled_sum, pooled_sq, pooled_max, share))
    )
    out = np.ones(current.shape, dtype=np.float64)
    t = current - share * pooled_sum
    v = share * (1 - share) * pooled_sq
    b = pooled_max * (1 - share)
    live = (t > 0) & (v > 0) & (b > 0)
    if live.any():
        u = b[live] * t[live] / v[live]
        h = (1 + u) * np.log1p(u) - u
        out[live] = np.exp(-(v[live] / b[live] ** 2) * h)
    return np.clip(out, 0.0, 1.0)


def mean_drop(
    mean_cur: np.ndarray, var_cur: np.ndarray, n_cur: np.ndarray,
    mean_base: np.ndarray, var_base: np.ndarray, n_base: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Welch's one-sided p-value for ``mean_cur < mean_base``, and the standard error of the difference.

    Sample variances (ddof=1) in, NaN where a side has fewer than 2 values
    (the p-value is then 1).
    """
    from scipy.stats import t as student_t

    arrays = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (mean_cur, var_cur, n_cur, mean_base, var_base, n_base))
    )
    mc, vc, nc, mb, vb, nb = arrays
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = vc / nc, vb / nb
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a**2 / (nc - 1) + b**2 / (nb - 1))
        stat = (mc - mb) / se
    p = np.ones(mc.shape, dtype=np.float64)
    live = (nc >= 2) & (nb >= 2) & np.isfinite(stat) & (se > 0)
    if live.any():
        p[live] = student_t.cdf(stat[live], np.maximum(df[live], 1.0))
    # Both sides constant and different: the drop is certain (a t-test divides by zero).
    certain = (nc >= 2) & (nb >= 2) & (se == 0) & (mc < mb)
    p[certain] = 0.0
    return p, se
