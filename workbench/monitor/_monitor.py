"""``bench.monitor``: rules, checks, replays, the watch loop and notifications."""

from __future__ import annotations

import os
import signal
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _format, _html
from ..errors import ConfigError
from . import _data, _engine, alerts
from ._grid import MINUTE_US
from .alerts import AlertEvent, metric_text
from .notify import Dispatcher, Webhook
from .rules import Rule, check_names, default_rules, minutes, rule_from_spec, scope_text, scorer_filter

if TYPE_CHECKING:
    import polars as pl

    from ..bench import Workbench

DRAIN_SECONDS = 5.0
"""How long closing a monitor waits for notifications still being sent."""


def to_micros(value: Any, what: str = "now") -> int:
    """A time (datetime, date, ISO text; naive means UTC) as microseconds since the epoch."""
    from ..frames import _utc_text  # one reading of times for the whole analysis layer

    text = _utc_text(value, what)
    assert text is not None
    return int(round(datetime.fromisoformat(text).timestamp() * 1e6))


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, timezone.utc)


@dataclass
class CheckResult:
    """What one ``check()`` found."""

    now: datetime
    opened: list[AlertEvent]
    """Alerts this check opened (each notified once)."""
    resolved: list[AlertEvent]
    """Alerts this check resolved."""
    open: list[dict[str, Any]]
    """Every alert open after the check: rule, scope, metric, since, observed, baseline."""
    scopes: int
    """Scopes evaluated, all rules together."""
    rules: int
    seconds: float
    calls: int = 0
    """Production calls read."""
    notified: int = 0
    """Notifications queued (sent in the background)."""

    def line(self) -> str:
        """One line for a log or the terminal."""
        head = f"{self.now:%Y-%m-%d %H:%M:%S} UTC  {self.rules} rules, {self.scopes} scopes, {_format.count(self.calls)} calls"
        parts = [f"{len(self.open)} open"]
        if self.opened:
            parts.append(f"{len(self.opened)} opened")
        if self.resolved:
            parts.append(f"{len(self.resolved)} resolved")
        return f"{head}: {', '.join(parts)} ({_format.ms(self.seconds * 1000)})"

    def changes(self) -> str:
        """The summary line and what opened or resolved (what a watch loop logs each minute)."""
        lines = [self.line()]
        lines += [f"  opened   {e.text()}" for e in self.opened]
        lines += [f"  resolved {e.text()}" for e in self.resolved]
        return "\n".join(lines)

    def __repr__(self) -> str:
        lines = [self.changes()]
        for a in self.open:
            if not any(e.rule == a["rule"] and e.scope == a["scope"] for e in self.opened):
                lines.append(f"  open     {a['rule']} on {scope_text(a['scope'])} since {a['since']:%Y-%m-%d %H:%M} UTC")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [("opened", e.rule, e.scope_text, metric_text(e.metric, e.observed), metric_text(e.metric, e.baseline), e.statistic)
                for e in self.opened]
        rows += [("resolved", e.rule, e.scope_text, metric_text(e.metric, e.peak), metric_text(e.metric, e.baseline), e.text())
                 for e in self.resolved]
        table = _html.table(["event", "rule", "scope", "observed", "baseline", "evidence"], rows) if rows else ""
        return _html.root(f"<div><b>{_html.esc(self.line())}</b></div>{table}")


