"""One wrapped call: its timing, what a stream has delivered, and the trace row it writes.

Used by `providers.wrap` (the client stand-in) and `providers._wrapstreams`
(the stream stand-ins). Rows go through ``Tracer.record_call``; writing one
never breaks the app's call (a failure to record is a `TraceNotWritten` warning).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import traces
from ..errors import WorkbenchError
from ..tracing import current_span
from ._redact import Redactor, scrubbed
from .anthropic import _provider_error, completion_of, usage_of
from .base import Completion, Message, Request, Usage

if TYPE_CHECKING:
    from ..tracing import Tracer

PROVIDER = "anthropic"


class IncompleteStream(WorkbenchError):
    """A stream that ended before ``message_stop``: closed early, dropped or cut.

    Only recorded as a trace's ``error_type``, never raised: the caller sees
    whatever the SDK did (nothing, when the caller stopped reading).
    """

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class TraceNotWritten(UserWarning):
    """A wrapped call succeeded or failed as usual, but its trace row could not be written."""


# -- counting the SDK's attempts ------------------------------------------------------------------
# The SDK retries inside one create(); an httpx event hook on the client's HTTP client
# sees every attempt. The call being made is found through a context variable, set only
# while the wrapped method runs, so calls in other threads or tasks (and the app's own
# untraced calls on the same client) are not counted.

_sending: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("workbench_wrapped_call", default=None)


def _on_request(request: Any) -> None:
    call = _sending.get()
    if call is not None:
        call.sent()


def _on_response(response: Any) -> None:
    call = _sending.get()
    if call is not None:
        call.responded()


async def _on_request_async(request: Any) -> None:
    _on_request(request)


async def _on_response_async(response: Any) -> None:
    _on_response(response)


def count_attempts(client: Any, is_async: bool) -> bool:
    """Hook the client's HTTP client so wrapped calls count their attempts; False when it has none.

    The hooks stay on the app's client (and on copies that share its HTTP client);
    outside a wrapped call they do nothing.
    """
    hooks = getattr(getattr(client, "_client", None), "event_hooks", None)
    if not isinstance(hooks, dict) or not isinstance(hooks.get("request"), list) or not isinstance(hooks.get("response"), list):
        return False
    on_request, on_response = (_on_request_async, _on_response_async) if is_async else (_on_request, _on_response)
    if on_request not in hooks["request"]:
        hooks["request"].append(on_request)
    if on_response not in hooks["response"]:
        hooks["response"].append(on_response)
    return True


@contextlib.contextmanager
def sending(call: _Call) -> Iterator[None]:
    """Around the SDK method that sends ``call``'s request (and its retries)."""
    token = _sending.set(call)
    try:
        yield
    finally:
        _sending.reset(token)


