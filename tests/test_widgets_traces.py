"""Full-text search over traces, the explorer's queries, and the traces widget driven from Python.

Clicks, keys, typing and Enter go through ``send_front``: the messages the
browser sends (the browser test checks that it sends them).
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import workbench as wb
from workbench import _format, traces
from workbench._ids import new_id
from workbench.widgets.traces import TracesWidget

pytestmark = pytest.mark.backends("sqlite", "postgres")

pytest.importorskip("anywidget")

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _click_errors_fail_the_test(caplog):
    """ipywidgets logs, not raises, what a click handler raises: turn that into a failure."""
    yield
    swallowed = [r.getMessage() for r in caplog.records if "Exception in callback" in r.getMessage()]
    assert not swallowed


def put(bench, n=1, *, start=T0, step=timedelta(minutes=1), **values):
    """Queue ``n`` synthetic llm rows (``values`` may hold callables of the row number); returns ids."""
    ids = []
    for i in range(n):
        row = {
            "id": new_id(), "kind": "llm", "name": "chat", "simulated": 1, "status": "ok",
            "started_at": (start + i * step).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
            "model": "claude-haiku-4-5", "input": f"question {i}", "output": f"answer {i}",
            "input_tokens": 10, "output_tokens": 5, "latency_ms": 100.0, "cost_usd": 0.0001,
        }
        row.update({k: v(i) if callable(v) else v for k, v in values.items()})
        row.setdefault("trace_id", row["id"])
        bench.store.writer.put(traces.INSERT_SQL, traces.row(**row))
        ids.append(row["id"])
    bench.flush()
    return ids


# -- traces.search ----------------------------------------------------------------------------


def test_search_finds_words_of_the_input_and_of_the_output(bench):
    a, b, _ = (
        put(bench, input="I want a refund for order 42", output="Refunds take five days")[0],
        put(bench, input="Where is my parcel?", output="Your parcel ships tomorrow")[0],
        put(bench, input="hello", output="hi there")[0],
    )
    assert [r["id"] for r in traces.search(bench.store, "refund")] == [a]
    assert [r["id"] for r in traces.search(bench.store, "tomorrow")] == [b]
    assert [r["id"] for r in traces.search(bench.store, "PARCEL where")] == [b]  # any case, every word
    assert [r["id"] for r in traces.search(bench.store, "order refunds")] == [a]  # one word in each column
    assert traces.search(bench.store, "refund parcel") == []
    assert traces.search(bench.store, "nowhere") == []
    assert [r["id"] for r in traces.search(bench.store, "ship*")] == [b]  # a trailing * is a prefix
    assert traces.search_count(bench.store, "parcel") == 1


def test_search_is_newest_first_pages_and_lists_all_on_blank_text(bench):
    ids = put(bench, 5, input=lambda i: f"same words {i}")
    found = traces.search(bench.store, "same words")
    assert [r["id"] for r in found] == ids[::-1]
    assert [r["id"] for r in traces.search(bench.store, "same", limit=2, offset=2)] == ids[::-1][2:4]
    assert traces.search_count(bench.store, "same") == 5
    assert [r["id"] for r in traces.search(bench.store, "   ")] == ids[::-1]
    assert traces.search_count(bench.store, "") == 5


def test_search_combines_with_every_trace_filter(bench):
    put(bench, 12, input="refund please",
        model=lambda i: "claude-haiku-4-5" if i % 2 else "claude-sonnet-4-5",
        status=lambda i: "error" if i % 3 == 0 else "ok",
        user_id=lambda i: f"u{i % 4}")
    put(bench, 3, input="no match here", model="claude-sonnet-4-5")
    q = traces.TraceQuery(model="claude-sonnet-4-5", status="ok")
    rows = traces.search(bench.store, "refund", q)
    assert rows and all(r["model"] == "claude-sonnet-4-5" and r["status"] == "ok" for r in rows)
    assert len(rows) == traces.search_count(bench.store, "refund", q) == 4  # i in 2, 4, 8, 10
    q = traces.TraceQuery(user_id="u1", since=(T0 + timedelta(minutes=4)).isoformat(timespec="microseconds"))
    assert [r["user_id"] for r in traces.search(bench.store, "refund", q)] == ["u1", "u1"]  # i in 9, 5


@pytest.mark.parametrize("text", [
    '"', 'say "hi', '-refund', 'refund -order', 'col:refund', 'input:refund', 'NEAR(refund order',
    'refund AND', 'OR', 'NOT order', '*', 'a*b', '(', ')', "'", '^refund', '{input output}: x', '+', '""""',
])
def test_search_text_with_fts_syntax_never_raises(bench, text):
    put(bench, input="refund for order-42: now", output='she said "hi"')
    assert isinstance(traces.search(bench.store, text), list)
    assert traces.search_count(bench.store, text) >= 0


