"""Trace rows out as OpenTelemetry spans: in bulk from the file, or live as they are traced.

Both build the OTel SDK's ``ReadableSpan`` and hand it to any ``SpanExporter``
(OTLP over HTTP by default), so Langfuse, Phoenix, Jaeger or a collector
receive them the way they receive any instrumented service's spans.
"""

from __future__ import annotations

import atexit
import collections
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import traces
from ..errors import ConfigError, MissingDependency, OtlpError
from ._mapping import id_int, span_attributes, span_times

if TYPE_CHECKING:
    from ..store import Store
    from ..tracing import Tracer

INSTALL_HINT = "pip install 'workbench[otel]'"
SCOPE = "workbench"
"""The instrumentation scope every exported span carries."""
DEFAULT_SERVICE = "workbench"
EXPORT_BATCH = 512
"""Spans per export call (the OTel SDK's batch processor default)."""


def _sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ImportError:
        raise MissingDependency(
            f"exporting traces to OpenTelemetry needs the OpenTelemetry SDK and OTLP exporter: {INSTALL_HINT}"
        ) from None
    return sdk_trace


def otlp_exporter(endpoint: str, *, headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> Any:
    """The SDK's OTLP/HTTP (protobuf) span exporter for ``endpoint``.

    ``http://host:4318`` means the standard path ``/v1/traces``; a URL that
    names a path is used as it is.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise MissingDependency(f"the OTLP exporter is not installed: {INSTALL_HINT}") from None
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"endpoint {endpoint!r} is not an http(s) URL; pass e.g. http://localhost:4318")
    if parts.path in ("", "/"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint, headers=dict(headers or {}), timeout=timeout)


class SpanBuilder:
    """Turns trace rows into SDK ``ReadableSpan`` objects (one resource and scope for all)."""

    def __init__(self, *, service: str = DEFAULT_SERVICE, content: bool = True,
                 resource: Mapping[str, Any] | None = None) -> None:
        sdk = _sdk()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        self._ReadableSpan = sdk.ReadableSpan
        self._SpanContext = SpanContext
        self._flags = TraceFlags(TraceFlags.SAMPLED)
        self._kinds = {"llm": SpanKind.CLIENT}
        self._internal = SpanKind.INTERNAL
        self._ok, self._unset = Status(StatusCode.OK), Status(StatusCode.UNSET)
        self._Status, self._error = Status, StatusCode.ERROR
        self.content = content
        self.resource = Resource.create({"service.name": service, **(resource or {})})
        from .. import __version__

        self.scope = InstrumentationScope(SCOPE, __version__)

    def span(self, row: Mapping[str, Any]) -> Any:
        trace_id = id_int(row["trace_id"], 128)
        ctx = self._SpanContext(trace_id, id_int(row["id"], 64), is_remote=False, trace_flags=self._flags)
        parent = None
        if row.get("parent_id"):
            parent = self._SpanContext(trace_id, id_int(row["parent_id"], 64), is_remote=False, trace_flags=self._flags)
        start, end = span_times(row)
        if row["status"] == "error":
            status = self._Status(self._error, (row.get("error") or "")[:1000] if self.content else None)
        else:
            status = self._unset
        return self._ReadableSpan(
            name=row["name"],
            context=ctx,
            parent=parent,
            resource=self.resource,
            attributes=span_attributes(row, content=self.content),
            kind=self._kinds.get(row["kind"], self._internal),
            status=status,
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scope,
        )

    def spans(self, rows: Iterable[Mapping[str, Any]]) -> list[Any]:
        return [self.span(r) for r in rows]


def _send(exporter: Any, spans: list[Any]) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    if exporter.export(spans) is not SpanExportResult.SUCCESS:
        raise OtlpError(
            f"the exporter refused {len(spans)} spans (collector down or rejecting?); nothing after them was sent. "
            "Check the endpoint, then export again: spans sent twice are stored once by workbench serve"
        )


def export(
    source: Any,
    endpoint: str | None = None,
    *,
    exporter: Any = None,
    headers: Mapping[str, str] | None = None,
    service: str = DEFAULT_SERVICE,
    content: bool = True,
    batch: int = EXPORT_BATCH,
    **filters: Any,
) -> int:
    """Send the file's traces as OTLP spans; returns how many were sent.

    Args:
        source: a `Workbench` or a `Store`.
        endpoint: an OTLP/HTTP collector (``http://localhost:4318``); or pass ``exporter``.
        exporter: any OTel SDK ``SpanExporter`` (console, in-memory, gRPC ...).
        headers: sent with each request (``{"Authorization": "Bearer ..."}``).
        service: the ``service.name`` of the resource.
        content: False leaves inputs, outputs and error texts out.
        filters: `traces.TraceQuery` fields (since, until, model, experiment_id, kind, ...).
    """
    store: Store = getattr(source, "store", source)
    if (endpoint is None) == (exporter is None):
        raise ConfigError("pass endpoint='http://host:4318' or exporter=<a SpanExporter>, one of them")
    own = exporter is None
    exporter = exporter or otlp_exporter(endpoint, headers=headers)  # type: ignore[arg-type]
    builder = SpanBuilder(service=service, content=content)
    store.sync()
    sent = 0
    try:
        for rows in traces.iter_rows(store, traces.TraceQuery(**filters), chunk=batch):
            _send(exporter, builder.spans(rows))
            sent += len(rows)
    finally:
        if own:
            exporter.shutdown()
    return sent


_live: weakref.WeakSet[LiveExport] = weakref.WeakSet()


class LiveExport:
    """Sends each trace row as a span while the program runs.

    The traced call only appends its row to a queue (a sink on the tracer); a
    background thread turns rows into spans and exports them in batches, every
    ``interval`` seconds or as soon as a batch is full. When the collector is
    slow or down, the queue holds up to ``max_queue`` rows and then counts the
    rest in ``dropped`` rather than slow the application: the file still has
    every row, and ``export(..., since=...)`` sends them later.
    """

    def __init__(
        self,
        tracer: Tracer,
        exporter: Any,
        *,
        service: str = DEFAULT_SERVICE,
        content: bool = True,
        batch: int = EXPORT_BATCH,
        interval: float = 1.0,
        max_queue: int = 100_000,
    ) -> None:
        self.builder = SpanBuilder(service=service, content=content)
        self.exporter = exporter
        self.batch = batch
        self.interval = interval
        self.max_queue = max_queue
        self.exported = 0
        self.dropped = 0
        self.failed = 0
        self._queue: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0  # rows taken from the queue but not yet exported
        self._closed = False
        self._tracer = tracer
        self._thread = threading.Thread(target=self._run, name="workbench-otel-export", daemon=True)
        self._thread.start()
        tracer.add_sink(self.put)
        _live.add(self)

    def put(self, sql: str, row: tuple[Any, ...]) -> None:
        """The tracer's sink: queue one row (hot path: an append and a length check)."""
        q = self._queue
        if len(q) >= self.max_queue:
            self.dropped += 1
            return
        q.append((sql, row))
        if len(q) == self.batch:
            self._wake.set()

    def _take(self) -> list[dict[str, Any]]:
        rows = []
        q = self._queue
        with self._idle:
            while q and len(rows) < self.batch:
                d = traces.row_dict(*q.popleft())
                if d is not None:
                    rows.append(d)
            self._pending = len(rows)
        return rows

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            while True:
                rows = self._take()
                if not rows:
                    break
                try:
                    _send(self.exporter, self.builder.spans(rows))
                    self.exported += len(rows)
                except Exception as exc:  # noqa: BLE001 - the thread must survive a collector outage
                    self.failed += len(rows)
                    warnings.warn(f"workbench: {len(rows)} spans were not exported: {exc}", RuntimeWarning, stacklevel=1)
                with self._idle:
                    self._pending = 0
                    self._idle.notify_all()
            with self._idle:
                self._idle.notify_all()
                if self._closed and not self._queue:
                    return

    def flush(self, timeout: float = 30.0) -> bool:
        """Export everything queued so far; False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue or self._pending:
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking rows, export what is queued, shut the exporter down."""
        if self._closed:
            return
        self._tracer.remove_sink(self.put)
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        try:
            self.exporter.shutdown()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass

    def __repr__(self) -> str:
        return f"<LiveExport exported={self.exported} queued={len(self._queue)} dropped={self.dropped} failed={self.failed}>"


def live(
    bench: Any,
    endpoint: str | None = None,
    *,
    exporter: Any = None,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> LiveExport:
    """Export every trace ``bench`` writes from now on; ``bench.close()`` (or ``.close()``) flushes it.

    ``options`` go to `LiveExport` (service, content, batch, interval, max_queue).
    """
    if (endpoint is None) == (exporter is None):
        raise ConfigError("pass endpoint='http://host:4318' or exporter=<a SpanExporter>, one of them")
    exporter = exporter or otlp_exporter(endpoint, headers=headers)  # type: ignore[arg-type]
    return LiveExport(bench.tracer, exporter, **options)


@atexit.register
def _close_all() -> None:
    for exp in list(_live):
        try:
            exp.close(timeout=5.0)
        except Exception:  # noqa: BLE001 - at exit, keep closing the others
            pass
