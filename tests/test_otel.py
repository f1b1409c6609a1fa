"""OpenTelemetry out and in: OTLP round trip between two files, SDK-recorded GenAI spans, malformed payloads."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request

import pytest

import workbench as wb
from workbench import otel
from workbench.errors import BadRequest, ConfigError
from workbench.otel._mapping import span_attributes
from workbench.providers.base import Usage

pytest.importorskip("opentelemetry.sdk.trace", reason="needs the otel extra: pip install 'workbench[otel]'")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="needs the otel extra")

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: E402

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
def receiver(tmp_path):
    """A second file with an OTLP server in front of it."""
    b = wb.open(tmp_path / "received.db", provider="simulated")
    server = otel.serve(b, port=0)
    yield b, server
    server.stop()
    b.close()


def all_rows(bench) -> list[dict]:
    bench.flush()
    return bench.store.query("SELECT * FROM traces ORDER BY id")


def post(url: str, body: bytes, content_type: str = "application/json", headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def varied_traces(tmp_path, scripted):
    """A file with every kind of row: nested spans, ok and failed calls, cache tokens,
    an unpriced model, experiment context, tags, metadata and a simulated provider."""
    bench = wb.open(tmp_path / "source.db", provider=scripted)
    scripted.queue(
        scripted.completion("cached answer", input_tokens=40, cache_read_tokens=2000, cache_write_tokens=300,
                            output_tokens=55, latency_ms=812.345678, ttft_ms=201.5),
        BadRequest("max_tokens: 999999 is over the model's limit", status_code=400, request_id="req_bad"),
        scripted.completion("from a model with no price", model="house-model-1"),
    )

    @bench.traced
    def answer(question: str) -> str:
        with bench.span("retrieve", input=question) as s:
            s.output = ["doc-1", "doc-2"]
        return bench.complete(model="claude-sonnet-4-5", messages=question, user_id="u-7",
                              tags=["beta", "eu"], metadata={"ticket": 42, "route": "faq"}).text

    answer("How do I reset my password?")
    bench.complete(model="claude-haiku-4-5", messages="too long", raise_on_error=False)
    with pytest.warns(UserWarning, match="house-model-1"):
        bench.complete(model="house-model-1", messages="hello")
    sim = wb.open(tmp_path / "source.db", provider=wb.bench.make_provider("simulated", time_scale=0))
    v = sim.prompts.register("support", "Q: {question}", "claude-haiku-4-5", max_tokens=50)
    ds = sim.datasets.load("tiny", [{"id": "q1", "inputs": {"question": "refund?"}, "expected": "refund"}])
    sim.experiment("tiny", dataset=ds, variants={"A": v}, scorers=[wb.scorers.contains_reference()],
                   repeats=2).run()
    sim.close()
    return bench


def test_otlp_round_trip_gives_back_every_trace_field_by_field(tmp_path, receiver, scripted):
    source = varied_traces(tmp_path, scripted)
    target, server = receiver
    try:
        sent = otel.export(source, server.url)
        rows, back = all_rows(source), all_rows(target)
    finally:
        source.close()
    assert sent == len(rows) >= 7
    kinds = {(r["kind"], r["status"]) for r in rows}
    assert {("span", "ok"), ("llm", "ok"), ("llm", "error")} <= kinds
    assert any(r["cost_usd"] is None and r["kind"] == "llm" and r["status"] == "ok" for r in rows)
    assert any(r["experiment_id"] and r["repeat"] == 1 for r in rows)
    assert len(back) == len(rows)
    for a, b in zip(rows, back):
        assert a == b  # every column, ids, parents, times, tokens, cost, texts, JSON


def test_genai_input_tokens_include_cache_and_come_back_without_it(tmp_path, receiver):
    row = {"id": "01900000-0000-7000-8000-000000000001", "trace_id": "01900000-0000-7000-8000-000000000001",
           "kind": "llm", "status": "ok", "input_tokens": 40, "cache_read_tokens": 2000, "cache_write_tokens": 300,
           "output_tokens": 5, "started_at": "2026-01-01T00:00:00.000000+00:00"}
    attrs = span_attributes(row)
    assert attrs["gen_ai.usage.input_tokens"] == 2340
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 2000
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 300


def sdk_tracer(endpoint: str, **exporter_kwargs):
    provider = TracerProvider(resource=Resource.create({"service.name": "support-api"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, **exporter_kwargs)))
    return provider, provider.get_tracer("app")


def test_ingests_genai_spans_recorded_by_the_opentelemetry_sdk(receiver):
    target, server = receiver
    provider, tracer = sdk_tracer(server.url)
    with tracer.start_as_current_span("handle ticket") as root:
        root.set_attribute("user.id", "cust-9")
        with tracer.start_as_current_span("chat claude-sonnet-4-5", kind=SpanKind.CLIENT) as call:
            call.set_attribute("gen_ai.operation.name", "chat")
            call.set_attribute("gen_ai.provider.name", "anthropic")
            call.set_attribute("gen_ai.request.model", "claude-sonnet-4-5")
            call.set_attribute("gen_ai.response.model", "claude-sonnet-4-5-20250929")
            call.set_attribute("gen_ai.response.id", "msg_01abc")
            call.set_attribute("gen_ai.response.finish_reasons", ["end_turn"])
            call.set_attribute("gen_ai.usage.input_tokens", 3300)  # includes the cached 3000
            call.set_attribute("gen_ai.usage.cache_read.input_tokens", 2000)
            call.set_attribute("gen_ai.usage.cache_creation.input_tokens", 1000)
            call.set_attribute("gen_ai.usage.output_tokens", 500)
            call.set_attribute("gen_ai.input.messages", json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": "Where is my refund?"}]}]))
            call.set_attribute("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": "It is on its way."}]}]))
        with tracer.start_as_current_span("chat claude-haiku-4-5", kind=SpanKind.CLIENT) as failed:
            failed.set_attribute("gen_ai.operation.name", "chat")
            failed.set_attribute("gen_ai.request.model", "claude-haiku-4-5")
            failed.set_attribute("error.type", "overloaded_error")
            failed.set_status(Status(StatusCode.ERROR, "529 Overloaded"))
    assert provider.force_flush(30_000)
    provider.shutdown()
    rows = {r["name"]: r for r in all_rows(target)}
    assert set(rows) == {"handle ticket", "chat claude-sonnet-4-5", "chat claude-haiku-4-5"}
    call, root, failed = rows["chat claude-sonnet-4-5"], rows["handle ticket"], rows["chat claude-haiku-4-5"]
    assert call["kind"] == "llm" and root["kind"] == "span"
    assert (call["input_tokens"], call["cache_read_tokens"], call["cache_write_tokens"], call["output_tokens"]) == (
        300, 2000, 1000, 500)
    assert call["model"] == "claude-sonnet-4-5" and call["resolved_model"] == "claude-sonnet-4-5-20250929"
    assert call["provider"] == "anthropic" and call["request_id"] == "msg_01abc" and call["stop_reason"] == "end_turn"
    # Priced from the tokens with Anthropic's semantics, since the span carried no cost.
    expected, _ = target.pricing.cost("claude-sonnet-4-5", Usage(300, 500, 2000, 1000))
    assert call["cost_usd"] == pytest.approx(expected) and call["cost_usd"] > 0
    assert call["input"] == "[user]\nWhere is my refund?" and call["output"] == "It is on its way."
    # Children were exported before their parent ended: linked once the parent arrived.
    assert call["parent_id"] == root["id"] and failed["parent_id"] == root["id"]
    assert call["trace_id"] == root["trace_id"] == failed["trace_id"]
    assert root["user_id"] == "cust-9" and json.loads(root["metadata_json"])["otel"]["service"] == "support-api"
    assert failed["status"] == "error" and failed["error_type"] == "overloaded_error"
    assert failed["error"] == "529 Overloaded" and failed["cost_usd"] is None
    assert root["started_at"] <= call["started_at"] <= failed["started_at"]
    assert [r["name"] for r in target.traces(limit=None)][-1] == "handle ticket"  # ids sort by start time


def any_value(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": v}


def json_export(spans: list[dict], service: str = "svc") -> bytes:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": [
            {"traceId": s.get("traceId", "5b8efff798038103d269b633813fc60c"), "spanId": s["spanId"],
             "name": s["name"], "kind": 3, "startTimeUnixNano": "1767225600000000000",
             "endTimeUnixNano": "1767225601250000000",
             "attributes": [{"key": k, "value": any_value(v)} for k, v in s["attrs"].items()]}
            for s in spans
        ]}],
    }]}).encode()


def test_ingests_openinference_and_openllmetry_attributes_as_json(receiver):
    target, server = receiver
    body = json_export([
        {"spanId": "eee19b7ec3c1b174", "name": "ChatAnthropic", "attrs": {
            "openinference.span.kind": "LLM", "llm.model_name": "claude-haiku-4-5", "llm.provider": "anthropic",
            "llm.token_count.prompt": 1100, "llm.token_count.prompt_details.cache_read": 1000,
            "llm.token_count.completion": 20, "input.value": "What plans do you offer?",
            "output.value": "Free and Pro.", "user.id": "u1"}},
        {"spanId": "eee19b7ec3c1b175", "name": "anthropic.chat", "attrs": {
            "llm.request.type": "chat", "gen_ai.system": "Anthropic", "gen_ai.request.model": "claude-haiku-4-5",
            "gen_ai.usage.prompt_tokens": 250, "gen_ai.usage.cache_creation_input_tokens": 200,
            "gen_ai.usage.completion_tokens": 30, "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "Cancel my plan", "gen_ai.completion.0.content": "Done.",
            "gen_ai.completion.0.finish_reason": "end_turn", "custom.flag": True}},
    ])
    status, _ = post(server.url, body)
    assert status == 200
    oi, ol = sorted(all_rows(target), key=lambda r: r["name"])
    assert (oi["name"], oi["kind"], oi["model"], oi["provider"]) == ("ChatAnthropic", "llm", "claude-haiku-4-5", "anthropic")
    assert (oi["input_tokens"], oi["cache_read_tokens"], oi["output_tokens"]) == (100, 1000, 20)
    assert (oi["input"], oi["output"], oi["user_id"]) == ("What plans do you offer?", "Free and Pro.", "u1")
    assert oi["latency_ms"] == 1250.0 and oi["started_at"] == "2026-01-01T00:00:00.000000+00:00"
    assert (ol["kind"], ol["provider"], ol["input_tokens"], ol["cache_write_tokens"]) == ("llm", "Anthropic", 50, 200)
    assert (ol["input"], ol["output"], ol["stop_reason"]) == ("[user]\nCancel my plan", "Done.", "end_turn")
    assert oi["cost_usd"] > 0 and ol["cost_usd"] > 0  # priced from the tokens
    assert json.loads(ol["metadata_json"])["otel"]["attributes"] == {"custom.flag": True}


def test_malformed_payloads_get_a_clear_4xx_and_write_nothing(receiver):
    target, server = receiver
    bad_id = json_export([{"spanId": "eee19b7ec3c1b174", "traceId": "xyz", "name": "x", "attrs": {}}])
    cases = [
        (b"{not json", "application/json", 400, "not JSON"),
        (bad_id, "application/json", 400, "traceId: 'xyz' is not 32 hex digits"),
        (json.dumps({"resourceSpans": {}}).encode(), "application/json", 400, "expected a list"),
        (b"\xff\xff\xff\xff", "application/x-protobuf", 400, "not an OTLP ExportTraceServiceRequest"),
        (b"{}", "text/plain", 415, "send application/x-protobuf or application/json"),
        # Numbers the file cannot hold, or that mean nothing: the sender's error (4xx), never a 5xx a
        # collector would retry forever.
        (json_export([{"spanId": "eee19b7ec3c1b174", "name": "x", "attrs": {
            "gen_ai.request.model": "claude-haiku-4-5", "gen_ai.usage.input_tokens": 99999999999999999999999}}]),
         "application/json", 400, "does not fit in 64 bits"),
        (json_export([{"spanId": "eee19b7ec3c1b174", "name": "x", "attrs": {
            "gen_ai.request.model": "claude-haiku-4-5", "gen_ai.usage.output_tokens": -3}}]),
         "application/json", 400, "output_tokens = -3 is not a count"),
        (json_export([{"spanId": "eee19b7ec3c1b174", "name": "x", "attrs": {}}]).replace(
            b'"startTimeUnixNano": "1767225600000000000"', b'"startTimeUnixNano": "-5"'),
         "application/json", 400, "startTimeUnixNano: '-5' is not a time"),
    ]
    for body, ctype, code, message in cases:
        status, reply = post(server.url, body, ctype)
        assert status == code, (body, reply)
        if ctype == "application/x-protobuf":
            from google.rpc.status_pb2 import Status as RpcStatus

            assert message in RpcStatus.FromString(reply).message
        else:
            assert message in json.loads(reply)["message"]
    status, reply = post(server.url.replace("/v1/traces", "/v1/logs"), b"{}")
    assert status == 404 and "/v1/traces" in json.loads(reply)["message"]
    status, _ = post(server.url, gzip.compress(json_export([{"spanId": "eee19b7ec3c1b174", "name": "ok", "attrs": {}}])),
                     headers={"Content-Encoding": "gzip"})
    assert status == 200
    assert [r["name"] for r in all_rows(target)] == ["ok"]


def test_a_span_sent_twice_is_stored_once(receiver):
    target, server = receiver
    body = json_export([{"spanId": "eee19b7ec3c1b174", "name": "retry me", "attrs": {}}])
    assert post(server.url, body)[0] == 200
    assert post(server.url, body)[0] == 200
    assert len(all_rows(target)) == 1


def test_bearer_token_is_required_off_loopback_and_checked(tmp_path):
    bench = wb.open(tmp_path / "t.db", provider="simulated")
    try:
        with pytest.raises(ConfigError, match="token"):
            otel.OtlpServer(bench.store, "0.0.0.0", 0, token=None)
        server = otel.serve(bench, port=0, token="s3cret")
        try:
            body = json_export([{"spanId": "eee19b7ec3c1b174", "name": "x", "attrs": {}}])
            assert post(server.url, body)[0] == 401
            assert post(server.url, body, headers={"Authorization": "Bearer wrong"})[0] == 401
            assert post(server.url, body, headers={"Authorization": "Bearer s3cret"})[0] == 200
            provider, tracer = sdk_tracer(server.url, headers={"Authorization": "Bearer s3cret"})
            with tracer.start_as_current_span("from the sdk"):
                pass
            assert provider.force_flush(30_000)
            provider.shutdown()
        finally:
            server.stop()
        assert sorted(r["name"] for r in all_rows(bench)) == ["from the sdk", "x"]
    finally:
        bench.close()


def test_live_export_sends_each_new_trace_and_close_flushes(tmp_path, scripted):
    bench = wb.open(tmp_path / "live.db", provider=scripted)
    memory = InMemorySpanExporter()
    live = otel.live(bench, exporter=memory, interval=60)  # only a full batch or close() sends
    scripted.queue("hi")

    @bench.traced(name="handler")
    def handler(q: str) -> str:
        return bench.complete(model="claude-haiku-4-5", messages=q).text

    handler("hello")
    bench.close()  # closes the exporter: what it held is sent
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == {"handler", "chat claude-haiku-4-5"}
    call, parent = spans["chat claude-haiku-4-5"], spans["handler"]
    assert call.kind is SpanKind.CLIENT and call.parent.span_id == parent.context.span_id
    assert call.context.trace_id == parent.context.trace_id
    assert call.attributes["gen_ai.request.model"] == "claude-haiku-4-5"
    assert call.attributes["gen_ai.usage.input_tokens"] == 100 and call.attributes["workbench.cost_usd"] > 0
    assert live.exported == 2 and live.dropped == 0


def test_a_failing_exporter_never_breaks_the_traced_call(bench):
    class Broken(InMemorySpanExporter):
        def export(self, spans):
            raise RuntimeError("collector on fire")

    live = otel.live(bench, exporter=Broken(), interval=0.05)

    @bench.traced
    def work(x: int) -> int:
        return x * 2

    assert [work(i) for i in range(5)] == [0, 2, 4, 6, 8]
    with pytest.warns(RuntimeWarning, match="not exported: collector on fire"):
        live.flush()
        deadline = time.monotonic() + 30
        while live.failed < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert live.failed == 5
    bench.flush()
    assert len(bench.traces()) == 5  # the file has every row regardless


def test_cli_export_otlp_sends_the_file(tmp_path, receiver, scripted_bench, scripted):
    from click.testing import CliRunner

    from workbench.cli import cli

    target, server = receiver
    scripted.queue("a", "b")
    scripted_bench.complete(model="claude-haiku-4-5", messages="one")
    scripted_bench.complete(model="claude-haiku-4-5", messages="two")
    scripted_bench.flush()
    result = CliRunner().invoke(cli, ["export", "otlp", "--endpoint", server.url.removesuffix("/v1/traces"),
                                      "--no-content", "--db", scripted_bench.path])
    assert result.exit_code == 0, result.output
    assert "sent 2 spans" in result.output
    rows = all_rows(target)
    assert len(rows) == 2 and all(r["input"] is None and r["output"] is None for r in rows)
