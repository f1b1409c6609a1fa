"""Full-text search over traces, and the traces widget driven from Python."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from workbench import traces
from workbench._ids import new_id
from workbench.widgets.traces import TracesWidget

pytest.importorskip("ipywidgets")

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


def test_opening_shows_the_newest_page_and_the_total(bench):
    ids = put(bench, 7)
    wdg = TracesWidget(bench, page_size=5)
    assert wdg.total == 7
    assert [r["id"] for r in wdg.rows] == ids[::-1][:5]
    assert wdg.page_label.value == "page 1 / 2"
    assert "<b>7</b> traces" in wdg.total_label.value
    assert wdg.prev_button.disabled and not wdg.next_button.disabled
    assert all(f"…{i[-8:]}" in wdg.table_html.value for i in ids[::-1][:5])
    assert [v for _, v in wdg.select.options] == [0, 1, 2, 3, 4]


def test_filters_model_status_user_kind_and_prompt(bench):
    put(bench, 30,
        model=lambda i: ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5")[i % 3],
        status=lambda i: "error" if i % 5 == 0 else "ok",
        user_id=lambda i: f"user-{i % 2}",
        prompt_name=lambda i: "support" if i < 20 else "triage",
        prompt_version=lambda i: 1 + i % 2)
    wdg = TracesWidget(bench, page_size=100)
    assert wdg.total == 30
    assert {"claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"} <= {v for _, v in wdg.model.options}

    wdg.model.value = "claude-sonnet-4-5"
    wdg.apply_button.click()
    assert wdg.total == len(wdg.rows) == 10
    assert {r["model"] for r in wdg.rows} == {"claude-sonnet-4-5"}

    wdg.status.value = "error"
    wdg.apply_button.click()
    assert [r["model"] for r in wdg.rows] == ["claude-sonnet-4-5"] * 2  # i = 10, 25
    assert {r["status"] for r in wdg.rows} == {"error"}

    wdg.model.value, wdg.status.value, wdg.user.value = "", "", " user-1 "
    wdg.apply_button.click()
    assert wdg.total == 15 and {r["user_id"] for r in wdg.rows} == {"user-1"}

    wdg.user.value = ""
    wdg.prompt.value = "support@v2"
    wdg.apply_button.click()
    assert wdg.total == 10
    assert {(r["prompt_name"], r["prompt_version"]) for r in wdg.rows} == {("support", 2)}
    wdg.prompt.value = "triage"
    wdg.apply_button.click()
    assert wdg.total == 10 and {r["prompt_name"] for r in wdg.rows} == {"triage"}

    wdg.prompt.value = ""
    wdg.kind.value = "span"
    wdg.apply_button.click()
    assert wdg.total == 0 and wdg.rows == [] and "no traces match" in wdg.table_html.value
    assert wdg.page_label.value == "page 1 / 1" and wdg.next_button.disabled


def test_time_range_filters_and_a_bad_time_is_reported(bench):
    ids = put(bench, 10, step=timedelta(hours=1))  # 00:00 .. 09:00 on 2025-03-01
    wdg = TracesWidget(bench)
    wdg.since.value = "2025-03-01T03:00:00Z"
    wdg.until.value = "2025-03-01 06:00"
    wdg.apply_button.click()
    assert [r["id"] for r in wdg.rows] == ids[3:6][::-1]  # until is exclusive
    wdg.since.value = "2025-03-01T05:00:00+02:00"  # 03:00 UTC
    wdg.until.value = ""
    wdg.apply_button.click()
    assert wdg.total == 7

    wdg.since.value = "yesterday"
    wdg.apply_button.click()
    assert "since" in wdg.message.value and "yesterday" in wdg.message.value
    assert wdg.total == 7  # the last good result stays
    wdg.since.value = ""
    wdg.apply_button.click()
    assert wdg.message.value == "" and wdg.total == 10


def test_search_box_narrows_rows_together_with_filters(bench):
    put(bench, 6, input=lambda i: "my invoice is wrong" if i % 2 else "reset my password",
        model=lambda i: "claude-haiku-4-5" if i < 3 else "claude-sonnet-4-5")
    wdg = TracesWidget(bench)
    wdg.search.value = "invoice"
    wdg.apply_button.click()
    assert wdg.total == 3 and all("invoice" in r["input"] for r in wdg.rows)
    assert "matching <code>invoice</code>" in wdg.total_label.value
    wdg.model.value = "claude-sonnet-4-5"
    wdg.apply_button.click()
    assert wdg.total == 2 and {r["model"] for r in wdg.rows} == {"claude-sonnet-4-5"}
    wdg.search.value = 'invoice" OR "password'  # FTS syntax is searched as text, not run
    wdg.apply_button.click()
    assert wdg.total == 0 and wdg.message.value == ""
    wdg.search.value = ""
    wdg.apply_button.click()
    assert wdg.total == 3


def test_paging_moves_by_page_size_and_updates_the_label(bench):
    ids = put(bench, 23)[::-1]
    wdg = TracesWidget(bench, page_size=10)
    assert wdg.page_label.value == "page 1 / 3"
    wdg.next_button.click()
    assert wdg.page_label.value == "page 2 / 3"
    assert [r["id"] for r in wdg.rows] == ids[10:20]
    assert not wdg.prev_button.disabled and not wdg.next_button.disabled
    wdg.next_button.click()
    assert wdg.page_label.value == "page 3 / 3" and [r["id"] for r in wdg.rows] == ids[20:]
    assert wdg.next_button.disabled
    wdg.next_button.click()  # past the end stays on the last page
    assert wdg.page_label.value == "page 3 / 3"
    wdg.prev_button.click()
    wdg.prev_button.click()
    assert wdg.page_label.value == "page 1 / 3" and [r["id"] for r in wdg.rows] == ids[:10]
    # Applying filters goes back to the first page.
    wdg.next_button.click()
    wdg.apply_button.click()
    assert wdg.page_label.value == "page 1 / 3"


def test_detail_view_shows_fields_text_metadata_and_child_spans(bench):
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
    wdg = TracesWidget(bench)
    names = [r["name"] for r in wdg.rows]
    assert sorted(names) == ["answer_question", "chat claude-haiku-4-5", "retrieve_docs"]

    wdg.select.value = names.index("answer_question")
    wdg.show_button.click()
    detail = wdg.detail_html.value
    assert "spans of this trace" in detail
    assert "retrieve_docs" in detail and "chat claude-haiku-4-5" in detail
    # Children are indented under the root, which is marked as the one shown.
    assert "<b>▶ answer_question" in detail
    assert 'padding-left:1.5em">retrieve_docs' in detail
    assert 'padding-left:1.5em">chat claude-haiku-4-5' in detail

    wdg.select.value = names.index("chat claude-haiku-4-5")
    wdg.show_button.click()
    detail = wdg.detail_html.value
    assert "<b>▶ chat claude-haiku-4-5" in detail
    assert "doc about refunds\nHow do refunds work?" in detail  # full input, in a <pre>
    assert "&quot;ticket&quot;: &quot;T-1&quot;" in detail  # metadata JSON, escaped
    assert "<td>user_id</td><td>u-7</td>" in detail
    assert "overflow:auto" in detail


def test_model_output_is_escaped_in_the_table_and_the_detail(bench):
    put(bench, input="<b>bold</b> & co", output="<script>alert('x')</script>", name="<img src=x onerror=alert(1)>",
        metadata_json='{"note": "<script>bad()</script>"}')
    wdg = TracesWidget(bench)
    wdg.show_button.click()
    for html_text in (wdg.table_html.value, wdg.detail_html.value):  # select labels are plain text
        assert "<script>" not in html_text and "<img" not in html_text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in wdg.detail_html.value
    assert "&lt;script&gt;" in wdg.table_html.value
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in wdg.detail_html.value


def test_error_rows_show_their_error(bench):
    put(bench, status="error", output=None, error_type="RateLimitError", error="429 slow down")
    wdg = TracesWidget(bench)
    assert "429 slow down" in wdg.table_html.value
    wdg.show_button.click()
    assert "RateLimitError: 429 slow down" in wdg.detail_html.value


def test_a_page_of_200k_traces_is_one_limited_query(bench):
    n = 200_000
    models = ("claude-haiku-4-5", "claude-sonnet-4-5")
    base = T0.timestamp()
    # One full row through traces.row, then cheap copies: ids that sort by time, as UUIDv7s do.
    template = list(traces.row(kind="llm", name="chat", simulated=1, status="ok", output="ok"))
    at = {c: traces.COLUMNS.index(c) for c in ("id", "trace_id", "started_at", "model", "input")}

    def synthetic(i):
        r = template.copy()
        r[at["id"]] = r[at["trace_id"]] = f"00000000-{i:012d}"
        r[at["started_at"]] = traces.iso_utc(base + i)
        r[at["model"]] = models[i % 2]
        r[at["input"]] = f"ticket {i} about {'billing' if i % 100 == 0 else 'login'}"
        return r

    rows = (synthetic(i) for i in range(n))
    bench.store.writer.put_many(traces.INSERT_SQL, rows)
    bench.flush()

    t0 = time.perf_counter()
    wdg = TracesWidget(bench, page_size=50)
    wdg.next_button.click()
    elapsed = time.perf_counter() - t0
    assert wdg.total == n and len(wdg.rows) == 50
    assert wdg.page_label.value == f"page 2 / {n // 50}"
    assert elapsed < 2.0, f"opening and one page took {elapsed:.2f} s"

    t0 = time.perf_counter()
    wdg.model.value = "claude-sonnet-4-5"
    wdg.apply_button.click()
    assert wdg.total == n // 2 and len(wdg.rows) == 50
    assert time.perf_counter() - t0 < 2.0

    # The first search indexes every row once; later searches only the new ones.
    wdg.model.value = ""
    wdg.search.value = "billing"
    wdg.apply_button.click()
    assert wdg.total == n // 100 and len(wdg.rows) == 50
    assert all("billing" in r["input"] for r in wdg.rows)
    t0 = time.perf_counter()
    wdg.next_button.click()
    assert len(wdg.rows) == 50 and time.perf_counter() - t0 < 1.0
