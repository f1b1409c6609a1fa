"""What a killed process loses, and the writer's insert path under a busy caller.

``signal_after_calls`` is shared with ``tests/test_signals.py``: a child traces in a
tight loop and stamps, in a shared memory map, when each call returned; the
parent sends a signal after N calls and counts the rows in the file.
"""

from __future__ import annotations

import mmap
import os
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

TRACER = textwrap.dedent(
    """
    import mmap, signal, struct, sys, time
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    path, stamps, capacity, own_handler = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if own_handler == "exit":
        def handler(signum, frame):
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
    before = signal.getsignal(signal.SIGTERM)
    bench = wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0))
    assert own_handler == "none" or signal.getsignal(signal.SIGTERM) is before, "the application's handler was replaced"

    @bench.traced(name="step")
    def step(i):
        return i

    fh = open(stamps, "r+b")
    mm = mmap.mmap(fh.fileno(), 0)
    pack = struct.Struct("d").pack_into
    clock = time.monotonic
    print("ready", flush=True)
    for i in range(capacity):
        step(i)
        pack(mm, 8 * i, clock())  # when call i returned, for the parent to count
    time.sleep(600)
    """
)
CAPACITY = 1_000_000


def signal_after_calls(folder: Path, sig: int, after: int, own_handler: str = "none") -> dict[str, Any]:
    """Start a process tracing in a tight loop; send ``sig`` once ``after`` calls have returned.

    Returns how many calls had returned, how many returned in the last
    ``WRITER_WINDOW_S`` before the signal, the rows in the file, the exit code and stderr.
    """
    from workbench.store import WRITER_WINDOW_S

    db, stamps = folder / f"signal-{after}.db", folder / f"stamps-{after}"
    stamps.write_bytes(b"\0" * 8 * CAPACITY)
    proc = subprocess.Popen([sys.executable, "-c", TRACER, str(db), str(stamps), str(CAPACITY), own_handler],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the tracing child did not start: {proc.stderr.read()}")
        with open(stamps, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            unpack = struct.Struct("d").unpack_from
            deadline = time.monotonic() + 300
            while unpack(mm, 8 * after)[0] == 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the tracing child stopped early: {proc.stderr.read()}")
                time.sleep(0.001)
            sent = time.monotonic()
            os.kill(proc.pid, sig)
            code = proc.wait(timeout=120)
            returned_at = [unpack(mm, 8 * i)[0] for i in range(CAPACITY)]
            mm.close()
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    conn = sqlite3.connect(db)
    in_file = conn.execute("SELECT COUNT(*) FROM traces WHERE name = 'step'").fetchone()[0]
    conn.close()
    return {
        "returned": sum(1 for t in returned_at if t),
        "window": sum(1 for t in returned_at if t > sent - WRITER_WINDOW_S),
        "in_file": in_file,
        "code": code,
        "stderr": stderr,
    }


def kills() -> None:
    """SIGKILL and SIGTERM at several points of a tight tracing loop."""
    from workbench.store import WRITER_WINDOW_S

    with tempfile.TemporaryDirectory() as tmp:
        ratios = []
        for after in (20_000, 60_000, 120_000, 200_000):
            seen = signal_after_calls(Path(tmp), signal.SIGKILL, after)
            lost = seen["returned"] - seen["in_file"]
            ratios.append(lost / seen["window"])
            print(f"SIGKILL after {seen['returned']:>9,} calls: {lost:>7,} rows lost; "
                  f"the last {WRITER_WINDOW_S * 1000:.0f} ms held {seen['window']:>7,} calls "
                  f"({lost / seen['window']:.2f} of the window)")
        print(f"worst lost / window:        {max(ratios):8.2f}  (target <= 1)")
        for after in (60_000, 200_000):
            seen = signal_after_calls(Path(tmp), signal.SIGTERM, after)
            print(f"SIGTERM after {seen['returned']:>9,} calls: {max(0, seen['returned'] - seen['in_file']):>7,} rows lost "
                  f"(exit by signal {-seen['code']})")


def insert_path(rows: int = 60_000, batch: int = 2_000) -> None:
    """Per-row commit time of the writer's multi-row INSERT against ``executemany``, with the
    caller's thread busy in Python (it competes for the GIL, as a traced hot loop does)."""
    import workbench as wb
    from workbench import traces
    from workbench._sqlite import insert_many

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "insert.db"
        wb.open(path, provider="simulated").close()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA synchronous = NORMAL")
        stop = threading.Event()

        def busy() -> None:
            x = 0
            while not stop.is_set():
                x += 1

        spinner = threading.Thread(target=busy, daemon=True)
        spinner.start()
        timings: dict[str, list[float]] = {"executemany": [], "multi-row": []}
        for k in range(0, rows, batch):
            for name in timings:  # interleaved, so machine noise hits both alike
                chunk = [(f"{name}-{i}", f"{name}-{i}", None, "step", "2026-01-01T00:00:00.000000+00:00",
                          str(i), None, 0.1, "ok", None, None) for i in range(k, k + batch)]
                t0 = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                if name == "executemany":
                    conn.executemany(traces.SPAN_SQL, chunk)
                else:
                    insert_many(conn, traces.SPAN_SQL, chunk)
                conn.execute("COMMIT")
                timings[name].append((time.perf_counter() - t0) / batch * 1e6)
        stop.set()
        spinner.join()
        conn.close()
    em, mr = (sorted(timings[n]) for n in ("executemany", "multi-row"))
    p90 = lambda xs: xs[int(0.9 * (len(xs) - 1))]  # noqa: E731
    print(f"executemany, busy caller:   {statistics.median(em):6.1f} us a row (p90 {p90(em):.1f})")
    print(f"multi-row INSERT, same:     {statistics.median(mr):6.1f} us a row (p90 {p90(mr):.1f})")
    print(f"ratio multi-row / executemany: {statistics.median(mr) / statistics.median(em):.2f} (median), "
          f"{p90(mr) / p90(em):.2f} (p90)")


def main() -> None:
    kills()
    insert_path()
