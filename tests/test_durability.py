"""Nothing lost, nothing raw: full disks, read-only and damaged files, locks, kept rows and recovery.

The broken files are made for real (``_faults``): a small tmpfs or a file size
limit for a full disk, file modes with capabilities dropped for read-only files,
a garbled page for a damaged one.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import workbench as wb
from workbench import _spill, _sqlite, traces
from workbench.errors import (
    CorruptDatabase,
    DatabaseLocked,
    RowsNotWritten,
    StoreError,
)
from workbench.providers.simulated import SimulatedProvider

from _faults import damage_a_data_page, disk_modes, run, run_on_small_disk, run_unprivileged

WORKBENCH = str(Path(sys.executable).parent / "workbench")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count(path: Path | str, table: str = "traces") -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def span_row(i: int) -> tuple:
    return (f"row-{i:08d}", f"row-{i:08d}", None, "step", "2026-01-01T00:00:00.000000+00:00",
            str(i), None, 0.1, "ok", None, None)


@pytest.fixture
def forget_kept_rows():
    """Remove the fallback spill files (temporary folder) of the databases a test names."""
    paths: list[Path] = []
    yield paths.append
    for path in paths:
        keeper = _spill.Spill(str(path))
        for name in (keeper.paths[1], keeper.lock_path):
            if os.path.exists(name):
                os.remove(name)


def make_workbench(path: Path, traces_n: int = 200) -> Path:
    """A small workbench file with prompts, a dataset, an experiment and spans."""
    with wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0)) as bench:
        v = bench.prompts.register("p", "Question: {q}", "claude-haiku-4-5")
        ds = bench.datasets.load("d", [{"q": f"q-{i}?"} for i in range(10)])
        bench.experiment("e", dataset=ds, variants={"A": v}, scorers=[wb.scorers.contains_reference()]).run(progress=False)

        @bench.traced(name="step")
        def step(i):
            return "x" * 300

        for i in range(traces_n):
            step(i)
    return path


# -- full disks ------------------------------------------------------------------------------

FILL_WHILE_TRACING = """
import warnings, sqlite3
import workbench as wb
from workbench.errors import RowsNotWritten
from workbench.providers.simulated import SimulatedProvider
warnings.simplefilter("ignore")
path = os.path.join(DISK, "wb.db")
N = 5_000

def in_file():
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM traces WHERE name = 'step'").fetchone()[0]
    finally:
        conn.close()

bench = wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0))

@bench.traced(name="step")
def step(i):
    return "x" * 200

for i in range(100):
    step(i)
bench.flush()
fill()
for i in range(100, N):
    step(i)
flushed = outcome(bench.flush)
raised = None
try:
    bench.flush()
except RowsNotWritten as exc:
    raised = {"pending": exc.pending, "failed": exc.failed, "spill_path": exc.spill_path}
