"""The SQLite file: connections, migrations, error translation and the batching background writer.

Durability, as promised in the README:

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

import atexit
import contextlib
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import _spill
from .errors import (
    ConfigError,
    CorruptDatabase,
    DatabaseLocked,
    DiskFull,
    NotAWorkbenchDatabase,
    ReadOnlyDatabase,
    RowsNotWritten,
    StoreError,
)

BUSY_TIMEOUT_MS = 30_000
"""Concurrent writers (another process tracing into the same file) wait this long."""
WRITER_QUEUE_SIZE = 100_000
"""Most rows that may ever wait for disk; the writer keeps far fewer (``WRITER_WINDOW_S``)."""
WRITER_BATCH = 5_000
"""Rows per transaction until the writer has measured its own speed."""
WRITER_BATCH_MAX = 50_000
"""Rows per transaction at most, however fast the disk."""
WRITER_BATCH_MIN = 100
"""Rows per transaction at least, however slow the disk (and the most a caller can be made to wait behind)."""
WRITER_WINDOW_S = 0.2
"""The writer commits a queued row within this long: a SIGKILL loses at most this window."""
SIGNAL_FLUSH_S = 5.0
"""On SIGTERM, how long the writer may take to commit the queue before the rest is spilled."""
REPLAY_EVERY_S = 1.0
"""While the file refuses rows, kept rows are retried at most this often (and on every flush)."""
SQLITE_HEADER = b"SQLite format 3\x00"


# -- opening the file --------------------------------------------------------------------------


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


def _uri(path: str, *, immutable: bool = False) -> str:
    """A read-only SQLite URI; ``immutable`` also skips the WAL index, which a read-only folder cannot hold."""
    uri = "file:" + quote(Path(path).resolve().as_posix(), safe="/") + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def _needs_immutable(exc: sqlite3.Error) -> bool:
    """A WAL file in a folder we cannot write: SQLite cannot create the -shm index to read it."""
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN", "SQLITE_READONLY_CANTINIT")


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
            conn = sqlite3.connect(_uri(path, immutable=immutable), uri=True)
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
            if not _needs_immutable(exc):
                break
    if last is not None:
        raise _translate(last, path, "reading the schema of") from None
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


# -- errors ----------------------------------------------------------------------------------


def _free_bytes(folder: str) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _free(folder: str) -> str:
    from ._format import count

    free = _free_bytes(folder)
    return "free space unknown" if free is None else f"{count(free)} bytes free"


def _size_limit() -> int | None:
    """The process's file size limit (``ulimit -f``) in bytes, when one is set."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _translate(exc: BaseException, path: str, doing: str, *, readonly: bool = False, existed: bool = True) -> StoreError:
    """The ``StoreError`` subclass for a ``sqlite3`` (or OS) error on ``path``, with the fix in its message."""
    if isinstance(exc, StoreError):
        return exc
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    folder = str(Path(path).resolve().parent) if path != ":memory:" else "."
    base = os.path.basename(path)
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        return StoreError(f"{path} was closed (bench.close()); open it again with wb.open({path!r})")
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return DiskFull(
            f"{doing} {path} failed: the disk is full ({_free(folder)} in {folder}). "
            "Free space on that disk, or move the file to a disk with room."
        )
    if name == "SQLITE_READONLY_DIRECTORY" or (name == "SQLITE_CANTOPEN" and existed and not readonly and not os.access(folder, os.W_OK)):
        return ReadOnlyDatabase(
            f"the folder {folder} is not writable, and SQLite must create {base}-wal and {base}-shm beside "
            f"{path} to use it (WAL mode); the file itself is not damaged. Make the folder writable, copy the "
            f"file to a writable folder, or open it for viewing with wb.open({path!r}, readonly=True)."
        )
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        if readonly:
            return ReadOnlyDatabase(
                f"{path} was opened with readonly=True: {doing} it is refused. "
                f"Open it with wb.open({path!r}) to change it."
            )
        return ReadOnlyDatabase(
            f"{doing} {path} failed: the file is read-only ({text}). Make it writable "
            f"(chmod u+w {path}), or open it only for viewing with wb.open({path!r}, readonly=True)."
        )
    if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB" or "malformed" in text or "not a database" in text:
        return CorruptDatabase(
            f"{path} is damaged: SQLite says '{text}' while {doing} it. Copy what is readable into a new "
            f"file with `sqlite3 {path} .recover | sqlite3 recovered.db` and open that, or restore a backup."
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "is locked" in text:
        return DatabaseLocked(
            f"{path} is locked by another process (waited {BUSY_TIMEOUT_MS / 1000:g} s while {doing} it). "
            "Close the program holding a write transaction on it (a database browser, another kernel) and try again."
        )
    if name.startswith("SQLITE_IOERR") and _free_bytes(folder) == 0:
        # SQLite says "disk I/O error" when even its small WAL index (-shm) finds no room.
        return DiskFull(
            f"{doing} {path} failed: the disk is full ({_free(folder)} in {folder}; SQLite: {text}, {name}). "
            "Free space on that disk, or move the file to a disk with room."
        )
    if name.startswith("SQLITE_IOERR"):
        limit = _size_limit()
        if limit is not None and name in ("SQLITE_IOERR_WRITE", "SQLITE_IOERR_TRUNCATE", "SQLITE_IOERR"):
            from ._format import count

            return DiskFull(
                f"{doing} {path} failed: this process may not write files larger than {count(limit)} bytes "
                "(its file size limit, `ulimit -f`). Raise the limit, or use a smaller file."
            )
        return StoreError(
            f"{doing} {path} failed with a disk I/O error ({text}). Check the disk (free space, `dmesg`) "
            "and the file's permissions, then try again."
        )
    if name == "SQLITE_CANTOPEN" or "unable to open" in text:
        if not existed:
            reason = _why_no_create(folder)
            cls = ReadOnlyDatabase if reason and ("ermission" in reason or "ead-only" in reason) else StoreError
            return cls(
                f"cannot create {path}: {reason or text}. Pick a path in a folder you can write, "
                "or fix the folder's permissions."
            )
        return StoreError(f"cannot open {path} ({text}); check the file's and the folder's permissions")
    return StoreError(f"{doing} {path} failed: {type(exc).__name__}: {text}")


def _why_no_create(folder: str) -> str | None:
    """Why a new file cannot be made in ``folder``, from the operating system itself."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".workbench-probe-")
    except OSError as exc:
        return f"the folder {folder} does not take new files ({exc.strerror})"
    os.close(fd)
    os.remove(probe)
    return None


def _row_level(exc: BaseException) -> bool:
    """Whether ``exc`` is about one row's values (SQLite refuses the row) rather than the file."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError)):
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorname", "") in ("SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_RANGE")
    return True  # OverflowError, UnicodeEncodeError, TypeError: the values, before SQLite saw them


def _is_busy(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _is_duplicate(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE constraint failed" in str(exc)


# -- the store -------------------------------------------------------------------------------


class Store:
    """One workbench SQLite file.

    ``conn`` is for the caller's thread (reads and small writes); trace rows go
    through ``writer``, a background thread with its own connection. With
    ``readonly=True`` the file is opened for reading only and every write is
    refused with a ``ReadOnlyDatabase`` error.
    """

    def __init__(self, path: str | os.PathLike[str], *, migrate: bool = True, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self.lock = threading.RLock()
        self._local = threading.local()
        self._thread_conns: list[sqlite3.Connection] = []
        self._writer: BatchWriter | None = None
        self._immutable = False
        self._recovered = 0
        if self.path == ":memory:":
            if readonly:
                raise ConfigError("readonly=True needs a file; an in-memory database starts empty")
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            _configure(self.conn)
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
            error = _translate(exc, self.path, doing, readonly=readonly, existed=self.path in existed)
            if isinstance(error, (DiskFull, ReadOnlyDatabase)):
                _remove_created(self.path, existed)  # a full disk or a read-only folder leaves no empty file
            if error is exc:
                raise
            raise error from None
        if not readonly:
            _install_signal_handlers()

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                _configure(conn)
            except BaseException:
                conn.close()
                raise
            return conn
        for immutable in (False, True):
            conn = sqlite3.connect(self.read_uri(immutable), uri=True, check_same_thread=False, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                conn.execute("PRAGMA query_only = ON")
            except sqlite3.Error as exc:
                conn.close()
                if immutable or not _needs_immutable(exc):
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
        return _uri(self.path, immutable=self._immutable if immutable is None else immutable)

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
        """The ``StoreError`` for a failure of this file (see ``_translate``)."""
        return _translate(exc, self.path, doing, readonly=self.readonly)

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
                self._rollback(self.conn)
                error = self.error(exc, "migrating")
                if type(error) is StoreError:
                    raise StoreError(f"migrating {self.path} ({MIGRATION_SET}) failed: {exc}") from exc
                raise error from None
            except BaseException:
                self._rollback(self.conn)
                raise
            return pending

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
            except sqlite3.Error as exc:
                raise self.error(exc, _doing(sql)) from None

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts."""
        with self.lock:
            try:
                cur = self.conn.execute(sql, params)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, row)) for row in cur.fetchall()]
            except sqlite3.Error as exc:
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
            raise self.error(sqlite3.OperationalError("attempt to write a readonly database"), "recording calls in")
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                _configure(conn)
                self._local.conn = conn
                self._thread_conns.append(conn)
            error = _transaction(conn, list(items))
        except sqlite3.Error as exc:
            error = exc
        if error is None:
            return
        translated = self.error(error, "writing to")
        if _row_level(error):
            raise translated from None
        # Paid calls must not be lost: keep the rows, and say where in the error.
        note = self.writer.keep([(_spill.PENDING, sql, row, str(translated)) for sql, row in items], error)
        raise type(translated)(f"{translated} {note}") from None

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` groups writes atomically (BEGIN IMMEDIATE)."""
        return _Transaction(self)

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite rolls back by itself on some errors (a full disk, an I/O error): a second
        # ROLLBACK would fail with "no transaction is active" and hide the cause.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    # -- the background writer ----------------------------------------------------------------

    @property
    def writer(self) -> BatchWriter:
        """The background writer, started on first use (and again after ``close()``)."""
        if self.readonly:
            raise self.error(sqlite3.OperationalError("attempt to write a readonly database"), "recording traces in")
        writer = self._writer
        if writer is None or writer._closed:
            writer = self._writer = BatchWriter(self.path)
            _install_signal_handlers()
        return writer

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
        spill = writer.spill if writer is not None else _spill.Spill(self.path) if self.path != ":memory:" else None
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
            raise self.error(sqlite3.OperationalError("attempt to write a readonly database"), "recovering rows into")
        if self._writer is not None:
            self._writer.sync()
            self._writer.retry_held_now()
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            _configure(conn)
            result = _replay(conn, _spill.Spill(self.path), retry_failed=True, discard_failed=discard_failed)
        except sqlite3.Error as exc:
            raise self.error(exc, "recovering rows into") from None
        finally:
            conn.close()
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
            except sqlite3.ProgrammingError:
                pass  # made on another thread; it closes when that thread's objects go
        self._thread_conns.clear()
        with self.lock:
            try:
                self.conn.close()
            except sqlite3.ProgrammingError:
                pass
        if kept is not None:
            raise kept


def _doing(sql: str) -> str:
    head = sql.lstrip()[:6].upper()
    return "reading" if head in ("SELECT", "PRAGMA") or head.startswith("WITH") else "writing to"


class _Transaction:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store.lock.acquire()
        try:
            self.store.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
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
                except sqlite3.Error as error:
                    Store._rollback(self.store.conn)
                    raise self.store.error(error) from None
            else:
                Store._rollback(self.store.conn)
                if isinstance(exc, sqlite3.Error):
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

        state = "read-only" if self.readonly else "ok" if self.ok else "rows outside the file"
        colour = "#1a7f37" if self.ok else "#b42318"
        rows = [(count(self.written), count(self.pending), count(self.spilled), count(self.failed))]
        notes = []
        if self.spill_path:
            notes.append(f"kept in <code>{_html.esc(self.spill_path)}</code>; `workbench db recover` writes them")
        if self.in_memory_only:
            notes.append(f"{_html.esc(count(self.in_memory_only))} only in memory: no spill file could be written")
        if self.last_error:
            notes.append(f"last error: {_html.esc(self.last_error)}")
        body = (
            f"<div><b>{_html.esc(self.path)}</b> <span style=\"color:{colour}\">{_html.esc(state)}</span></div>"
            + _html.table(["written", "pending", "spilled", "failed"], rows)
            + "".join(f"<div><small>{n}</small></div>" for n in notes)
        )
        return _html.root(body, cls="wb-health")


# -- the background writer ---------------------------------------------------------------------


_SYNC = object()
"""Marker: wake me when what was queued before is committed or kept."""
_FLUSH = object()
"""Marker: as _SYNC, and retry kept rows now."""
_STOP = object()
_live_writers: weakref.WeakSet[BatchWriter] = weakref.WeakSet()


class _RowQueue:
    """A FIFO whose bound the writer moves; takers get whole batches under one lock."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: deque[Any] = deque()
        self.lock = threading.Lock()
        self.not_empty = threading.Condition(self.lock)
        self.not_full = threading.Condition(self.lock)

    def put(self, item: Any) -> None:
        with self.not_full:
            while len(self.items) >= self.maxsize:
                self.not_full.wait()
            self.items.append(item)
            self.not_empty.notify()

    def put_control(self, item: Any) -> None:
        """Queue a marker (flush, stop) even when full: it waits behind the rows, not for room."""
        with self.lock:
            self.items.append(item)
            self.not_empty.notify()

    def take(self, most: int, bound: int) -> list[Any]:
        """Up to ``most`` items, waiting for the first; sets the queue's bound to ``bound``."""
        with self.not_empty:
            while not self.items:
                self.not_empty.wait()
            n = min(most, len(self.items))
            batch = [self.items.popleft() for _ in range(n)]
            self.maxsize = bound
            self.not_full.notify_all()
            return batch

    def qsize(self) -> int:
        return len(self.items)


class BatchWriter:
    """A background thread that inserts queued rows in batched transactions.

    ``put(sql, row)`` returns at once unless the writer is a window behind (then
    it waits: backpressure, never a drop). Rows with the same SQL are written
    with one ``executemany`` per batch. Batches and the queue's bound follow the
    writer's measured speed, so a queued row is committed within
    ``WRITER_WINDOW_S``. Rows the file refuses are kept (``keep``) and retried.
    """

    def __init__(self, path: str, maxsize: int = WRITER_QUEUE_SIZE) -> None:
        self.path = path
        self.maxsize = maxsize
        self.written = 0
        self.failed = 0
        """Rows this writer found SQLite refuses (kept in the spill file with their error)."""
        self.spilled = 0
        """Rows this writer moved to the spill file because the file refused them."""
        self.held: list[tuple[str, str, Sequence[Any], str | None]] = []
        """Kept rows no spill file took: (kind, sql, row, error)."""
        self.last_error: StoreError | None = None
        self.spill_error: str | None = None
        self.spill = _spill.Spill(path)
        self._closed = False
        self._batch = min(maxsize, WRITER_BATCH)
        self._row_s: float | None = None
        self._inflight: list[Any] = []
        self._troubled = False
        self._replay_due = bool(self.spill.existing())
        self._replay_after = 0.0
        self._failed_seen = self.spill.counts()[1] if self._replay_due else 0
        self._start()
        _live_writers.add(self)

    def _start(self) -> None:
        self.queue = _RowQueue(self._batch)
        self._thread = threading.Thread(target=self._run, name="workbench-writer", daemon=True)
        self._thread.start()

    # -- the caller's side ------------------------------------------------------------------

    def put(self, sql: str, row: Sequence[Any]) -> None:
        if self._closed:
            raise StoreError("the trace writer is closed; open the workbench again")
        self.queue.put((sql, row))

    def put_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.put(sql, row)

    def pending(self) -> int:
        """Rows in memory: queued, being written, or held after a failed commit."""
        return self.queue.qsize() + len(self._inflight) + len(self.held)

    def sync(self, timeout: float | None = None, *, retry: bool = False) -> None:
        """Wait until the rows queued so far are committed or kept aside (``retry``: kept rows are retried now)."""
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        self.queue.put_control((_FLUSH if retry else _SYNC, done))
        if not done.wait(timeout):
            raise StoreError(
                f"the trace writer did not finish writing to {self.path} within {timeout} s; its rows stay queued"
            )

    def flush(self, timeout: float | None = None) -> None:
        """``sync`` (retrying kept rows), then raise ``RowsNotWritten`` if rows are outside the file."""
        self.sync(timeout, retry=True)
        self.check()

    async def flush_async(self) -> None:
        """Await until every row queued so far is committed (or kept), without blocking the loop.

        Many awaiting callers share one commit (group commit).
        """
        if self._closed or not self._thread.is_alive():
            return
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done() -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

        self.queue.put_control((_SYNC, done))
        await future

    def close(self) -> None:
        """Write the queue, stop the thread; raises ``RowsNotWritten`` if rows stay outside the file."""
        if self._closed:
            return
        self.sync(retry=True)
        self._closed = True
        self.queue.put_control((_STOP, None))
        self._thread.join()
        if self.held:
            self._spill_held()
        self.check()

    def check(self) -> None:
        """Raise ``RowsNotWritten`` while rows are outside the file (failed rows: once each)."""
        pending, failed = self.spill.counts()
        held = len(self.held)
        new_failed = failed - self._failed_seen
        if not (pending or held or new_failed > 0):
            return
        self._failed_seen = failed
        raise RowsNotWritten(
            self._outside_message(pending, failed, held), pending=pending + held, failed=failed,
            spill_path=self.spill.where(),
        )

    def _outside_message(self, pending: int, failed: int, held: int) -> str:
        total = pending + failed + held
        where = self.spill.where() or self.spill.paths[0]
        parts = []
        if pending:
            parts.append(f"{_rows(pending, 'waits', 'wait')} in {where}")
        if held:
            parts.append(
                f"{_rows(held)} only in this process's memory, because no spill file could be written "
                f"({self.spill_error}); they are lost if the process ends before the file takes them"
            )
        if failed:
            parts.append(f"{_rows(failed, 'can', 'can')} never be written (SQLite refuses a value; each is kept in {where} with its error)")
        cause = f" The file refused them: {self.last_error}" if (pending or held) and self.last_error is not None else ""
        return (
            f"{_rows(total)} not in {self.path}: " + "; ".join(parts) + "." + cause + " "
            f"Fix the cause, then call flush() again or run `workbench db recover --db {self.path}`."
        )

    def keep(self, entries: list[tuple[str, str, Sequence[Any], str | None]], error: BaseException | None = None) -> str:
        """Keep rows the file refused (spill file, else memory); returns where, as a sentence."""
        if error is not None and not _row_level(error):
            self.last_error = _translate(error, self.path, "writing to")
        pending = sum(1 for e in entries if e[0] == _spill.PENDING)
        failed = len(entries) - pending
        try:
            where = self.spill.append(entries)
        except OSError as exc:
            self.held.extend(entries)
            self.spill_error = exc.strerror or str(exc)
            sentence = (
                f"{_rows(len(entries))} kept in memory only: no spill file could be written "
                f"({exc.strerror}); they are lost if this process ends before the file takes them."
            )
        else:
            self.spilled += pending
            self.failed += failed
            parts = []
            if pending:
                parts.append(
                    f"{_rows(pending)} kept in {where} and go into the file at its next successful write "
                    f"(or `workbench db recover --db {self.path}`)."
                )
            if failed:
                first = next(e[3] for e in entries if e[0] == _spill.FAILED)
                parts.append(
                    f"{_rows(failed, 'can', 'can')} never be written, because SQLite refuses a value ({first}); "
                    f"{'it is' if failed == 1 else 'they are'} kept in {where} with {'its' if failed == 1 else 'their'} error."
                )
            sentence = " ".join(parts)
        self._replay_due = self._replay_due or bool(pending) or bool(self.held)
        if not self._troubled or failed:
            # Once per trouble, not once per batch: flush(), close() and health() give the counts.
            self._troubled = self._troubled or bool(pending)
            reason = f"{self.last_error} " if pending and self.last_error is not None else ""
            warnings.warn(f"workbench could not write to {self.path}: {reason}{sentence}", RuntimeWarning, stacklevel=2)
        return sentence

    def retry_held_now(self) -> None:
        """Move rows held in memory to the spill file (``recover`` then writes them)."""
        if self.held:
            self._spill_held()

    def _spill_held(self) -> None:
        held, self.held = self.held, []
        try:
            self.spill.append(held)
        except OSError:
            self.held = held + self.held

    def drain_for_exit(self, deadline: float) -> None:
        """On a terminating signal: commit the queue, or spill what is left at ``deadline``."""
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        self.queue.put_control((_FLUSH, done))
        if done.wait(max(0.0, deadline - time.monotonic())):
            if self.held:
                self._spill_held()
            return
        # The writer is stuck (a lock held elsewhere, a slow disk): keep what it has not written.
        with self.queue.lock:
            rest = list(self.queue.items)
            self.queue.items.clear()
        rows = [(_spill.PENDING, sql, row, "the process ended before the writer could commit")
                for sql, row in list(self._inflight) + rest if isinstance(sql, str)]
        with contextlib.suppress(OSError):
            self.spill.append(rows + self.held)

    # -- the writer's thread ----------------------------------------------------------------

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                batch = self.queue.take(self._batch, min(self.maxsize, self._batch))
                self._inflight = batch
                try:
                    if conn is None:
                        conn = self._connect()
                    stop = self._write(conn, batch)
                except Exception as exc:  # noqa: BLE001 - the writer must outlive any failure, keeping the rows
                    stop = self._write_failed(batch, exc)
                    if conn is not None:  # start again from a fresh connection
                        with contextlib.suppress(sqlite3.Error):
                            conn.close()
                        conn = None
                finally:
                    self._inflight = []
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            _configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _write_failed(self, batch: list[Any], exc: BaseException) -> bool:
        """The connection itself failed: keep the batch's rows and release its waiters."""
        rows = [(_spill.PENDING, sql, payload, None) for sql, payload in batch if isinstance(sql, str)]
        if rows:
            self.keep(rows, exc)
        stop = False
        for sql, payload in batch:
            if sql is _SYNC or sql is _FLUSH:
                _signal(payload)
            elif sql is _STOP:
                stop = True
        return stop

    def _write(self, conn: sqlite3.Connection, batch: list[Any]) -> bool:
        items: list[tuple[str, Sequence[Any]]] = []
        events: list[Any] = []
        force = stop = False
        for sql, payload in batch:
            if sql is _SYNC or sql is _FLUSH:
                events.append(payload)
                force = force or sql is _FLUSH
            elif sql is _STOP:
                stop = force = True
            else:
                items.append((sql, payload))
        committed = self._commit(conn, items) if items else True
        if force and not self._replay_due:
            self._replay_due = bool(self.spill.existing())  # another process may have kept rows
        # Kept rows go in before anyone waiting on this batch reads (an experiment must see
        # its kept calls, or it would pay for them again), with the next commit that works,
        # and otherwise at most every REPLAY_EVERY_S while the file refuses them.
        if self._replay_due and (events or force or (committed and time.monotonic() >= self._replay_after)):
            self._retry_kept(conn)
        for ev in events:
            _signal(ev)
        return stop

    def _commit(self, conn: sqlite3.Connection, items: list[tuple[str, Sequence[Any]]]) -> bool:
        """Write ``items``; keep what the file refuses. True when all were committed."""
        t0 = time.perf_counter()
        written, kept, failed, error = _write_rows(conn, items)
        self.written += written
        if not kept and not failed:
            self._measure(len(items), time.perf_counter() - t0)
            if not self._replay_due:
                self._troubled = False
            return True
        entries = [(_spill.PENDING, items[i][0], items[i][1], None) for i in kept]
        entries += [(_spill.FAILED, items[i][0], items[i][1], why) for i, why in failed]
        self.keep(entries, error)
        return not kept

    def _measure(self, n: int, seconds: float) -> None:
        """Size batches and the queue from the measured time per row.

        A queued row waits for at most the batch being written, then is written in
        the next: two batches. Each is sized to an eighth of the window, because a
        commit sometimes takes several times its usual time (a checkpoint, a busy
        machine, the caller's thread holding the GIL); the estimate rises at once
        on a slow commit and comes down slowly.
        """
        if n < WRITER_BATCH_MIN:
            return
        per_row = seconds / n
        if self._row_s is None or per_row > self._row_s:
            self._row_s = per_row
        else:
            self._row_s = 0.8 * self._row_s + 0.2 * per_row
        target = int(WRITER_WINDOW_S / 8 / max(self._row_s, 1e-7))
        self._batch = max(WRITER_BATCH_MIN, min(target, WRITER_BATCH_MAX, self.maxsize))

    def _retry_kept(self, conn: sqlite3.Connection) -> None:
        """Write rows kept after earlier failures: held in memory first, then the spill file."""
        self._replay_after = time.monotonic() + REPLAY_EVERY_S
        if self.held:
            self._spill_held()
        try:
            result = _replay(conn, self.spill)
        except OSError:
            return  # the spill file cannot be read or rewritten now; try again later
        self.written += result.written
        if result.error is not None:
            self.last_error = _translate(result.error, self.path, "writing to")
            return
        # Failed rows stay in the spill file but are not retried on their own: only recover() does.
        self._replay_due = bool(self.held)
        self._troubled = self._replay_due


def _rows(n: int, one: str = "is", many: str = "are") -> str:
    """``1 row is``, ``2,000 rows are``."""
    from ._format import count

    return f"{count(n)} row {one}" if n == 1 else f"{count(n)} rows {many}"


def _signal(event: Any) -> None:
    # A threading.Event from sync(), or a callback from flush_async().
    event.set() if isinstance(event, threading.Event) else event()


def _transaction(conn: sqlite3.Connection, items: Sequence[tuple[str, Sequence[Any]]]) -> BaseException | None:
    """Write ``items`` in one transaction, waiting out locks; the error when it failed."""
    groups: dict[str, list[Sequence[Any]]] = {}
    for sql, row in items:
        groups.setdefault(sql, []).append(row)
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    error: BaseException | None = None
    for attempt in range(20):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, rows in groups.items():
                _insert_many(conn, sql, rows)
            conn.execute("COMMIT")
            return None
        except Exception as exc:  # noqa: BLE001 - any bad row or file error is reported, not raised
            Store._rollback(conn)
            error = exc
            if _is_busy(exc) and time.monotonic() < deadline:
                time.sleep(min(0.05 * 2**attempt, 2.0))
                continue
            return exc
    return error


_MULTI_ROWS = (512, 64, 8)
"""Rows per multi-row INSERT: a few sizes only, so SQLite's statement cache keeps each."""
_multi_cache: dict[str, tuple[str, str, str] | None] = {}


def _split_values(sql: str) -> tuple[str, str, str] | None:
    """``INSERT ... VALUES (?, ...) [ON CONFLICT ...]`` as (head, one row's tuple, tail), or None."""
    found = _multi_cache.get(sql, False)
    if found is not False:
        return found  # type: ignore[return-value]
    parts = None
    upper = sql.upper()
    at = upper.find(" VALUES ")
    if upper.lstrip().startswith("INSERT") and at > 0 and "RETURNING" not in upper:
        start = sql.find("(", at)
        depth = 0
        for end in range(start, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            if depth == 0:
                parts = (sql[:start], sql[start:end + 1], sql[end + 1:])
                break
    _multi_cache[sql] = parts
    return parts


def _insert_many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` with few statements: one multi-row INSERT steps SQLite once, where
    ``executemany`` steps (and hands the GIL back and forth) once per row; under a busy
    caller thread that is about half the time a row, and far steadier."""
    parts = _split_values(sql) if len(rows) > 1 else None
    if parts is None:
        conn.executemany(sql, rows)
        return
    head, one, tail = parts
    width = len(rows[0])
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    i = 0
    for size in _MULTI_ROWS:
        if size * width > limit:
            continue
        statement = f"{head}{','.join([one] * size)}{tail}"
        while len(rows) - i >= size:
            conn.execute(statement, [v for row in rows[i:i + size] for v in row])
            i += size
    if i < len(rows):
        conn.executemany(sql, rows[i:])


def _write_rows(
    conn: sqlite3.Connection, items: Sequence[tuple[str, Sequence[Any]]], *, replaying: bool = False
) -> tuple[int, list[int], list[tuple[int, str]], BaseException | None]:
    """Commit ``items``: (rows written, indexes kept for a file error, (index, why) refused, the file error).

    One refused row (a value SQLite cannot bind) must not hold back the rows
    batched with it: after a row-level failure each row is written on its own.
    When ``replaying``, a row whose id is already in the file counts as written
    (a crash between a replay's commit and the spill file's rewrite).
    """
    error = _transaction(conn, items)
    if error is None:
        return len(items), [], [], None
    if replaying and len(items) == 1 and _is_duplicate(error):
        return 1, [], [], None
    if not _row_level(error):
        return 0, list(range(len(items))), [], error
    if len(items) == 1:
        return 0, [], [(0, f"{type(error).__name__}: {error}")], None
    written, kept, failed = 0, [], []
    file_error: BaseException | None = None
    for i, item in enumerate(items):
        if file_error is not None:
            kept.append(i)
            continue
        e = _transaction(conn, [item])
        if e is None or (replaying and _is_duplicate(e)):
            written += 1
        elif _row_level(e):
            failed.append((i, f"{type(e).__name__}: {e}"))
        else:
            file_error = e
            kept.append(i)
    return written, kept, failed, file_error


@dataclass
class _Replayed:
    written: int = 0
    failed_left: int = 0
    error: BaseException | None = None


def _replay(
    conn: sqlite3.Connection, spill: _spill.Spill, *, retry_failed: bool = False, discard_failed: bool = False
) -> _Replayed:
    """Write the spill file's pending rows (and failed ones when asked) into the file."""
    result = _Replayed()
    if not spill.existing():
        return result
    with spill.session() as session:
        todo = [i for i, e in enumerate(session.entries) if e.kind == _spill.PENDING or (retry_failed and e.kind == _spill.FAILED)]
        if todo:
            written, kept, failed, error = _write_rows(
                conn, [(session.entries[i].sql, session.entries[i].row) for i in todo], replaying=True
            )
            result.written, result.error = written, error
            if written or failed:
                done = set(todo) - {todo[k] for k in kept} - {todo[k] for k, _ in failed}
                for k, why in failed:
                    e = session.entries[todo[k]]
                    e.kind, e.error = _spill.FAILED, why
                session.entries = [e for i, e in enumerate(session.entries) if i not in done]
                session.changed = True
        if discard_failed:
            left = [e for e in session.entries if e.kind != _spill.FAILED]
            if len(left) != len(session.entries):
                session.entries, session.changed = left, True
        result.failed_left = sum(1 for e in session.entries if e.kind == _spill.FAILED)
    return result


# -- process lifetime ------------------------------------------------------------------------


@atexit.register
def _flush_all_writers() -> None:
    for writer in list(_live_writers):
        try:
            writer.close()
        except RowsNotWritten as exc:
            # Nothing else can be done at exit: say it where the user will see it.
            print(f"workbench: {exc}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - at exit, keep closing the others
            pass


def _restart_writers_in_child() -> None:
    # Threads do not survive fork: without this, a forked child's rows would sit in a
    # queue nobody reads and flush() would return at once. Rows queued before the
    # fork are the parent's to write, so the child starts with an empty queue.
    # Forking while SQLite is busy on another thread can still hang the child in
    # SQLite itself; use the "spawn" start method for processes that trace.
    for writer in list(_live_writers):
        if not writer._closed:
            writer._inflight = []
            writer._start()


os.register_at_fork(after_in_child=_restart_writers_in_child)

_HANDLED_SIGNALS = ("SIGTERM", "SIGHUP")
"""What ``docker stop``, systemd, ``kill`` and a closed terminal send: their default ends the process
without ``atexit``, so queued rows would be lost."""
_handlers_installed = False


def _install_signal_handlers() -> None:
    """Write queued rows before SIGTERM/SIGHUP end the process, where the application has no handler."""
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for name in _HANDLED_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_DFL:  # the application's own handler (or SIG_IGN) is left alone
                signal.signal(signum, _make_handler(previous))
        except (ValueError, OSError):
            continue  # not the main interpreter


def _make_handler(previous: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        writers = [w for w in list(_live_writers) if not w._closed]
        for w in writers:
            if not w.queue.lock.acquire(timeout=0.5):
                # The code this handler interrupted holds the queue's lock (we run on its
                # thread): come back once it has let go.
                threading.Timer(0.02, os.kill, (os.getpid(), signum)).start()
                return
            w.queue.lock.release()
        deadline = time.monotonic() + SIGNAL_FLUSH_S
        for w in writers:
            with contextlib.suppress(Exception):
                w.drain_for_exit(deadline)
        # Then what the signal would have done without us.
        if callable(previous):
            previous(signum, frame)
        elif previous is signal.SIG_IGN:
            return
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    handler.workbench = True  # type: ignore[attr-defined]
    return handler