class _Call:
    """Timing, what a stream has delivered so far, and the one row it writes.

    With ``counted`` (the client's HTTP client is hooked) latency and time to
    first token run from the sending of the attempt that answered, as on the
    provider path; the attempts and the waits between them go on the row.
    """

    __slots__ = (
        "tracer", "request", "redact", "parent", "started", "t0", "first", "ended", "parts",
        "model", "message_id", "stop_reason", "input_tokens", "output_tokens", "cache_read",
        "cache_write", "cache_write_1h", "stopped", "error", "done", "counted", "attempts",
        "waited", "answered_at", "gate",
    )

    def __init__(self, tracer: Tracer, request: Request, redact: Redactor, counted: bool = False) -> None:
        self.tracer = tracer
        self.request = request
        self.redact = redact
        self.counted = counted
        self.attempts = 0
        self.waited = 0.0
        self.answered_at: float | None = None
        self.first: float | None = None
        self.ended: float | None = None
        self.parts: list[str] = []
        self.model: str | None = None
        self.message_id: str | None = None
        self.stop_reason: str | None = None
        self.input_tokens = self.output_tokens = self.cache_read = self.cache_write = self.cache_write_1h = 0
        self.stopped = False
        self.error: BaseException | None = None
        self.done = False
        self.gate: Any = None
        """A gateway's ``StreamTicket`` for a stream it admitted: settled when the row is written."""
        self.begin()

    def begin(self) -> None:
        """Start the clock (again: a stream manager's request is sent at ``__enter__``)."""
        self.parent = current_span()
        self.started = time.time()
        self.t0 = time.perf_counter()

    def sent(self) -> None:
        """An attempt is being sent (the HTTP request hook): latency starts again here."""
        now = time.perf_counter()
        if self.attempts:
            # A retry: from the failed attempt's answer (or its sending, when the
            # connection failed without one) to now, the SDK was waiting.
            self.waited += now - (self.answered_at if self.answered_at is not None else self.t0)
        self.attempts += 1
        self.t0 = now
        self.answered_at = None

    def responded(self) -> None:
        """The attempt's response headers arrived (the HTTP response hook)."""
        self.answered_at = time.perf_counter()

    def ms(self, at: float | None) -> float | None:
        return None if at is None else (at - self.t0) * 1000

    # -- streams -------------------------------------------------------------------------

    def observe(self, event: Any) -> None:
        """Take what a raw or ``MessageStream`` event tells about the answer."""
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                if self.first is None:
                    self.first = time.perf_counter()
                self.parts.append(delta.text)
        elif kind == "message_start":
            message = event.message
            self.model = message.model
            self.message_id = message.id
            self._take_usage(message.usage, initial=True)
        elif kind == "message_delta":
            self.stop_reason = getattr(event.delta, "stop_reason", None) or self.stop_reason
            self._take_usage(event.usage, initial=False)
        elif kind == "message_stop":
            self.ended = time.perf_counter()
            self.stopped = True

    def _take_usage(self, usage: Any, *, initial: bool) -> None:
        if usage is None:
            return
        if initial:
            # message_start carries the cache writes split by lifetime; message_delta never does.
            start = usage_of(usage)
            self.input_tokens, self.output_tokens = start.input_tokens, start.output_tokens
            self.cache_read, self.cache_write = start.cache_read_tokens, start.cache_write_tokens
            self.cache_write_1h = start.cache_write_1h_tokens
            return
        # message_delta usage is cumulative; fields it leaves None keep message_start's values.
        for attr, field in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_read", "cache_read_input_tokens"),
            ("cache_write", "cache_creation_input_tokens"),
        ):
            value = getattr(usage, field, None)
            if value is not None:
                setattr(self, attr, value)
        self.cache_write_1h = min(self.cache_write_1h, self.cache_write)

    def stream_ended(self, snapshot: Any = None, exc: BaseException | None = None,
                     request_id: str | None = None, why: str = "the stream ended") -> None:
        """Write the row of a stream: ok after ``message_stop``, else an error with what arrived."""
        if self.done:
            return
        if self.stopped:
            latency = self.ms(self.ended)
            if snapshot is not None:
                completion = _completion(snapshot, latency or 0.0, self.ms(self.first))
            else:
                completion = Completion(
                    text="".join(self.parts),
                    model=self.model or self.request.model,
                    stop_reason=self.stop_reason,
                    usage=Usage(self.input_tokens, self.output_tokens, self.cache_read, self.cache_write,
                                self.cache_write_1h),
                    latency_ms=latency or 0.0,
                    ttft_ms=self.ms(self.first),
                    request_id=self.message_id,
                    provider=PROVIDER,
                )
            self._write(completion, None)
            return
        error = self.error or (exc if isinstance(exc, Exception) and _provider_error(exc) else None)
        if error is None:
            error = IncompleteStream(f"anthropic: {why} before message_stop", request_id)
        self.fail(error, partial=True)

    # -- one-shot calls ------------------------------------------------------------------

    def answered(self, message: Any) -> None:
        """Write the row of a non-streamed answer."""
        latency = self.ms(time.perf_counter()) or 0.0
        if self.done:
            return
        try:
            completion = _completion(message, latency, None)
        except Exception as exc:  # noqa: BLE001 - an odd response must not break the app's call
            _warn(exc)
            return
        self._write(completion, None)

    def fail(self, exc: BaseException, *, partial: bool = False) -> None:
        """Write an error row; the caller re-raises the original exception."""
        if self.done:
            return
        error: BaseException = exc
        if isinstance(exc, Exception) and not isinstance(exc, WorkbenchError):
            error = _provider_error(exc) or exc
            note = getattr(exc, "note", None)  # a gateway's decisions on the SDK's exception
            if note is not None and error is not exc:
                error.note = note  # type: ignore[attr-defined]
        if partial and (self.parts or self.message_id):
            self.request = dataclasses.replace(self.request, metadata={**self.request.metadata, "partial": {
                "output": traces.clip("".join(self.parts)),
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_read_tokens": self.cache_read,
                "cache_write_tokens": self.cache_write,
                "cache_write_1h_tokens": self.cache_write_1h,
                "ttft_ms": self.ms(self.first),
                "message_id": self.message_id,
            }})
        self._write(None, scrubbed(error, self.redact))

    def _write(self, completion: Completion | None, error: BaseException | None) -> None:
        self.done = True
        try:
            if self.gate is not None:
                completion = self.gate.finish(completion, error, self.input_tokens + self.output_tokens)
            self.tracer.record_call(
                PROVIDER, self.request, completion, error, attempts=self.attempts if self.counted else None,
                started=self.started, parent=self.parent, context={}, waited_s=self.waited,
                wall_ms=self.ms(time.perf_counter()),
            )
        except Exception as exc:  # noqa: BLE001 - tracing must never break the app's call
            _warn(exc)


