"""Hammer one workbench file's limits from this process, for the two-process test.

    python tests/helpers/limits_worker.py DB THREADS CALLS USER [USER ...]

Each thread has its own ``Limits`` (its own SQLite connection) and, for every
user, admits CALLS calls that each cost 1 cent, settling each. Prints one JSON
line: admitted calls per user and refusals by error type. With
``WORKBENCH_TEST_REQUESTS=N`` the rate limit is N a day and the budget large
enough that the rate limit binds: busy users then draw on leases.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter

from workbench import gateway as gw
from workbench.errors import GatewayRefused
from workbench.store import Store

RULES = (gw.RateLimit(requests=10, window_s=86_400), gw.Budget(usd=0.25, period="day"))
if os.environ.get("WORKBENCH_TEST_LEASE_GRACE_S"):  # a busy test machine can stall a lease's return
    gw.limits.LEASE_GRACE_S = float(os.environ["WORKBENCH_TEST_LEASE_GRACE_S"])
if os.environ.get("WORKBENCH_TEST_REQUESTS"):
    RULES = (gw.RateLimit(requests=int(os.environ["WORKBENCH_TEST_REQUESTS"]), window_s=86_400), gw.Budget(usd=1_000, period="day"))


def main() -> None:
    db, threads, calls, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    store = Store(db)
    admitted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        limits = gw.Limits(*RULES)
        limits.bind(store)
        start.wait()
        for _ in range(calls):
            for user in users:
                try:
                    admission = limits.admit(gw.Caller(user), tokens=10, reserve_usd=0.02)
                except GatewayRefused as exc:
                    with lock:
                        refused[type(exc).__name__] += 1
                    continue
                limits.settle(admission, tokens_used=10, cost_usd=0.01)
                with lock:
                    admitted[user] += 1
        limits.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store.close()
    print(json.dumps({"admitted": admitted, "refused": refused}), flush=True)


if __name__ == "__main__":
    main()