health = bench.health()
write_now = outcome(lambda: bench.store.write_now([("INSERT INTO traces (id, trace_id, kind, name, started_at, status, simulated) VALUES (?, ?, 'span', 'direct', '2026-01-01', 'ok', 0)", ("direct-1", "direct-1"))]))
closed = outcome(bench.close)
free()
stored = in_file()  # what the file took while the disk was full (counted once it may be opened again)
cli = __import__("subprocess").run([sys.argv[1], "db", "recover", "--db", path], capture_output=True, text=True)
report({
    "flushed": flushed, "raised": raised, "closed": closed, "write_now": write_now,
    "health": [health.written, health.pending, health.spilled, health.failed, health.spill_path],
    "stored_while_full": stored, "recover": [cli.returncode, cli.stdout, cli.stderr],
    "after_recover": in_file(), "direct": sqlite3.connect(path).execute("SELECT COUNT(*) FROM traces WHERE name = 'direct'").fetchone()[0],
    "left": sorted(os.listdir(DISK)), "N": N,
})
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", disk_modes())
def test_a_disk_that_fills_while_tracing_keeps_every_row(tmp_path, mode, forget_kept_rows):
    forget_kept_rows(tmp_path / "disk" / "wb.db")
    seen = run_on_small_disk(mode, tmp_path / "disk", FILL_WHILE_TRACING, WORKBENCH, size_kb=16_384)
    n, stored = seen["N"], seen["stored_while_full"]
    print(f"\n{mode}: the disk filled after {stored:,} of {n:,} traced rows; {n - stored:,} kept "
          f"({seen['health'][2]:,} in a spill file, {seen['health'][1]:,} in memory); "
          f"after `workbench db recover`: {seen['after_recover']:,} in the file")
    assert stored < n  # the disk really filled up
    # flush() and close() raise, saying how many rows are outside the file, where, and why.
    cls, is_ours, message = seen["flushed"]
    assert cls == "workbench.errors.RowsNotWritten" and is_ours
    assert f"{n - stored:,} rows are not in" in message
    assert "disk is full" in message or "file size limit" in message
    assert seen["raised"]["pending"] == n - stored and seen["raised"]["failed"] == 0
    written, pending, spilled, failed, spill_path = seen["health"]
    assert (written + spilled + pending, failed) == (n, 0)
    assert seen["closed"][0] == "workbench.errors.RowsNotWritten"
    # A direct commit (an experiment's paid call) says the cause, not "cannot rollback", and keeps its row.
    cls, is_ours, message = seen["write_now"]
    assert cls == "workbench.errors.DiskFull" and "cannot rollback" not in message
    assert "kept in" in message or "memory only" in message
    if mode == "tmpfs":  # no room beside the file: the rows wait in the temporary folder
        assert spill_path and spill_path.startswith(str(Path(_spill.fallback_path(str(tmp_path))).parent))
    # Once there is room again, `workbench db recover` writes every kept row.
    code, out, err = seen["recover"]
    if mode == "rlimit":
        # The limit also kept the spill file from growing: the rows were only in memory,
        # and close() said so. Nothing was written beside or in the file to recover.
        assert "only in this process's memory" in seen["closed"][2]
        return
    assert code == 0, err
    assert seen["after_recover"] == n and seen["direct"] == 1
    assert "spilled 0, failed 0" in out
    assert not [f for f in seen["left"] if "spill" in f]


NEW_FILE_ON_FULL_DISK = """
import workbench as wb
fill()
opened = outcome(lambda: wb.open(os.path.join(DISK, "new.db"), provider="simulated"))
report({"opened": opened, "left": sorted(f for f in os.listdir(DISK) if f != "filler")})
"""


@pytest.mark.parametrize("mode", disk_modes())
def test_a_new_file_on_a_full_disk_is_disk_full_and_leaves_no_empty_file(tmp_path, mode):
    seen = run_on_small_disk(mode, tmp_path / "disk", NEW_FILE_ON_FULL_DISK, size_kb=1024)
    cls, is_ours, message = seen["opened"]
    assert cls == "workbench.errors.DiskFull" and is_ours
    assert str(tmp_path / "disk" / "new.db") in message
    assert ("disk is full" in message and "Free space" in message) or "ulimit -f" in message
    assert seen["left"] == []


