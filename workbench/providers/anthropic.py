"""The Anthropic provider: one streamed Messages API call per ``complete``.

The SDK is imported only when the first call is made, so ``import workbench``
stays fast. The SDK's own retries are switched off (``max_retries=0``): the
caller's loop in ``workbench._retry`` retries, so every attempt is counted.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import sys
import time
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import (
    AuthenticationFailed,
    BadRequest,
    ConfigError,
    Overloaded,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    provider_error_for_status,
)
from ._redact import Redactor, exception_text, keys_of
from .base import BatchInfo, BatchResult, Completion, Request, Usage, cache_ttl

if TYPE_CHECKING:
    import anthropic

__all__ = ["AnthropicProvider"]

API_KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"

# An `event: error` inside a 200 stream has no HTTP status of its own: classify it
# by its error type instead.
_STREAM_ERROR_CLASSES: dict[str, type[ProviderError]] = {
    "rate_limit_error": RateLimited,
    "overloaded_error": Overloaded,
    "api_error": ProviderUnavailable,
    "timeout_error": ProviderTimeout,
    "authentication_error": AuthenticationFailed,
    "permission_error": AuthenticationFailed,
    "invalid_request_error": BadRequest,
    "not_found_error": BadRequest,
    "request_too_large": BadRequest,
}


class IgnoredParamWarning(UserWarning):
    """A request param the provider cannot send was left out."""


class _Secret:
    """Holds the API key so that no repr, log line or traceback shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"


