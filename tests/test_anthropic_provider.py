"""AnthropicProvider through the real anthropic SDK against the local FakeAnthropic."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import warnings

import pytest

from workbench._retry import RetryPolicy, complete_with_retries
from workbench.errors import (
    AuthenticationFailed,
    BadRequest,
    ConfigError,
    Overloaded,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from workbench.providers.anthropic import AnthropicProvider, _retry_after
from workbench.providers.base import Provider, Request

try:
    from ._keys import MALFORMED_KEYS, leaks
except ImportError:
    from _keys import MALFORMED_KEYS, leaks

try:  # tests/ may or may not become a package
    from .fake_anthropic import FakeAnthropic
except ImportError:
    from fake_anthropic import FakeAnthropic

KEY = "sk-ant-test-0123456789"
FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.002)


@pytest.fixture
def server():
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def provider(server):
    return AnthropicProvider(api_key=KEY, base_url=server.base_url)


def run(provider: AnthropicProvider, call):
    """Run ``call`` in a fresh loop, closing the provider's connections in it."""

    async def go():
        try:
            return await call
        finally:
            await provider.aclose()

    return asyncio.run(go())


def complete(provider: AnthropicProvider, request: Request):
    return run(provider, provider.complete(request))


def failure(provider: AnthropicProvider, request: Request) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete(provider, request)
    return info.value


def test_is_a_provider(provider):
    assert isinstance(provider, Provider)
    assert (provider.name, provider.simulated) == ("anthropic", False)


def test_text_model_and_ids_come_from_the_response(server, provider):
    result = complete(provider, Request.of("claude-test-1", "hello there"))
    assert result.text == "Echo: hello there"
    assert result.model == "claude-test-1"
    assert result.stop_reason == "end_turn"
    assert result.provider == "anthropic"
    assert result.request_id is not None and result.request_id.startswith("msg_fake_")
    assert server.completed == 1
    assert server.calls_for("hello there") == 1


def test_usage_is_mapped_exactly(server, provider):
    server.usage_override = {
        "input_tokens": 11,
        "output_tokens": 7,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 300,
    }
    usage = complete(provider, Request.of("m", "hi")).usage
    assert (usage.input_tokens, usage.output_tokens) == (11, 7)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (2000, 300)
    assert usage.total_input_tokens == 2311


def test_cache_system_writes_then_reads_the_cache(server, provider):
    system = "You are a careful assistant. " * 40
    request = Request.of("m", "question one", system=system, cache_system=True)
    first = complete(provider, request).usage
    second = complete(provider, Request.of("m", "question two", system=system, cache_system=True)).usage
    assert first.cache_write_tokens > 0 and first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens and second.cache_write_tokens == 0
    # input_tokens excludes the cached prefix, as Anthropic reports it.
    assert first.input_tokens < first.cache_write_tokens
    sent = server.requests_to("/v1/messages")[0].body["system"]
    assert sent == [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]


