"""What differs between the SQLite file and a PostgreSQL server, in one place.

Modules keep owning their tables' SQL, written once in SQLite's spelling with
``?`` placeholders. A ``Dialect`` (``store.dialect``) does two things for them:

- ``sql(text)`` rewrites a statement's mechanical differences for the server:
  placeholders (``?`` and ``?NNN`` become ``%s``, a literal ``%`` becomes
  ``%%``), ``INSERT OR IGNORE`` (``INSERT ... ON CONFLICT DO NOTHING``).
  The PostgreSQL connection applies it to every statement, so a module's
  constant serves both back ends. ``BEGIN IMMEDIATE`` is the connection's
  business (``_pg.py``: a transaction holding the database's write lock).
- Small expression builders where the difference is meaning, not spelling:
  ``contains`` (``instr``/``strpos``), ``is_false`` (SQLite's booleans are
  integers), ``null_safe_eq`` (``IS`` / ``IS NOT DISTINCT FROM``),
  ``group_concat_distinct``, ``in_json_ints`` (a JSON list of row ids), and
  the planner hints SQLite needs and PostgreSQL has no syntax for
  (``indexed_by``, ``not_indexed``, ``forced_join``).

Both back ends have a ``rowid`` on ``traces``: SQLite's own, and on PostgreSQL
an identity column of that name, assigned under the write lock so it grows in
commit order as SQLite's does (the full-text index and the frame cache catch up
by it). Full-text search differs in kind (FTS5 against ``tsvector``);
``traces.py`` keeps both, chosen by ``dialect.fts``.

This module also holds ``write_rows``, the writer's batch-then-row-by-row
commit, shared by both back ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)


class Dialect:
    """SQLite's spelling: every builder returns the text the modules always used."""

    name = "sqlite"
    fts = "fts5"
    placeholder = "?"

    def sql(self, text: str) -> str:
        """``text`` for this back end (SQLite: unchanged)."""
        return text

    def contains(self, haystack: str, needle: str) -> str:
        """A boolean expression: ``needle`` (SQL) occurs in ``haystack`` (SQL)."""
        return f"(instr({haystack}, {needle}) > 0)"

    def is_false(self, expr: str) -> str:
        return f"{expr} = 0"

    def null_safe_eq(self) -> str:
        """The operator for "equal, NULL equal to NULL"."""
        return "IS"

    def group_concat_distinct(self, column: str) -> str:
        return f"GROUP_CONCAT(DISTINCT {column})"

    def in_json_ints(self, column: str) -> str:
        """``column`` is one of the integers in a JSON list bound as the one parameter."""
        return f"{column} IN (SELECT value FROM json_each(?))"

    def indexed_by(self, index: str) -> str:
        return f" INDEXED BY {index}"

    def not_indexed(self) -> str:
        return " NOT INDEXED"

    def forced_join(self) -> str:
        """A join whose left table drives (SQLite's CROSS JOIN ... ON)."""
        return "CROSS JOIN"


class PostgresDialect(Dialect):
    """PostgreSQL's spelling, for psycopg (``%s`` placeholders)."""

    name = "postgresql"
    fts = "tsvector"
    placeholder = "%s"

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def sql(self, text: str) -> str:
        found = self._cache.get(text)
        if found is None:
            found = self._cache[text] = _translate(text)
        return found

    def contains(self, haystack: str, needle: str) -> str:
        return f"(strpos({haystack}, {needle}) > 0)"

    def is_false(self, expr: str) -> str:
        return f"NOT {expr}"

    def null_safe_eq(self) -> str:
        return "IS NOT DISTINCT FROM"

    def group_concat_distinct(self, column: str) -> str:
        return f"string_agg(DISTINCT {column}, ',')"

    def in_json_ints(self, column: str) -> str:
        return f"{column} IN (SELECT (value)::bigint FROM json_array_elements_text(?::json))"

    def indexed_by(self, index: str) -> str:
        return ""

    def not_indexed(self) -> str:
        return ""

    def forced_join(self) -> str:
        return "JOIN"


SQLITE = Dialect()
POSTGRES = PostgresDialect()


def numbered_params(text: str) -> list[int] | None:
    """For a statement using ``?NNN`` placeholders: which parameter (0-based) each ``%s`` takes, in order."""
    order: list[int] = []
    numbered = False
    for kind, chunk in _tokens(text):
        if kind == "param":
            if len(chunk) > 1:
                numbered = True
                order.append(int(chunk[1:]) - 1)
            else:
                order.append(len(order))
    return order if numbered else None