def test_punctuated_words_match_as_phrases(bench):
    hit = put(bench, input="refund for order-42: now", output='she said "hi"')[0]
    put(bench, input="order 7 is 42 days late")
    for text in ("order-42", "order-42:", '"hi"', 'said "hi', "said-hi"):
        assert [r["id"] for r in traces.search(bench.store, text)] == [hit], text


def test_the_index_catches_up_with_new_rows_incrementally(bench):
    put(bench, 3, input="alpha")
    assert traces.index_fts(bench.store) == 3
    assert traces.index_fts(bench.store) == 0
    assert traces.search_count(bench.store, "alpha") == 3
    new = put(bench, 2, input="alpha beta")
    assert traces.search_count(bench.store, "beta") == 2  # search indexed the two new rows itself
    assert [r["id"] for r in traces.search(bench.store, "beta")] == new[::-1]
    assert traces.index_fts(bench.store) == 0
    assert traces.rebuild_fts(bench.store) == 5
    assert traces.search_count(bench.store, "alpha") == 5


def test_indexing_goes_in_chunks_and_never_twice(bench, monkeypatch):
    monkeypatch.setattr(traces, "FTS_CHUNK", 2)
    put(bench, 5, input=lambda i: f"word{i} common")
    put(bench, 1, input=None, output=None)  # nothing to index: skipped, but passed over
    assert traces.index_fts(bench.store) == 5
    put(bench, 1, input="common")
    assert traces.index_fts(bench.store) == 1
    assert traces.search_count(bench.store, "common") == 6
    assert traces.search_count(bench.store, "word3") == 1


@pytest.mark.backends("sqlite")  # SQLite's query plans
def test_the_index_adds_no_trigger_to_the_trace_writer(bench):
    triggers = bench.store.query("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
    assert [t for t in triggers if t["tbl_name"] == "traces"] == []
    assert "m007_traces_fts" in bench.store.applied_migrations()


def test_search_covers_model_calls_and_spans(bench):
    @bench.traced
    def lookup(question):
        return "the warehouse in Rotterdam"

    lookup("where is my zeppelin?")
    bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "Tell me about zeppelins"}])
    bench.flush()
    kinds = sorted(r["kind"] for r in traces.search(bench.store, "zeppelin*"))
    assert kinds == ["llm", "span"]
    assert [r["name"] for r in traces.search(bench.store, "rotterdam")] == [lookup.__qualname__]


# -- the widget -------------------------------------------------------------------------------

ROW = re.compile(r'<tr class="[^"]*" data-wb-action="row" data-wb-arg="([^"]*)"')


def front(w, **message):
    """What the browser sends on a click, a key, typing, Enter or a select; it must not fail."""
    if "arg" in message:
        message["arg"] = json.dumps(message["arg"])
    w.send_front(message)
    assert w.last_error is None, w.last_error


def shown_ids(w):
    """Trace ids of the table's rows, top to bottom, as drawn."""
    return [json.loads(html.unescape(raw)) for raw in ROW.findall(w.part("list"))]


