"""Signals and shutdown: SIGKILL loses at most the writer's window, SIGTERM loses nothing,
Ctrl-C leaves a run ``interrupted``. Each case runs in a child process and is killed for real."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.store import WRITER_WINDOW_S

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the harness is shared with `make bench`
from bench.durability import signal_after_calls  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

@pytest.mark.slow
@pytest.mark.parametrize("after", [20_000, 60_000, 120_000])
def test_sigkill_loses_at_most_the_rows_of_the_writers_window(tmp_path, after):
    seen = signal_after_calls(tmp_path, signal.SIGKILL, after)
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
    seen = signal_after_calls(tmp_path, signal.SIGTERM, after)
    print(f"\nSIGTERM after {seen['returned']:,} returned calls: {seen['returned'] - seen['in_file']:,} rows lost")
    # The process still ends as SIGTERM ends it (the default action, after our flush).
    assert seen["code"] == -signal.SIGTERM, seen["stderr"]
    # Every returned call is in the file (one more when the signal came between a call and its stamp).
    assert seen["returned"] <= seen["in_file"] <= seen["returned"] + 1


@pytest.mark.slow
def test_an_applications_own_sigterm_handler_is_left_in_place(tmp_path):
    seen = signal_after_calls(tmp_path, signal.SIGTERM, 20_000, own_handler="exit")
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
