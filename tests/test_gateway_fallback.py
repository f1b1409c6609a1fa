"""Fallbacks across providers and circuit breakers, through the local Anthropic and OpenAI fakes."""

from __future__ import annotations

import pytest

pytest.importorskip("openai")

import workbench as wb
from workbench import gateway as gw
from workbench.errors import BadRequest, Overloaded, ProviderUnavailable
from workbench.providers.anthropic import AnthropicProvider
from workbench.providers.openai import OpenAIProvider

try:
    from .fake_anthropic import FakeAnthropic
    from .fake_openai import FakeOpenAI
except ImportError:
    from fake_anthropic import FakeAnthropic
    from fake_openai import FakeOpenAI

ASK = [{"role": "user", "content": "Where do I find my invoices?"}]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def servers():
    with FakeAnthropic() as claude, FakeOpenAI() as gpt:
        yield claude, gpt


def chain(tmp_path, claude, gpt, *, breaker=None, on=("overloaded", "rate_limited", "timeout", "server_error", "connection"), **parts):
    primary = AnthropicProvider(api_key="test", base_url=claude.base_url, timeout=5)
    backup = OpenAIProvider(api_key="test", base_url=gpt.base_url, timeout=5)
    fallbacks = gw.Fallbacks([primary, gw.Target(backup, "gpt-4o-mini")], on=on,
                             breaker=breaker if breaker is not None else False)
    gateway = gw.Gateway(fallbacks=fallbacks, **parts)
    return wb.open(tmp_path / "f.db", provider=gateway)


def test_a_529_storm_falls_back_to_openai_and_every_attempt_is_traced(tmp_path, servers):
    claude, gpt = servers
    claude.queue_faults([("status", 529)] * 5)
    bench = chain(tmp_path, claude, gpt)
    results = [bench.complete(model="claude-haiku-4-5", messages=ASK) for _ in range(3)]
    assert all(r.text.startswith("Echo: Where do I find") for r in results)
    assert gpt.completed == 3 and claude.completed == 0
    row = bench.trace(results[0].trace_id)
    d = row["metadata"]["gateway"]
    assert row["provider"] == "openai" and row["model"] == "gpt-4o-mini" and row["attempts"] == 2
    first, second = d["attempts"]
    assert first["target"] == "anthropic:claude-haiku-4-5" and first["error_type"] == "Overloaded" and first["status"] == 529
    assert first["latency_ms"] > 0 and second == {"target": "openai:gpt-4o-mini", "ok": True, "latency_ms": second["latency_ms"]}
    assert d["fallback"] == {"used": "openai:gpt-4o-mini", "after": ["anthropic:claude-haiku-4-5"]}
    # Priced as the call OpenAI answered, with OpenAI's prices.
    assert row["cost_usd"] == pytest.approx(bench.pricing.estimate("gpt-4o-mini", bench_usage(row), "openai"))
    bench.close()