def test_opening_shows_the_newest_page_and_the_total(bench):
    ids = put(bench, 7, prompt_name="support", prompt_version=2, user_id="u-1")
    w = wb.widgets.traces(bench, page_size=5)
    assert isinstance(w, TracesWidget) and w.total == 7
    assert [r["id"] for r in w.rows] == shown_ids(w) == ids[::-1][:5]
    assert "<b>7</b> traces" in w.part("head")
    assert "1–5 of 7" in w.part("list")
    # One-line rows: time, prompt@version, model, status, latency, cost, tokens, user; no input or output text.
    first = html.unescape(w.part("list").split("<tbody>")[1].split("</tr>")[0])
    for text in ("03-01 00:06:00", "support@v2", "claude-haiku-4-5", ">ok<", "100 ms", _format.money(0.0001), "10 → 5", "u-1"):
        assert text in first, text
    assert "question" not in w.part("list")
    assert 'class="wb-out tex2jax_ignore mathjax_ignore wb-traces"' in w.shell


def test_a_row_click_opens_the_trace_with_its_span_waterfall(bench):
    @bench.traced(name="answer_question")
    def answer(question):
        docs = retrieve(question)
        return bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": f"{docs}\n{question}"}],
                              user_id="u-7", metadata={"ticket": "T-1"}).text

    @bench.traced(name="retrieve_docs")
    def retrieve(question):
        return "doc about refunds"

    answer("How do refunds work?")
    bench.flush()
    w = TracesWidget(bench)
    names = {r["name"]: r["id"] for r in w.rows}
    assert sorted(names) == ["answer_question", "chat claude-haiku-4-5", "retrieve_docs"]
    assert w.part("detail") == ""  # nothing open yet

    front(w, type="click", action="row", arg=names["answer_question"])
    assert w.selected["id"] == names["answer_question"]
    detail = w.part("detail")
    waterfall = detail.split('class="wb-wf wb-span-tree"')[1]
    # The root first, its children nested under it, each with a bar and its duration.
    order = re.findall(r'class="wb-wf-name" style="padding-left:([\d.]+)em">([^<]+)<', waterfall)
    assert order[0] == ("0", "answer_question")
    assert sorted(order[1:]) == [("1.2", "chat claude-haiku-4-5"), ("1.2", "retrieve_docs")]
    assert waterfall.count('class="wb-wf-bar') == 3 and waterfall.count("wb-wf-row wb-sel") == 1
    spans = {r["name"]: r for r in traces.span_tree(bench.store, w.selected["trace_id"])}
    for span in spans.values():
        assert _format.ms(span["latency_ms"]) in waterfall
    # The selected row is marked in the table and brought into view.
    assert f'data-wb-reveal="{names["answer_question"]}"' in w.part("list")

    front(w, type="click", action="row", arg=names["chat claude-haiku-4-5"])
    detail = w.part("detail")
    assert "doc about refunds\nHow do refunds work?" in detail  # the full input
    assert "&quot;ticket&quot;: &quot;T-1&quot;" in detail  # metadata JSON, escaped
    assert "<div>user</div><div>u-7</div>" in detail
    assert "parent:" in detail  # a child span links to its parent
    front(w, type="click", action="close")
    assert w.selected is None and w.part("detail") == ""


def test_arrow_keys_move_the_open_row_and_n_p_turn_pages(bench):
    ids = put(bench, 12)[::-1]
    w = TracesWidget(bench, page_size=5)
    front(w, type="key", key="ArrowDown")
    assert w.selected["id"] == ids[0]
    front(w, type="key", key="j")
    front(w, type="key", key="ArrowDown")
    assert w.selected["id"] == ids[2]
    front(w, type="key", key="ArrowUp")
    assert w.selected["id"] == ids[1]
    front(w, type="key", key="n")
    assert [r["id"] for r in w.rows] == ids[5:10] and w.page == 1
    front(w, type="key", key="p")
    assert [r["id"] for r in w.rows] == ids[:5] and w.page == 0


