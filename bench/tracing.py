"""Tracing overhead against an OpenTelemetry SDK span, ingest rate, import time."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _per_call_us(fn, n: int = 2_000, reps: int = 60) -> float:
    """Median over ``reps`` batches of the mean time of one call in a batch of ``n``."""
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter_ns() - t0) / n / 1000)
    return statistics.median(samples)


def _otel_span():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):  # noqa: ANN001 - the SDK's signature
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    tracer = provider.get_tracer("bench")

    def span() -> None:
        with tracer.start_as_current_span("noop") as s:
            s.set_attribute("gen_ai.operation.name", "chat")
            s.set_attribute("gen_ai.request.model", "claude-haiku-4-5")
            s.set_attribute("gen_ai.usage.input_tokens", 120)
            s.set_attribute("gen_ai.usage.output_tokens", 30)
            s.set_attribute("workbench.cost_usd", 0.0003)

    return span, provider


def overhead() -> None:
    import workbench as wb

    with tempfile.TemporaryDirectory() as tmp:
        bench = wb.open(Path(tmp) / "bench.db", provider="simulated")

        def noop() -> None:
            return None

        traced = bench.traced(noop)
        try:
            otel, provider = _otel_span()
        except ImportError:
            print("opentelemetry-sdk is not installed (pip install -e '.[dev]'); skipping the comparison")
            return
        # Interleave the three so machine noise hits them alike.
        bare, ours, theirs = [], [], []
        for _ in range(5):
            bare.append(_per_call_us(noop, reps=12))
            ours.append(_per_call_us(traced, reps=12))
            theirs.append(_per_call_us(otel, reps=12))
        bare_us = statistics.median(bare)
        ours_us = statistics.median(ours) - bare_us
        otel_us = statistics.median(theirs) - bare_us
        calls = 5 * 12 * 2_000
        bench.flush()
        rows = bench.store.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
        provider.shutdown()
        bench.close()
    print(f"no-op call:                 {bare_us:8.3f} us")
    print(f"@bench.traced overhead:     {ours_us:8.3f} us (median)")
    print(f"OpenTelemetry SDK span:     {otel_us:8.3f} us (5 attributes, batch processor)")
    print(f"ratio traced / otel:        {ours_us / otel_us:8.3f}  (target <= 0.5)")
    print(f"traces written / calls:     {rows} / {calls}  lost: {calls - rows}")


def ingest(n: int = 300_000) -> None:
    import workbench as wb

    with tempfile.TemporaryDirectory() as tmp:
        bench = wb.open(Path(tmp) / "bench.db", provider="simulated")

        @bench.traced
        def handler(x: int) -> int:
            return x

        t0 = time.perf_counter()
        for i in range(n):
            handler(i)
        produced = time.perf_counter() - t0
        bench.flush()
        total = time.perf_counter() - t0
        rows = bench.store.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
        size = (Path(tmp) / "bench.db").stat().st_size + (Path(tmp) / "bench.db-wal").stat().st_size
        bench.close()
    print(f"traced calls:               {n:,} in {produced:.2f} s; on disk after flush at {total:.2f} s")
    print(f"sustained ingest:           {rows / total:,.0f} traces/s into the file (target >= 50,000)")
    print(f"rows / calls:               {rows:,} / {n:,}; file + WAL {size / 1e6:.0f} MB")


def import_time(runs: int = 7) -> None:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import workbench"], check=True)
        times.append(time.perf_counter() - t0)
    base = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base.append(time.perf_counter() - t0)
    print(f"python -c 'import workbench': {statistics.median(times):.3f} s median of {runs} (target < 0.5 s)")
    print(f"python -c 'pass':             {statistics.median(base):.3f} s (interpreter start, for reference)")
