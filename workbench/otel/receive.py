"""OTLP/HTTP trace ingest: ``workbench serve`` and `serve`.

An instrumented service (the OpenTelemetry SDK with an OTLP exporter, an
OpenInference or OpenLLMetry instrumentor, a collector) points its exporter at
``http://127.0.0.1:4318/v1/traces``; each span becomes a trace row, written
through the store's batched writer. A request is answered 200 only once its
rows are committed, so a sender that got 200 has lost nothing.

Protobuf needs the ``otel`` extra (``opentelemetry-proto``); JSON needs nothing.
Listening on anything but loopback requires a bearer token.
"""

from __future__ import annotations

import base64
import collections
import hmac
import ipaddress
import json
import math
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .. import traces
from ..errors import ConfigError, MissingDependency, OtlpError
from ._mapping import row_from_span, span_row_id
from .export import INSTALL_HINT

if TYPE_CHECKING:
    from ..pricing import Pricer
    from ..store import Store

PATH = "/v1/traces"
MAX_BODY = 64 * 1024 * 1024
"""Largest request body accepted (after decompression), bytes."""
LINK_MEMORY = 200_000
"""Spans remembered to link children to parents that arrive in a later request."""
_PROVIDER_IDS = {"anthropic": "anthropic", "aws.bedrock": "aws", "openai": "openai", "azure.ai.openai": "azure",
                 "gcp.gemini": "google", "gcp.vertex_ai": "google", "google": "google", "mistral_ai": "mistral"}
"""GenAI ``gen_ai.provider.name`` values to genai-prices provider ids (others are tried as they are)."""


class PayloadError(OtlpError):
    """A request body is not a valid OTLP trace export; answered 400."""


# -- decoding: protobuf and JSON to one plain shape -------------------------------------------


@dataclass
class SpanIn:
    """One decoded span, whatever the wire format."""

    name: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start_ns: int
    end_ns: int
    error: bool
    status_message: str | None
    attrs: dict[str, Any]
    resource: dict[str, Any]
    exception: dict[str, Any] = field(default_factory=dict)