def test_judges_calls_are_hidden_by_default_and_link_both_ways(bench):
    rows = [json.loads(line) for line in
            (Path(__file__).resolve().parent.parent / "data" / "support_qa.jsonl").read_text().splitlines()[:3]]
    ds = bench.datasets.load("d", rows)
    v1 = bench.prompts.register("support", template="Answer: {question}", model="claude-haiku-4-5")
    exp = bench.experiment("judged", dataset=ds, variants={"A": v1},
                           scorers=[wb.scorers.llm_judge("Answers the question.")]).run(progress=False)
    w = TracesWidget(bench)
    assert w.total == 3 and not any("judge" in r["tags"] for r in w.rows)
    assert "judges&#x27; calls hidden" in w.part("head")
    front(w, type="change", name="judges", value=True)
    assert w.total == 6 and sum("judge" in r["tags"] for r in w.rows) == 3
    assert w.part("list").count('<span class="wb-tag">judge</span>') == 3

    judge = next(r for r in w.rows if "judge" in r["tags"])
    front(w, type="click", action="row", arg=judge["id"])
    judged = w.selected["metadata"]["judged_trace"]
    assert f'data-wb-action="row" data-wb-arg="&quot;{judged}&quot;"' in w.part("detail")
    front(w, type="click", action="row", arg=judged)  # the link to the call it judged
    assert w.selected["id"] == judged and w.selected["variant"] == "A"
    assert f'data-wb-arg="&quot;{judge["id"]}&quot;"' in w.part("detail")  # ... which links back: judged by

    item = w.selected["item_id"]
    front(w, type="click", action="item", arg={"experiment": exp.id, "item": item})  # the experiment item
    assert w.values["experiment"] == exp.id and w.values["item"] == item
    assert w.total == 2 and {r["item_id"] for r in w.rows} == {item}
    assert f"item {item}" in w.part("filters")


def test_experiment_and_variant_filters(bench):
    put(bench, 4, experiment_id="e1", variant=lambda i: "AB"[i % 2], item_id=lambda i: f"i{i // 2}")
    put(bench, 3)
    w = TracesWidget(bench)
    assert w.total == 7
    front(w, type="change", name="experiment", value="e1")
    assert w.total == 4 and 'value="A"' in w.part("filters") and 'value="B"' in w.part("filters")
    front(w, type="change", name="variant", value="B")
    assert w.total == 2 and {r["variant"] for r in w.rows} == {"B"}
    front(w, type="change", name="experiment", value="")  # the variant goes with its experiment
    assert w.total == 7 and w.values["variant"] == ""


def test_filters_model_status_user_kind_and_prompt(bench):
    put(bench, 30,
        model=lambda i: ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5")[i % 3],
        status=lambda i: "error" if i % 5 == 0 else "ok",
        user_id=lambda i: f"user-{i % 2}",
        prompt_name=lambda i: "support" if i < 20 else "triage",
        prompt_version=lambda i: 1 + i % 2)
    w = TracesWidget(bench, page_size=100)
    assert w.total == 30
    for m in ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"):
        assert f'<option value="{m}">' in w.part("filters")

    front(w, type="change", name="model", value="claude-sonnet-4-5")
    assert w.total == len(w.rows) == 10 and {r["model"] for r in w.rows} == {"claude-sonnet-4-5"}
    front(w, type="change", name="status", value="error")
    assert [r["model"] for r in w.rows] == ["claude-sonnet-4-5"] * 2  # i = 10, 25
    front(w, type="change", name="model", value="")
    front(w, type="change", name="status", value="")
    front(w, type="input", name="user", value=" user-1 ")
    assert w.total == 30  # typing alone applies nothing ...
    front(w, type="enter", name="user", value=" user-1 ")  # ... Enter does
    assert w.total == 15 and {r["user_id"] for r in w.rows} == {"user-1"}
    front(w, type="input", name="user", value="")
    front(w, type="input", name="prompt", value="support@v2")
    front(w, type="click", action="apply")  # so does the Apply button
    assert w.total == 10 and {(r["prompt_name"], r["prompt_version"]) for r in w.rows} == {("support", 2)}
    front(w, type="enter", name="prompt", value="triage")
    assert w.total == 10 and {r["prompt_name"] for r in w.rows} == {"triage"}
    front(w, type="input", name="prompt", value="")
    front(w, type="change", name="kind", value="span")
    assert w.total == 0 and w.rows == [] and "no traces match" in w.part("list")
    front(w, type="click", action="clear")
    assert w.total == 30 and w.values["kind"] == ""


