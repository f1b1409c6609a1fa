"""The ``alerts`` and ``alert_notifications`` tables: the one reader and writer of both.

An alert is one incident of one rule in one scope: opened by the check that
first found it, kept open while its window still shows the problem (judged
against the baseline it opened with), resolved after ``resolve_after`` without
it. At most one alert per rule and scope is open at a time, across processes
(a partial unique index), and only the process whose insert (or resolving
update) landed sends the notification: never two for one incident.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from .. import _format
from .._canonical import canonical_json, loads
from .._ids import new_id, utc_from_epoch, utc_now
from ._engine import AlertState, scope_key
from .rules import Rule, scope_text

if TYPE_CHECKING:
    from ..store import Store

ALERT_COLUMNS = (
    "id", "rule", "kind", "metric", "scope", "scope_json", "status", "window_minutes", "first_seen", "last_seen",
    "clear_since", "resolved_at", "observed", "baseline", "bar", "peak", "p_value", "test_level", "n", "n_baseline",
    "statistic", "rule_json", "source", "created_at", "updated_at",
)
_INSERT = (
    f"INSERT OR IGNORE INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES ({', '.join('?' * len(ALERT_COLUMNS))})"
)


def iso(us: int | None) -> str | None:
    return None if us is None else utc_from_epoch(us / 1e6)


def micros(text: str | None) -> int | None:
    if text is None:
        return None
    return int(round(datetime.fromisoformat(text).timestamp() * 1e6))


@dataclass(frozen=True)
class AlertEvent:
    """What a notifier receives: an alert that opened or resolved."""

    event: str
    """``opened`` or ``resolved``."""
    alert_id: str
    rule: str
    kind: str
    metric: str
    scope: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    observed: float | None
    """The metric in the window that opened the alert (error rate as a share, latency in ms, dollars...)."""
    baseline: float | None
    peak: float | None
    p_value: float | None
    statistic: str
    """The evidence in one sentence."""
    window_minutes: int

    scope_label: str = ""
    """The scope as shown (``prompt_name=support, model=claude-haiku-4-5``)."""

    @property
    def scope_text(self) -> str:
        return self.scope_label or scope_text(self.scope)

    def value_text(self, value: float | None) -> str:
        return metric_text(self.metric, value)

    def text(self) -> str:
        """One plain line: what, where, how bad, since when."""
        since = self.first_seen.strftime("%Y-%m-%d %H:%M UTC")
        if self.event == "resolved" and self.resolved_at is not None:
            lasted = duration_words(self.resolved_at - self.first_seen)
            return (
                f"Resolved: {self.rule} on {self.scope_text} after {lasted} (opened {since}; worst "
                f"{self.value_text(self.peak)} against {self.value_text(self.baseline)})"
            )
        return (
            f"Incident: {self.rule} on {self.scope_text}: {self.value_text(self.observed)} against "
            f"{self.value_text(self.baseline)} since {since}. {self.statistic}"
        )

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("first_seen", "last_seen", "resolved_at"):
            out[k] = None if out[k] is None else out[k].isoformat()
        out["scope_text"] = self.scope_text
        return out


METRIC_NAMES = {
    "error_rate": "error rate", "latency_p50": "latency", "latency_p90": "latency", "latency_p95": "latency",
    "latency_p99": "latency", "cost_per_call": "cost per call", "spend_per_hour": "spend", "quality": "quality",
}
"""What a metric is called in a sentence."""


def metric_text(metric: str, value: float | None) -> str:
    """A metric's value as a person reads it."""
    if metric == "error_rate":
        return _format.pct(value)
    if metric.startswith("latency_p"):
        return f"{metric.removeprefix('latency_')} {_format.ms(value)}"
    if metric == "spend_per_hour":
        return "n/a" if _format.missing(value) else f"{_format.money(value)}/h"
    if metric == "cost_per_call":
        return "n/a" if _format.missing(value) else f"{_format.money(value)} a call"
    if metric == "quality":
        return f"score {_format.num(value)}"
    return _format.num(value)


def duration_words(delta: Any) -> str:
    """``1 h 42 min``, ``18 min``."""
    total = int(round(delta.total_seconds() / 60))
    h, m = divmod(total, 60)
    return f"{h} h {m} min" if h else f"{m} min"


