"""SQLite connections for the workbench file, and what their errors mean.

``translate`` turns a ``sqlite3`` (or OS) error into the ``StoreError`` subclass
whose message names the file, the cause and what to do; ``row_level`` tells a
row SQLite refuses from a file that refuses every row; ``transaction`` and
``write_rows`` commit rows and report, rather than raise, what failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import CorruptDatabase, DatabaseLocked, DiskFull, ReadOnlyDatabase, StoreError

BUSY_TIMEOUT_MS = 30_000
"""Concurrent writers (another process tracing into the same file) wait this long."""


def connect(path: str) -> sqlite3.Connection:
    """A configured connection in autocommit mode (usable from any thread); closed again if set-up fails."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        configure(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def configure(conn: sqlite3.Connection) -> None:
    """WAL, a busy timeout for concurrent writers, NORMAL sync and foreign keys."""
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


def read_only_uri(path: str, *, immutable: bool = False) -> str:
    """A read-only SQLite URI; ``immutable`` also skips the WAL index, which a read-only folder cannot hold."""
    base = "file:" + quote(Path(path).resolve().as_posix(), safe="/") + "?mode=ro"
    return base + "&immutable=1" if immutable else base


def needs_immutable(exc: sqlite3.Error) -> bool:
    """A WAL file in a folder we cannot write: SQLite cannot create the -shm index to read it."""
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN", "SQLITE_READONLY_CANTINIT")


def free_bytes(folder: str) -> int | None:
    """Free bytes on ``folder``'s disk, or None when it cannot be asked."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def free_text(folder: str) -> str:
    """``12,345 bytes free`` for messages."""
    from ._format import count

    left = free_bytes(folder)
    return "free space unknown" if left is None else f"{count(left)} bytes free"


def size_limit() -> int | None:
    """The process's file size limit (``ulimit -f``) in bytes, when one is set."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def translate(exc: BaseException, path: str, doing: str, *, readonly: bool = False, existed: bool = True) -> StoreError:
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
            f"{doing} {path} failed: the disk is full ({free_text(folder)} in {folder}). "
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
    if name.startswith("SQLITE_IOERR") and free_bytes(folder) == 0:
        # SQLite says "disk I/O error" when even its small WAL index (-shm) finds no room.
        return DiskFull(
            f"{doing} {path} failed: the disk is full ({free_text(folder)} in {folder}; SQLite: {text}, {name}). "
            "Free space on that disk, or move the file to a disk with room."
        )
    if name.startswith("SQLITE_IOERR"):
        limit = size_limit()
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
            reason = why_no_create(folder)
            cls = ReadOnlyDatabase if reason and ("ermission" in reason or "ead-only" in reason) else StoreError
            return cls(
                f"cannot create {path}: {reason or text}. Pick a path in a folder you can write, "
                "or fix the folder's permissions."
            )
        return StoreError(f"cannot open {path} ({text}); check the file's and the folder's permissions")
    return StoreError(f"{doing} {path} failed: {type(exc).__name__}: {text}")


def why_no_create(folder: str) -> str | None:
    """Why a new file cannot be made in ``folder``, from the operating system itself."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".workbench-probe-")
    except OSError as exc:
        return f"the folder {folder} does not take new files ({exc.strerror})"
    os.close(fd)
    os.remove(probe)
    return None


def row_level(exc: BaseException) -> bool:
    """Whether ``exc`` is about one row's values (SQLite refuses the row) rather than the file."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError)):
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorname", "") in ("SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_RANGE")
    return True  # OverflowError, UnicodeEncodeError, TypeError: the values, before SQLite saw them