EXPERIMENT_ON_FULL_DISK = """
import warnings, sqlite3
import workbench as wb
from workbench.providers.simulated import SimulatedProvider
warnings.simplefilter("ignore")

class Counting(SimulatedProvider):
    answered = 0
    async def complete(self, request):
        result = await super().complete(request)
        Counting.answered += 1
        return result

path = os.path.join(DISK, "wb.db")
bench = wb.open(path, provider=Counting(seed=0, fixed_latency_ms=5))
v = bench.prompts.register("p", "Question: {q}", "claude-haiku-4-5")
ds = bench.datasets.load("d", [{"q": f"q-{i}?"} for i in range(40)])
exp = bench.experiment("e", dataset=ds, variants={"A": v}, concurrency=4)
filled = []
def fill_once(experiment, outcome_):
    if outcome_.calls >= 10 and not filled:
        filled.append(fill())
exp.on_call(fill_once)
first = outcome(lambda: exp.run(progress=False))
answered_before = Counting.answered
free()
exp.on_call  # the hook stays, but the disk is free now
second = outcome(lambda: exp.run(progress=False))
conn = sqlite3.connect(path)
cells = conn.execute("SELECT COUNT(*), COUNT(DISTINCT item_id) FROM traces WHERE kind = 'llm' AND status = 'ok'").fetchone()
report({"first": first, "second": second[0], "status": exp.status, "answered": Counting.answered,
        "answered_before": answered_before, "cells": cells})
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", [m for m in disk_modes() if m == "tmpfs"] or ["tmpfs"])
def test_an_experiment_on_a_full_disk_says_so_and_resumes_without_paying_twice(tmp_path, mode, forget_kept_rows):
    forget_kept_rows(tmp_path / "disk" / "wb.db")
    if mode not in disk_modes():
        pytest.skip("needs a tmpfs (mounting is not allowed here): the spill file must find room elsewhere")
    seen = run_on_small_disk(mode, tmp_path / "disk", EXPERIMENT_ON_FULL_DISK, size_kb=8_192)
    cls, is_ours, message = seen["first"]
    assert cls == "workbench.errors.DiskFull" and is_ours, seen
    assert "cannot rollback" not in message and "disk is full" in message
    print(f"\nexperiment on a full disk: {seen['answered_before']} calls answered before it stopped; "
          f"after freeing space, {seen['answered']} answered in all for {seen['cells'][0]} cells")
    assert seen["second"] == "ok" and seen["status"] == "completed"
    # The calls answered before the disk filled were kept and written back: none was made again.
    assert seen["cells"] == [40, 40]
    assert seen["answered"] == 40, seen


# -- read-only files and folders -------------------------------------------------------------

OPEN_READ_ONLY = """
import workbench as wb
from workbench.providers.simulated import SimulatedProvider
path = sys.argv[1]
calls = []
class Counting(SimulatedProvider):
    async def complete(self, request):
        calls.append(1)
        return await super().complete(request)

