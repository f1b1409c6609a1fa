"""Per-user (or key, or feature) rate limits and dollar budgets, kept in the workbench file.

Rate limits are token buckets: a bucket holds up to ``requests`` (or ``tokens``)
and refills at that many per window. Budgets are dollars per UTC day or month.
Every decision is one ``BEGIN IMMEDIATE`` transaction on the file, so limits hold
exactly across threads, processes and restarts: SQLite serialises the writers
(on PostgreSQL the same statement takes the database's write lock: ``_pg.py``).

A call is admitted before it is made: one request and its estimated tokens are
taken from the buckets, and its worst-case cost is reserved against the budget.
When it has been answered it settles: unused tokens go back, the reservation is
replaced by what the call really cost. A reservation that is never settled (the
process died) lapses after ``RESERVATION_TTL_S``. Only this module reads and
writes ``gateway_buckets``, ``gateway_spend`` and ``gateway_reservations``.
"""

from __future__ import annotations

import atexit
import calendar
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._ids import new_id
from ..errors import ConfigError, SpendLimitReached, UserRateLimited

if TYPE_CHECKING:
    from ..store import Store
    from ._core import Caller

__all__ = ["Budget", "Limits", "RateLimit"]

SCOPES = ("user", "key", "feature")
"""What a limit is counted per: the caller's user_id, metadata["key"] or metadata["feature"]."""
RESERVATION_TTL_S = 15 * 60
"""An unsettled reservation (a crashed caller) stops holding budget after this long."""
ANONYMOUS = "anonymous"


_live: weakref.WeakSet[Limits] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for limits in list(_live):
        try:
            limits.flush()
        except Exception:  # noqa: BLE001 - at exit, keep flushing the others
            pass


REFUND_SQL = "UPDATE gateway_buckets SET level = level + ? WHERE scope = ? AND name = 'tokens'"
UNRESERVE_SQL = "DELETE FROM gateway_reservations WHERE id = ?"
SPEND_SQL = (
    "INSERT INTO gateway_spend (scope, period, spent_usd, calls) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (scope, period) DO UPDATE SET spent_usd = gateway_spend.spent_usd + excluded.spent_usd, "
    "calls = gateway_spend.calls + 1"
)


