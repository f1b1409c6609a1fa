"""The provider protocol and the plain records that cross it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str
    """``user`` or ``assistant``."""
    content: str
    """Plain text of the turn."""


@dataclass(frozen=True)
class Request:
    """What a provider is asked to complete."""

    model: str
    """Model name as the user asked for it, e.g. ``claude-haiku-4-5``."""
    messages: tuple[Message, ...]
    """The conversation, oldest first."""
    system: str | None = None
    """System prompt."""
    max_tokens: int = 1024
    """Upper bound on output tokens."""
    temperature: float | None = None
    """Sampling temperature; None leaves the provider default."""
    stop: tuple[str, ...] = ()
    """Stop sequences."""
    cache_system: bool | str = False
    """Mark the system prompt for prompt caching (Anthropic ``cache_control``):
    True or ``"5m"`` for the 5-minute cache, ``"1h"`` for the 1-hour cache
    (its writes cost more: 2x the input price against 1.25x)."""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """Free-form data for the trace; never sent to the provider."""

    @classmethod
    def of(
        cls,
        model: str,
        messages: list[dict[str, str]] | list[Message] | tuple[Message, ...] | str,
        **kwargs: Any,
    ) -> Request:
        """Build a request from a prompt string or a list of ``{"role", "content"}`` dicts."""
        if isinstance(messages, str):
            msgs: tuple[Message, ...] = (Message("user", messages),)
        elif isinstance(messages, (list, tuple)) and messages:
            msgs = tuple(_message(m, i) for i, m in enumerate(messages))
        else:
            raise _config_error(
                f"messages must be a prompt string or a non-empty list of {{'role', 'content'}} turns, "
                f"got {type(messages).__name__}" + (" (empty)" if isinstance(messages, (list, tuple)) else "")
            )
        if "stop" in kwargs and kwargs["stop"] is not None:
            kwargs["stop"] = tuple(kwargs["stop"])
        elif "stop" in kwargs:
            kwargs["stop"] = ()
        return cls(model=model, messages=msgs, **kwargs)

    def prompt_text(self) -> str:
        """The request as one text, for traces and simulated reading."""
        parts = []
        if self.system:
            parts.append(f"[system]\n{self.system}")
        for m in self.messages:
            parts.append(f"[{m.role}]\n{m.content}")
        return "\n\n".join(parts)


def _config_error(message: str) -> Exception:
    from ..errors import ConfigError  # records stay free of the error tree at import time

    return ConfigError(message)


def _message(m: Any, i: int) -> Message:
    """One turn from a Message or a ``{"role", "content"}`` dict; a malformed turn names itself."""
    if isinstance(m, Message):
        return m
    if not isinstance(m, dict) or "role" not in m or "content" not in m:
        raise _config_error(f"messages[{i}] must be {{'role': 'user' or 'assistant', 'content': ...}}, got {m!r:.120}")
    if m["role"] not in ("user", "assistant"):
        raise _config_error(f"messages[{i}] has role {m['role']!r}; use 'user' or 'assistant' (the system prompt goes in system=)")
    content = m["content"]
    if not isinstance(content, (str, list, tuple)):
        raise _config_error(f"messages[{i}] content must be text or a list of content blocks, got {type(content).__name__}")
    return Message(m["role"], _text_of(content))


def _text_of(content: Any) -> str:
    """Flatten Anthropic-style content (a string or a list of blocks) to text."""
    if isinstance(content, str):
        return content
    out = []
    for block in content:
        if isinstance(block, dict):
            if block.get("type") == "text":
                out.append(block.get("text", ""))
        else:
            text = getattr(block, "text", None)
            if text is not None:
                out.append(text)
    return "".join(out)


@dataclass(frozen=True)
class Usage:
    """Token counts with Anthropic's semantics."""

    input_tokens: int = 0
    """Uncached input tokens; EXCLUDES cache reads and cache writes."""
    output_tokens: int = 0
    """Generated tokens."""
    cache_read_tokens: int = 0
    """Input tokens read from the prompt cache."""
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (cache creation), 5-minute and 1-hour writes together."""
    cache_write_1h_tokens: int = 0
    """Of ``cache_write_tokens``, those written to the 1-hour cache (priced higher than 5-minute writes)."""
    reported: bool = True
    """False when the provider sent no usage at all: the counts above are then unknown, not zero,
    and a trace records NULL tokens and NULL cost."""

    @property
    def cache_write_5m_tokens(self) -> int:
        """Of ``cache_write_tokens``, those written to the 5-minute cache."""
        return self.cache_write_tokens - self.cache_write_1h_tokens

    @property
    def total_input_tokens(self) -> int:
        """All input tokens: uncached + cache reads + cache writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class Completion:
    """A provider's answer to one request."""

    text: str
    """The generated text."""
    model: str
    """The model that answered (may be more specific than the one requested)."""
    stop_reason: str | None
    """``end_turn``, ``max_tokens``, ``stop_sequence``, ..."""
    usage: Usage
    """Token counts."""
    latency_ms: float | None
    """Time from sending the request to the last byte of the answer (None for a
    batch result: no single call was timed)."""
    ttft_ms: float | None = None
    """Time to the first text token, when streamed."""
    request_id: str | None = None
    """The provider's id for the response (``msg_...``)."""
    provider: str = ""
    """Name of the provider that produced it (``anthropic``, ``simulated``)."""
    note: CallNote | None = field(default=None, compare=False, repr=False)
    """What a wrapping provider (a gateway) tells the tracer about this call."""