class AnthropicProvider:
    """Completes requests with the Anthropic Messages API, streamed.

    Args:
        api_key: the API key; defaults to ``$ANTHROPIC_API_KEY``. Not needed when
            ``client`` is given.
        base_url: the API root; defaults to ``$ANTHROPIC_BASE_URL``, else the SDK's.
        timeout: seconds the SDK waits for the next bytes (connecting waits at most
            5 s); ignored when ``client`` is given.
        client: an ``anthropic.AsyncAnthropic`` to use instead of building one; it is
            copied with ``max_retries=0``.

    Raises:
        ConfigError: no ``api_key``, no ``client`` and ``ANTHROPIC_API_KEY`` unset.
    """

    name = "anthropic"
    simulated = False
    batch_poll_s = 30.0
    """Seconds between looks at a Message Batch still processing (most end within the hour)."""
    batch_max_requests = 100_000
    """The Message Batches API takes up to 100,000 requests (and 256 MB) per batch."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        self.base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        self.timeout = timeout
        self._key: _Secret | None = None
        self._client: anthropic.AsyncAnthropic | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._owns_client = client is None
        self._warned_temperature = False
        self._temperature_checked: Any = None
        self._temperature_ok = True
        self._redact: Redactor | None = None
        if client is not None:
            self._client = client.with_options(max_retries=0)
            return
        key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise ConfigError(
                f"no Anthropic API key: pass AnthropicProvider(api_key=...) or set {API_KEY_ENV}"
            )
        self._key = _Secret(key)

    def __repr__(self) -> str:
        where = self.base_url or "default base URL"
        return f"AnthropicProvider({where}, timeout={self.timeout:g})"

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if not self._owns_client:
            assert self._client is not None
            return self._client
        loop = asyncio.get_running_loop()
        # An httpx connection pool belongs to the loop that opened it; a caller
        # that runs each call under a fresh asyncio.run() needs a fresh client.
        if self._client is None or self._client_loop is not loop:
            import anthropic

            assert self._key is not None
            self._client = anthropic.AsyncAnthropic(
                api_key=self._key.reveal(),
                base_url=self.base_url,
                # Keep the SDK's short connect timeout; `timeout` bounds each read.
                timeout=anthropic.Timeout(self.timeout, connect=min(5.0, self.timeout)),
                max_retries=0,
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connections of a client this provider built."""
        if not self._owns_client or self._client is None:
            return
        client, self._client = self._client, None
        # A pool opened on a loop that has since closed cannot be closed from here.
        if self._client_loop is asyncio.get_running_loop():
            await client.close()

    async def complete(self, request: Request) -> Completion:
        """Complete ``request`` once, streamed, timing the first text delta.

        Raises:
            ProviderError: the subclass matching the failure; never retried here.
        """
        client = self._get_client()
        params = self._params(request)
        # Latency starts when the request is sent: the SDK's import and the client's
        # set-up (seconds, on a first call) happened above.
        started = time.perf_counter()
        first_text: float | None = None
        try:
            async with client.messages.stream(**params) as stream:
                async for event in stream:
                    if (
                        first_text is None
                        and event.type == "content_block_delta"
                        and getattr(event.delta, "type", None) == "text_delta"
                    ):
                        first_text = time.perf_counter()
                message = await stream.get_final_message()
        except Exception as exc:
            self._raise(exc, started)
        finished = time.perf_counter()
        return completion_of(message, (finished - started) * 1000,
                             None if first_text is None else (first_text - started) * 1000)

    def _params(self, request: Request) -> dict[str, Any]:
        """``messages.create`` keyword arguments for ``request``, less what this SDK cannot send."""
        params = _message_params(request)
        if "temperature" in params and not self._sends_temperature():
            # The API version this SDK speaks rejects sampling params; a prompt's
            # temperature is a wish we cannot send, so drop it and say so once.
            del params["temperature"]
            if not self._warned_temperature:
                self._warned_temperature = True
                warnings.warn(
                    f"anthropic {_sdk_version()} speaks API version {_api_version()}, which takes no "
                    "temperature; the prompt's temperature is not sent (the model's default applies)",
                    IgnoredParamWarning,
                    stacklevel=3,
                )
        return params

    def _sends_temperature(self) -> bool:
        """Whether this SDK takes ``temperature`` (looked up once per client: a batch asks 10,000 times)."""
        client = self._get_client()
        if self._temperature_checked is not client:
            self._temperature_ok = _takes_temperature(client)
            self._temperature_checked = client
        return self._temperature_ok

    # -- Message Batches ---------------------------------------------------------------------

    async def submit_batch(self, requests: Sequence[tuple[str, Request]]) -> BatchInfo:
        """Create one Message Batch of ``(custom_id, request)`` pairs (half price, up to 24 hours).

        Raises:
            ProviderError: the API refused the batch (nothing was created), or the
                answer was lost on the way (the batch may exist: see ``recent_batches``).
        """
        body = [{"custom_id": custom_id, "params": self._params(request)} for custom_id, request in requests]
        try:
            batch = await self._get_client().messages.batches.create(requests=body)
        except Exception as exc:
            self._raise(exc)
        return _batch_info(batch)

    async def batch_info(self, batch_id: str) -> BatchInfo:
        """The batch's status, request counts and times."""
        try:
            batch = await self._get_client().messages.batches.retrieve(batch_id)
        except Exception as exc:
            self._raise(exc)
        return _batch_info(batch)

    async def batch_results(self, batch_id: str, requests: Mapping[str, Request]) -> AsyncIterator[BatchResult]:
        """Stream an ended batch's results (JSON lines, in no particular order)."""
        try:
            lines = await self._get_client().messages.batches.results(batch_id)
            async for line in lines:
                yield _batch_result(line)
        except Exception as exc:
            self._raise(exc)

    async def cancel_batch(self, batch_id: str) -> BatchInfo:
        """Ask the API to stop the batch; requests already processed stay done (and billed)."""
        try:
            batch = await self._get_client().messages.batches.cancel(batch_id)
        except Exception as exc:
            self._raise(exc)
        return _batch_info(batch)

    async def recent_batches(self, since: float) -> list[BatchInfo]:
        """Batches of this workspace created since the Unix time ``since``, newest first."""
        found: list[BatchInfo] = []
        try:
            async for batch in self._get_client().messages.batches.list(limit=100):
                info = _batch_info(batch)
                if info.created_at is not None and info.created_at < since:
                    break  # the list is newest first
                found.append(info)
        except Exception as exc:
            self._raise(exc)
        return found

    def _redactor(self) -> Redactor:
        if self._redact is None:
            keys = [self._key.reveal()] if self._key is not None else keys_of(self._client)
            self._redact = Redactor(keys)
        return self._redact

    def _raise(self, exc: Exception, started: float | None = None) -> NoReturn:
        """Raise the ProviderError for ``exc``, its text scrubbed of the key and, given
        when the request was sent (``perf_counter``), timed from then.

        An httpx header error quotes the key (``Illegal header value b'Bearer ...'``),
        and a server may echo it back; the original exception is chained only when
        nothing in its chain held the key.
        """
        error = _provider_error(exc)
        if error is None:
            raise exc
        redact = self._redactor()
        error.message = redact(error.message)
        error.args = (error.message,)
        if started is not None:
            error.latency_ms = (time.perf_counter() - started) * 1000
        if "Illegal header value" in error.message:
            # A malformed key (a stray newline) never succeeds: do not retry it.
            error.retryable = False
        chain = exception_text(exc)
        if redact(chain) != chain:
            raise error from None
        raise error from exc

    async def count_tokens(self, request: Request) -> int:
        """Input tokens the API counts for ``request`` (system and messages)."""
        params = _message_params(request)
        kwargs = {k: params[k] for k in ("model", "messages", "system") if k in params}
        try:
            result = await self._get_client().messages.count_tokens(**kwargs)
        except Exception as exc:
            self._raise(exc)
        return result.input_tokens

    async def sleep(self, seconds: float) -> None:
        """Wait between retries, in real time."""
        await asyncio.sleep(seconds)


