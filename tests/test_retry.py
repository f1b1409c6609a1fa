"""The retry policy follows the anthropic SDK's."""

from __future__ import annotations

import asyncio
import random

import pytest

from workbench._retry import RetryPolicy, complete_with_retries
from workbench.errors import BadRequest, Overloaded, RateLimited
from workbench.providers.anthropic import AnthropicProvider
from workbench.providers.base import Request

try:
    from .fake_anthropic import FakeAnthropic
except ImportError:
    from fake_anthropic import FakeAnthropic


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        (5.0, 5.0, 5.0),     # honoured
        (60.0, 60.0, 60.0),  # the cap itself is honoured
        (0.0, 0.375, 0.5),   # zero: our own backoff, as the SDK
        (120.0, 0.375, 0.5), # beyond the cap: our own backoff, not giving up
        (None, 0.375, 0.5),
    ],
)
def test_first_retry_delay(retry_after, low, high):
    delay = RetryPolicy().delay(1, RateLimited("x", retry_after=retry_after), random.Random(0))
    assert delay is not None and low <= delay <= high


def test_backoff_doubles_to_eight_seconds_with_downward_jitter():
    policy = RetryPolicy(max_attempts=10)
    rng = random.Random(1)
    delays = [policy.delay(n, Overloaded("x"), rng) for n in range(1, 9)]
    for n, d in enumerate(delays, 1):
        nominal = min(0.5 * 2 ** (n - 1), 8.0)
        assert 0.75 * nominal <= d <= nominal


def test_not_retryable_and_last_attempt_give_up():
    policy = RetryPolicy()
    assert policy.delay(1, BadRequest("x", status_code=400), random.Random()) is None
    assert policy.delay(3, Overloaded("x"), random.Random()) is None


def test_x_should_retry_false_stops_retries_through_the_sdk():
    with FakeAnthropic() as server:
        server.queue_faults([("status", 529, {"x-should-retry": "false"})])
        provider = AnthropicProvider(api_key="test", base_url=server.base_url)
        fast = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.001)
        result = asyncio.run(complete_with_retries(provider, Request.of("m", "hi"), fast))
    assert result.completion is None and result.attempts == 1
    assert isinstance(result.error, Overloaded) and not result.error.retryable


def test_x_should_retry_true_makes_a_400_retryable():
    with FakeAnthropic() as server:
        server.queue_faults([("status", 400, {"x-should-retry": "true"})])
        provider = AnthropicProvider(api_key="test", base_url=server.base_url)
        fast = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.001)
        result = asyncio.run(complete_with_retries(provider, Request.of("m", "hi"), fast))
    assert result.completion is not None and result.attempts == 2
