"""Per-user (or key, or feature) rate limits and dollar budgets, kept in the workbench file.

Rate limits are token buckets: a bucket holds up to ``requests`` (or ``tokens``)
and refills at that many per window. Budgets are dollars per UTC day or month.
Decisions are ``BEGIN IMMEDIATE`` transactions on the file, so limits hold
exactly across threads, processes and restarts: SQLite serialises the writers
(on PostgreSQL the same statement takes the database's write lock: ``_pg.py``).

A call is admitted before it is made: one request and its estimated tokens are
taken from the buckets, and its worst-case cost is reserved against the budget.
When it has been answered it settles: unused tokens go back, the reservation is
replaced by what the call really cost. A reservation that is never settled (the
process died) lapses after ``RESERVATION_TTL_S``. Only this module reads and
writes ``gateway_buckets``, ``gateway_spend`` and ``gateway_reservations``.

**Leases.** A scope that calls often, with plenty of room, does not need the
file for every call: when a call is admitted through the file and the scope has
called in the last ``LEASE_S`` with room for many more calls, the same
transaction also takes a lease, a share of the room (``LEASE_SHARE``, at most
``LEASE_CALLS[1]`` calls like this one), and the next calls draw on it in memory
for up to ``LEASE_S``. What this keeps exact:

- *Never more than the limit.* Leased requests and tokens leave the bucket when
  the lease is taken, and leased dollars are held as a reservation, so what every
  process can spend still adds up to what the file allows. Until a lease goes
  back, a bucket's refill stops short of its capacity by the lease (its row in
  ``gateway_buckets``), and going back first brings the level to the lease's last
  draw: leased tokens never come back as a burst. A lease is never drawn on after
  it expires; its unused part goes back to the file then (a timer returns an idle
  one), at the holder's next call through the file, on ``flush()`` and ``close()``.
- *Refused only when the limit is used up.* A call the file would refuse while
  another process holds a lease on that scope waits (up to ``LEASE_S`` +
  ``LEASE_GRACE_S``) for the lease to come back, then is decided again. The lease
  of a process that died stays out of its bucket for ``RESERVATION_TTL_S``:
  stricter, never looser.
- Small limits never lease (a share must cover ``LEASE_CALLS[0]`` calls), so a
  limit of 10 a day is decided call by call, exactly as before.
"""

from __future__ import annotations

import asyncio
import atexit
import calendar
import math
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
LEASE_S = 0.5
"""A lease is drawn on for at most this long after it is taken."""
LEASE_SHARE = 1 / 8
"""A lease takes at most this share of the room a bucket or budget has left after the call taking it..."""
LEASE_CALLS = (4, 64)
"""...and only when that share covers at least 4 calls like it; it holds at most 64."""
LEASE_GRACE_S = 1.0
"""How long past another process's lease expiry a call that would be refused waits for its return
(its timer gives it back at expiry; this covers a busy machine's scheduling delays)."""
LEASE_MARK = "@lease:"
"""A bucket row named ``requests@lease:<instance>`` records the requests that instance has leased."""
QUEUED_ROWS = 64
"""Rows queued while calls draw on leases that the background thread writes in one transaction."""
WAIT_STEP_S = 0.02
"""How often a call waiting for another process's lease asks the file again."""


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
HOLD_SQL = "UPDATE gateway_reservations SET usd = ? WHERE id = ?"
SPEND_SQL = (
    "INSERT INTO gateway_spend (scope, period, spent_usd, calls) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (scope, period) DO UPDATE SET spent_usd = gateway_spend.spent_usd + excluded.spent_usd, "
    "calls = gateway_spend.calls + excluded.calls"
)
BUCKET_SQL = (
    "INSERT INTO gateway_buckets (scope, name, level, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (scope, name) DO UPDATE SET level = excluded.level, updated_at = excluded.updated_at"
)
DROP_LEASE_SQL = "DELETE FROM gateway_buckets WHERE scope = ? AND name = ?"
RESERVE_SQL = "INSERT INTO gateway_reservations (id, scope, period, usd, expires_at) VALUES (?, ?, ?, ?, ?)"


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