def _batch_info(batch: Any) -> BatchInfo:
    """Our `BatchInfo` from the SDK's ``MessageBatch``."""
    counts = batch.request_counts
    tally = {k: _count(getattr(counts, k, None)) for k in ("processing", "succeeded", "errored", "canceled", "expired")}
    return BatchInfo(
        id=batch.id,
        status=batch.processing_status,
        requests=sum(tally.values()),
        counts=tally,
        created_at=_epoch(batch.created_at),
        expires_at=_epoch(batch.expires_at),
        ended_at=_epoch(batch.ended_at),
        results_available=getattr(batch, "archived_at", None) is None,
    )


def _epoch(when: Any) -> float | None:
    return None if when is None else when.timestamp()


def _batch_result(line: Any) -> BatchResult:
    """Our `BatchResult` from one line of a batch's results."""
    result = line.result
    if result.type == "succeeded":
        # A batch times no single call: no latency, no time to first token.
        return BatchResult(line.custom_id, "succeeded", completion_of(result.message, None, None))
    if result.type == "errored":
        body = result.error
        error = getattr(body, "error", None)
        error_type = getattr(error, "type", None) or "api_error"
        cls = _STREAM_ERROR_CLASSES.get(error_type, ProviderUnavailable)
        return BatchResult(line.custom_id, "errored", error=cls(
            f"anthropic batch request {error_type}: {getattr(error, 'message', '') or 'no message'}",
            request_id=getattr(body, "request_id", None), error_type=error_type,
        ))
    return BatchResult(line.custom_id, result.type)


def completion_of(message: Any, latency_ms: float | None, ttft_ms: float | None) -> Completion:
    """Our `Completion` from an SDK ``Message`` (a response, a stream's final message, a batch result)."""
    return Completion(
        text="".join(b.text for b in message.content if getattr(b, "type", None) == "text"),
        model=message.model,
        stop_reason=message.stop_reason,
        usage=usage_of(message.usage),
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        request_id=message.id,
        provider=AnthropicProvider.name,
    )


