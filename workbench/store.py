"""The SQLite file: connections, migrations and the batching background writer."""

from __future__ import annotations

import atexit
import os
import queue
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import NotAWorkbenchDatabase, StoreError

BUSY_TIMEOUT_MS = 30_000
"""Concurrent writers (another process tracing into the same file) wait this long."""
WRITER_QUEUE_SIZE = 100_000
"""Rows waiting for disk; a full queue makes the caller wait, nothing is dropped."""
WRITER_BATCH = 5_000
"""Rows per transaction at most."""


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Switching a new file to WAL needs an exclusive lock and can answer "locked"
    # at once, without the busy timeout, while another process creates the same file.
    for attempt in range(100):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def _check_is_workbench(path: str) -> None:
    """Refuse a foreign or corrupt file before anything is written to it."""
    if path == ":memory:" or not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve().as_posix()}?mode=ro", uri=True)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "_sqlite_migrations" in names:
                sets = {
                    r[0] for r in conn.execute("SELECT DISTINCT migration_set FROM _sqlite_migrations")
                }
            else:
                sets = set()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise NotAWorkbenchDatabase(
            f"{path} is not a SQLite database or is corrupt ({exc}); it was not changed. "
            "Pass a new path to wb.open()."
        ) from None
    user_tables = {n for n in names if not n.startswith("sqlite_")}
    if user_tables and "workbench" not in sets:
        raise NotAWorkbenchDatabase(
            f"{path} is a SQLite database but not a workbench one "
            f"(it has tables: {', '.join(sorted(user_tables)[:5])}); it was not changed. "
            "Pass a new path to wb.open()."
        )