def _tokens(text: str) -> list[tuple[str, str]]:
    """``text`` as ('code' | 'quoted' | 'param', chunk) pieces; quotes keep their contents whole."""
    out: list[tuple[str, str]] = []
    i, n, start = 0, len(text), 0
    while i < n:
        ch = text[i]
        if ch in "'\"":
            end = i + 1
            while end < n:
                if text[end] == ch:
                    if end + 1 < n and text[end + 1] == ch:  # a doubled quote inside
                        end += 2
                        continue
                    break
                end += 1
            out.append(("code", text[start:i]))
            out.append(("quoted", text[i:end + 1]))
            i = start = end + 1
            continue
        if ch == "?":
            end = i + 1
            while end < n and text[end].isdigit():
                end += 1
            out.append(("code", text[start:i]))
            out.append(("param", text[i:end]))
            i = start = end
            continue
        i += 1
    out.append(("code", text[start:]))
    return out


def _translate(text: str) -> str:
    """SQLite-spelled ``text`` as psycopg takes it (see ``PostgresDialect.sql``)."""
    ignore = bool(_INSERT_OR_IGNORE.match(text))
    if ignore:
        text = _INSERT_OR_IGNORE.sub("INSERT INTO", text, count=1)
    pieces = []
    for kind, chunk in _tokens(text):
        if kind == "param":
            pieces.append("%s")
        else:
            pieces.append(chunk.replace("%", "%%"))
    out = "".join(pieces)
    if ignore:
        out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return out


# -- the writer's commit, shared by both back ends ---------------------------------------------


def commit_groups(
    conn: Any,
    items: Sequence[tuple[str, Sequence[Any]]],
    *,
    begin: Callable[[Any], Any],
    insert_many: Callable[[Any, str, Sequence[Sequence[Any]]], None],
    commit: Callable[[Any], Any],
    rollback: Callable[[Any], None],
    is_busy: Callable[[BaseException], bool],
    wait_s: float,
) -> BaseException | None:
    """Write ``items`` in one transaction, rows of one statement together, waiting out locks
    for up to ``wait_s``; returns the driver's own error when it failed (never raises it)."""
    import time

    groups: dict[str, list[Sequence[Any]]] = {}
    for sql, row in items:
        groups.setdefault(sql, []).append(row)
    deadline = time.monotonic() + wait_s
    error: BaseException | None = None
    for attempt in range(20):
        try:
            target = begin(conn)
            for sql, rows in groups.items():
                insert_many(target, sql, rows)
            commit(target)
            return None
        except Exception as exc:  # noqa: BLE001 - any bad row or database error is reported, not raised
            rollback(conn)
            error = exc
            if is_busy(exc) and time.monotonic() < deadline:
                time.sleep(min(0.05 * 2**attempt, 2.0))
                continue
            return exc
    return error



def write_rows(
    transaction: Callable[[Any, Sequence[tuple[str, Sequence[Any]]]], BaseException | None],
    row_level: Callable[[BaseException], bool],
    is_duplicate: Callable[[BaseException], bool],
    conn: Any,
    items: Sequence[tuple[str, Sequence[Any]]],
    *,
    replaying: bool = False,
) -> tuple[int, list[int], list[tuple[int, str]], BaseException | None]:
    """Commit ``items``: (rows written, indexes kept for a file error, (index, why) refused, the file error).

    One refused row (a value the database cannot store) must not hold back the
    rows batched with it: after a row-level failure each row is written on its
    own. When ``replaying``, a row whose id is already stored counts as written
    (a crash between a replay's commit and the spill file's rewrite).
    """
    error = transaction(conn, items)
    if error is None:
        return len(items), [], [], None
    if replaying and len(items) == 1 and is_duplicate(error):
        return 1, [], [], None
    if not row_level(error):
        return 0, list(range(len(items))), [], error
    if len(items) == 1:
        return 0, [], [(0, f"{type(error).__name__}: {error}")], None
    written, kept, failed = 0, [], []
    file_error: BaseException | None = None
    for i, item in enumerate(items):
        if file_error is not None:
            kept.append(i)
            continue
        e = transaction(conn, [item])
        if e is None or (replaying and is_duplicate(e)):
            written += 1
        elif row_level(e):
            failed.append((i, f"{type(e).__name__}: {e}"))
        else:
            file_error = e
            kept.append(i)
    return written, kept, failed, file_error