def test_one_hour_cache_writes_are_asked_for_split_and_priced(tmp_path, server):
    import workbench as wb
    from workbench import _loop

    system = "You are a careful assistant. " * 40
    provider = AnthropicProvider(api_key=KEY, base_url=server.base_url)
    with wb.open(tmp_path / "cache.db", provider=provider) as bench:
        hour = bench.prompts.register("hour", "Q: {q}", "claude-haiku-4-5", system=system, cache_system="1h")
        five = bench.prompts.register("five", "Q: {q}", "claude-haiku-4-5", system=system + "!", cache_system=True)
        written = bench.complete(hour, q="one")
        read = bench.complete(hour, q="two")
        other = bench.complete(five, q="three")
        _loop.run_sync(provider.aclose())
        rows = {r["id"]: r for r in bench.traces()}
    sent = [r.body["system"][0]["cache_control"] for r in server.requests_to("/v1/messages")]
    assert sent == [{"type": "ephemeral", "ttl": "1h"}] * 2 + [{"type": "ephemeral"}]
    usage = written.usage
    assert usage.cache_write_tokens == usage.cache_write_1h_tokens > 0 and read.usage.cache_write_1h_tokens == 0
    row = rows[written.trace_id]
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (usage.cache_write_tokens,) * 2
    # claude-haiku-4-5: $1 input, $5 output, $2 per million tokens written to the 1-hour cache.
    expected = (usage.input_tokens * 1 + usage.output_tokens * 5 + usage.cache_write_1h_tokens * 2) / 1_000_000
    assert row["cost_usd"] == pytest.approx(expected, rel=1e-12) == written.cost_usd
    five_row = rows[other.trace_id]
    assert five_row["cache_write_tokens"] > 0 and five_row["cache_write_1h_tokens"] == 0
    assert five_row["cost_usd"] == pytest.approx(
        (five_row["input_tokens"] + five_row["output_tokens"] * 5 + five_row["cache_write_tokens"] * 1.25) / 1_000_000)
    with pytest.raises(ConfigError, match="cache_system must be True, '5m' or '1h'"):
        complete(provider, Request.of("m", "x", system="s", cache_system="2h"))


def test_usage_without_the_split_prices_every_write_as_5_minute(server, provider):
    server.usage_override = {"cache_creation_input_tokens": 300}  # an API from before the split
    assert complete(provider, Request.of("m", "hi")).usage.cache_write_1h_tokens == 0
    server.usage_override = {"cache_creation_input_tokens": 300,
                             "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}}
    usage = complete(provider, Request.of("m", "hi")).usage
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens, usage.cache_write_5m_tokens) == (300, 200, 100)


def test_plain_system_and_stop_only_when_set(server, provider):
    complete(provider, Request.of("m", "a", system="Be brief."))
    complete(provider, Request.of("m", "b", stop=["zz"], max_tokens=50))
    plain, stopped = (r.body for r in server.requests_to("/v1/messages"))
    assert plain["system"] == "Be brief."
    assert "stop_sequences" not in plain and "temperature" not in plain
    assert stopped["stop_sequences"] == ["zz"]
    assert stopped["max_tokens"] == 50 and stopped["stream"] is True
    assert "system" not in stopped


def test_temperature_is_dropped_with_one_warning(server, provider):
    # anthropic 2.x has no temperature argument and sends API version 2026-10-21,
    # which answers 400 to any temperature: the provider leaves it out and warns once.
    from workbench.providers.anthropic import IgnoredParamWarning

    with pytest.warns(IgnoredParamWarning, match="temperature"):
        first = complete(provider, Request.of("m", "a", temperature=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        complete(provider, Request.of("m", "b", temperature=0.7))
    assert first.text == "Echo: a"
    assert all("temperature" not in r.body for r in server.requests_to("/v1/messages"))


def test_fake_refuses_sampling_parameters_from_api_version_2026_10_21(server):
    import anthropic

    args = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "t"}]}
    with anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=0) as client:
        with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs"):
            client.messages.create(**args, extra_body={"temperature": 0.5})
        old = client.messages.create(
            **args, extra_body={"temperature": 0.5}, extra_headers={"anthropic-version": "2023-06-01"}
        )
    assert old.content[0].text == "Echo: t"


def test_stop_sequence_reaches_the_model(server, provider):
    server.reply = lambda body: "first part STOP second part"
    result = complete(provider, Request.of("m", "x", stop=["STOP"]))
    assert result.text == "first part "
    assert result.stop_reason == "stop_sequence"


def test_ttft_is_the_first_delta_and_precedes_the_end():
    with FakeAnthropic(delta_delay=0.03, delta_chars=4) as server:
        server.reply = lambda body: "x" * 40  # ten deltas, nine gaps of 30 ms
        provider = AnthropicProvider(api_key=KEY, base_url=server.base_url)
        result = complete(provider, Request.of("m", "time me"))
    assert result.ttft_ms is not None
    assert 0 < result.ttft_ms <= result.latency_ms
    assert result.latency_ms - result.ttft_ms >= 9 * 30 * 0.8


