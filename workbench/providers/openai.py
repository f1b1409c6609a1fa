"""An OpenAI-compatible provider: one streamed Chat Completions call per ``complete``.

It reaches OpenAI and the many servers that speak its API (vLLM, llama.cpp,
Ollama, LiteLLM's proxy): point ``base_url`` at one (it must end in ``/v1``).
The ``openai`` SDK is an optional extra (``pip install 'workbench[openai]'``),
imported on the first call. As with Anthropic, the SDK's own retries are off
and the caller's loop (or a gateway's chain) counts every attempt.

Usage is mapped to workbench's Anthropic semantics: OpenAI's ``prompt_tokens``
INCLUDES cached tokens, ours exclude them, so ``input_tokens = prompt_tokens -
cached_tokens`` and ``cache_read_tokens = cached_tokens``. Calls are priced with
genai-prices' ``openai`` provider id (``price_provider``).
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from typing import Any

from ..errors import (
    BadRequest,
    ConfigError,
    MissingDependency,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    provider_error_for_status,
)
from ._redact import Redactor, exception_text
from .base import CallNote, Completion, Request, Usage

__all__ = ["OpenAIProvider"]

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
_FINISH = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal", "tool_calls": "tool_use"}
"""OpenAI finish reasons in the stop-reason words the rest of workbench uses."""
_ERROR_STATUS = {"rate_limit_exceeded": 429, "server_error": 500, "overloaded": 529, "timeout": 408}
"""Status to classify an error event inside a stream by, from its ``type`` or ``code``."""


class MissingUsageWarning(UserWarning):
    """A server answered without token usage: the call's tokens and cost are recorded as unknown."""


