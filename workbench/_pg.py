"""PostgreSQL as the workbench store, through psycopg 3: ``wb.open("postgresql://user@host/db")``.

``PostgresStore`` keeps ``Store``'s interface; what differs is here:

- **Statements.** Modules write SQLite's spelling; ``Connection`` (what
  ``store.conn`` and ``store.transaction()`` hand out) passes each statement
  through ``_dialect.POSTGRES.sql`` (placeholders, ``INSERT OR IGNORE``) and
  reorders ``?NNN`` parameters. Errors come out as the ``StoreError`` tree
  (``translate``), never as psycopg's.
- **One writer at a time, as in SQLite.** ``BEGIN IMMEDIATE`` becomes a
  transaction that first takes a transaction-level advisory lock (the
  database's "write lock"), and so does every commit of the trace writer.
  Read-modify-write code written for SQLite (limits, version numbers, the
  full-text catch-up) stays exact across processes and machines, and the
  ``traces.rowid`` identity grows in commit order. Waiting for it is bounded
  by ``lock_timeout`` (``DatabaseLocked`` after it).
- **Migrations** are ``migrations.POSTGRES``, applied in one transaction under
  another advisory lock and recorded in ``_workbench_migrations``.
- **Frames** are read as Arrow in this process by ADBC's PostgreSQL driver,
  which reads the result with PostgreSQL's binary COPY (``read_frame``). No
  child process: that exists only because ADBC's SQLite driver carries its own
  SQLite.
- **Rows the server refuses** (down, full disk, read-only) go to a spill file
  on this machine (``spill_dir``), as for a file store, and in at the next commit
  that works or ``workbench db recover``.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ._dialect import POSTGRES, _tokens, commit_groups, numbered_params
from ._dialect import write_rows as _write_rows
from ._sqlite import BUSY_TIMEOUT_MS, rollback, split_values
from .errors import (
    ConfigError,
    CorruptDatabase,
    DatabaseLocked,
    DiskFull,
    MissingDependency,
    NotAWorkbenchDatabase,
    ReadOnlyDatabase,
    StoreError,
)
from .store import Store

WRITE_LOCK = 0x776F726B62656E63
"""The advisory lock key of a database's write lock ("workbenc" in ASCII)."""
MIGRATE_LOCK = WRITE_LOCK + 1
"""Held while migrating, so two processes opening a new database at once migrate it once."""
MIGRATIONS_TABLE = "_workbench_migrations"
MAX_PARAMS = 65_535
"""Bind parameters per statement, PostgreSQL's protocol limit."""
MULTI_ROWS = 1_000
"""Rows per multi-row INSERT at most."""
INSTALL_HINT = "pip install 'workbench[postgres]'"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependency(
            f"a PostgreSQL store needs psycopg 3: {INSTALL_HINT} (or pip install 'psycopg[binary]')"
        ) from None
    return psycopg


def redact(url: str) -> str:
    """``url`` without its password, for messages and ``store.path``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return url.replace(parts.netloc, f"{quote(unquote(parts.username or ''))}:***@{netloc[-1]}", 1)


def spill_dir() -> str:
    """Where rows the server refused are kept on this machine (``WORKBENCH_SPILL_DIR``)."""
    found = os.environ.get("WORKBENCH_SPILL_DIR")
    if found:
        return found
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "workbench")


def _spill_base(url: str) -> str:
    parts = urlsplit(url)
    name = f"postgres-{parts.hostname or 'local'}-{parts.port or 5432}-{parts.path.lstrip('/') or 'postgres'}"
    return os.path.join(spill_dir(), re.sub(r"[^A-Za-z0-9._-]", "_", name))


# -- adapting values ---------------------------------------------------------------------------

_adapters: Any = None


def _adapters_map() -> Any:
    """psycopg adapters shared by every connection: what SQLite's loose types allowed, PostgreSQL's way.

    - ``bool`` goes as the untyped text ``1``/``0``: it then fits an integer column (SQLite
      stores booleans as integers) and a boolean context (``CASE WHEN ?``) alike.
    - ``numeric`` (``SUM`` and ``AVG`` of integers) comes back as int or float, never
      ``Decimal``, which would not mix with the floats the modules compute with.
    """
    global _adapters
    if _adapters is None:
        psycopg = _psycopg()
        from psycopg.adapt import Dumper, Loader

        class BoolDumper(Dumper):
            oid = 0

            def dump(self, obj: bool) -> bytes:
                return b"1" if obj else b"0"

        class NumericLoader(Loader):
            def load(self, data: Any) -> int | float:
                text = bytes(data)
                if b"." in text or b"e" in text or b"N" in text or b"I" in text:
                    return float(text)
                return int(text)

        adapters = psycopg.adapt.AdaptersMap(psycopg.adapters)
        adapters.register_dumper(bool, BoolDumper)
        adapters.register_loader("numeric", NumericLoader)
        _adapters = adapters
    return _adapters


# -- connections -------------------------------------------------------------------------------


def raw_connect(url: str, *, readonly: bool = False) -> Any:
    """A psycopg connection in autocommit mode, with a lock timeout like SQLite's busy timeout."""
    psycopg = _psycopg()
    conn = psycopg.connect(url, autocommit=True, connect_timeout=10, context=_adapters_map())
    conn.execute(f"SET lock_timeout = {BUSY_TIMEOUT_MS}")
    if readonly:
        conn.execute("SET default_transaction_read_only = on")
    return conn


