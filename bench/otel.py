"""OpenTelemetry: what live export adds to a traced call, and OTLP/HTTP ingest rate with nothing lost."""

from __future__ import annotations

import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from .tracing import _otel_span, _per_call_us


def _discard_exporter():
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans):  # noqa: ANN001 - the SDK's signature
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    return Discard()


def overhead() -> None:
    """A traced no-op without and with live export, against a bare OTel SDK span."""
    import workbench as wb
    from workbench import otel

    try:
        baseline, provider = _otel_span()
    except ImportError:
        print("the otel extra is not installed (pip install -e '.[dev]'); skipping")
        return
    with tempfile.TemporaryDirectory() as tmp:
        plain = wb.open(Path(tmp) / "plain.db", provider="simulated")
        exported = wb.open(Path(tmp) / "exported.db", provider="simulated")
        sink = _discard_exporter()
        live = otel.live(exported, exporter=sink, interval=0.2, max_queue=1_000_000)

        def noop() -> None:
            return None

        traced, traced_live = plain.traced(noop), exported.traced(noop)
        bare, ours, ours_live, theirs = [], [], [], []
        for _ in range(5):  # interleaved so machine noise hits all four alike
            bare.append(_per_call_us(noop, reps=12))
            ours.append(_per_call_us(traced, reps=12))
            ours_live.append(_per_call_us(traced_live, reps=12))
            theirs.append(_per_call_us(baseline, reps=12))
        calls = 5 * 12 * 2_000
        live.flush(120)
        provider.shutdown()
        sent, dropped = sink.spans, live.dropped
        plain.close()
        exported.close()
    b = statistics.median(bare)
    t, tl, o = statistics.median(ours) - b, statistics.median(ours_live) - b, statistics.median(theirs) - b
    print(f"@bench.traced, no export:        {t:7.3f} us")
    print(f"@bench.traced, live OTel export: {tl:7.3f} us (+{tl - t:.3f} us on the traced call; spans built off-thread)")
    print(f"OpenTelemetry SDK span:          {o:7.3f} us (5 attributes, batch processor)")
    print(f"ratio traced+export / otel:      {tl / o:7.3f}  (target <= 0.5); export adds {(tl - t) / t:.0%} to a traced call")
    print(f"spans exported / calls:          {sent:,} / {calls:,}, dropped {dropped}")


def _payloads(n_requests: int, per_request: int) -> list[bytes]:
    """OTLP protobuf bodies as an SDK would send them: GenAI chat spans under a root span."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def kv(key, value):
        if isinstance(value, str):
            return KeyValue(key=key, value=AnyValue(string_value=value))
        return KeyValue(key=key, value=AnyValue(int_value=value))

    bodies = []
    span_no = 0
    start = 1_790_000_000_000_000_000
    for r in range(n_requests):
        spans = []
        for i in range(per_request):
            span_no += 1
            trace = (r * per_request + i // 4 + 1).to_bytes(16, "big")
            t0 = start + span_no * 1_000_000
            spans.append(Span(
                trace_id=trace, span_id=span_no.to_bytes(8, "big"), name="chat claude-haiku-4-5", kind=3,
                start_time_unix_nano=t0, end_time_unix_nano=t0 + 420_000_000,
                attributes=[kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", "anthropic"),
                            kv("gen_ai.request.model", "claude-haiku-4-5"), kv("gen_ai.usage.input_tokens", 1200),
                            kv("gen_ai.usage.cache_read.input_tokens", 1000), kv("gen_ai.usage.output_tokens", 80),
                            kv("user.id", f"u{span_no % 300}")],
            ))
        req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource={"attributes": [kv("service.name", "load")]}, scope_spans=[ScopeSpans(spans=spans)])])
        bodies.append(req.SerializeToString())
    return bodies


def ingest(n_requests: int = 200, per_request: int = 500, clients: int = 4) -> None:
    """Spans per second into the file from ``clients`` keep-alive connections; every span checked on disk."""
    import workbench as wb
    from workbench import otel

    try:
        bodies = _payloads(n_requests, per_request)
    except ImportError:
        print("the otel extra is not installed (pip install -e '.[dev]'); skipping")
        return
    total = n_requests * per_request
    with tempfile.TemporaryDirectory() as tmp:
        bench = wb.open(Path(tmp) / "ingest.db", provider="simulated")
        server = otel.serve(bench, port=0)
        url = urlsplit(server.url)
        failures: list[int] = []

        def client(chunk: list[bytes]) -> None:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
            for body in chunk:
                conn.request("POST", url.path, body, {"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    failures.append(resp.status)
            conn.close()

        threads = [threading.Thread(target=client, args=(bodies[i::clients],)) for i in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0  # every 200 came after its rows were committed
        server.stop()
        rows = bench.store.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
        priced = bench.store.execute("SELECT COUNT(*) FROM traces WHERE cost_usd > 0").fetchone()[0]
        bench.close()
    print(f"OTLP/HTTP ingest:            {total / elapsed:,.0f} spans/s ({total:,} spans in {n_requests} protobuf "
          f"requests from {clients} clients, {elapsed:.2f} s, acknowledged after commit)")
    print(f"spans on disk / sent:        {rows:,} / {total:,}, lost {total - rows}; priced {priced:,}; "
          f"non-200 answers {len(failures)}")