def bench_usage(row):
    from workbench.providers.base import Usage

    return Usage(row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"])


def test_dropped_connections_and_stream_errors_fall_back(tmp_path, servers):
    claude, gpt = servers
    claude.queue_faults([("drop",), ("stream_error", "overloaded_error"), ("cut",)])
    bench = chain(tmp_path, claude, gpt)
    kinds = []
    for _ in range(3):
        result = bench.complete(model="claude-haiku-4-5", messages=ASK)
        kinds.append(bench.trace(result.trace_id)["metadata"]["gateway"]["attempts"][0]["error_type"])
    assert kinds == ["ProviderConnectionError", "Overloaded", "ProviderConnectionError"]
    assert gpt.completed == 3
    bench.close()


def test_a_bad_request_does_not_fall_back(tmp_path, servers):
    claude, gpt = servers
    claude.queue_faults([("status", 400)])
    bench = chain(tmp_path, claude, gpt)
    with pytest.raises(BadRequest):
        bench.complete(model="claude-haiku-4-5", messages=ASK)
    assert len(gpt.requests) == 0 and len(claude.requests) == 1  # and not retried by the caller either
    assert bench.traces(1)[0]["status"] == "error"
    bench.close()


def test_only_the_chosen_error_classes_fall_back(tmp_path, servers):
    claude, gpt = servers
    claude.queue_faults([("status", 503)])
    bench = chain(tmp_path, claude, gpt, on=("overloaded",))
    with pytest.raises(ProviderUnavailable):
        bench.complete(model="claude-haiku-4-5", messages=ASK)
    assert len(gpt.requests) == 0
    bench.close()


def test_when_every_target_fails_the_last_error_is_raised_and_nothing_is_cached(tmp_path, servers):
    claude, gpt = servers
    claude.queue_faults([("status", 529)])
    gpt.queue_faults([("status", 503)])
    bench = chain(tmp_path, claude, gpt, cache=True)
    with pytest.raises(ProviderUnavailable):
        bench.complete(model="claude-haiku-4-5", messages=ASK)
    ok = bench.complete(model="claude-haiku-4-5", messages=ASK)
    assert ok.status == "ok" and claude.completed == 1  # the error was not served from the cache
    bench.close()


def test_breaker_opens_skips_probes_half_open_and_closes(tmp_path, servers):
    claude, gpt = servers
    clock = Clock()
    breaker = gw.CircuitBreaker(failures=2, cooldown_s=30, clock=clock)
    bench = chain(tmp_path, claude, gpt, breaker=breaker)
    label = "anthropic:claude-haiku-4-5"
    claude.queue_faults([("status", 529), ("status", 529)])
    r1 = bench.complete(model="claude-haiku-4-5", messages=ASK)
    assert breaker.state(label) == "closed"
    r2 = bench.complete(model="claude-haiku-4-5", messages=ASK)
    assert breaker.state(label) == "open"
    assert bench.trace(r2.trace_id)["metadata"]["gateway"]["attempts"][0]["breaker_transition"] == "opened"
    # Open: the primary is skipped without a request.
    sent = len(claude.requests)
    r3 = bench.complete(model="claude-haiku-4-5", messages=ASK)
    assert len(claude.requests) == sent
    assert bench.trace(r3.trace_id)["metadata"]["gateway"]["attempts"][0] == {"target": label, "skipped": "breaker open"}
    # After the cool-down one probe goes through; it fails: open again.
    clock.now += 30
    assert breaker.state(label) == "half_open"
    claude.queue_faults([("status", 529)])
    r4 = bench.complete(model="claude-haiku-4-5", messages=ASK)
    a4 = bench.trace(r4.trace_id)["metadata"]["gateway"]["attempts"][0]
    assert a4["breaker"] == "half_open" and a4["breaker_transition"] == "reopened"
    assert breaker.state(label) == "open"
    # The next probe succeeds: closed, and the primary answers again.
    clock.now += 30
    r5 = bench.complete(model="claude-haiku-4-5", messages=ASK)
    a5 = bench.trace(r5.trace_id)["metadata"]["gateway"]["attempts"][0]
    assert a5["ok"] and a5["breaker_transition"] == "closed" and breaker.state(label) == "closed"
    assert bench.trace(r5.trace_id)["provider"] == "anthropic"
    assert r1.status == "ok"
    bench.close()


def test_every_breaker_open_raises_a_clear_error(tmp_path, servers):
    claude, gpt = servers
    clock = Clock()
    breaker = gw.CircuitBreaker(failures=1, cooldown_s=60, clock=clock)
    claude.queue_faults([("status", 529)])
    gpt.queue_faults([("status", 529)])
    bench = chain(tmp_path, claude, gpt, breaker=breaker)
    with pytest.raises(Overloaded):
        bench.complete(model="claude-haiku-4-5", messages=ASK)
    with pytest.raises(ProviderUnavailable, match="circuit breakers are open"):
        bench.complete(model="claude-haiku-4-5", messages=ASK)
    bench.close()


def test_retries_on_the_same_target_before_falling_back(tmp_path, servers):
    claude, gpt = servers
    claude.queue_faults([("status", 529, {"retry-after-ms": "1"}), ("status", 529, {"retry-after-ms": "1"})])
    primary = AnthropicProvider(api_key="test", base_url=claude.base_url, timeout=5)
    backup = OpenAIProvider(api_key="test", base_url=gpt.base_url, timeout=5)
    gateway = gw.Gateway(fallbacks=gw.Fallbacks([primary, gw.Target(backup, "gpt-4o-mini")], retries=2, breaker=False))
    with wb.open(tmp_path / "r.db", provider=gateway) as bench:
        result = bench.complete(model="claude-haiku-4-5", messages=ASK)
        assert bench.trace(result.trace_id)["provider"] == "anthropic" and result.attempts == 3
    assert gpt.completed == 0 and claude.completed == 1