result = {"open": outcome(lambda: wb.open(path, provider="simulated"))}
bench = wb.open(path, provider=Counting(seed=0, time_scale=0), readonly=True)
result["traces"] = outcome(lambda: len(bench.traces(limit=1000)))
result["metrics"] = outcome(lambda: bench.metrics().height)
result["traces_df"] = outcome(lambda: bench.traces_df().height)
result["summary"] = outcome(lambda: bench.experiments.get("e").summary().height)
result["prompt"] = outcome(lambda: bench.prompts.get("p").version)
result["register"] = outcome(lambda: bench.prompts.register("p", "New: {q}", "claude-haiku-4-5").version)
result["dataset"] = outcome(lambda: bench.datasets.load("d2", [{"q": "x"}]).name)
step = bench.traced(lambda: 1, name="step")
result["traced"] = outcome(step)
result["complete"] = outcome(lambda: bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}]).text)
result["calls_paid"] = len(calls)
result["run"] = outcome(lambda: bench.experiments.get("e").run(progress=False))
result["health"] = repr(bench.health())
bench.close()
result["files"] = sorted(os.listdir(os.path.dirname(path)))
report(result)
"""


@pytest.fixture(scope="module")
def workbench_file(tmp_path_factory) -> Path:
    return make_workbench(tmp_path_factory.mktemp("made") / "made.db")


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def test_a_read_only_file_is_refused_at_open_and_can_be_viewed_with_readonly(tmp_path, workbench_file):
    path = _copy(workbench_file, tmp_path / "ro" / "wb.db")
    path.chmod(0o444)
    before = sha256(path)
    seen = run_unprivileged(OPEN_READ_ONLY, str(path))
    cls, _, message = seen["open"]
    assert cls == "workbench.errors.ReadOnlyDatabase"
    assert str(path) in message and "chmod u+w" in message and "readonly=True" in message
    # readonly=True: every read works ...
    assert seen["traces"] == ["ok", count(workbench_file)] and seen["metrics"][0] == "ok" and seen["traces_df"] == ["ok", count(workbench_file)]
    assert seen["summary"] == ["ok", 1] and seen["prompt"] == ["ok", 1]
    # ... and every write is refused with a sentence, before any paid call.
    for key in ("register", "dataset", "traced", "complete", "run"):
        cls, is_ours, message = seen[key]
        assert cls == "workbench.errors.ReadOnlyDatabase" and is_ours, (key, seen[key])
        assert "opened with readonly=True" in message, (key, message)
    assert seen["calls_paid"] == 0
    assert sha256(path) == before
    # Nothing but SQLite's own WAL index, which readers of a WAL file make in a writable folder.
    assert set(seen["files"]) <= {"wb.db", "wb.db-wal", "wb.db-shm"}


def test_a_valid_file_in_a_read_only_folder_is_not_called_corrupt(tmp_path, workbench_file):
    folder = tmp_path / "locked-folder"
    path = _copy(workbench_file, folder / "wb.db")
    folder.chmod(0o555)
    try:
        seen = run_unprivileged(OPEN_READ_ONLY, str(path))
    finally:
        folder.chmod(0o755)
    cls, _, message = seen["open"]
    assert cls == "workbench.errors.ReadOnlyDatabase"
    assert "corrupt" not in message and "the file itself is not damaged" in message
    assert f"folder {folder}" in message and "wb.db-wal" in message and "readonly=True" in message
    # Viewing works even though SQLite cannot create its WAL index beside the file.
    assert seen["traces"] == ["ok", count(workbench_file)] and seen["summary"] == ["ok", 1]
    assert seen["register"][0] == "workbench.errors.ReadOnlyDatabase"
    assert seen["files"] == ["wb.db"]


NEW_FILE = """
import workbench as wb
report({"opened": outcome(lambda: wb.open(sys.argv[1], provider="simulated")),
        "left": sorted(os.listdir(os.path.dirname(sys.argv[1])))})