def test_key_is_sent_as_a_bearer_token_and_never_shown(server, provider):
    complete(provider, Request.of("m", "hi"))
    headers = server.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["anthropic-version"]
    assert KEY not in repr(provider) and KEY not in repr(vars(provider))


def test_wrong_key_is_authentication_failed():
    with FakeAnthropic(api_key="the-right-key") as server:
        provider = AnthropicProvider(api_key="a-wrong-key", base_url=server.base_url)
        error = failure(provider, Request.of("m", "hi"))
    assert isinstance(error, AuthenticationFailed) and error.status_code == 401
    assert not error.retryable


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider()


def test_key_and_base_url_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    result = complete(AnthropicProvider(), Request.of("m", "env"))
    assert result.text == "Echo: env"
    assert server.requests[-1].headers["authorization"] == "Bearer sk-from-env"


@pytest.mark.parametrize(
    ("fault", "cls", "status", "error_type", "retry_after"),
    [
        (("status", 429, {"retry-after": "3"}), RateLimited, 429, "rate_limit_error", 3.0),
        (("status", 429, {"retry-after-ms": "1500", "retry-after": "9"}), RateLimited, 429, "rate_limit_error", 1.5),
        (("status", 529), Overloaded, 529, "overloaded_error", None),
        (("status", 500), ProviderUnavailable, 500, "api_error", None),
        (("status", 503, {"retry-after": "2"}), ProviderUnavailable, 503, "api_error", 2.0),
        (("status", 400), BadRequest, 400, "invalid_request_error", None),
        (("status", 401), AuthenticationFailed, 401, "authentication_error", None),
        (("status", 408), ProviderTimeout, 408, "timeout_error", None),
    ],
)
def test_status_faults_keep_their_structure(server, provider, fault, cls, status, error_type, retry_after):
    server.queue_faults([fault])
    error = failure(provider, Request.of("m", "hi"))
    assert type(error) is cls
    assert error.status_code == status
    assert error.error_type == error_type
    assert error.request_id == server.requests[-1].request_id
    assert error.request_id.startswith("req_fake_")
    assert error.retry_after == retry_after
    assert error.retryable is (status not in (400, 401))
    assert len(server.requests) == 1, "the SDK must not retry on its own"


def test_dropped_connection_is_a_connection_error(server, provider):
    server.queue_faults([("drop",)])
    error = failure(provider, Request.of("m", "hi"))
    assert type(error) is ProviderConnectionError
    assert error.status_code is None and error.retryable


def test_connection_cut_mid_stream_is_a_connection_error(server, provider):
    server.queue_faults([("cut",)])
    error = failure(provider, Request.of("m", "hi"))
    assert type(error) is ProviderConnectionError
    assert server.completed == 0


def test_slow_answer_past_the_timeout_is_a_timeout(server):
    provider = AnthropicProvider(api_key=KEY, base_url=server.base_url, timeout=0.1)
    server.queue_faults([("slow", 0.5)])
    error = failure(provider, Request.of("m", "hi"))
    assert type(error) is ProviderTimeout and error.retryable


def test_stalled_stream_is_a_timeout():
    with FakeAnthropic(delta_delay=0.4, delta_chars=4) as server:
        provider = AnthropicProvider(api_key=KEY, base_url=server.base_url, timeout=0.1)
        error = failure(provider, Request.of("m", "stall between deltas"))
    assert type(error) is ProviderTimeout


def test_slow_answer_within_the_timeout_completes(server, provider):
    server.queue_faults([("slow", 0.05)])
    result = complete(provider, Request.of("m", "patience"))
    assert result.text == "Echo: patience"
    assert result.ttft_ms is not None and result.ttft_ms >= 50