def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def decode_protobuf(body: bytes) -> Iterator[SpanIn]:
    """Spans of an ``ExportTraceServiceRequest`` in protobuf."""
    try:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    except ImportError:
        raise MissingDependency(f"reading OTLP protobuf needs opentelemetry-proto: {INSTALL_HINT} (or send JSON)") from None
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, ValueError) as exc:
        raise PayloadError(f"the body is not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
    for ri, rs in enumerate(request.resource_spans):
        resource = _pb_attrs(rs.resource.attributes)
        for si, ss in enumerate(rs.scope_spans):
            for pi, sp in enumerate(ss.spans):
                where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"
                exception = next((_pb_attrs(e.attributes) for e in sp.events if e.name == "exception"), {})
                yield SpanIn(
                    name=sp.name,
                    trace_id=_id_bytes(sp.trace_id, 16, f"{where}.traceId"),
                    span_id=_id_bytes(sp.span_id, 8, f"{where}.spanId"),
                    parent_span_id=_id_bytes(sp.parent_span_id, 8, f"{where}.parentSpanId") if sp.parent_span_id else None,
                    start_ns=sp.start_time_unix_nano,
                    end_ns=sp.end_time_unix_nano,
                    error=sp.status.code == 2,
                    status_message=sp.status.message or None,
                    attrs=_pb_attrs(sp.attributes),
                    resource=resource,
                    exception=exception,
                )


def _id_bytes(raw: bytes, size: int, where: str) -> int:
    if len(raw) != size or not any(raw):
        raise PayloadError(f"{where}: {raw.hex() or 'empty'} is not a valid {size}-byte id (non-zero)")
    return int.from_bytes(raw, "big")


def _id_hex(raw: Any, size: int, where: str) -> int:
    if not isinstance(raw, str) or len(raw) != 2 * size:
        raise PayloadError(f"{where}: {raw!r} is not {2 * size} hex digits")
    try:
        value = int(raw, 16)
    except ValueError:
        raise PayloadError(f"{where}: {raw!r} is not {2 * size} hex digits") from None
    if value == 0:
        raise PayloadError(f"{where}: an all-zero id is invalid")
    return value


def _get(obj: Mapping[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    """OTLP/JSON uses lowerCamelCase; accept the protobuf field names too."""
    value = obj.get(camel)
    return obj.get(snake, default) if value is None else value


def _json_value(v: Any, where: str) -> Any:
    if not isinstance(v, dict):
        raise PayloadError(f"{where}: an AnyValue must be an object such as {{\"stringValue\": \"...\"}}, got {v!r}")
    for key, value in v.items():
        if key in ("stringValue", "string_value", "boolValue", "bool_value"):
            return value
        if key in ("intValue", "int_value"):
            try:
                number = int(value)  # 64-bit integers travel as JSON strings
            except (TypeError, ValueError):
                raise PayloadError(f"{where}: intValue {value!r} is not an integer") from None
            if not _INT64[0] <= number <= _INT64[1]:
                raise PayloadError(f"{where}: intValue {value!r} does not fit in 64 bits, as OTLP's intValue must")
            return number
        if key in ("doubleValue", "double_value"):
            return float(value)
        if key in ("arrayValue", "array_value"):
            return [_json_value(x, where) for x in (value or {}).get("values", [])]
        if key in ("kvlistValue", "kvlist_value"):
            return _json_attrs((value or {}).get("values", []), where)
        if key in ("bytesValue", "bytes_value"):
            return value
    return None


def _json_attrs(kvs: Any, where: str) -> dict[str, Any]:
    if not isinstance(kvs, list):
        raise PayloadError(f"{where}: attributes must be a list of {{key, value}}, got {type(kvs).__name__}")
    out = {}
    for i, kv in enumerate(kvs):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise PayloadError(f"{where}.attributes[{i}]: expected {{\"key\": ..., \"value\": {{...}}}}, got {kv!r}"[:300])
        out[kv["key"]] = _json_value(kv.get("value", {}), f"{where}.attributes[{i}]")
    return out


def _json_int(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise PayloadError(f"{where}: {value!r} is not an integer (nanoseconds since the Unix epoch)") from None
    if not 0 <= number < 2**64:  # OTLP times are unsigned 64-bit
        raise PayloadError(f"{where}: {value!r} is not a time in nanoseconds since the Unix epoch (0 to 2^64 - 1)")
    return number


def _json_list(obj: Mapping[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = _get(obj, camel, snake, [])
    if not isinstance(value, list):
        raise PayloadError(f"{where}.{camel}: expected a list, got {type(value).__name__}")
    return value


def decode_json(body: bytes) -> Iterator[SpanIn]:
    """Spans of an ``ExportTraceServiceRequest`` in OTLP/JSON (ids as hex, 64-bit numbers as strings)."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"the body is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise PayloadError(f"expected an object with resourceSpans, got {type(request).__name__}")
    for ri, rs in enumerate(_json_list(request, "resourceSpans", "resource_spans", "")):
        w = f"resourceSpans[{ri}]"
        if not isinstance(rs, dict):
            raise PayloadError(f"{w}: expected an object")
        resource = _json_attrs((rs.get("resource") or {}).get("attributes", []), f"{w}.resource")
        for si, ss in enumerate(_json_list(rs, "scopeSpans", "scope_spans", w)):
            for pi, sp in enumerate(_json_list(ss, "spans", "spans", f"{w}.scopeSpans[{si}]")):
                where = f"{w}.scopeSpans[{si}].spans[{pi}]"
                if not isinstance(sp, dict):
                    raise PayloadError(f"{where}: expected an object")
                status = sp.get("status") or {}
                code = status.get("code", 0)
                parent = _get(sp, "parentSpanId", "parent_span_id") or None
                exception = next(
                    (_json_attrs(e.get("attributes", []), f"{where}.events")
                     for e in sp.get("events", []) if isinstance(e, dict) and e.get("name") == "exception"),
                    {},
                )
                yield SpanIn(
                    name=str(sp.get("name", "")),
                    trace_id=_id_hex(_get(sp, "traceId", "trace_id"), 16, f"{where}.traceId"),
                    span_id=_id_hex(_get(sp, "spanId", "span_id"), 8, f"{where}.spanId"),
                    parent_span_id=_id_hex(parent, 8, f"{where}.parentSpanId") if parent else None,
                    start_ns=_json_int(_get(sp, "startTimeUnixNano", "start_time_unix_nano", 0), f"{where}.startTimeUnixNano"),
                    end_ns=_json_int(_get(sp, "endTimeUnixNano", "end_time_unix_nano", 0), f"{where}.endTimeUnixNano"),
                    error=code in (2, "STATUS_CODE_ERROR"),
                    status_message=status.get("message") or None,
                    attrs=_json_attrs(sp.get("attributes", []), where),
                    resource=resource,
                    exception=exception,
                )


# -- spans to rows ----------------------------------------------------------------------------

_INT64 = (-(2**63), 2**63 - 1)
_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "attempts", "repeat")
_MEASURES = ("latency_ms", "ttft_ms", "cost_usd")


def _check_numbers(row: Mapping[str, Any], where: str) -> None:
    """Refuse, as the sender's error, numbers the file cannot hold or that mean nothing.

    A token count past 64 bits would be refused by SQLite after the 200 answer
    was due, and a collector retries a 5xx forever; a negative count, an infinite
    cost or latency would poison every sum and percentile.
    """
    for col in _COUNTS:
        v = row.get(col)
        if v is not None and not 0 <= v <= _INT64[1]:
            raise PayloadError(f"{where}: {col} = {v!r} is not a count from 0 to 2^63 - 1")
    for col in _MEASURES:
        v = row.get(col)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise PayloadError(f"{where}: {col} = {v!r} is not a finite number >= 0")
    version = row.get("prompt_version")
    if version is not None and not _INT64[0] <= version <= _INT64[1]:
        raise PayloadError(f"{where}: prompt version {version!r} does not fit in 64 bits")


class Ingestor:
    """Maps decoded spans to trace rows, prices them, links parents, and queues the rows."""

    def __init__(self, store: Store, pricer: Pricer | None = None) -> None:
        from ..pricing import Pricer

        self.store = store
        self._pricers: dict[str, Pricer] = {"anthropic": pricer or Pricer(store)}
        self._lock = threading.Lock()
        # (trace id, span id) -> row id, for parents that arrive in a later request than their children.
        self._known: collections.OrderedDict[tuple[int, int], str] = collections.OrderedDict()
        self._orphans: collections.OrderedDict[tuple[int, int], list[str]] = collections.OrderedDict()
        self.spans = 0

    def _cost(self, row: dict[str, Any]) -> None:
        if row["cost_usd"] is not None or row["kind"] != "llm" or not row["model"] or row["status"] == "error":
            return
        if row["input_tokens"] is None and row["output_tokens"] is None:
            return
        from ..pricing import Pricer
        from ..providers.base import Usage

        pid = _PROVIDER_IDS.get(str(row["provider"] or "anthropic").lower(), str(row["provider"]).lower())
        if pid not in self._pricers:
            self._pricers[pid] = Pricer(self.store, provider_id=pid)
        usage = Usage(row["input_tokens"] or 0, row["output_tokens"] or 0, row["cache_read_tokens"] or 0,
                      row["cache_write_tokens"] or 0)
        row["cost_usd"], row["price_source"] = self._pricers[pid].cost(row["model"], usage)

    def rows(self, spans: list[SpanIn]) -> list[tuple[str, tuple[Any, ...]]]:
        """The ``(sql, row)`` items to write for one request's spans."""
        items: list[tuple[str, tuple[Any, ...]]] = []
        with self._lock:
            ids = {}
            for s in spans:
                key = (s.trace_id, s.span_id)
                ids[key] = s.attrs.get("workbench.id") or span_row_id(s.start_ns, s.span_id)
                self._remember(key, ids[key])
            for s in spans:
                key = (s.trace_id, s.span_id)
                parent = None
                if s.parent_span_id is not None and "workbench.parent_id" not in s.attrs:
                    pkey = (s.trace_id, s.parent_span_id)
                    parent = self._known.get(pkey)
                    if parent is None:
                        self._orphans.setdefault(pkey, []).append(ids[key])
                        while len(self._orphans) > LINK_MEMORY:
                            self._orphans.popitem(last=False)
                waiting = self._orphans.pop(key, None)
                row = row_from_span(
                    name=s.name, trace_id=s.trace_id, span_id=s.span_id, parent_span_id=s.parent_span_id,
                    start_ns=s.start_ns, end_ns=s.end_ns, error=s.error, status_message=s.status_message,
                    attrs=s.attrs, resource=s.resource, exception=s.exception, parent_row_id=parent,
                )
                _check_numbers(row, f"span {s.span_id:016x} ({s.name!r})")
                if "workbench.id" not in s.attrs:  # workbench's own spans carry their cost, even an unknown one
                    self._cost(row)
                items.append((traces.INGEST_SQL, traces.row(**row)))
                for child in waiting or ():
                    items.append((traces.SET_PARENT_SQL, (ids[key], child)))
            self.spans += len(spans)
        return items

    def _remember(self, key: tuple[int, int], row_id: str) -> None:
        self._known[key] = row_id
        if len(self._known) > LINK_MEMORY:
            self._known.popitem(last=False)

    def ingest(self, body: bytes, content_type: str) -> int:
        """Decode, map and commit one request body; returns the spans written."""
        spans = list(decode_protobuf(body) if content_type == "protobuf" else decode_json(body))
        items = self.rows(spans)
        writer = self.store.writer
        for sql, row in items:
            writer.put(sql, row)
        writer.flush()  # answer only once the rows are on disk
        return len(spans)


# -- the HTTP server --------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _content_type(header: str | None) -> str | None:
    base = (header or "").split(";")[0].strip().lower()
    if base in ("application/x-protobuf", "application/protobuf"):
        return "protobuf"
    if base == "application/json":
        return "json"
    return None


def _inflate(body: bytes, encoding: str) -> bytes:
    """Undo ``Content-Encoding`` without letting a small bomb fill memory."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise PayloadError(f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        out = d.decompress(body, MAX_BODY + 1)
    except zlib.error as exc:
        raise PayloadError(f"the body is not valid {encoding}: {exc}") from None
    if len(out) > MAX_BODY:
        raise _TooLarge()
    return out


class _TooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: exporters send many requests on one connection
    server: OtlpServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _reply(self, code: int, kind: str | None, message: str | None = None, rejected: int = 0) -> None:
        if kind == "protobuf":
            body = _protobuf_reply(code, message, rejected)
            ctype = "application/x-protobuf"
        else:
            if code == 200:
                payload: dict[str, Any] = {}
                if rejected:
                    payload["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message or ""}
            else:
                payload = {"code": 3 if code == 400 else 16 if code == 401 else 2, "message": message or ""}
            body = json.dumps(payload).encode()
            ctype = "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if code == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.split("?")[0] in ("/", "/health"):
            self._reply(200, "json")
        else:
            self._reply(404, "json", f"nothing at {self.path}; POST OTLP traces to {PATH}")

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        kind = _content_type(self.headers.get("Content-Type"))
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._reply(413, kind, f"body of {length:,} bytes is over the {MAX_BODY:,}-byte limit; send smaller batches")
            return
        body = self.rfile.read(length) if length else b""
        if self.path.split("?")[0] != PATH:
            self._reply(404, kind, f"POST OTLP traces to {PATH}, not {self.path}")
            return
        token = self.server.token
        if token is not None:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                self._reply(401, kind, "missing or wrong bearer token (Authorization: Bearer <token>)")
                return
        if kind is None:
            self._reply(415, "json", f"Content-Type {self.headers.get('Content-Type')!r} is not OTLP; "
                                     "send application/x-protobuf or application/json")
            return
        try:
            body = _inflate(body, (self.headers.get("Content-Encoding") or "").strip().lower())
            self.server.ingestor.ingest(body, kind)
        except _TooLarge:
            self._reply(413, kind, f"body is over the {MAX_BODY:,}-byte limit once decompressed; send smaller batches")
        except PayloadError as exc:
            self.server.rejected += 1
            self._reply(400, kind, str(exc))
        except MissingDependency as exc:
            self._reply(415, kind, str(exc))
        except Exception as exc:  # noqa: BLE001 - the sender should retry, the server keeps serving
            self._reply(503, kind, f"could not store the spans: {type(exc).__name__}: {exc}")
        else:
            self._reply(200, kind)


def _protobuf_reply(code: int, message: str | None, rejected: int) -> bytes:
    if code == 200:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        resp = ExportTraceServiceResponse()
        if rejected:
            resp.partial_success.rejected_spans = rejected
            resp.partial_success.error_message = message or ""
        return resp.SerializeToString()
    try:
        from google.rpc.status_pb2 import Status
    except ImportError:
        return (message or "").encode()
    return Status(code=3 if code == 400 else 16 if code == 401 else 2, message=message or "").SerializeToString()


class OtlpServer(ThreadingHTTPServer):
    """The OTLP/HTTP receiver; `serve` builds and starts one."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, store: Store, host: str, port: int, *, token: str | None, pricer: Pricer | None = None,
                 verbose: bool = False) -> None:
        if not _is_loopback(host) and not token:
            raise ConfigError(
                f"listening on {host} lets other machines write into {store.path}; "
                "pass token=... (--token, or WORKBENCH_OTLP_TOKEN) so senders must authenticate, or listen on 127.0.0.1"
            )
        self.token = token
        self.verbose = verbose
        self.rejected = 0
        self.ingestor = Ingestor(store, pricer)
        self._thread: threading.Thread | None = None
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port (0: any free one)") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}{PATH}"

    def start(self) -> OtlpServer:
        """Serve on a background thread (notebooks, tests); ``stop()`` ends it."""
        self._thread = threading.Thread(target=self.serve_forever, name="workbench-otlp", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Serve on this thread until Ctrl-C (KeyboardInterrupt), then close the socket."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server_close()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> OtlpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<OtlpServer {self.url} spans={self.ingestor.spans:,} rejected_requests={self.rejected}>"


def serve(
    bench: Any,
    host: str = "127.0.0.1",
    port: int = 4318,
    *,
    token: str | None = None,
    background: bool = True,
    verbose: bool = False,
) -> OtlpServer:
    """Receive OTLP/HTTP traces into ``bench``'s file.

    Args:
        bench: a `Workbench` (its pricing prices spans that carry no cost).
        host: the address to listen on; anything but loopback needs ``token``.
        port: 4318 is OTLP/HTTP's usual port; 0 picks a free one (see ``.url``).
        token: senders must send ``Authorization: Bearer <token>``.
        background: serve on a thread and return at once; False blocks until Ctrl-C.
    """
    server = OtlpServer(bench.store, host, port, token=token, pricer=getattr(bench, "pricing", None), verbose=verbose)
    if background:
        return server.start()
    server.run()
    return server