class Monitor:
    """Watches production traffic for incidents: ``bench.monitor``.

    Rules default to `default_rules` (error spikes, latency shifts, cost per
    call, seasonal spend and quality drops per prompt and model). Checks read
    production calls (not experiments, not judge calls) through Polars.
    """

    def __init__(self, bench: Workbench, rules: Iterable[Rule] | None = None) -> None:
        self.bench = bench
        self._rules = check_names(default_rules() if rules is None else rules)
        self._targets: list[Any] = []
        self._dispatcher = Dispatcher(record=self._record)
        self.last: CheckResult | None = None

    # -- rules and targets ----------------------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules)

    def set_rules(self, rules: Iterable[Rule]) -> Monitor:
        """Replace every rule."""
        self._rules = check_names(rules)
        return self

    def add(self, *rules: Rule) -> Monitor:
        """Add rules (names must stay unique)."""
        self._rules = check_names([*self._rules, *rules])
        return self

    def remove(self, name: str) -> Monitor:
        """Drop the rule called ``name``."""
        names = [r.name for r in self._rules]
        if name not in names:
            raise ConfigError(f"no rule named {name!r}; rules: {', '.join(names) or 'none'}")
        self._rules = [r for r in self._rules if r.name != name]
        return self

    def notify(self, target: str | Callable[[AlertEvent], Any], **webhook: Any) -> Monitor:
        """Send every opened and resolved alert to ``target``.

        A URL becomes a `Webhook` (Slack-compatible JSON; ``timeout``,
        ``retries``, ``headers`` as keywords); anything callable is called
        with the `AlertEvent` (e-mail, a pager, a print). Calls happen on a
        background thread, one event at a time.
        """
        if isinstance(target, str):
            target = Webhook(target, **webhook)
        elif webhook:
            raise ConfigError("webhook settings (timeout=, retries=, ...) go with a URL, not a callable")
        if not callable(target):
            raise ConfigError(f"notify() takes a URL or a callable, not {type(target).__name__}")
        self._targets.append(target)
        return self

    @property
    def targets(self) -> list[Any]:
        return list(self._targets)

    def load(self, path: str | os.PathLike[str]) -> Monitor:
        """Rules and notification targets from a TOML file (see `load_config`); replaces the rules."""
        rules, targets = load_config(path)
        if rules:
            self.set_rules(rules)
        for t in targets:
            self._targets.append(t)
        return self

    def _record(self, alert_id: str, event: str, channel: str, ok: bool, attempts: int, error: str | None) -> None:
        alerts.record_delivery(self.bench.store, alert_id, event, channel, ok, attempts, error)

    # -- reading --------------------------------------------------------------------------------

    def _read(self, lo_us: int, hi_us: int, times_us: np.ndarray) -> tuple[Any, Any]:
        """Production calls and scores the rules need for checks at ``times_us``."""
        trace_rules = [r for r in self._rules if r.source == "traces"]
        score_rules = [r for r in self._rules if r.source == "scores"]
        keys = list(dict.fromkeys(k for r in self._rules for k in r.by))
        calls = scores = None
        if trace_rules:
            if len(times_us) == 1:
                ranges = [(hi_us - a * MINUTE_US, hi_us - b * MINUTE_US) for r in trace_rules for a, b in r.slices()]
            else:
                ranges = [(lo_us - _engine.lookback(trace_rules) * MINUTE_US, hi_us)]
            calls = _data.read_calls(self.bench, ranges, keys)
        if score_rules:
            scores = _data.read_scores(
                self.bench, lo_us - _engine.lookback(score_rules) * MINUTE_US, hi_us, keys, scorer_filter(score_rules)
            )
        return calls, scores

    # -- checking -------------------------------------------------------------------------------

    def check(self, now: Any = None) -> CheckResult:
        """Evaluate every rule at ``now`` (default: the current time), record and notify what changed.

        ``now`` may be any time, so backdated (simulated) traffic can be
        checked as it would have been. Each rule and scope opens at most one
        alert; an open alert is updated while its window still shows the
        problem and resolved after ``resolve_after`` without it.
        """
        t0 = time.perf_counter()
        now_us = to_micros(datetime.now(timezone.utc) if now is None else now)
        self.bench.flush()
        times = np.array([now_us], dtype=np.int64)
        calls, scores = self._read(now_us, now_us, times)
        evaluations = _engine.evaluate(self._rules, times, calls, scores)
        states = alerts.latest_states(self.bench.store, [r.name for r in self._rules], now_us)
        changes: list[tuple[str, Rule, _engine.AlertState]] = []
        still_open: list[_engine.AlertState] = []
        for rule, ev in zip(self._rules, evaluations):
            index = {_engine.scope_key(sc): i for i, sc in enumerate(ev.scopes)}
            keys = set(index) | {k for (name, k) in states if name == rule.name}
            for key in sorted(keys):
                state = states.get((rule.name, key))
                what, new = _engine.step(rule, ev, index.get(key), 0, state)
                if what == "opened" or (new is not None and new.changed):
                    changes.append((what, rule, new))  # type: ignore[arg-type]
                if new is not None and new.open:
                    new.scope = {k: new.scope[k] for k in _engine.grid_keys(rule) if k in new.scope} or new.scope
                    still_open.append(new)
        events = alerts.save(self.bench.store, changes, source="check")
        notified = self._send(events)
        result = CheckResult(
            now=from_micros(now_us),
            opened=[e for e in events if e.event == "opened"],
            resolved=[e for e in events if e.event == "resolved"],
            open=[{"rule": a.rule, "scope": a.scope, "metric": a.metric, "since": from_micros(a.first_seen_us),
                   "observed": a.stats.get("observed"), "baseline": a.stats.get("baseline")} for a in still_open],
            scopes=sum(len(ev.scopes) for ev in evaluations), rules=len(self._rules),
            seconds=time.perf_counter() - t0, calls=0 if calls is None else calls.height, notified=notified,
        )
        self.last = result
        return result

    def _send(self, events: Sequence[AlertEvent]) -> int:
        if not self._targets:
            return 0
        for e in events:
            self._dispatcher.submit(e, self._targets)
        return len(events) * len(self._targets)

    def replay(
        self, since: Any, until: Any, *, every: Any = "1m", store: bool = False, notify: bool = False
    ) -> pl.DataFrame:
        """The alerts checks every ``every`` from ``since`` to ``until`` would have recorded.

        One vectorised pass over the period (a day of 100,000 calls at one
        check a minute takes about a second). With ``store=True`` they are
        written to the file as if the checks had run (a replay stored twice
        adds nothing), and with ``notify=True`` also sent.
        """
        lo, hi = to_micros(since, "since"), to_micros(until, "until")
        step = minutes(every, "every") * MINUTE_US
        if hi < lo:
            raise ConfigError(f"until ({from_micros(hi)}) is before since ({from_micros(lo)})")
        self.bench.flush()
        times = np.arange(lo, hi + 1, step, dtype=np.int64)
        calls, scores = self._read(lo, hi, times)
        evaluations = _engine.evaluate(self._rules, times, calls, scores)
        states = _engine.replay(self._rules, evaluations)
        if store:
            by_name = {r.name: r for r in self._rules}
            events = alerts.save(self.bench.store, [("opened", by_name[a.rule], a) for a in states], source="replay")
            if notify:
                self._send(events)
        return alerts.states_frame(self._rules, states)

    def watch(
        self,
        every: float = 60.0,
        *,
        echo: Callable[[str], Any] | None = print,
        stop: threading.Event | None = None,
        max_checks: int | None = None,
    ) -> int:
        """Check every ``every`` seconds (on the clock's minute by default) until Ctrl-C or SIGTERM.

        A signal ends the loop after the check in progress; notifications
        still being sent get up to a few seconds. A check that fails (the file
        locked for too long, say) is reported and the loop goes on. Returns the
        number of checks made.
        """
        if every <= 0:
            raise ConfigError(f"every must be a positive number of seconds, got {every!r}")
        stop = stop or threading.Event()
        restore = _catch_signals(stop)
        checks = 0
        try:
            while not stop.is_set():
                try:
                    result = self.check()
                    if echo is not None:
                        echo(result.changes())
                except Exception as exc:  # noqa: BLE001 - one failed check must not end the watch
                    if echo is not None:
                        echo(f"check failed: {type(exc).__name__}: {exc}")
                checks += 1
                if max_checks is not None and checks >= max_checks:
                    break
                stop.wait(every - (time.time() % every))
        except KeyboardInterrupt:
            pass
        finally:
            restore()
            self.drain(DRAIN_SECONDS)
        return checks

    def drain(self, timeout: float | None = DRAIN_SECONDS) -> bool:
        """Wait (at most ``timeout`` s) for queued notifications; True when none is left."""
        return self._dispatcher.drain(timeout)

    def close(self) -> None:
        self.drain(DRAIN_SECONDS)

    # -- reading alerts -------------------------------------------------------------------------

    def alerts(self, status: str | None = None, *, since: Any = None, until: Any = None, rule: str | None = None) -> pl.DataFrame:
        """Alerts in the file: open ones first, then newest first (``status`` open or resolved)."""
        if status not in (None, "open", "resolved"):
            raise ConfigError(f"status must be 'open', 'resolved' or None, got {status!r}")
        self.bench.flush()
        iso = {k: None if v is None else alerts.iso(to_micros(v, k)) for k, v in (("since", since), ("until", until))}
        return alerts.alerts_df(self.bench.store, status=status, rule=rule, **iso)

    def view(self, now: Any = None, hours: float = 24.0) -> Any:
        """The last ``hours`` per scope, open incidents at the top (HTML in a notebook)."""
        from ..widgets.monitor import MonitorView

        return MonitorView.build(self, now=now, hours=hours)

    def widget(self, now: Any = None, hours: float = 24.0) -> Any:
        """The view with *Check now* and *Refresh* buttons (ipywidgets); ``now`` fixes the time for backdated traffic."""
        from ..widgets.monitor import widget

        return widget(self, now=now, hours=hours)

    def chart(self, now: Any = None, hours: float = 24.0, every: str = "1h", fields: Sequence[str] | None = None) -> Any:
        """Metrics over the last ``hours`` with this period's alerts marked on them (Altair)."""
        from ..widgets.monitor import alert_chart

        return alert_chart(self, now=now, hours=hours, every=every, fields=fields)

    # -- quality --------------------------------------------------------------------------------

    def score(self, scorers: Sequence[Any], **kwargs: Any) -> Any:
        """Score a sample of production calls and store the scores against them (see `quality.score_production`)."""
        from .quality import score_production

        return score_production(self.bench, scorers, **kwargs)

    def quality(self, every: str = "1h", *, since: Any = None, until: Any = None, by: Any = None) -> pl.DataFrame:
        """Production scores over time: per bucket and scorer, the mean with a 95% CI (see `quality.quality_over_time`)."""
        from .quality import quality_over_time

        return quality_over_time(self.bench, every=every, since=since, until=until, by=by)

    def __repr__(self) -> str:
        return f"<Monitor {len(self._rules)} rules: {', '.join(r.name for r in self._rules)}; {len(self._targets)} notification targets>"