class Connection:
    """A psycopg connection that takes SQLite-spelled statements, as ``sqlite3.Connection`` does.

    ``execute``/``executemany`` translate the statement (``_dialect.POSTGRES``)
    and raise ``StoreError``s; ``BEGIN IMMEDIATE`` takes the write lock. A
    connection the server dropped is made again before the next statement
    outside a transaction.
    """

    def __init__(self, url: str, shown: str, *, readonly: bool = False) -> None:
        self.url, self.shown, self.readonly = url, shown, readonly
        self.raw = raw_connect(url, readonly=readonly)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def _ready(self) -> Any:
        if self.raw.closed and not self.raw.broken:
            raise StoreError(f"{self.shown} was closed (bench.close()); open it again with wb.open(...)")
        if self.raw.broken:
            self.raw = raw_connect(self.url, readonly=self.readonly)
        return self.raw

    def execute(self, sql: str, params: Sequence[Any] | None = ()) -> Any:
        psycopg = _psycopg()
        doing = _doing(sql)
        for attempt in (0, 1):
            raw = self._ready()
            idle = not self.in_transaction
            try:
                head = sql.lstrip()[:16].upper()
                if head.startswith("BEGIN"):
                    raw.execute("BEGIN")
                    if "IMMEDIATE" in head:
                        raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    return raw.cursor()
                text, args = statement(sql, params)
                return raw.execute(text, args)
            except psycopg.Error as exc:
                # The server dropped this connection since its last use (a restart, an idle timeout):
                # a read outside a transaction runs again on a new one; a write says so instead,
                # since it cannot know whether the server ran it.
                if attempt == 0 and idle and raw.broken and doing == "reading":
                    continue
                raise translate(exc, self.shown, doing, readonly=self.readonly) from None
        raise AssertionError("unreachable")

    def executemany(self, sql: str, rows: Any) -> Any:
        raw = self._ready()
        psycopg = _psycopg()
        order = _order(sql)
        text = POSTGRES.sql(sql)
        rows = rows if order is None else ([row[i] for i in order] for row in rows)
        try:
            cur = raw.cursor()
            cur.executemany(text, rows)
            return cur
        except psycopg.Error as exc:
            raise translate(exc, self.shown, "writing to", readonly=self.readonly) from None

    def close(self) -> None:
        self.raw.close()


_orders: dict[str, list[int] | None] = {}


def _order(sql: str) -> list[int] | None:
    found = _orders.get(sql, False)
    if found is False:
        found = _orders[sql] = numbered_params(sql)
    return found  # type: ignore[return-value]


def statement(sql: str, params: Sequence[Any] | None) -> tuple[str, Sequence[Any]]:
    """(psycopg's text, its parameters) for a SQLite-spelled statement."""
    params = () if params is None else params
    if isinstance(params, dict):
        raise ConfigError("named parameters are not supported on PostgreSQL; pass a sequence for ? placeholders")
    order = _order(sql)
    if order is not None:
        params = [params[i] for i in order]
    return POSTGRES.sql(sql), params


