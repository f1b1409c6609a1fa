"""bench.wrap(client): the app's own anthropic client, traced, through the real SDK
against the local FakeAnthropic."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import sqlite3
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

import workbench

pytestmark = pytest.mark.backends("sqlite", "postgres")

try:  # tests/ may or may not become a package
    from .fake_anthropic import FakeAnthropic
except ImportError:
    from fake_anthropic import FakeAnthropic

try:
    from ._keys import MALFORMED_KEYS, leaks
except ImportError:
    from _keys import MALFORMED_KEYS, leaks

KEY = "sk-test-SECRET"
MODEL = "claude-haiku-4-5"
SYSTEM = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
QUESTION = "What is the capital of France?"
ARGS: dict[str, Any] = dict(
    model=MODEL,
    max_tokens=200,
    system=SYSTEM,
    messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
)
USAGE = {"input_tokens": 21, "output_tokens": 13, "cache_read_input_tokens": 34, "cache_creation_input_tokens": 55}
"""Distinct numbers, so a field mapped to the wrong column shows."""
METHODS = ["create", "create_stream", "stream"]
SYNC_ASYNC = ["sync", "async"]


@pytest.fixture
def server():
    with FakeAnthropic(delta_delay=0.02) as fake:
        fake.usage_override = dict(USAGE)
        yield fake


@pytest.fixture
def wrapped(server, bench):
    """A wrapped sync client, closed after the test."""
    with bench.wrap(sync_client(server)) as client:
        yield client


@pytest.fixture
def bench(tmp_path):
    b = workbench.open(tmp_path / "wb.db", provider="simulated")
    yield b
    b.close()


def sync_client(server: FakeAnthropic, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=server.base_url, max_retries=0)


def async_client(server: FakeAnthropic, key: str = KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=server.base_url, max_retries=0)


def llm_rows(bench: workbench.Workbench) -> list[dict[str, Any]]:
    return [r for r in bench.traces(limit=None) if r["kind"] == "llm"]


def the_row(bench: workbench.Workbench) -> dict[str, Any]:
    rows = llm_rows(bench)
    assert len(rows) == 1, rows
    return rows[0]


# -- one call of each kind, as an app would make it ---------------------------------------------


@dataclass
class Outcome:
    """What the caller got, without the ids that differ from call to call."""

    result_type: str
    text: str
    usage: tuple[int, int, int | None, int | None]
    event_types: tuple[str, ...] = ()


def _usage(u: Any) -> tuple[int, int, int | None, int | None]:
    return (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens)


def _from_events(events: list[Any], result_type: str) -> Outcome:
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = [e for e in events if e.type == "message_delta"][-1].usage
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    usage = (start.input_tokens, delta.output_tokens, start.cache_read_input_tokens, start.cache_creation_input_tokens)
    return Outcome(result_type, text, usage, tuple(e.type for e in events))


def call_sync(client: Any, method: str) -> Outcome:
    if method == "create":
        message = client.messages.create(**ARGS)
        return Outcome(type(message).__name__, message.content[0].text, _usage(message.usage))
    if method == "create_stream":
        with client.messages.create(stream=True, **ARGS) as stream:
            events = list(stream)
        return _from_events(events, type(events[0]).__name__)
    with client.messages.stream(**ARGS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text
    return Outcome(type(final).__name__, text, _usage(final.usage))


async def call_async(client: Any, method: str) -> Outcome:
    if method == "create":
        message = await client.messages.create(**ARGS)
        return Outcome(type(message).__name__, message.content[0].text, _usage(message.usage))
    if method == "create_stream":
        async with await client.messages.create(stream=True, **ARGS) as stream:
            events = [e async for e in stream]
        return _from_events(events, type(events[0]).__name__)
    async with client.messages.stream(**ARGS) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert final.content[0].text == text
    return Outcome(type(final).__name__, text, _usage(final.usage))


def call(mode: str, make_client: Any, method: str) -> Outcome:
    """Make one call with a fresh client; async clients get their own event loop."""
    if mode == "sync":
        with make_client() as client:
            return call_sync(client, method)

    async def go() -> Outcome:
        client = make_client()
        try:
            return await call_async(client, method)
        finally:
            await client.close()

    return asyncio.run(go())


def make(mode: str, server: FakeAnthropic, bench: workbench.Workbench | None = None, key: str = KEY) -> Any:
    """A client factory: plain when ``bench`` is None, else wrapped by it."""

    def factory() -> Any:
        client = (sync_client if mode == "sync" else async_client)(server, key)
        return client if bench is None else bench.wrap(client)

    return factory


# -- successful calls --------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", SYNC_ASYNC)
def test_the_caller_gets_what_the_plain_client_gives_and_one_ok_row(server, bench, mode, method):
    plain = call(mode, make(mode, server), method)
    assert llm_rows(bench) == []
    wrapped = call(mode, make(mode, server, bench), method)

    assert wrapped == plain
    assert plain.text == "Echo: " + QUESTION
    assert plain.usage == (21, 13, 34, 55)

    row = the_row(bench)
    assert (row["provider"], row["kind"], row["status"], row["simulated"]) == ("anthropic", "llm", "ok", 0)
    assert (row["model"], row["resolved_model"]) == (MODEL, MODEL)
    assert QUESTION in row["input"] and "You are terse." in row["input"]
    assert row["output"] == plain.text
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (21, 13, 34, 55)
    expected = calc_price(GPUsage(input_tokens=21 + 34 + 55, cache_read_tokens=34, cache_write_tokens=55,
                                  output_tokens=13), MODEL, provider_id="anthropic").total_price
    assert row["cost_usd"] == pytest.approx(float(expected))
    assert row["price_source"].startswith("genai-prices")
    assert row["stop_reason"] == "end_turn"
    assert row["request_id"].startswith("msg_fake_")
    assert row["attempts"] == 1 and row["parent_id"] is None and row["error"] is None
    assert row["latency_ms"] > 0
    if method == "create":
        assert row["ttft_ms"] is None
    else:
        # Five deltas 20 ms apart: the first arrives well before the last.
        assert 0 < row["ttft_ms"] <= row["latency_ms"]
        assert row["latency_ms"] - row["ttft_ms"] > 40
    assert row["metadata"]["sdk_method"] == ("messages.stream" if method == "stream" else "messages.create")


def test_stream_events_iteration_and_final_text(wrapped, bench):
    with wrapped.messages.stream(**ARGS) as stream:
        first = next(stream)
        rest = list(stream)
        text = stream.get_final_text()
        assert stream.request_id.startswith("req_fake_")  # the SDK stream's own attribute
    assert first.type == "message_start"
    assert rest[-1].type == "message_stop" and rest[-1].message.content[0].text == text
    row = the_row(bench)
    assert (row["status"], row["output"]) == ("ok", text)
    assert 0 < row["ttft_ms"] <= row["latency_ms"]


def test_a_string_system_and_string_content_are_traced_as_text(wrapped, bench):
    wrapped.messages.create(model=MODEL, max_tokens=50, system="Be brief.", stop_sequences=["zzz"],
                            messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                      {"role": "user", "content": "bye"}])
    row = the_row(bench)
    assert row["input"] == "[system]\nBe brief.\n\n[user]\nhi\n\n[assistant]\nhello\n\n[user]\nbye"
    assert row["output"] == "Echo: bye"


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", SYNC_ASYNC)
def test_an_api_error_is_raised_unchanged_and_traced(server, bench, mode, method):
    server.queue_faults([("status", 400)])
    with pytest.raises(anthropic.APIStatusError) as info:
        call(mode, make(mode, server, bench), method)
    exc = info.value
    assert type(exc) is anthropic.BadRequestError
    assert exc.status_code == 400
    sent = server.requests_to("/v1/messages")
    assert len(sent) == 1  # max_retries=0 is kept: the wrapper adds no calls
    assert exc.request_id == sent[0].request_id

    row = the_row(bench)
    assert (row["status"], row["error_type"]) == ("error", "BadRequest")
    assert "status 400" in row["error"] and "invalid_request_error" in row["error"]
    assert row["request_id"] == exc.request_id
    assert row["output"] is None and row["cost_usd"] is None and row["latency_ms"] > 0
    assert row["model"] == MODEL and QUESTION in row["input"]


@pytest.mark.parametrize("method", ["create_stream", "stream"])
@pytest.mark.parametrize("mode", SYNC_ASYNC)
def test_an_error_mid_stream_propagates_and_is_traced(server, bench, mode, method):
    server.queue_faults([("stream_error", "overloaded_error")])
    with pytest.raises(anthropic.APIStatusError) as info:
        call(mode, make(mode, server, bench), method)
    exc = info.value
    assert type(exc) is anthropic.APIStatusError and exc.type == "overloaded_error"

    row = the_row(bench)
    assert (row["status"], row["error_type"]) == ("error", "Overloaded")
    assert row["request_id"] == exc.request_id == server.requests_to("/v1/messages")[0].request_id
    partial = row["metadata"]["partial"]
    assert partial["output"] == "Echo: Wh"  # the one delta sent before the error
    assert partial["input_tokens"] == 21 and partial["cache_read_tokens"] == 34


@pytest.mark.parametrize("mode", SYNC_ASYNC)
def test_a_connection_error_is_traced(server, bench, mode):
    server.queue_faults([("drop",)])
    with pytest.raises(anthropic.APIConnectionError):
        call(mode, make(mode, server, bench), "create")
    row = the_row(bench)
    assert (row["status"], row["error_type"]) == ("error", "ProviderConnectionError")


def test_a_stream_closed_before_message_stop_is_an_incomplete_row(wrapped, bench):
    with wrapped.messages.create(stream=True, **ARGS) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break
    row = the_row(bench)
    assert (row["status"], row["error_type"]) == ("error", "IncompleteStream")
    assert row["request_id"].startswith("req_fake_")
    assert row["metadata"]["partial"]["output"] == "Echo: Wh"


def test_a_stream_dropped_unread_still_writes_its_row(wrapped, bench):
    stream = wrapped.messages.create(stream=True, **ARGS)
    next(stream)
    del stream
    assert the_row(bench)["error_type"] == "IncompleteStream"


def test_leaving_messages_stream_early_is_an_incomplete_row(server, bench):
    async def go():
        client = bench.wrap(async_client(server))
        async with client.messages.stream(**ARGS) as stream:
            async for text in stream.text_stream:
                break
        await client.close()

    asyncio.run(go())
    row = the_row(bench)
    assert (row["status"], row["error_type"]) == ("error", "IncompleteStream")
    assert row["metadata"]["partial"]["output"] == "Echo: Wh"


def test_reading_a_stream_to_message_stop_and_stopping_there_is_ok(wrapped, bench):
    stream = wrapped.messages.create(stream=True, **ARGS)
    for event in stream:
        if event.type == "message_stop":
            break
    assert the_row(bench)["status"] == "ok"
    stream.close()
    assert len(llm_rows(bench)) == 1


# -- spans and secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_a_wrapped_call_inside_a_traced_function_is_its_child(wrapped, bench, method):

    @bench.traced
    def answer():
        return call_sync(wrapped, method).text

    assert answer() == "Echo: " + QUESTION
    rows = bench.traces(limit=None)
    span = next(r for r in rows if r["kind"] == "span")
    llm = the_row(bench)
    assert llm["parent_id"] == span["id"] and llm["trace_id"] == span["trace_id"]


def test_an_async_wrapped_call_inside_an_async_traced_function_is_its_child(server, bench):
    @bench.traced
    async def answer():
        client = bench.wrap(async_client(server))
        try:
            return (await call_async(client, "stream")).text
        finally:
            await client.close()

    assert asyncio.run(answer()) == "Echo: " + QUESTION
    span = next(r for r in bench.traces(limit=None) if r["kind"] == "span")
    assert the_row(bench)["parent_id"] == span["id"]


def _text_cells(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        cells = []
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                cells += [str(v) for v in row if isinstance(v, (str, bytes))]
        return cells
    finally:
        conn.close()


def test_the_api_key_never_reaches_the_database(server, bench):
    for method in METHODS:
        call("sync", make("sync", server, bench), method)
        call("async", make("async", server, bench), method)
    server.queue_faults([("status", 401), ("stream_error", "overloaded_error")])
    for method in ("create", "create_stream"):
        with pytest.raises(anthropic.APIStatusError):
            call("sync", make("sync", server, bench), method)
    # An illegal header value makes httpx quote the Authorization header in its error.
    with pytest.raises(anthropic.APIConnectionError):
        call("sync", make("sync", server, bench, key=KEY + "\n"), "create")
    bench.flush()
    rows = llm_rows(bench)
    assert len(rows) == 9
    assert rows[0]["error_type"] == "ProviderConnectionError" and "<redacted>" in rows[0]["error"]
    cells = _text_cells(bench.path)
    assert cells and not [c for c in cells if "SECRET" in c]


# -- the stand-in itself ---------------------------------------------------------------------------


def test_the_wrapper_delegates_and_stays_traced_through_with_options(server, bench):
    with sync_client(server) as client:
        wrapped = bench.wrap(client)
        assert wrapped.unwrapped is client
        assert str(wrapped.base_url) == str(client.base_url)
        assert wrapped.messages.count_tokens(model=MODEL, messages=ARGS["messages"]).input_tokens > 0
        assert "SECRET" not in repr(wrapped)
        faster = wrapped.with_options(timeout=5)
        assert faster.unwrapped.timeout == 5
        faster.messages.create(**ARGS)
        assert len(llm_rows(bench)) == 1  # count_tokens is not a model call; create is
        assert bench.wrap(wrapped).unwrapped is client  # wrapping twice does not trace twice


def test_wrap_refuses_what_is_not_a_client(bench):
    with pytest.raises(workbench.errors.ConfigError, match="anthropic.Anthropic"):
        bench.wrap(object())


@pytest.mark.parametrize("label", list(MALFORMED_KEYS))
@pytest.mark.parametrize("mode", SYNC_ASYNC)
def test_no_part_of_a_malformed_key_reaches_the_trace(tmp_path, bench, mode, label):
    key = MALFORMED_KEYS[label]
    with FakeAnthropic(api_key="the-right-key", echo_credentials=True) as server:
        with pytest.raises(anthropic.APIError):
            call(mode, make(mode, server, bench, key=key), "create")
    row = the_row(bench)
    assert row["status"] == "error" and "<redacted>" in row["error"], row["error"]
    assert leaks(row["error"], key) == []
    assert not [cell for cell in _text_cells(bench.path) if leaks(cell, key)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", SYNC_ASYNC)
def test_one_hour_cache_writes_are_recorded_apart_and_priced(server, bench, mode, method):
    server.usage_override = {**USAGE, "cache_creation": {"ephemeral_5m_input_tokens": 15, "ephemeral_1h_input_tokens": 40}}
    call(mode, make(mode, server, bench), method)
    row = the_row(bench)
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (55, 40)
    expected = calc_price(GPUsage(input_tokens=21 + 34 + 55, cache_read_tokens=34, cache_write_tokens=55,
                                  cache_write_1h_tokens=40, output_tokens=13), MODEL, provider_id="anthropic").total_price
    assert row["cost_usd"] == pytest.approx(float(expected))
    # claude-haiku-4-5 by hand: $1 input, $5 output, $0.10 read, $1.25 5-minute and $2 1-hour writes.
    assert row["cost_usd"] == pytest.approx((21 * 1 + 13 * 5 + 34 * 0.10 + 15 * 1.25 + 40 * 2) / 1_000_000)


def retrying(mode: str, server: FakeAnthropic, bench: workbench.Workbench) -> Any:
    """A wrapped client that keeps the SDK's own retries (two, as its default)."""

    def factory() -> Any:
        cls = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
        return bench.wrap(cls(api_key=KEY, base_url=server.base_url, max_retries=2))

    return factory


