"""The OpenAI-compatible provider against a local fake of the Chat Completions API."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("openai")

import workbench as wb
from workbench.errors import (
    BadRequest,
    ConfigError,
    Overloaded,
    ProviderConnectionError,
    ProviderUnavailable,
    RateLimited,
)
from workbench.providers.base import Request
from workbench.providers.openai import MissingUsageWarning, OpenAIProvider

try:
    from ._keys import MALFORMED_KEYS, leaks
    from .fake_openai import FakeOpenAI
except ImportError:
    from _keys import MALFORMED_KEYS, leaks
    from fake_openai import FakeOpenAI


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


def run(provider: OpenAIProvider, request: Request):
    async def go():
        try:
            return await provider.complete(request)
        finally:
            await provider.aclose()

    return asyncio.run(go())


def test_usage_moves_cached_prompt_tokens_out_of_input(server):
    server.cached_tokens = 5
    provider = OpenAIProvider(api_key="test", base_url=server.base_url)
    c = run(provider, Request.of("gpt-4o-mini", "How do I export my data to a spreadsheet?", system="Be brief."))
    assert c.text.startswith("Echo: How do I export")
    prompt_tokens = server.answer(server.requests[0], 0)["usage"]["prompt_tokens"]
    # OpenAI's prompt_tokens includes the cached ones; ours excludes them.
    assert c.usage.cache_read_tokens == 5
    assert c.usage.input_tokens == prompt_tokens - 5
    assert c.stop_reason == "end_turn" and c.provider == "openai" and c.ttft_ms is not None
    assert server.requests[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_traced_call_is_priced_with_openai_prices(tmp_path, server):
    server.cached_tokens = 4
    provider = OpenAIProvider(api_key="test", base_url=server.base_url)
    with wb.open(tmp_path / "o.db", provider=provider) as bench:
        result = bench.complete(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there, how are you"}])
        row = bench.trace(result.trace_id)
    from genai_prices import Usage as GP
    from genai_prices import calc_price

    expected = calc_price(
        GP(input_tokens=row["input_tokens"] + 4, cache_read_tokens=4, output_tokens=row["output_tokens"]),
        "gpt-4o-mini", provider_id="openai",
    ).total_price
    assert row["provider"] == "openai" and row["cache_read_tokens"] == 4
    assert row["cost_usd"] == pytest.approx(float(expected))


def test_max_tokens_cut_is_reported_as_max_tokens(server):
    provider = OpenAIProvider(api_key="test", base_url=server.base_url)
    c = run(provider, Request.of("gpt-4o-mini", "x" * 200, max_tokens=3))
    assert c.stop_reason == "max_tokens"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (("status", 429), RateLimited),
        (("status", 529), Overloaded),
        (("status", 503), ProviderUnavailable),
        (("status", 400), BadRequest),
        (("drop",), ProviderConnectionError),
        (("cut",), ProviderConnectionError),
        (("stream_error", "server_error"), ProviderUnavailable),
    ],
)
def test_failures_map_to_workbench_errors(server, fault, error):
    server.queue_faults([fault])
    provider = OpenAIProvider(api_key="test", base_url=server.base_url)
    with pytest.raises(error):
        run(provider, Request.of("gpt-4o-mini", "hi"))
    assert len(server.requests) == 1, "the SDK must not retry on its own: every attempt is ours to count"


def test_base_url_without_v1_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="/v1"):
        OpenAIProvider(api_key="test", base_url="http://127.0.0.1:9")


def test_no_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIProvider(base_url="http://127.0.0.1:9/v1")


def test_a_server_that_sends_no_usage_gives_unknown_tokens_and_cost_not_zero(tmp_path, server):
    server.sends_usage = False  # many local servers ignore stream_options.include_usage
    provider = OpenAIProvider(api_key="test", base_url=server.base_url)
    with wb.open(tmp_path / "o.db", provider=provider) as bench:
        with pytest.warns(MissingUsageWarning, match="no token usage"):
            result = bench.complete(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        row = bench.trace(result.trace_id)
    assert result.text.startswith("Echo:") and result.cost_usd is None
    assert row["status"] == "ok" and row["cost_usd"] is None
    assert row["input_tokens"] is None and row["output_tokens"] is None
    assert row["metadata"]["usage"] == "not reported by the provider"


@pytest.mark.parametrize("label", list(MALFORMED_KEYS))
def test_no_part_of_a_malformed_key_reaches_an_error_or_the_file(tmp_path, server, label):
    key = MALFORMED_KEYS[label]
    provider = OpenAIProvider(api_key=key, base_url=server.base_url)
    with wb.open(tmp_path / "keys.db", provider=provider) as bench:
        result = bench.complete(model="gpt-4o-mini", messages="hi", raise_on_error=False)
        row = bench.trace(result.trace_id)
    if result.status == "ok":  # a key httpx accepts reaches the fake, which takes any key
        return
    error = result.error
    for text in (error.message, str(error), row["error"], repr(error.__cause__)):
        assert leaks(text, key) == [], text
