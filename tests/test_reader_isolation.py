"""Frame reads must not break the file locks of the process's own SQLite connections.

ADBC's driver carries a second SQLite library; used in-process, closing it
dropped our locks, and another process then deleted the WAL under us, so rows
written afterwards were invisible to everyone else. Reads now run in a child.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from polars.testing import assert_frame_equal

import workbench as wb
from workbench.providers.simulated import SimulatedProvider


def _count_elsewhere(path) -> int:
    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute('select count(*) from feedback').fetchone()[0]); c.close()"
    return int(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout)


def test_rows_written_after_a_frame_read_are_seen_by_other_processes(tmp_path):
    path = tmp_path / "wb.db"
    bench = wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0))
    v = bench.prompts.register("p", template="Q: {question}", model="claude-haiku-4-5")
    ds = bench.datasets.load("d", [{"question": f"q{i}?", "expected": "x"} for i in range(3)])
    exp = bench.experiment("e", dataset=ds, variants={"A": v, "B": wb.variant(v, model="claude-sonnet-4-5")})
    exp.run(progress=False)
    exp.summary()  # a frame read through the Arrow path
    assert _count_elsewhere(path) == 0  # another process opens and closes the file
    bench.feedback.prefer(exp, "item-0001", "A", "B", "b", rater="t")
    assert (path.parent / "wb.db-wal").exists()
    assert _count_elsewhere(path) == 1
    bench.close()
    assert sqlite3.connect(path).execute("pragma integrity_check").fetchone()[0] == "ok"


def test_a_big_unordered_read_in_two_halves_equals_one_read(tmp_path, monkeypatch):
    from workbench import frames, traces

    with wb.open(tmp_path / "split.db", provider="simulated") as bench:
        rows = [
            traces.row(id=f"{i:08d}", trace_id=f"{i:08d}", kind="llm", name="chat m", started_at=traces.iso_utc(1.79e9 + i),
                       model="m", status="ok" if i % 9 else "error", latency_ms=None if i % 9 == 0 else float(i % 97),
                       ttft_ms=None if i < 300 else float(i % 13), cost_usd=None if i < 600 else 0.001, input_tokens=i,
                       output_tokens=1, cache_read_tokens=0, cache_write_tokens=0)
            for i in range(1000)
        ]
        with bench.store.transaction() as conn:
            conn.executemany(traces.INSERT_SQL, rows)
        whole = frames.metrics(frames.traces_df(bench.store))
        monkeypatch.setattr(frames, "SPLIT_ROWS", 100)  # force the two-part read
        split = frames.metrics(bench.store)
    # SQLite sums the dollars itself (compensated summation), Polars in another order: equal to the last bits.
    assert_frame_equal(split, whole, check_exact=False, rel_tol=1e-12)
    assert whole["requests"][0] == 1000 and whole["unpriced"][0] > 0


def test_a_file_made_again_at_the_same_path_is_read_afresh(tmp_path):
    """A notebook that deletes its file and opens a new one in the same kernel must not read the old one."""
    import os

    from workbench import frames

    path = tmp_path / "again.db"
    for run, calls in enumerate((3, 5)):
        with wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0)) as bench:
            for _ in range(calls):
                bench.complete(model="claude-haiku-4-5", messages="hi")
            assert frames.traces_df(bench.store).height == calls, f"run {run}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{path}{suffix}"):
                os.remove(f"{path}{suffix}")
