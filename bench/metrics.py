"""Metrics over a million traces: from disk, on a loaded frame, and the seed's list-and-loops way."""

from __future__ import annotations

import random
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
    """The seed's approach: a Python list of trace objects, loops, p99 by sorting."""
    lat = sorted(r["latency_ms"] for r in records if r["status"] == "ok")
    errors = sum(1 for r in records if r["status"] == "error")
    cost = sum(r["cost_usd"] or 0 for r in records)
    tokens = sum(r["input_tokens"] + r["output_tokens"] for r in records)
    n = len(lat)
    return {
        "requests": len(records), "error_rate": errors / len(records), "cost": cost, "tokens": tokens,
        "mean": sum(lat) / n, "p50": lat[int(0.5 * (n - 1))], "p95": lat[int(0.95 * (n - 1))], "p99": lat[int(0.99 * (n - 1))],
    }


def main() -> None:
    from workbench import frames
    from workbench.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "million.db"
        t0 = time.perf_counter()
        _fill(path)
        print(f"wrote {N:,} traces in {time.perf_counter() - t0:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        store = Store(path)
        disk = []
        for _ in range(3):
            t0 = time.perf_counter()
            m = frames.metrics(store)
            disk.append(time.perf_counter() - t0)
        df = frames.traces_df(store, columns=["kind", "status", "latency_ms", "ttft_ms", "cost_usd", "input_tokens",
                                              "output_tokens", "cache_read_tokens", "cache_write_tokens", "model"])
        loaded = []
        for _ in range(7):
            t0 = time.perf_counter()
            frames.metrics(df)
            loaded.append(time.perf_counter() - t0)
        records = df.select("status", "latency_ms", "cost_usd", "input_tokens", "output_tokens").to_dicts()
        seed = []
        for _ in range(3):
            t0 = time.perf_counter()
            seed_metrics(records)
            seed.append(time.perf_counter() - t0)
        grouped = []
        for _ in range(3):
            t0 = time.perf_counter()
            frames.metrics(df.with_columns(), by="model")
            grouped.append(time.perf_counter() - t0)
        store.close()
    d, lo, s = statistics.median(disk), statistics.median(loaded), statistics.median(seed)
    print(f"bench.metrics() from disk:  {d:.3f} s for {N:,} traces (target < 1 s); p95 {m['latency_p95'][0]:.0f} ms")
    print(f"metrics on a loaded frame:  {lo * 1000:.1f} ms; by model {statistics.median(grouped) * 1000:.1f} ms")
    print(f"seed approach (loops):      {s:.3f} s")
    print(f"speed-up on a loaded frame: {s / lo:.0f}x (target >= 50x)")
