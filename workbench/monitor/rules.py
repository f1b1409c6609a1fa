"""Alert rules: what to watch, in which scopes, and when it is an incident.

Two families. **Baseline-relative detectors** compare the last few minutes of
each scope with its own recent past and fire only when an exact (or bounding)
test says the change is very unlikely to be chance *and* the change is big
enough to matter:

- `ErrorRateSpike`: errors in the window against the trailing baseline
  (hypergeometric: 2 errors in 10 calls is not an incident; 50 in 500 against
  a 1% baseline is).
- `LatencyShift`: the p50 and p95 of ok calls against the trailing baseline
  (Mood's quantile test: how many window calls lie above the pooled quantile).
- `CostPerCall`: the cost per call against the trailing baseline (the same
  quantile test at the median, plus a minimum rise in the mean).
- `SpendAnomaly`: the spend in the window against the same minutes on up to 7
  earlier days (a seasonal baseline; Bennett's bound for the p-value).
- `QualityDrop`: the mean production score of a scorer against its trailing
  baseline (exact for pass/fail scorers, Welch otherwise), with a CI.

**Thresholds** (`Threshold`) fire when a metric crosses a fixed value, with a
minimum number of calls so one slow call in a quiet hour is not an incident.

The false-alarm rate is stated, not hoped for. Each baseline-relative rule
has ``false_alarms_per_week`` (default 0.5): the test level of one scope at
one check is that figure divided by the checks in a week (one a minute:
10,080), the number of scopes the rule watches, and the tests it makes per
scope (two for p50 and p95). That is a Bonferroni bound over every scope and
every minute, so the expected false alarms of a rule in a quiet week stay at
most the target however many scopes there are; it is conservative, since
neighbouring checks share most of their window. Every scope is evaluated by
the same vectorised pass over per-minute sums (see ``_grid.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np

from .. import _format
from ..errors import ConfigError
from . import _significance as sig
from ._grid import DAY_MINUTES, Grid, hist_quantile, log_edges, windowed

CHECKS_PER_WEEK = 7 * DAY_MINUTES
"""Checks in a week at one a minute: the multiple-testing count over time."""
MIN_BAD_CALLS = 5
"""An open alert stays open only while its window has at least this many calls showing the problem."""
HOLD = 0.5
"""An open alert stays open while its window is at least this far (as a share) from the baseline to the opening bar."""
LATENCY_EDGES = log_edges(1.0, 1e7, 1.05)
"""Latency bins (ms): 5% wide from 1 ms to about 3 hours; quantiles shown from them are within 2.5%."""
COST_EDGES = log_edges(1e-8, 1e2, 1.05)
"""Cost-per-call bins (dollars), 5% wide."""

SCOPE_KEYS = ("model", "prompt", "prompt_name", "user_id", "provider", "label")
"""Scope keys besides ``metadata.KEY``. ``prompt`` is name@version; ``label`` is the
prompt label (production, staging, ...) that pointed at the call's version when it was made."""
_ALIASES = {"user": "user_id", "users": "user_id", "models": "model", "prompts": "prompt", "version": "prompt"}

_DURATION_FIELDS = ("window", "cooldown", "resolve_after", "baseline")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)\s*$", re.I)
_UNIT_MINUTES = {"s": 1 / 60, "sec": 1 / 60, "m": 1, "min": 1, "h": 60, "hr": 60, "d": DAY_MINUTES, "w": 7 * DAY_MINUTES}


def minutes(value: Any, what: str) -> int:
    """A duration as whole minutes: ``"10m"``, ``"6h"``, ``"2d"``, a timedelta, or minutes as a number."""
    if isinstance(value, timedelta):
        total = value.total_seconds() / 60
    elif isinstance(value, bool):
        raise ConfigError(f"{what} must be a duration such as '10m' or '6h', not {value!r}")
    elif isinstance(value, (int, float)):
        total = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        total = float(m.group(1)) * _UNIT_MINUTES[m.group(2).lower()]
    else:
        raise ConfigError(f"{what} must be a duration such as '10m', '6h' or '2d' (or minutes as a number), not {value!r}")
    if total <= 0 or abs(total - round(total)) > 1e-9:
        raise ConfigError(f"{what} must be a positive whole number of minutes, got {value!r}; checks run on a one-minute grid")
    return int(round(total))


def duration_text(mins: int) -> str:
    """``10m``, ``6h``, ``1d``, ``90m``: the shortest exact spelling."""
    for unit, size in (("w", 7 * DAY_MINUTES), ("d", DAY_MINUTES), ("h", 60)):
        if mins % size == 0:
            return f"{mins // size}{unit}"
    return f"{mins}m"


def scope_keys(by: Any) -> tuple[str, ...]:
    """``by`` as a tuple of scope keys: None or "all" for all traffic as one scope."""
    if by is None or by == "all" or by == ():
        return ()
    items = [by] if isinstance(by, str) else list(by)
    out = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"a scope key must be a non-empty string, got {item!r}")
        key = _ALIASES.get(item, item)
        if key.startswith("metadata."):
            if len(key) == len("metadata."):
                raise ConfigError("metadata scope needs a key name, e.g. by='metadata.region'")
        elif key not in SCOPE_KEYS:
            raise ConfigError(
                f"unknown scope key {item!r}; use one of {', '.join(SCOPE_KEYS)}, 'metadata.KEY', or None for all traffic"
            )
        if key not in out:
            out.append(key)
    return tuple(out)