def _doing(sql: str) -> str:
    head = sql.lstrip()[:6].upper()
    return "reading" if head in ("SELECT",) or head.startswith("WITH") else "writing to"


# -- errors ------------------------------------------------------------------------------------


def translate(exc: BaseException, where: str, doing: str, *, readonly: bool = False, existed: bool = True) -> StoreError:
    """The ``StoreError`` subclass for a psycopg error, with the fix in its message."""
    if isinstance(exc, StoreError):
        return exc
    psycopg = _psycopg()
    state = getattr(exc, "sqlstate", None) or ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError) and not state:
        # Failures to connect carry no SQLSTATE: the server's words say which.
        found = re.search(r'database "([^"]+)" does not exist', text)
        if found:
            return StoreError(
                f"the database {found.group(1)!r} does not exist on the server of {where}; "
                f"create it (createdb {found.group(1)}) or fix the URL"
            )
        if "authentication failed" in text or "no pg_hba.conf entry" in text or re.search(r'role "[^"]+" does not exist', text):
            return StoreError(
                f"the server of {where} refused the login ({text}); check the user and password in the URL or ~/.pgpass"
            )
        return StoreError(
            f"cannot reach the PostgreSQL server of {where} while {doing} it ({text}). Check that the server "
            "is running and the URL's host, port, user and database are right; rows traced meanwhile are kept "
            "on this machine and written when it is back."
        )
    if state == "3D000":
        name = urlsplit(where).path.lstrip("/")
        return StoreError(f"the database {name!r} does not exist on the server of {where}; create it (createdb {name}) or fix the URL")
    if state.startswith("28"):
        return StoreError(f"the server of {where} refused the login ({text}); check the user and password in the URL or ~/.pgpass")
    if state == "53100":
        return DiskFull(f"{doing} {where} failed: the server's disk is full ({text}). Free space on the server's disk.")
    if state in ("25006",) or readonly:
        return ReadOnlyDatabase(
            f"{where} was opened with readonly=True: {doing} it is refused. Open it with wb.open(...) to change it."
            if readonly else f"{doing} {where} failed: the server refuses writes ({text}), e.g. a read-only replica."
        )
    if state == "42501":
        return ReadOnlyDatabase(f"{doing} {where} failed: this user may not do it ({text}); grant it the privileges or use another user")
    if state in ("55P03", "40P01", "40001"):
        return DatabaseLocked(
            f"{where} is locked by another session (waited {BUSY_TIMEOUT_MS / 1000:g} s while {doing} it): {text}. "
            "Close the session holding a long transaction on it and try again."
        )
    if state.startswith("XX0"):
        return CorruptDatabase(f"{where} reports damaged data while {doing} it ({text}); restore a backup or ask the server's administrator")
    if state.startswith("57P"):
        return StoreError(f"the PostgreSQL server of {where} shut down or cancelled the work while {doing} it ({text}); try again when it is back")
    if isinstance(exc, psycopg.Error) and not state and "closed" in text:
        return StoreError(f"{where} was closed (bench.close()); open it again with wb.open(...)")
    return StoreError(f"{doing} {where} failed: {type(exc).__name__}{' ' + state if state else ''}: {text}")


def row_level(exc: BaseException) -> bool:
    """Whether ``exc`` is about one row's values (the server refuses the row) rather than the database."""
    psycopg = _psycopg()
    if not isinstance(exc, psycopg.Error):
        return True  # TypeError, OverflowError: the values, before the server saw them
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)) or state.startswith(("22", "23")) or state == "54000":
        return True
    # A value psycopg cannot adapt (a dict, an object) has no SQLSTATE: it never reached the server.
    return isinstance(exc, psycopg.ProgrammingError) and not state