def detect(
    traces: pl.DataFrame,
    since: Any,
    until: Any | None = None,
    *,
    rules: Iterable[Rule] | None = None,
    scores: pl.DataFrame | None = None,
    every: Any = "1m",
) -> pl.DataFrame:
    """The alerts checks every ``every`` from ``since`` to ``until`` would open on these frames (no store needed).

    Args:
        traces: calls with at least ``started_at``, ``status``, ``latency_ms``,
            ``cost_usd`` and the scope columns the rules use (``traces_df``
            gives all of them; a Parquet export works too). Experiment and judge
            calls are left out, as in production checks.
        since: the first check time; the rules also read the history before it.
        until: the last check time (default: ``since``, one check).
        rules: default: `default_rules`.
        scores: production scores for quality rules: ``started_at`` of the scored
            call, ``scorer``, ``value`` and the scope columns.
    """
    rules = check_names(default_rules() if rules is None else rules)
    lo = to_micros(since, "since")
    hi = lo if until is None else to_micros(until, "until")
    step = minutes(every, "every") * MINUTE_US
    keys = list(dict.fromkeys(k for r in rules for k in r.by))
    needed = {"started_at", "status", "latency_ms", "cost_usd", *_data.trace_columns(keys)} - {"experiment_id", "tags_json"}
    missing = sorted(c for c in needed if c not in traces.columns and not (c == "started_at" and "_t" in traces.columns))
    if missing:
        raise ConfigError(
            f"the traces frame lacks column(s) {', '.join(missing)} that the rules read; "
            "load it with bench.traces_df() (all columns) or add them"
        )
    calls = _data.with_scopes(_data.production(traces), keys)
    prepared = None if scores is None else _data.mark_binary(_data.with_scopes(scores, keys))
    times = np.arange(lo, hi + 1, step, dtype=np.int64)
    states = _engine.replay(rules, _engine.evaluate(rules, times, calls, prepared))
    return alerts.states_frame(rules, states)


