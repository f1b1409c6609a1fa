"""traces.py: rows keep text SQLite cannot store, and search takes any text."""

from __future__ import annotations

import sqlite3

import pytest

from workbench import traces
from workbench._ids import new_id
from workbench.errors import BadRequest

pytestmark = pytest.mark.backends("sqlite", "postgres")

NAME = "report-\udcff.txt"
"""What os.fsdecode makes of a file name that is not UTF-8 (bytes b'report-\\xff.txt')."""


def put(bench, **values) -> str:
    row = {"id": new_id(), "kind": "llm", "name": "chat", "status": "ok", "simulated": 1,
           "started_at": "2026-01-01T00:00:00.000000+00:00", **values}
    row.setdefault("trace_id", row["id"])
    bench.store.writer.put(traces.INSERT_SQL, traces.row(**row))
    bench.flush()
    return row["id"]


# -- lone surrogates ---------------------------------------------------------------------------


def test_a_lone_surrogate_in_a_template_variable_keeps_the_paid_calls_row(scripted_bench, scripted):
    # The provider answered (and was paid), echoing the name back: the row must not be lost.
    scripted.queue(scripted.completion(f"Summary of {NAME}"))
    prompt = scripted_bench.prompts.register("summarise", "Summarise {file}", "claude-haiku-4-5")
    result = scripted_bench.complete(prompt, file=NAME)
    assert result.status == "ok"
    [row] = scripted_bench.traces()
    assert row["id"] == result.trace_id and row["cost_usd"] > 0
    assert row["input"].endswith("Summarise report-\\udcff.txt")
    assert row["output"] == "Summary of report-\\udcff.txt"
    assert row["metadata"]["escaped_surrogates"] == ["input", "output"]


def test_a_lone_surrogate_in_error_text_and_metadata_keeps_the_row(scripted_bench, scripted):
    scripted.queue(BadRequest(f"cannot read {NAME}", status_code=400))
    with pytest.raises(BadRequest):
        scripted_bench.complete(model="claude-haiku-4-5", messages="hi", metadata={"source": NAME})
    [row] = scripted_bench.traces()
    assert row["status"] == "error" and row["error"].startswith("cannot read report-\\udcff.txt")
    # Escaped inside the JSON, so it reads back as the escape, not as the surrogate again.
    assert row["metadata"]["source"] == "report-\\udcff.txt"
    assert row["metadata"]["escaped_surrogates"] == ["error", "metadata_json"]


def test_a_lone_surrogate_in_a_traced_argument_keeps_the_span_row(bench):
    @bench.traced
    def open_file(name: str) -> str:
        return f"opened {name}"

    assert open_file(NAME) == f"opened {NAME}"
    with bench.span("read", input=NAME) as span:
        span.output = NAME
    rows = {r["name"]: r for r in bench.traces()}
    marker = " [lone surrogates written as \\udXXX by workbench]"
    traced = rows[open_file.__qualname__]
    assert traced["input"] == "report-\\udcff.txt" + marker
    assert traced["output"] == "opened report-\\udcff.txt" + marker
    assert rows["read"]["input"] == rows["read"]["output"] == "report-\\udcff.txt" + marker


def test_text_without_surrogates_is_stored_as_given():
    values = dict(id="x", trace_id="x", kind="llm", name="chat", started_at="t", status="ok",
                  input="caf\u00e9 \U0001F600 \u2028", metadata_json='{"k": "v"}')
    assert traces.row(**values) == tuple(values.get(c, 0 if c == "simulated" else None) for c in traces.COLUMNS)


# -- search ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "a\x00", "refund\x00\x00order", "a\udcffb"])
def test_search_text_with_a_nul_or_a_surrogate_never_raises(bench, text):
    hit = put(bench, input="a b refund order", output="ok")
    put(bench, input="something else", output="entirely")
    try:
        found = traces.search(bench.store, text)
        counted = traces.search_count(bench.store, text)
    except sqlite3.Error as exc:  # pragma: no cover - the failure this test is about
        pytest.fail(f"search raised {exc!r}")
    assert counted == len(found)
    if text.strip("\x00"):
        # NUL separates words like any control character: "a\x00b" finds "a b".
        assert [r["id"] for r in found] == ([hit] if "\udcff" not in text else [])
    else:
        assert len(found) == 2  # nothing to search for: every trace, as for blank text


def test_the_writer_indexes_new_traces_for_search_while_idle(tmp_path):
    """A file traced into has its search index caught up by the writer's quiet moments, not by the first search."""
    import time

    import workbench as wb
    from workbench import traces as tr

    bench = wb.open(tmp_path / "idle.db", provider="simulated")
    try:
        rows = [tr.row(id=f"{i:012d}", trace_id=f"t{i}", kind="span", name="s", started_at=tr.iso_utc(1.7e9 + i),
                       status="ok", input=f"question {i} about exports", output="answer") for i in range(3_500)]
        bench.store.writer.put_many(tr.INSERT_SQL, rows)
        bench.store.sync()
        state = "SELECT last_rowid = (SELECT MAX(rowid) FROM traces) FROM traces_fts_state"
        deadline = time.monotonic() + 120  # a condition, not a timing: generous for a busy machine
        while not bench.store.execute(state).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bench.store.execute(state).fetchone()[0] == 1
        assert tr.index_fts(bench.store) == 0  # nothing left for a search to do
        assert tr.search_count(bench.store, "exports") == 3_500
    finally:
        bench.close()