def _check_per(per: str) -> str:
    if per not in SCOPES:
        raise ConfigError(f"limits are counted per {', '.join(SCOPES)}; got per={per!r}")
    return per


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` calls and ``tokens`` tokens per ``window_s`` seconds, per user (or key, or feature).

    ``RateLimit(requests=60, tokens=20_000, per="user")`` is 60 requests and 20k
    tokens a minute for each user, with bursts up to those numbers.
    """

    requests: int | None = None
    tokens: int | None = None
    per: str = "user"
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.requests is None and self.tokens is None:
            raise ConfigError("RateLimit needs requests=... or tokens=... (per window_s, default a minute)")
        for attr in ("requests", "tokens"):
            value = getattr(self, attr)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"RateLimit {attr} must be an integer >= 1, got {value!r}")
        if not isinstance(self.window_s, (int, float)) or self.window_s <= 0:
            raise ConfigError(f"RateLimit window_s must be seconds > 0, got {self.window_s!r}")
        _check_per(self.per)

    def spec(self) -> dict[str, Any]:
        return {"rate_limit": {"requests": self.requests, "tokens": self.tokens, "per": self.per, "window_s": self.window_s}}


@dataclass(frozen=True)
class Budget:
    """At most ``usd`` dollars per UTC ``period`` (``day`` or ``month``), per user (or key, or feature)."""

    usd: float
    period: str = "day"
    per: str = "user"

    def __post_init__(self) -> None:
        if not isinstance(self.usd, (int, float)) or self.usd <= 0:
            raise ConfigError(f"Budget usd must be a positive number of dollars, got {self.usd!r}")
        if self.period not in ("day", "month"):
            raise ConfigError(f"Budget period must be 'day' or 'month', got {self.period!r}")
        _check_per(self.per)

    def spec(self) -> dict[str, Any]:
        return {"budget": {"usd": self.usd, "period": self.period, "per": self.per}}


_periods: dict[str, tuple[float, float, str]] = {}
"""period -> (start, end, name) of the last one computed: most calls fall in it."""


def period_of(period: str, now: float) -> tuple[str, float]:
    """('day:2026-12-02', seconds until the next period starts) in UTC."""
    known = _periods.get(period)
    if known is not None and known[0] <= now < known[1]:
        return known[2], known[1] - now
    name, left = _period_of(period, now)
    _periods[period] = (now, now + left, name)
    return name, left


def _period_of(period: str, now: float) -> tuple[str, float]:
    t = datetime.fromtimestamp(now, timezone.utc)
    if period == "day":
        start = datetime(t.year, t.month, t.day, tzinfo=timezone.utc)
        end = start.timestamp() + 86_400
        return f"day:{t:%Y-%m-%d}", end - now
    days = calendar.monthrange(t.year, t.month)[1]
    start = datetime(t.year, t.month, 1, tzinfo=timezone.utc)
    return f"month:{t:%Y-%m}", start.timestamp() + days * 86_400 - now


@dataclass
class Admission:
    """What ``Limits.admit`` took; hand it back to ``settle``."""

    tokens_taken: dict[str, float] = field(default_factory=dict)
    """Token-bucket scope -> tokens taken (the estimate)."""
    reservations: list[tuple[str, str, str]] = field(default_factory=list)
    """(reservation id, scope, period) of budget holds."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    settled: bool = False


class Limits:
    """Rate limits and budgets: ``Limits(RateLimit(requests=60, per="user"), Budget(usd=5, period="day"))``.

    Bound to a workbench file when the gateway is (``wb.open(path, provider=gateway)``).
    """

    def __init__(self, *rules: RateLimit | Budget, clock: Any = time.time) -> None:
        for r in rules:
            if not isinstance(r, (RateLimit, Budget)):
                raise ConfigError(f"Limits takes RateLimit(...) and Budget(...) rules, got {r!r}")
        if not rules:
            raise ConfigError("Limits needs at least one RateLimit(...) or Budget(...)")
        self.rules = rules
        self.rate_limits = tuple(r for r in rules if isinstance(r, RateLimit))
        self.budgets = tuple(r for r in rules if isinstance(r, Budget))
        self.clock = clock
        self.path: str | None = None
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        """Settled calls not yet written (see ``settle``)."""
        self._conn: Any = None
        self._store: Store | None = None
        self._lock = threading.Lock()

    def spec(self) -> list[dict[str, Any]]:
        return [r.spec() for r in self.rules]

    def bind(self, store: Store) -> None:
        if store.path == ":memory:":
            raise ConfigError("per-user limits are kept in the workbench file; open a file, not ':memory:'")
        self.path = store.path
        self._store = store
        _live.add(self)

    def _connection(self) -> Any:
        """This process's own connection to the store (SQLite's or the server's), made on first use."""
        if self._conn is None:
            if self._store is None:
                raise ConfigError("Limits are not bound to a workbench file: wb.open(path, provider=gateway)")
            self._conn = self._store.connect()
        return self._conn

    @staticmethod
    def scope(per: str, caller: Caller) -> str:
        value = caller.user_id if per == "user" else caller.metadata.get(per)
        return f"{per}:{value if value not in (None, '') else ANONYMOUS}"

    def admit(self, caller: Caller, tokens: int, reserve_usd: float | None) -> Admission:
        """Take one request and ``tokens`` from every bucket and hold ``reserve_usd``, or refuse.

        Raises:
            UserRateLimited: a bucket has no room; ``retry_after`` says when it will.
            SpendLimitReached: the reservation would pass a budget; ``retry_after`` is
                the time until the period starts again.
        """
        now = self.clock()
        admission = Admission()
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            applied: list[tuple[str, tuple[Any, ...]]] = []
            try:
                applied = self._pending
                if applied:
                    self._apply_pending(conn)
                updates: list[tuple[str, str, float]] = []
                for rule in self.rate_limits:
                    scope = self.scope(rule.per, caller)
                    levels = {r[0]: (r[1], r[2]) for r in conn.execute(
                        "SELECT name, level, updated_at FROM gateway_buckets WHERE scope = ?", (scope,))}
                    for name, capacity, need in (("requests", rule.requests, 1), ("tokens", rule.tokens, tokens)):
                        if capacity is None:
                            continue
                        row = levels.get(name)
                        rate = capacity / rule.window_s
                        level = float(capacity) if row is None else min(capacity, row[0] + max(now - row[1], 0) * rate)
                        decision = {"limit": f"{name} per {rule.window_s:g}s", "scope": scope, "capacity": capacity,
                                    "needed": need, "available": round(level, 3)}
                        if need > capacity:
                            raise UserRateLimited(
                                f"{scope}: this call needs about {need:,} {name} but the limit is {capacity:,} per "
                                f"{rule.window_s:g} s; lower max_tokens or raise the limit",
                                rule=f"{name}/{rule.window_s:g}s", retry_after=None,
                            )
                        if level < need:
                            wait = (need - level) / rate
                            raise UserRateLimited(
                                f"{scope}: {name} limit of {capacity:,} per {rule.window_s:g} s reached; retry in {wait:.1f} s",
                                rule=f"{name}/{rule.window_s:g}s", retry_after=wait,
                            )
                        updates.append((scope, name, level - need))
                        if name == "tokens":
                            admission.tokens_taken[scope] = admission.tokens_taken.get(scope, 0) + need
                        admission.decisions.append(decision)
                for budget in self.budgets:
                    scope = self.scope(budget.per, caller)
                    period, left_s = period_of(budget.period, now)
                    spent_usd, held = conn.execute(
                        "SELECT (SELECT COALESCE(MAX(spent_usd), 0) FROM gateway_spend WHERE scope = ?1 AND period = ?2), "
                        "(SELECT COALESCE(SUM(usd), 0) FROM gateway_reservations WHERE scope = ?1 AND period = ?2 AND expires_at > ?3)",
                        (scope, period, now),
                    ).fetchone()
                    reserve = reserve_usd or 0.0
                    decision = {"limit": f"budget ${budget.usd:g}/{budget.period}", "scope": scope, "period": period,
                                "spent_usd": round(spent_usd, 6), "held_usd": round(held, 6), "reserve_usd": round(reserve, 6)}
                    if reserve_usd is None:
                        raise SpendLimitReached(
                            f"{scope}: a budget is set but this call's model has no known price, so it cannot be kept; "
                            "set one with bench.pricing.set_price(model, input=..., output=...)",
                            rule=f"budget/{budget.period}",
                        )
                    if spent_usd + held + reserve > budget.usd:
                        raise SpendLimitReached(
                            f"{scope}: budget ${budget.usd:g} per {budget.period} would be exceeded (spent ${spent_usd:.4f}, "
                            f"${held:.4f} held by calls in flight, this call may cost up to ${reserve:.4f}); "
                            f"it resets in {left_s / 3600:.1f} h",
                            rule=f"budget/{budget.period}", retry_after=left_s,
                        )
                    rid = new_id()
                    conn.execute(
                        "INSERT INTO gateway_reservations (id, scope, period, usd, expires_at) VALUES (?, ?, ?, ?, ?)",
                        (rid, scope, period, reserve, now + RESERVATION_TTL_S),
                    )
                    admission.reservations.append((rid, scope, period))
                    admission.decisions.append(decision)
                conn.executemany(
                    "INSERT INTO gateway_buckets (scope, name, level, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (scope, name) DO UPDATE SET level = excluded.level, updated_at = excluded.updated_at",
                    [(scope, name, level, now) for scope, name, level in updates],
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                # A refusal rolls back the settlements written with it too: keep them for the next call.
                self._pending = applied + self._pending
                raise
        return admission

    def settle(self, admission: Admission, tokens_used: int, cost_usd: float | None) -> None:
        """Give back unused tokens and turn the reservation into the real spend (once).

        The changes are increments kept in memory and written at the start of the
        next ``admit`` transaction (or by ``flush``): no second transaction per
        call, and no second writer competing for the file's lock. Until they are
        written the reservation still holds and the tokens are still taken, so
        limits can only be stricter in that window, never looser.
        """
        if admission.settled:
            return
        admission.settled = True
        with self._lock:
            # Tokens taken beyond what was used go back; more used than taken leaves the bucket in debt.
            for scope, taken in admission.tokens_taken.items():
                self._pending.append((REFUND_SQL, (taken - tokens_used, scope)))
            for rid, scope, period in admission.reservations:
                self._pending.append((UNRESERVE_SQL, (rid,)))
                self._pending.append((SPEND_SQL, (scope, period, cost_usd or 0.0)))

    def defer(self, sql: str, params: Any) -> None:
        """Queue a write for the next admit transaction (the gateway's cache rows go here too).

        One writer per file per process: a second one (the store's background
        writer) would make each admit wait on SQLite's busy handler, which sleeps
        in whole milliseconds.
        """
        with self._lock:
            self._pending.append((sql, tuple(params)))

    def _apply_pending(self, conn: Any) -> None:
        """Write settled calls inside the caller's open transaction (the lock is held)."""
        pending, self._pending = self._pending, []
        # In order, but runs of one statement go in one executemany.
        i = 0
        while i < len(pending):
            j = i
            while j < len(pending) and pending[j][0] == pending[i][0]:
                j += 1
            conn.executemany(pending[i][0], [p for _, p in pending[i:j]])
            i = j

    def flush(self) -> None:
        """Write every settled call to the file now."""
        with self._lock:
            if not self._pending or self.path is None:
                return
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._apply_pending(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def spend(self, per: str = "user") -> list[dict[str, Any]]:
        """Dollars spent per scope and period (budgets' ledger)."""
        self.flush()
        conn = self._connection()
        with self._lock:
            rows = conn.execute(
                "SELECT scope, period, spent_usd, calls FROM gateway_spend WHERE scope LIKE ? ORDER BY spent_usd DESC",
                (f"{per}:%",),
            ).fetchall()
        return [dict(zip(("scope", "period", "spent_usd", "calls"), r)) for r in rows]

    def close(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the file was closed under us at exit
            pass
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"Limits({', '.join(repr(r) for r in self.rules)})"