def _catch_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGINT and SIGTERM set ``stop`` (main thread only); returns what puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
        except (ValueError, OSError):  # pragma: no cover - platforms without the signal
            pass

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


# -- TOML ----------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> tuple[list[Rule], list[Any]]:
    """Rules and notification targets from a TOML file::

        [defaults]                  # optional: settings every rule takes unless it says otherwise
        by = ["prompt_name", "model"]

        [[rule]]
        type = "error_rate"         # error_rate, latency, cost_per_call, spend, quality, threshold
        window = "10m"

        [[rule]]
        type = "threshold"
        name = "slow"
        metric = "latency_p95"
        above = 2000

        [[notify]]
        webhook = "https://hooks.slack.com/services/..."
        timeout = 5
        retries = 3

    No ``[[rule]]`` table means the default rules (with ``[defaults]`` applied).
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"rules file {p} does not exist; write one (see workbench.monitor.load_config) or leave --rules out") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"rules file {p} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"defaults", "rule", "notify"})
    if unknown:
        raise ConfigError(f"rules file {p}: unknown table(s) {', '.join(unknown)}; use [defaults], [[rule]] and [[notify]]")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"rules file {p}: [defaults] must be a table")
    specs = data.get("rule", [])
    if not isinstance(specs, list):
        raise ConfigError(f"rules file {p}: rules are [[rule]] tables (note the double brackets)")
    if specs:
        rules = [rule_from_spec({**_fitting(defaults, s), **s}, f"{p} rule {i + 1}") for i, s in enumerate(specs)]
    else:
        rules = [rule_from_spec({**r.spec(), **_fitting(defaults, r.spec())}, f"{p} [defaults]") for r in default_rules()]
    targets = []
    for i, n in enumerate(data.get("notify", [])):
        if not isinstance(n, dict) or "webhook" not in n:
            raise ConfigError(f"{p} notify {i + 1}: each [[notify]] needs webhook = \"https://...\" (e-mail: use a Python callable)")
        extra = sorted(set(n) - {"webhook", "timeout", "retries", "backoff"})
        if extra:
            raise ConfigError(f"{p} notify {i + 1}: unknown setting(s) {', '.join(extra)}; webhooks take timeout, retries, backoff")
        targets.append(Webhook(n["webhook"], **{k: v for k, v in n.items() if k != "webhook"}))
    check_names(rules)
    return rules, targets


def _fitting(defaults: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The [defaults] settings that the rule's type takes (a default min_drop does not break an error rule)."""
    from dataclasses import fields

    from .rules import RULE_TYPES

    kind = spec.get("type")
    cls = RULE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return {}
    names = {f.name for f in fields(cls)} - {"name"}
    return {k: v for k, v in defaults.items() if k in names}