def scope_text(scope: Mapping[str, Any]) -> str:
    """``prompt=support@2, model=claude-haiku-4-5``; ``all traffic`` for the one global scope."""
    if not scope:
        return "all traffic"
    return ", ".join(f"{k}={'(none)' if v is None else v}" for k, v in scope.items())


# -- evaluations ---------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """One rule evaluated for every scope at every check time (arrays of shape (scopes, times))."""

    rule: Rule
    scopes: list[dict[str, Any]]
    times_us: np.ndarray
    fire: np.ndarray
    """Whether an incident would open (tests, minimum counts and effect sizes all met)."""
    p: np.ndarray
    """The p-value of the test behind ``which`` (NaN for thresholds)."""
    which: np.ndarray
    """Index into ``metrics`` of the test that fired, or of the strongest evidence."""
    metrics: tuple[str, ...]
    observed: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray]
    bar: dict[str, np.ndarray]
    """The value ``observed`` must reach (or fall to) to open an alert (its effect-size bar)."""
    n: np.ndarray
    """Calls (or scores) in the window."""
    n_base: np.ndarray
    """Calls (or scores) in the baseline."""
    level: float
    """The test level of one scope at one check (NaN for thresholds)."""
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def metric(self, s: int, t: int) -> str:
        return self.metrics[int(self.which[s, t])]

    def hold(self, s: int, t: int, metric: str) -> float:
        """The value an open alert's window must still reach to stay open: halfway from the baseline to the bar.

        Lower than the bar that opened it (hysteresis), so an incident just
        above the bar does not flap between resolved and open with the noise.
        """
        base, bar = self.baseline[metric][s, t], self.bar[metric][s, t]
        if not np.isfinite(base):
            return float(bar)
        return float(base + HOLD * (bar - base))

    def bad(self, s: int, t: int, metric: str, bar: float | None) -> bool:
        """Whether the window at (s, t) still shows the problem against ``bar`` (None: the current hold value)."""
        if self.n[s, t] < MIN_BAD_CALLS or metric not in self.observed:
            return False
        value = self.observed[metric][s, t]
        limit = self.hold(s, t, metric) if bar is None or not self.rule.frozen_bar else bar
        if not (np.isfinite(value) and np.isfinite(limit)):
            return False
        return bool(value >= limit) if self.rule.direction(metric) > 0 else bool(value <= limit)

    def stats(self, s: int, t: int) -> dict[str, Any]:
        """The figures an alert stores for (s, t)."""
        m = self.metric(s, t)
        return {
            "metric": m,
            "observed": _float(self.observed[m][s, t]),
            "baseline": _float(self.baseline[m][s, t]),
            "bar": _float(self.hold(s, t, m)),
            "p_value": _float(self.p[s, t]),
            "n": int(self.n[s, t]),
            "n_baseline": int(self.n_base[s, t]),
            "level": _float(self.level),
            "statistic": self.rule.describe(self, s, t),
        }


def _level_text(ev: Evaluation, tests: str = "") -> str:
    """``under its test level of 1 in 20,160 (0.5 false alarms a week over 1 scope)``."""
    n = len(ev.scopes)
    spread = f"{_format.count(n)} scope{'s' if n != 1 else ''}" + (f", testing {tests}" if tests else "")
    return (
        f"under its test level of 1 in {_format.count(round(1 / ev.level))} "
        f"({_format.num(ev.rule.false_alarms_per_week, 2)} false alarms a week over {spread})"
    )


def _float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


