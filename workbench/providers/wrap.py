"""Trace the calls an app makes with its own ``anthropic`` client.

``bench.wrap(client)`` returns a stand-in for an ``anthropic.Anthropic`` or
``AsyncAnthropic`` whose ``messages.create`` (plain or ``stream=True``) and
``messages.stream`` write one trace row per call. Everything else is the
client's own: the caller gets the SDK's objects and the SDK's exceptions, and
the client keeps its retries, timeouts and headers. Attributes the stand-in
does not override (``count_tokens``, ``with_raw_response``, ``beta``, ...) are
the client's and are not traced.

Rows go through ``Tracer.record_call``: no extra network call, and writing a
row never breaks the app's call (a failure to record is a warning). The API key
is never recorded: no headers are read, and error text is scrubbed of the
client's key before it is stored.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .. import traces
from ..errors import ConfigError, ProviderError, WorkbenchError
from ..tracing import current_span
from .anthropic import _provider_error
from .base import Completion, Message, Request, Usage

if TYPE_CHECKING:
    from ..tracing import Tracer

__all__ = ["IncompleteStream", "wrap_client"]

PROVIDER = "anthropic"
_BEARER = re.compile(r"(?i)(bearer\s+|x-api-key\W{0,3}\s*)[^\s'\"\\,]+")


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


def wrap_client(client: Any, tracer: Tracer, gateway: Any = None) -> Any:
    """A traced stand-in for an ``anthropic.Anthropic`` or ``AsyncAnthropic`` client.

    Args:
        client: the app's client, used as configured (retries, timeouts, base URL).
        tracer: where the rows go (``bench.tracer``).
        gateway: a bound ``wb.gateway.Gateway`` whose caches, routes, guardrails and
            limits every non-streamed ``messages.create`` goes through.

    Raises:
        ConfigError: ``client`` has no ``messages.create``.
    """
    if isinstance(client, (TracedClient, AsyncTracedClient)):
        client = client.unwrapped
    messages = getattr(client, "messages", None)
    if messages is None or not callable(getattr(messages, "create", None)):
        raise ConfigError(
            f"bench.wrap needs an anthropic.Anthropic or anthropic.AsyncAnthropic client; got {type(client).__name__}"
        )
    cls = AsyncTracedClient if _is_async(client) else TracedClient
    wrapped = cls(client, tracer)
    wrapped._gateway = gateway
    return wrapped


def _is_async(client: Any) -> bool:
    if any(k.__name__ == "AsyncAPIClient" for k in type(client).__mro__):
        return True
    return inspect.iscoroutinefunction(inspect.unwrap(client.messages.create))


# -- the client and its messages resource -----------------------------------------------------


class _Delegate:
    """Forwards every attribute it does not define to ``self._target``."""

    __slots__ = ("_target",)
    _own: frozenset[str] = frozenset({"_target"})

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found on the wrapper; never recurse on our own slots
        # (copy and pickle look attributes up before __init__ has run).
        if name in self._own:
            raise AttributeError(name)
        return getattr(self._target, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self._target)))


class TracedClient(_Delegate):
    """An ``anthropic.Anthropic`` whose ``messages.create`` and ``messages.stream`` are traced."""

    __slots__ = ("_tracer", "_secrets", "messages", "_gateway")
    _own = frozenset({"_target", "_tracer", "_secrets", "messages", "_gateway"})

    def __init__(self, client: Any, tracer: Tracer) -> None:
        self._target = client
        self._tracer = tracer
        self._gateway: Any = None
        self._secrets = _secrets_of(client)
        self.messages = self._messages_class()(client.messages, self)

    def _messages_class(self) -> type:
        return TracedMessages

    @property
    def unwrapped(self) -> Any:
        """The client as given, untraced."""
        return self._target

    def with_options(self, **kwargs: Any) -> Any:
        """The client's ``with_options``, still traced."""
        return wrap_client(self._target.with_options(**kwargs), self._tracer, self._gateway)

    def copy(self, **kwargs: Any) -> Any:
        """The client's ``copy``, still traced."""
        return wrap_client(self._target.copy(**kwargs), self._tracer, self._gateway)

    def __enter__(self) -> TracedClient:
        self._target.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._target.__exit__(*exc)

    def __repr__(self) -> str:
        return f"<traced {type(self._target).__name__} client>"


class AsyncTracedClient(TracedClient):
    """An ``anthropic.AsyncAnthropic`` whose ``messages.create`` and ``messages.stream`` are traced."""

    __slots__ = ()

    def _messages_class(self) -> type:
        return AsyncTracedMessages

    def __enter__(self) -> Any:
        raise TypeError("use 'async with' with an async client")

    async def __aenter__(self) -> AsyncTracedClient:
        await self._target.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._target.__aexit__(*exc)


