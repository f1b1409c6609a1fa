"""The retry policy and loop, shared by every provider call.

The policy follows the anthropic SDK's: retry 408/409/429/5xx/529 and connection
errors (unless the provider said ``x-should-retry: false``); honour
``retry-after-ms`` / ``retry-after`` when it is over 0 and at most 60 s;
otherwise back off from 0.5 s doubling to 8 s with jitter. Providers never retry on their own,
so every attempt is counted on the trace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import ProviderError, UnexpectedProviderError, WorkbenchError
from .providers.base import Completion, Provider, Request

MAX_ATTEMPTS = 3
"""One try plus two retries, as the SDK's default ``max_retries=2``."""
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 60.0
"""A provider asking for a longer wait gets our own backoff instead, as in the SDK."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed call."""

    max_attempts: int = MAX_ATTEMPTS
    initial_backoff_s: float = INITIAL_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    max_retry_after_s: float = MAX_RETRY_AFTER_S

    def delay(self, attempt: int, error: ProviderError, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if attempt >= self.max_attempts or not error.retryable:
            return None
        # As the SDK: a provider's wait between 0 and 60 s is honoured; none, zero or a
        # longer one falls back to our own backoff.
        if error.retry_after is not None and 0 < error.retry_after <= self.max_retry_after_s:
            return error.retry_after
        backoff = min(self.initial_backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        # Jitter downwards by up to 25%, as the SDK does.
        return backoff * (1 - 0.25 * rng.random())


DEFAULT_POLICY = RetryPolicy()
_JITTER = random.Random()
"""Jitter draws need no seed of their own: one generator, not one seeded from the OS per call."""


@dataclass
class Attempted:
    """The outcome of a call with retries."""

    completion: Completion | None
    error: ProviderError | None
    attempts: int
    waited_s: float


async def complete_with_retries(
    provider: Provider,
    request: Request,
    policy: RetryPolicy = DEFAULT_POLICY,
    rng: random.Random | None = None,
) -> Attempted:
    """Call ``provider.complete`` until it succeeds or the policy gives up.

    Never raises a ``ProviderError``: the last one is returned so the caller can
    record it as an error trace before deciding to raise. Any other exception
    from the provider (a custom provider's bug) is returned the same way, as an
    ``UnexpectedProviderError``, and is not retried: nothing says it is transient.
    A ``WorkbenchError`` that is not a ``ProviderError`` (a setting workbench itself
    refuses, such as a gateway router's unknown label), cancellation and
    ``KeyboardInterrupt`` propagate.
    """
    rng = rng or _JITTER
    attempt = 0
    waited = 0.0
    while True:
        attempt += 1
        try:
            completion = await provider.complete(request)
        except ProviderError as exc:
            delay = policy.delay(attempt, exc, rng)
            if delay is None:
                return Attempted(None, exc, attempt, waited)
            waited += delay
            await provider.sleep(delay)
            continue
        except WorkbenchError:
            raise  # our own refusal of a bad setting (a router's unknown label): the user must fix it, not retry
        except Exception as exc:  # noqa: BLE001 - recorded as the call's error trace, like a provider error
            return Attempted(None, UnexpectedProviderError(getattr(provider, "name", type(provider).__name__), exc), attempt, waited)
        return Attempted(completion, None, attempt, waited)