def is_busy(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def is_duplicate(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE constraint failed" in str(exc)


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open.

    SQLite rolls back by itself on some errors (a full disk, an I/O error): a second
    ROLLBACK would fail with "no transaction is active" and hide the cause.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def transaction(conn: sqlite3.Connection, items: Sequence[tuple[str, Sequence[Any]]]) -> BaseException | None:
    """Write ``items`` in one transaction, waiting out locks; the error when it failed."""
    from ._dialect import commit_groups

    return commit_groups(
        conn, items, begin=_begin_immediate, insert_many=insert_many, commit=_commit, rollback=rollback,
        is_busy=is_busy, wait_s=BUSY_TIMEOUT_MS / 1000,
    )


def _begin_immediate(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


MULTI_ROWS = (512, 64, 8)
"""Rows per multi-row INSERT: a few sizes only, so SQLite's statement cache keeps each."""
_multi_cache: dict[str, tuple[str, str, str] | None] = {}


def split_values(sql: str) -> tuple[str, str, str] | None:
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


def insert_many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` with few statements: one multi-row INSERT steps SQLite once, where
    ``executemany`` steps (and hands the GIL back and forth) once per row; under a busy
    caller thread that is about half the time a row, and far steadier."""
    parts = split_values(sql) if len(rows) > 1 else None
    if parts is None:
        conn.executemany(sql, rows)
        return
    head, one, tail = parts
    width = len(rows[0])
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    i = 0
    for size in MULTI_ROWS:
        if size * width > limit:
            continue
        statement = f"{head}{','.join([one] * size)}{tail}"
        while len(rows) - i >= size:
            conn.execute(statement, [v for row in rows[i:i + size] for v in row])
            i += size
    if i < len(rows):
        conn.executemany(sql, rows[i:])


def write_rows(
    conn: sqlite3.Connection, items: Sequence[tuple[str, Sequence[Any]]], *, replaying: bool = False
) -> tuple[int, list[int], list[tuple[int, str]], BaseException | None]:
    """Commit ``items`` (see ``_dialect.write_rows``): one refused row never holds back the others."""
    from ._dialect import write_rows as write

    return write(transaction, row_level, is_duplicate, conn, items, replaying=replaying)


class SqliteBackend:
    """How the store and its writer reach one SQLite file (``_pg.PgBackend`` is the server's)."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    """The driver's own errors, which ``translate`` turns into ``StoreError``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.spill_base = path
        """Where the spill file goes: ``<spill_base>.spill.jsonl``."""

    def connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def transaction(self, conn: sqlite3.Connection, items: Sequence[tuple[str, Sequence[Any]]]) -> BaseException | None:
        return transaction(conn, items)

    def write_rows(
        self, conn: sqlite3.Connection, items: Sequence[tuple[str, Sequence[Any]]], *, replaying: bool = False
    ) -> tuple[int, list[int], list[tuple[int, str]], BaseException | None]:
        return write_rows(conn, items, replaying=replaying)

    def translate(self, exc: BaseException, doing: str, *, readonly: bool = False, existed: bool = True) -> StoreError:
        return translate(exc, self.path, doing, readonly=readonly, existed=existed)

    def row_level(self, exc: BaseException) -> bool:
        return row_level(exc)

    def close(self, conn: Any) -> None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


class MemoryBackend(SqliteBackend):
    """An in-memory database: one connection, shared by the writer and every caller under one lock.

    ``:memory:`` is a new, empty database for each connection that opens it, so the
    writer thread and ``write_now`` must use the store's own connection; the lock
    (the store's) keeps their transactions from interleaving with the caller's.
    Nothing is spilled to a file: there is no file.
    """

    def __init__(self, conn: sqlite3.Connection, lock: Any) -> None:
        super().__init__(":memory:")
        self.conn = conn
        self.lock = lock
        # A row SQLite refuses is kept in the temp folder, not beside a file that does not exist.
        import tempfile

        self.spill_base = os.path.join(tempfile.gettempdir(), f"workbench-memory-{os.getpid()}-{id(conn):x}")

    def connect(self) -> sqlite3.Connection:
        return self.conn

    def transaction(self, conn: sqlite3.Connection, items: Sequence[tuple[str, Sequence[Any]]]) -> BaseException | None:
        with self.lock:
            return transaction(conn, items)

    def write_rows(
        self, conn: sqlite3.Connection, items: Sequence[tuple[str, Sequence[Any]]], *, replaying: bool = False
    ) -> tuple[int, list[int], list[tuple[int, str]], BaseException | None]:
        with self.lock:
            return write_rows(conn, items, replaying=replaying)

    def close(self, conn: Any) -> None:
        pass  # the store's own connection: the store closes it
