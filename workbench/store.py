"""The SQLite file: opening it (refusing foreign, damaged or unwritable files), migrations,
the small helpers record modules use, and ``health()``.

Durability, as promised in the README (the writer is ``_writer.py``, the spill
file ``_spill.py``, error translation ``_sqlite.py``):

- Trace rows go through ``BatchWriter``, a background thread that commits at
  least every ``WRITER_WINDOW_S`` (its batches and queue are sized from its own
  measured speed, and callers wait when it falls behind), so a process killed
  outright (SIGKILL) loses at most the rows of that window.
- On SIGTERM and SIGHUP the queue is written before the process ends, when the
  application has no handler of its own; at a normal exit ``atexit`` does it.
- Rows the file refuses (a full disk, a read-only or corrupt file) are kept in
  a spill file beside it (``_spill.py``) and written later; ``flush()`` and
  ``close()`` raise ``RowsNotWritten`` while any are outside the file, and
  ``health()`` counts them.
- Every failure of the file reaches callers as a ``StoreError`` subclass naming
  the file, the cause and what to do, never as a raw ``sqlite3`` error.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _spill
from ._dialect import SQLITE, Dialect
from ._sqlite import BUSY_TIMEOUT_MS, MemoryBackend, SqliteBackend, connect, needs_immutable, read_only_uri, rollback, translate
from ._writer import WRITER_BATCH, WRITER_QUEUE_SIZE, WRITER_WINDOW_S, BatchWriter, _install_signal_handlers, _replay
from .errors import ConfigError, DiskFull, NotAWorkbenchDatabase, ReadOnlyDatabase, RowsNotWritten, StoreError

__all__ = ["BUSY_TIMEOUT_MS", "WRITER_BATCH", "WRITER_QUEUE_SIZE", "WRITER_WINDOW_S", "BatchWriter", "Health", "Store"]

SQLITE_HEADER = b"SQLite format 3\x00"


# -- opening the file --------------------------------------------------------------------------


def _check_is_workbench(path: str) -> None:
    """Refuse a foreign or damaged file before anything is written to it."""
    if path == ":memory:" or not os.path.exists(path):
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise StoreError(f"{path} cannot be read ({exc.strerror}); check its permissions") from None
    if not head:
        return  # an empty file becomes a new workbench file
    if not head.startswith(SQLITE_HEADER):
        raise NotAWorkbenchDatabase(
            f"{path} is not a SQLite database (its first bytes are not SQLite's header); it was not changed. "
            "Pass a new path to wb.open()."
        )
    names: set[str] = set()
    sets: set[str] = set()
    last: sqlite3.Error | None = None
    for immutable in (False, True):
        try:
            conn = sqlite3.connect(read_only_uri(path, immutable=immutable), uri=True)
            try:
                names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                if "_sqlite_migrations" in names:
                    sets = {r[0] for r in conn.execute("SELECT DISTINCT migration_set FROM _sqlite_migrations")}
            finally:
                conn.close()
            last = None
            break
        except sqlite3.Error as exc:
            last = exc
            if not needs_immutable(exc):
                break
    if last is not None:
        raise translate(last, path, "reading the schema of") from None
    user_tables = {n for n in names if not n.startswith("sqlite_")}
    if user_tables and "workbench" not in sets:
        raise NotAWorkbenchDatabase(
            f"{path} is a SQLite database but not a workbench one "
            f"(it has tables: {', '.join(sorted(user_tables)[:5])}); it was not changed. "
            "Pass a new path to wb.open()."
        )


def _check_writable(path: str) -> None:
    """A file we may not write opens silently read-only in SQLite: refuse it up front, with advice."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ReadOnlyDatabase(
            f"{path} is read-only ({exc.strerror}); workbench writes prompts, datasets and traces to it. "
            f"Make it writable (chmod u+w {path}), or open it only for viewing with "
            f"wb.open({path!r}, readonly=True)."
        ) from None
    os.close(fd)


_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def _remove_created(path: str, existed: set[str]) -> None:
    """After a failed create, remove the empty file (and side files) this open made."""
    try:
        if os.path.getsize(path) != 0:
            return
    except OSError:
        return
    for suffix in _SIDE_FILES:
        if path + suffix not in existed:
            with contextlib.suppress(OSError):
                os.remove(path + suffix)


