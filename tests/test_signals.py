"""Signals and shutdown: SIGKILL loses at most the writer's window, SIGTERM loses nothing,
Ctrl-C leaves a run ``interrupted``. Each case runs in a child process and is killed for real."""

from __future__ import annotations

import mmap
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.store import WRITER_WINDOW_S

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

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


def _trace_then_signal(tmp_path: Path, sig: int, after: int, own_handler: str = "none") -> dict[str, float]:
    """Start a process tracing in a tight loop, send ``sig`` once ``after`` calls have returned.

    Returns how many calls had returned, how many of them returned in the last
    ``WRITER_WINDOW_S`` before the signal, how many rows are in the file, and the exit code.
    """
    db, stamps = tmp_path / f"signal-{after}.db", tmp_path / f"stamps-{after}"
    stamps.write_bytes(b"\0" * 8 * CAPACITY)
    proc = subprocess.Popen([sys.executable, "-c", TRACER, str(db), str(stamps), str(CAPACITY), own_handler],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        with open(stamps, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            unpack = struct.Struct("d").unpack_from
            deadline = time.monotonic() + 300
            while unpack(mm, 8 * after)[0] == 0:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.001)
            sent = time.monotonic()
            os.kill(proc.pid, sig)
            code = proc.wait(timeout=120)
            returned_at = [unpack(mm, 8 * i)[0] for i in range(CAPACITY)]
            mm.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    returned = sum(1 for t in returned_at if t)
    conn = sqlite3.connect(db)
    in_file = conn.execute("SELECT COUNT(*) FROM traces WHERE name = 'step'").fetchone()[0]
    conn.close()
    return {
        "returned": returned,
        "window": sum(1 for t in returned_at if t > sent - WRITER_WINDOW_S),
        "in_file": in_file,
        "code": code,
        "stderr": proc.stderr.read(),
    }


@pytest.mark.slow
@pytest.mark.parametrize("after", [20_000, 60_000, 120_000])
def test_sigkill_loses_at_most_the_rows_of_the_writers_window(tmp_path, after):
    seen = _trace_then_signal(tmp_path, signal.SIGKILL, after)
    lost = seen["returned"] - seen["in_file"]
    print(
        f"\nSIGKILL after {seen['returned']:,} returned calls: {lost:,} rows lost; "
        f"the last {WRITER_WINDOW_S * 1000:.0f} ms held {seen['window']:,} calls"
    )
    assert seen["code"] == -signal.SIGKILL
    assert lost <= seen["window"]


@pytest.mark.slow
@pytest.mark.parametrize("after", [20_000, 120_000])
def test_sigterm_writes_every_queued_row_before_the_process_ends(tmp_path, after):
    seen = _trace_then_signal(tmp_path, signal.SIGTERM, after)
    print(f"\nSIGTERM after {seen['returned']:,} returned calls: {seen['returned'] - seen['in_file']:,} rows lost")
    # The process still ends as SIGTERM ends it (the default action, after our flush).
    assert seen["code"] == -signal.SIGTERM, seen["stderr"]
    # Every returned call is in the file (one more when the signal came between a call and its stamp).
    assert seen["returned"] <= seen["in_file"] <= seen["returned"] + 1


@pytest.mark.slow
def test_an_applications_own_sigterm_handler_is_left_in_place(tmp_path):
    seen = _trace_then_signal(tmp_path, signal.SIGTERM, 20_000, own_handler="exit")
    assert seen["code"] == 3, seen["stderr"]  # the application's handler ran: sys.exit(3)
    # It exits normally, so the queue is written at interpreter exit.
    assert seen["returned"] <= seen["in_file"] <= seen["returned"] + 1


RUNNER = textwrap.dedent(
    """
    import sys
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    bench = wb.open(sys.argv[1], provider=SimulatedProvider(seed=0, fixed_latency_ms=25))
    a = bench.prompts.register("p", "Question: {q}", "claude-haiku-4-5")
    b = bench.prompts.register("p", "Answer briefly. Question: {q}", "claude-haiku-4-5")
    ds = bench.datasets.load("d", [{"q": f"q-{i}?"} for i in range(80)])
    exp = bench.experiment("e", dataset=ds, variants={"A": a, "B": b}, repeats=2, concurrency=8)
    print("running", flush=True)
    exp.run(progress=False)
    print("finished", exp.status, flush=True)
    """
)


@pytest.mark.slow
def test_ctrl_c_during_a_run_always_leaves_it_interrupted(tmp_path):
    """SIGINT at random points of exp.run() in a script: the status is never left at ``running``."""
    db = tmp_path / "runs.db"
    rng = random.Random(9)
    statuses = []
    for attempt in range(12):
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(db)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "running", proc.stderr.read()
        # From the very start of run() to past its end (a 320-call run takes about 1.5 s here).
        time.sleep(rng.uniform(0, 1.5) if attempt else 0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        conn = sqlite3.connect(db)
        [(status, message)] = conn.execute("SELECT status, status_message FROM experiments").fetchall()
        conn.close()
        assert "cannot schedule new futures" not in err
        if "finished" in out:
            assert status == "completed", (status, message, err)
        else:
            assert "KeyboardInterrupt" in err, err
            # "created" only when Ctrl-C came before run() began its work, on the first attempt.
            assert status == "interrupted" or (status == "created" and not statuses), (status, message, err)
        statuses.append(status)
    print(f"\nSIGINT at 12 random points: {statuses.count('interrupted')} interrupted, "
          f"{statuses.count('completed')} completed, {statuses.count('running')} left running")
    assert "interrupted" in statuses

    # And a last run() finishes what the interrupted ones left, each call made once.
    out = subprocess.run([sys.executable, "-c", RUNNER, str(db)], capture_output=True, text=True, timeout=300)
    assert "finished completed" in out.stdout, out.stderr
    conn = sqlite3.connect(db)
    cells = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT variant || '/' || item_id || '/' || repeat) FROM traces "
        "WHERE kind = 'llm' AND status = 'ok'"
    ).fetchone()
    conn.close()
    assert cells == (320, 320)