class OpenAIProvider:
    """Completes requests with an OpenAI-compatible Chat Completions API, streamed.

    Args:
        api_key: defaults to ``$OPENAI_API_KEY``; a local server takes any string.
        base_url: the API root ending in ``/v1``; defaults to ``$OPENAI_BASE_URL``, else OpenAI's.
        timeout: seconds the SDK waits for the next bytes (connecting waits at most 5 s).
        name: recorded on traces (``openai``; e.g. ``vllm`` for a local server).
        price_provider: genai-prices provider id used to price calls (None: unpriced
            unless ``bench.pricing.set_price`` knows the model).
        client: an ``openai.AsyncOpenAI`` to use instead of building one (copied with ``max_retries=0``).

    Raises:
        ConfigError: no key and no client, or a ``base_url`` that does not end in ``/v1``.
    """

    simulated = False

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 600,
        name: str = "openai",
        price_provider: str | None = "openai",
        client: Any = None,
    ) -> None:
        self.name = name
        self.price_provider = price_provider
        self.timeout = timeout
        self.base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        if self.base_url is not None and not self.base_url.rstrip("/").endswith("/v1"):
            raise ConfigError(
                f"OpenAI-compatible base_url must end in /v1 (the SDK appends /chat/completions), got {self.base_url!r}; "
                f"try {self.base_url.rstrip('/') + '/v1'!r}"
            )
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._owns_client = client is None
        if client is not None:
            self._client = client.with_options(max_retries=0)
            self._key = ""
            return
        key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise ConfigError(f"no OpenAI API key: pass OpenAIProvider(api_key=...) or set {API_KEY_ENV} (a local server takes any string)")
        self._key = key

    def __repr__(self) -> str:
        return f"OpenAIProvider({self.base_url or 'default base URL'}, name={self.name!r})"

    def _get_client(self) -> Any:
        if not self._owns_client:
            return self._client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            try:
                import openai
            except ImportError:
                raise MissingDependency(
                    "the OpenAI-compatible provider needs the openai SDK: pip install 'workbench[openai]'"
                ) from None
            self._client = openai.AsyncOpenAI(
                api_key=self._key, base_url=self.base_url,
                timeout=openai.Timeout(self.timeout, connect=min(5.0, self.timeout)), max_retries=0,
            )
            self._client_loop = loop
        return self._client

    async def complete(self, request: Request) -> Completion:
        """Complete ``request`` once, streamed with usage, timing the first text delta.

        Raises:
            ProviderError: the subclass matching the failure; never retried here.
        """
        client = self._get_client()
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        params: dict[str, Any] = {
            "model": request.model, "messages": messages, "max_tokens": request.max_tokens,
            "stream": True, "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.stop:
            params["stop"] = list(request.stop)
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        finish = model = response_id = None
        usage: Any = None
        try:
            stream = await client.chat.completions.create(**params)
            async for chunk in stream:
                response_id = response_id or chunk.id
                model = model or chunk.model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        if first is None:
                            first = time.perf_counter()
                        parts.append(text)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except Exception as exc:
            error = _provider_error(exc)
            if error is None:
                raise
            # A malformed key is quoted by httpx or echoed by a server: scrub any spelling of it,
            # and chain the original only when nothing in its chain held the key.
            redact = Redactor([self._key])
            error.message = redact(error.message)
            error.args = (error.message,)
            error.latency_ms = (time.perf_counter() - started) * 1000
            if "Illegal header value" in error.message:
                error.retryable = False  # a malformed key never succeeds
            chain = exception_text(exc)
            if redact(chain) != chain:
                raise error from None
            raise error from exc
        finished = time.perf_counter()
        if usage is None:
            # The server sent no usage (many local servers ignore include_usage): the tokens and
            # the cost are unknown, never zero.
            warnings.warn(
                f"{self.name}: the server reported no token usage for {request.model}; the call's tokens and cost "
                "are recorded as unknown (a server that honours stream_options.include_usage fixes this)",
                MissingUsageWarning, stacklevel=2,
            )
        return Completion(
            text="".join(parts),
            model=model or request.model,
            stop_reason=_FINISH.get(finish or "", finish),
            usage=usage_of(usage),
            latency_ms=(finished - started) * 1000,
            ttft_ms=None if first is None else (first - started) * 1000,
            request_id=response_id,
            provider=self.name,
            note=CallNote(price_provider=self.price_provider) if self.price_provider else None,
        )

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None and self._client_loop is asyncio.get_running_loop():
            client, self._client = self._client, None
            await client.close()


def usage_of(usage: Any) -> Usage:
    """OpenAI usage in Anthropic semantics: cached prompt tokens move out of input into cache reads."""
    if usage is None:
        return Usage(reported=False)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", None) or 0) if details is not None else 0
    prompt = usage.prompt_tokens or 0
    return Usage(input_tokens=max(prompt - cached, 0), output_tokens=usage.completion_tokens or 0, cache_read_tokens=cached)


def _provider_error(exc: Exception) -> ProviderError | None:
    """The ProviderError for an openai SDK or transport exception; None for anything else."""
    import openai

    if isinstance(exc, UnicodeEncodeError):
        # Raised while the request was built: nothing was sent or paid.
        where = ("a header (often the API key) holds characters HTTP headers cannot carry"
                 if exc.encoding == "ascii" else "its text is not valid Unicode")
        return BadRequest(f"openai: the request was not sent: {where} ({exc.reason})", retryable=False)

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        headers = exc.response.headers
        from .anthropic import _retry_after

        kwargs: dict[str, Any] = {"request_id": exc.request_id, "error_type": (error or {}).get("type") or (error or {}).get("code"),
                                  "retry_after": _retry_after(headers)}
        should = (headers.get("x-should-retry") or "").lower()
        if should in ("true", "false"):
            kwargs["retryable"] = should == "true"
        detail = (error or {}).get("message") or exc.message
        return provider_error_for_status(exc.status_code, f"openai {kwargs['error_type'] or exc.status_code}: {detail}", **kwargs)
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(f"openai: request timed out: {exc.message}")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return ProviderConnectionError(f"openai: connection failed: {cause!r}" if cause else f"openai: connection failed: {exc}")
    if isinstance(exc, openai.APIError):
        # An error event inside a 200 stream: a plain APIError with the event's error as body.
        body = exc.body if isinstance(exc.body, dict) else {}
        kind = str(body.get("type") or body.get("code") or "")
        status = _ERROR_STATUS.get(kind)
        if status is None:
            return ProviderUnavailable(f"openai error mid-stream: {exc.message}", error_type=kind or None, retryable=True)
        return provider_error_for_status(status, f"openai {kind} mid-stream: {exc.message}", error_type=kind)
    from .anthropic import _transport_error_types

    timeouts, transports = _transport_error_types()
    if isinstance(exc, timeouts):
        return ProviderTimeout(f"openai: timed out reading the stream: {exc!r}")
    if isinstance(exc, transports):
        return ProviderConnectionError(f"openai: connection lost mid-stream: {exc!r}")
    return None