def usage_of(usage: Any) -> Usage:
    """Our `Usage` from an SDK usage object (a response's, or a stream's ``message_start``).

    Cache writes are split by lifetime in ``usage.cache_creation``
    (``ephemeral_5m_input_tokens``, ``ephemeral_1h_input_tokens``); APIs and SDKs
    that predate the split report only ``cache_creation_input_tokens``, all priced
    as 5-minute writes.
    """
    writes = getattr(usage, "cache_creation_input_tokens", None)
    split = getattr(usage, "cache_creation", None)
    hour = five = 0
    if split is not None:
        hour = _count(getattr(split, "ephemeral_1h_input_tokens", None))
        five = _count(getattr(split, "ephemeral_5m_input_tokens", None))
    total = max(_count(writes), hour + five)
    return Usage(
        input_tokens=_count(getattr(usage, "input_tokens", None)),
        output_tokens=_count(getattr(usage, "output_tokens", None)),
        cache_read_tokens=_count(getattr(usage, "cache_read_input_tokens", None)),
        cache_write_tokens=total,
        cache_write_1h_tokens=min(hour, total),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _takes_temperature(client: Any) -> bool:
    """Whether this SDK still has a ``temperature`` argument (1.x and older do)."""
    try:
        return "temperature" in inspect.signature(client.messages.stream).parameters
    except (TypeError, ValueError):
        return True


def _sdk_version() -> str:
    import anthropic

    return getattr(anthropic, "__version__", "?")


def _api_version() -> str:
    try:
        from anthropic._constants import ANTHROPIC_API_VERSION
    except ImportError:
        return "?"
    return ANTHROPIC_API_VERSION


def _message_params(request: Request) -> dict[str, Any]:
    """Keyword arguments for ``messages.create`` / ``messages.stream``."""
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.system:
        ttl = cache_ttl(request.cache_system)
        if ttl is not None:
            # No ttl is the 5-minute cache; say "1h" only when asked (older APIs refuse the field).
            control = {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}
            params["system"] = [{"type": "text", "text": request.system, "cache_control": control}]
        else:
            params["system"] = request.system
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    return params


def _provider_error(exc: Exception) -> ProviderError | None:
    """The ProviderError for an SDK or transport exception; None for anything else."""
    import anthropic

    if isinstance(exc, UnicodeEncodeError):
        # The SDK encodes the body as UTF-8 before sending: nothing was sent or paid.
        return BadRequest(
            f"anthropic: the request was not sent: its text is not valid Unicode ({exc.reason}: "
            f"{exc.object[exc.start:exc.end]!r}, as a non-UTF-8 file name decodes to); "
            "decode such names with errors='replace' before prompting",
            retryable=False,
        )
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc)
    # APITimeoutError subclasses APIConnectionError: test it first.
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderTimeout(f"anthropic: request timed out: {exc.message}")
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderConnectionError(f"anthropic: connection failed: {_cause(exc)}")
    # A failure while reading the stream body reaches us unwrapped by the SDK.
    timeouts, transports = _transport_error_types()
    if isinstance(exc, timeouts):
        return ProviderTimeout(f"anthropic: timed out reading the stream: {exc!r}")
    if isinstance(exc, transports):
        return ProviderConnectionError(f"anthropic: connection lost mid-stream: {exc!r}")
    return None


def _status_error(exc: anthropic.APIStatusError) -> ProviderError:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    error_type = error.get("type") or getattr(exc, "type", None)
    detail = error.get("message") or exc.message
    request_id = exc.request_id or body.get("request_id")
    status = exc.status_code
    kwargs: dict[str, Any] = {
        "request_id": request_id,
        "error_type": error_type,
        "retry_after": _retry_after(exc.response.headers),
    }
    should_retry = (exc.response.headers.get("x-should-retry") or "").lower()
    if should_retry in ("true", "false"):
        # The API's own word on retrying wins over the status code, as in the SDK.
        kwargs["retryable"] = should_retry == "true"
    if status < 400:
        cls = _STREAM_ERROR_CLASSES.get(error_type or "", ProviderUnavailable)
        return cls(f"anthropic {error_type} mid-stream: {detail}", status_code=status, **kwargs)
    return provider_error_for_status(status, f"anthropic {error_type}: {detail}", **kwargs)


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return max(value, 0.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)
    return max(value, 0.0) if math.isfinite(value) else None


def _transport_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Timeout and transport base classes of whichever httpx the SDK uses."""
    timeouts: list[type[BaseException]] = []
    transports: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)  # the SDK has imported its own by now
        if module is not None:
            timeouts.append(module.TimeoutException)
            transports.append(module.TransportError)
    return tuple(timeouts), tuple(transports)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return repr(cause) if cause is not None else str(exc)