# -- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class Rule:
    """What every rule has. Durations are ``"10m"``, ``"6h"``, a timedelta or minutes; stored as minutes."""

    kind: ClassVar[str] = ""
    source: ClassVar[str] = "traces"
    """``traces`` (production model calls) or ``scores`` (production quality scores)."""
    frozen_bar: ClassVar[bool] = True
    """Whether an open alert is judged against the baseline it opened with (not one the incident itself inflates)."""

    name: str = ""
    """Unique among a monitor's rules; defaults to the kind."""
    by: Any = ("prompt_name", "model")
    """Scope keys: model, prompt (name@version), prompt_name, user_id, provider, label, metadata.KEY; None for all traffic."""
    window: Any = "10m"
    """How much recent traffic each check looks at."""
    min_calls: int = 20
    """Fewer calls than this in the window never open an alert."""
    cooldown: Any = "30m"
    """After an alert resolves, the same rule and scope stay quiet this long."""
    resolve_after: Any = "15m"
    """An alert resolves when its window has not shown the problem for this long."""
    false_alarms_per_week: float = 0.5
    """Expected false alarms per week of per-minute checks, all scopes together (baseline-relative rules)."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "name", self.name or self.kind)
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a rule name must be a non-empty string, got {self.name!r}")
        set_(self, "by", scope_keys(self.by))
        for f in ("window", "cooldown", "resolve_after"):
            set_(self, f, minutes(getattr(self, f), f"{self.kind} rule {self.name!r}: {f}"))
        if not isinstance(self.min_calls, int) or self.min_calls < 1:
            raise ConfigError(f"rule {self.name!r}: min_calls must be a whole number >= 1, got {self.min_calls!r}")
        if not 0 < float(self.false_alarms_per_week) <= 100:
            raise ConfigError(
                f"rule {self.name!r}: false_alarms_per_week must be above 0 (e.g. 0.25), got {self.false_alarms_per_week!r}"
            )

    # -- what subclasses provide ------------------------------------------------------------------

    def lookback(self) -> int:
        """Minutes of history one check reads, window included."""
        return self.window

    def slices(self) -> list[tuple[int, int]]:
        """Minute ranges before a check time it reads, as (start, end) offsets back from it (start > end)."""
        return [(self.lookback(), 0)]

    def evaluate(self, grid: Grid) -> Evaluation:
        raise NotImplementedError

    def describe(self, ev: Evaluation, s: int, t: int) -> str:
        raise NotImplementedError

    def direction(self, metric: str) -> int:
        """+1 when a rise is bad, -1 when a drop is."""
        return 1

    # -- shared ----------------------------------------------------------------------------------

    def level(self, n_scopes: int, tests: int = 1) -> float:
        """The test level of one scope at one check: the weekly false-alarm target spread over every test."""
        return float(self.false_alarms_per_week) / (CHECKS_PER_WEEK * max(n_scopes, 1) * tests)

    def spec(self) -> dict[str, Any]:
        """A TOML-able dict; ``rule_from_spec`` rebuilds an equal rule."""
        out: dict[str, Any] = {"type": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _DURATION_FIELDS:
                value = duration_text(value)
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:  # TOML has no null: a missing setting means the default
                out[f.name] = value
        return out

    def with_(self, **changes: Any) -> Rule:
        """A copy with some settings changed."""
        return replace(self, **changes)

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value, default = getattr(self, f.name), f.default
            if f.name in _DURATION_FIELDS:
                value, default = duration_text(value), duration_text(minutes(default, f.name))
            elif f.name == "by":
                default = scope_keys(default)
            elif f.name == "name":
                default = self.kind
            if value != default:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, kw_only=True, repr=False)
class _Trailing(Rule):
    """A rule that compares the window with the ``baseline`` just before it."""

    baseline: Any = "6h"
    """The trailing stretch before the window that counts as normal."""
    min_baseline: int = 100
    """Fewer calls than this in the baseline and the scope is too new to judge."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "baseline", minutes(self.baseline, f"{self.kind} rule {self.name!r}: baseline"))
        if not isinstance(self.min_baseline, int) or self.min_baseline < 1:
            raise ConfigError(f"rule {self.name!r}: min_baseline must be a whole number >= 1, got {self.min_baseline!r}")

    def lookback(self) -> int:
        return self.window + self.baseline