def test_time_range_filters_and_a_bad_time_is_reported(bench):
    ids = put(bench, 10, step=timedelta(hours=1))  # 00:00 .. 09:00 on 2025-03-01
    w = TracesWidget(bench)
    w.type("since", "2025-03-01T03:00:00Z")
    w.type("until", "2025-03-01 06:00")
    w.enter("until")
    assert [r["id"] for r in w.rows] == ids[3:6][::-1]  # until is exclusive
    w.type("since", "2025-03-01T05:00:00+02:00")  # 03:00 UTC
    w.type("until", "")
    w.enter("since")
    assert w.total == 7
    front(w, type="enter", name="since", value="yesterday")
    assert "since" in w.part("message") and "yesterday" in w.part("message")
    assert w.total == 7  # the last good result stays
    front(w, type="enter", name="since", value="")
    assert w.part("message") == "" and w.total == 10


def test_enter_in_the_search_box_searches_and_highlights(bench):
    put(bench, 6, input=lambda i: "my Invoice is wrong" if i % 2 else "reset my password",
        model=lambda i: "claude-haiku-4-5" if i < 3 else "claude-sonnet-4-5")
    w = TracesWidget(bench)
    front(w, type="input", name="search", value="invoice")
    assert w.total == 6  # typing does not search
    front(w, type="enter", name="search", value="invoice")
    assert w.total == 3 and w.exact and "matching &#x27;invoice&#x27;" in w.part("head")
    # Each row shows its matching passage with the match marked, case as written.
    assert w.part("list").count('<mark class="wb-hit">Invoice</mark>') == 3
    front(w, type="change", name="model", value="claude-sonnet-4-5")  # a filter keeps the search
    assert w.total == 2 and {r["model"] for r in w.rows} == {"claude-sonnet-4-5"}
    front(w, type="click", action="row", arg=w.rows[0]["id"])
    assert 'my <mark class="wb-hit">Invoice</mark> is wrong' in w.part("detail")  # and in the open trace
    front(w, type="enter", name="search", value='invoice" OR "password')  # FTS syntax is searched as text
    assert w.total == 0 and w.part("message") == ""
    front(w, type="enter", name="search", value="")
    assert w.total == 3 and "<mark" not in w.part("list")


def test_a_search_counts_up_to_a_cap(bench, monkeypatch):
    monkeypatch.setattr(traces, "SEARCH_COUNT_CAP", 4)
    put(bench, 9, input="refund please")
    w = TracesWidget(bench, page_size=5)
    w.search("refund")
    assert (w.total, w.exact) == (4, False)
    assert "<b>4+</b>" in w.part("head") and "1–5 of 4+" in w.part("list")
    front(w, type="click", action="page", arg="next")  # paging goes on past the cap
    assert len(w.rows) == 4 and w.page == 1