SOON = {"retry-after-ms": "10"}
"""The SDK honours a wait between 0 and 60 s: 10 ms keeps the test fast and the wait real."""


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", SYNC_ASYNC)
def test_the_sdks_retries_are_counted_as_attempts(server, bench, mode, method):
    server.queue_faults([("status", 429, SOON), ("status", 529, SOON)])
    t0 = time.perf_counter()
    outcome = call(mode, retrying(mode, server, bench), method)
    wall_ms = (time.perf_counter() - t0) * 1000
    assert outcome.text == "Echo: " + QUESTION
    assert len(server.requests_to("/v1/messages")) == 3
    row = the_row(bench)
    assert (row["status"], row["attempts"]) == ("ok", 3)
    # Latency is the answering attempt's, as on the provider path; the waits are apart.
    assert row["metadata"]["retry_wait_s"] >= 0.02
    assert row["latency_ms"] + row["metadata"]["retry_wait_s"] * 1000 <= wall_ms


@pytest.mark.parametrize("mode", SYNC_ASYNC)
def test_a_call_that_fails_after_the_sdks_retries_records_every_attempt(server, bench, mode):
    server.queue_faults([("status", 529, SOON)] * 3)
    with pytest.raises(anthropic.InternalServerError):
        call(mode, retrying(mode, server, bench), "create")
    row = the_row(bench)
    assert (row["status"], row["error_type"], row["attempts"]) == ("error", "Overloaded", 3)
    assert row["request_id"] == server.requests_to("/v1/messages")[-1].request_id


def test_only_wrapped_calls_count_and_each_counts_its_own(server, bench):
    with anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=2) as client:
        wrapped = bench.wrap(client)
        server.queue_faults([("status", 529, SOON)])
        client.messages.create(**ARGS)  # the app's own call on the same client: not traced, not counted
        server.queue_faults([("status", 529, SOON)])

        def one(_: int) -> None:
            wrapped.messages.create(**ARGS)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(8)))
    rows = llm_rows(bench)
    assert len(rows) == 8 and sorted(r["attempts"] for r in rows) == [1] * 7 + [2]
    assert len(server.requests_to("/v1/messages")) == 2 + 9
