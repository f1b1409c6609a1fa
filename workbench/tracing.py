"""Spans, the ``traced`` decorator and the traced model call.

A span's row goes to the store's background writer; the traced code never waits
on disk. Nesting follows ``contextvars``, so it works across threads started
with ``contextvars.copy_context`` and across asyncio tasks.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import traces
from ._canonical import dumps
from ._ids import new_id
from ._retry import DEFAULT_POLICY, RetryPolicy, complete_with_retries
from .errors import ProviderError, UnexpectedProviderError

if TYPE_CHECKING:
    from .pricing import Pricer
    from .providers.base import Completion, Provider, Request
    from .store import BatchWriter

F = TypeVar("F", bound=Callable[..., Any])
PREVIEW_CHARS = 2_000
"""Characters of a traced function's arguments and result kept in the trace."""

_current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("workbench_span", default=None)
"""(span id, trace id) of the innermost open span."""


def current_span() -> tuple[str, str] | None:
    """(span id, trace id) of the innermost open span, or None."""
    return _current.get()


def _preview(value: Any) -> str:
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break the traced call
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    text = text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"
    return traces.safe_text(text)  # a lone surrogate would lose the span's row


def _args_preview(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    if not args and not kwargs:
        return None
    parts = [_preview(a) for a in args] + [f"{k}={_preview(v)}" for k, v in kwargs.items()]
    return _preview(", ".join(parts))


@dataclass
class CallResult:
    """A traced model call."""

    text: str
    """The answer ('' when the call failed)."""
    trace_id: str
    """Id of the trace row."""
    status: str
    """``ok``, ``error``, ``cached`` (a gateway cache answered) or ``guardrail_triggered``."""
    cost_usd: float | None
    """None when the price is unknown (or the call failed before usage)."""
    attempts: int
    """Tries made, retries included."""
    completion: Completion | None = None
    """The provider's answer."""
    error: ProviderError | None = None
    """The last error, when status is ``error``."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usage(self) -> Any:
        return None if self.completion is None else self.completion.usage

    def __str__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        from . import _html

        c = self.completion
        meta = f"{self.status} · attempts {self.attempts}"
        if c is not None:
            meta += f" · {c.model} · {c.usage.input_tokens}+{c.usage.cache_read_tokens}r+{c.usage.cache_write_tokens}w in / {c.usage.output_tokens} out · {c.latency_ms:.0f} ms"
        meta += " · cost " + ("unknown" if self.cost_usd is None else f"${self.cost_usd:.6f}")
        body = _html.pre(self.text) if self.error is None else f"<pre>{_html.esc(self.error)}</pre>"
        return _html.root(f"<small>{_html.esc(meta)}</small>{body}")


class Tracer:
    """Writes spans and model-call traces to a store's writer."""

    def __init__(self, writer_factory: Callable[[], BatchWriter], pricer: Pricer) -> None:
        self._writer_factory = writer_factory
        self.pricer = pricer
        self._writer: BatchWriter | None = None
        self.sinks: list[Callable[[str, tuple[Any, ...]], None]] = []
        """Called with every ``(sql, row)`` written, after the writer has it (live OTel export).
        A sink must return at once: it runs on the traced call's path."""

    def add_sink(self, sink: Callable[[str, tuple[Any, ...]], None]) -> None:
        """Also hand every trace row to ``sink`` (e.g. `workbench.otel.LiveExport`)."""
        self.sinks.append(sink)

    def remove_sink(self, sink: Callable[[str, tuple[Any, ...]], None]) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def close(self) -> None:
        """Close every sink that can be closed (flushing what it holds)."""
        for sink in list(self.sinks):
            close = getattr(getattr(sink, "__self__", sink), "close", None)
            if close is not None:
                close()
        self.sinks.clear()

    @property
    def writer(self) -> BatchWriter:
        """The store's current writer, looked up again once the last one was closed."""
        writer = self._writer
        if writer is None or writer._closed:
            writer = self._writer = self._writer_factory()
        return writer

    # -- user spans --------------------------------------------------------------------------

    def traced(self, fn: F | None = None, *, name: str | None = None, capture: bool = True) -> Any:
        """Decorate a sync or async function so each call is a span.

        An exception is recorded as an error span and re-raised unchanged.
        ``capture=False`` keeps arguments and results out of the database.
        """

        tracer = self

        def decorate(func: F) -> F:
            span_name = name or getattr(func, "__qualname__", repr(func))
            sql = traces.SPAN_SQL
            iso = traces.iso_utc
            perf = time.perf_counter
            now = time.time
            current = _current
            sinks = self.sinks  # the list itself: sinks added later are seen

            def span_row(
                sid: str, tid: str, parent: tuple[str, str] | None, wall: float, t0: float,
                args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, exc: BaseException | None,
            ) -> tuple[Any, ...]:
                return (
                    sid, tid, parent and parent[0], span_name, iso(wall),
                    _args_preview(args, kwargs) if capture else None,
                    None if exc is not None or not capture or result is None else _preview(result),
                    (perf() - t0) * 1000,
                    "ok" if exc is None else "error",
                    None if exc is None else type(exc).__name__,
                    None if exc is None else _preview(str(exc)),
                )

            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    parent = current.get()
                    sid = new_id()
                    tid = sid if parent is None else parent[1]
                    token = current.set((sid, tid))
                    wall = now()
                    t0 = perf()
                    try:
                        result = await func(*args, **kwargs)
                    except BaseException as exc:
                        row = span_row(sid, tid, parent, wall, t0, args, kwargs, None, exc)
                        tracer.writer.put(sql, row)
                        if sinks:
                            _tee(sinks, sql, row)
                        raise
                    finally:
                        current.reset(token)
                    row = span_row(sid, tid, parent, wall, t0, args, kwargs, result, None)
                    tracer.writer.put(sql, row)
                    if sinks:
                        _tee(sinks, sql, row)
                    return result

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                parent = current.get()
                sid = new_id()
                tid = sid if parent is None else parent[1]
                token = current.set((sid, tid))
                wall = now()
                t0 = perf()
                try:
                    result = func(*args, **kwargs)
                except BaseException as exc:
                    row = span_row(sid, tid, parent, wall, t0, args, kwargs, None, exc)
                    tracer.writer.put(sql, row)
                    if sinks:
                        _tee(sinks, sql, row)
                    raise
                finally:
                    current.reset(token)
                # Looked up per call, not at decoration: the file may have been closed and opened again.
                row = span_row(sid, tid, parent, wall, t0, args, kwargs, result, None)
                tracer.writer.put(sql, row)
                if sinks:
                    _tee(sinks, sql, row)
                return result

            return wrapper  # type: ignore[return-value]

        return decorate(fn) if fn is not None else decorate

    def span(self, name: str, input: Any = None) -> Span:
        """``with bench.span("retrieve") as s: ...; s.output = docs``."""
        return Span(self, name, input)

    # -- model calls -------------------------------------------------------------------------

    async def call(
        self,
        provider: Provider,
        request: Request,
        *,
        parent: tuple[str, str] | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        context: dict[str, Any] | None = None,
        started: float | None = None,
        emit: Callable[[str, tuple[Any, ...]], None] | None = None,
    ) -> CallResult:
        """Complete ``request`` with retries and write one trace row, ok or error.

        ``started`` backdates the trace (simulated traffic); by default it is now.
        ``emit(sql, row)`` takes the row instead of the background writer (a caller
        that commits it itself, together with rows of its own).
        """
        sid = new_id()
        # Where the row goes is settled before the call is paid for (a read-only file refuses here).
        emit = emit or self.writer.put
        backdated = started is not None
        started = time.time() if started is None else started
        attempted = await complete_with_retries(provider, request, policy)
        return self.record_call(provider, request, attempted.completion, attempted.error,
                                attempts=attempted.attempts, started=started, sid=sid,
                                parent=parent, context=context,
                                waited_s=attempted.waited_s,
                                wall_ms=None if backdated else (time.time() - started) * 1000, emit=emit)

    def record_call(
        self,
        provider: Provider | str,
        request: Request,
        completion: Completion | None,
        error: BaseException | None,
        *,
        attempts: int | None,
        started: float,
        sid: str | None = None,
        parent: tuple[str, str] | None = None,
        context: dict[str, Any] | None = None,
        waited_s: float = 0.0,
        wall_ms: float | None = None,
        emit: Callable[[str, tuple[Any, ...]], None] | None = None,
        batch: bool = False,
    ) -> CallResult:
        """Write the trace row of one model call that already happened (``batch``: made
        through a batch engine, priced at its rate)."""
        sid = sid or new_id()
        ctx = dict(context or {})
        # A gateway (workbench.gateway) notes what it decided and what it really sent.
        note = completion.note if completion is not None else getattr(error, "note", None)
        if note is not None:
            request = note.request or request
            provider = note.provider or provider
            completion = completion or note.completion
            attempts = note.attempts or attempts
        meta = {k: v for k, v in request.metadata.items() if k not in ("prompt_name", "prompt_version")}
        meta.update(ctx.pop("metadata", None) or {})
        if note is not None and note.decisions:
            meta["gateway"] = note.decisions
        if waited_s:
            meta["retry_wait_s"] = round(waited_s, 3)
        provider_name = provider if isinstance(provider, str) else provider.name
        simulated = bool(getattr(provider, "simulated", False)) or provider_name == "simulated"
        cost = source = None
        status = "ok"
        if completion is not None and not completion.usage.reported:
            usage = None  # the provider said nothing: unknown tokens and cost, never zero
            latency = completion.latency_ms
            meta["usage"] = "not reported by the provider"
        elif completion is not None:
            cost, source = self.pricer.cost(request.model, completion.usage, note and note.price_provider, batch=batch)
            usage = completion.usage
            # The answering attempt's latency; time lost to retries is in metadata.retry_wait_s.
            latency = completion.latency_ms
        else:
            usage = None
            # As for an answer: from sending the failing attempt, when the provider timed it
            # (never the SDK's import and client set-up); else the call's wall time.
            latency = getattr(error, "latency_ms", None)
            latency = wall_ms if latency is None else latency
        if error is not None or completion is None:
            status = "error"
        if note is not None and note.status:
            status = note.status
        tags = ctx.pop("tags", None)
        values = dict(
            id=sid,
            trace_id=sid if parent is None else parent[1],
            parent_id=None if parent is None else parent[0],
            kind="llm",
            name=f"chat {request.model}",
            started_at=traces.iso_utc(started),
            provider=provider_name,
            simulated=int(simulated),
            model=request.model,
            resolved_model=None if completion is None else completion.model,
            prompt_name=request.metadata.get("prompt_name"),
            prompt_version=request.metadata.get("prompt_version"),
            input=traces.clip(request.prompt_text()),
            output=None if completion is None else traces.clip(completion.text),
            input_tokens=None if usage is None else usage.input_tokens,
            output_tokens=None if usage is None else usage.output_tokens,
            cache_read_tokens=None if usage is None else usage.cache_read_tokens,
            cache_write_tokens=None if usage is None else usage.cache_write_tokens,
            cache_write_1h_tokens=None if usage is None else usage.cache_write_1h_tokens,
            latency_ms=latency,
            ttft_ms=None if completion is None else completion.ttft_ms,
            cost_usd=cost,
            price_source=source,
            status=status,
            error_type=None if error is None else _error_type(error),
            error=None if error is None else str(error),
            attempts=attempts,
            stop_reason=None if completion is None else completion.stop_reason,
            request_id=(completion.request_id if completion is not None else getattr(error, "request_id", None)),
            tags_json=dumps(tags) if tags else None,
            metadata_json=dumps(meta) if meta else None,
        )
        for key in ("experiment_id", "variant", "item_id", "repeat", "user_id"):
            if key in ctx:
                values[key] = ctx.pop(key)
        if ctx:
            raise KeyError(f"unknown trace context keys: {', '.join(sorted(ctx))}")
        row = traces.row(**values)
        (emit or self.writer.put)(traces.INSERT_SQL, row)
        if self.sinks:
            _tee(self.sinks, traces.INSERT_SQL, row)
        return CallResult(
            text="" if completion is None or error is not None else completion.text,
            trace_id=sid,
            status=status,
            cost_usd=cost,
            attempts=attempts or 0,
            completion=completion,
            error=error if isinstance(error, ProviderError) else None,
        )


def _tee(sinks: list[Callable[[str, tuple[Any, ...]], None]], sql: str, row: tuple[Any, ...]) -> None:
    for sink in sinks:
        try:
            sink(sql, row)
        except Exception:  # noqa: BLE001 - an exporter's fault must never break the traced call
            pass


def _error_type(error: BaseException) -> str:
    """The class name a trace records: a custom provider's own exception, not our wrapper."""
    if isinstance(error, UnexpectedProviderError):
        return type(error.original).__name__
    return type(error).__name__


class Span:
    """A span opened with ``with``; set ``.output`` to record a result."""

    def __init__(self, tracer: Tracer, name: str, input: Any = None) -> None:
        self.tracer = tracer
        self.name = name
        self.input = input
        self.output: Any = None
        self.id = ""
        self.trace_id = ""

    def __enter__(self) -> Span:
        self._parent = _current.get()
        self.id = new_id()
        self.trace_id = self.id if self._parent is None else self._parent[1]
        self._token = _current.set((self.id, self.trace_id))
        self._wall = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _current.reset(self._token)
        row = (
            self.id, self.trace_id, self._parent and self._parent[0], self.name, traces.iso_utc(self._wall),
            None if self.input is None else _preview(self.input),
            None if self.output is None else _preview(self.output),
            (time.perf_counter() - self._t0) * 1000,
            "ok" if exc is None else "error",
            None if exc_type is None else exc_type.__name__,
            None if exc is None else _preview(str(exc)),
        )
        self.tracer.writer.put(traces.SPAN_SQL, row)
        if self.tracer.sinks:
            _tee(self.tracer.sinks, traces.SPAN_SQL, row)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