def test_error_event_mid_stream_is_overloaded(server, provider):
    server.queue_faults([("stream_error", "overloaded_error")])
    error = failure(provider, Request.of("m", "hi"))
    assert type(error) is Overloaded and error.retryable
    assert error.error_type == "overloaded_error"
    assert error.status_code == 200  # the HTTP status really received
    assert error.request_id == server.requests[-1].request_id
    assert server.completed == 0


def test_retries_429_and_529_then_succeeds(server, provider):
    server.queue_faults([("status", 429, {"retry-after": "0"}), ("status", 529)])
    outcome = run(provider, complete_with_retries(provider, Request.of("m", "again"), FAST, random.Random(0)))
    assert outcome.error is None and outcome.completion is not None
    assert outcome.completion.text == "Echo: again"
    assert outcome.attempts == 3
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "0", "0"]
    assert server.calls_for("again") == 1


def test_bad_request_is_not_retried(server, provider):
    server.queue_faults([("status", 400)])
    outcome = run(provider, complete_with_retries(provider, Request.of("m", "bad"), FAST))
    assert outcome.completion is None and isinstance(outcome.error, BadRequest)
    assert outcome.attempts == 1
    assert len(server.requests) == 1


def test_a_given_client_is_used_without_its_retries(server):
    import anthropic

    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.base_url, max_retries=5)
    provider = AnthropicProvider(client=client)
    server.queue_faults([("status", 529)])

    async def go():
        async with client:
            with pytest.raises(Overloaded):
                await provider.complete(Request.of("m", "hi"))

    asyncio.run(go())
    assert len(server.requests) == 1


def test_one_provider_survives_several_event_loops(server, provider):
    for prompt in ("one", "two"):
        assert complete(provider, Request.of("m", prompt)).text == f"Echo: {prompt}"


def test_count_tokens(server, provider):
    request = Request.of("m", "x" * 40, system="y" * 20, max_tokens=10, temperature=0.5)
    assert run(provider, provider.count_tokens(request)) == 15
    body = server.requests[-1].body
    assert server.requests[-1].path == "/v1/messages/count_tokens"
    assert "max_tokens" not in body and "temperature" not in body
    assert server.completed == 0


def test_retry_after_parses_milliseconds_seconds_and_dates():
    soon = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert _retry_after({"retry-after-ms": "250"}) == 0.25
    assert _retry_after({"retry-after-ms": "junk", "retry-after": "4"}) == 4.0
    assert 25 < _retry_after({"retry-after": format_datetime(soon, usegmt=True)}) <= 30
    assert _retry_after({"retry-after": "not a date"}) is None
    assert _retry_after({}) is None


def test_fake_random_faults_are_seeded():
    def outcomes(seed: int) -> list[bool]:
        with FakeAnthropic() as server:
            server.fault_rate(0.5, statuses=(429, 529), seed=seed)
            provider = AnthropicProvider(api_key=KEY, base_url=server.base_url)

            async def go() -> list[bool]:
                out = []
                for i in range(12):
                    try:
                        await provider.complete(Request.of("m", str(i)))
                        out.append(True)
                    except (RateLimited, Overloaded):
                        out.append(False)
                return out

            return run(provider, go())

    first = outcomes(seed=7)
    assert first == outcomes(seed=7)
    assert 0 < first.count(False) < 12


def test_fake_rejects_unknown_faults(server):
    with pytest.raises(ValueError, match="unknown fault"):
        server.queue_faults([("explode",)])


def test_a_malformed_key_never_reaches_the_error_text(server):
    # httpx quotes an illegal header value, key included, in its error.
    secret = "sk-ant-SECRET-VALUE"
    bad = AnthropicProvider(api_key=secret + "\r", base_url=server.base_url)
    error = failure(bad, Request.of("m", "hi"))
    assert secret not in str(error) and secret not in error.message
    assert not error.retryable