@dataclass(frozen=True)
class CallNote:
    """What a provider that wraps others (``workbench.gateway``) tells the tracer about one call.

    Carried on a ``Completion`` or a ``ProviderError`` (``.note``); every field is
    optional and None leaves the tracer's own value.
    """

    status: str | None = None
    """Trace status instead of ok/error: ``cached``, ``guardrail_triggered``."""
    decisions: dict[str, Any] | None = None
    """Cache, route, fallback, limit and guardrail decisions: ``metadata.gateway`` of the trace."""
    request: Request | None = None
    """The request actually sent (the routed model, redacted input)."""
    provider: Any = None
    """The provider (or its name) that answered, when a fallback did."""
    price_provider: str | None = None
    """genai-prices provider id to price the call with (``openai``); None: the tracer's."""
    completion: Completion | None = None
    """A paid answer behind an error (an output guardrail blocked it): its usage is still cost."""
    attempts: int | None = None
    """Provider attempts made inside the wrapper, fallbacks and retries included."""


def cache_ttl(cache_system: bool | str) -> str | None:
    """``"5m"``, ``"1h"`` or None (no caching) for a request's ``cache_system``.

    Raises:
        ConfigError: anything else, naming the values that work.
    """
    if cache_system is False or cache_system is None:
        return None
    if cache_system is True or cache_system == "5m":
        return "5m"
    if cache_system == "1h":
        return "1h"
    from ..errors import ConfigError

    raise ConfigError(f"cache_system must be True, '5m' or '1h' (or False), got {cache_system!r}")


@runtime_checkable
class Provider(Protocol):
    """Anything that completes a request.

    Implementations raise ``workbench.errors.ProviderError`` subclasses on failure
    and do not retry on their own: the caller's retry loop counts attempts.
    """

    name: str
    """Recorded in every trace (``anthropic``, ``simulated``)."""
    simulated: bool
    """True when answers are simulated rather than produced by a model."""

    async def complete(self, request: Request) -> Completion:
        """Complete one request, once."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait between retries (a simulated provider may compress time)."""
        ...


# -- Message Batches ------------------------------------------------------------------------------

BATCH_OUTCOMES = ("succeeded", "errored", "canceled", "expired")
"""What became of one request in a batch (the Message Batches API's result types)."""


@dataclass(frozen=True)
class BatchInfo:
    """A batch as the provider reports it."""

    id: str
    """The provider's id (``msgbatch_...``; ``simbatch_...`` for the simulator)."""
    status: str
    """``in_progress``, ``canceling`` or ``ended``."""
    requests: int
    """Requests in the batch."""
    counts: dict[str, int] = field(default_factory=dict)
    """Requests per state: processing, succeeded, errored, canceled, expired (the API
    counts them only once the whole batch has ended)."""
    created_at: float | None = None
    """Unix time the provider created it."""
    expires_at: float | None = None
    """Unix time it stops processing: 24 hours after creation."""
    ended_at: float | None = None
    """Unix time processing ended (every request succeeded, errored, was canceled or expired)."""
    results_available: bool = True
    """False once the provider no longer serves the results (29 days after creation)."""


@dataclass(frozen=True)
class BatchResult:
    """What one request of a batch came back as."""

    custom_id: str
    """The id the request was submitted with."""
    outcome: str
    """``succeeded``, ``errored``, ``canceled`` or ``expired``."""
    completion: Completion | None = None
    """The answer, when it succeeded (``latency_ms`` and ``ttft_ms`` are None: a batch times no single call)."""
    error: Any = None
    """The ``ProviderError`` of an errored request."""


@runtime_checkable
class BatchProvider(Protocol):
    """A provider that also runs requests through a batch engine (Anthropic's Message Batches).

    Requests go in with a ``custom_id`` each and come back, in any order, with it.
    """

    batch_poll_s: float
    """Seconds between two looks at a batch that is still processing."""
    batch_max_requests: int
    """Most requests one batch takes."""

    async def submit_batch(self, requests: Sequence[tuple[str, Request]]) -> BatchInfo:
        """Create one batch of ``(custom_id, request)``; it starts processing at once."""
        ...

    async def batch_info(self, batch_id: str) -> BatchInfo:
        """The batch's status now."""
        ...

    def batch_results(self, batch_id: str, requests: Mapping[str, Request]) -> AsyncIterator[BatchResult]:
        """Every result of an ended batch. ``requests`` are the batch's requests by
        custom id: the simulator answers from them (the API has its own copy)."""
        ...

    async def cancel_batch(self, batch_id: str) -> BatchInfo:
        """Stop processing; what is done stays done (and paid), the rest comes back canceled."""
        ...

    async def recent_batches(self, since: float) -> list[BatchInfo]:
        """Batches created since the Unix time ``since``, newest first (to find one whose
        creation was never recorded: a process that died just after submitting)."""
        ...
