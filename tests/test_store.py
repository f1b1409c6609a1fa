"""The SQLite file: migrations, refusing foreign files, pragmas and the batching writer."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from sqlite_utils.migrations import Migrations

import workbench as wb
import workbench.migrations as wb_migrations
from workbench import traces
from workbench.errors import NotAWorkbenchDatabase, RowsNotWritten, StoreError
from workbench.prompts import PromptRegistry
from workbench.store import BUSY_TIMEOUT_MS, BatchWriter, Store

FIXTURES = Path(__file__).parent / "fixtures"
ALL_MIGRATIONS = [m.name for m in wb_migrations.migrations._migrations]
PROMPTS_COLUMNS = [
    "id", "name", "version", "template", "model", "params_json", "variables_json",
    "content_hash", "created_at",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def names(conn: sqlite3.Connection, kind: str = "table") -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))}


def span_row(i: int, name: str = "step") -> tuple:
    return (f"id-{i:08d}", f"id-{i:08d}", None, name, "2026-01-01T00:00:00.000000+00:00",
            str(i), None, 0.1, "ok", None, None)


def count(path: Path | str, where: str = "", params: tuple = ()) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM traces {where}", params).fetchone()[0]
    finally:
        conn.close()


# -- migrations ------------------------------------------------------------------------------


def test_blank_file_gets_every_migration_and_the_schema(store):
    assert store.applied_migrations() == ALL_MIGRATIONS
    tables = names(store.conn)
    assert {"prompts", "prompt_labels", "prompt_label_history", "traces", "price_overrides"} <= tables
    assert "llm_calls" in names(store.conn, "view")
    assert columns(store.conn, "traces") == list(traces.COLUMNS)
    assert columns(store.conn, "prompts") == PROMPTS_COLUMNS


def test_opening_twice_applies_no_migration_again(tmp_path):
    path = tmp_path / "twice.db"
    first = Store(path)
    first.close()
    conn = sqlite3.connect(path)
    recorded = conn.execute("SELECT name, applied_at FROM _sqlite_migrations ORDER BY id").fetchall()
    conn.close()

    second = Store(path)
    try:
        assert second.migrate() == []
        again = second.query("SELECT name, applied_at FROM _sqlite_migrations ORDER BY id")
        assert [(r["name"], r["applied_at"]) for r in again] == recorded
        assert [name for name, _ in recorded] == ALL_MIGRATIONS
    finally:
        second.close()


def test_threads_tracing_their_first_rows_at_once_share_one_writer(store, monkeypatch):
    # Two writers would both write, but sync() waits for only one: reads missed rows (seen in CI).
    import workbench.store as store_module

    made = []
    real = store_module.BatchWriter

    def slow_writer(*args, **kwargs):
        made.append(1)
        threading.Event().wait(0.05)  # widen the window a race needs
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "BatchWriter", slow_writer)
    start = threading.Barrier(8)
    seen = []

    def first_use():
        start.wait()
        seen.append(store.writer)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len({id(w) for w in seen}) == 1


def test_pragmas_wal_normal_sync_and_busy_timeout(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS > 0
    # WAL is a property of the file: other connections (the writer, other processes) see it.
    raw = sqlite3.connect(store.path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_a_file_that_is_not_sqlite_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"my precious notes, not a database\n" * 200)
    before = sha256(path)
    with pytest.raises(NotAWorkbenchDatabase, match="not a SQLite database") as excinfo:
        wb.open(path, provider="simulated")
    assert str(path) in str(excinfo.value)
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO customers (name) VALUES (?)", [("ada",), ("grace",)])
    conn.commit()
    conn.close()
    before = sha256(path)
    with pytest.raises(NotAWorkbenchDatabase, match="customers"):
        Store(path)
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.db"]


def test_a_file_from_a_newer_workbench_is_refused(tmp_path):
    path = tmp_path / "future.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
        ("workbench", "m999_from_the_future", "2030-01-01 00:00:00+00:00"),
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="m999_from_the_future") as excinfo:
        Store(path)
    assert not isinstance(excinfo.value, NotAWorkbenchDatabase)
    assert "upgrade workbench" in str(excinfo.value)


def test_v002_fixture_upgrades_without_losing_rows(tmp_path):
    fixture = FIXTURES / "v002.db"
    fixture_hash = sha256(fixture)
    path = tmp_path / "v002.db"
    shutil.copy(fixture, path)
    old = sqlite3.connect(f"file:{fixture.as_posix()}?mode=ro&immutable=1", uri=True)
    # Later migrations may add columns: compare the columns the old file had.
    selects = {
        table: f"SELECT {', '.join(columns(old, table))} FROM {table} ORDER BY rowid"
        for table in ("traces", "prompts", "prompt_labels", "prompt_label_history")
    }
    before = {table: old.execute(sql).fetchall() for table, sql in selects.items()}
    old_applied = [r[0] for r in old.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    old.close()
    assert old_applied == ["m001_prompts", "m002_traces"]
    assert (len(before["traces"]), len(before["prompts"]), len(before["prompt_labels"])) == (25, 1, 1)

    store = Store(path)
    try:
        assert store.applied_migrations() == ALL_MIGRATIONS
        for table, sql in selects.items():
            assert store.conn.execute(sql).fetchall() == before[table], table
        assert "price_overrides" in names(store.conn)

        registry = PromptRegistry(store)
        prompt = registry.get("support")
        assert (prompt.version, prompt.template, prompt.model) == (1, "Answer: {question}", "claude-haiku-4-5")
        assert prompt.params == {"temperature": 0.3}
        assert registry.get("support", label="production").version == 1
        assert prompt.render(question="Where?") == "Answer: Where?"
    finally:
        store.close()
    assert sha256(fixture) == fixture_hash, "the golden fixture itself must never change"


def test_migration_names_are_unique_numbered_and_gapless():
    assert len(ALL_MIGRATIONS) == len(set(ALL_MIGRATIONS))
    numbers = []
    for name in ALL_MIGRATIONS:
        match = re.fullmatch(r"m(\d{3})_[a-z0-9_]+", name)
        assert match, f"{name} is not named m<NNN>_<what>"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(1, len(ALL_MIGRATIONS) + 1))


def test_every_migration_runs_in_a_transaction():
    assert all(m.transactional for m in wb_migrations.migrations._migrations)


def test_a_failing_migration_leaves_nothing_behind(tmp_path, monkeypatch):
    broken = Migrations(wb_migrations.MIGRATION_SET)
    broken(name="m001_prompts")(wb_migrations.m001_prompts)

    @broken(name="m002_traces")
    def half_done(db):
        db.executescript("CREATE TABLE half_done (x INTEGER); CREATE TABLE broken (;")

    monkeypatch.setattr(wb_migrations, "migrations", broken)
    path = tmp_path / "broken.db"
    with pytest.raises(StoreError, match="failed"):
        Store(path)
    conn = sqlite3.connect(path)
    tables = names(conn)
    recorded = (
        [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
        if "_sqlite_migrations" in tables else []
    )
    conn.close()
    assert "half_done" not in tables
    assert "m002_traces" not in recorded
    # A table exists exactly when its migration is recorded.
    assert ("prompts" in tables) == ("m001_prompts" in recorded)

    monkeypatch.undo()
    store = Store(path)  # the fixed migrations then apply cleanly
    try:
        assert store.applied_migrations() == ALL_MIGRATIONS
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


def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path):
    path = tmp_path / "race.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD_OPEN, str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert out.strip() == "opened"
    conn = sqlite3.connect(path)
    recorded = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    conn.close()
    assert recorded == ALL_MIGRATIONS


# -- the batching writer ---------------------------------------------------------------------


def test_every_queued_row_lands_after_flush_and_close(store):
    writer = store.writer
    writer.put_many(traces.SPAN_SQL, (span_row(i) for i in range(1_000)))
    store.flush()
    assert count(store.path) == 1_000
    for i in range(1_000, 1_500):
        writer.put(traces.SPAN_SQL, span_row(i))
    store.close()
    assert count(store.path) == 1_500
    assert (writer.written, writer.failed) == (1_500, 0)
    with pytest.raises(StoreError, match="closed"):
        writer.put(traces.SPAN_SQL, span_row(99_999))


def test_a_full_queue_makes_the_caller_wait_and_loses_nothing(store):
    writer = BatchWriter(store.path, maxsize=10)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer cannot commit, so its queue fills up
    producer = threading.Thread(
        target=lambda: [writer.put(traces.SPAN_SQL, span_row(i)) for i in range(10_000)], daemon=True
    )
    producer.start()
    producer.join(0.5)
    try:
        assert producer.is_alive(), "put() must wait while the queue is full"
        assert writer.queue.qsize() == 10
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    producer.join(60)
    assert not producer.is_alive()
    writer.close()
    assert (writer.written, writer.failed) == (10_000, 0)
    assert count(store.path) == 10_000
    ids = [r[0] for r in store.conn.execute("SELECT input FROM traces")]
    assert sorted(map(int, ids)) == list(range(10_000))


CHILD_TRACE = textwrap.dedent(
    """
    import sys
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    path, name, n, close = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "close"
    bench = wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0))

    @bench.traced(name=name)
    def step(i):
        return i * 2

    for i in range(n):
        step(i)
    writer = bench.store.writer
    if close:
        bench.close()
        print(f"written={writer.written} failed={writer.failed}")
    # else: exit with rows still queued; the atexit hook must write them
    """
)


def run_children(*argvs: list[str]) -> list[tuple[int, str, str]]:
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD_TRACE, *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for argv in argvs
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def test_interpreter_exit_flushes_queued_rows(tmp_path):
    path = tmp_path / "exit.db"
    [(code, _, err)] = run_children([str(path), "step", "5000", "exit"])
    assert code == 0, err
    assert count(path) == 5_000


def test_two_processes_trace_into_one_file_at_once(tmp_path):
    path = tmp_path / "shared.db"
    results = run_children([str(path), "left", "20000", "close"], [str(path), "right", "20000", "close"])
    for code, out, err in results:
        assert code == 0, err
        assert "database is locked" not in err
        assert "could not write" not in err
        assert "Warning" not in err
        assert out.strip() == "written=20000 failed=0"
    assert count(path) == 40_000
    assert count(path, "WHERE name = ?", ("left",)) == 20_000
    assert count(path, "WHERE name = ?", ("right",)) == 20_000


def test_one_unwritable_row_does_not_lose_the_rows_batched_with_it(store):
    writer = store.writer
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer waits, so the rows below form one batch
    writer.put(traces.SPAN_SQL, span_row(0))
    for i in range(1, 101):
        writer.put(traces.SPAN_SQL, span_row(i))
    bad = list(span_row(101))
    bad[5] = {"not": "bindable"}  # e.g. a caller's object SQLite cannot store
    writer.put(traces.SPAN_SQL, tuple(bad))
    for i in range(102, 202):
        writer.put(traces.SPAN_SQL, span_row(i))
    blocker.execute("COMMIT")
    blocker.close()
    with pytest.warns(RuntimeWarning, match="1 row can never be written"):
        with pytest.raises(RowsNotWritten, match="1 row is not in") as excinfo:
            store.flush()
    assert count(store.path) == 201
    assert (writer.written, writer.failed) == (201, 1)
    # The refused row is kept beside the file with its error, not dropped.
    assert excinfo.value.failed == 1 and excinfo.value.spill_path == store.path + ".spill.jsonl"
    [kept] = [json.loads(line) for line in Path(excinfo.value.spill_path).read_text().splitlines() if '"kind"' in line]
    assert kept["kind"] == "failed" and kept["row"][0] == "id-00000101"
    assert "not supported" in kept["error"] and kept["row"][5] == {"$repr": "{'not': 'bindable'}"}
    store.flush()  # reported once: the row is where the error said, retrying would fail again
    health = store.health()
    assert (health.written, health.pending, health.spilled, health.failed) == (201, 0, 0, 1)


def test_an_in_memory_workbench_keeps_its_traces_and_writes_no_file(tmp_path, monkeypatch):
    """The writer and an experiment's commits share the one in-memory database, not empty ones of their own."""
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider
    from workbench.scorers import contains_reference

    monkeypatch.chdir(tmp_path)
    bench = wb.open(":memory:", provider=SimulatedProvider(seed=0, time_scale=0))
    try:
        for _ in range(3):
            bench.complete(model="claude-haiku-4-5", messages="hi")
        v = bench.prompts.register("p", "Q: {q}", "claude-haiku-4-5")
        ds = bench.datasets.load("d", [{"id": str(i), "inputs": {"q": f"q{i}"}, "expected": f"q{i}"} for i in range(4)])
        exp = bench.experiment("e", dataset=ds, variants={"A": v}, scorers=[contains_reference()], repeats=2)
        exp.run(progress=False)
        health = bench.health()
        assert health.ok and health.spilled == health.failed == 0
        assert len(bench.traces(limit=None, kind="llm")) == 3 + 8
        assert bench.metrics()["requests"][0] == 11
        assert exp.summary()["n_items"][0] == 4
    finally:
        bench.close()
    assert list(tmp_path.iterdir()) == []
