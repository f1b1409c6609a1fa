"""The traces explorer on a million traces: open, first page, filter, search, next page, counts.

Each step is timed through the widget's own Python API (what a click or Enter
runs), as the median of a few runs, and printed beside a baseline measured in
the same run: one full scan of the table (``SUM(length(output))``), which is
what any step would cost if it read every row. Also: what the explorer's index
costs the writer (batched inserts with and without it, same rows, same run).
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

N = 1_000_000
RUNS = 5

WORDS = ("account password reset invoice refund share note sync offline export calendar team plan billing "
         "upgrade login error device backup folder tag search mobile desktop android browser email notify").split()


def _fill(path: Path, n: int = N) -> None:
    """A realistic million: 70% single calls, 15% three-span traces, 15% experiment calls and their judges."""
    import workbench as wb
    from workbench import traces

    bench = wb.open(path, provider="simulated")
    rng = random.Random(0)
    ins = [" ".join(rng.choice(WORDS) for _ in range(25)) for _ in range(2000)]
    outs = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(2000)]
    for k in range(0, 2000, 400):
        outs[k] += " zebra"  # a rare word: 1 row in 400
    start = 1_790_000_000.0
    exp_id = "exp-0001"
    i = 0

    def rid() -> str:
        return f"{i:012d}"

    batch = []
    while i < n:
        r = rng.random()
        when = traces.iso_utc(start + i * 0.0864)
        if r < 0.70 or n - i < 4:
            ok = rng.random() > 0.02
            model = ("claude-haiku-4-5", "claude-sonnet-4-5")[i % 2]
            batch.append(traces.row(id=rid(), trace_id=rid(), kind="llm", name=f"chat {model}", started_at=when,
                provider="simulated", simulated=1, model=model, prompt_name="support", prompt_version=1 + i % 3,
                user_id=f"user-{i % 500:03d}", input=ins[i % 2000], output=outs[(i * 7) % 2000] if ok else None,
                input_tokens=rng.randint(50, 2000), output_tokens=rng.randint(10, 400), latency_ms=rng.lognormvariate(6.5, 0.5),
                cost_usd=rng.random() / 1000 if ok else None, status="ok" if ok else "error",
                error=None if ok else "overloaded_error: try again", attempts=1))
            i += 1
        elif r < 0.85:
            root = rid(); i += 1
            child = rid(); i += 1
            llm = rid(); i += 1
            batch.append(traces.row(id=child, trace_id=root, parent_id=root, kind="span", name="retrieve", started_at=when,
                input=ins[i % 2000], output=outs[i % 2000], latency_ms=30.0, status="ok"))
            batch.append(traces.row(id=llm, trace_id=root, parent_id=root, kind="llm", name="chat claude-haiku-4-5",
                started_at=when, provider="simulated", simulated=1, model="claude-haiku-4-5", prompt_name="support",
                prompt_version=2, input=ins[(i * 3) % 2000], output=outs[(i * 5) % 2000], input_tokens=300, output_tokens=80,
                latency_ms=600.0, cost_usd=0.0003, status="ok", attempts=1, user_id=f"user-{i % 500:03d}"))
            batch.append(traces.row(id=root, trace_id=root, kind="span", name="answer_ticket", started_at=when,
                input=ins[(i * 11) % 2000], output=outs[(i * 13) % 2000], latency_ms=650.0, status="ok"))
        else:
            call = rid(); i += 1
            judge = rid(); i += 1
            item = f"item-{(i // 2) % 5000:04d}"
            batch.append(traces.row(id=call, trace_id=call, kind="llm", name="chat claude-haiku-4-5", started_at=when,
                provider="simulated", simulated=1, model="claude-haiku-4-5", prompt_name="support", prompt_version=1 + i % 2,
                experiment_id=exp_id, variant="AB"[i % 2], item_id=item, repeat=(i // 10000) % 3, input=ins[i % 2000],
                output=outs[(i * 17) % 2000], input_tokens=200, output_tokens=60, latency_ms=500.0, cost_usd=0.0002,
                status="ok", attempts=1))
            batch.append(traces.row(id=judge, trace_id=judge, kind="llm", name="chat claude-haiku-4-5", started_at=when,
                provider="simulated", simulated=1, model="claude-haiku-4-5", prompt_name="judge:judge", prompt_version=1,
                experiment_id=exp_id, item_id=item, repeat=(i // 10000) % 3, input="grade: " + ins[i % 2000],
                output="SCORE: 0.8 good", input_tokens=400, output_tokens=20, latency_ms=300.0, cost_usd=0.0001,
                status="ok", attempts=1, tags_json='["judge"]', metadata_json=json.dumps({"judged_trace": call, "judged_variant": "AB"[i % 2]})))
        if len(batch) >= 50_000:
            with bench.store.transaction() as conn:
                conn.executemany(traces.INSERT_SQL, batch)
            batch = []
    if batch:
        with bench.store.transaction() as conn:
            conn.executemany(traces.INSERT_SQL, batch)
    bench.close()


def _timed(fn, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _ingest_cost(tmp: Path, n: int = 200_000) -> tuple[float, float]:
    """Rows per second of batched inserts into a file without and with `idx_traces_explore`."""
    import sqlite3

    import workbench as wb
    from workbench import traces

    rng = random.Random(1)
    rows = [traces.row(id=f"{i:012d}", trace_id=f"{i:012d}", kind="llm", name="chat", started_at=traces.iso_utc(1.8e9 + i),
                       model=("claude-haiku-4-5", "claude-sonnet-4-5")[i % 2], prompt_name="support", prompt_version=1 + i % 3,
                       user_id=f"user-{i % 500}", status="ok" if rng.random() > 0.02 else "error", latency_ms=500.0,
                       cost_usd=0.0002, input="question text", output="answer text") for i in range(n)]
    rates = {}
    for run in range(2):  # alternate, so neither side gets the quieter moment
        for with_index in (False, True):
            path = tmp / f"ingest-{with_index}-{run}.db"
            wb.open(path, provider="simulated").close()
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if not with_index:
                conn.execute("DROP INDEX idx_traces_explore")
            t0 = time.perf_counter()
            for k in range(0, n, 1000):
                conn.executemany(traces.INSERT_SQL, rows[k:k + 1000])
                conn.commit()
            rates.setdefault(with_index, []).append(n / (time.perf_counter() - t0))
            conn.close()
    return max(rates[False]), max(rates[True])


def main() -> None:
    import workbench as wb
    from workbench import traces

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "million.db"
        t0 = time.perf_counter()
        _fill(path)
        print(f"wrote {N:,} traces in {time.perf_counter() - t0:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")

        # A file written before migration 010: the first open builds the index once.
        import sqlite3

        conn = sqlite3.connect(path)
        conn.execute("DROP INDEX idx_traces_explore")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm008_trace_explorer'")
        conn.commit()
        scan = []
        for _ in range(3):
            t0 = time.perf_counter()
            conn.execute("SELECT SUM(length(output)) FROM traces").fetchone()
            scan.append(time.perf_counter() - t0)
        conn.close()
        baseline = statistics.median(scan)
        t0 = time.perf_counter()
        bench = wb.open(path, provider="simulated")
        migrate = time.perf_counter() - t0
        t0 = time.perf_counter()
        indexed = traces.index_fts(bench.store)
        fts = time.perf_counter() - t0

        from workbench.widgets.traces import TracesWidget

        w = TracesWidget(bench)
        steps = {
            "open (count + first page)": lambda: TracesWidget(bench),
            "first page": w.first_page,
            "count, judges hidden": lambda: traces.browse_count(bench.store, traces.Browse()),
            "count, judges shown": lambda: traces.browse_count(bench.store, traces.Browse(judges=True)),
        }
        results = {name: _timed(fn) for name, fn in steps.items()}

        def filtered(name: str, value: str) -> float:
            w.clear()
            return _timed(lambda: w.set_filter(name, value))

        results["filter: status = error (1%)"] = filtered("status", "error")
        results["filter: experiment (10%)"] = filtered("experiment", "exp-0001")
        w.values["experiment"] = "exp-0001"
        results["filter: experiment + variant"] = _timed(lambda: w.set_filter("variant", "A"))
        w.clear()
        w.type("user", "user-007")
        results["filter: user + status (rare, 21 rows)"] = _timed(lambda: w.set_filter("status", "error"))
        w.clear()
        results["next page (x20, keyset)"] = _timed(lambda: [w.next_page() for _ in range(20)], runs=3) / 20
        results["jump to page 2,000 (offset)"] = _timed(lambda: w.go(1999), runs=3)
        w.clear()
        results["search: rare word, Enter"] = _timed(lambda: w.search("zebra"))
        results["search: common word, Enter"] = _timed(lambda: w.search("invoice"))
        results["search, next page"] = _timed(w.next_page)
        w.clear()
        w.type("search", "invoice")
        w.type("user", "user-007")
        results["search + rare filter"] = _timed(lambda: w.set_filter("status", "error"), runs=3)
        w.clear()
        w.open_row(0)
        results["open a row (detail + waterfall)"] = _timed(lambda: w.open_row(3))
        bench.close()
        without, with_index = _ingest_cost(Path(tmp))

    print(f"baseline, one full scan of the table: {baseline * 1000:.0f} ms")
    print(f"migration 010 on this file (builds the index once): {migrate:.1f} s; "
          f"full-text index of {indexed:,} rows (first search ever): {fts:.1f} s")
    for name, seconds in results.items():
        print(f"  {name:<40} {seconds * 1000:8.1f} ms  ({seconds / baseline:.2f}x a full scan)")
    print(f"ingest, batched: {without:,.0f} rows/s without the explorer index, {with_index:,.0f} with it "
          f"({with_index / without:.2f}x)")