def test_paging_by_newer_and_older(bench):
    ids = put(bench, 23)[::-1]
    w = TracesWidget(bench, page_size=10)
    assert "1–10 of 23" in w.part("list")
    front(w, type="click", action="page", arg="next")
    assert [r["id"] for r in w.rows] == ids[10:20] and "11–20 of 23" in w.part("list")
    front(w, type="click", action="page", arg="next")
    assert [r["id"] for r in w.rows] == ids[20:] and "21–23 of 23" in w.part("list")
    assert 'data-wb-arg="&quot;next&quot;" title="Older traces (n)" disabled' in w.part("list")
    front(w, type="click", action="page", arg="next")  # past the end stays on the last page
    assert w.page == 2
    front(w, type="click", action="page", arg="prev")
    assert [r["id"] for r in w.rows] == ids[10:20]
    front(w, type="click", action="page", arg="first")
    assert [r["id"] for r in w.rows] == ids[:10]
    w.go(2)
    assert [r["id"] for r in w.rows] == ids[20:]
    w.apply()  # applying filters goes back to the first page
    assert w.page == 0


def test_health_counts_show_when_the_bench_has_them(bench, monkeypatch):
    put(bench, 1)
    assert "wb-health" not in TracesWidget(bench).part("head") or hasattr(bench, "health")

    class Health:
        written, pending, spilled, failed = 1200, 3, 0, 2

    monkeypatch.setattr(type(bench), "health", lambda self: Health(), raising=False)
    head = TracesWidget(bench).part("head")
    assert "written <b>1,200</b>" in head and "pending <b>3</b>" in head
    assert '<span class="wb-error">failed <b>2</b></span>' in head


def test_model_output_is_escaped_in_the_table_and_the_detail(bench):
    put(bench, input="<b>bold</b> & co", output="<script>alert('x')</script>", name="<img src=x onerror=alert(1)>",
        metadata_json='{"note": "<script>bad()</script>"}', user_id="<u>")
    w = TracesWidget(bench)
    w.open_row(0)
    for text in (w.part("list"), w.part("detail")):
        assert "<script>" not in text and "<img" not in text and "<u>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in w.part("detail")
    assert "&lt;img src=x onerror=alert(1)&gt;" in w.part("list")
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in w.part("detail")


def test_error_rows_show_their_error(bench):
    put(bench, status="error", output=None, error_type="RateLimitError", error="429 slow down")
    w = TracesWidget(bench)
    assert 'class="wb-status-error" title="RateLimitError">error' in w.part("list")
    w.open_row(0)
    assert "RateLimitError: 429 slow down" in w.part("detail")


# -- the explorer's queries at scale: planned to read an index or one page, never to sort the file --


