"""Stand-ins for the SDK's streams, so a wrapped call is traced however its answer is read.

``create(stream=True)`` gives a `TracedStream` of raw events; ``messages.stream(...)``
gives a `TracedStreamManager` whose ``with`` yields a `TracedMessageStream`. Each
passes every event to its `_Call` and writes the row at ``message_stop``, or when
the stream fails, is closed or is dropped early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._wrapcall import _Call, sending


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

    def __repr__(self) -> str:
        return f"<traced {type(self._target).__name__}>"


# -- create(stream=True) -----------------------------------------------------------------------


class _EventStream(_Delegate):
    """What the sync and async stand-ins of a raw event stream share: how each event,
    the end, a failure, a close and a drop reach the call."""

    __slots__ = ("_call",)
    _own = frozenset({"_target", "_call"})

    def __init__(self, stream: Any, call: _Call) -> None:
        self._target = stream
        self._call = call

    def _took(self, event: Any) -> Any:
        self._call.observe(event)
        if self._call.stopped:
            self._call.stream_ended()
        return event

    def _ran_out(self) -> None:
        self._call.stream_ended(request_id=_request_id(self._target))

    def _failed(self, exc: BaseException) -> None:
        self._call.fail(exc, partial=True)

    def _closed(self) -> None:
        self._call.stream_ended(request_id=_request_id(self._target), why="the stream was closed")

    def __del__(self) -> None:
        call = getattr(self, "_call", None)
        if call is not None and not call.done:
            call.stream_ended(request_id=_request_id(getattr(self, "_target", None)),
                              why="the stream was dropped unread")


class TracedStream(_EventStream):
    """The SDK's ``Stream`` of raw events, yielding them unchanged; the row is written
    at ``message_stop``, or when the stream fails, is closed or is dropped early."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            event = self._target.__next__()
        except StopIteration:
            self._ran_out()
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self._took(event)

    def close(self) -> None:
        """Close the response; a stream closed before ``message_stop`` is an error row."""
        try:
            self._target.close()
        finally:
            self._closed()

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncTracedStream(_EventStream):
    """The SDK's ``AsyncStream`` of raw events, traced like ``TracedStream``."""

    __slots__ = ()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            event = await self._target.__anext__()
        except StopAsyncIteration:
            self._ran_out()
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self._took(event)

    async def close(self) -> None:
        """Close the response; a stream closed before ``message_stop`` is an error row."""
        try:
            await self._target.close()
        finally:
            self._closed()

    async def __aenter__(self) -> AsyncTracedStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _request_id(stream: Any) -> str | None:
    try:
        return stream.response.headers.get("request-id")
    except Exception:  # noqa: BLE001 - a stand-in response may have no headers
        return None


# -- messages.stream(...) ------------------------------------------------------------------------


class _StreamManager:
    """What the sync and async stand-ins of ``messages.stream(...)`` share."""

    __slots__ = ("_manager", "_call", "_stream", "_make")

    def __init__(self, manager: Any, call: _Call, make: Any = None) -> None:
        self._manager = manager
        self._call = call
        self._stream: _MessageStream | None = None
        self._make = make
        """Makes the SDK's manager at ``with`` (after a gateway admitted the call), when ``manager`` is None."""

    def _entered(self, stream: Any, cls: type[_MessageStream]) -> Any:
        self._stream = cls(stream, self._call)
        return self._stream

    def _left(self, exc: BaseException | None) -> None:
        if self._stream is not None:
            self._stream._ended(exc)


class TracedStreamManager(_StreamManager):
    """What ``messages.stream(...)`` returns: ``with`` it to get a ``TracedMessageStream``."""

    __slots__ = ()

    def __enter__(self) -> TracedMessageStream:
        self._call.begin()
        if self._manager is None:
            self._manager = self._make()  # a gateway's refusal is written by the call and raised here
        try:
            with sending(self._call):  # the request (and the SDK's retries) go out here
                stream = self._manager.__enter__()
        except BaseException as exc:
            self._call.fail(exc)
            raise
        return self._entered(stream, TracedMessageStream)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return self._manager.__exit__(exc_type, exc, tb)
        finally:
            self._left(exc)


class AsyncTracedStreamManager(_StreamManager):
    """What an async client's ``messages.stream(...)`` returns: ``async with`` it."""

    __slots__ = ()

    async def __aenter__(self) -> AsyncTracedMessageStream:
        self._call.begin()
        if self._manager is None:
            self._manager = await self._make()  # a gateway's refusal is written by the call and raised here
        try:
            with sending(self._call):  # the request (and the SDK's retries) go out here
                stream = await self._manager.__aenter__()
        except BaseException as exc:
            self._call.fail(exc)
            raise
        return self._entered(stream, AsyncTracedMessageStream)

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return await self._manager.__aexit__(exc_type, exc, tb)
        finally:
            self._left(exc)


class _MessageStream(_Delegate):
    """What the sync and async stand-ins of a ``MessageStream`` share: every event goes
    past the call (``_observed``), ``text_stream`` reads from the same events."""

    __slots__ = ("_call", "_events", "text_stream")
    _own = frozenset({"_target", "_call", "_events", "text_stream"})

    def __init__(self, stream: Any, call: _Call) -> None:
        self._target = stream
        self._call = call
        self._events = self._observed()
        self.text_stream = self._texts()

    def _observed(self) -> Any:
        raise NotImplementedError

    def _texts(self) -> Any:
        raise NotImplementedError

    def _ended(self, exc: BaseException | None) -> None:
        self._call.stream_ended(_snapshot(self._target), exc, _request_id(self._target),
                                why="the stream was left")


def _is_text(event: Any) -> bool:
    return event.type == "content_block_delta" and event.delta.type == "text_delta"


class TracedMessageStream(_MessageStream):
    """The SDK's ``MessageStream``, with every way of reading it going past the tracer.

    ``text_stream``, iteration, ``get_final_message()``, ``get_final_text()`` and
    ``until_done()`` behave as the SDK's; other attributes are the SDK stream's.
    """

    __slots__ = ()

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
            if _is_text(event):
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


class AsyncTracedMessageStream(_MessageStream):
    """The SDK's ``AsyncMessageStream``, traced like ``TracedMessageStream``."""

    __slots__ = ()

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
            if _is_text(event):
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


def _snapshot(stream: Any) -> Any:
    """The message a ``MessageStream`` has accumulated, or None before ``message_start``."""
    try:
        return stream.current_message_snapshot
    except AssertionError:  # the SDK asserts a snapshot exists
        return None
