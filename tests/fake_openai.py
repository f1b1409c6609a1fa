"""A local HTTP server that speaks enough of the OpenAI Chat Completions API for tests.

Standard library only, like ``fake_anthropic`` (whose threaded server, fault
checks and reason phrases it shares)::

    with FakeOpenAI() as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")   # ends in /v1
        server.queue_faults([("status", 429), ("drop",)])

Endpoint: ``POST /v1/chat/completions`` (JSON, or SSE ``data:`` frames ending in
``data: [DONE]`` when ``"stream": true``; usage arrives in a last chunk with empty
``choices`` only with ``stream_options.include_usage``). Answers are "Echo: " + the
last user message; ``max_tokens`` cuts them (``finish_reason: length``). Usage counts
about four characters a token; ``server.cached_tokens`` reports that many prompt
tokens as cached (inside ``prompt_tokens``, as OpenAI does).

Faults, one per request in arrival order (``queue_faults``): ``("status", code[, headers])``,
``("slow", seconds)``, ``("drop",)``, ``("stream_error", type)`` (an error event inside
the stream: the SDK raises a plain ``APIError``), ``("cut",)`` (close mid-stream).
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

try:
    from .fake_anthropic import _check_fault, _reason, _Server
except ImportError:  # run as a script or imported with tests/ on sys.path
    from fake_anthropic import _check_fault, _reason, _Server

__all__ = ["FakeOpenAI"]

ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               429: "rate_limit_exceeded", 500: "server_error", 503: "server_error"}


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


class FakeOpenAI:
    """A threaded fake of the OpenAI Chat Completions API bound to 127.0.0.1."""

    def __init__(self, *, model: str | None = None, port: int = 0) -> None:
        self.model = model
        self.cached_tokens = 0
        self.sends_usage = True
        """False: ignore ``stream_options.include_usage``, as many local servers do."""
        self.requests: list[dict[str, Any]] = []
        self.completed = 0
        self._faults: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._counter = 0
        self._httpd: _Server | None = None
        self._port = port
        self._sockets: set[socket.socket] = set()

    def start(self) -> FakeOpenAI:
        httpd = _Server(("127.0.0.1", self._port), _handler(self))
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            for sock in list(self._sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the SDK needs the ``/v1``."""
        assert self._httpd is not None, "FakeOpenAI is not running; use it as a context manager"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def queue_faults(self, faults: Iterable[tuple[Any, ...]]) -> None:
        checked = [_check_fault(f) for f in faults]
        with self._lock:
            self._faults.extend(checked)

    def _next(self, body: Any) -> tuple[int, tuple[Any, ...] | None]:
        with self._lock:
            self.requests.append(body)
            self._counter += 1
            return self._counter, (self._faults.popleft() if self._faults else None)

    def answer(self, body: dict[str, Any], n: int) -> dict[str, Any]:
        messages = body.get("messages") or []
        last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
        text = "Echo: " + str(last)[:200]
        finish = "stop"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and _tokens(len(text)) > max_tokens:
            text, finish = text[: max_tokens * 4], "length"
        prompt = _tokens(sum(len(str(m.get("content") or "")) for m in messages))
        cached = min(self.cached_tokens, prompt)
        return {
            "id": f"chatcmpl-fake{n:06d}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model or body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": max(1, _tokens(len(text))),
                      "total_tokens": prompt + max(1, _tokens(len(text))),
                      "prompt_tokens_details": {"cached_tokens": cached}},
        }


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._sockets.add(self.connection)

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                with fake._lock:
                    fake._sockets.discard(self.connection)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.loads(raw) if raw else {}
            if self.path.split("?")[0] != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"not found: {self.path}", "type": "invalid_request_error"}})
                return
            n, fault = fake._next(body)
            if not (self.headers.get("authorization") or "").lower().startswith("bearer "):
                self._json(401, {"error": {"message": "missing key", "type": "invalid_request_error"}})
                return
            kind = fault[0] if fault else None
            if kind == "status":
                code = fault[1]
                self._json(code, {"error": {"message": f"injected {code}", "type": ERROR_TYPES.get(code, "server_error"),
                                            "code": None}}, fault[2] if len(fault) > 2 else {})
                return
            if kind == "slow":
                time.sleep(fault[1])
            stream = body.get("stream") is True
            if kind == "drop" or (kind == "cut" and not stream):
                self._drop()
                return
            message = fake.answer(body, n)
            if not stream:
                if kind == "stream_error":
                    self._json(500, {"error": {"message": "injected", "type": fault[1]}})
                    return
                self._json(200, message)
                with fake._lock:
                    fake.completed += 1
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-request-id", f"req_fake{n:06d}")
            self.end_headers()
            text = message["choices"][0]["message"]["content"]
            base = {"id": message["id"], "object": "chat.completion.chunk", "created": message["created"], "model": message["model"]}
            try:
                self._data({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
                for i in range(0, len(text), 8):
                    self._data({**base, "choices": [{"index": 0, "delta": {"content": text[i:i + 8]}, "finish_reason": None}]})
                    if kind in ("cut", "stream_error"):
                        break
                if kind == "cut":
                    self._drop()
                    return
                if kind == "stream_error":
                    self._data({"error": {"message": f"injected {fault[1]}", "type": fault[1], "code": None}})
                    self._chunk(b"")
                    return
                finish = message["choices"][0]["finish_reason"]
                self._data({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                if (body.get("stream_options") or {}).get("include_usage") and fake.sends_usage:
                    self._data({**base, "choices": [], "usage": message["usage"]})
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            except OSError:
                self.close_connection = True
                return
            with fake._lock:
                fake.completed += 1

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status, _reason(status))
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _data(self, payload: dict[str, Any]) -> None:
            self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

        def _drop(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    return Handler
