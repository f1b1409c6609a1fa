"""Metrics over 10M traces in a Parquet folder: time and peak memory, each in a fresh process.

The folder is generated with Polars straight from numpy (100 UTC days of
100,000 traces, hive-partitioned like ``workbench export parquet`` writes):
going through SQLite would take minutes and measure SQLite, not the scan.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = 10_000_000
DAYS = 100

_MEASURE = r"""
import json, resource, sys, time
import polars as pl
import workbench as wb
from workbench import frames
src = wb.scan(sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
calls = {
    "metrics()": lambda: frames.metrics(src),
    "metrics(by='model')": lambda: frames.metrics(src, by="model"),
    "metrics(every='1d', by='status')": lambda: frames.metrics(src, every="1d", by="status"),
    "metrics(since/until, one week)": lambda: frames.metrics(src, since="2026-09-10", until="2026-09-17"),
    "traces_df(one day, 5 columns)": lambda: frames.traces_df(
        src, since="2026-09-10", until="2026-09-11", columns=["id", "model", "status", "latency_ms", "cost_usd"]),
}
name = sys.argv[2]
t0 = time.perf_counter()
out = calls[name]()
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": elapsed, "peak_mb": peak / 1024, "base_mb": base / 1024, "rows": out.height,
                  "requests": int(out["requests"].sum()) if "requests" in out.columns else None}))
"""


def generate(root: Path, n: int = N, days: int = DAYS) -> float:
    """Write ``n`` synthetic traces as ``root/traces/day=.../part-0.parquet``; returns seconds taken."""
    import numpy as np
    import polars as pl

    from workbench import traces

    t0 = time.perf_counter()
    per_day = n // days
    rng = np.random.default_rng(0)
    start_us = 1_789_000_000_000_000 - 1_789_000_000_000_000 % 86_400_000_000  # midnight UTC
    for d in range(days):
        i = np.arange(per_day, dtype=np.int64) + d * per_day
        ok = rng.random(per_day) > 0.02
        ts = start_us + d * 86_400_000_000 + np.sort(rng.integers(0, 86_400_000_000, per_day))
        cols = {
            "id": pl.Series(i).cast(pl.String).str.zfill(12),
            "trace_id": pl.Series(i).cast(pl.String).str.zfill(12),
            "kind": np.where(i % 10 == 9, "span", "llm"),
            "name": "chat",
            "started_at": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
            "provider": "anthropic",
            "simulated": 0,
            "model": np.where(i % 2 == 0, "claude-haiku-4-5", "claude-sonnet-4-5"),
            "prompt_name": "support",
            "prompt_version": (1 + i % 3),
            "user_id": pl.Series(i % 5000).cast(pl.String),
            "input_tokens": rng.integers(50, 2000, per_day),
            "output_tokens": rng.integers(10, 400, per_day),
            "cache_read_tokens": np.zeros(per_day, np.int64),
            "cache_write_tokens": np.zeros(per_day, np.int64),
            "latency_ms": np.where(ok, rng.lognormal(6.5, 0.5, per_day), np.nan),
            "ttft_ms": np.where(ok, rng.lognormal(5.5, 0.4, per_day), np.nan),
            "cost_usd": np.where(ok, rng.random(per_day) / 1000, np.nan),
            "status": np.where(ok, "ok", "error"),
            "attempts": 1,
        }
        df = pl.DataFrame(cols).with_columns(pl.col("latency_ms", "ttft_ms", "cost_usd").fill_nan(None))
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in traces.COLUMNS if c not in cols)
        df = df.select(traces.COLUMNS)
        day = (df["started_at"][0]).date().isoformat()
        folder = root / "traces" / f"day={day}"
        folder.mkdir(parents=True)
        df.write_parquet(folder / "part-0.parquet", compression="zstd", statistics=True)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        took = generate(root)
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        print(f"generated {N:,} traces over {DAYS} days in {took:.1f} s ({size / 1e6:.0f} MB of Parquet, zstd)")
        names = ["metrics()", "metrics(by='model')", "metrics(every='1d', by='status')",
                 "metrics(since/until, one week)", "traces_df(one day, 5 columns)"]
        for name in names:
            res = json.loads(subprocess.run([sys.executable, "-c", _MEASURE, str(root), name],
                                            capture_output=True, text=True, check=True).stdout)
            extra = f", {res['requests']:,} calls" if res["requests"] is not None else ""
            print(f"  {name:36s} {res['s']:6.2f} s, peak memory {res['peak_mb']:6.0f} MB "
                  f"({res['peak_mb'] - res['base_mb']:+.0f} MB over the process after imports), {res['rows']} rows{extra}")
        print(f"  for scale: the {N:,} rows' 8 metric columns alone would take {N * 8 * 8 / 1e6:,.0f} MB in memory")