def _event(row: dict[str, Any], event: str) -> AlertEvent:
    def dt(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text).astimezone(timezone.utc)

    return AlertEvent(
        event=event, alert_id=row["id"], rule=row["rule"], kind=row["kind"], metric=row["metric"],
        scope=loads(row["scope_json"], {}), first_seen=dt(row["first_seen"]),  # type: ignore[arg-type]
        last_seen=dt(row["last_seen"]), resolved_at=dt(row["resolved_at"]),  # type: ignore[arg-type]
        observed=row["observed"], baseline=row["baseline"], peak=row["peak"], p_value=row["p_value"],
        statistic=row["statistic"] or "", window_minutes=row["window_minutes"], scope_label=row["scope"],
    )


def _row(rule: Rule, a: AlertState, source: str, now: str) -> dict[str, Any]:
    st = a.stats
    return {
        "id": a.id or new_id(), "rule": rule.name, "kind": rule.kind, "metric": a.metric,
        "scope": scope_text(a.scope), "scope_json": scope_key(a.scope), "status": "open" if a.open else "resolved",
        "window_minutes": rule.window, "first_seen": iso(a.first_seen_us), "last_seen": iso(a.last_seen_us),
        "clear_since": iso(a.clear_since_us), "resolved_at": iso(a.resolved_us), "observed": st.get("observed"),
        "baseline": st.get("baseline"), "bar": a.bar, "peak": a.peak, "p_value": st.get("p_value"),
        "test_level": st.get("level"), "n": st.get("n"), "n_baseline": st.get("n_baseline"),
        "statistic": st.get("statistic"), "rule_json": canonical_json(rule.spec()), "source": source,
        "created_at": now, "updated_at": now,
    }


def _state(row: dict[str, Any]) -> AlertState:
    return AlertState(
        rule=row["rule"], scope=loads(row["scope_json"], {}), metric=row["metric"], bar=row["bar"],
        first_seen_us=micros(row["first_seen"]), last_seen_us=micros(row["last_seen"]),  # type: ignore[arg-type]
        stats={k: row[k] for k in ("observed", "baseline", "p_value", "n", "n_baseline", "statistic")},
        peak=row["peak"], clear_since_us=micros(row["clear_since"]), resolved_us=micros(row["resolved_at"]), id=row["id"],
    )


def latest_states(store: Store, rules: Sequence[str], now_us: int) -> dict[tuple[str, str], AlertState]:
    """Per (rule, scope key): the open alert, else the latest resolved one, among alerts opened by ``now``."""
    if not rules:
        return {}
    marks = ", ".join("?" * len(rules))
    rows = store.query(
        f"SELECT * FROM alerts WHERE rule IN ({marks}) AND first_seen <= ? "
        "AND (status = 'open' OR resolved_at > ?) ORDER BY first_seen",
        (*rules, iso(now_us), iso(now_us - 7 * 24 * 3600 * 10**6)),
    )
    out: dict[tuple[str, str], AlertState] = {}
    for r in rows:
        key = (r["rule"], r["scope_json"])
        if key in out and out[key].open:
            continue  # an open alert wins over older resolved ones
        out[key] = _state(r)
    return out


def save(
    store: Store, changes: Iterable[tuple[str, Rule, AlertState]], source: str
) -> list[AlertEvent]:
    """Write what checks did in one transaction; return the events this process must notify.

    ``changes`` are (what, rule, state) with what in opened, resolved, bad,
    clear. An opening that another process already recorded, or a
    resolution another process already made, is not this process's to notify.
    """
    now = utc_now()
    events: list[tuple[str, str]] = []
    with store.transaction() as conn:
        for what, rule, a in changes:
            if what == "opened":
                row = _row(rule, a, source, now)
                if source == "replay" and _overlaps(conn, row):
                    continue  # checks (or an earlier replay) already recorded this stretch
                cur = conn.execute(_INSERT, tuple(row[c] for c in ALERT_COLUMNS))
                if cur.rowcount == 1:
                    a.id = row["id"]
                    events.append(("opened", row["id"]))
                    if not a.open:  # a replay can open and resolve in one go
                        events.append(("resolved", row["id"]))
                continue
            if a.id is None:
                continue
            cur = conn.execute(
                "UPDATE alerts SET status = ?, last_seen = ?, clear_since = ?, resolved_at = ?, peak = ?, updated_at = ? "
                "WHERE id = ? AND status = 'open'",
                ("open" if a.open else "resolved", iso(a.last_seen_us), iso(a.clear_since_us), iso(a.resolved_us),
                 a.peak, now, a.id),
            )
            if what == "resolved" and cur.rowcount == 1:
                events.append(("resolved", a.id))
        ids = sorted({i for _, i in events})
        rows = {}
        if ids:
            marks = ", ".join("?" * len(ids))
            cur = conn.execute(f"SELECT * FROM alerts WHERE id IN ({marks})", ids)
            cols = [d[0] for d in cur.description]
            rows = {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}
    return [_event(rows[i], what) for what, i in events if i in rows]


