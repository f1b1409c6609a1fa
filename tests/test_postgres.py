"""The store on PostgreSQL: migrations, the batched writer's promises, errors, the write lock.

The SQLite file's own suite is ``test_store.py``; the modules' suites (prompts, datasets,
experiments, frames, feedback, traces, gateway limits, ...) run on both back ends through
the ``backends`` marker (``conftest.py``). Each test here gets a new database.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

import workbench as wb
import workbench.migrations as wb_migrations
from conftest import postgres_url
from workbench import frames, traces
from workbench.errors import (
    ConfigError,
    NotAWorkbenchDatabase,
    ReadOnlyDatabase,
    RowsNotWritten,
    StoreError,
)
from workbench.providers.simulated import SimulatedProvider
from workbench.store import BatchWriter, Store

psycopg = pytest.importorskip("psycopg")

PROMPTS_COLUMNS = [
    "id", "name", "version", "template", "model", "params_json", "variables_json", "content_hash", "created_at",
]


@pytest.fixture
def url():
    return postgres_url()


@pytest.fixture
def pg(url):
    s = Store(url)
    yield s
    s.close()


def raw(url: str):
    return psycopg.connect(url, autocommit=True)


def columns(url: str, table: str) -> list[str]:
    with raw(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position", (table,)
        ).fetchall()
    return [r[0] for r in rows]


def count(url: str, where: str = "", params: tuple = ()) -> int:
    with raw(url) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM traces {where}", params).fetchone()[0]


def span_row(i: int, name: str = "step") -> tuple:
    return (f"id-{i:08d}", f"id-{i:08d}", None, name, "2026-01-01T00:00:00.000000+00:00",
            str(i), None, 0.1, "ok", None, None)


# -- migrations ------------------------------------------------------------------------------


def test_every_migration_has_its_postgresql_text():
    assert set(wb_migrations.POSTGRES) == set(wb_migrations.NAMES)


def test_a_blank_database_gets_every_migration_and_the_same_tables(pg, url):
    assert pg.applied_migrations() == list(wb_migrations.NAMES)
    # SQLite's hidden rowid is a column of that name here; every other column is as in the file.
    assert columns(url, "traces") == ["rowid", *traces.COLUMNS]
    assert columns(url, "prompts") == PROMPTS_COLUMNS
    with raw(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        views = {r[0] for r in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    assert {"prompts", "prompt_labels", "traces", "traces_fts", "gateway_cache", "alerts", "_workbench_migrations"} <= tables
    assert views == {"llm_calls"}
    assert type(pg).__name__ == "PostgresStore" and pg.dialect.name == "postgresql"


def test_opening_twice_applies_no_migration_again(url):
    Store(url).close()
    with raw(url) as conn:
        before = conn.execute("SELECT name, applied_at FROM _workbench_migrations ORDER BY id").fetchall()
    again = Store(url)
    try:
        assert again.migrate() == []
        assert [tuple(r.values()) for r in again.query("SELECT name, applied_at FROM _workbench_migrations ORDER BY id")] == before
    finally:
        again.close()


def test_a_database_from_a_newer_workbench_is_refused(url):
    Store(url).close()
    with raw(url) as conn:
        conn.execute("INSERT INTO _workbench_migrations (migration_set, name, applied_at) VALUES ('workbench', 'm999_future', 'x')")
    with pytest.raises(StoreError, match="m999_future.*upgrade workbench"):
        Store(url)


def test_another_programs_database_is_refused_and_left_unchanged(url):
    with raw(url) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(NotAWorkbenchDatabase, match="customers"):
        Store(url)
    with raw(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"customers"}


def test_a_failing_migration_leaves_nothing_behind(url, monkeypatch):
    monkeypatch.setitem(wb_migrations.POSTGRES, "m002_traces", "CREATE TABLE half_done (x INTEGER); CREATE TABLE broken (;")
    with pytest.raises(StoreError, match="migrating .* failed"):
        Store(url)
    with raw(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == set(), "one transaction: the first migration went too"
    monkeypatch.undo()
    store = Store(url)
    try:
        assert store.applied_migrations() == list(wb_migrations.NAMES)
    finally:
        store.close()


CHILD_OPEN = textwrap.dedent(
    """
    import sys
    from workbench.store import Store
    Store(sys.argv[1]).close()
    print("opened")
    """
)


def test_processes_opening_a_new_database_at_once_migrate_it_once(url):
    procs = [subprocess.Popen([sys.executable, "-c", CHILD_OPEN, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "opened"
    with raw(url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM _workbench_migrations ORDER BY id")]
    assert names == list(wb_migrations.NAMES)


# -- the batched writer ----------------------------------------------------------------------


def test_every_queued_row_lands_after_flush_and_close(pg, url):
    writer = pg.writer
    writer.put_many(traces.SPAN_SQL, (span_row(i) for i in range(1_000)))
    pg.flush()
    assert count(url) == 1_000
    for i in range(1_000, 1_500):
        writer.put(traces.SPAN_SQL, span_row(i))
    pg.close()
    assert count(url) == 1_500
    assert (writer.written, writer.failed) == (1_500, 0)
    with pytest.raises(StoreError, match="closed"):
        writer.put(traces.SPAN_SQL, span_row(99_999))


def test_a_held_write_lock_makes_the_caller_wait_and_loses_nothing(pg, url):
    from workbench._pg import WRITE_LOCK

    writer = BatchWriter(pg.path, maxsize=10, backend=pg.backend)
    blocker = raw(url)
    blocker.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))  # another session writing: the writer waits
    producer = threading.Thread(target=lambda: [writer.put(traces.SPAN_SQL, span_row(i)) for i in range(5_000)], daemon=True)
    producer.start()
    producer.join(0.5)
    try:
        assert producer.is_alive(), "put() must wait while the queue is full"
        assert writer.queue.qsize() == 10
    finally:
        blocker.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
        blocker.close()
    producer.join(60)
    assert not producer.is_alive()
    writer.close()
    assert (writer.written, writer.failed) == (5_000, 0)
    assert sorted(int(r["input"]) for r in pg.query("SELECT input FROM traces")) == list(range(5_000))


def test_one_unwritable_row_does_not_lose_the_rows_batched_with_it(pg, url):
    writer = pg.writer
    blocker = raw(url)
    from workbench._pg import WRITE_LOCK

    blocker.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))  # the rows below form one batch
    for i in range(100):
        writer.put(traces.SPAN_SQL, span_row(i))
    bad = list(span_row(100))
    bad[5] = "a NUL \x00 PostgreSQL text cannot hold"
    writer.put(traces.SPAN_SQL, tuple(bad))
    for i in range(101, 200):
        writer.put(traces.SPAN_SQL, span_row(i))
    blocker.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
    blocker.close()
    with pytest.warns(RuntimeWarning, match="1 row can never be written"):
        with pytest.raises(RowsNotWritten, match="1 row is not in") as excinfo:
            pg.flush()
    assert count(url) == 199
    assert excinfo.value.failed == 1 and excinfo.value.spill_path.endswith(".spill.jsonl")
    health = pg.health()
    assert (health.written, health.pending, health.spilled, health.failed) == (199, 0, 0, 1)


def test_rows_the_server_refuses_are_kept_and_written_when_it_takes_them_again(url, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_SPILL_DIR", str(tmp_path / "spill"))
    with raw(url) as conn:
        conn.execute("DROP ROLE IF EXISTS wb_writer")
        conn.execute("CREATE ROLE wb_writer LOGIN")
    Store(url).close()
    with raw(url) as conn:
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO wb_writer")
        conn.execute("REVOKE INSERT ON traces FROM wb_writer")  # as a full disk or a read-only replica would
    writer_url = url.replace("postgres@", "wb_writer@", 1)
    store = Store(writer_url)
    try:
        for i in range(300):
            store.writer.put(traces.SPAN_SQL, span_row(i))
        with pytest.warns(RuntimeWarning, match="kept in"):
            with pytest.raises(RowsNotWritten, match="300 rows are not in") as excinfo:
                store.flush()
        assert str(tmp_path / "spill") in excinfo.value.spill_path
        assert store.health().spilled == 300 and count(url) == 0
        with raw(url) as conn:
            conn.execute("GRANT INSERT ON traces TO wb_writer")
        store.flush()  # kept rows go in with the next commit that works
        assert count(url) == 300
        assert store.health().ok
    finally:
        store.close()
        with raw(url) as conn:
            conn.execute("DROP OWNED BY wb_writer")
            conn.execute("DROP ROLE wb_writer")


def test_a_dropped_connection_is_made_again_and_loses_nothing(pg, url):
    pg.writer.put(traces.SPAN_SQL, span_row(0))
    pg.flush()
    with raw(url) as conn:  # the server ends every other session (a restart, a failover, an idle timeout)
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid()")
    for i in range(1, 200):
        pg.writer.put(traces.SPAN_SQL, span_row(i))
    try:
        pg.flush()
    except RowsNotWritten:
        pg.flush()  # the batch that met the dead connection was kept; it goes in now
    assert count(url) == 200
    assert pg.query("SELECT COUNT(*) AS n FROM traces")[0]["n"] == 200  # the caller's connection too


CHILD_TRACE = textwrap.dedent(
    """
    import sys
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    url, name, n, close = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "close"
    bench = wb.open(url, provider=SimulatedProvider(seed=0, time_scale=0))

    @bench.traced(name=name)
    def step(i):
        return f"word{i % 7} answer"

    for i in range(n):
        step(i)
    writer = bench.store.writer
    if close:
        bench.close()
        print(f"written={writer.written} failed={writer.failed}")
    """
)


def run_children(*argvs: list[str]) -> list[tuple[int, str, str]]:
    procs = [subprocess.Popen([sys.executable, "-c", CHILD_TRACE, *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    outs = [p.communicate(timeout=180) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def test_interpreter_exit_flushes_queued_rows(url):
    Store(url).close()
    [(code, _, err)] = run_children([url, "step", "5000", "exit"])
    assert code == 0, err
    assert count(url) == 5_000


def test_two_processes_trace_at_once_and_rowids_follow_commit_order(url):
    Store(url).close()
    results = run_children([url, "left", "20000", "close"], [url, "right", "20000", "close"])
    for code, out, err in results:
        assert code == 0, err
        assert "could not write" not in err and "Warning" not in err
        assert out.strip() == "written=20000 failed=0"
    assert count(url, "WHERE name = %s", ("left",)) == count(url, "WHERE name = %s", ("right",)) == 20_000
    store = Store(url)
    try:
        # The full-text index catches up by rowid: with writers serialised it misses none.
        assert traces.index_fts(store) == 40_000
        assert traces.search_count(store, "answer") == 40_000
        # The frame cache reads only rows above the last rowid it saw: the same numbers as a fresh read.
        first = frames.metrics(store, by="model")
        assert int(first["requests"].sum()) == 0  # spans only: no model calls
    finally:
        store.close()


# -- errors ----------------------------------------------------------------------------------


def test_server_errors_come_out_as_store_errors_naming_the_fix(url):
    base, name = url.rsplit("/", 1)
    with pytest.raises(StoreError, match=r"database 'no_such_db' does not exist.*createdb no_such_db"):
        Store(f"{base}/no_such_db")
    with pytest.raises(StoreError, match="cannot reach the PostgreSQL server"):
        Store("postgresql://postgres@127.0.0.1:1/x")
    store = Store(url)
    try:
        with pytest.raises(StoreError, match="no_table") as caught:
            store.execute("SELECT * FROM no_table")
        assert not isinstance(caught.value, psycopg.Error)
        with pytest.raises(ConfigError, match="SQLite files only"):
            store.db  # noqa: B018
    finally:
        store.close()


def test_a_password_never_shows_in_the_path_or_messages(url):
    base, name = url.rsplit("/", 1)
    secret = base.replace("postgres@", "postgres:s3cret@", 1) + "/no_such_db"
    with pytest.raises(StoreError) as caught:
        wb.open(secret)
    assert "s3cret" not in str(caught.value)
    bench = wb.open(base.replace("postgres@", "postgres:s3cret@", 1) + "/" + name)  # trust auth ignores it
    try:
        assert "s3cret" not in bench.path and "s3cret" not in repr(bench) and "s3cret" not in repr(bench.health())
    finally:
        bench.close()


def test_a_readonly_open_reads_and_refuses_writes(url):
    bench = wb.open(url, provider=SimulatedProvider(seed=0, time_scale=0))
    bench.prompts.register("p", "Q: {q}", "claude-haiku-4-5")
    bench.close()
    viewer = wb.open(url, readonly=True)
    try:
        assert viewer.prompts.get("p").version == 1
        with pytest.raises(ReadOnlyDatabase, match="readonly=True"):
            viewer.prompts.register("p", "Q2: {q}", "claude-haiku-4-5")
        with pytest.raises(ReadOnlyDatabase):
            viewer.store.writer  # noqa: B018
    finally:
        viewer.close()


# -- the user's path, end to end --------------------------------------------------------------


def test_the_users_path_runs_on_a_server_as_on_a_file(url, tmp_path):
    """Prompts, a dataset, an experiment with resume, scores, feedback, traces, metrics, report, health."""
    bench = wb.open(url, provider=SimulatedProvider(seed=0, time_scale=0))
    try:
        v1 = bench.prompts.register("support", "Customer question: {question}", "claude-haiku-4-5", max_tokens=200)
        v2 = bench.prompts.register("support", "Passage: {context}\nQuestion: {question}", "claude-haiku-4-5", max_tokens=200)
        bench.prompts.set_split("support", "production", {1: 0.5, 2: 0.5})
        ds = bench.datasets.load("qa", wb.demo.DATASET)
        exp = bench.experiment("ctx", dataset=ds, variants={"A": v1, "B": v2},
                               scorers=[wb.scorers.contains_reference()], repeats=1, concurrency=8)
        exp.run()
        assert "nothing to do" in str(exp.run()) or exp.status == "completed"
        summary = exp.summary()
        assert summary.height == 2
        card = exp.compare("A", "B")
        assert "B" in str(card)
        item = ds.items[0].item_id
        bench.feedback.prefer(exp.id, item, "A", "B", "b")

        @bench.traced
        def lookup(q):
            return q.upper()

        lookup("hello")
        bench.complete(bench.prompts.pick("support", "production", key="u1"), question="Where?", context="c",
                       user_id="u1")
        bench.flush()
        m = bench.metrics(by="model")
        assert int(m["requests"].sum()) >= 2 * len(ds.items)
        assert traces.search_count(bench.store, "Where") >= 1
        path = bench.report(exp, tmp_path / "r.html")
        assert path.exists() and "ctx" in path.read_text()
        assert bench.health().ok
    finally:
        bench.close()