"""


def test_a_new_file_in_a_read_only_folder_is_read_only_and_leaves_nothing(tmp_path):
    folder = tmp_path / "ro-folder"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        seen = run_unprivileged(NEW_FILE, str(folder / "new.db"))
    finally:
        folder.chmod(0o755)
    cls, _, message = seen["opened"]
    assert cls == "workbench.errors.ReadOnlyDatabase"
    assert f"cannot create {folder / 'new.db'}" in message and "not take new files" in message
    assert seen["left"] == []


def test_readonly_needs_an_existing_current_file(tmp_path, workbench_file):
    with pytest.raises(StoreError, match="does not exist"):
        wb.open(tmp_path / "missing.db", readonly=True)
    path = _copy(workbench_file, tmp_path / "old.db")
    conn = sqlite3.connect(path)
    last = conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id DESC LIMIT 1").fetchone()[0]
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", (last,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"needs migrations .*{last}.*workbench db migrate"):
        wb.open(path, readonly=True)


# -- damaged files ---------------------------------------------------------------------------


def test_a_damaged_page_under_an_intact_header_is_corrupt_database_on_every_read(tmp_path, workbench_file):
    path = _copy(workbench_file, tmp_path / "damaged.db")
    damage_a_data_page(path)
    with wb.open(path, provider="simulated") as bench:  # the header and schema are fine: it opens
        reads = {
            "traces": lambda: bench.traces(limit=None),
            "metrics": bench.metrics,
            "traces_df": bench.traces_df,
            "report": lambda: bench.report("traces", tmp_path / "r.html"),
        }
        for name, read in reads.items():
            with pytest.raises(CorruptDatabase) as excinfo:
                read()
            message = str(excinfo.value)
            assert str(path) in message and "malformed" in message, name
            assert f"sqlite3 {path} .recover" in message, name


# -- locks, kept rows and recovery -----------------------------------------------------------


def test_rows_a_locked_file_refuses_are_kept_and_written_once_it_is_free(tmp_path, monkeypatch):
    monkeypatch.setattr(_sqlite, "BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "wb.db"
    bench = wb.open(path, provider="simulated")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock, for longer than the timeout
    try:
        with pytest.raises(DatabaseLocked, match="locked by another process"):
            bench.prompts.register("p", "Q: {q}", "claude-haiku-4-5")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(500):
                bench.store.writer.put(traces.SPAN_SQL, span_row(i))
            with pytest.raises(RowsNotWritten, match="500 rows are not in .* locked by another process") as excinfo:
                bench.flush()
        assert excinfo.value.pending == 500
        health = bench.health()
        assert (health.spilled, health.failed, health.ok) == (500, 0, False)
        assert health.spill_path == str(path) + ".spill.jsonl"
        html = health._repr_html_()
        assert html.startswith('<div class="wb-out ') and "rows outside the file" in html
        assert ">500</div><div" in html and f"<code>{path}.spill.jsonl</code>" in html
        assert repr(health).endswith(f"spilled 500 · failed 0 in {path}.spill.jsonl>")
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    bench.flush()  # the file takes rows again: the kept ones go in first
    assert count(path) == 500
    assert not os.path.exists(str(path) + ".spill.jsonl")
    assert bench.health().ok
    bench.close()


def test_kept_rows_go_in_with_the_next_processs_first_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(_sqlite, "BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "wb.db"
    bench = wb.open(path, provider="simulated")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(300):
            bench.store.writer.put(traces.SPAN_SQL, span_row(i))
        with pytest.raises(RowsNotWritten, match="300 rows"):
            bench.close()  # closes anyway, and says where the rows are
    blocker.execute("COMMIT")
    blocker.close()
    assert count(path) == 0
    # `workbench db health` sees them from another process.
    health = subprocess.run([WORKBENCH, "db", "health", "--db", str(path)], capture_output=True, text=True)
    assert health.returncode == 1 and "spilled 300, failed 0" in health.stdout
    with wb.open(path, provider="simulated") as again:
        again.traced(lambda: None, name="next")()
        again.flush()
        assert count(path) == 301
        assert again.health().ok


def test_recover_writes_kept_rows_and_can_discard_the_ones_sqlite_refuses(tmp_path):
    path = tmp_path / "wb.db"
    wb.open(path, provider="simulated").close()
    keeper = _spill.Spill(str(path))
    bad = list(span_row(2))
    bad[5] = {"a": "dict"}
    keeper.append([
        ("pending", traces.SPAN_SQL, span_row(0), "database or disk is full"),
        ("pending", traces.SPAN_SQL, span_row(1), "database or disk is full"),
        ("failed", traces.SPAN_SQL, tuple(bad), "Error binding parameter 6"),
    ])
    out = subprocess.run([WORKBENCH, "db", "recover", "--db", str(path)], capture_output=True, text=True)
    assert out.returncode == 1 and "wrote 2 kept rows" in out.stdout and "failed 1" in out.stdout
    assert count(path) == 2
    out = subprocess.run([WORKBENCH, "db", "recover", "--discard-failed", "--db", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and "discarded 1" in out.stdout
    assert keeper.counts() == (0, 0) and not keeper.existing()


def test_a_replay_after_a_crash_mid_recovery_writes_each_row_once(tmp_path):
    """A crash between a replay's commit and the spill file's rewrite leaves written rows in the file:
    replaying them again counts them as written instead of failing them as duplicates."""
    path = tmp_path / "wb.db"
    with wb.open(path, provider="simulated") as bench:
        bench.store.writer.put(traces.SPAN_SQL, span_row(0))
    _spill.Spill(str(path)).append([("pending", traces.SPAN_SQL, span_row(i), "disk full") for i in range(3)])
    with wb.open(path, provider="simulated") as bench:
        health = bench.recover()
    assert (health.spilled, health.failed, count(path)) == (0, 0, 3)


# -- late binding ----------------------------------------------------------------------------


def test_a_function_traced_before_close_keeps_tracing_after_the_file_is_opened_again(tmp_path):
    path = tmp_path / "wb.db"
    bench = wb.open(path, provider="simulated")

    @bench.traced(name="kept")
    def kept(i):
        return i

    kept(1)
    bench.close()
    assert kept(2) == 2  # not "the trace writer is closed"
    again = wb.open(path, provider="simulated")
    kept(3)
    again.close()
    bench.flush()
    assert count(path) == 3


# -- no raw sqlite3 error leaves the public API ------------------------------------------------

WALK = """
import sqlite3, warnings
import workbench as wb
import workbench._sqlite as st
from workbench.cli import cli
from click.testing import CliRunner
from workbench.providers.simulated import SimulatedProvider
warnings.simplefilter("ignore")
st.BUSY_TIMEOUT_MS = 300
path, kind = sys.argv[1], sys.argv[2]
provider = SimulatedProvider(seed=0, time_scale=0)
opened_before = []
if kind == "full":
    opened_before.append(wb.open(path, provider=provider))  # the disk fills under an open workbench
    fill()