def _overlaps(conn: Any, row: dict[str, Any]) -> bool:
    """Whether an alert of the same rule and scope already covers part of this one's stretch."""
    end = row["resolved_at"] or "9999"
    hit = conn.execute(
        "SELECT 1 FROM alerts WHERE rule = ? AND scope_json = ? AND first_seen <= ? "
        "AND (resolved_at IS NULL OR resolved_at >= ?) LIMIT 1",
        (row["rule"], row["scope_json"], end, row["first_seen"]),
    ).fetchone()
    return hit is not None


def record_delivery(store: Store, alert_id: str, event: str, channel: str, ok: bool, attempts: int, error: str | None) -> None:
    """Note one notification attempt's outcome (called from the notification thread)."""
    store.write_now([(
        "INSERT INTO alert_notifications (id, alert_id, event, channel, status, attempts, error, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (new_id(), alert_id, event, channel, "sent" if ok else "failed", attempts, error, utc_now()),
    )])


ALERT_SCHEMA: dict[str, Any] = {
    "rule": pl.String(), "kind": pl.String(), "scope": pl.String(), "status": pl.String(),
    "first_seen": pl.String(), "last_seen": pl.String(), "resolved_at": pl.String(), "metric": pl.String(),
    "observed": pl.Float64(), "baseline": pl.Float64(), "peak": pl.Float64(), "p_value": pl.Float64(),
    "test_level": pl.Float64(), "n": pl.Int64(), "n_baseline": pl.Int64(), "window_minutes": pl.Int64(),
    "statistic": pl.String(), "scope_json": pl.String(), "source": pl.String(), "id": pl.String(),
}
"""The columns of the alerts frame, in order (times are parsed to UTC datetimes)."""


def _frame(df: pl.DataFrame) -> pl.DataFrame:
    times = [
        pl.col(c).str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False).dt.convert_time_zone("UTC")
        for c in ("first_seen", "last_seen", "resolved_at")
    ]
    return df.with_columns(times).sort(
        pl.col("status") == "open", "first_seen", "rule", "scope", descending=[True, True, False, False]
    )


def alerts_df(
    store: Store, *, status: str | None = None, since: str | None = None, until: str | None = None,
    rule: str | None = None,
) -> pl.DataFrame:
    """Alerts as a frame, open ones first, then newest first; times as UTC datetimes.

    ``since``/``until`` keep the alerts that overlap that period (open in it, or
    resolved after it began).
    """
    from ..frames import read_sql

    clauses, params = [], []
    for col, value in (("status", status), ("rule", rule)):
        if value is not None:
            clauses.append(f"{col} = ?")
            params.append(value)
    if since is not None:
        clauses.append("(resolved_at IS NULL OR resolved_at >= ?)")
        params.append(since)
    if until is not None:
        clauses.append("first_seen < ?")
        params.append(until)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return _frame(read_sql(store, f"SELECT {', '.join(ALERT_SCHEMA)} FROM alerts{where}", params, schema=ALERT_SCHEMA))


def states_frame(rules: Sequence[Rule], states: Sequence[AlertState]) -> pl.DataFrame:
    """Alert states (from a replay) as the same frame `alerts_df` returns."""
    by_name = {r.name: r for r in rules}
    now = utc_now()
    rows = [{c: row[c] for c in ALERT_SCHEMA} for row in (_row(by_name[a.rule], a, "replay", now) for a in states)]
    return _frame(pl.DataFrame(rows, schema=ALERT_SCHEMA))
