"""Traced model calls, retries, error traces, spans and their nesting."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from datetime import datetime, timezone

import pytest

import workbench as wb
from workbench.errors import BadRequest, ConfigError, RateLimited

pytestmark = pytest.mark.backends("sqlite", "postgres")

try:  # tests/ may or may not become a package
    from .fake_anthropic import FakeAnthropic
except ImportError:
    from fake_anthropic import FakeAnthropic

M = 1_000_000


@pytest.fixture
def support(bench):
    return bench.prompts.register(
        "support", template="Context: {context}\nQuestion: {question}", model="claude-haiku-4-5", max_tokens=200,
    )


def by_name(bench) -> dict[str, dict]:
    rows = bench.traces(limit=None)
    assert len({r["name"] for r in rows}) == len(rows), "names must be unique in these tests"
    return {r["name"]: r for r in rows}


# -- model calls -----------------------------------------------------------------------------


def test_complete_writes_one_llm_trace(bench, support):
    result = bench.complete(support, context="Pro allows up to 10 devices.", question="How many devices on Pro?")
    [row] = bench.traces()
    assert row["id"] == result.trace_id == row["trace_id"] and row["parent_id"] is None
    assert (row["kind"], row["name"], row["status"]) == ("llm", "chat claude-haiku-4-5", "ok")
    assert (row["provider"], row["simulated"], row["model"]) == ("simulated", 1, "claude-haiku-4-5")
    assert (row["prompt_name"], row["prompt_version"]) == ("support", 1)
    assert "Context: Pro allows up to 10 devices.\nQuestion: How many devices on Pro?" in row["input"]
    assert row["output"] == result.text and "10 devices" in row["output"]
    usage = result.usage
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        usage.input_tokens, usage.output_tokens, 0, 0)
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert 0 < row["ttft_ms"] <= row["latency_ms"]
    # claude-haiku-4-5: $1 input, $5 output per million tokens.
    expected = (row["input_tokens"] * 1 + row["output_tokens"] * 5) / M
    assert row["cost_usd"] == pytest.approx(expected, rel=1e-12) == result.cost_usd
    assert row["price_source"].startswith("genai-prices")
    assert row["attempts"] == result.attempts >= 1
    assert row["stop_reason"] == "end_turn" and row["request_id"].startswith("sim_msg_")
    started = datetime.fromisoformat(row["started_at"])
    assert started.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - started).total_seconds()) < 60


def test_retries_are_counted_on_one_trace(scripted_bench, scripted):
    scripted.queue(
        RateLimited("slow down", status_code=429, retry_after=0),
        RateLimited("slow down", status_code=429, retry_after=0),
        "third time lucky",
    )
    result = scripted_bench.complete(model="claude-haiku-4-5", messages="hello?")
    assert (result.text, result.attempts, scripted.calls) == ("third time lucky", 3, 3)
    [row] = scripted_bench.traces()
    assert (row["status"], row["attempts"], row["provider"], row["simulated"]) == ("ok", 3, "scripted", 0)
    assert row["error"] is None


def test_a_bad_request_is_traced_as_an_error_and_raised(scripted_bench, scripted):
    error = BadRequest("max_tokens: must be at most 64000", status_code=400, request_id="req_011abc",
                       error_type="invalid_request_error")
    scripted.queue(error)
    with pytest.raises(BadRequest) as excinfo:
        scripted_bench.complete(model="claude-haiku-4-5", messages="hello?")
    assert excinfo.value is error
    assert scripted.calls == 1  # not retried
    [row] = scripted_bench.traces()
    assert (row["status"], row["error_type"], row["request_id"], row["attempts"]) == (
        "error", "BadRequest", "req_011abc", 1)
    assert "must be at most 64000" in row["error"] and "status 400" in row["error"]
    assert row["output"] is None and row["cost_usd"] is None and row["input"].endswith("hello?")


def test_raise_on_error_false_returns_the_error(scripted_bench, scripted):
    error = BadRequest("bad", status_code=400, request_id="req_2")
    scripted.queue(error)
    result = scripted_bench.complete(model="claude-haiku-4-5", messages="hello?", raise_on_error=False)
    assert (result.status, result.text, result.error, result.cost_usd) == ("error", "", error, None)
    [row] = scripted_bench.traces()
    assert row["id"] == result.trace_id and row["status"] == "error"


def test_complete_works_inside_a_running_event_loop(bench, support):
    async def main():
        # A notebook cell: a loop is running, and the user calls the sync API.
        return bench.complete(support, context="Deleted notes stay 30 days.", question="How long?")

    result = asyncio.run(main())
    assert result.status == "ok" and result.text
    assert [r["id"] for r in bench.traces()] == [result.trace_id]


# -- spans -----------------------------------------------------------------------------------


def test_traced_sync_functions_nest(bench):
    @bench.traced
    def outer(x):
        return inner(x) + 1

    @bench.traced
    def inner(x):
        return x * 2

    assert outer(3) == 7
    rows = by_name(bench)
    o = rows["test_traced_sync_functions_nest.<locals>.outer"]
    i = rows["test_traced_sync_functions_nest.<locals>.inner"]
    assert o["parent_id"] is None and o["trace_id"] == o["id"]
    assert i["parent_id"] == o["id"] and i["trace_id"] == o["id"]
    assert (o["input"], o["output"], i["input"], i["output"]) == ("3", "7", "3", "6")
    assert o["kind"] == i["kind"] == "span" and o["status"] == "ok"


def test_traced_async_functions_nest(bench):
    @bench.traced(name="outer")
    async def outer(x):
        return await inner(x) + sync_leaf(x)

    @bench.traced(name="inner")
    async def inner(x):
        await asyncio.sleep(0)
        return x * 2

    @bench.traced(name="leaf")
    def sync_leaf(x):
        return 1

    assert asyncio.run(outer(3)) == 7
    rows = by_name(bench)
    assert rows["outer"]["parent_id"] is None
    assert rows["inner"]["parent_id"] == rows["leaf"]["parent_id"] == rows["outer"]["id"]
    assert {r["trace_id"] for r in rows.values()} == {rows["outer"]["id"]}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_exception_is_an_error_span_and_is_reraised_unchanged(bench, kind):
    error = ValueError("bad input 42")

    if kind == "sync":
        @bench.traced(name="boom")
        def boom():
            raise error

        call = boom
    else:
        @bench.traced(name="boom")
        async def aboom():
            raise error

        def call():
            return asyncio.run(aboom())

    @bench.traced(name="caller")
    def caller():
        try:
            call()
        except ValueError as exc:
            return exc

    with pytest.raises(ValueError) as excinfo:
        call()
    assert excinfo.value is error
    assert caller() is error
    rows = bench.traces(limit=None)
    booms = [r for r in rows if r["name"] == "boom"]
    assert len(booms) == 2
    assert all((r["status"], r["error_type"], r["error"]) == ("error", "ValueError", "bad input 42") for r in booms)
    [caller_row] = [r for r in rows if r["name"] == "caller"]
    assert caller_row["status"] == "ok"
    assert caller_row["id"] in {r["parent_id"] for r in booms}


def test_span_block_records_input_output_and_nesting(bench):
    @bench.traced(name="answer")
    def answer(q):
        with bench.span("retrieve", input=q) as s:
            s.output = ["doc-1", "doc-2"]
        return "ok"

    answer("refunds?")
    with pytest.raises(KeyError):
        with bench.span("lookup"):
            raise KeyError("sku-9")
    rows = by_name(bench)
    retrieve = rows["retrieve"]
    assert (retrieve["kind"], retrieve["status"], retrieve["input"], retrieve["output"]) == (
        "span", "ok", "refunds?", "['doc-1', 'doc-2']")
    assert retrieve["parent_id"] == rows["answer"]["id"]
    assert retrieve["latency_ms"] >= 0
    lookup = rows["lookup"]
    assert (lookup["status"], lookup["error_type"], lookup["parent_id"]) == ("error", "KeyError", None)


def test_a_call_inside_a_traced_function_is_its_child(bench, support):
    @bench.traced(name="handle_ticket")
    def handle_ticket(question):
        with bench.span("retrieve") as s:
            s.output = "Pro allows up to 10 devices."
        return bench.complete(support, context=s.output, question=question).text

    handle_ticket("How many devices on Pro?")
    rows = bench.traces(limit=None)
    [root] = [r for r in rows if r["name"] == "handle_ticket"]
    [llm] = [r for r in rows if r["kind"] == "llm"]
    assert llm["parent_id"] == root["id"] and llm["trace_id"] == root["id"]


def test_spans_across_gather_keep_their_parents(bench, support):
    @bench.traced(name="leaf")
    async def leaf(i):
        await asyncio.sleep(0.002 * (4 - i))  # finish in the opposite order to the start
        return i

    @bench.traced(name="branch")
    async def branch(i):
        await asyncio.sleep(0.001 * i)
        await bench.acomplete(support, context=f"Branch {i} text.", question=f"Branch {i}?")
        return await leaf(i)

    @bench.traced(name="root")
    async def root():
        return await asyncio.gather(*(branch(i) for i in range(4)))

    assert asyncio.run(root()) == [0, 1, 2, 3]
    rows = bench.traces(limit=None)
    [r] = [x for x in rows if x["name"] == "root"]
    branches = {x["input"]: x for x in rows if x["name"] == "branch"}
    leaves = {x["input"]: x for x in rows if x["name"] == "leaf"}
    calls = {x["input"].split("Branch ")[1][0]: x for x in rows if x["kind"] == "llm"}
    assert sorted(branches) == sorted(leaves) == sorted(calls) == ["0", "1", "2", "3"]
    for i, b in branches.items():
        assert b["parent_id"] == r["id"]
        assert leaves[i]["parent_id"] == b["id"]
        assert calls[i]["parent_id"] == b["id"]
    assert {x["trace_id"] for x in rows} == {r["id"]}


def test_span_ids_sort_in_start_order(bench):
    @bench.traced(name="step")
    def step(i):
        return i

    for i in range(200):
        step(i)
    rows = bench.traces(limit=None)  # newest id first
    assert [int(r["input"]) for r in rows] == list(range(199, -1, -1))
    assert all(uuid.UUID(r["id"]).version == 7 for r in rows)


# -- secrets ---------------------------------------------------------------------------------


SENTINEL = "sk-ant-SENTINEL-do-not-store-8c1f3a"


def test_no_api_key_or_auth_header_lands_in_the_database(tmp_path, monkeypatch):
    from workbench import _loop
    from workbench.providers.anthropic import AnthropicProvider

    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)
    path = tmp_path / "secrets.db"
    with FakeAnthropic(api_key=SENTINEL) as server:
        provider = AnthropicProvider(base_url=server.base_url)  # the key comes from the environment
        bench = wb.open(path, provider=provider)
        try:
            v = bench.prompts.register("echo", template="Say {word}.", model="claude-haiku-4-5")
            bench.complete(v, word="hello")
            server.queue_faults([("status", 429, {"retry-after": "0"}), ("status", 401), ("status", 400)])
            bench.complete(v, word="again", raise_on_error=False)  # 429 retried, then 401
            bench.complete(v, word="third", raise_on_error=False)  # 400
        finally:
            _loop.run_sync(provider.aclose())
            bench.close()
    conn = sqlite3.connect(path)
    statuses = sorted(r[0] for r in conn.execute("SELECT status FROM traces"))
    assert statuses == ["error", "error", "ok"]
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for col in [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]:
            hits = conn.execute(
                f'SELECT COUNT(*) FROM "{table}" WHERE CAST("{col}" AS TEXT) LIKE ? OR CAST("{col}" AS TEXT) LIKE ?',
                (f"%{SENTINEL}%", "%Bearer %"),
            ).fetchone()[0]
            assert hits == 0, f"{table}.{col} holds the API key or an auth header"
    conn.close()
    for file in tmp_path.iterdir():
        assert SENTINEL.encode() not in file.read_bytes(), file.name


def test_a_template_variable_named_like_an_option_goes_in_variables(bench):
    v = bench.prompts.register("clash", template="Use {model} for {tags}", model="claude-haiku-4-5")
    result = bench.complete(v, variables={"model": "the big one", "tags": "everything"})
    row = bench.trace(result.trace_id)
    assert "Use the big one for everything" in row["input"] and row["model"] == "claude-haiku-4-5"


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([{"role": "user"}], "messages[0] must be"),
        (5, "got int"),
        ([], "(empty)"),
        ([{"role": "system", "content": "x"}], "system prompt goes in system="),
        ([{"role": "user", "content": 3}], "content must be text"),
    ],
)
def test_malformed_messages_are_a_config_error_naming_the_turn(bench, messages, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        bench.complete(model="claude-haiku-4-5", messages=messages)
    assert bench.traces() == []  # refused before any call
