"""Rules over frames at check times, and the life of an alert (open, still bad, resolved).

Pure: frames in, evaluations and alert records out; the store is `Monitor`'s
business. `evaluate` runs every rule at any number of check times in one
vectorised pass; `step` moves one alert by one check, and both
`Monitor.check` (one time, state from the file) and `replay` (many times,
state in memory) use it, so a replay is exactly what checks every minute
would have recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from .._canonical import canonical_json
from ._grid import MINUTE_US, Grid, Timeline
from .rules import Evaluation, Rule

_NO_ROWS = {
    "traces": {"_t": pl.Int64, "status": pl.String, "latency_ms": pl.Float64, "cost_usd": pl.Float64},
    "scores": {"_t": pl.Int64, "scorer": pl.String, "value": pl.Float64, "_binary": pl.Boolean},
}
"""What an absent source looks like: no rows, the columns the rules read."""


def grid_keys(rule: Rule) -> tuple[str, ...]:
    """The columns that make one scope of ``rule`` (a quality rule's scorer is part of its scope)."""
    return (*rule.by, "scorer") if rule.source == "scores" else tuple(rule.by)


def lookback(rules: Sequence[Rule]) -> int:
    """Minutes of history before the first check time that the rules read."""
    return max((r.lookback() for r in rules), default=0)


def evaluate(
    rules: Sequence[Rule],
    times_us: Sequence[int] | np.ndarray,
    traces: pl.DataFrame | None,
    scores: pl.DataFrame | None = None,
) -> list[Evaluation]:
    """Every rule at every check time.

    Args:
        rules: the rules.
        times_us: check times (microseconds since the epoch), whole minutes apart.
        traces: production calls with ``_t`` (microseconds), ``status``, ``latency_ms``,
            ``cost_usd`` and each rule's scope columns.
        scores: production scores with ``_t`` (the scored call's start), ``scorer``,
            ``value``, ``_binary`` and scope columns (for quality rules).
    """
    tl = Timeline.build(times_us, lookback(rules))
    grids: dict[tuple[str, tuple[str, ...]], Grid] = {}
    out = []
    for rule in rules:
        source = traces if rule.source == "traces" else scores
        keys = grid_keys(rule)
        key = (rule.source + ("" if getattr(rule, "scorer", None) is None else f":{rule.scorer}"), keys)
        if key not in grids:
            rows = source if source is not None else pl.DataFrame(schema=_NO_ROWS[rule.source])
            scorer = getattr(rule, "scorer", None)
            if rule.source == "scores" and scorer is not None and "scorer" in rows.columns:
                rows = rows.filter(pl.col("scorer") == scorer)
            missing = [k for k in keys if k not in rows.columns]
            if missing:
                rows = rows.with_columns(pl.lit(None, dtype=pl.String).alias(k) for k in missing)
            grids[key] = Grid(rows, keys, tl)
        out.append(rule.evaluate(grids[key]))
    return out


# -- alerts -------------------------------------------------------------------------------------


def scope_key(scope: dict[str, Any]) -> str:
    """The stored identity of a scope: canonical JSON of its keys and values."""
    return canonical_json(scope)


@dataclass
class AlertState:
    """One alert as the state machine sees it (an open one, or the last resolved one for cool-down)."""

    rule: str
    scope: dict[str, Any]
    metric: str
    bar: float | None
    first_seen_us: int
    last_seen_us: int
    stats: dict[str, Any]
    """What the opening check found (observed, baseline, p-value, statistic, ...)."""
    peak: float | None
    clear_since_us: int | None = None
    resolved_us: int | None = None
    id: str | None = None
    changed: bool = field(default=False, compare=False)

    @property
    def open(self) -> bool:
        return self.resolved_us is None


def step(rule: Rule, ev: Evaluation, s: int | None, t: int, state: AlertState | None) -> tuple[str, AlertState | None]:
    """Move one (rule, scope) by the check at index ``t``.

    ``s`` is the scope's row in ``ev`` (None when the scope had no traffic in
    the data read). ``state`` is the open alert, or the latest resolved one, or
    None. Returns what happened (``opened``, ``resolved``, ``bad``, ``clear``,
    ``quiet``) and the new state.
    """
    now = int(ev.times_us[t])
    if state is not None and state.open:
        if s is not None and ev.bad(s, t, state.metric, state.bar):
            state.last_seen_us = now
            state.clear_since_us = None
            value = ev.observed[state.metric][s, t]
            if np.isfinite(value):
                worse = max if rule.direction(state.metric) > 0 else min
                state.peak = float(value) if state.peak is None else float(worse(state.peak, value))
            state.changed = True
            return "bad", state
        if state.clear_since_us is None:
            state.clear_since_us = now
            state.changed = True
        if now - state.clear_since_us >= rule.resolve_after * MINUTE_US:
            state.resolved_us = now
            state.changed = True
            return "resolved", state
        return "clear", state
    if s is None or not ev.fire[s, t]:
        return "quiet", state
    if state is not None and state.resolved_us is not None and now < state.resolved_us + rule.cooldown * MINUTE_US:
        return "quiet", state  # cooling down after the last alert of this rule and scope
    stats = ev.stats(s, t)
    opened = AlertState(
        rule=rule.name, scope=dict(ev.scopes[s]), metric=stats["metric"],
        bar=stats["bar"] if rule.frozen_bar else None, first_seen_us=now, last_seen_us=now,
        stats=stats, peak=stats["observed"], changed=True,
    )
    return "opened", opened


def replay(rules: Sequence[Rule], evaluations: Sequence[Evaluation]) -> list[AlertState]:
    """The alerts checks at every time of the evaluations would have opened (and resolved), oldest first.

    Quiet stretches cost nothing: per scope it jumps from one firing check to
    the next, and walks check by check only while an alert is open.
    """
    out: list[AlertState] = []
    for rule, ev in zip(rules, evaluations):
        T = len(ev.times_us)
        for s in range(len(ev.scopes)):
            firing = np.flatnonzero(ev.fire[s])
            state: AlertState | None = None
            t = 0
            while True:
                later = firing[firing >= t]
                if len(later) == 0:
                    break
                t = int(later[0])
                what, new = step(rule, ev, s, t, state)
                if what != "opened":
                    t += 1  # cooling down
                    continue
                state = new
                assert state is not None
                out.append(state)
                t += 1
                while t < T and state.open:
                    step(rule, ev, s, t, state)
                    t += 1
    out.sort(key=lambda a: (a.first_seen_us, a.rule, scope_key(a.scope)))
    return out
