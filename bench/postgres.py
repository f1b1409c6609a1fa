"""SQLite against PostgreSQL on this machine: ingest rows/s and ``metrics()`` over 100,000 traces,
and the ways of reading a frame out of PostgreSQL (ADBC vs psycopg's COPY into Polars).

The server is ``WORKBENCH_BENCH_POSTGRES`` (a URL of a database it may fill), or a throw-away
cluster started here with fsync on and ``synchronous_commit=off``: like SQLite's
``synchronous=NORMAL`` in WAL mode, a crash may lose the last commits but never corrupts.
"""

from __future__ import annotations

import io
import os
import random
import sys
import tempfile
import time
from pathlib import Path

N = 100_000
COLUMNS = ("model", "status", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
           "cost_usd", "latency_ms", "ttft_ms")


def _rows(n: int = N) -> list[tuple]:
    from workbench import traces

    rng = random.Random(0)
    models = ["claude-haiku-4-5", "claude-sonnet-4-5"]
    start = 1_790_000_000.0
    out = []
    for i in range(n):
        ok = rng.random() > 0.02
        model = models[i % 2]
        out.append(traces.row(
            id=f"{i:012d}", trace_id=f"{i:012d}", kind="llm", name=f"chat {model}",
            started_at=traces.iso_utc(start + i * 0.864), provider="simulated", simulated=1, model=model,
            prompt_name="support", prompt_version=1 + i % 3, user_id=f"u{i % 500}",
            input=f"question {i} about refunds", output=f"answer {i}",
            input_tokens=rng.randint(50, 2000), output_tokens=rng.randint(10, 400), cache_read_tokens=0,
            cache_write_tokens=0, latency_ms=rng.lognormvariate(6.5, 0.5) if ok else None,
            ttft_ms=rng.lognormvariate(5.5, 0.4) if ok else None, cost_usd=rng.random() / 1000 if ok else None,
            status="ok" if ok else "error", attempts=1,
        ))
    return out


def _server() -> tuple[str, str | None]:
    """(a URL of an empty database, the data folder of a cluster started here or None)."""
    given = os.environ.get("WORKBENCH_BENCH_POSTGRES")
    if given:
        return given, None
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import _postgres

    url, data = _postgres.start_cluster(durable=True)
    return _postgres.fresh_database(url), data


def _ingest(target: str, rows: list[tuple]) -> float:
    """Seconds to hand ``rows`` to the batched writer and see them committed."""
    import workbench as wb
    from workbench import traces

    bench = wb.open(target, provider="simulated")
    try:
        t0 = time.perf_counter()
        bench.store.writer.put_many(traces.INSERT_SQL, rows)
        bench.store.flush()
        return time.perf_counter() - t0
    finally:
        bench.close()


def _metrics(target: str) -> tuple[float, float]:
    """(first metrics() in a new process's store, a repeat that reads only new rows) in seconds."""
    import workbench as wb
    from workbench import frames

    bench = wb.open(target, provider="simulated")
    try:
        t0 = time.perf_counter()
        first = frames.metrics(bench.store, by="model")
        t1 = time.perf_counter()
        frames.metrics(bench.store, by="model")
        t2 = time.perf_counter()
        assert int(first["requests"].sum()) == N
        return t1 - t0, t2 - t1
    finally:
        bench.close()


def _readers(url: str) -> dict[str, float]:
    """Seconds to read the metric columns of every trace into Polars, three ways."""
    import polars as pl
    import psycopg

    from workbench.store import Store

    sql = f"SELECT {', '.join(COLUMNS)} FROM traces WHERE kind = 'llm'"
    out = {}
    store = Store(url)
    try:
        t0 = time.perf_counter()
        df = store.read_frame([(sql, [])], {})
        out["ADBC, literal filters (binary COPY)"] = time.perf_counter() - t0
        assert df.height == N
    finally:
        store.close()
    import adbc_driver_manager as adbc
    import adbc_driver_postgresql

    db = adbc.AdbcDatabase(driver=adbc_driver_postgresql._driver_path(), uri=url)
    conn = adbc.AdbcConnection(db)
    stmt = adbc.AdbcStatement(conn)
    t0 = time.perf_counter()
    stmt.set_sql_query(sql.replace("'llm'", "$1"))
    stmt.bind_stream(pl.DataFrame({"p0": ["llm"]}).__arrow_c_stream__())
    stream, _ = stmt.execute_query()
    df = pl.DataFrame(stream)
    out["ADBC, bound parameter (prepared statement)"] = time.perf_counter() - t0
    stmt.close()
    conn.close()
    db.close()
    with psycopg.connect(url) as pconn:
        t0 = time.perf_counter()
        buf = io.BytesIO()
        with pconn.cursor().copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
            for chunk in copy:
                buf.write(chunk)
        df = pl.read_csv(buf.getvalue(), has_header=False, new_columns=list(COLUMNS))
        out["psycopg COPY csv into pl.read_csv"] = time.perf_counter() - t0
        assert df.height == N
    return out


def main() -> None:
    rows = _rows()
    url, data = _server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "bench.db")
            sqlite_s = _ingest(path, rows)
            pg_s = _ingest(url, rows)
            sqlite_m = _metrics(path)
            pg_m = _metrics(url)
        print(f"ingest {N:,} traces through the batched writer (put_many + flush):")
        print(f"  SQLite      {N / sqlite_s:>10,.0f} rows/s  ({sqlite_s:.2f} s)")
        print(f"  PostgreSQL  {N / pg_s:>10,.0f} rows/s  ({pg_s:.2f} s)   {sqlite_s / pg_s:.2f}x SQLite's rate")
        print(f"metrics(by='model') over {N:,} traces, first read / repeat (reads only new rows):")
        print(f"  SQLite      {sqlite_m[0] * 1000:>7.0f} ms / {sqlite_m[1] * 1000:.0f} ms")
        print(f"  PostgreSQL  {pg_m[0] * 1000:>7.0f} ms / {pg_m[1] * 1000:.0f} ms   "
              f"first read {pg_m[0] / sqlite_m[0]:.2f}x SQLite's time")
        readers = _readers(url)
        base = readers["ADBC, literal filters (binary COPY)"]
        print(f"reading {len(COLUMNS)} columns x {N:,} rows from PostgreSQL into Polars:")
        for name, seconds in readers.items():
            print(f"  {name:<45} {seconds * 1000:>7.0f} ms  {seconds / base:.2f}x")
    finally:
        if data is not None:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            import _postgres

            _postgres.stop_cluster(data)