def is_duplicate(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "23505"


def is_busy(exc: BaseException | None) -> bool:
    return getattr(exc, "sqlstate", None) in ("55P03", "40P01", "40001")


# -- the writer's commits ----------------------------------------------------------------------


def transaction(conn: Connection, items: Sequence[tuple[str, Sequence[Any]]]) -> BaseException | None:
    """Write ``items`` in one transaction under the write lock; the error when it failed.

    Runs on the raw psycopg connection: the writer needs psycopg's own errors to tell a
    refused row from a refusing server (``row_level``).
    """
    return commit_groups(
        conn, items, begin=_begin_locked, insert_many=insert_many, commit=_commit, rollback=_rollback,
        is_busy=is_busy, wait_s=BUSY_TIMEOUT_MS / 1000,
    )


def _begin_locked(conn: Connection) -> Any:
    raw = conn._ready()
    raw.execute("BEGIN")
    raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
    return raw


def _commit(raw: Any) -> None:
    raw.execute("COMMIT")


def _rollback(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        if not conn.raw.broken and conn.in_transaction:
            conn.raw.execute("ROLLBACK")


_copy_cache: dict[str, str | None] = {}


def _copy_statement(sql: str) -> str | None:
    """``COPY table (columns) FROM STDIN`` for a plain ``INSERT ... VALUES (?, ...)``, else None."""
    found = _copy_cache.get(sql, False)
    if found is not False:
        return found  # type: ignore[return-value]
    match = re.fullmatch(r"\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)\s*", sql, re.IGNORECASE)
    copy = None
    if match and all(v.strip() == "?" for v in match.group(3).split(",")):
        copy = f"COPY {match.group(1)} ({match.group(2)}) FROM STDIN"
    _copy_cache[sql] = copy
    return copy


def insert_many(raw: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Write ``rows`` of one statement: COPY for a plain insert (the fastest way in), else
    multi-row VALUES, else (an upsert, which may not touch one row twice per statement) one by one
    in a pipeline."""
    copy = _copy_statement(sql) if len(rows) > 1 else None
    if copy is not None:
        with raw.cursor().copy(copy) as cp:
            for row in rows:
                cp.write_row(row)
        return
    parts = split_values(sql) if len(rows) > 1 and "DO UPDATE" not in sql.upper() else None
    if parts is None:
        text, _ = statement(sql, ())
        order = _order(sql)
        cur = raw.cursor()
        if len(rows) == 1:
            cur.execute(text, rows[0] if order is None else [rows[0][i] for i in order])
        else:
            cur.executemany(text, rows if order is None else [[r[i] for i in order] for r in rows])
        return
    head, one, tail = parts
    width = len(rows[0])
    size = max(1, min(MULTI_ROWS, MAX_PARAMS // max(width, 1)))
    cur = raw.cursor()
    for i in range(0, len(rows), size):
        chunk = rows[i:i + size]
        text = POSTGRES.sql(f"{head}{','.join([one] * len(chunk))}{tail}")
        cur.execute(text, [v for row in chunk for v in row])


class PgBackend:
    """How the store and its writer reach a PostgreSQL database (``_sqlite.SqliteBackend`` is the file's)."""

    def __init__(self, url: str, shown: str, *, readonly: bool = False) -> None:
        self.url, self.path, self.readonly = url, shown, readonly
        self.errors: tuple[type[BaseException], ...] = (_psycopg().Error,)
        self.spill_base = _spill_base(url)
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(self.spill_base), exist_ok=True)

    def connect(self) -> Connection:
        return Connection(self.url, self.path, readonly=self.readonly)

    def transaction(self, conn: Connection, items: Sequence[tuple[str, Sequence[Any]]]) -> BaseException | None:
        return transaction(conn, items)

    def write_rows(
        self, conn: Connection, items: Sequence[tuple[str, Sequence[Any]]], *, replaying: bool = False
    ) -> tuple[int, list[int], list[tuple[int, str]], BaseException | None]:
        return _write_rows(transaction, row_level, is_duplicate, conn, items, replaying=replaying)

    def translate(self, exc: BaseException, doing: str, *, readonly: bool = False, existed: bool = True) -> StoreError:
        return translate(exc, self.path, doing, readonly=readonly)

    def row_level(self, exc: BaseException) -> bool:
        return row_level(exc)

    def close(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.close()


# -- the store ---------------------------------------------------------------------------------


class PostgresStore(Store):
    """A workbench store in a PostgreSQL database; made by ``Store(url)`` and ``wb.open(url)``."""

    dialect = POSTGRES

    def __init__(self, path: str | os.PathLike[str], *, migrate: bool = True, readonly: bool = False) -> None:
        from ._writer import _install_signal_handlers

        self.url = os.fspath(path)
        self.path = redact(self.url)
        self.readonly = readonly
        self.lock = threading.RLock()
        self._local = threading.local()
        self._thread_conns: list[Any] = []
        self._writer = None
        self._writer_lock = threading.Lock()
        self._immutable = False
        self._recovered = 0
        self._identity: tuple[Any, ...] | None = None
        self._adbc: Any = None
        self._adbc_conns: list[Any] = []
        self._adbc_lock = threading.Lock()
        self.backend = PgBackend(self.url, self.path, readonly=readonly)
        try:
            self.conn = self.backend.connect()
        except self.backend.errors as exc:
            raise self.error(exc, "opening") from None
        try:
            self._check_is_workbench()
            if readonly:
                self._check_schema()
            elif migrate:
                self.migrate()
        except BaseException:
            self.conn.close()
            raise
        if not readonly:
            _install_signal_handlers()

    def _tables(self) -> set[str]:
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
        return {r[0] for r in rows}

    def _check_is_workbench(self) -> None:
        """Refuse a database that holds another program's tables (nothing is written to it)."""
        tables = self._tables()
        if tables and MIGRATIONS_TABLE not in tables:
            raise NotAWorkbenchDatabase(
                f"{self.path} holds tables that are not workbench's ({', '.join(sorted(tables)[:5])}); it was not "
                "changed. Use a database (or a schema: ?options=-csearch_path%3Dworkbench) of its own."
            )

    def _applied_fast(self) -> set[str] | None:
        found = self.conn.execute("SELECT to_regclass(?)", (MIGRATIONS_TABLE,)).fetchone()[0]
        if found is None:
            return None
        rows = self.conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = 'workbench'").fetchall()
        return {r[0] for r in rows}

    def migrate(self) -> list[str]:
        """Apply pending migrations (``migrations.POSTGRES``) in one transaction; return the names applied."""
        from .migrations import MIGRATION_SET, NAMES
        from .migrations import POSTGRES as STEPS

        with self.lock:
            if self._applied_fast() == set(NAMES):
                return []
            if self.readonly:
                self._check_schema()
            raw = self.conn._ready()
            psycopg = _psycopg()
            try:
                raw.execute("BEGIN")
                # Another process may be migrating this new database now: wait for it, then look again.
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                raw.execute(
                    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                    "migration_set TEXT NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL, UNIQUE (migration_set, name))"
                )
                applied = {r[0] for r in raw.execute(
                    f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = %s", (MIGRATION_SET,))}
                unknown = applied - set(NAMES)
                if unknown:
                    raise StoreError(
                        f"{self.path} was migrated by a newer workbench ({', '.join(sorted(unknown))}); upgrade workbench to open it"
                    )
                pending = [n for n in NAMES if n not in applied]
                for name in pending:
                    raw.execute(STEPS[name])
                    raw.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name, applied_at) VALUES (%s, %s, %s)",
                        (MIGRATION_SET, name, time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime())),
                    )
                raw.execute("COMMIT")
            except psycopg.Error as exc:
                rollback(self.conn)
                raise self.migration_error(exc) from None
            except BaseException:
                rollback(self.conn)
                raise
            return pending

    def applied_migrations(self) -> list[str]:
        if self._applied_fast() is None:
            return []
        rows = self.conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY id").fetchall()
        return [r[0] for r in rows]

    @property
    def db(self) -> Any:
        raise ConfigError(f"{self.path} is a PostgreSQL store: sqlite-utils' Database works on SQLite files only")

    def read_uri(self, immutable: bool | None = None) -> str:
        raise ConfigError(f"{self.path} is a PostgreSQL store; it has no SQLite URI")

    def identity(self) -> tuple[Any, ...]:
        """(the server's system identifier, the database's oid): another database at the same URL starts afresh."""
        if self._identity is None:
            row = self.execute(
                "SELECT (SELECT system_identifier FROM pg_control_system()), "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
            self._identity = ("postgresql", self.url, int(row[0]), int(row[1]))
        return self._identity

    def warm(self) -> None:
        """Nothing to start: frames are read in this process."""

    def read_frame(self, parts: Sequence[tuple[str, Sequence[Any]]], options: dict[str, str]) -> Any:
        """Several SELECTs as one Polars frame, through ADBC's PostgreSQL driver (binary COPY, as Arrow).

        Parts run at once on their own connections (the driver releases the GIL).
        """
        import polars as pl

        if len(parts) == 1:
            frames = [self._read_one(*parts[0])]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(4, len(parts))) as pool:
                frames = list(pool.map(lambda part: self._read_one(*part), parts))
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")

    def _read_one(self, sql: str, params: Sequence[Any]) -> Any:
        import polars as pl

        adbc = _adbc()
        conn = self._adbc_take()
        text = inline(sql, params)
        stmt = adbc.AdbcStatement(conn)
        try:
            stmt.set_sql_query(text)
            stream, _ = stmt.execute_query()
            frame = pl.DataFrame(stream)
        except Exception as exc:  # noqa: BLE001 - the driver's errors become StoreErrors
            with contextlib.suppress(Exception):
                conn.close()
            conn = None
            raise self._read_error(exc, sql) from None
        finally:
            with contextlib.suppress(Exception):
                stmt.close()
            if conn is not None:
                self._adbc_give(conn)
        return frame

    def _read_error(self, exc: BaseException, sql: str) -> StoreError:
        text = str(exc)
        state = re.search(r"SQLSTATE: (\w{5})", text)
        fake = _FakePgError(text.splitlines()[0] if text else type(exc).__name__, state.group(1) if state else None)
        error = self.error(fake, "reading")
        if type(error) is StoreError:
            return StoreError(f"reading {self.path} failed: {fake} (query: {sql.strip()[:200]})")
        return error

    def _adbc_take(self) -> Any:
        adbc = _adbc()
        with self._adbc_lock:
            if self._adbc_conns:
                return self._adbc_conns.pop()
            if self._adbc is None:
                import adbc_driver_postgresql

                self._adbc = adbc.AdbcDatabase(driver=adbc_driver_postgresql._driver_path(), uri=_adbc_uri(self.url))
        try:
            return adbc.AdbcConnection(self._adbc)
        except Exception as exc:  # noqa: BLE001
            raise self._read_error(exc, "(connecting)") from None

    def _adbc_give(self, conn: Any) -> None:
        with self._adbc_lock:
            self._adbc_conns.append(conn)

    def close(self) -> None:
        try:
            super().close()
        finally:
            with self._adbc_lock:
                for conn in self._adbc_conns:
                    with contextlib.suppress(Exception):
                        conn.close()
                self._adbc_conns.clear()
                if self._adbc is not None:
                    with contextlib.suppress(Exception):
                        self._adbc.close()
                    self._adbc = None


class _FakePgError(Exception):
    """An ADBC error carrying the server's SQLSTATE, so ``translate`` reads it like psycopg's."""

    def __init__(self, text: str, sqlstate: str | None) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


def _adbc() -> Any:
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        raise MissingDependency(
            f"reading frames from PostgreSQL needs ADBC's PostgreSQL driver: {INSTALL_HINT}"
        ) from None
    return adbc_driver_manager


def _adbc_uri(url: str) -> str:
    # libpq takes both spellings; the driver's URI parser wants the long one.
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgres://") else url


def inline(sql: str, params: Sequence[Any]) -> str:
    """``sql`` with its ``?`` parameters written in as literals.

    ADBC's driver reads a query without parameters by binary COPY, several times
    faster than a prepared statement's rows; the values here are the store's own
    filters (text, numbers, None), quoted as PostgreSQL's standard strings.
    """
    if not params:
        return sql
    values = list(params)
    out, i = [], 0
    for kind, chunk in _tokens(sql):
        if kind != "param":
            out.append(chunk)
            continue
        index = int(chunk[1:]) - 1 if len(chunk) > 1 else i
        i += 1
        out.append(_literal(values[index]))
    return "".join(out)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"'{value!r}'::float8"
        return repr(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigError("a filter value holds a NUL character, which PostgreSQL text cannot")
        return "'" + value.replace("'", "''") + "'"
    raise ConfigError(f"cannot use a {type(value).__name__} as a query value on PostgreSQL")