class TracedMessages(_Delegate):
    """``client.messages`` with ``create`` and ``stream`` traced."""

    __slots__ = ("_owner",)
    _own = frozenset({"_target", "_owner"})

    def __init__(self, messages: Any, owner: TracedClient) -> None:
        self._target = messages
        self._owner = owner

    def _call(self, kwargs: dict[str, Any], method: str) -> _Call:
        return _Call(self._owner._tracer, _request_of(kwargs, method), self._owner._secrets)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """``messages.create``; with ``stream=True`` the stream is traced as it is read."""
        stream = bool(kwargs.get("stream", False))
        call = self._call(kwargs, "messages.create")
        if self._owner._gateway is not None and not stream and not args:
            return _gated(call, self._owner._gateway, self._target.create, kwargs, False)
        try:
            result = self._target.create(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        if stream:
            return TracedStream(result, call)
        call.answered(result)
        return result

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        """``messages.stream``: a context manager; the row is written when it exits."""
        call = self._call(kwargs, "messages.stream")
        try:
            manager = self._target.stream(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return TracedStreamManager(manager, call)

    def __repr__(self) -> str:
        return f"<traced {type(self._target).__name__}>"


class AsyncTracedMessages(TracedMessages):
    """``client.messages`` of an async client with ``create`` and ``stream`` traced."""

    __slots__ = ()

    async def create(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """``await messages.create``; with ``stream=True`` the stream is traced as it is read."""
        stream = bool(kwargs.get("stream", False))
        call = self._call(kwargs, "messages.create")
        if self._owner._gateway is not None and not stream and not args:
            return await _gated(call, self._owner._gateway, self._target.create, kwargs, True)
        try:
            result = await self._target.create(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        if stream:
            return AsyncTracedStream(result, call)
        call.answered(result)
        return result

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        """``messages.stream``: an async context manager; the row is written when it exits."""
        call = self._call(kwargs, "messages.stream")
        try:
            manager = self._target.stream(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return AsyncTracedStreamManager(manager, call)


# -- one call's state and its row ------------------------------------------------------------


class _Call:
    """Timing, what a stream has delivered so far, and the one row it writes."""

    __slots__ = (
        "tracer", "request", "secrets", "parent", "started", "t0", "first", "ended", "parts",
        "model", "message_id", "stop_reason", "input_tokens", "output_tokens", "cache_read",
        "cache_write", "stopped", "error", "done",
    )

    def __init__(self, tracer: Tracer, request: Request, secrets: tuple[str, ...]) -> None:
        self.tracer = tracer
        self.request = request
        self.secrets = secrets
        self.first: float | None = None
        self.ended: float | None = None
        self.parts: list[str] = []
        self.model: str | None = None
        self.message_id: str | None = None
        self.stop_reason: str | None = None
        self.input_tokens = self.output_tokens = self.cache_read = self.cache_write = 0
        self.stopped = False
        self.error: BaseException | None = None
        self.done = False
        self.begin()

    def begin(self) -> None:
        """Start the clock (again: a stream manager's request is sent at ``__enter__``)."""
        self.parent = current_span()
        self.started = time.time()
        self.t0 = time.perf_counter()

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
            elif initial:
                setattr(self, attr, 0)

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
                    usage=Usage(self.input_tokens, self.output_tokens, self.cache_read, self.cache_write),
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
        if partial and (self.parts or self.message_id):
            self.request = dataclasses.replace(self.request, metadata={**self.request.metadata, "partial": {
                "output": traces.clip("".join(self.parts)),
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_read_tokens": self.cache_read,
                "cache_write_tokens": self.cache_write,
                "ttft_ms": self.ms(self.first),
                "message_id": self.message_id,
            }})
        self._write(None, _scrubbed(error, self.secrets))

    def _write(self, completion: Completion | None, error: BaseException | None) -> None:
        self.done = True
        try:
            self.tracer.record_call(
                PROVIDER, self.request, completion, error, attempts=None, started=self.started,
                parent=self.parent, context={}, wall_ms=self.ms(time.perf_counter()),
            )
        except Exception as exc:  # noqa: BLE001 - tracing must never break the app's call
            _warn(exc)


def _gated(call: _Call, gateway: Any, create: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
    """A non-streamed create through ``gateway`` (its caches, routes, guardrails, limits), traced.

    The gateway hook of ``bench.wrap(client, gateway=...)``: the gateway runs its
    layers around the client's own ``create`` and notes its decisions for the row.
    """

    def done(result: tuple[Any, Completion]) -> Any:
        call._write(result[1], None)
        return result[0]

    if is_async:
        async def run() -> Any:
            try:
                return done(await gateway.wrapped_create(call.request, create, kwargs, True))
            except BaseException as exc:
                call.fail(exc)
                raise

        return run()
    try:
        return done(gateway.wrapped_create(call.request, create, kwargs, False))
    except BaseException as exc:
        call.fail(exc)
        raise


def _warn(exc: BaseException) -> None:
    warnings.warn(f"workbench: a wrapped anthropic call was not traced: {exc!r}", TraceNotWritten, stacklevel=3)


def _completion(message: Any, latency_ms: float, ttft_ms: float | None) -> Completion:
    """A Completion from an SDK ``Message`` (a response or a stream's final message)."""
    usage = message.usage
    return Completion(
        text="".join(b.text for b in message.content if getattr(b, "type", None) == "text"),
        model=message.model,
        stop_reason=message.stop_reason,
        usage=Usage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_write_tokens=usage.cache_creation_input_tokens or 0,
        ),
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        request_id=message.id,
        provider=PROVIDER,
    )


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


# -- keeping the key out -----------------------------------------------------------------------


def _secrets_of(client: Any) -> tuple[str, ...]:
    found = []
    for name in ("api_key", "auth_token"):
        value = getattr(client, name, None)
        if isinstance(value, str) and len(value.strip()) >= 4:
            found += [value, value.strip(), repr(value)[1:-1]]
    return tuple(sorted(set(found), key=len, reverse=True))


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "<redacted>")
    return _BEARER.sub(r"\1<redacted>", text)


_standins: dict[str, type[Exception]] = {}


def _scrubbed(error: BaseException, secrets: tuple[str, ...]) -> BaseException:
    """``error``, or a copy of it whose text holds no key, for the trace only."""
    text = str(error)
    if _redact(text, secrets) == text:
        return error
    if isinstance(error, ProviderError):
        clean = copy.copy(error)
        clean.message = _redact(error.message, secrets)
        clean.args = (clean.message,)
        return clean
    name = type(error).__name__
    cls = _standins.get(name) or _standins.setdefault(name, type(name, (Exception,), {}))
    standin = cls(_redact(text, secrets))
    standin.request_id = getattr(error, "request_id", None)  # type: ignore[attr-defined]
    return standin


# -- create(stream=True) -----------------------------------------------------------------------


class TracedStream(_Delegate):
    """The SDK's ``Stream`` of raw events, yielding them unchanged; the row is written
    at ``message_stop``, or when the stream fails, is closed or is dropped early."""

    __slots__ = ("_call",)
    _own = frozenset({"_target", "_call"})

    def __init__(self, stream: Any, call: _Call) -> None:
        self._target = stream
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            event = self._target.__next__()
        except StopIteration:
            self._call.stream_ended(request_id=_request_id(self._target))
            raise
        except BaseException as exc:
            self._call.fail(exc, partial=True)
            raise
        self._call.observe(event)
        if self._call.stopped:
            self._call.stream_ended()
        return event

    def close(self) -> None:
        """Close the response; a stream closed before ``message_stop`` is an error row."""
        try:
            self._target.close()
        finally:
            self._call.stream_ended(request_id=_request_id(self._target), why="the stream was closed")

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        call = getattr(self, "_call", None)
        if call is not None and not call.done:
            call.stream_ended(request_id=_request_id(getattr(self, "_target", None)),
                              why="the stream was dropped unread")

    def __repr__(self) -> str:
        return f"<traced {type(self._target).__name__}>"


class AsyncTracedStream(_Delegate):
    """The SDK's ``AsyncStream`` of raw events, traced like ``TracedStream``."""

    __slots__ = ("_call",)
    _own = frozenset({"_target", "_call"})

    def __init__(self, stream: Any, call: _Call) -> None:
        self._target = stream
        self._call = call

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            event = await self._target.__anext__()
        except StopAsyncIteration:
            self._call.stream_ended(request_id=_request_id(self._target))
            raise
        except BaseException as exc:
            self._call.fail(exc, partial=True)
            raise
        self._call.observe(event)
        if self._call.stopped:
            self._call.stream_ended()
        return event

    async def close(self) -> None:
        """Close the response; a stream closed before ``message_stop`` is an error row."""
        try:
            await self._target.close()
        finally:
            self._call.stream_ended(request_id=_request_id(self._target), why="the stream was closed")

    async def __aenter__(self) -> AsyncTracedStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __del__(self) -> None:
        call = getattr(self, "_call", None)
        if call is not None and not call.done:
            call.stream_ended(request_id=_request_id(getattr(self, "_target", None)),
                              why="the stream was dropped unread")

    def __repr__(self) -> str:
        return f"<traced {type(self._target).__name__}>"


def _request_id(stream: Any) -> str | None:
    try:
        return stream.response.headers.get("request-id")
    except Exception:  # noqa: BLE001 - a stand-in response may have no headers
        return None


# -- messages.stream(...) ------------------------------------------------------------------------


class TracedStreamManager:
    """What ``messages.stream(...)`` returns: ``with`` it to get a ``TracedMessageStream``."""

    __slots__ = ("_manager", "_call", "_stream")

    def __init__(self, manager: Any, call: _Call) -> None:
        self._manager = manager
        self._call = call
        self._stream: TracedMessageStream | None = None

    def __enter__(self) -> TracedMessageStream:
        self._call.begin()
        try:
            stream = self._manager.__enter__()
        except BaseException as exc:
            self._call.fail(exc)
            raise
        self._stream = TracedMessageStream(stream, self._call)
        return self._stream

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return self._manager.__exit__(exc_type, exc, tb)
        finally:
            if self._stream is not None:
                self._stream._ended(exc)


class AsyncTracedStreamManager:
    """What an async client's ``messages.stream(...)`` returns: ``async with`` it."""

    __slots__ = ("_manager", "_call", "_stream")

    def __init__(self, manager: Any, call: _Call) -> None:
        self._manager = manager
        self._call = call
        self._stream: AsyncTracedMessageStream | None = None

    async def __aenter__(self) -> AsyncTracedMessageStream:
        self._call.begin()
        try:
            stream = await self._manager.__aenter__()
        except BaseException as exc:
            self._call.fail(exc)
            raise
        self._stream = AsyncTracedMessageStream(stream, self._call)
        return self._stream

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return await self._manager.__aexit__(exc_type, exc, tb)
        finally:
            if self._stream is not None:
                self._stream._ended(exc)


class TracedMessageStream(_Delegate):
    """The SDK's ``MessageStream``, with every way of reading it going past the tracer.

    ``text_stream``, iteration, ``get_final_message()``, ``get_final_text()`` and
    ``until_done()`` behave as the SDK's; other attributes are the SDK stream's.
    """

    __slots__ = ("_call", "_events", "text_stream")
    _own = frozenset({"_target", "_call", "_events", "text_stream"})

    def __init__(self, stream: Any, call: _Call) -> None:
        self._target = stream
        self._call = call
        self._events = self._observed()
        self.text_stream = self._texts()

    def _observed(self) -> Iterator[Any]:
        call = self._call
        try:
            for event in self._target:
                call.observe(event)
                yield event
        except GeneratorExit:
            raise
        except BaseException as exc:
            call.error = exc
            raise

    def _texts(self) -> Iterator[str]:
        for event in self._events:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                yield event.delta.text

    def __iter__(self) -> Iterator[Any]:
        return self._events

    def __next__(self) -> Any:
        return next(self._events)

    def until_done(self) -> None:
        for _ in self._events:
            pass

    def get_final_message(self) -> Any:
        self.until_done()
        return self._target.get_final_message()

    def get_final_text(self) -> str:
        self.until_done()
        return self._target.get_final_text()

    def __enter__(self) -> TracedMessageStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._target.close()

    def _ended(self, exc: BaseException | None) -> None:
        self._call.stream_ended(_snapshot(self._target), exc, _request_id(self._target),
                                why="the stream was left")

    def __repr__(self) -> str:
        return f"<traced {type(self._target).__name__}>"


class AsyncTracedMessageStream(_Delegate):
    """The SDK's ``AsyncMessageStream``, traced like ``TracedMessageStream``."""

    __slots__ = ("_call", "_events", "text_stream")
    _own = frozenset({"_target", "_call", "_events", "text_stream"})

    def __init__(self, stream: Any, call: _Call) -> None:
        self._target = stream
        self._call = call
        self._events = self._observed()
        self.text_stream = self._texts()

    async def _observed(self) -> AsyncIterator[Any]:
        call = self._call
        try:
            async for event in self._target:
                call.observe(event)
                yield event
        except GeneratorExit:
            raise
        except BaseException as exc:
            call.error = exc
            raise

    async def _texts(self) -> AsyncIterator[str]:
        async for event in self._events:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                yield event.delta.text

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events

    async def __anext__(self) -> Any:
        return await self._events.__anext__()

    async def until_done(self) -> None:
        async for _ in self._events:
            pass

    async def get_final_message(self) -> Any:
        await self.until_done()
        return await self._target.get_final_message()

    async def get_final_text(self) -> str:
        await self.until_done()
        return await self._target.get_final_text()

    async def __aenter__(self) -> AsyncTracedMessageStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._target.close()

    def _ended(self, exc: BaseException | None) -> None:
        self._call.stream_ended(_snapshot(self._target), exc, _request_id(self._target),
                                why="the stream was left")

    def __repr__(self) -> str:
        return f"<traced {type(self._target).__name__}>"


def _snapshot(stream: Any) -> Any:
    """The message a ``MessageStream`` has accumulated, or None before ``message_start``."""
    try:
        return stream.current_message_snapshot
    except AssertionError:  # the SDK asserts a snapshot exists
        return None
