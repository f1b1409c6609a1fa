"""Trace the calls an app makes with its own ``anthropic`` client.

``bench.wrap(client)`` returns a stand-in for an ``anthropic.Anthropic`` or
``AsyncAnthropic`` whose ``messages.create`` (plain or ``stream=True``) and
``messages.stream`` write one trace row per call. Everything else is the
client's own: the caller gets the SDK's objects and the SDK's exceptions, and
the client keeps its retries, timeouts and headers. Attributes the stand-in
does not override (``count_tokens``, ``with_raw_response``, ``beta``, ...) are
the client's and are not traced.

Rows go through ``Tracer.record_call``: no extra network call, and writing a
row never breaks the app's call (a failure to record is a warning). The SDK
retries on its own: an httpx event hook on the client's HTTP client counts the
attempts each call made, and latency runs from the sending of the attempt that
answered, as for calls through the provider. The API key
is never recorded: no headers are read, and error text is scrubbed of the
client's key (`_redact.Redactor`) before it is stored.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ._redact import Redactor, keys_of
from ._wrapcall import IncompleteStream, TraceNotWritten, _Call, _request_of, count_attempts, sending
from ._wrapstreams import (
    AsyncTracedStream,
    AsyncTracedStreamManager,
    TracedStream,
    TracedStreamManager,
    _Delegate,
)

if TYPE_CHECKING:
    from ..tracing import Tracer
    from .base import Completion

__all__ = ["IncompleteStream", "TraceNotWritten", "wrap_client"]


def wrap_client(client: Any, tracer: Tracer, gateway: Any = None) -> Any:
    """A traced stand-in for an ``anthropic.Anthropic`` or ``AsyncAnthropic`` client.

    Args:
        client: the app's client, used as configured (retries, timeouts, base URL).
        tracer: where the rows go (``bench.tracer``).
        gateway: a bound ``wb.gateway.Gateway``: every call gets its input guardrails,
            route and limits; a non-streamed ``create`` also its caches and fallbacks
            (the client in the chain's first place); streams are never cached nor
            failed over, and output guardrails only flag them.

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


class TracedClient(_Delegate):
    """An ``anthropic.Anthropic`` whose ``messages.create`` and ``messages.stream`` are traced."""

    __slots__ = ("_tracer", "_redact", "_counts", "messages", "_gateway")
    _own = frozenset({"_target", "_tracer", "_redact", "_counts", "messages", "_gateway"})
    _async = False

    def __init__(self, client: Any, tracer: Tracer) -> None:
        self._target = client
        self._tracer = tracer
        self._redact = Redactor(keys_of(client))
        self._counts = count_attempts(client, self._async)
        self._gateway: Any = None
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
    _async = True

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
        return _Call(self._owner._tracer, _request_of(kwargs, method), self._owner._redact, self._owner._counts)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """``messages.create``; with ``stream=True`` the stream is traced as it is read."""
        stream = bool(kwargs.get("stream", False))
        call = self._call(kwargs, "messages.create")
        gateway = self._owner._gateway
        if gateway is not None and not args:
            if not stream:
                return _gated(call, gateway, self._target.create, kwargs, False)
            kwargs = _admitted(call, gateway, kwargs)
        try:
            with sending(call):
                result = self._target.create(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        if stream:
            return TracedStream(result, call)
        call.answered(result)
        return result

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        """``messages.stream``: a context manager; the row is written when it exits.

        With a gateway, its input guardrails, route and limits run at ``with``.
        """
        call = self._call(kwargs, "messages.stream")
        gateway = self._owner._gateway
        if gateway is not None and not args:
            return TracedStreamManager(None, call, lambda: self._target.stream(**_admitted(call, gateway, kwargs)))
        try:
            manager = self._target.stream(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return TracedStreamManager(manager, call)


class AsyncTracedMessages(TracedMessages):
    """``client.messages`` of an async client with ``create`` and ``stream`` traced."""

    __slots__ = ()

    async def create(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """``await messages.create``; with ``stream=True`` the stream is traced as it is read."""
        stream = bool(kwargs.get("stream", False))
        call = self._call(kwargs, "messages.create")
        gateway = self._owner._gateway
        if gateway is not None and not args:
            if not stream:
                return await _gated(call, gateway, self._target.create, kwargs, True)
            kwargs = await _admitted_async(call, gateway.open_stream(call.request, kwargs, True))
        try:
            with sending(call):
                result = await self._target.create(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        if stream:
            return AsyncTracedStream(result, call)
        call.answered(result)
        return result

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        """``messages.stream``: an async context manager; the row is written when it exits.

        With a gateway, its input guardrails, route and limits run at ``async with``.
        """
        call = self._call(kwargs, "messages.stream")
        gateway = self._owner._gateway
        if gateway is not None and not args:
            async def open_manager() -> Any:
                sent = await _admitted_async(call, gateway.open_stream(call.request, kwargs, True))
                return self._target.stream(**sent)

            return AsyncTracedStreamManager(None, call, open_manager)
        try:
            manager = self._target.stream(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return AsyncTracedStreamManager(manager, call)


def _admitted(call: _Call, gateway: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments ``gateway`` lets a sync client's stream go out with; its ticket goes on
    the call, and a refusal is the call's error row."""
    try:
        sent, call.gate = gateway.open_stream(call.request, kwargs, False)
    except BaseException as exc:
        call.fail(exc)
        raise
    return sent


async def _admitted_async(call: _Call, opening: Any) -> dict[str, Any]:
    """``_admitted`` for an async client: a refusal is the call's error row."""
    try:
        kwargs, call.gate = await opening
    except BaseException as exc:
        call.fail(exc)
        raise
    return kwargs


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
                with sending(call):
                    result = await gateway.wrapped_create(call.request, create, kwargs, True)
            except BaseException as exc:
                call.fail(exc)
                raise
            return done(result)

        return run()
    try:
        with sending(call):
            result = gateway.wrapped_create(call.request, create, kwargs, False)
    except BaseException as exc:
        call.fail(exc)
        raise
    return done(result)