if kind == "locked":
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")

results = {}
def check(name, fn):
    results[name] = [*outcome(lambda: (fn(), None)[1]), ""][:3]  # the class of what it raised, not the value

def walk(p, bench):
    check(p + "prompts.list", lambda: bench.prompts.list())
    check(p + "prompts.register", lambda: bench.prompts.register("walk", "Q: {q}", "claude-haiku-4-5"))
    check(p + "prompts.set_label", lambda: bench.prompts.set_label("p", "prod", 1))
    check(p + "datasets.load", lambda: bench.datasets.load("walk", [{"q": "a?"}]))
    check(p + "experiment.run", lambda: bench.experiments.get("e").run(progress=False))
    check(p + "experiment.new", lambda: bench.experiment("walk", dataset=bench.datasets.get("d"), variants={"A": bench.prompts.get("p")}).run(progress=False))
    check(p + "complete", lambda: bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}]))
    check(p + "traced", lambda: bench.traced(lambda: 1, name="walk")())
    check(p + "flush", bench.flush)
    check(p + "traces", lambda: bench.traces(limit=None))
    check(p + "trace", lambda: bench.trace("nope"))
    check(p + "traces_df", bench.traces_df)
    check(p + "scores_df", bench.scores_df)
    check(p + "experiments_df", bench.experiments_df)
    check(p + "metrics", bench.metrics)
    check(p + "experiments.list", bench.experiments.list)
    check(p + "summary", lambda: bench.experiments.get("e").summary())
    check(p + "compare", lambda: bench.experiments.get("e").compare("A", "A"))
    check(p + "report", lambda: bench.report("traces", os.path.join(os.environ["WB_OUT"], "r.html")))
    import workbench.gateway, workbench.parquet
    gated = lambda: wb.gateway.Gateway(cache=True, limits=wb.gateway.Limits(wb.gateway.RateLimit(requests=100)))
    check(p + "gateway.complete", lambda: bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], gateway=gated()))
    check(p + "savings", bench.savings)
    check(p + "monitor.check", lambda: bench.monitor.check())
    check(p + "rollout.readout", lambda: bench.rollout("p", "prod").readout())
    check(p + "export_parquet", lambda: wb.parquet.export_parquet(bench, os.path.join(os.environ["WB_OUT"], "lake")))
    check(p + "health", bench.health)
    check(p + "recover", bench.recover)
    check(p + "close", bench.close)