def _warn(exc: BaseException) -> None:
    warnings.warn(f"workbench: a wrapped anthropic call was not traced: {exc!r}", TraceNotWritten, stacklevel=3)


def _completion(message: Any, latency_ms: float, ttft_ms: float | None) -> Completion:
    """A Completion from an SDK ``Message`` (a response or a stream's final message)."""
    return completion_of(message, latency_ms, ttft_ms)


# -- what the trace says the request was -----------------------------------------------------


def _request_of(kwargs: dict[str, Any], method: str) -> Request:
    """The request as the trace shows it; never raises (a row is not worth a failed call)."""
    messages = kwargs.get("messages")
    if messages is not None and not isinstance(messages, (list, tuple)):
        # An iterator can be read once: read it here and hand the SDK the list.
        messages = kwargs["messages"] = list(messages)
    model = str(kwargs.get("model"))
    metadata: dict[str, Any] = {"sdk_method": method}
    if kwargs.get("stream") and method == "messages.create":
        metadata["stream"] = True
    max_tokens = kwargs.get("max_tokens")
    stop = kwargs.get("stop_sequences")
    params: dict[str, Any] = {
        "system": _flat_text(kwargs.get("system")) or None,
        "stop": [s for s in stop if isinstance(s, str)] if isinstance(stop, (list, tuple)) else None,
        "metadata": metadata,
    }
    if isinstance(max_tokens, int):
        params["max_tokens"] = max_tokens
    temperature = kwargs.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        params["temperature"] = float(temperature)
    try:
        turns = [{"role": _field(m, "role", "user"), "content": _field(m, "content", None) or ""}
                 for m in messages or ()]
        return Request.of(model, turns, **params)
    except Exception as exc:  # noqa: BLE001 - unreadable messages still get a row
        note = f"<messages not readable for the trace: {type(exc).__name__}>"
        return Request(model=model, messages=(Message("user", note),), **{**params, "stop": ()})


def _field(item: Any, name: str, default: Any) -> Any:
    if isinstance(item, dict):
        return item.get(name, default)
    return getattr(item, name, default)


def _flat_text(system: Any) -> str:
    """A system prompt given as a string or as text blocks (with cache_control), as text."""
    if isinstance(system, str):
        return system
    if not isinstance(system, (list, tuple)):
        return ""  # omitted (the SDK's ``omit`` / ``NOT_GIVEN``) or unreadable
    texts = []
    for block in system:
        text = _field(block, "text", None)
        if isinstance(text, str):
            texts.append(text)
    return "\n".join(texts)