@dataclass(frozen=True, kw_only=True, repr=False)
class ErrorRateSpike(_Trailing):
    """More errors in the window than the trailing baseline explains.

    Opens when, in one scope: at least ``min_calls`` calls and ``min_errors``
    errors in the window; the window's error rate is at least ``min_ratio``
    times the baseline's and ``min_increase`` above it; and the hypergeometric
    p-value (the window's calls as a random draw from window plus baseline) is
    below the rule's test level.
    """

    kind: ClassVar[str] = "error_rate"

    window: Any = "15m"
    min_errors: int = 5
    """Fewer errors than this in the window never open an alert."""
    min_ratio: float = 2.0
    """The window's error rate must be at least this many times the baseline's."""
    min_increase: float = 0.02
    """... and at least this much above it (0.02 = 2 percentage points)."""

    def evaluate(self, grid: Grid) -> Evaluation:
        tl = grid.timeline
        err = grid.mask("error", _status_is("error"))
        calls = grid.cumulative("calls")
        errors = grid.cumulative("errors", where=err)
        W, B = self.window, self.baseline
        n, k = windowed(calls, tl.ends, W), windowed(errors, tl.ends, W)
        N, K = windowed(calls, tl.ends, B, W), windowed(errors, tl.ends, B, W)
        rate, base = _ratio(k, n), _ratio(K, N)
        bar = np.maximum(self.min_ratio * base, base + self.min_increase)
        candidate = (n >= self.min_calls) & (k >= self.min_errors) & (N >= self.min_baseline) & (rate >= bar)
        p = sig.excess_in_window(k, n, k + K, n + N, where=candidate)
        level = self.level(grid.n_scopes)
        fire = candidate & (p <= level)
        S, T = n.shape
        return Evaluation(
            self, grid.scopes, tl.times_us, fire, p, np.zeros((S, T), dtype=np.int64), ("error_rate",),
            {"error_rate": rate}, {"error_rate": base}, {"error_rate": bar}, n, N, level,
            {"errors": k, "base_errors": K},
        )

    def describe(self, ev: Evaluation, s: int, t: int) -> str:
        k, n = int(ev.extra["errors"][s, t]), int(ev.n[s, t])
        K, N = int(ev.extra["base_errors"][s, t]), int(ev.n_base[s, t])
        return (
            f"{_format.count(k)} errors in {_format.count(n)} calls ({_format.pct(ev.observed['error_rate'][s, t])}) "
            f"in {duration_text(self.window)} against {_format.pct(ev.baseline['error_rate'][s, t], 2)} "
            f"({_format.count(K)} of {_format.count(N)}) in the {duration_text(self.baseline)} before; "
            f"{_format.pvalue(ev.p[s, t])} (hypergeometric, one-sided), {_level_text(ev)}"
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class LatencyShift(_Trailing):
    """The window's p50 or p95 latency (ok calls) above the trailing baseline's.

    Mood's quantile test, exact given the pooled values: the threshold is the
    pooled (window plus baseline) quantile, and under no change the number of
    window calls above it is hypergeometric. Opens when, for p50 or p95: at
    least ``min_calls`` ok calls in the window, the window's quantile is at
    least ``min_ratio`` times the baseline's, and the p-value is below the
    test level (halved: two quantiles are tested).
    """

    kind: ClassVar[str] = "latency"

    quantiles: tuple[float, ...] = (0.5, 0.95)
    """Which latency quantiles to watch."""
    min_ratio: float = 1.25
    """The window's quantile must be at least this many times the baseline's."""

    def __post_init__(self) -> None:
        super().__post_init__()
        qs = tuple(float(q) for q in ([self.quantiles] if isinstance(self.quantiles, (int, float)) else self.quantiles))
        if not qs or any(not 0 < q < 1 for q in qs):
            raise ConfigError(f"rule {self.name!r}: quantiles must be between 0 and 1, e.g. (0.5, 0.95); got {self.quantiles!r}")
        object.__setattr__(self, "quantiles", qs)
        if self.min_ratio < 1:
            raise ConfigError(f"rule {self.name!r}: min_ratio must be at least 1 (1.25 = 25% slower), got {self.min_ratio!r}")

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(f"latency_p{round(q * 100)}" for q in self.quantiles)

    @property
    def _tests_text(self) -> str:
        names = [m.removeprefix("latency_") for m in self.metric_names]
        return " and ".join(names) if len(names) > 1 else ""

    def evaluate(self, grid: Grid) -> Evaluation:
        tl = grid.timeline
        S, T, Q = grid.n_scopes, len(tl.times_us), len(self.quantiles)
        W, B = self.window, self.baseline
        latency = grid.column("latency_ms")
        ok = grid.mask("ok_latency", _status_is("ok") & _col("latency_ms").is_not_null())
        obs, base, pv = (np.full((Q, S, T), np.nan) for _ in range(3))
        pv[:] = 1.0
        n, N = np.zeros((S, T)), np.zeros((S, T))
        rows = np.arange(T)
        for s, cur, bas in grid.window_histograms(latency, ok, LATENCY_EDGES, W, B):
            n[s], N[s] = cur.sum(axis=1), bas.sum(axis=1)
            enough = (n[s] >= self.min_calls) & (N[s] >= self.min_baseline)
            total = n[s] + N[s]
            pooled_cum = cur_cum = None
            for i, q in enumerate(self.quantiles):
                obs[i, s] = hist_quantile(cur, q, LATENCY_EDGES)
                base[i, s] = hist_quantile(bas, q, LATENCY_EDGES)
                candidate = enough & (obs[i, s] >= self.min_ratio * base[i, s])
                if not candidate.any():
                    continue
                if pooled_cum is None:
                    pooled_cum, cur_cum = np.cumsum(cur + bas, axis=1), np.cumsum(cur, axis=1)
                h = np.minimum((pooled_cum < (q * total)[:, None]).sum(axis=1), pooled_cum.shape[1] - 1)
                above_pooled = total - pooled_cum[rows, h]
                above_cur = n[s] - cur_cum[rows, h]
                pv[i, s] = sig.excess_in_window(above_cur, n[s], above_pooled, total, where=candidate)
        level = self.level(S, Q)
        bars = self.min_ratio * base
        enough = (n >= self.min_calls) & (N >= self.min_baseline)
        fires = enough[None] & (obs >= bars) & (pv <= level)
        # Report the test that fired with the smallest p-value (or the smallest p-value overall).
        score = np.where(fires, pv, pv + 2.0)
        which = np.argmin(score, axis=0) if Q else np.zeros((S, T), dtype=np.int64)
        p = np.take_along_axis(pv, which[None], axis=0)[0]
        names = self.metric_names
        return Evaluation(
            self, grid.scopes, tl.times_us, fires.any(axis=0), p, which, names,
            {m: obs[i] for i, m in enumerate(names)}, {m: base[i] for i, m in enumerate(names)},
            {m: bars[i] for i, m in enumerate(names)}, n, N, level,
        )

    def describe(self, ev: Evaluation, s: int, t: int) -> str:
        m = ev.metric(s, t)
        return (
            f"{m.replace('latency_', '')} {_format.ms(ev.observed[m][s, t])} over {_format.count(ev.n[s, t])} ok calls in "
            f"{duration_text(self.window)} against {_format.ms(ev.baseline[m][s, t])} over "
            f"{_format.count(ev.n_base[s, t])} in the {duration_text(self.baseline)} before "
            f"({_format.relative(ev.observed[m][s, t], ev.baseline[m][s, t])}); {_format.pvalue(ev.p[s, t])} "
            f"(Mood's quantile test, one-sided), {_level_text(ev, self._tests_text)}"
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class CostPerCall(_Trailing):
    """Calls got more expensive: a prompt change, a longer context, a pricier model.

    Opens when the window has at least ``min_calls`` priced calls, their mean
    cost is at least ``min_ratio`` times the baseline's, and the median test
    (window calls above the pooled median, hypergeometric) is below the level.
    """

    kind: ClassVar[str] = "cost_per_call"

    window: Any = "15m"
    min_ratio: float = 1.2
    """The window's mean cost per call must be at least this many times the baseline's."""

    def evaluate(self, grid: Grid) -> Evaluation:
        tl = grid.timeline
        S, T = grid.n_scopes, len(tl.times_us)
        W, B = self.window, self.baseline
        cost = grid.column("cost_usd")
        priced = grid.mask("priced", _status_is("ok") & _col("cost_usd").is_not_null())
        dollars = grid.cumulative("dollars", weights=cost, where=priced)
        calls = grid.cumulative("priced", where=priced)
        n, N = windowed(calls, tl.ends, W), windowed(calls, tl.ends, B, W)
        mean = _ratio(windowed(dollars, tl.ends, W), n)
        base = _ratio(windowed(dollars, tl.ends, B, W), N)
        p = np.ones((S, T))
        bar = self.min_ratio * base
        candidate = (n >= self.min_calls) & (N >= self.min_baseline) & (mean >= bar)
        rows = np.arange(T)
        if candidate.any():
            for s, cur, bas in grid.window_histograms(cost, priced, COST_EDGES, W, B):
                if not candidate[s].any():
                    continue
                pooled_cum = np.cumsum(cur + bas, axis=1)
                total = n[s] + N[s]
                h = np.minimum((pooled_cum < (0.5 * total)[:, None]).sum(axis=1), pooled_cum.shape[1] - 1)
                p[s] = sig.excess_in_window(
                    n[s] - np.cumsum(cur, axis=1)[rows, h], n[s], total - pooled_cum[rows, h], total, where=candidate[s]
                )
        level = self.level(S)
        fire = candidate & (p <= level)
        return Evaluation(
            self, grid.scopes, tl.times_us, fire, p, np.zeros((S, T), dtype=np.int64), ("cost_per_call",),
            {"cost_per_call": mean}, {"cost_per_call": base}, {"cost_per_call": bar}, n, N, level,
        )

    def describe(self, ev: Evaluation, s: int, t: int) -> str:
        m = "cost_per_call"
        return (
            f"{_format.money(ev.observed[m][s, t])} a call over {_format.count(ev.n[s, t])} priced calls in "
            f"{duration_text(self.window)} against {_format.money(ev.baseline[m][s, t])} over "
            f"{_format.count(ev.n_base[s, t])} in the {duration_text(self.baseline)} before "
            f"({_format.relative(ev.observed[m][s, t], ev.baseline[m][s, t])}); {_format.pvalue(ev.p[s, t])} "
            f"(median test, one-sided), {_level_text(ev)}"
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class SpendAnomaly(Rule):
    """Spend in the window far above the same minutes on earlier days (a seasonal baseline).

    Traffic has a daily rhythm, so the baseline is the same clock time on up to
    ``days`` earlier days on which the scope already existed (at least one is
    needed). Opens when the spend is at least ``min_ratio`` times the seasonal
    mean, at least ``min_spend_per_hour`` as an hourly rate, and Bennett's bound
    on the p-value is below the level. Catches traffic surges (a retry loop, a
    crawler) as well as pricier calls. Shown as dollars per hour.
    """

    kind: ClassVar[str] = "spend"
    frozen_bar: ClassVar[bool] = False

    window: Any = "10m"
    days: int = 7
    """Earlier days the seasonal baseline averages over."""
    min_ratio: float = 1.5
    """The window's spend must be at least this many times the seasonal mean."""
    min_spend_per_hour: float = 0.0
    """Never alert below this hourly spend (dollars)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.days, int) or not 1 <= self.days <= 28:
            raise ConfigError(f"rule {self.name!r}: days must be a whole number from 1 to 28, got {self.days!r}")

    def lookback(self) -> int:
        return self.days * DAY_MINUTES + self.window

    def slices(self) -> list[tuple[int, int]]:
        return [(self.window, 0)] + [(d * DAY_MINUTES + self.window, d * DAY_MINUTES) for d in range(1, self.days + 1)]

    def evaluate(self, grid: Grid) -> Evaluation:
        tl = grid.timeline
        W = self.window
        cost = grid.column("cost_usd")
        priced = grid.mask("priced", _status_is("ok") & _col("cost_usd").is_not_null())
        dollars = grid.cumulative("dollars", weights=cost, where=priced)
        squares = grid.cumulative("dollars2", weights=cost * cost, where=priced)
        calls = grid.cumulative("priced", where=priced)
        peak = grid.window_max("cost", cost, priced, W)
        ends = tl.ends
        cur, cur_sq, n = windowed(dollars, ends, W), windowed(squares, ends, W), windowed(calls, ends, W)
        pooled_max = peak[:, np.clip(ends, 0, peak.shape[1] - 1)]
        first = grid.first_minute()[:, None]
        past = np.zeros_like(cur)
        past_sq = np.zeros_like(cur)
        past_n = np.zeros_like(cur)
        days = np.zeros_like(cur)
        for d in range(1, self.days + 1):
            start = ends - d * DAY_MINUTES - W
            ok = (start >= 0) & (start >= first)
            shift = d * DAY_MINUTES
            past += np.where(ok, windowed(dollars, ends, W, shift), 0)
            past_sq += np.where(ok, windowed(squares, ends, W, shift), 0)
            past_n += np.where(ok, windowed(calls, ends, W, shift), 0)
            slot = np.clip(ends - shift, 0, peak.shape[1] - 1)
            pooled_max = np.maximum(pooled_max, np.where(ok, peak[:, slot], 0))
            days += ok
        share = 1.0 / (days + 1)
        p = np.where(days > 0, sig.spend_excess(cur, cur + past, cur_sq + past_sq, pooled_max, share), 1.0)
        per_hour = 60.0 / W
        observed = cur * per_hour
        base = np.where(days > 0, _ratio(past, days) * per_hour, np.nan)
        bar = np.maximum(self.min_ratio * base, self.min_spend_per_hour)
        level = self.level(grid.n_scopes)
        fire = (days > 0) & (n >= self.min_calls) & (observed >= bar) & (p <= level)
        S, T = cur.shape
        return Evaluation(
            self, grid.scopes, tl.times_us, fire, p, np.zeros((S, T), dtype=np.int64), ("spend_per_hour",),
            {"spend_per_hour": observed}, {"spend_per_hour": base}, {"spend_per_hour": bar}, n,
            _ratio(past_n, days), level, {"days": days},
        )

    def describe(self, ev: Evaluation, s: int, t: int) -> str:
        m = "spend_per_hour"
        d = int(ev.extra["days"][s, t])
        return (
            f"{_format.money(ev.observed[m][s, t])}/h over {_format.count(ev.n[s, t])} calls in the last "
            f"{duration_text(self.window)} against {_format.money(ev.baseline[m][s, t])}/h at this time on "
            f"{d} earlier day{'s' if d != 1 else ''} ({_format.relative(ev.observed[m][s, t], ev.baseline[m][s, t])}); "
            f"{_format.pvalue(ev.p[s, t])} (Bennett bound, one-sided), {_level_text(ev)}"
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class QualityDrop(_Trailing):
    """The mean production score of a scorer fell against its trailing baseline.

    Reads the scores ``bench.monitor.score(...)`` stores against sampled
    production traces (each score is placed at its trace's start time). Pass/fail
    scorers are tested exactly (failures in the window, hypergeometric), others
    with Welch's t-test. Opens when the window has ``min_calls`` scores, its
    mean is at least ``min_drop`` below the baseline's, and the p-value is below
    the level; the alert shows the difference with its 95% CI.
    """

    kind: ClassVar[str] = "quality"
    source: ClassVar[str] = "scores"

    window: Any = "15m"
    baseline: Any = "24h"
    min_calls: int = 20
    min_baseline: int = 50
    min_drop: float = 0.1
    """The window's mean must be at least this much below the baseline's (scores run 0 to 1)."""
    scorer: str | None = None
    """Only this scorer (None: every scorer found, each its own scope)."""

    def direction(self, metric: str) -> int:
        return -1

    def evaluate(self, grid: Grid) -> Evaluation:
        tl = grid.timeline
        W, B = self.window, self.baseline
        value = grid.column("value")
        valid = grid.mask("scored", _col("value").is_not_null())
        binary = grid.mask("binary_scorer", _col("_binary"))
        n_cum = grid.cumulative("scores", where=valid)
        sum_cum = grid.cumulative("score_sum", weights=value, where=valid)
        sq_cum = grid.cumulative("score_sq", weights=value * value, where=valid)
        n, N = windowed(n_cum, tl.ends, W), windowed(n_cum, tl.ends, B, W)
        s1, S1 = windowed(sum_cum, tl.ends, W), windowed(sum_cum, tl.ends, B, W)
        s2, S2 = windowed(sq_cum, tl.ends, W), windowed(sq_cum, tl.ends, B, W)
        mean, base = _ratio(s1, n), _ratio(S1, N)
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(n > 1, (s2 - s1 * s1 / np.maximum(n, 1)) / (n - 1), np.nan)
            var_b = np.where(N > 1, (S2 - S1 * S1 / np.maximum(N, 1)) / (N - 1), np.nan)
        p_welch, se = sig.mean_drop(mean, np.maximum(var, 0), n, base, np.maximum(var_b, 0), N)
        # Pass/fail scorers: failures in the window against the pool, exactly.
        scope_binary = np.zeros(grid.n_scopes, dtype=bool)
        if grid.n_scopes:
            np.logical_or.at(scope_binary, grid.code, binary)
            all_binary = np.ones(grid.n_scopes, dtype=bool)
            np.logical_and.at(all_binary, grid.code, binary)
            scope_binary &= all_binary
        bar = base - self.min_drop
        candidate = (n >= self.min_calls) & (N >= self.min_baseline) & (mean <= bar)
        fails, FAILS = np.rint(n - s1), np.rint(N - S1)
        p_exact = sig.excess_in_window(fails, n, fails + FAILS, n + N, where=candidate & scope_binary[:, None])
        p = np.where(scope_binary[:, None], p_exact, p_welch)
        level = self.level(grid.n_scopes)
        fire = candidate & (p <= level)
        S, T = n.shape
        return Evaluation(
            self, grid.scopes, tl.times_us, fire, p, np.zeros((S, T), dtype=np.int64), ("quality",),
            {"quality": mean}, {"quality": base}, {"quality": bar}, n, N, level, {"se": se},
        )

    def describe(self, ev: Evaluation, s: int, t: int) -> str:
        m = "quality"
        diff = ev.observed[m][s, t] - ev.baseline[m][s, t]
        half = 1.959964 * ev.extra["se"][s, t]
        return (
            f"mean score {_format.num(ev.observed[m][s, t])} over {_format.count(ev.n[s, t])} scored calls in "
            f"{duration_text(self.window)} against {_format.num(ev.baseline[m][s, t])} over "
            f"{_format.count(ev.n_base[s, t])} in the {duration_text(self.baseline)} before: difference "
            f"{_format.num(diff, signed=True)} (95% CI {_format.interval(diff - half, diff + half, signed=True)}); "
            f"{_format.pvalue(ev.p[s, t])} (one-sided), {_level_text(ev)}"
        )


THRESHOLD_METRICS = ("error_rate", "latency_p50", "latency_p90", "latency_p95", "latency_p99",
                     "spend_per_hour", "cost_per_call", "quality")
"""What a `Threshold` can watch."""


@dataclass(frozen=True, kw_only=True, repr=False)
class Threshold(Rule):
    """A fixed limit: ``Threshold(metric="error_rate", above=0.05)``, ``Threshold(metric="latency_p95", above=2000)``.

    Metrics: error_rate (share), latency_p50/p90/p95/p99 (ms, ok calls: the
    share of calls slower than the limit is compared with 1 - q, exactly),
    spend_per_hour and cost_per_call (dollars), quality (a scorer's mean;
    use ``below=``). Opens when the window has ``min_calls`` calls and the
    metric is beyond the limit; no test, so choose the window and min_calls
    to suit your traffic.
    """

    kind: ClassVar[str] = "threshold"

    metric: str = "error_rate"
    above: float | None = None
    below: float | None = None
    window: Any = "5m"
    scorer: str | None = None
    """For metric="quality": which scorer (None: every scorer, each its own scope)."""

    def __post_init__(self) -> None:
        if not self.name and isinstance(self.metric, str):
            object.__setattr__(self, "name", f"{self.metric}-{'above' if self.above is not None else 'below'}")
        super().__post_init__()
        if self.metric not in THRESHOLD_METRICS:
            raise ConfigError(f"threshold rule {self.name!r}: unknown metric {self.metric!r}; use one of {', '.join(THRESHOLD_METRICS)}")
        if (self.above is None) == (self.below is None):
            raise ConfigError(f"threshold rule {self.name!r}: give exactly one of above= or below=")
        if self.metric.startswith("latency_") and self.below is not None:
            raise ConfigError(f"threshold rule {self.name!r}: latency thresholds take above= (milliseconds)")

    @property
    def source(self) -> str:  # type: ignore[override]
        return "scores" if self.metric == "quality" else "traces"

    @property
    def limit(self) -> float:
        return float(self.above if self.above is not None else self.below)  # type: ignore[arg-type]

    def direction(self, metric: str) -> int:
        return 1 if self.above is not None else -1

    def evaluate(self, grid: Grid) -> Evaluation:
        tl = grid.timeline
        W, m, limit = self.window, self.metric, self.limit
        if m == "error_rate":
            err = grid.mask("error", _status_is("error"))
            n = windowed(grid.cumulative("calls"), tl.ends, W)
            value = _ratio(windowed(grid.cumulative("errors", where=err), tl.ends, W), n)
        elif m.startswith("latency_"):
            q = int(m.split("_p")[1]) / 100
            latency = grid.column("latency_ms")
            ok = grid.mask("ok_latency", _status_is("ok") & _col("latency_ms").is_not_null())
            slow = ok & (np.nan_to_num(latency, nan=-1.0) > limit)
            n = windowed(grid.cumulative("ok_calls", where=ok), tl.ends, W)
            slower = _ratio(windowed(grid.cumulative(f"slower_than_{limit}", where=slow), tl.ends, W), n)
            # The q-quantile exceeds the limit exactly when more than (1 - q) of the calls are slower:
            # that decides; the quantile itself (from 5% bins) is what is shown.
            exact = slower > 1 - q
            value = np.full(n.shape, np.nan)
            for s, cur, _ in grid.window_histograms(latency, ok, LATENCY_EDGES, W):
                value[s] = hist_quantile(cur, q, LATENCY_EDGES)
        elif m in ("spend_per_hour", "cost_per_call"):
            priced = grid.mask("priced", _status_is("ok") & _col("cost_usd").is_not_null())
            dollars = windowed(grid.cumulative("dollars", weights=grid.column("cost_usd"), where=priced), tl.ends, W)
            if m == "spend_per_hour":
                n = windowed(grid.cumulative("calls"), tl.ends, W)
                value = dollars * 60.0 / W
            else:
                n = windowed(grid.cumulative("priced", where=priced), tl.ends, W)
                value = _ratio(dollars, n)
        else:  # quality
            valid = grid.mask("scored", _col("value").is_not_null())
            n = windowed(grid.cumulative("scores", where=valid), tl.ends, W)
            value = _ratio(windowed(grid.cumulative("score_sum", weights=grid.column("value"), where=valid), tl.ends, W), n)
        S, T = n.shape
        bar = np.full((S, T), limit)  # the baseline of a threshold is its limit: an open alert holds while beyond it
        if m.startswith("latency_"):
            beyond = exact
            extra = {"slower": slower}
        else:
            beyond = value > limit if self.above is not None else value < limit
            extra = {}
        fire = (n >= self.min_calls) & beyond
        return Evaluation(
            self, grid.scopes, tl.times_us, fire, np.full((S, T), np.nan), np.zeros((S, T), dtype=np.int64), (m,),
            {m: value}, {m: bar}, {m: bar}, n, np.zeros((S, T)), float("nan"), extra,
        )

    def describe(self, ev: Evaluation, s: int, t: int) -> str:
        m, value, n = self.metric, ev.observed[self.metric][s, t], _format.count(ev.n[s, t])
        side = "above" if self.above is not None else "below"
        if m.startswith("latency_"):
            q = int(m.split("_p")[1])
            share = ev.extra["slower"][s, t]
            return (f"{m.replace('latency_', '')} {_format.ms(value)}, above {_format.ms(self.limit)}: {_format.pct(share)} of "
                    f"{n} ok calls in {duration_text(self.window)} took longer (the limit allows {100 - q}%)")
        shown = {"error_rate": _format.pct, "quality": _format.num}.get(m, _format.money)
        unit = "/h" if m == "spend_per_hour" else ""
        return f"{m.replace('_', ' ')} {shown(value)}{unit} over {n} in {duration_text(self.window)}, {side} the limit {shown(self.limit)}{unit}"


def _col(name: str) -> Any:
    import polars as pl

    return pl.col(name)


def _status_is(status: str) -> Any:
    import polars as pl

    return pl.col("status").cast(pl.String) == status


# -- rule sets -----------------------------------------------------------------------------------

RULE_TYPES: dict[str, type[Rule]] = {
    cls.kind: cls for cls in (ErrorRateSpike, LatencyShift, CostPerCall, SpendAnomaly, QualityDrop, Threshold)
}


def default_rules(by: Any = ("prompt_name", "model")) -> list[Rule]:
    """Error spikes, latency shifts, cost per call, seasonal spend and quality drops, scoped ``by``."""
    return [
        ErrorRateSpike(by=by), LatencyShift(by=by), CostPerCall(by=by), SpendAnomaly(by=by), QualityDrop(by=by),
    ]


def rule_from_spec(spec: Mapping[str, Any], where: str = "rule") -> Rule:
    """Build a rule from a dict such as one ``[[rule]]`` table of a TOML file."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a table of settings, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in RULE_TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(RULE_TYPES)}, got {kind!r}")
    cls = RULE_TYPES[kind]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(spec) - known - {"type"})
    if unknown:
        raise ConfigError(f"{where} ({kind}): unknown setting(s) {', '.join(unknown)}; {kind} rules take: {', '.join(sorted(known))}")
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "type"}
    try:
        return cls(**args)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{where} ({kind}): {exc}") from None


def check_names(rules: Iterable[Rule]) -> list[Rule]:
    """The rules as a list, refusing two with one name (alerts are stored by rule name)."""
    out = list(rules)
    seen: dict[str, Rule] = {}
    for r in out:
        if not isinstance(r, Rule):
            raise ConfigError(f"{r!r} is not a monitor rule; use wb.monitor.ErrorRateSpike(...) and friends")
        if r.name in seen:
            raise ConfigError(f"two rules are named {r.name!r}; pass name=... to tell them apart")
        seen[r.name] = r
    return out


def scorer_filter(rules: Sequence[Rule]) -> set[str] | None:
    """Scorers the quality rules need (None: every scorer)."""
    wanted: set[str] = set()
    for r in rules:
        if r.source != "scores":
            continue
        name = getattr(r, "scorer", None)
        if name is None:
            return None
        wanted.add(name)
    return wanted