for bench in opened_before:
    walk("opened-before.", bench)
check("open", lambda: wb.open(path, provider=provider))
check("open_readonly", lambda: wb.open(path, provider=provider, readonly=True))
for readonly in (False, True):
    try:
        bench = wb.open(path, provider=provider, readonly=readonly)
    except Exception:
        continue
    walk(f"{'ro' if readonly else 'rw'}.", bench)
runner = CliRunner()
for args in (["traces", "list"], ["prompts", "list"], ["experiments", "list"], ["db", "health"], ["db", "recover"], ["db", "migrate"]):
    res = runner.invoke(cli, [*args, "--db", path] if args[0] == "db" else [args[0], "--db", path, *args[1:]])
    exc = res.exception
    raw = exc is not None and not isinstance(exc, SystemExit)
    results["cli " + " ".join(args)] = [type(exc).__name__ if raw else "exit %s" % res.exit_code, not raw, res.output[-300:]]
report(results)
"""

BROKEN = ["not-sqlite", "foreign", "damaged", "locked", "read-only-file", "read-only-folder", "full"]


def _broken_file(kind: str, tmp_path: Path, made: Path) -> Path:
    folder = tmp_path / kind
    path = _copy(made, folder / "wb.db")
    if kind == "not-sqlite":
        path.write_bytes(b"my notes\n" * 1000)
    elif kind == "foreign":
        path.unlink()
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
        conn.commit()
        conn.close()
    elif kind == "damaged":
        damage_a_data_page(path)
    elif kind == "read-only-file":
        path.chmod(0o444)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", BROKEN)
def test_every_failure_of_the_file_reaches_the_user_as_a_workbench_error(
    tmp_path, kind, workbench_file, monkeypatch, forget_kept_rows
):
    path = _broken_file(kind, tmp_path, workbench_file)
    forget_kept_rows(tmp_path / "disk" / "wb.db")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("WB_OUT", str(out))
    if kind == "full":
        modes = disk_modes()
        if "tmpfs" not in modes:
            pytest.skip("a full disk for the whole API needs a tmpfs (mounting is not allowed here)")
        disk = tmp_path / "disk"
        seen = run_on_small_disk("tmpfs", disk, f"""
import shutil
shutil.copy({str(path)!r}, os.path.join(DISK, "wb.db"))
sys.argv[1:] = [os.path.join(DISK, "wb.db"), "full"]
""" + WALK, size_kb=8192)
    elif kind == "read-only-folder":
        path.parent.chmod(0o555)
        try:
            seen = run_unprivileged(WALK, str(path), kind)
        finally:
            path.parent.chmod(0o755)
    elif kind == "read-only-file":
        seen = run_unprivileged(WALK, str(path), kind)
    else:
        seen = run(WALK, str(path), kind)
    raw = {name: cls for name, (cls, ours, _) in seen.items() if cls != "ok" and not ours}
    assert raw == {}, f"raw exceptions left the public API for a {kind} file: {raw}"
    # A failure of the file is a StoreError, whichever layer met it: never a provider's error.
    provider_named = {name: cls for name, (cls, _, _) in seen.items() if "Provider" in cls or "Unexpected" in cls}
    assert provider_named == {}, f"a {kind} file's failure was reported as a provider's: {provider_named}"
    expected = {
        "not-sqlite": "NotAWorkbenchDatabase", "foreign": "NotAWorkbenchDatabase", "damaged": "CorruptDatabase",
        "locked": "DatabaseLocked", "read-only-file": "ReadOnlyDatabase", "read-only-folder": "ReadOnlyDatabase",
        "full": "DiskFull",
    }[kind]
    classes = {cls.rsplit(".", 1)[-1] for cls, _, _ in seen.values()}
    assert expected in classes, seen