@dataclass(eq=False)
class _Lease:
    """Room taken from one bucket or budget in a transaction, then drawn on in memory until ``expires``."""

    scope: str
    name: str
    """``requests`` or ``tokens``; for a budget, its period (``day:2026-12-02``)."""
    record: str
    """Its row in the file: the bucket row's name, or the reservation's id."""
    left: float
    """Requests, tokens or dollars not drawn yet (below 0 when calls used more than they took)."""
    expires: float
    budget: bool = False
    capacity: float = 0.0
    """Buckets: the rule's capacity and refill per second, to settle the level when it goes back."""
    rate: float = 0.0
    last_draw: float = 0.0
    """Buckets: when it was last drawn on (taken, at first)."""
    held: float = 0.0
    """Budgets: worst cases of calls drawn from it and not settled yet."""
    spent: float = 0.0
    """Budgets: dollars settled under it and not written yet."""
    calls: int = 0
    returned: bool = False


@dataclass
class Admission:
    """What ``Limits.admit`` took; hand it back to ``settle``."""

    tokens_taken: dict[str, float] = field(default_factory=dict)
    """Token-bucket scope -> tokens taken from the file (the estimate)."""
    reservations: list[tuple[str, str, str]] = field(default_factory=list)
    """(reservation id, scope, period) of budget holds."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    settled: bool = False
    drawn: list[tuple[_Lease, float]] = field(default_factory=list)
    """Leases this call drew on, and how much (tokens, or the dollars held)."""
    reserved_usd: float = 0.0
    """The worst case held against each budget: what a paid call of unknown cost is counted as."""


class _Wait(Exception):
    """The file would refuse the call, but another process's lease on the scope may come back first."""


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
        self._buckets = tuple((r, name, _bucket_label(r, name)) for r in self.rate_limits
                              for name in ("requests", "tokens") if getattr(r, name) is not None)
        self._budget_labels = tuple((b, _budget_label(b)) for b in self.budgets)
        self.clock = clock
        self.path: str | None = None
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        """Settled calls not yet written (see ``settle``)."""
        self._conn: Any = None
        self._store: Store | None = None
        self._lock = threading.Lock()
        """Guards what is in memory (leases, pending writes); held briefly."""
        self._db = threading.Lock()
        """Guards the connection; taken before ``_lock``, so drawing on a lease never waits for a write."""
        self._instance = new_id()
        """Names this object's leases in the file."""
        self._leases: dict[tuple[str, str], _Lease] = {}
        """(scope, bucket name or budget period) -> the lease drawn on now."""
        self._last_call: dict[str, float] = {}
        """scope -> when it last called: a lease is taken only for a scope that calls often."""
        self._returner: threading.Thread | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()

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

    # -- admitting ---------------------------------------------------------------------------

    def admit(self, caller: Caller, tokens: int, reserve_usd: float | None) -> Admission:
        """Take one request and ``tokens`` from every bucket and hold ``reserve_usd``, or refuse.

        From this process's leases when they cover the call, else through the file;
        a call the file would refuse while another process holds a lease on the
        scope waits for it (see the module docstring).

        Raises:
            UserRateLimited: a bucket has no room; ``retry_after`` says when it will.
            SpendLimitReached: the reservation would pass a budget; ``retry_after`` is
                the time until the period starts again.
        """
        admission, give_up = self._try(caller, tokens, reserve_usd, None)
        while admission is None:
            time.sleep(WAIT_STEP_S)
            admission, give_up = self._try(caller, tokens, reserve_usd, give_up)
        return admission

    async def aadmit(self, caller: Caller, tokens: int, reserve_usd: float | None) -> Admission:
        """``admit`` for a coroutine: a wait for another process's lease does not block the event loop."""
        admission, give_up = self._try(caller, tokens, reserve_usd, None)
        while admission is None:
            await asyncio.sleep(WAIT_STEP_S)
            admission, give_up = self._try(caller, tokens, reserve_usd, give_up)
        return admission

    def _try(self, caller: Caller, tokens: int, reserve_usd: float | None, give_up: float | None) -> tuple[Admission | None, float | None]:
        """(the admission, or None to wait and try again; the monotonic time after which a refusal no longer waits)."""
        try:
            return self._admit(caller, tokens, reserve_usd, may_wait=give_up is None or time.monotonic() < give_up), give_up
        except _Wait:
            return None, give_up or time.monotonic() + LEASE_S + LEASE_GRACE_S

    def _admit(self, caller: Caller, tokens: int, reserve_usd: float | None, *, may_wait: bool) -> Admission:
        with self._lock:
            admission = self._from_leases(caller, tokens, reserve_usd, self.clock())
        if admission is None:
            with self._db, self._lock:
                admission = self._through_file(caller, tokens, reserve_usd, self.clock(), may_wait)
        if self.budgets:
            admission.reserved_usd = reserve_usd or 0.0
        return admission

    def _from_leases(self, caller: Caller, tokens: int, reserve_usd: float | None, now: float) -> Admission | None:
        """The call admitted from this process's leases, or None when they do not cover it (the lock is held)."""
        if reserve_usd is None and self.budgets:
            return None
        scopes: dict[str, str] = {}
        draws: list[tuple[_Lease, float, str, Any]] = []
        for rule, name, label in self._buckets:
            scope = scopes.get(rule.per) or scopes.setdefault(rule.per, self.scope(rule.per, caller))
            need = 1 if name == "requests" else tokens
            lease = self._leases.get((scope, name))
            if lease is None or now >= lease.expires or lease.left < need:
                return None
            draws.append((lease, need, label, rule))
        for budget, label in self._budget_labels:
            scope = scopes.get(budget.per) or scopes.setdefault(budget.per, self.scope(budget.per, caller))
            lease = self._leases.get((scope, period_of(budget.period, now)[0]))
            if lease is None or now >= lease.expires or lease.left < reserve_usd:  # type: ignore[operator]
                return None
            draws.append((lease, reserve_usd, label, budget))  # type: ignore[arg-type]
        if len({id(d[0]) for d in draws}) < len(draws):
            return None  # two rules on one bucket: the file decides
        admission = Admission()
        for lease, need, label, rule in draws:
            lease.left -= need
            lease.last_draw = now
            admission.drawn.append((lease, need))
            if lease.budget:
                lease.held += need
                admission.decisions.append({"limit": label, "scope": lease.scope, "period": lease.name, "lease": True,
                                            "lease_left_usd": round(lease.left, 6), "reserve_usd": round(need, 6)})
            else:
                admission.decisions.append({"limit": label, "scope": lease.scope, "capacity": getattr(rule, lease.name),
                                            "needed": need, "available": round(lease.left + need, 3), "lease": True})
        for scope in scopes.values():
            self._last_call[scope] = now
        return admission

    def _through_file(self, caller: Caller, tokens: int, reserve_usd: float | None, now: float, may_wait: bool) -> Admission:
        """One transaction: give back this call's leases, decide, take a lease when the scope is busy (lock held)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        applied = self._pending
        scopes = {self.scope(r.per, caller) for r in self.rules}
        # This process's own leases on these scopes go back first: they never refuse it.
        returned = [lease for key, lease in self._leases.items() if key[0] in scopes]
        try:
            if self._pending:
                self._apply_pending(conn)
            for lease in returned:
                self._give_back(conn, lease, now)
            admission, writes, busy = Admission(), [], []
            refusal: Exception | None = None
            for rule in self.rate_limits:
                scope = self.scope(rule.per, caller)
                buckets, leased, others = self._read_buckets(conn, scope, now)
                for name, capacity, need in (("requests", rule.requests, 1), ("tokens", rule.tokens, tokens)):
                    if capacity is None:
                        continue
                    rate = capacity / rule.window_s
                    # Leased-out room does not refill: what every process can draw stays within capacity.
                    top = capacity - leased.get(name, 0.0)
                    row = buckets.get(name)
                    level = top if row is None else min(top, row[0] + max(now - row[1], 0) * rate)
                    if need > capacity:
                        refusal = UserRateLimited(
                            f"{scope}: this call needs about {need:,} {name} but the limit is {capacity:,} per "
                            f"{rule.window_s:g} s; lower max_tokens or raise the limit",
                            rule=f"{name}/{rule.window_s:g}s", retry_after=None,
                        )
                        break
                    if level < need:
                        if others.get(name, -math.inf) > now - LEASE_GRACE_S:
                            busy.append(name)
                        wait = (need - level) / rate
                        refusal = UserRateLimited(
                            f"{scope}: {name} limit of {capacity:,} per {rule.window_s:g} s reached; retry in {wait:.1f} s",
                            rule=f"{name}/{rule.window_s:g}s", retry_after=wait,
                        )
                        break
                    writes.append(("bucket", rule, scope, name, need, level - need))
                    admission.decisions.append({"limit": _bucket_label(rule, name), "scope": scope, "capacity": capacity,
                                                "needed": need, "available": round(level, 3)})
                if refusal is not None:
                    break
            if refusal is None:
                for budget in self.budgets:
                    scope = self.scope(budget.per, caller)
                    period, left_s = period_of(budget.period, now)
                    spent_usd, held = conn.execute(
                        "SELECT (SELECT COALESCE(MAX(spent_usd), 0) FROM gateway_spend WHERE scope = ?1 AND period = ?2), "
                        "(SELECT COALESCE(SUM(usd), 0) FROM gateway_reservations WHERE scope = ?1 AND period = ?2 AND expires_at > ?3)",
                        (scope, period, now),
                    ).fetchone()
                    reserve = reserve_usd or 0.0
                    if reserve_usd is None:
                        refusal = SpendLimitReached(
                            f"{scope}: a budget is set but this call's model has no known price, so it cannot be kept; "
                            "set one with bench.pricing.set_price(model, input=..., output=...)",
                            rule=f"budget/{budget.period}",
                        )
                        break
                    if spent_usd + held + reserve > budget.usd:
                        if self._others_lease_budget(conn, scope, period, now):
                            busy.append(period)
                        refusal = SpendLimitReached(
                            f"{scope}: budget ${budget.usd:g} per {budget.period} would be exceeded (spent ${spent_usd:.4f}, "
                            f"${held:.4f} held by calls in flight, this call may cost up to ${reserve:.4f}); "
                            f"it resets in {left_s / 3600:.1f} h",
                            rule=f"budget/{budget.period}", retry_after=left_s,
                        )
                        break
                    writes.append(("budget", budget, scope, period, reserve, budget.usd - spent_usd - held - reserve))
                    admission.decisions.append({"limit": _budget_label(budget), "scope": scope, "period": period,
                                                "spent_usd": round(spent_usd, 6), "held_usd": round(held, 6),
                                                "reserve_usd": round(reserve, 6)})
            if refusal is not None:
                conn.execute("COMMIT")  # the leases given back and the settlements stay written
                self._forget(returned)
                if busy and may_wait:
                    raise _Wait()
                raise refusal
            taken = self._write(conn, admission, writes, now, self._leasing(caller, now, writes))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # not after a refusal, which committed
                conn.execute("ROLLBACK")
                # The settlements written with it are rolled back too: keep them for the next call.
                self._pending = applied + self._pending
            raise
        # Only now that the file has them: the old leases are gone, the new ones may be drawn on.
        self._forget(returned)
        for lease in taken:
            self._hold(lease)
        for scope in scopes:
            self._last_call[scope] = now
        if len(self._last_call) > 100_000:
            self._last_call.clear()
        return admission

    def _read_buckets(self, conn: Any, scope: str, now: float) -> tuple[dict[str, tuple[float, float]], dict[str, float], dict[str, float]]:
        """(bucket -> (level, updated_at), bucket -> room leased out and still live, bucket -> latest expiry of another process's lease)."""
        buckets: dict[str, tuple[float, float]] = {}
        leased: dict[str, float] = {}
        others: dict[str, float] = {}
        stale: list[str] = []
        for name, level, updated_at in conn.execute("SELECT name, level, updated_at FROM gateway_buckets WHERE scope = ?", (scope,)):
            bucket, mark, holder = name.partition(LEASE_MARK)
            if not mark:
                buckets[name] = (level, updated_at)
                continue
            # A lease row: its level is what was leased, its updated_at when the lease expires. Until it
            # is given back (even expired) its room stays out of the refill: its holder settles it then.
            if updated_at < now - RESERVATION_TTL_S:
                stale.append(name)  # a process that died holding it: nobody will give it back
                continue
            leased[bucket] = leased.get(bucket, 0.0) + level
            if holder != self._instance:
                others[bucket] = max(others.get(bucket, -math.inf), updated_at)
        if stale:
            conn.executemany(DROP_LEASE_SQL, [(scope, name) for name in stale])
        return buckets, leased, others

    def _others_lease_budget(self, conn: Any, scope: str, period: str, now: float) -> bool:
        """Whether another process holds a budget lease on ``scope`` that is live or just expired."""
        latest = conn.execute(
            "SELECT MAX(expires_at) FROM gateway_reservations WHERE scope = ? AND period = ? AND id LIKE 'lease:%' AND id NOT LIKE ?",
            (scope, period, f"lease:{self._instance}:%"),
        ).fetchone()[0]
        return latest is not None and latest - RESERVATION_TTL_S > now - LEASE_GRACE_S

    def _leasing(self, caller: Caller, now: float, writes: list[tuple[Any, ...]]) -> dict[int, float] | None:
        """Lease sizes per write when this call should take leases (every bucket and budget has room), else None."""
        if not all(now - self._last_call.get(w[2], -math.inf) < LEASE_S for w in writes):
            return None
        sizes: dict[int, float] = {}
        for i, (kind, _rule, _scope, name, need, room) in enumerate(writes):
            share = math.floor(room * LEASE_SHARE) if kind == "bucket" else room * LEASE_SHARE
            if need > 0:
                if share < LEASE_CALLS[0] * need:
                    return None
                share = min(share, LEASE_CALLS[1] * need)
            elif share <= 0:
                return None
            else:
                share = 0.0  # a free call's budget lease holds nothing; a cost at settle sends the next call to the file
            sizes[i] = share
        return sizes

    def _write(self, conn: Any, admission: Admission, writes: list[tuple[Any, ...]], now: float,
               leases: dict[int, float] | None) -> list[_Lease]:
        """Take what was decided from the file, with leases when ``leases`` gives their sizes (lock held, in the
        transaction); returns the leases, to draw on once the transaction has committed."""
        buckets, taken = [], []
        for i, (kind, rule, scope, name, need, room) in enumerate(writes):
            lease_size = 0.0 if leases is None else leases[i]
            expires = now + LEASE_S
            if kind == "bucket":
                buckets.append((scope, name, room - lease_size, now))
                if leases is not None:
                    record = f"{name}{LEASE_MARK}{self._instance}"
                    buckets.append((scope, record, lease_size, expires))
                    taken.append(_Lease(scope, name, record, lease_size, expires, capacity=getattr(rule, name),
                                        rate=getattr(rule, name) / rule.window_s, last_draw=now))
                # This call's own tokens came from the bucket, not the lease: its refund goes to the bucket.
                if name == "tokens":
                    admission.tokens_taken[scope] = admission.tokens_taken.get(scope, 0) + need
            else:
                if leases is None:
                    rid = new_id()
                    conn.execute(RESERVE_SQL, (rid, scope, name, need, now + RESERVATION_TTL_S))
                    admission.reservations.append((rid, scope, name))
                    continue
                rid = f"lease:{self._instance}:{new_id()}"
                conn.execute(RESERVE_SQL, (rid, scope, name, lease_size + need, expires + RESERVATION_TTL_S))
                lease = _Lease(scope, name, rid, lease_size, expires, budget=True, held=need)
                taken.append(lease)
                admission.drawn.append((lease, need))
        if buckets:
            conn.executemany(BUCKET_SQL, buckets)
        return taken

    def _hold(self, lease: _Lease) -> None:
        """Keep ``lease`` to draw on, and make sure something gives it back once it expires (lock held)."""
        self._leases[(lease.scope, lease.name)] = lease
        if self._returner is None or not self._returner.is_alive():
            self._closing.clear()  # bound again after close()
            self._returner = threading.Thread(target=self._background, name="workbench-limits", daemon=True)
            self._returner.start()

    def _give_back(self, conn: Any, lease: _Lease, now: float) -> None:
        """Return a lease's unused part to the file, inside the caller's transaction (lock held).

        A bucket's level is first brought to the lease's last draw with the lease's
        room still kept out of the refill, then the unused part goes back: the
        same level as if every call had been admitted through the file.
        """
        if lease.budget:
            if lease.calls:
                conn.execute(SPEND_SQL, (lease.scope, lease.name, lease.spent, lease.calls))
            # Calls still in flight keep their worst case held until they settle.
            if lease.held > 1e-12:
                conn.execute(HOLD_SQL, (lease.held, lease.record))
            else:
                conn.execute(UNRESERVE_SQL, (lease.record,))
            return
        base, leased = None, 0.0
        for name, level, updated_at in conn.execute(
            "SELECT name, level, updated_at FROM gateway_buckets WHERE scope = ? AND (name = ? OR name LIKE ?)",
            (lease.scope, lease.name, f"{lease.name}{LEASE_MARK}%"),
        ):
            if name == lease.name:
                base = (level, updated_at)
            elif updated_at >= now - RESERVATION_TTL_S:
                leased += level  # this lease's row included
        if base is not None:
            at = max(base[1], lease.last_draw)
            level = min(lease.capacity - leased, base[0] + (at - base[1]) * lease.rate) + lease.left
            conn.execute(BUCKET_SQL, (lease.scope, lease.name, level, at))
        conn.execute(DROP_LEASE_SQL, (lease.scope, lease.record))

    def _forget(self, leases: list[_Lease]) -> None:
        """Stop drawing on leases whose return has been committed (lock held)."""
        for lease in leases:
            lease.returned = True
            if self._leases.get((lease.scope, lease.name)) is lease:
                del self._leases[(lease.scope, lease.name)]

    def _background(self) -> None:
        """While leases are held: give back the ones nobody drew on before they expired, and write queued rows.

        Calls drawn from leases make no transaction, so the rows queued meanwhile
        (the gateway's cache rows) are written here, off the callers' path.
        """
        while not self._closing.is_set():
            with self._lock:
                if not self._leases:
                    self._returner = None
                    return
                due = min(lease.expires for lease in self._leases.values())
            wait = due - self.clock()
            if wait > 0:
                if self._wake.wait(min(wait, LEASE_S) + 0.001):
                    self._wake.clear()
                    try:
                        self._write_queued()
                    except Exception:  # noqa: BLE001 - kept queued; the next transaction writes them
                        pass
                continue
            try:
                self._write_pending(expired_by=self.clock())
            except Exception:  # noqa: BLE001 - a closed file at exit; flush() or the next admit returns them
                return

    def _write_queued(self) -> None:
        """Write what is queued in one transaction, holding ``_lock`` only to take the queue."""
        with self._db:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows or self.path is None:
                return
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                _execute_in_order(conn, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                with self._lock:
                    self._pending = rows + self._pending
                raise

    # -- settling ------------------------------------------------------------------------------

    def settle(self, admission: Admission, tokens_used: int, cost_usd: float | None) -> None:
        """Give back unused tokens and turn the reservation into the real spend (once).

        ``cost_usd`` None with tokens used (the answer could not be priced) spends the
        whole reservation.

        The changes are increments kept in memory and written at the start of the
        next transaction (or by ``flush``): no second transaction per call, and no
        second writer competing for the file's lock. Until they are written the
        reservation still holds and the tokens are still taken, so limits can only
        be stricter in that window, never looser. A call drawn from a lease settles
        into the lease, which writes its total when it goes back.
        """
        if admission.settled:
            return
        admission.settled = True
        # A paid call whose price is unknown (a fallback to an unpriced model) counts as its
        # worst case: a budget must never come out looser for what it could not price.
        cost = cost_usd if cost_usd is not None else (admission.reserved_usd if tokens_used else 0.0)
        if cost_usd is None and tokens_used and admission.reserved_usd:
            admission.decisions.append({"unpriced": True, "counted_usd": round(admission.reserved_usd, 6)})
        with self._lock:
            # Tokens taken beyond what was used go back; more used than taken leaves the bucket in debt.
            for scope, taken in admission.tokens_taken.items():
                self._pending.append((REFUND_SQL, (taken - tokens_used, scope)))
            for rid, scope, period in admission.reservations:
                self._pending.append((UNRESERVE_SQL, (rid,)))
                self._pending.append((SPEND_SQL, (scope, period, cost, 1)))
            for lease, taken in admission.drawn:
                if lease.budget:
                    lease.held -= taken
                    if not lease.returned:
                        lease.left += taken - cost
                        lease.spent += cost
                        lease.calls += 1
                        continue
                    self._pending.append((SPEND_SQL, (lease.scope, lease.name, cost, 1)))
                    self._pending.append((HOLD_SQL, (lease.held, lease.record)) if lease.held > 1e-12 else (UNRESERVE_SQL, (lease.record,)))
                elif lease.name == "tokens":
                    if not lease.returned:
                        lease.left += taken - tokens_used
                    else:
                        self._pending.append((REFUND_SQL, (taken - tokens_used, lease.scope)))

    def defer(self, sql: str, params: Any) -> None:
        """Queue a write for the next admit transaction (the gateway's cache rows go here too).

        One writer per file per process: a second one (the store's background
        writer) would make each admit wait on SQLite's busy handler, which sleeps
        in whole milliseconds. While calls are admitted from leases no transaction
        comes, so a batch of 64 rows is written on its own.
        """
        with self._lock:
            self._pending.append((sql, tuple(params)))
            due = len(self._pending) >= QUEUED_ROWS and bool(self._leases)
        if due and not self._wake.is_set():
            self._wake.set()  # the background thread writes them

    def _apply_pending(self, conn: Any) -> None:
        """Write settled calls inside the caller's open transaction (the lock is held)."""
        pending, self._pending = self._pending, []
        _execute_in_order(conn, pending)

    def flush(self) -> None:
        """Write every settled call to the file now, and give back every lease."""
        self._write_pending(expired_by=math.inf)

    def _write_pending(self, expired_by: float) -> None:
        """One transaction: settled calls and queued rows, and the leases expired by then."""
        with self._db, self._lock:
            now = self.clock()
            returned = [lease for lease in self._leases.values() if lease.expires <= expired_by]
            if not (self._pending or returned) or self.path is None:
                return
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            applied = self._pending
            try:
                if self._pending:
                    self._apply_pending(conn)
                for lease in returned:
                    self._give_back(conn, lease, now)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._pending = applied + self._pending
                raise
            self._forget(returned)

    def spend(self, per: str = "user") -> list[dict[str, Any]]:
        """Dollars spent per scope and period (budgets' ledger)."""
        self.flush()
        with self._db:
            rows = self._connection().execute(
                "SELECT scope, period, spent_usd, calls FROM gateway_spend WHERE scope LIKE ? ORDER BY spent_usd DESC",
                (f"{per}:%",),
            ).fetchall()
        return [dict(zip(("scope", "period", "spent_usd", "calls"), r)) for r in rows]

    def close(self) -> None:
        self._closing.set()
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the file was closed under us at exit
            pass
        with self._db:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- what the trace says -----------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Limits({', '.join(repr(r) for r in self.rules)})"


def _execute_in_order(conn: Any, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Run queued statements in order, each run of one statement as one executemany."""
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j][0] == rows[i][0]:
            j += 1
        conn.executemany(rows[i][0], [p for _, p in rows[i:j]])
        i = j


def _bucket_label(rule: RateLimit, name: str) -> str:
    return f"{name} per {rule.window_s:g}s"


def _budget_label(budget: Budget) -> str:
    return f"budget ${budget.usd:g}/{budget.period}"