@pytest.mark.parametrize("label", list(MALFORMED_KEYS))
def test_no_part_of_a_malformed_key_reaches_an_error_or_the_file(tmp_path, label):
    import workbench as wb
    from workbench import _loop

    key = MALFORMED_KEYS[label]
    with FakeAnthropic(api_key="the-right-key", echo_credentials=True) as server:
        provider = AnthropicProvider(api_key=key, base_url=server.base_url)
        bench = wb.open(tmp_path / "keys.db", provider=provider)
        try:
            with pytest.raises(ProviderError) as info:
                bench.complete(model="claude-haiku-4-5", messages="hi")
            _loop.run_sync(provider.aclose())
            [row] = bench.traces()
        finally:
            bench.close()
        echoed = [r for r in server.requests if r.headers.get("authorization")]
    error = info.value
    assert "<redacted>" in error.message and row["error"] == str(error)
    assert isinstance(error, (ProviderConnectionError, AuthenticationFailed)) and not error.retryable
    if echoed:  # the server saw the key and quoted it back: every spelling was scrubbed
        assert "invalid x-api-key: <redacted>" in error.message
    else:
        assert "Illegal header value" in error.message
    for text in (error.message, str(error), row["error"]):
        assert leaks(text, key) == [], text
    # The chained SDK exception quotes the key too: it is not kept on the raised error.
    assert error.__cause__ is None and error.__suppress_context__


def test_the_redactor_scrubs_credential_headers_and_key_fragments():
    from workbench.providers._redact import Redactor

    key = MALFORMED_KEYS["inner newline"]
    redact = Redactor([key])
    assert redact("Illegal header value b'Bearer " + repr(key)[1:-1] + "'") == "Illegal header value b'Bearer <redacted>'"
    assert redact(f"headers: {{'x-api-key': '{key[:20]}'}}") == "headers: {'x-api-key': '<redacted>'}"
    assert redact("the tail -I9j0K1l2M3n4O5p6 alone") == "the tail <redacted> alone"
    # Text that only resembles a credential stays readable.
    plain = "missing credentials: send x-api-key or Authorization: Bearer; rate limited"
    assert redact(plain) == plain and Redactor([])(plain) == plain


def test_text_that_is_not_unicode_is_a_bad_request_never_sent(server, provider):
    # A non-UTF-8 file name decodes to a lone surrogate, which the SDK cannot encode.
    error = failure(provider, Request.of("m", "summarise report-\udcff.txt"))
    assert isinstance(error, BadRequest) and not error.retryable
    assert "not sent" in error.message and "'\\udcff'" in error.message
    assert server.requests_to("/v1/messages") == []


class FrozenClock:
    """``time.time`` and ``time.perf_counter`` that move only when told to."""

    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def time(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        import time

        return getattr(time, name)


def test_latency_of_a_failed_call_starts_when_the_request_is_sent(tmp_path, server, monkeypatch):
    # A first call imports the SDK and builds its client (3 to 12 s seen): that is not the call's latency.
    import workbench as wb
    from workbench import _loop, tracing
    from workbench.providers import anthropic as provider_module

    clock = FrozenClock()
    monkeypatch.setattr(provider_module, "time", clock)
    monkeypatch.setattr(tracing, "time", clock)
    provider = AnthropicProvider(api_key=KEY, base_url=server.base_url)
    build = provider._get_client

    def slow_first_set_up():
        clock.now += 10.0
        return build()

    monkeypatch.setattr(provider, "_get_client", slow_first_set_up)
    server.queue_faults([("status", 400)])
    with wb.open(tmp_path / "latency.db", provider=provider) as bench:
        result = bench.complete(model="claude-haiku-4-5", messages="hi", raise_on_error=False)
        _loop.run_sync(provider.aclose())
        [row] = bench.traces()
    assert result.status == "error" and row["error_type"] == "BadRequest"
    # Only the set-up moved the clock: from sending to failing took no (frozen) time.
    assert row["latency_ms"] == 0.0
