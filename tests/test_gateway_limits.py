"""Per-user rate limits and budgets: exact under threads and processes, persisted, traced."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

import workbench as wb
from workbench import gateway as gw
from workbench.errors import ConfigError, GatewayRefused, SpendLimitReached, UserRateLimited
from workbench.providers.simulated import SimulatedProvider
from workbench.store import Store

pytestmark = pytest.mark.backends("sqlite", "postgres")

HELPER = Path(__file__).resolve().parent / "helpers" / "limits_worker.py"
ASK = [{"role": "user", "content": "How do I export my data?"}]


def bound(store, *rules, clock=None):
    limits = gw.Limits(*rules) if clock is None else gw.Limits(*rules, clock=clock)
    limits.bind(store)
    return limits


def test_requests_per_minute_refuse_with_the_retry_time_and_refill(store):
    now = [1_000_000.0]
    limits = bound(store, gw.RateLimit(requests=3, per="user"), clock=lambda: now[0])
    alice = gw.Caller("alice")
    for _ in range(3):
        limits.settle(limits.admit(alice, 10, 0), 10, 0)
    with pytest.raises(UserRateLimited, match="user:alice.*retry in 20.0 s") as caught:
        limits.admit(alice, 10, 0)
    assert caught.value.retry_after == pytest.approx(20.0)  # one request refills every 60/3 s
    limits.admit(gw.Caller("bob"), 10, 0)  # each user has a bucket
    now[0] += 20
    limits.admit(alice, 10, 0)


def test_token_buckets_take_the_estimate_and_give_back_what_was_not_used(store):
    now = [1_000_000.0]
    limits = bound(store, gw.RateLimit(tokens=1_000, per="feature"), clock=lambda: now[0])
    search = gw.Caller("u", {"feature": "search"})
    first = limits.admit(search, 600, 0)
    with pytest.raises(UserRateLimited, match="feature:search"):
        limits.admit(search, 600, 0)
    limits.settle(first, 100, 0)  # 500 of the 600 taken come back (written with the next admit)
    limits.admit(search, 600, 0)
    with pytest.raises(UserRateLimited, match="limit is 1,000"):
        limits.admit(search, 5_000, 0)  # could never pass: says so instead of a retry time


def test_limits_hold_across_a_restart(target):
    path = target("l.db")
    s1 = Store(path)
    bound(s1, gw.RateLimit(requests=2, window_s=3600)).admit(gw.Caller("carol"), 1, 0)
    bound(s1, gw.RateLimit(requests=2, window_s=3600)).admit(gw.Caller("carol"), 1, 0)
    s1.close()
    s2 = Store(path)
    with pytest.raises(UserRateLimited):
        bound(s2, gw.RateLimit(requests=2, window_s=3600)).admit(gw.Caller("carol"), 1, 0)
    s2.close()


def hammer(store, rules, users, threads: int, rounds: int) -> tuple[Counter, Counter, Counter]:
    """``threads`` instances (each its own connection, as processes would be) call for every user ``rounds`` times.

    Each call estimates 10 tokens and reserves 2 cents, then settles at 1 cent.
    Returns admitted calls per user, refusals per error type, and admitted calls drawn from a lease per user.
    """
    admitted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    leased: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        limits = bound(store, *rules)
        start.wait()
        for _ in range(rounds):
            for user in users:
                try:
                    admission = limits.admit(gw.Caller(user), 10, 0.02)
                except GatewayRefused as exc:
                    with lock:
                        refused[type(exc).__name__] += 1
                    continue
                limits.settle(admission, 10, 0.01)
                with lock:
                    admitted[user] += 1
                    leased[user] += bool(admission.drawn)
        limits.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return admitted, refused, leased


@pytest.mark.backends("sqlite")
def test_threads_never_exceed_any_users_limit_or_budget(store):
    """4 users x 16 threads, each thread with its own connection (as separate processes would have).

    SQLite only: the lower bound on admissions depends on how long settlements wait for
    the next admit, which is timing; PostgreSQL's exactness is the two-process test's.
    """
    rules = (gw.RateLimit(requests=12, window_s=86_400), gw.Budget(usd=0.10, period="day"))
    admitted, refused, _ = hammer(store, rules, ["u1", "u2", "u3", "u4"], threads=16, rounds=3)
    # 0.02 is reserved per call and 0.01 settled: the budget admits at most 10 calls a user,
    # fewer while reservations are held; the rate limit 12. Never more.
    assert all(n <= 10 for n in admitted.values()) and sum(admitted.values()) >= 4 * 5
    spend = {r["scope"]: r["spent_usd"] for r in bound(store, *rules).spend()}
    assert all(v <= 0.10 + 1e-9 for v in spend.values())
    assert sum(refused.values()) == 16 * 3 * 4 - sum(admitted.values())


def two_processes(path, threads: int, calls: int, users: list[str], env: dict[str, str] | None = None) -> tuple[Counter, dict]:
    """Run ``tests/helpers/limits_worker.py`` in two processes on one file: (admitted per user, spent per scope)."""
    Store(path).close()  # migrate once, before both start
    procs = [
        subprocess.Popen([sys.executable, str(HELPER), str(path), str(threads), str(calls), *users],
                         stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    admitted: Counter[str] = Counter()
    for out in outs:
        admitted.update(out["admitted"])
    store = Store(path)
    spent = {r["scope"]: r["spent_usd"] for r in bound(store, gw.Budget(usd=1)).spend()}
    store.close()
    return admitted, spent


@pytest.mark.slow
def test_two_processes_on_one_file_never_exceed_a_limit(target):
    users = ["alice", "bob", "carol"]
    admitted, spent = two_processes(target("two.db"), 6, 4, users)
    # Rate limit 10 a day per user; budget $0.25 at 1 cent settled (2 reserved) per call.
    assert set(admitted) == set(users)
    assert all(n == 10 for n in admitted.values()), admitted
    assert spent == {f"user:{u}": pytest.approx(0.10) for u in users}


def test_budgets_through_the_gateway_are_reserved_settled_and_traced(target):
    sim = SimulatedProvider(seed=1, time_scale=0, error_rate=0)
    gateway = gw.Gateway(sim, limits=gw.Limits(gw.Budget(usd=0.003, period="month")))
    bench = wb.open(target("b.db"), provider=gateway)
    import asyncio

    async def burst():
        calls = [bench.acomplete(model="claude-sonnet-4-5", messages=[{"role": "user", "content": f"q{i} how do I export?"}],
                                 params={"max_tokens": 60}, user_id="dave", raise_on_error=False) for i in range(40)]
        return await asyncio.gather(*calls)

    results = asyncio.run(burst())
    ok = [r for r in results if r.status == "ok"]
    refused = [r for r in results if r.status == "error"]
    assert ok and refused
    assert sum(r.cost_usd for r in ok) <= 0.003
    assert all(isinstance(r.error, SpendLimitReached) and r.error.retry_after > 0 for r in refused)
    row = bench.trace(refused[0].trace_id)
    assert row["error_type"] == "SpendLimitReached" and row["user_id"] == "dave"
    assert row["metadata"]["gateway"]["limits"]["refused"] == "budget/month"
    assert "resets in" in row["error"]
    bench.close()


def test_a_paid_call_of_unknown_cost_spends_its_whole_reservation(store):
    # A fallback to an unpriced model answers: its cost is unknown, so the budget counts the
    # worst case held for it, never zero. A call that used nothing (a cache hit) spends nothing.
    now = [1_000_000.0]
    limits = bound(store, gw.Budget(usd=1.0, period="day"), clock=lambda: now[0])
    alice = gw.Caller("alice")
    unpriced = limits.admit(alice, 100, 0.25)
    limits.settle(unpriced, 120, None)
    assert unpriced.decisions[-1] == {"unpriced": True, "counted_usd": 0.25}  # what the trace shows
    limits.settle(limits.admit(alice, 100, 0.25), 0, None)
    limits.settle(limits.admit(alice, 100, 0.25), 120, 0.01)
    [row] = limits.spend()
    assert row["spent_usd"] == pytest.approx(0.26) and row["calls"] == 3


def test_unknown_cost_counts_the_worst_case_on_a_lease_too(store):
    now = [1_000_000.0]
    limits = bound(store, gw.Budget(usd=1_000, period="day"), clock=lambda: now[0])
    bob = gw.Caller("bob")
    for _ in range(40):  # busy enough to lease
        limits.settle(limits.admit(bob, 100, 0.5), 120, None)
    limits.close()
    [row] = limits.spend()
    assert row["calls"] == 40 and row["spent_usd"] == pytest.approx(20.0)


def test_limits_need_a_file():
    with pytest.raises(ConfigError, match="file"):
        gw.Limits(gw.RateLimit(requests=1)).bind(Store(":memory:"))


# -- leases: a busy scope draws on room taken in one transaction -------------------------------


def transactions(limits) -> list[str]:
    """Record each transaction ``limits`` opens from now on (a call through the file, a flush, queued rows)."""
    opened: list[str] = []
    for name in ("_through_file", "_write_pending", "_write_queued"):
        def spy(*args, _name=name, _original=getattr(limits, name), **kwargs):
            opened.append(_name)
            return _original(*args, **kwargs)

        setattr(limits, name, spy)
    return opened


def test_a_busy_scope_draws_on_a_lease_without_writing_the_file(store):
    now = [1_000_000.0]  # time stands still: no refill, and the lease cannot expire under a slow test
    limits = bound(store, gw.RateLimit(requests=100_000, tokens=10**9, window_s=3600), gw.Budget(usd=1_000),
                   clock=lambda: now[0])
    erin = gw.Caller("erin")
    first = limits.admit(erin, 500, 0.01)  # a scope's first call: decided in the file, no lease
    assert not any(d.get("lease") for d in first.decisions)
    limits.settle(first, 400, 0.004)
    second = limits.admit(erin, 500, 0.01)  # called again at once: the same transaction takes leases
    limits.settle(second, 400, 0.004)
    opened = transactions(limits)
    for _ in range(40):
        admission = limits.admit(erin, 500, 0.01)
        assert all(d["lease"] for d in admission.decisions)
        limits.settle(admission, 400, 0.004)
    assert opened == []  # 40 calls, not one transaction
    spend = limits.spend()  # flushes: the leases go back and their spend is written
    assert spend == [{"scope": "user:erin", "period": spend[0]["period"], "spent_usd": pytest.approx(42 * 0.004), "calls": 42}]
    conn = limits._connection()
    assert conn.execute("SELECT COUNT(*) FROM gateway_reservations").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM gateway_buckets WHERE name LIKE '%@lease:%'").fetchone()[0] == 0
    # What was not used came back: 42 requests taken, and 400 of each call's 500 tokens.
    levels = dict(conn.execute("SELECT name, level FROM gateway_buckets WHERE scope = 'user:erin'").fetchall())
    assert levels == {"requests": 100_000 - 42, "tokens": 10**9 - 42 * 400}


def test_small_limits_never_lease(store):
    limits = bound(store, gw.RateLimit(requests=20, window_s=86_400))
    frank = gw.Caller("frank")
    for _ in range(20):
        admission = limits.admit(frank, 10, 0)
        assert not any(d.get("lease") for d in admission.decisions)  # 1/8 of the room never covers 4 calls
        limits.settle(admission, 10, 0)
    with pytest.raises(UserRateLimited):
        limits.admit(frank, 10, 0)


def test_leased_room_does_not_refill_so_no_instant_sees_more_than_the_capacity(store, monkeypatch):
    # a's lease is a's business here: b refuses at once instead of waiting for it to come back.
    monkeypatch.setattr("workbench.gateway.limits.LEASE_GRACE_S", -1.0)
    now = [1_000_000.0]
    rule = gw.RateLimit(requests=1_000, window_s=1)  # refills 1,000 a second
    a, b = bound(store, rule, clock=lambda: now[0]), bound(store, rule, clock=lambda: now[0])
    gina = gw.Caller("gina")
    a.admit(gina, 1, 0)
    a.admit(gina, 1, 0)  # busy: a takes a lease
    leased = a._leases[("user:gina", "requests")].left
    assert leased > 0
    now[0] += 0.3  # refill enough to fill the bucket, were the leased room not subtracted

    def drain(limits) -> int:
        admitted = 0
        while admitted <= 1_000:
            try:
                limits.admit(gina, 1, 0)
            except UserRateLimited:
                break
            admitted += 1
        return admitted

    # At one instant, a (its lease, then the file) and b (the file) together get the capacity, not more.
    assert drain(a) + drain(b) == 1_000


def test_an_idle_lease_goes_back_to_the_file_when_it_expires(store):
    limits = bound(store, gw.RateLimit(requests=100_000, window_s=86_400))
    hank = gw.Caller("hank")
    limits.admit(hank, 1, 0)
    limits.admit(hank, 1, 0)
    conn = limits._connection()
    count = "SELECT COUNT(*) FROM gateway_buckets WHERE name LIKE 'requests@lease:%'"
    assert conn.execute(count).fetchone()[0] == 1
    import time

    deadline = time.monotonic() + 30  # the timer gives it back about LEASE_S later; generous on a busy machine
    while conn.execute(count).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert conn.execute(count).fetchone()[0] == 0
    level = conn.execute("SELECT level FROM gateway_buckets WHERE scope = 'user:hank' AND name = 'requests'").fetchone()[0]
    assert level == pytest.approx(100_000 - 2, abs=1)  # everything but the two calls came back
    limits.close()


def test_a_call_in_flight_keeps_its_budget_held_after_its_lease_goes_back(store):
    limits = bound(store, gw.Budget(usd=100, period="day"))
    ivy = gw.Caller("ivy")
    limits.settle(limits.admit(ivy, 1, 0.5), 1, 0.1)
    in_flight = limits.admit(ivy, 1, 0.5)  # busy: drawn from a fresh lease
    assert in_flight.decisions[0].get("lease") or in_flight.drawn
    limits.flush()  # the lease goes back while the call is still out
    conn = limits._connection()
    held = conn.execute("SELECT COALESCE(SUM(usd), 0) FROM gateway_reservations").fetchone()[0]
    assert held == pytest.approx(0.5)  # its worst case, still held
    limits.settle(in_flight, 1, 0.2)
    limits.flush()
    assert conn.execute("SELECT COUNT(*) FROM gateway_reservations").fetchone()[0] == 0
    assert limits.spend()[0]["spent_usd"] == pytest.approx(0.3)


def test_threads_with_leases_admit_exactly_the_limit(store, monkeypatch):
    """8 instances (as 8 processes would be) hammer 3 users: exactly the limit each, never more."""
    monkeypatch.setattr("workbench.gateway.limits.LEASE_GRACE_S", 5.0)  # a busy machine may stall a lease's timer
    rules = (gw.RateLimit(requests=300, window_s=86_400), gw.Budget(usd=1_000, period="day"))
    users = ["u1", "u2", "u3"]
    admitted, _, leased = hammer(store, rules, users, threads=8, rounds=50)
    assert admitted == {u: 300 for u in users}
    assert all(leased[u] > 100 for u in users), leased  # most calls never touched the file
    spend = {r["scope"]: r["spent_usd"] for r in bound(store, *rules).spend()}
    assert spend == {f"user:{u}": pytest.approx(3.0) for u in users}


@pytest.mark.slow
def test_two_processes_with_leases_admit_exactly_a_large_limit(target):
    import os

    users = ["alice", "bob", "carol"]
    env = {**os.environ, "WORKBENCH_TEST_REQUESTS": "300", "WORKBENCH_TEST_LEASE_GRACE_S": "5"}
    admitted, spent = two_processes(target("two-leases.db"), 4, 40, users, env)
    assert admitted == {u: 300 for u in users}  # 320 tried per user, in two processes
    assert spent == {f"user:{u}": pytest.approx(3.0) for u in users}
