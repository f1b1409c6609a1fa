"""A local HTTP server that speaks enough of the Anthropic Messages API for tests.

Standard library only, so it cannot break with a dependency upgrade::

    with FakeAnthropic() as server:
        client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test")
        server.queue_faults([("status", 429, {"retry-after": "0"}), ("status", 529)])
        ...
        assert server.completed == 1

Endpoints: ``POST /v1/messages`` (JSON, or SSE when ``"stream": true``),
``POST /v1/messages/count_tokens``, and the Message Batches API: ``POST
/v1/messages/batches`` (create), ``GET /v1/messages/batches`` (list, newest first),
``GET /v1/messages/batches/{id}`` (retrieve), ``GET .../{id}/results`` (JSON lines)
and ``POST .../{id}/cancel``. A batch ends ``batch_delay`` seconds after it was
created, or when the test calls ``end_batches()`` while ``batch_hold`` is set;
``expire_batches()`` ends held batches with every request expired. A ``("cut",)``
fault on a create makes the batch and then closes the connection unanswered. Each request of
a batch is answered as ``/v1/messages`` would answer it (a request that would get a
400 comes back ``errored``; ``batch_errors`` forces an error type per custom id).
``batch_requests_billed`` counts the requests that succeeded: what a real account pays for. Either ``x-api-key`` or
``Authorization: Bearer`` authenticates; with ``api_key=`` set only that key does.
As the real API does from ``anthropic-version: 2026-10-21`` (what SDK 2.x sends),
``temperature``, ``top_p`` and ``top_k`` in the body get a 400.

Answers are "Echo: " + the last user message unless ``server.reply`` says otherwise;
``stop_sequences`` and ``max_tokens`` cut them as the API would. Usage counts about
four characters a token; a system prompt sent as blocks with ``cache_control`` is
reported as a cache write the first time its text is seen and a cache read after.
Writes are split by lifetime in ``usage.cache_creation`` as the API reports them
(``ephemeral_5m_input_tokens``, and ``ephemeral_1h_input_tokens`` for blocks marked
``"ttl": "1h"``). ``server.usage_override`` forces exact numbers; one that sets
``cache_creation_input_tokens`` without ``cache_creation`` drops the split, as an
API that predates it would.

Faults, consumed one per request in arrival order (``queue_faults``), or drawn at
random (``fault_rate``):

- ``("status", code)`` or ``("status", code, {header: value})``: an error response
  with Anthropic's error body and a ``request-id`` header.
- ``("slow", seconds)``: wait, then answer normally.
- ``("drop",)``: close the connection without a response.
- ``("stream_error", error_type)``: start an SSE stream, then send ``event: error``
  (a non-streaming request gets the matching status instead).
- ``("cut",)``: start an SSE stream, then close the connection mid-stream
  (a non-streaming request is dropped).
"""

from __future__ import annotations

