"""Metrics over a million traces: from disk, on a loaded frame, and the seed's list-and-loops way."""

from __future__ import annotations

import random
import subprocess
import sys
import statistics
import tempfile
import time
from pathlib import Path

N = 1_000_000


def _fill(path: Path, n: int = N) -> None:
    """Write n synthetic llm traces straight into the file (batched)."""
    import workbench as wb
    from workbench import traces

    bench = wb.open(path, provider="simulated")
    rng = random.Random(0)
    models = ["claude-haiku-4-5", "claude-sonnet-4-5"]
    start = 1_790_000_000.0
    rows = []
    for i in range(n):
        ok = rng.random() > 0.02
        model = models[i % 2]
        rows.append(traces.row(
            id=f"{i:012d}", trace_id=f"{i:012d}", kind="llm", name=f"chat {model}",
            started_at=traces.iso_utc(start + i * 0.0864), provider="simulated", simulated=1, model=model,
            prompt_name="support", prompt_version=1 + i % 3, user_id=f"u{i % 500}",
            input_tokens=rng.randint(50, 2000), output_tokens=rng.randint(10, 400), cache_read_tokens=0,
            cache_write_tokens=0, latency_ms=rng.lognormvariate(6.5, 0.5) if ok else None,
            ttft_ms=rng.lognormvariate(5.5, 0.4) if ok else None, cost_usd=rng.random() / 1000 if ok else None,
            status="ok" if ok else "error", attempts=1,
        ))
    with bench.store.transaction() as conn:
        conn.executemany(traces.INSERT_SQL, rows)
    bench.close()


def seed_metrics(records: list[dict]) -> dict:
    """The seed's approach (a list of trace records, loops, percentiles by sorting),
    computing the same numbers as ``metrics()`` so the two are compared like for like."""

    def percentile(sorted_values: list[float], q: float) -> float:
        pos = q * (len(sorted_values) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(sorted_values) - 1)
        return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)

    ok = [r for r in records if r["status"] == "ok"]
    lat = sorted(r["latency_ms"] for r in ok if r["latency_ms"] is not None)
    ttft = sorted(r["ttft_ms"] for r in ok if r["ttft_ms"] is not None)
    errors = sum(1 for r in records if r["status"] == "error")
    out = {
        "requests": len(records),
        "errors": errors,
        "error_rate": errors / len(records),
        "cost_usd": sum(r["cost_usd"] for r in records if r["cost_usd"] is not None),
        "unpriced": sum(1 for r in ok if r["cost_usd"] is None),
        "latency_mean": sum(lat) / len(lat),
    }
    for col in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        out[col] = sum(r[col] or 0 for r in records)
    for q in (0.5, 0.95, 0.99):
        out[f"latency_p{round(q * 100)}"] = percentile(lat, q)
    for q in (0.5, 0.95):
        out[f"ttft_p{round(q * 100)}"] = percentile(ttft, q)
    return out


def main() -> None:
    import workbench as wb
    from workbench import frames, traces

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "million.db"
        t0 = time.perf_counter()
        _fill(path)
        print(f"wrote {N:,} traces in {time.perf_counter() - t0:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        # Cold: a fresh process opens the file and asks for metrics at once.
        code = (
            "import sys, time, workbench as wb\n"
            "from workbench import frames\n"
            "t = time.perf_counter(); bench = wb.open(sys.argv[1], provider='simulated')\n"
            "frames.metrics(bench.store); print(time.perf_counter() - t)"
        )
        cold = float(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout)
        bench = wb.open(path, provider="simulated")
        store = bench.store
        first = []
        for _ in range(3):
            frames._column_cache.clear()  # every column read from SQLite again
            t0 = time.perf_counter()
            frames.metrics(store)
            first.append(time.perf_counter() - t0)
        disk = []
        for _ in range(3):
            t0 = time.perf_counter()
            m = frames.metrics(store)
            disk.append(time.perf_counter() - t0)
        # Traffic keeps arriving: 1,000 new traces, then metrics again (reads only those).
        extra = [traces.row(id=f"z{i:011d}", trace_id=f"z{i}", kind="llm", name="chat", model="claude-haiku-4-5",
                            started_at=traces.iso_utc(1_790_100_000.0 + i), status="ok", latency_ms=700.0,
                            input_tokens=10, output_tokens=5, cache_read_tokens=0, cache_write_tokens=0)
                 for i in range(1_000)]
        store.writer.put_many(traces.INSERT_SQL, extra)
        t0 = time.perf_counter()
        grown = frames.metrics(store)
        appended = time.perf_counter() - t0
        assert grown["requests"][0] == N + 1_000
        # Undo, so the numbers below are over the same million rows as the loops.
        store.execute("DELETE FROM traces WHERE id >= 'z'")
        df = frames.traces_df(store, columns=["kind", "status", "latency_ms", "ttft_ms", "cost_usd", "input_tokens",
                                              "output_tokens", "cache_read_tokens", "cache_write_tokens", "model"])
        loaded = []
        for _ in range(7):
            t0 = time.perf_counter()
            frames.metrics(df)
            loaded.append(time.perf_counter() - t0)
        records = df.drop("kind", "model").to_dicts()
        seed = []
        for _ in range(3):
            t0 = time.perf_counter()
            expected = seed_metrics(records)
            seed.append(time.perf_counter() - t0)
        ours = frames.metrics(df).row(0, named=True)
        for key, value in expected.items():
            assert abs(ours[key] - value) <= 1e-9 * max(1.0, abs(value)), (key, ours[key], value)
        grouped = []
        for _ in range(3):
            t0 = time.perf_counter()
            frames.metrics(df.with_columns(), by="model")
            grouped.append(time.perf_counter() - t0)
        bench.close()
    d, lo, s = statistics.median(disk), statistics.median(loaded), statistics.median(seed)
    f = statistics.median(first)
    print(f"bench.metrics() from disk:  {d:.3f} s for {N:,} traces, median of 3 repeated calls; p95 {m['latency_p95'][0]:.0f} ms")
    print(f"  after 1,000 new traces:     {appended:.3f} s (reads only the new rows)")
    print(f"  first read in a process:    {f:.3f} s (every column from SQLite), median of 3")
    print(f"  cold, in a fresh process:   {cold:.3f} s from wb.open() to the result (imports excluded; starts the reader process)")
    print(f"from disk / seed loops:     {d / s:.2f} repeated, {appended / s:.2f} after new traffic, {f / s:.2f} first read"
          " (target <= 0.5)")
    print(f"metrics on a loaded frame:  {lo * 1000:.1f} ms; by model {statistics.median(grouped) * 1000:.1f} ms")
    print(f"seed approach (loops):      {s:.3f} s for the same {len(expected)} numbers (checked equal)")
    print(f"speed-up on a loaded frame: {s / lo:.0f}x (target >= 50x)")