def plans(store, calls):
    return [" | ".join(r[3] for r in store.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
            for sql, params in calls]


@pytest.fixture
def recorded(bench, monkeypatch):
    """Every SELECT the explorer sends, with its parameters."""
    calls = []
    store = bench.store
    for name in ("query", "execute"):
        real = getattr(store, name)

        def spy(sql, params=(), _real=real):
            if sql.lstrip().upper().startswith("SELECT") and "traces" in sql:
                calls.append((sql, list(params)))
            return _real(sql, params)

        monkeypatch.setattr(store, name, spy)
    return calls


@pytest.mark.backends("sqlite")  # SQLite's query plans
@pytest.mark.parametrize("browse", [
    traces.Browse(),
    traces.Browse(judges=True),
    traces.Browse(traces.TraceQuery(status="error", user_id="u-3")),
    traces.Browse(traces.TraceQuery(experiment_id="e1", variant="A"), item_id="i1"),
    traces.Browse(text="refund"),
    traces.Browse(traces.TraceQuery(model="claude-sonnet-4-5"), text="refund"),
], ids=["default", "judges", "rare", "item", "search", "search-filter"])
def test_counts_and_pages_never_sort_or_scan_rows_for_a_count(bench, recorded, browse):
    put(bench, 300, model=lambda i: ("claude-haiku-4-5", "claude-sonnet-4-5")[i % 2], status=lambda i: "error" if i % 50 == 0 else "ok",
        user_id=lambda i: f"u-{i % 7}", input=lambda i: "refund" if i % 3 == 0 else "login")
    recorded.clear()
    n, _ = traces.browse_count(bench.store, browse)
    rows = traces.browse_page(bench.store, browse, limit=20, total=n)
    if rows:
        traces.browse_page(bench.store, browse, limit=20, before=rows[-1]["rowid"], total=n)
    assert recorded
    for sql, plan in zip([c[0] for c in recorded], plans(bench.store, recorded)):
        # Only a rare filter's page sorts, and then only its few matches, found in the index.
        assert "TEMP B-TREE" not in plan or "INDEXED BY idx_traces_explore" in sql, (sql, plan)
        if "COUNT(*)" in sql and "traces_fts" not in sql:
            assert "SCAN traces USING COVERING INDEX" in plan or "USING INDEX idx_traces_explore" in plan, plan
        if "traces_fts AS f" in sql:  # the index of words leads; each match is one rowid lookup
            assert plan.index("SCAN f VIRTUAL TABLE") < plan.index("SEARCH t USING INTEGER PRIMARY KEY"), plan
            assert "SEARCH t USING INDEX" not in plan and "SCAN t" not in plan, plan


@pytest.mark.backends("sqlite")  # SQLite's query plans
def test_a_rare_filter_pages_from_the_index_not_a_walk(bench, recorded, monkeypatch):
    monkeypatch.setattr(traces, "SPARSE_SCAN_ROWS", 1_000)  # as at a million rows, scaled to 400
    put(bench, 400, status=lambda i: "error" if i == 5 else "ok")
    browse = traces.Browse(traces.TraceQuery(status="error"))
    n, exact = traces.browse_count(bench.store, browse)
    assert (n, exact) == (1, True)
    recorded.clear()
    (row,) = traces.browse_page(bench.store, browse, limit=50, total=n)
    assert row["status"] == "error"
    page_sql = next(sql for sql, _ in recorded if "LIMIT" in sql)
    assert "INDEXED BY idx_traces_explore" in page_sql
    # A common filter walks back from the newest row and stops after one page.
    recorded.clear()
    traces.browse_page(bench.store, traces.Browse(traces.TraceQuery(status="ok")), limit=50, total=399)
    assert "NOT INDEXED" in next(sql for sql, _ in recorded if "LIMIT" in sql)


@pytest.mark.backends("sqlite")  # SQLite's query plans
def test_the_explorer_index_matches_the_judge_expression(bench):
    (sql,) = bench.store.execute("SELECT sql FROM sqlite_master WHERE name = 'idx_traces_explore'").fetchone()
    assert traces.JUDGE_SQL in sql  # or SQLite could not read "is a judge's call" from the index


def test_a_search_within_rare_filters_looks_only_at_their_rows(bench, monkeypatch, recorded):
    put(bench, 300, user_id=lambda i: f"u-{i % 30}", input=lambda i: "refund please" if i % 2 else "login help")
    browse = traces.Browse(traces.TraceQuery(user_id="u-3"), text="refund")
    walked = []
    for candidates in (traces.SEARCH_CANDIDATES, 0):  # the rows of the filter; then the walk through every match
        monkeypatch.setattr(traces, "SEARCH_CANDIDATES", candidates)
        n, exact = traces.browse_count(bench.store, browse)
        first = traces.browse_page(bench.store, browse, limit=4, total=n)
        older = traces.browse_page(bench.store, browse, limit=4, before=first[-1]["rowid"], total=n)
        back = traces.browse_page(bench.store, browse, limit=4, after=older[0]["rowid"], total=n)
        walked.append((n, exact, [r["id"] for r in first], [r["id"] for r in older], [r["id"] for r in back],
                       [r["snippet"] for r in first]))
    assert walked[0] == walked[1]
    n, exact, first, older, back, snippets = walked[0]
    assert (n, exact) == (10, True) and len(first) == len(older) == 4 and back == first
    assert all("\x02refund\x03" in s for s in snippets)