import json
import math
import random
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["FakeAnthropic", "RecordedRequest", "ERROR_TYPES"]

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""The ``error.type`` the fake sends for each status."""

SAMPLING_REMOVED_IN = "2026-10-21"
"""From this ``anthropic-version`` on, temperature, top_p and top_k are refused with a 400."""

_STATUS_FOR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

Fault = tuple[Any, ...]


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    """Every header, names lower-cased."""
    body: Any
    """The decoded JSON body, or the raw text when it was not JSON, or None."""
    at: float = field(default_factory=time.monotonic)
    fault: Fault | None = None
    """The fault applied to this request, if any."""
    request_id: str | None = None
    """The ``request-id`` header the fake answered with (None when it dropped the connection)."""


def _default_reply(body: dict[str, Any]) -> str:
    last = _last_user_text(body)
    return "Echo: " + (last[:200] if last is not None else "")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _last_user_text(body: dict[str, Any]) -> str | None:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return None


def _prompt_chars(body: dict[str, Any]) -> int:
    """Characters of system prompt and message text in a request body."""
    system = body.get("system")
    chars = len(_text(system) if isinstance(system, list) else system if isinstance(system, str) else "")
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            chars += len(_text(message.get("content")))
    return chars


def _tokens(chars: int) -> int:
    """About four characters a token, as a rough stand-in for a tokenizer."""
    return math.ceil(chars / 4)


class FakeAnthropic:
    """A threaded fake of the Anthropic Messages API bound to 127.0.0.1.

    Args:
        reply: ``callable(request_json) -> str`` giving the answer text; the default
            echoes the last user message as ``"Echo: ..."``.
        model: the model reported in responses; None echoes the requested one.
        delta_delay: seconds to wait between streamed text deltas.
        delta_chars: characters per streamed text delta.
        api_key: when set, only this key is accepted.
        echo_credentials: a refused key is quoted in the 401's message, as some
            servers and proxies do (to test that clients scrub it).
        port: port to bind; 0 picks a free one.
    """

    def __init__(
        self,
        *,
        reply: Callable[[dict[str, Any]], str] | None = None,
        model: str | None = None,
        delta_delay: float = 0.0,
        delta_chars: int = 8,
        api_key: str | None = None,
        echo_credentials: bool = False,
        port: int = 0,
    ) -> None:
        self.reply: Callable[[dict[str, Any]], str] = reply or _default_reply
        self.model = model
        self.delta_delay = delta_delay
        self.delta_chars = max(1, delta_chars)
        self.api_key = api_key
        self.echo_credentials = echo_credentials
        self.usage_override: dict[str, int] | None = None
        """Usage fields that replace the computed ones, e.g. ``{"cache_read_input_tokens": 100}``."""
        self.requests: list[RecordedRequest] = []
        self._completed_bodies: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._fault_p = 0.0
        self._fault_statuses: tuple[int, ...] = ()
        self._fault_headers: dict[str, str] = {}
        self._rng = random.Random(0)
        self._cached_prefixes: set[tuple[str, str]] = set()
        self._counter = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.batches: dict[str, _FakeBatch] = {}
        """Every batch created, by id, oldest first."""
        self._batch_seq = 0
        self.batch_delay = 0.0
        """Seconds from a batch's creation to its end (when not held)."""
        self.batch_hold = False
        """Keep every batch in progress until ``end_batches()`` or ``expire_batches()``."""
        self.batch_errors: dict[str, str] = {}
        """custom_id -> error type that request comes back ``errored`` with."""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = port

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeAnthropic:
        """Bind and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", self._port), _make_handler(self))
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeAnthropic is not running; use it as a context manager")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``AsyncAnthropic(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}"

    # -- test controls -----------------------------------------------------

    def queue_faults(self, faults: Iterable[Fault]) -> None:
        """Script the next responses; each request consumes one fault, in order."""
        checked = [_check_fault(f) for f in faults]
        with self._lock:
            self._faults.extend(checked)

    def fault_rate(
        self,
        p: float,
        statuses: Iterable[int] = (429, 529),
        seed: int = 0,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Fail a fraction ``p`` of requests at random (seeded) with one of ``statuses``.

        ``headers`` go on every random fault; by default ``retry-after: 0`` so
        retrying clients do not wait. ``fault_rate(0)`` turns random faults off.
        """
        if not 0 <= p <= 1:
            raise ValueError(f"fault rate must be between 0 and 1, got {p}")
        statuses = tuple(statuses)
        if p and not statuses:
            raise ValueError("fault_rate needs at least one status")
        with self._lock:
            self._fault_p = p
            self._fault_statuses = statuses
            self._fault_headers = {"retry-after": "0"} if headers is None else dict(headers)
            self._rng = random.Random(seed)

    def reset(self) -> None:
        """Forget requests, completions, queued faults, random faults and the prompt cache."""
        with self._lock:
            self.requests.clear()
            self._completed_bodies.clear()
            self._faults.clear()
            self._fault_p = 0.0
            self._cached_prefixes.clear()

    @property
    def completed(self) -> int:
        """How many ``/v1/messages`` requests were answered successfully."""
        with self._lock:
            return len(self._completed_bodies)

    @property
    def completed_bodies(self) -> list[dict[str, Any]]:
        """Request bodies of the successful completions, in order (a copy)."""
        with self._lock:
            return list(self._completed_bodies)

    def calls_for(self, match: str | Callable[[dict[str, Any]], bool]) -> int:
        """Count successful completions whose last user message equals ``match``
        (a string) or whose request body satisfies ``match`` (a callable)."""
        if isinstance(match, str):
            text = match

            def match(body: dict[str, Any]) -> bool:
                return _last_user_text(body) == text

        return sum(1 for body in self.completed_bodies if match(body))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests to one path, e.g. ``/v1/messages``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- Message Batches controls --------------------------------------------

    def end_batches(self) -> None:
        """End every batch still processing: its requests are answered now."""
        with self._lock:
            open_ = [b for b in self.batches.values() if b.ended_at is None]
        for batch in open_:
            self._end_batch(batch, "succeeded")

    def expire_batches(self) -> None:
        """End every batch still processing with each of its requests expired (24 h passed)."""
        with self._lock:
            open_ = [b for b in self.batches.values() if b.ended_at is None]
        for batch in open_:
            self._end_batch(batch, "expired")

    def archive_batches(self) -> None:
        """Stop serving every batch's results, as the API does 29 days after creation."""
        with self._lock:
            for batch in self.batches.values():
                batch.archived_at = time.time()

    @property
    def batch_requests_submitted(self) -> int:
        """Requests in every batch created."""
        with self._lock:
            return sum(len(b.requests) for b in self.batches.values())

    @property
    def batch_requests_billed(self) -> int:
        """Batch requests that were processed and succeeded: what an account is charged for."""
        with self._lock:
            return sum(1 for b in self.batches.values() for r in b.results if r["result"]["type"] == "succeeded")

    def _create_batch(self, requests: list[dict[str, Any]]) -> _FakeBatch:
        with self._lock:
            self._batch_seq += 1
            batch = _FakeBatch(f"msgbatch_fake_{self._batch_seq:06d}", requests, time.time())
            self.batches[batch.id] = batch
        return batch

    def _batch(self, batch_id: str) -> _FakeBatch | None:
        with self._lock:
            batch = self.batches.get(batch_id)
        if batch is not None and batch.ended_at is None and not self.batch_hold and (
            time.time() - batch.created_at >= self.batch_delay
        ):
            self._end_batch(batch, "canceled" if batch.cancel_at is not None else "succeeded")
        return batch

    def _end_batch(self, batch: _FakeBatch, how: str) -> None:
        """Answer (or cancel, or expire) every request of ``batch`` and end it."""
        results = []
        for item in batch.requests:
            custom_id, params = item["custom_id"], item["params"]
            if how != "succeeded":
                result: dict[str, Any] = {"type": how}
            elif custom_id in self.batch_errors or _invalid(params, SAMPLING_REMOVED_IN):
                error_type = self.batch_errors.get(custom_id) or "invalid_request_error"
                message = _invalid(params, SAMPLING_REMOVED_IN) or f"injected {error_type}"
                result = {"type": "errored", "error": {"type": "error", "error": {"type": error_type, "message": message},
                                                         "request_id": f"req_fake_{self._next_id():06d}"}}
            else:
                result = {"type": "succeeded", "message": self._complete(params)}
            results.append({"custom_id": custom_id, "result": result})
        with self._lock:
            if batch.ended_at is None:
                batch.results = results
                batch.ended_at = time.time()

    # -- used by the handler -----------------------------------------------

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _record(self, recorded: RecordedRequest, faultable: bool) -> Fault | None:
        """Store the request and pick the fault it gets, atomically."""
        with self._lock:
            self.requests.append(recorded)
            if not faultable:
                fault: Fault | None = None
            elif self._faults:
                fault = self._faults.popleft()
            elif self._fault_p and self._rng.random() < self._fault_p:
                fault = ("status", self._rng.choice(self._fault_statuses), dict(self._fault_headers))
            else:
                fault = None
            recorded.fault = fault
            return fault

    def _complete(self, body: dict[str, Any], cache: bool = True) -> dict[str, Any]:
        """The full message for a request (not yet counted as completed)."""
        text = self.reply(body)
        max_tokens = body.get("max_tokens")
        stop_reason, stop_sequence = "end_turn", None
        for stop in body.get("stop_sequences") or []:
            at = text.find(stop)
            if stop and at >= 0:
                text, stop_reason, stop_sequence = text[:at], "stop_sequence", stop
        if isinstance(max_tokens, int) and _tokens(len(text)) > max_tokens:
            text, stop_reason, stop_sequence = text[: max_tokens * 4], "max_tokens", None
        usage = self._usage(body, text, cache)
        n = self._next_id()
        return {
            "id": f"msg_fake_{n:06d}",
            "type": "message",
            "role": "assistant",
            "model": self.model or body.get("model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }

    def _usage(self, body: dict[str, Any], text: str, cache: bool = True) -> dict[str, Any]:
        system = body.get("system")
        cached_chars, cache_key = 0, None
        by_ttl = {"5m": 0, "1h": 0}
        if isinstance(system, list):
            # Everything up to the last block marked cache_control is the cached prefix;
            # the blocks up to each mark take that mark's lifetime.
            marked = [i for i, b in enumerate(system) if isinstance(b, dict) and b.get("cache_control")]
            if marked:
                prefix = _text(system[: marked[-1] + 1])
                cached_chars, cache_key = len(prefix), (str(body.get("model")), prefix)
                start = 0
                for i in marked:
                    ttl = "1h" if system[i]["cache_control"].get("ttl") == "1h" else "5m"
                    by_ttl[ttl] += len(_text(system[start : i + 1]))
                    start = i + 1
        cached = _tokens(cached_chars)
        usage: dict[str, Any] = {
            "input_tokens": _tokens(_prompt_chars(body)) - cached,
            "output_tokens": max(1, _tokens(len(text))),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        }
        if cache_key is not None:
            with self._lock:
                seen = cache_key in self._cached_prefixes
                if cache:
                    self._cached_prefixes.add(cache_key)
            if seen:
                usage["cache_read_input_tokens"] = cached
            else:
                usage["cache_creation_input_tokens"] = cached
                hour = _tokens(by_ttl["1h"]) if by_ttl["5m"] else cached
                hour = hour if by_ttl["1h"] else 0
                usage["cache_creation"] = {"ephemeral_5m_input_tokens": cached - hour, "ephemeral_1h_input_tokens": hour}
        if self.usage_override:
            usage.update(self.usage_override)
            if "cache_creation_input_tokens" in self.usage_override and "cache_creation" not in self.usage_override:
                del usage["cache_creation"]
        return usage

    def _count_tokens(self, body: dict[str, Any]) -> int:
        return _tokens(_prompt_chars(body))

    def _mark_completed(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._completed_bodies.append(body)


@dataclass
class _FakeBatch:
    """One Message Batch held by the fake."""

    id: str
    requests: list[dict[str, Any]]
    created_at: float
    ended_at: float | None = None
    cancel_at: float | None = None
    archived_at: float | None = None
    results: list[dict[str, Any]] = field(default_factory=list)

    def body(self, base_url: str) -> dict[str, Any]:
        """The ``message_batch`` object the API answers with."""
        ended = self.ended_at is not None
        counts = {"processing": 0 if ended else len(self.requests), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for r in self.results:
            counts[r["result"]["type"]] += 1
        status = "ended" if ended else "canceling" if self.cancel_at is not None else "in_progress"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.created_at + 24 * 3600),
            "ended_at": _rfc3339(self.ended_at),
            "cancel_initiated_at": _rfc3339(self.cancel_at),
            "archived_at": _rfc3339(self.archived_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if ended else None,
        }


def _rfc3339(when: float | None) -> str | None:
    if when is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1e6):06d}Z"


_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _batch_problem(body: Any) -> str | None:
    """Why a batch create request is malformed (the whole batch is refused), or None."""
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
        return "requests: at least one request is required"
    seen: set[str] = set()
    for i, item in enumerate(body["requests"]):
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            return f"requests.{i}.params: must be an object"
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            return f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
        if custom_id in seen:
            return f"requests.{i}.custom_id: duplicate custom_id {custom_id!r}"
        if item["params"].get("stream"):
            return f"requests.{i}.params.stream: batch requests cannot stream"
        seen.add(custom_id)
    return None


def _check_fault(fault: Fault) -> Fault:
    fault = tuple(fault)
    kind = fault[0] if fault else None
    if kind == "status" and len(fault) in (2, 3) and isinstance(fault[1], int):
        return fault
    if kind == "slow" and len(fault) == 2 and fault[1] >= 0:
        return fault
    if kind in ("drop", "cut") and len(fault) == 1:
        return fault
    if kind == "stream_error" and len(fault) == 2 and isinstance(fault[1], str):
        return fault
    raise ValueError(
        f"unknown fault {fault!r}; use ('status', code[, headers]), ('slow', seconds), "
        "('drop',), ('cut',) or ('stream_error', error_type)"
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets connections when a benchmark
    # opens hundreds at once.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) or a server being stopped is normal here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _make_handler(server: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAnthropic
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients pool connections
    server_version = "FakeAnthropic/1"
    # Headers, body and each SSE frame are separate small writes: without
    # TCP_NODELAY, Nagle plus delayed ACKs adds about 40 ms to every response.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.fake._lock:
                self.fake._sockets.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # tests read server.requests, not stderr

    # -- dispatch ----------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        batches = path.startswith("/v1/messages/batches")
        _, fault = self._read_and_record(faultable=batches)
        if not batches:
            self._send_error(404, f"not found: GET {self.path}")
            return
        if self._batch_fault(fault) or not self._authorised():
            return
        self._batches_get(path)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        batches = path.startswith("/v1/messages/batches")
        known = path in ("/v1/messages", "/v1/messages/count_tokens") or batches
        recorded, fault = self._read_and_record(faultable=known)
        if not known:
            self._send_error(404, f"not found: POST {path}")
            return
        if batches:
            if not self._batch_fault(fault) and self._authorised():
                self._batches_post(path, recorded.body, cut=fault is not None and fault[0] == "cut")
            return
        if not self._authorised():
            return
        body = recorded.body
        stream = isinstance(body, dict) and body.get("stream") is True
        if fault is not None:
            kind = fault[0]
            if kind == "status":
                headers = fault[2] if len(fault) > 2 else {}
                self._send_error(fault[1], f"injected {fault[1]}", headers)
                return
            if kind == "slow":
                time.sleep(fault[1])
            elif kind == "drop" or (kind == "cut" and not stream):
                self._drop()
                return
            elif kind == "stream_error" and not stream:
                status = _STATUS_FOR_TYPE.get(fault[1], 500)
                self._send_error(status, f"injected {fault[1]}", error_type=fault[1])
                return
        if not isinstance(body, dict):
            self._send_error(400, "request body must be a JSON object")
            return
        if path.endswith("/count_tokens"):
            if not body.get("model") or not body.get("messages"):
                self._send_error(400, "model and messages are required")
                return
            self._send_json(200, {"input_tokens": self.fake._count_tokens(body)})
            return
        problem = _invalid(body, self.headers.get("anthropic-version") or "")
        if problem:
            self._send_error(400, problem)
            return
        fault_kind = fault[0] if fault else None
        # A stream that fails part-way does not write the prompt cache.
        try:
            message = self.fake._complete(body, cache=fault_kind not in ("stream_error", "cut"))
        except Exception as exc:  # a broken `reply` callable should fail loudly, not hang
            self._send_error(500, f"fake reply raised {exc!r}")
            return
        if not stream:
            self._send_json(200, message)
            self.fake._mark_completed(body)
            return
        finished = self._stream(message, fault, fault_kind)
        if finished and fault_kind in (None, "slow"):
            self.fake._mark_completed(body)

    # -- Message Batches ---------------------------------------------------

    def _batch_fault(self, fault: Fault | None) -> bool:
        """Apply a queued fault to a batches request; True when it answered (or dropped) it."""
        if fault is None:
            return False
        kind = fault[0]
        if kind == "status":
            self._send_error(fault[1], f"injected {fault[1]}", fault[2] if len(fault) > 2 else {})
            return True
        if kind == "slow":
            time.sleep(fault[1])
            return False
        if kind == "stream_error":
            self._send_error(_STATUS_FOR_TYPE.get(fault[1], 500), f"injected {fault[1]}", error_type=fault[1])
            return True
        if kind == "cut":
            return False  # the request is served, and the connection closed before the answer
        self._drop()
        return True

    def _batches_post(self, path: str, body: Any, cut: bool = False) -> None:
        parts = path.rstrip("/").split("/")  # ['', 'v1', 'messages', 'batches', id, 'cancel']
        if len(parts) == 4:
            problem = _batch_problem(body)
            if problem:
                self._send_error(400, problem)
                return
            batch = self.fake._create_batch(body["requests"])
            if cut:
                self._drop()  # created, but the answer is lost on the way
                return
            self._send_json(200, batch.body(self.fake.base_url))
            return
        if len(parts) == 6 and parts[5] == "cancel":
            batch = self.fake._batch(parts[4])
            if batch is None:
                self._send_error(404, f"batch {parts[4]} not found", error_type="not_found_error")
                return
            with self.fake._lock:
                canceling = batch.ended_at is None
                if canceling and batch.cancel_at is None:
                    batch.cancel_at = time.time()
            answer = batch.body(self.fake.base_url)
            if canceling:
                # The API answers "canceling"; the batch has ended by the next look (held or not).
                answer["processing_status"] = "canceling"
                self.fake._end_batch(batch, "canceled")
            self._send_json(200, answer)
            return
        self._send_error(404, f"not found: POST {path}")

    def _batches_get(self, path: str) -> None:
        parts = path.rstrip("/").split("/")
        if len(parts) == 4:
            self._send_json(200, self._batch_page())
            return
        batch = self.fake._batch(parts[4]) if len(parts) >= 5 else None
        if batch is None:
            self._send_error(404, f"batch {parts[4] if len(parts) > 4 else ''} not found", error_type="not_found_error")
            return
        if len(parts) == 5:
            self._send_json(200, batch.body(self.fake.base_url))
            return
        if len(parts) == 6 and parts[5] == "results":
            if batch.ended_at is None:
                self._send_error(400, f"batch {batch.id} is still processing; results are available once it ends")
                return
            if batch.archived_at is not None:
                self._send_error(404, f"batch {batch.id}'s results are no longer available", error_type="not_found_error")
                return
            data = "".join(json.dumps(r) + "\n" for r in batch.results).encode()
            self.send_response(200)
            self.send_header("content-type", "application/binary")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", self._request_id())
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return
        self._send_error(404, f"not found: GET {path}")

    def _batch_page(self) -> dict[str, Any]:
        """One page of the batch list, newest first, with ``limit``, ``after_id`` and ``before_id``."""
        query = dict(parse_qsl(self.path.split("?", 1)[1])) if "?" in self.path else {}
        limit = max(1, min(int(query.get("limit") or 20), 1000))
        with self.fake._lock:
            ids = list(reversed(self.fake.batches))
        if query.get("after_id") in ids:
            ids = ids[ids.index(query["after_id"]) + 1 :]
        elif query.get("before_id") in ids:
            ids = ids[: ids.index(query["before_id"])][-limit:]
        page = ids[:limit]
        data = [self.fake._batch(i).body(self.fake.base_url) for i in page]  # type: ignore[union-attr]
        return {"data": data, "has_more": len(ids) > len(page), "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None}

    # -- helpers -----------------------------------------------------------

    def _read_and_record(self, faultable: bool) -> tuple[RecordedRequest, Fault | None]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        recorded = RecordedRequest(
            method=self.command,
            path=self.path.split("?", 1)[0],
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        self._recorded = recorded
        return recorded, self.fake._record(recorded, faultable)

    def _authorised(self) -> bool:
        key = self.headers.get("x-api-key")
        auth = self.headers.get("authorization") or ""
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key:
            self._send_error(401, "missing credentials: send x-api-key or Authorization: Bearer")
            return False
        if self.fake.api_key is not None and key != self.fake.api_key:
            # http.server decodes header bytes as Latin-1: a UTF-8 key comes back as mojibake.
            echoed = f": {key} (Authorization: {auth})" if self.fake.echo_credentials else ""
            self._send_error(401, f"invalid x-api-key{echoed}")
            return False
        return True

    def _request_id(self) -> str:
        request_id = f"req_fake_{self.fake._next_id():06d}"
        self._recorded.request_id = request_id
        return request_id

    def _send_json(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status, _reason(status))
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", request_id or self._request_id())
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        error_type: str | None = None,
    ) -> None:
        request_id = self._request_id()
        error = {"type": error_type or ERROR_TYPES.get(status, "api_error"), "message": message}
        payload = {"type": "error", "error": error, "request_id": request_id}
        self._send_json(status, payload, headers, request_id)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, kind: str, payload: dict[str, Any]) -> None:
        self._chunk(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())

    def _stream(self, message: dict[str, Any], fault: Fault | None, kind: str | None) -> bool:
        """Send ``message`` as SSE frames; returns False when the client went away."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self._request_id())
        self.end_headers()
        usage = message["usage"]
        text = message["content"][0]["text"]
        step = self.fake.delta_chars
        pieces = [text[i : i + step] for i in range(0, len(text), step)]
        try:
            start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
            start["usage"] = {**usage, "output_tokens": 1}
            self._event("message_start", {"type": "message_start", "message": start})
            self._event("ping", {"type": "ping"})
            self._event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            for i, piece in enumerate(pieces):
                if i and self.fake.delta_delay:
                    time.sleep(self.fake.delta_delay)
                self._event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
                if kind in ("stream_error", "cut"):
                    break
            if kind == "cut":
                self._drop()
                return False
            if kind == "stream_error":
                error_type = fault[1] if fault else "api_error"
                self._event(
                    "error",
                    {"type": "error", "error": {"type": error_type, "message": f"injected {error_type}"}},
                )
                self._chunk(b"")
                return True
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
                    # Usage on message_delta is cumulative, as the real API sends it, but
                    # without the split of cache writes (message_start carries that).
                    "usage": {k: v for k, v in usage.items() if k != "cache_creation"},
                },
            )
            self._event("message_stop", {"type": "message_stop"})
            self._chunk(b"")
        except OSError:
            self.close_connection = True
            return False
        return True


def _invalid(body: dict[str, Any], api_version: str) -> str | None:
    if api_version >= SAMPLING_REMOVED_IN:
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                return f"{name}: Extra inputs are not permitted"
    if not body.get("model"):
        return "model: field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be 'user' or 'assistant'"
    return None


def _reason(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, for benchmarks that want the fake in its own process
    (in-process, it shares the GIL with the client under test)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delta-delay", type=float, default=0.0, help="seconds between text deltas")
    parser.add_argument("--delta-chars", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-statuses", default="429,529", help="comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server = FakeAnthropic(delta_delay=args.delta_delay, delta_chars=args.delta_chars, port=args.port)
    with server:
        if args.fault_rate:
            statuses = [int(s) for s in args.fault_statuses.split(",") if s]
            server.fault_rate(args.fault_rate, statuses=statuses, seed=args.seed)
        print(server.base_url, flush=True)  # the first line is the URL to use
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