# -- the store -------------------------------------------------------------------------------


def is_server_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a PostgreSQL server (``postgresql://...``) rather than a file."""
    return isinstance(target, str) and target.lower().startswith(("postgresql://", "postgres://"))


class Store:
    """One workbench SQLite file, or a PostgreSQL database (``Store("postgresql://...")``).

    ``conn`` is for the caller's thread (reads and small writes); trace rows go
    through ``writer``, a background thread with its own connection. With
    ``readonly=True`` the file is opened for reading only and every write is
    refused with a ``ReadOnlyDatabase`` error.

    ``dialect`` says how the database spells what differs (``_dialect.py``);
    ``backend`` connects, commits and translates the driver's errors.
    A URL gives a ``_pg.PostgresStore``, which keeps this interface.
    """

    dialect: Dialect = SQLITE

    def __new__(cls, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Store:
        if cls is Store and is_server_url(path):
            from ._pg import PostgresStore

            return super().__new__(PostgresStore)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike[str], *, migrate: bool = True, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self.backend: Any = SqliteBackend(self.path)
        self.lock = threading.RLock()
        self._local = threading.local()
        self._thread_conns: list[sqlite3.Connection] = []
        self._writer: BatchWriter | None = None
        self._writer_lock = threading.Lock()
        self._immutable = False
        self._recovered = 0
        if self.path == ":memory:":
            if readonly:
                raise ConfigError("readonly=True needs a file; an in-memory database starts empty")
            self.conn = connect(self.path)
            self.backend = MemoryBackend(self.conn, self.lock)
            if migrate:
                self.migrate()
            return
        parent = Path(self.path).resolve().parent
        if not parent.exists():
            raise StoreError(f"folder {parent} does not exist; create it or pick another path")
        existed = {self.path + s for s in _SIDE_FILES if os.path.exists(self.path + s)}
        if readonly and self.path not in existed:
            raise StoreError(f"{self.path} does not exist; readonly=True opens an existing workbench file")
        _check_is_workbench(self.path)
        if not readonly:
            _check_writable(self.path)
        try:
            self.conn = self._connect()
            if readonly:
                self._check_schema()
            elif migrate:
                self.migrate()
        except BaseException as exc:
            conn = getattr(self, "conn", None)
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            if not isinstance(exc, (sqlite3.Error, StoreError)):
                raise
            doing = "opening" if self.path in existed else "creating"
            error = translate(exc, self.path, doing, readonly=readonly, existed=self.path in existed)
            if isinstance(error, (DiskFull, ReadOnlyDatabase)):
                _remove_created(self.path, existed)  # a full disk or a read-only folder leaves no empty file
            if error is exc:
                raise
            raise error from None
        if not readonly:
            _install_signal_handlers()

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            return connect(self.path)
        for immutable in (False, True):
            conn = sqlite3.connect(self.read_uri(immutable), uri=True, check_same_thread=False, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                conn.execute("PRAGMA query_only = ON")
            except sqlite3.Error as exc:
                conn.close()
                if immutable or not needs_immutable(exc):
                    raise
                continue
            self._immutable = immutable
            if immutable and os.path.exists(self.path + "-wal") and os.path.getsize(self.path + "-wal") > 0:
                warnings.warn(
                    f"{self.path} is opened without its write-ahead log ({self.path}-wal): its folder is not "
                    "writable, so SQLite cannot read the log, and the changes still in it are not shown. "
                    "Open it from a writable folder to see them.",
                    RuntimeWarning, stacklevel=3,
                )
            return conn
        raise AssertionError("unreachable")

    def read_uri(self, immutable: bool | None = None) -> str:
        """The read-only SQLite URI other readers (the Arrow reader process) open this file with."""
        return read_only_uri(self.path, immutable=self._immutable if immutable is None else immutable)

    def _check_schema(self) -> None:
        """A read-only open cannot migrate: refuse a file whose schema is not this version's."""
        from .migrations import NAMES

        applied = self._applied_fast()
        if applied is None:
            raise StoreError(
                f"{self.path} is not a workbench file yet (it has no schema); open it without readonly=True to create one"
            )
        newer = applied - set(NAMES)
        if newer:
            raise StoreError(
                f"{self.path} was migrated by a newer workbench ({', '.join(sorted(newer))}); upgrade workbench to open it"
            )
        missing = [n for n in NAMES if n not in applied]
        if missing:
            raise StoreError(
                f"{self.path} needs migrations this read-only open cannot apply ({', '.join(missing)}); "
                f"open it once with wb.open({self.path!r}) or run `workbench db migrate --db {self.path}`"
            )

    def error(self, exc: BaseException, doing: str = "writing to") -> StoreError:
        """The ``StoreError`` for a failure of this file (see ``_sqlite.translate``)."""
        return self.backend.translate(exc, doing, readonly=self.readonly)

    def refused(self, doing: str) -> ReadOnlyDatabase:
        """The error for a write to a store opened with ``readonly=True``."""
        return ReadOnlyDatabase(
            f"{self.path} was opened with readonly=True: {doing} it is refused. Open it with wb.open({self.path!r}) to change it."
        )

    def connect(self) -> Any:
        """A new connection of this store's own (for a module that keeps one, like the gateway's limits)."""
        try:
            return self.backend.connect()
        except self.backend.errors as exc:
            raise self.error(exc, "opening") from None

    def identity(self) -> tuple[Any, ...]:
        """Tells this database from another at the same path (a file replaced): (device, inode)."""
        st = os.stat(os.path.realpath(self.path))
        return (st.st_dev, st.st_ino)

    def warm(self) -> None:
        """Start what the first frame read would wait for (the Arrow reader process)."""
        if self.path != ":memory:":
            from ._reader import reader

            reader().prestart()

    def read_frame(self, parts: Sequence[tuple[str, Sequence[Any]]], options: dict[str, str]) -> Any:
        """Several SELECTs of one shape as one Polars frame, through Arrow (see ``frames.read_sql_parts``)."""
        from ._reader import ReaderError, reader

        try:
            # In a child process: see _reader.py for why the driver must not share ours.
            return reader().read_parts(self.read_uri(), parts, options, self.identity())
        except ReaderError as exc:
            # The child reports SQLite's own words: a damaged page, a lock, a missing file.
            error = self.error(exc, "reading")
            if type(error) is StoreError:
                raise StoreError(f"reading {self.path} failed: {exc} (query: {parts[0][0].strip()[:200]})") from None
            raise error from None

    @property
    def db(self) -> Any:
        """A sqlite-utils ``Database`` over the caller's connection."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""
        from .migrations import NAMES

        with self.lock:
            if self._applied_fast() == set(NAMES):
                return []
            if self.readonly:
                self._check_schema()
            from .migrations import migrations

            db = self.db
            if not self._pending(db):
                return []
            # Another process may be migrating the same new file right now: take the
            # write lock, then decide again what is pending, so each migration runs once.
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self.error(exc, "migrating") from None
            try:
                pending = self._pending(db)
                if pending:
                    migrations.apply(db)
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                rollback(self.conn)
                raise self.migration_error(exc) from None
            except BaseException:
                rollback(self.conn)
                raise
            return pending

    def migration_error(self, exc: BaseException) -> StoreError:
        """The error for a failed migration: the cause's own ``StoreError`` (a full disk), else one naming the set."""
        from .migrations import MIGRATION_SET

        error = self.error(exc, "migrating")
        if type(error) is StoreError:
            return StoreError(f"migrating {self.path} ({MIGRATION_SET}) failed: {exc if isinstance(exc, self.backend.errors) else error}")
        return error

    def _applied_fast(self) -> set[str] | None:
        """Applied workbench migration names by plain SQL (no sqlite-utils import)."""
        try:
            rows = self.conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'workbench'"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
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
            try:
                return self.conn.execute(sql, params)
            except self.backend.errors as exc:
                raise self.error(exc, _doing(sql)) from None

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts."""
        with self.lock:
            try:
                cur = self.conn.execute(sql, params)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, row)) for row in cur.fetchall()]
            except self.backend.errors as exc:
                raise self.error(exc, "reading") from None

    def write_now(self, items: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Commit ``(sql, row)`` items in one transaction on this thread's own connection.

        For callers that must know their rows are on disk before going on (an
        experiment's paid calls) without a round trip through the background writer.
        When the file refuses them, the rows are kept in the spill file (see
        ``_spill.py``) and the error says so.
        """
        if not items:
            return
        if self.readonly:
            raise self.refused("recording calls in")
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self.backend.connect()
                self._local.conn = conn
                self._thread_conns.append(conn)
            error = self.backend.transaction(conn, list(items))
        except self.backend.errors as exc:
            error = exc
        if error is None:
            return
        translated = self.error(error, "writing to")
        if self.backend.row_level(error):
            raise translated from None
        # Paid calls must not be lost: keep the rows, and say where in the error.
        note = self.writer.keep([(_spill.PENDING, sql, row, str(translated)) for sql, row in items], error)
        raise type(translated)(f"{translated} {note}") from None

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` groups writes atomically (BEGIN IMMEDIATE)."""
        return _Transaction(self)

    # -- the background writer ----------------------------------------------------------------

    @property
    def writer(self) -> BatchWriter:
        """The background writer, started on first use (and again after ``close()``)."""
        if self.readonly:
            raise self.refused("recording traces in")
        writer = self._writer
        if writer is None or writer._closed:
            # Threads tracing their first calls at once must share one writer: rows given
            # to a second one would be written, but no sync() or flush() would wait for them.
            with self._writer_lock:
                writer = self._writer
                if writer is None or writer._closed:
                    writer = self._writer = BatchWriter(self.path, backend=self.backend, idle=self._idle_work())
                    _install_signal_handlers()
        return writer

    def _idle_work(self) -> Any:
        """What the writer does when idle: catch the full-text index up (a SQLite file's FTS5 index)."""
        if self.path == ":memory:" or self.dialect.fts != "fts5":
            return None
        from .traces import index_fts_some

        return index_fts_some

    def sync(self, timeout: float | None = None) -> None:
        """Wait until every queued row is committed or kept aside; never raises for kept rows.

        For reads that must see what was traced; ``flush`` is the promise that rows are in the file.
        """
        if self._writer is not None:
            self._writer.sync(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued row is committed.

        Raises:
            RowsNotWritten: rows this process traced are not in the file (how many, where they are kept and why).
        """
        if self._writer is not None:
            self._writer.flush(timeout)

    async def flush_async(self) -> None:
        """``sync`` for coroutines: awaits the commit without blocking the event loop."""
        if self._writer is not None:
            await self._writer.flush_async()

    def health(self) -> Health:
        """Rows written, pending, spilled and failed (see ``Health``)."""
        writer = self._writer
        spill = writer.spill if writer is not None else _spill.Spill(self.backend.spill_base) if self.path != ":memory:" else None
        spilled, failed = spill.counts() if spill is not None else (0, 0)
        held = len(writer.held) if writer is not None else 0
        return Health(
            path=self.path,
            written=self._recovered + (0 if writer is None else writer.written),
            pending=(0 if writer is None else writer.pending()),
            spilled=spilled,
            failed=failed,
            spill_path=None if spill is None else spill.where(),
            last_error=None if writer is None or writer.last_error is None else str(writer.last_error),
            in_memory_only=held,
            readonly=self.readonly,
        )

    def recover(self, *, discard_failed: bool = False) -> Health:
        """Write every kept row into the file now (failed rows are tried again too).

        ``discard_failed=True`` then deletes the rows SQLite still refuses. Returns
        the health afterwards.
        """
        if self.readonly:
            raise self.refused("recovering rows into")
        if self._writer is not None:
            self._writer.sync()
            self._writer.retry_held_now()
        spill = _spill.Spill(self.backend.spill_base)
        try:
            conn = self.backend.connect()
        except self.backend.errors as exc:
            raise self.error(exc, "recovering rows into") from None
        try:
            result = _replay(self.backend, conn, spill, retry_failed=True, discard_failed=discard_failed)
        except self.backend.errors as exc:
            raise self.error(exc, "recovering rows into") from None
        except OSError as exc:
            raise StoreError(
                f"the rows kept for {self.path} cannot be read or rewritten ({exc}); check the spill files "
                f"{' and '.join(spill.paths)}"
            ) from None
        finally:
            self.backend.close(conn)
        self._recovered += result.written
        if result.error is not None:
            raise self.error(result.error, "recovering rows into")
        return self.health()

    def close(self) -> None:
        """Write what is queued and close; raises ``RowsNotWritten`` (after closing) if rows stay outside."""
        kept: RowsNotWritten | None = None
        if self._writer is not None:
            try:
                self._writer.close()
            except RowsNotWritten as exc:
                kept = exc
            self._writer = None
        for conn in self._thread_conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - made on another thread; it closes when that thread's objects go
                pass
        self._thread_conns.clear()
        with self.lock:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - made on another thread
                pass
        if kept is not None:
            raise kept


def _doing(sql: str) -> str:
    head = sql.lstrip()[:6].upper()
    return "reading" if head in ("SELECT", "PRAGMA") or head.startswith("WITH") else "writing to"


class _Transaction:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> Any:
        self.store.lock.acquire()
        try:
            self.store.conn.execute("BEGIN IMMEDIATE")
        except self.store.backend.errors as exc:
            self.store.lock.release()
            raise self.store.error(exc) from None
        except BaseException:
            self.store.lock.release()
            raise
        return self.store.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                try:
                    self.store.conn.execute("COMMIT")
                except self.store.backend.errors as error:
                    rollback(self.store.conn)
                    raise self.store.error(error) from None
            else:
                rollback(self.store.conn)
                if isinstance(exc, self.store.backend.errors):
                    raise self.store.error(exc) from None
        finally:
            self.store.lock.release()


@dataclass(frozen=True)
class Health:
    """Where the rows handed to the writer are: ``bench.health()``."""

    path: str
    """The database file."""
    written: int
    """Rows this process committed to the file (its writer's, and those ``recover()`` wrote)."""
    pending: int
    """Rows in memory, queued or waiting to be retried."""
    spilled: int
    """Rows kept in the spill file, to be written when the file takes them (any process's)."""
    failed: int
    """Rows SQLite refuses (a value it cannot store), kept in the spill file with their error."""
    spill_path: str | None
    """The spill file holding rows, or None."""
    last_error: str | None
    """Why the last commit failed, if one did."""
    in_memory_only: int = 0
    """Of ``pending``: rows neither the file nor a spill file took (lost if the process ends)."""
    readonly: bool = False
    """Opened with ``readonly=True``: nothing is written."""

    @property
    def ok(self) -> bool:
        """Every row handed over is in the file or on its way."""
        return not (self.spilled or self.failed or self.in_memory_only)

    def _summary(self) -> str:
        from ._format import count

        return (
            f"written {count(self.written)} · pending {count(self.pending)} · "
            f"spilled {count(self.spilled)} · failed {count(self.failed)}"
        )

    def __repr__(self) -> str:
        where = f" in {self.spill_path}" if self.spill_path else ""
        return f"<Health {self.path}: {self._summary()}{where}{' (read-only)' if self.readonly else ''}>"

    def _repr_html_(self) -> str:
        from . import _html
        from ._format import count

        state = "read-only" if self.readonly else "all rows in the file" if self.ok else "rows outside the file"
        colour = "#1a7f37" if self.ok else "#b42318"
        tiles = "".join(
            f'<div style="min-width:6em"><div style="font-size:1.4em;font-weight:600;'
            f'{"color:" + colour if label in ("spilled", "failed") and value else ""}">{_html.esc(count(value))}</div>'
            f'<div style="font-size:.85em;opacity:.75">{_html.esc(label)}</div></div>'
            for label, value in (("written", self.written), ("pending", self.pending),
                                 ("spilled", self.spilled), ("failed", self.failed))
        )
        notes = []
        if self.spill_path:
            notes.append(f"kept in <code>{_html.esc(self.spill_path)}</code>; "
                         f"<code>workbench db recover --db {_html.esc(self.path)}</code> writes them into the file")
        if self.in_memory_only:
            notes.append(f"{_html.esc(count(self.in_memory_only))} of the pending rows are only in memory: "
                         "no spill file could be written")
        if self.last_error:
            notes.append(f"last error: {_html.esc(self.last_error)}")
        body = (
            f'<div><b>{_html.esc(os.path.basename(self.path))}</b> '
            f'<span style="color:{colour}">● {_html.esc(state)}</span> '
            f'<span style="font-size:.85em;opacity:.75">{_html.esc(self.path)}</span></div>'
            f'<div style="display:flex;gap:1.2em;margin:.4em 0">{tiles}</div>'
            + "".join(f'<div style="font-size:.85em">{n}</div>' for n in notes)
        )
        return _html.root(body, cls="wb-health")
