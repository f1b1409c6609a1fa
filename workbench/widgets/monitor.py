"""The monitoring view: the last 24 hours per scope, open incidents at the top (``bench.monitor.view()``).

Plain HTML (inline SVG sparklines, no script), so it draws the same in
JupyterLab, a report or a browser, and carries user-controlled names (scopes,
rule names, prompt names) as escaped text only. `widget` wraps it with
"check now" and "refresh" buttons that can be driven from Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from .. import _format, _html
from .._canonical import loads
from ..monitor import _data
from ..monitor._grid import MINUTE_US
from ..monitor._monitor import from_micros, to_micros
from ..monitor.alerts import METRIC_NAMES, duration_words, metric_text
from ..monitor.rules import scope_text

if TYPE_CHECKING:
    from ..monitor._monitor import Monitor

HOUR_US = 60 * MINUTE_US
_COLUMNS = ("calls", "error_rate", "latency_p95", "spend", "quality")
_METRIC_COLUMN = {
    "error_rate": "error_rate", "latency_p50": "latency_p95", "latency_p90": "latency_p95",
    "latency_p95": "latency_p95", "latency_p99": "latency_p95", "cost_per_call": "spend",
    "spend_per_hour": "spend", "quality": "quality",
}
"""Which column's sparkline an alert's metric is shaded on."""

_CSS = """
.wb-out.wb-mon{font:13px/1.45 Inter,'Helvetica Neue',Helvetica,Arial,sans-serif;color:#1f2328;max-width:1180px}
.wb-out.wb-mon h4{margin:14px 0 6px;font-size:14px;font-weight:600}
.wb-out.wb-mon .head{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:baseline}
.wb-out.wb-mon .badge{display:inline-block;border-radius:10px;padding:1px 8px;margin:2px 4px 0 0;font-size:12px;font-weight:600;white-space:nowrap}
.wb-out.wb-mon .bad{background:#fde2e1;color:#9a1c14}.wb-out.wb-mon .ok{background:#dcf3e4;color:#1a6b35}
.wb-out.wb-mon .quiet{background:#eef0f2;color:#555}
.wb-out.wb-mon .card{border-left:4px solid #c9372c;background:#fff6f5;padding:7px 10px;margin:6px 0;border-radius:3px}
.wb-out.wb-mon .card .what{font-weight:600}.wb-out.wb-mon .card .ev{color:#57606a;font-size:12px;margin-top:2px}
.wb-out.wb-mon .wrap{overflow-x:auto}
.wb-out.wb-mon table{border-collapse:collapse;width:100%;table-layout:auto;margin:0;font-size:13px}
.wb-out.wb-mon tr,.wb-out.wb-mon tbody tr:nth-child(odd),.wb-out.wb-mon tbody tr:nth-child(even),.wb-out.wb-mon tbody tr:hover{background:transparent}
.wb-out.wb-mon th{font-weight:600;text-align:left;border:0;border-bottom:1px solid #d0d7de;padding:4px 6px;font-size:12px;color:#57606a;white-space:nowrap}
.wb-out.wb-mon td{text-align:left;border:0;border-bottom:1px solid #eaeef2;padding:4px 6px;vertical-align:middle}
.wb-out.wb-mon th.num,.wb-out.wb-mon td.num{text-align:right}
.wb-out.wb-mon td.num{white-space:nowrap;font-variant-numeric:tabular-nums}
.wb-out.wb-mon td.scope{min-width:140px;max-width:300px;overflow-wrap:anywhere}
.wb-out.wb-mon .scope .k{color:#6e7781;font-size:11px;margin-right:4px}
.wb-out.wb-mon .cell{display:flex;flex-direction:column;align-items:flex-end;gap:1px;white-space:nowrap}
.wb-out.wb-mon .cell small{color:#6e7781;font-size:11px}
.wb-out.wb-mon svg{display:block;max-width:none}
.wb-out.wb-mon .muted{color:#6e7781;font-size:12px}
.wb-out.wb-mon .wb-table td:nth-child(n+3):not(:last-child){white-space:nowrap}
"""


def _spark(values: Sequence[float | None], spans: Sequence[tuple[float, float]], width: int = 64, height: int = 20) -> str:
    """An inline SVG line of hourly values (oldest left), with alert stretches shaded (fractions of the width)."""
    vals = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-hidden="true">']
    for a, b in spans:
        x0, x1 = max(0.0, a) * width, min(1.0, b) * width
        if x1 > x0:
            parts.append(f'<rect x="{x0:.1f}" y="0" width="{max(x1 - x0, 1.5):.1f}" height="{height}" fill="#c9372c" opacity="0.18"/>')
    finite = vals[np.isfinite(vals)]
    if len(finite):
        lo, hi = float(finite.min()), float(finite.max())
        span = hi - lo if hi > lo else (abs(hi) or 1.0)
        step = width / max(len(vals) - 1, 1)
        run: list[str] = []
        for i, v in enumerate(vals):
            if np.isfinite(v):
                y = height - 2 - (v - (lo if hi > lo else lo - span / 2)) / span * (height - 4)
                run.append(f"{i * step:.1f},{y:.1f}")
            elif run:
                parts.append(_polyline(run))
                run = []
        if run:
            parts.append(_polyline(run))
    parts.append("</svg>")
    return "".join(parts)


def _polyline(points: list[str]) -> str:
    if len(points) == 1:
        x, y = points[0].split(",")
        return f'<circle cx="{x}" cy="{y}" r="1.6" fill="#0072B2"/>'
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="#0072B2" stroke-width="1.4"/>'


@dataclass
class MonitorView:
    """What the monitoring view shows; ``_repr_html_`` draws it, ``repr`` says it in text."""

    now: datetime
    hours: float
    rules: list[str]
    keys: tuple[str, ...]
    open: pl.DataFrame
    """Open alerts (opened by ``now``)."""
    resolved: pl.DataFrame
    """Alerts resolved within the period."""
    scopes: list[dict[str, Any]]
    """Per scope: its key values, totals and hourly series."""

    @classmethod
    def build(cls, monitor: Monitor, now: Any = None, hours: float = 24.0) -> MonitorView:
        from datetime import timezone

        now_us = to_micros(datetime.now(timezone.utc) if now is None else now)
        n_hours = max(1, int(round(hours)))
        lo = now_us - n_hours * HOUR_US
        rules = monitor.rules
        trace_rules = [r for r in rules if r.source == "traces"] or rules
        keys = tuple(trace_rules[0].by) if trace_rules else ("prompt_name", "model")
        alerts = monitor.alerts(since=from_micros(lo), until=from_micros(now_us + 1))
        is_open = (pl.col("status") == "open") | (pl.col("resolved_at") > from_micros(now_us))
        open_ = alerts.filter(is_open)
        resolved = alerts.filter(~is_open)
        calls = _data.read_calls(monitor.bench, [(lo, now_us)], keys)
        scores = _data.read_scores(monitor.bench, lo, now_us, keys, None)
        scopes = _scope_rows(calls, scores, keys, lo, n_hours, open_, alerts, now_us)
        return cls(from_micros(now_us), n_hours, [r.name for r in rules], keys, open_, resolved, scopes)

    # -- text ------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        lines = [f"Monitoring, {_format.count(self.hours)} h to {self.now:%Y-%m-%d %H:%M} UTC: {len(self.open)} open, "
                 f"{len(self.resolved)} resolved, {len(self.scopes)} scopes"]
        for a in self.open.iter_rows(named=True):
            lines.append(f"  OPEN {a['rule']} on {a['scope']} since {a['first_seen']:%H:%M}: "
                         f"{metric_text(a['metric'], a['observed'])} against {metric_text(a['metric'], a['baseline'])}")
        for s in self.scopes:
            lines.append(f"  {scope_text(s['scope'])}: {_format.count(s['calls'])} calls, errors {_format.pct(s['error_rate'])}, "
                         f"p95 {_format.ms(s['latency_p95'])}, spend {_format.money(s['spend'])}")
        return "\n".join(lines)

    # -- HTML ------------------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        esc = _html.esc
        n_open = self.open.height
        badge = (f'<span class="badge bad">{n_open} open incident{"s" if n_open != 1 else ""}</span>' if n_open
                 else '<span class="badge ok">no open incidents</span>')
        head = (
            f'<div class="head"><b style="font-size:15px">Monitoring</b>{badge}'
            f'<span class="muted">last {_format.count(self.hours)} h to {esc(self.now.strftime("%Y-%m-%d %H:%M"))} UTC · '
            f'{len(self.rules)} rules · {len(self.scopes)} scope{"s" if len(self.scopes) != 1 else ""} by '
            f'{esc(", ".join(self.keys) or "all traffic")}</span></div>'
        )
        body = [head]
        if n_open:
            body.append("<h4>Open incidents</h4>")
            for a in self.open.iter_rows(named=True):
                lasted = duration_words(self.now - a["first_seen"])
                since = a["first_seen"].strftime("%Y-%m-%d %H:%M")
                metric = a["metric"]
                body.append(
                    f'<div class="card"><div class="what">{esc(a["rule"])} · {esc(a["scope"])}</div>'
                    f'<div>{esc(METRIC_NAMES.get(metric, metric))}: {esc(metric_text(metric, a["observed"]))} against '
                    f'{esc(metric_text(metric, a["baseline"]))} before (worst {esc(metric_text(metric, a["peak"]))}) · '
                    f'open {esc(lasted)}, since {esc(since)} UTC</div>'
                    f'<div class="ev">{esc(a["statistic"])}</div></div>'
                )
        body.append(f"<h4>Scopes, last {_format.count(self.hours)} h (hourly, newest right; shaded: alert open)</h4>")
        if self.scopes:
            heads = ["scope and incidents", "calls", "error rate", "p95 latency", "spend", "quality"]
            rows = []
            for s in self.scopes:
                rows.append(
                    f'<tr><td class="scope">{_scope_cell(s["scope"])}<br>{_incident_badges(s)}</td>'
                    f'<td class="num">{_cell(_format.count(s["calls"]), s, "calls")}</td>'
                    f'<td class="num">{_cell(_format.pct(s["error_rate"]), s, "error_rate")}</td>'
                    f'<td class="num">{_cell(_format.ms(s["latency_p95"]), s, "latency_p95")}</td>'
                    f'<td class="num">{_cell(_format.money(s["spend"]), s, "spend")}</td>'
                    f'<td class="num">{_cell(_quality_text(s)[0], s, "quality", _quality_text(s)[1])}</td></tr>'
                )
            body.append(
                '<div class="wrap"><table><thead><tr>'
                + "".join(f'<th{"" if h == heads[0] else " class=num"}>{esc(h)}</th>' for h in heads)
                + "</tr></thead><tbody>"
                + "".join(rows) + "</tbody></table></div>"
            )
        else:
            body.append('<div class="muted">No production calls in this period (experiments and judge calls are not monitored).</div>')
        if self.resolved.height:
            body.append(f"<h4>Resolved in the last {_format.count(self.hours)} h</h4>")
            rows = [
                (a["rule"], a["scope"], f"{a['first_seen']:%m-%d %H:%M}", f"{a['resolved_at']:%m-%d %H:%M}",
                 duration_words(a["resolved_at"] - a["first_seen"]),
                 f"{metric_text(a['metric'], a['peak'])} against {metric_text(a['metric'], a['baseline'])}")
                for a in self.resolved.iter_rows(named=True)
            ]
            body.append('<div class="wrap">' + _html.table(["rule", "scope", "opened (UTC)", "resolved (UTC)", "lasted", "worst"], rows) + "</div>")
        return _html.root(f"<style>{_CSS}</style>" + "".join(body), cls="wb-mon")


def _cell(text: str, scope: dict[str, Any], column: str, note: str = "") -> str:
    """A number, an optional note under it, and its hourly sparkline."""
    spark = _spark(scope["series"][column], scope["spans"].get(column, ()))
    small = f"<small>{_html.esc(note)}</small>" if note else ""
    return f'<div class="cell"><span>{_html.esc(text)}</span>{small}{spark}</div>'


def _scope_cell(scope: dict[str, Any]) -> str:
    if not scope:
        return "all traffic"
    return "<br>".join(
        f'<span class="k">{_html.esc(k)}</span>{_html.esc("(none)" if v is None else v)}' for k, v in scope.items()
    )


def _quality_text(scope: dict[str, Any]) -> tuple[str, str]:
    if not scope["quality_n"]:
        return "not scored", ""
    return _format.num(scope["quality"]), f"n={_format.count(scope['quality_n'])}"


def _incident_badges(scope: dict[str, Any]) -> str:
    out = []
    if scope["open"]:
        out.append(f'<span class="badge bad">{_html.esc(", ".join(scope["open"]))}</span>')
    if scope["resolved"]:
        out.append(f'<span class="badge quiet">{scope["resolved"]} resolved</span>')
    return " ".join(out) or '<span class="muted">no incidents</span>'


def _scope_rows(
    calls: pl.DataFrame, scores: pl.DataFrame, keys: tuple[str, ...], lo: int, n_hours: int,
    open_: pl.DataFrame, alerts: pl.DataFrame, now_us: int,
) -> list[dict[str, Any]]:
    """Per scope: totals over the period and hourly series (oldest first)."""
    keys_ = list(keys)
    hour = ((pl.col("_t") - lo) // HOUR_US).cast(pl.Int64).alias("_h")
    ok = pl.col("status").cast(pl.String) == "ok"
    err = pl.col("status").cast(pl.String) == "error"
    aggs = [
        pl.len().alias("calls"), err.sum().alias("errors"),
        pl.col("latency_ms").filter(ok).quantile(0.95, "linear").alias("latency_p95"),
        pl.col("cost_usd").sum().alias("spend"),
    ]
    calls = calls.with_columns(hour)
    hourly = calls.group_by(*keys_, "_h").agg(aggs) if calls.height else None
    totals = calls.group_by(*keys_).agg(aggs) if calls.height else calls.clear().select(*keys_)
    scores = scores.filter(pl.col("value").is_not_null()).with_columns(hour)
    q_hourly = scores.group_by(*keys_, "_h").agg(pl.col("value").mean().alias("quality")) if scores.height else None
    q_total = scores.group_by(*keys_).agg(pl.col("value").mean().alias("quality"), pl.len().alias("quality_n")) if scores.height else None
    out = []
    for row in totals.sort("calls", descending=True).iter_rows(named=True) if totals.height else []:
        scope = {k: row[k] for k in keys_}
        match = pl.all_horizontal([pl.col(k).eq_missing(scope[k]) for k in keys_]) if keys_ else pl.lit(True)
        series: dict[str, list[Any]] = {c: [None] * n_hours for c in _COLUMNS}
        if hourly is not None:
            for h in hourly.filter(match).iter_rows(named=True):
                i = h["_h"]
                if 0 <= i < n_hours:
                    series["calls"][i] = h["calls"]
                    series["error_rate"][i] = h["errors"] / h["calls"] if h["calls"] else None
                    series["latency_p95"][i] = h["latency_p95"]
                    series["spend"][i] = h["spend"]
        quality, quality_n = None, 0
        if q_hourly is not None:
            for h in q_hourly.filter(match).iter_rows(named=True):
                if 0 <= h["_h"] < n_hours:
                    series["quality"][h["_h"]] = h["quality"]
            qt = q_total.filter(match)  # type: ignore[union-attr]
            if qt.height:
                quality, quality_n = qt["quality"][0], int(qt["quality_n"][0])
        mine = alerts.filter(pl.col("scope_json").map_elements(lambda j: _covers(loads(j, {}), scope), return_dtype=pl.Boolean)) \
            if alerts.height else alerts
        spans: dict[str, list[tuple[float, float]]] = {}
        period = n_hours * HOUR_US
        for a in mine.iter_rows(named=True):
            start = (int(a["first_seen"].timestamp() * 1e6) - lo) / period
            end_us = now_us if a["resolved_at"] is None else min(now_us, int(a["resolved_at"].timestamp() * 1e6))
            column = _METRIC_COLUMN.get(a["metric"], "calls")
            spans.setdefault(column, []).append((start, (end_us - lo) / period))
        open_rules = sorted(set(open_.filter(pl.col("id").is_in(mine["id"].to_list()))["rule"].to_list())) if mine.height else []
        out.append({
            "scope": scope, "calls": row["calls"],
            "error_rate": row["errors"] / row["calls"] if row["calls"] else None,
            "latency_p95": row["latency_p95"], "spend": row["spend"],
            "quality": quality, "quality_n": quality_n, "series": series, "spans": spans,
            "open": open_rules, "resolved": mine.height - len(open_rules) if mine.height else 0,
        })
    # Scopes with an open incident first, then the busiest.
    out.sort(key=lambda s: (not s["open"], -s["calls"]))
    return out


def _covers(alert_scope: dict[str, Any], scope: dict[str, Any]) -> bool:
    """Whether an alert's scope concerns a view scope: every key both have agrees (all traffic concerns all)."""
    return all(scope[k] == v for k, v in alert_scope.items() if k in scope)


def widget(monitor: Monitor, now: Any = None, hours: float = 24.0) -> Any:
    """The view in an ipywidgets box with "Check now" and "Refresh" (``now`` fixes the time, for backdated traffic)."""
    import ipywidgets as w

    view = w.HTML(MonitorView.build(monitor, now=now, hours=hours).html())
    status = w.HTML(_html.root('<span class="muted">press Check now to evaluate every rule</span>'))
    check = w.Button(description="Check now", icon="heartbeat", tooltip="evaluate every rule and record what changed")
    refresh = w.Button(description="Refresh", icon="refresh")

    def redraw(_: Any = None) -> None:
        view.value = MonitorView.build(monitor, now=now, hours=hours).html()

    def on_check(_: Any) -> None:
        result = monitor.check(now)
        status.value = _html.root(_html.esc(result.line()))
        redraw()

    check.on_click(on_check)
    refresh.on_click(redraw)
    box = w.VBox([w.HBox([check, refresh, status]), view])
    box.add_class("wb-monitor-widget")
    return box


def alert_chart(monitor: Monitor, now: Any = None, hours: float = 24.0, every: str = "1h", fields: Sequence[str] | None = None) -> Any:
    """`charts.timeseries` of production metrics over the period, with its alerts shaded."""
    from datetime import timezone

    from .. import charts, frames

    now_us = to_micros(datetime.now(timezone.utc) if now is None else now)
    since = from_micros(now_us - int(round(hours * HOUR_US)))
    cols = list(dict.fromkeys([*frames.METRIC_INPUTS, "kind", "started_at", "experiment_id", "tags_json"]))
    df = _data.production(frames.traces_df(monitor.bench.store, since=since, until=from_micros(now_us), kind="llm", columns=cols))
    metrics = frames.metrics(df, every=every)
    chart = charts.timeseries(metrics, **({} if fields is None else {"fields": tuple(fields)}))
    alerts = monitor.alerts(since=since, until=from_micros(now_us + 1))
    return charts.alert_spans(chart, alerts, end=from_micros(now_us))


__all__ = ["MonitorView", "alert_chart", "widget"]