class Store:
    """One workbench SQLite file.

    ``conn`` is for the caller's thread (reads and small writes); trace rows go
    through ``writer``, a background thread with its own connection.
    """

    def __init__(self, path: str | os.PathLike[str], *, migrate: bool = True) -> None:
        self.path = os.fspath(path)
        if self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not parent.exists():
                raise StoreError(f"folder {parent} does not exist; create it or pick another path")
        _check_is_workbench(self.path)
        try:
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            _configure(self.conn)
        except sqlite3.DatabaseError as exc:
            raise NotAWorkbenchDatabase(f"{self.path} cannot be opened as SQLite: {exc}") from None
        self.lock = threading.RLock()
        self._local = threading.local()
        self._thread_conns: list[sqlite3.Connection] = []
        self._writer: BatchWriter | None = None
        if migrate:
            self.migrate()

    @property
    def db(self) -> Any:
        """A sqlite-utils ``Database`` over the caller's connection."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""
        from .migrations import MIGRATION_SET, NAMES

        with self.lock:
            if self._applied_fast() == set(NAMES):
                return []
            from .migrations import migrations

            db = self.db
            if not self._pending(db):
                return []
            # Another process may be migrating the same new file right now: take the
            # write lock, then decide again what is pending, so each migration runs once.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                pending = self._pending(db)
                if pending:
                    migrations.apply(db)
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise StoreError(f"migrating {self.path} ({MIGRATION_SET}) failed: {exc}") from exc
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            return pending

    def _applied_fast(self) -> set[str] | None:
        """Applied workbench migration names by plain SQL (no sqlite-utils import)."""
        try:
            rows = self.conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'workbench'"
            ).fetchall()
        except sqlite3.OperationalError:
            return None
        return {r[0] for r in rows}

    def _pending(self, db: Any) -> list[str]:
        """Names of migrations not yet applied; refuses a file from a newer workbench."""
        from .migrations import NAMES

        applied = self._applied_fast()
        if applied is not None and applied == set(NAMES):
            return []
        from .migrations import migrations

        known = {m.name for m in migrations._migrations}
        applied = {m.name for m in migrations.applied(db)}
        unknown = applied - known
        if unknown:
            raise StoreError(
                f"{self.path} was migrated by a newer workbench ({', '.join(sorted(unknown))}); "
                "upgrade workbench to open it"
            )
        return [m.name for m in migrations.pending(db)]

    def applied_migrations(self) -> list[str]:
        from .migrations import migrations

        return [m.name for m in migrations.applied(self.db)]

    # -- small helpers used by the record modules -------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts."""
        with self.lock:
            cur = self.conn.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def write_now(self, items: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Commit ``(sql, row)`` items in one transaction on this thread's own connection.

        For callers that must know their rows are on disk before going on (an
        experiment's paid calls) without a round trip through the background writer.
        """
        if not items:
            return
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _configure(conn)
            self._local.conn = conn
            self._thread_conns.append(conn)
        groups: dict[str, list[Sequence[Any]]] = {}
        for sql, row in items:
            groups.setdefault(sql, []).append(row)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in groups.items():
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` groups writes atomically (BEGIN IMMEDIATE)."""
        return _Transaction(self)

    @property
    def writer(self) -> BatchWriter:
        if self._writer is None:
            self._writer = BatchWriter(self.path)
        return self._writer

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued row is committed."""
        if self._writer is not None:
            self._writer.flush(timeout)

    async def flush_async(self) -> None:
        """``flush`` for coroutines: awaits the commit without blocking the event loop."""
        if self._writer is not None:
            await self._writer.flush_async()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for conn in self._thread_conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:
                pass  # made on another thread; it closes when that thread's objects go
        self._thread_conns.clear()
        with self.lock:
            try:
                self.conn.close()
            except sqlite3.ProgrammingError:
                pass


class _Transaction:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store.lock.acquire()
        self.store.conn.execute("BEGIN IMMEDIATE")
        return self.store.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.store.conn.execute("COMMIT")
            else:
                self.store.conn.execute("ROLLBACK")
        finally:
            self.store.lock.release()


_FLUSH = object()
_STOP = object()
_live_writers: weakref.WeakSet[BatchWriter] = weakref.WeakSet()


class BatchWriter:
    """A background thread that inserts queued rows in batched transactions.

    ``put(sql, row)`` returns at once unless the queue is full (then it waits:
    backpressure, never a silent drop). Rows with the same SQL are written with
    one ``executemany`` per batch.
    """

    def __init__(self, path: str, maxsize: int = WRITER_QUEUE_SIZE) -> None:
        self.path = path
        self.maxsize = maxsize
        self.written = 0
        self.failed = 0
        self.last_error: BaseException | None = None
        self._closed = False
        self._start()
        _live_writers.add(self)

    def _start(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(self.maxsize)
        self._thread = threading.Thread(target=self._run, name="workbench-writer", daemon=True)
        self._thread.start()

    def put(self, sql: str, row: Sequence[Any]) -> None:
        if self._closed:
            raise StoreError("the trace writer is closed; open the workbench again")
        self.queue.put((sql, row))

    def put_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.put(sql, row)

    def flush(self, timeout: float | None = None) -> None:
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        self.queue.put((_FLUSH, done))
        if not done.wait(timeout):
            raise StoreError(f"trace writer did not flush within {timeout} s")

    async def flush_async(self) -> None:
        """Await until every row queued so far is committed, without blocking the loop.

        Many awaiting callers share one commit (group commit).
        """
        if self._closed or not self._thread.is_alive():
            return
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done() -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

        self.queue.put((_FLUSH, done))
        await future

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self.queue.put((_STOP, None))
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        _configure(conn)
        try:
            while True:
                item = self.queue.get()
                batch = [item]
                # Take what is already waiting, up to a batch, without blocking.
                while len(batch) < WRITER_BATCH:
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                stop = self._write(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[Any]) -> bool:
        groups: dict[str, list[Sequence[Any]]] = {}
        events: list[Any] = []
        stop = False
        for sql, payload in batch:
            if sql is _FLUSH:
                events.append(payload)
            elif sql is _STOP:
                stop = True
            else:
                groups.setdefault(sql, []).append(payload)
        if groups:
            self._commit(conn, groups)
        for ev in events:
            # A threading.Event from flush(), or a callback from flush_async().
            ev.set() if isinstance(ev, threading.Event) else ev()
        return stop

    def _commit(self, conn: sqlite3.Connection, groups: dict[str, list[Sequence[Any]]]) -> None:
        n = sum(len(rows) for rows in groups.values())
        if self._transaction(conn, groups):
            self.written += n
            return
        failed = n
        if n > 1 and not _is_busy(self.last_error):
            # One bad row (a value SQLite cannot bind, a duplicate id) must not lose
            # the rows batched with it: write them one by one and drop only the bad.
            failed = 0
            for sql, rows in groups.items():
                for row in rows:
                    if self._transaction(conn, {sql: [row]}):
                        self.written += 1
                    else:
                        failed += 1
        self.failed += failed
        warnings.warn(
            f"workbench could not write {failed} trace row{'s' if failed != 1 else ''} to {self.path}: "
            f"{self.last_error}",
            RuntimeWarning,
            stacklevel=1,
        )

    def _transaction(self, conn: sqlite3.Connection, groups: dict[str, list[Sequence[Any]]]) -> bool:
        """Write ``groups`` in one transaction, waiting out locks; False when it failed."""
        for attempt in range(20):
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql, rows in groups.items():
                    conn.executemany(sql, rows)
                conn.execute("COMMIT")
                return True
            except Exception as exc:  # noqa: BLE001 - the writer thread must survive any bad row
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self.last_error = exc
                if _is_busy(exc):
                    time.sleep(min(0.05 * 2**attempt, 2.0))
                    continue
                return False
        return False


def _is_busy(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


@atexit.register
def _flush_all_writers() -> None:
    for writer in list(_live_writers):
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - at exit, report and keep closing the others
            pass


def _restart_writers_in_child() -> None:
    # Threads do not survive fork: without this, a forked child's rows would sit in a
    # queue nobody reads and flush() would return at once. Rows queued before the
    # fork are the parent's to write, so the child starts with an empty queue.
    # Forking while SQLite is busy on another thread can still hang the child in
    # SQLite itself; use the "spawn" start method for processes that trace.
    for writer in list(_live_writers):
        if not writer._closed:
            writer._start()


os.register_at_fork(after_in_child=_restart_writers_in_child)
