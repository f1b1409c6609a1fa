"""The ``traces`` table: the one writer and reader of trace rows.

Rows are written through the store's background writer (never on the caller's
path to disk) and read back as dicts or, for analysis, by ``frames.py``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._canonical import dumps, escape_surrogates, escape_surrogates_in, has_surrogates, loads
from ._dialect import SQLITE, Dialect

if TYPE_CHECKING:
    from .store import Store

COLUMNS = (
    "id", "trace_id", "parent_id", "kind", "name", "started_at", "provider", "simulated",
    "model", "resolved_model", "prompt_name", "prompt_version", "experiment_id", "variant",
    "item_id", "repeat", "user_id", "input", "output", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "latency_ms", "ttft_ms", "cost_usd",
    "price_source", "status", "error_type", "error", "attempts", "stop_reason", "request_id",
    "tags_json", "metadata_json", "cache_write_1h_tokens",
)
"""Every column of ``traces``, in table order. ``cache_write_1h_tokens`` (added by the
``cache_write_1h`` migration, so last) is the part of ``cache_write_tokens`` written to the
1-hour cache."""
_COLUMN_SET = frozenset(COLUMNS)
INSERT_SQL = f"INSERT INTO traces ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
SPAN_SQL = (
    "INSERT INTO traces (id, trace_id, parent_id, kind, name, started_at, input, output, "
    "latency_ms, status, error_type, error, simulated) VALUES (?, ?, ?, 'span', ?, ?, ?, ?, ?, ?, ?, ?, 0)"
)
"""The short insert used by ``@bench.traced`` spans: fewer values to bind on the hot path."""
INGEST_SQL = INSERT_SQL.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
"""Rows from outside (OTLP ingest): a span sent twice (a collector's retry) is stored once."""
SET_PARENT_SQL = "UPDATE traces SET parent_id = ? WHERE id = ? AND parent_id IS NULL"
"""Links an ingested span to a parent that arrived after it (children usually end, and are sent, first)."""
_SPAN_FIELDS = ("id", "trace_id", "parent_id", "name", "started_at", "input", "output", "latency_ms",
                "status", "error_type", "error")
MAX_TEXT = 200_000
"""Characters of input or output kept per trace; longer text is cut with a marker."""

_second = -1
_prefix = ""


def iso_utc(epoch: float) -> str:
    """ISO 8601 UTC text for a Unix time; caches the per-second prefix (hot path)."""
    global _second, _prefix
    sec = int(epoch)
    if sec != _second:
        _prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second = sec
    return f"{_prefix}.{int((epoch - sec) * 1_000_000):06d}+00:00"


def clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"\n… [{len(text) - MAX_TEXT:,} characters cut by workbench]"


ESCAPED_NOTE = "escaped_surrogates"
"""Metadata key listing the columns whose text held lone surrogates, stored as ``\\udXXX``."""


def safe_text(text: str) -> str:
    """``text`` as SQLite can store it: a lone surrogate (a non-UTF-8 file name gives one)
    becomes a ``\\udXXX`` escape, with a marker saying so, as `clip` marks a cut."""
    if not has_surrogates(text):
        return text
    return escape_surrogates(text) + " [lone surrogates written as \\udXXX by workbench]"


def _escape_columns(values: dict[str, Any], columns: list[str]) -> None:
    for column in columns:
        if column.endswith("_json"):
            # Escaped inside the JSON, so reading it back gives the escape, not the surrogate again.
            values[column] = dumps(escape_surrogates_in(loads(values[column])))
        else:
            values[column] = escape_surrogates(values[column])
    meta = loads(values.get("metadata_json"), {})
    if not isinstance(meta, dict):
        meta = {"metadata": meta}
    meta[ESCAPED_NOTE] = sorted(columns)
    values["metadata_json"] = dumps(meta)


def row(**values: Any) -> tuple[Any, ...]:
    """A full trace row in column order; unknown names are refused.

    Text holding lone surrogates (which UTF-8, and so SQLite, cannot store:
    the row would be lost) is stored with ``\\udXXX`` escapes, and the row's
    metadata lists the columns under ``escaped_surrogates``.
    """
    unknown = values.keys() - _COLUMN_SET
    if unknown:
        raise KeyError(f"unknown trace columns: {', '.join(sorted(unknown))}")
    values.setdefault("simulated", 0)  # NOT NULL: binding None would drop the row
    # One test over all the text first: every traced call comes through here, and
    # almost all of them are ASCII (a lone surrogate never is).
    if not "".join([v for v in values.values() if isinstance(v, str)]).isascii():
        escaped = [c for c, v in values.items() if isinstance(v, str) and has_surrogates(v)]
        if escaped:
            _escape_columns(values, escaped)
    get = values.get
    return tuple([get(c) for c in COLUMNS])


def row_dict(sql: str, values: Sequence[Any]) -> dict[str, Any] | None:
    """A queued ``(sql, row)`` as a dict of every column, or None when it is not a trace insert."""
    if sql is SPAN_SQL or sql == SPAN_SQL:
        out = dict.fromkeys(COLUMNS)
        out.update(zip(_SPAN_FIELDS, values))
        out["kind"], out["simulated"] = "span", 0
        return out
    if sql is INSERT_SQL or sql == INSERT_SQL or sql == INGEST_SQL:
        return dict(zip(COLUMNS, values))
    return None


@dataclass(frozen=True)
class TraceQuery:
    """Filters shared by trace listings and frames."""

    since: str | None = None
    until: str | None = None
    model: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    experiment_id: str | None = None
    variant: str | None = None
    status: str | None = None
    user_id: str | None = None
    kind: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for col, op, value in (
            ("started_at", ">=", self.since),
            ("started_at", "<", self.until),
            ("model", "=", self.model),
            ("prompt_name", "=", self.prompt_name),
            ("prompt_version", "=", self.prompt_version),
            ("experiment_id", "=", self.experiment_id),
            ("variant", "=", self.variant),
            ("status", "=", self.status),
            ("user_id", "=", self.user_id),
            ("kind", "=", self.kind),
        ):
            if value is not None:
                clauses.append(f"{col} {op} ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _decode(r: dict[str, Any]) -> dict[str, Any]:
    r.pop("rowid", None)  # PostgreSQL's stand-in for SQLite's hidden rowid comes with `*`
    r["tags"] = loads(r.pop("tags_json", None), [])
    r["metadata"] = loads(r.pop("metadata_json", None), {})
    return r


def list_traces(store: Store, query: TraceQuery | None = None, limit: int | None = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Newest first."""
    where, params = (query or TraceQuery()).where()
    sql = f"SELECT * FROM traces{where} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    return [_decode(r) for r in store.query(sql, params)]


def get_trace(store: Store, trace_id: str) -> dict[str, Any] | None:
    rows = store.query("SELECT * FROM traces WHERE id = ?", (trace_id,))
    return _decode(rows[0]) if rows else None


def span_tree(store: Store, trace_id: str) -> list[dict[str, Any]]:
    """Every span of one trace, in start order."""
    return [_decode(r) for r in store.query("SELECT * FROM traces WHERE trace_id = ? ORDER BY id", (trace_id,))]


def iter_rows(store: Store, query: TraceQuery | None = None, chunk: int = 1_000) -> Iterator[list[dict[str, Any]]]:
    """Every matching row (raw columns, JSON still text), in write order, ``chunk`` rows at a time.

    Pages by rowid, so a bulk export of millions of rows never re-scans what it has passed.
    """
    where, params = (query or TraceQuery()).where()
    joiner = " AND " if where else " WHERE "
    last = 0
    while True:
        rows = store.query(
            f"SELECT rowid AS _rowid, * FROM traces{where}{joiner}rowid > ? ORDER BY rowid LIMIT ?",
            [*params, last, chunk],
        )
        if not rows:
            return
        last = rows[-1]["_rowid"]
        for r in rows:
            del r["_rowid"]
            r.pop("rowid", None)
        yield rows


def count(store: Store, query: TraceQuery | None = None) -> int:
    where, params = (query or TraceQuery()).where()
    return store.execute(f"SELECT COUNT(*) FROM traces{where}", params).fetchone()[0]


# -- full-text search -------------------------------------------------------------------------
# `traces_fts` (migration m007) is an external-content FTS5 index over input and output.
# There are no insert triggers, so the writer's hot path is untouched; instead the index is
# caught up by rowid just before a search. Traces are append-only, so the rows with a rowid
# above the last one indexed are exactly the rows not yet indexed.


FTS_CHUNK = 50_000
"""Rowids indexed per transaction: a first search of a big file must not hold the
write lock (and stall the trace writer) for seconds."""


def index_fts(store: Store) -> int:
    """Add every trace written since the last call to the full-text index; returns rows added.

    The new rows and the new high-water mark commit together (per chunk of
    `FTS_CHUNK` rowids), so an interrupted or concurrent indexing never
    indexes a row twice or skips one.
    """
    added = 0
    while True:
        with store.transaction() as conn:
            (last,) = conn.execute("SELECT last_rowid FROM traces_fts_state WHERE id = 1").fetchone()
            (top,) = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM traces").fetchone()
            if top <= last:
                return added
            upto = min(top, last + FTS_CHUNK)
            cur = conn.execute(_fts(store).index_sql, (last, upto))
            added += cur.rowcount
            conn.execute("UPDATE traces_fts_state SET last_rowid = ? WHERE id = 1", (upto,))


FTS_IDLE_CHUNK = 1_000
"""Rows the background writer indexes per quiet moment (about 30 ms here): queued traces never wait long."""


def index_fts_some(conn: Any, limit: int = FTS_IDLE_CHUNK) -> bool:
    """Index up to ``limit`` unindexed traces on a SQLite connection (the writer's, when idle).

    One transaction reads the high-water mark, indexes and moves it, as `index_fts`
    does, so the two never index a row twice. Returns True while rows remain, so a
    file written faster than it is searched has its index ready by the first search.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        (last,) = conn.execute("SELECT last_rowid FROM traces_fts_state WHERE id = 1").fetchone()
        (top,) = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM traces").fetchone()
        upto = min(top, last + limit)
        if upto > last:
            conn.execute(_Fts5.index_sql, (last, upto))
            conn.execute("UPDATE traces_fts_state SET last_rowid = ? WHERE id = 1", (upto,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return upto < top


def rebuild_fts(store: Store) -> int:
    """Rebuild the full-text index from scratch; returns the rows indexed.

    Needed only if rowids changed under the index (a ``VACUUM`` may renumber
    the rowids of ``traces``, whose primary key is text) or rows were deleted.
    """
    with store.transaction() as conn:
        conn.execute(_fts(store).clear_sql)
        conn.execute("UPDATE traces_fts_state SET last_rowid = 0 WHERE id = 1")
    return index_fts(store)


def fts_query(text: str) -> str:
    """User text as a safe FTS5 query: every word must appear (in input or output).

    Each whitespace-separated word becomes a quoted phrase, so FTS5 syntax in
    the text (``"``, ``-``, ``:``, ``*``, ``AND``, ``NEAR(...)``, parentheses)
    is searched for as text and can never raise a syntax error. Punctuation
    inside a word is a token separator, so ``rate-limit`` matches the adjacent
    words "rate limit". A trailing ``*`` keeps its meaning of a prefix search:
    ``retr*`` finds retry and retrieval.
    """
    parts = []
    for word in _searchable(text).split():
        prefix = word.endswith("*") and len(word.rstrip("*")) > 0
        word = word.rstrip("*") if prefix else word
        phrase = '"' + word.replace('"', '""') + '"'
        parts.append(phrase + ("*" if prefix else ""))
    return " ".join(parts)


def _searchable(text: str) -> str:
    """``text`` as FTS5 can take it: NUL ends an FTS5 string early (a syntax error), so it
    separates words like the other control characters; a lone surrogate cannot be bound."""
    return escape_surrogates(text.replace("\x00", " "))


def ts_query(text: str) -> str:
    """User text as a safe PostgreSQL ``tsquery``, meaning what `fts_query` means in FTS5.

    Every word must appear; a word's parts (``rate-limit``: rate, limit) must be
    adjacent (``<->``); a trailing ``*`` is a prefix search (``:*``). Each part
    is quoted, so tsquery syntax in the text is searched for as text.
    """
    parts = []
    for word in _searchable(text).split():
        prefix = word.endswith("*") and len(word.rstrip("*")) > 0
        tokens = re.findall(r"[^\W_]+", word.rstrip("*") if prefix else word)
        if not tokens:
            continue
        quoted = ["'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in tokens]
        if prefix:
            quoted[-1] += ":*"
        parts.append("(" + " <-> ".join(quoted) + ")")
    return " & ".join(parts) or "'-'"  # no word at all: a query that matches nothing


def _any_word(text: str) -> str:
    """A tsquery matching any word of ``text``: what a snippet highlights."""
    tokens = re.findall(r"[^\W_]+", _searchable(text))
    return " | ".join("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in tokens) or "'-'"


class _Fts5:
    """SQLite's FTS5 index (migration m007): the statements the search functions need."""

    index_sql = (
        "INSERT INTO traces_fts (rowid, input, output) SELECT rowid, input, output FROM traces "
        "WHERE rowid > ? AND rowid <= ? AND (input IS NOT NULL OR output IS NOT NULL)"
    )
    clear_sql = "INSERT INTO traces_fts (traces_fts) VALUES ('delete-all')"
    query = staticmethod(fts_query)
    snippet_query = staticmethod(fts_query)

    def match(self, alias: str = "") -> str:
        """The condition "the index row matches the bound query" (FTS5 names the table, not the alias)."""
        return "traces_fts MATCH ?"

    def snippets_sql(self, n: int) -> str:
        marks = ", ".join("?" * n)
        return (
            "SELECT rowid, snippet(traces_fts, -1, char(2), char(3), '…', 12) FROM traces_fts "
            f"WHERE traces_fts MATCH ? AND rowid IN ({marks})"
        )


class _Tsvector(_Fts5):
    """PostgreSQL's stand-in (``migrations.POSTGRES``): a table of tsvectors with a GIN index."""

    # PostgreSQL's parser reads "-42" as a signed number and "a@b.com" or "1.2.3" as one token;
    # FTS5 splits them all at punctuation. Punctuation becomes space before parsing, so a word
    # means the same on both back ends.
    PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    index_sql = (
        "INSERT INTO traces_fts (rowid, doc) SELECT rowid, to_tsvector('simple', translate("
        f"COALESCE(input, '') || ' ' || COALESCE(output, ''), '{PUNCTUATION.replace(chr(39), chr(39) * 2)}', "
        f"'{' ' * len(PUNCTUATION)}')) FROM traces "
        "WHERE rowid > ? AND rowid <= ? AND (input IS NOT NULL OR output IS NOT NULL)"
    )
    clear_sql = "DELETE FROM traces_fts"
    query = staticmethod(ts_query)
    snippet_query = staticmethod(_any_word)
    HEADLINE = "StartSel=\x02, StopSel=\x03, MaxWords=12, MinWords=5, MaxFragments=1, FragmentDelimiter=…"

    def match(self, alias: str = "") -> str:
        return f"{alias + '.' if alias else ''}doc @@ to_tsquery('simple', ?)"

    def snippets_sql(self, n: int) -> str:
        marks = ", ".join("?" * n)
        return (
            "SELECT t.rowid, ts_headline('simple', COALESCE(t.input, '') || ' ' || COALESCE(t.output, ''), "
            f"to_tsquery('simple', ?), '{self.HEADLINE}') FROM traces AS t WHERE t.rowid IN ({marks})"
        )


_ENGINES = {"fts5": _Fts5(), "tsvector": _Tsvector()}


def _fts(store: Store) -> _Fts5:
    """The full-text engine of the store's dialect."""
    return _ENGINES[store.dialect.fts]


def _search_sql(store: Store, select: str, text: str, query: TraceQuery | None) -> tuple[str, list[Any]]:
    where, params = (query or TraceQuery()).where()
    # Drive the join from the index: FTS5 yields matches in rowid order, so
    # "ORDER BY f.rowid DESC LIMIT n" stops after n hits instead of sorting them all.
    extra = where.replace(" WHERE ", " AND ", 1)
    fts = _fts(store)
    sql = (
        f"SELECT {select} FROM traces_fts AS f JOIN traces AS t ON t.rowid = f.rowid "
        f"WHERE {fts.match('f')}{extra}"
    )
    return sql, [fts.query(text), *params]


def search(
    store: Store, text: str, query: TraceQuery | None = None, limit: int | None = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """Traces whose input or output contains every word of ``text``, newest first.

    "Newest" is write order (rowid), which follows start time except that a
    parent span is written after its children. ``query`` narrows by the usual
    filters. The index is brought up to date first (rows still queued in the
    writer are not seen: ``store.flush()`` before, when that matters). Blank
    ``text`` lists by ``query`` alone, as `list_traces` does.
    """
    if not _searchable(text).strip():
        return list_traces(store, query, limit=limit, offset=offset)
    index_fts(store)
    sql, params = _search_sql(store, "t.*", text, query)
    sql += " ORDER BY f.rowid DESC"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    return [_decode(r) for r in store.query(sql, params)]


def search_count(store: Store, text: str, query: TraceQuery | None = None) -> int:
    """How many traces `search` finds without a limit."""
    if not _searchable(text).strip():
        return count(store, query)
    index_fts(store)
    if not (query or TraceQuery()).where()[0]:
        # No filter: the index alone knows (every indexed rowid is a trace; they are never deleted).
        fts = _fts(store)
        sql, params = f"SELECT COUNT(*) FROM traces_fts WHERE {fts.match()}", [fts.query(text)]
    else:
        sql, params = _search_sql(store, "COUNT(*)", text, query)
    return store.execute(sql, params).fetchone()[0]


def distinct(store: Store, column: str, recent: int | None = 100_000, limit: int = 500) -> list[Any]:
    """Distinct non-null values of a filter column, sorted, for pickers.

    Only the ``recent`` newest rows are looked at (None: all of them): there
    is no index on these columns, and a picker must open fast at a million traces.
    """
    allowed = ("model", "prompt_name", "status", "kind", "provider", "variant", "user_id")
    if column not in allowed:
        raise KeyError(f"distinct values are offered for {', '.join(allowed)}, not {column!r}")
    source = "traces" if recent is None else f"(SELECT {column} FROM traces ORDER BY id DESC LIMIT {int(recent)}) AS recent"
    rows = store.execute(
        f"SELECT DISTINCT {column} FROM {source} WHERE {column} IS NOT NULL ORDER BY 1 LIMIT ?", (limit,)
    ).fetchall()
    return [r[0] for r in rows]


# -- what experiments ask of their traces ------------------------------------------------------


def experiment_cells(store: Store, experiment_id: str, status: str = "ok") -> list[dict[str, Any]]:
    """An experiment's main calls (judges excluded) with ``status``: variant, item_id, repeat, id; oldest first."""
    return store.query(
        "SELECT variant, item_id, repeat, id FROM traces WHERE experiment_id = ? AND kind = 'llm' "
        "AND status = ? AND variant IS NOT NULL ORDER BY id",
        (experiment_id, status),
    )


def experiment_spent(store: Store, experiment_id: str) -> float:
    """Dollars of every priced call of an experiment, judges included."""
    (spent,) = store.execute(
        "SELECT COALESCE(SUM(cost_usd), 0) FROM traces WHERE experiment_id = ?", (experiment_id,)
    ).fetchone()
    return float(spent)


def experiment_output_tokens(store: Store, experiment_id: str) -> dict[str, tuple[float, float]]:
    """Per variant: (min, mean) output tokens of finished main calls."""
    rows = store.query(
        "SELECT variant, MIN(output_tokens) AS lo, AVG(output_tokens) AS mean FROM traces "
        "WHERE experiment_id = ? AND kind = 'llm' AND status = 'ok' AND variant IS NOT NULL GROUP BY variant",
        (experiment_id,),
    )
    return {r["variant"]: (r["lo"], r["mean"]) for r in rows if r["mean"] is not None}


def output_of(store: Store, trace_id: str) -> str | None:
    rows = store.query("SELECT output FROM traces WHERE id = ?", (trace_id,))
    return rows[0]["output"] if rows else None


def experiment_totals(store: Store) -> dict[str, dict[str, Any]]:
    """Per experiment id: main calls, dollars (None when nothing was priced), and whether any call was simulated."""
    rows = store.query(
        "SELECT experiment_id, SUM(CASE WHEN kind = 'llm' AND variant IS NOT NULL THEN 1 ELSE 0 END) AS calls, "
        f"SUM(cost_usd) AS cost_usd, MAX(simulated) AS simulated, {store.dialect.group_concat_distinct('provider')} "
        "AS providers FROM traces WHERE experiment_id IS NOT NULL GROUP BY experiment_id"
    )
    return {r.pop("experiment_id"): r for r in rows}


# -- the traces explorer: count and page any filter combination at a million traces -----------
# Counts read the covering index `idx_traces_explore` (migration m008); pages walk the table
# backwards by rowid (write order) and stop after one page, unless the filter is so rare that
# walking would read most of the file: then the index finds the page's rowids. Searches start
# from the full-text index. Every plan is pinned (NOT INDEXED, INDEXED BY, CROSS JOIN): without
# statistics SQLite takes "is not a judge's call" for a rare value and sorts the whole file.

JUDGE_SQL = "(instr(COALESCE(tags_json, ''), '\"judge\"') > 0)"
"""True for a judge's call (the experiment runner tags them ``judge``). Spelled exactly as in
``idx_traces_explore``, or SQLite cannot read it from the index."""


def judge_sql(dialect: Dialect) -> str:
    """`JUDGE_SQL` in ``dialect``'s spelling (as its ``idx_traces_explore`` spells it)."""
    return dialect.contains("COALESCE(tags_json, '')", "'\"judge\"'")

EXPLORE_INDEX = "idx_traces_explore"

ROW_COLUMNS = (
    "id", "trace_id", "parent_id", "kind", "name", "started_at", "provider", "simulated", "model",
    "prompt_name", "prompt_version", "experiment_id", "variant", "item_id", "repeat", "user_id",
    "input_tokens", "output_tokens", "cache_read_tokens", "latency_ms", "cost_usd", "status", "error_type",
    "attempts", "tags_json",
)
"""What one explorer row shows or links by; never the input and output text."""

SEARCH_COUNT_CAP = 10_000
"""A search counts its matches up to this many: past it the explorer says "10,000+" (counting
800,000 matches of a common word would read 800,000 rows)."""

SPARSE_SCAN_ROWS = 20_000
"""A page walks back through at most about this many rows before the index is used instead."""

SEARCH_CANDIDATES = 20_000
"""A search whose filters alone leave at most this many traces looks the words up in those
rows only, instead of walking every match of the words (a common word matches most rows)."""


@dataclass(frozen=True)
class Browse:
    """What the traces explorer shows: the usual filters, one experiment item, judges or not, words."""

    query: TraceQuery = TraceQuery()
    item_id: str | None = None
    """One experiment item (its main calls, repeats and judges)."""
    judges: bool = False
    """Include judges' calls (hidden by default: they double an experiment's rows)."""
    text: str = ""
    """Words that must all appear in the input or output (full-text search)."""

    def where(self, dialect: Dialect = SQLITE) -> tuple[str, list[Any]]:
        """``AND``-joined conditions (no leading WHERE) and their parameters.

        Column names stay unqualified: none of them is a column of ``traces_fts``
        too, so they name the traces row in the search join as well.
        """
        where, params = self.query.where()
        clauses = [where[len(" WHERE "):]] if where else []
        if self.item_id is not None:
            clauses.append("item_id = ?")
            params.append(self.item_id)
        if not self.judges:
            clauses.append(dialect.is_false(judge_sql(dialect)))
        return " AND ".join(clauses), params

    @property
    def searching(self) -> bool:
        return bool(self.text.strip())


def _filter_count(store: Store, browse: Browse) -> int:
    where, params = browse.where(store.dialect)
    sql = f"SELECT COUNT(*) FROM traces{store.dialect.indexed_by(EXPLORE_INDEX)}" + (f" WHERE {where}" if where else "")
    return store.execute(sql, params).fetchone()[0]


def _candidates(store: Store, browse: Browse) -> list[int] | None:
    """Rowids (newest first) that match the words and the filters, when the filters alone are rare.

    None when there is no filter but the judges switch, or the filters leave more than
    `SEARCH_CANDIDATES` rows: then the full-text index leads instead.
    """
    if not browse.query.where()[0] and browse.item_id is None:
        return None
    if _filter_count(store, replace(browse, text="")) > SEARCH_CANDIDATES:
        return None
    dialect, fts = store.dialect, _fts(store)
    where, params = browse.where(dialect)
    rowids = [r[0] for r in store.execute(
        f"SELECT rowid FROM traces{dialect.indexed_by(EXPLORE_INDEX)} WHERE {where} ORDER BY rowid DESC", params
    ).fetchall()]
    if not rowids:
        return []
    found = {r[0] for r in store.execute(
        f"SELECT rowid FROM traces_fts WHERE {fts.match()} AND {dialect.in_json_ints('rowid')}",
        [fts.query(browse.text), json.dumps(rowids)],
    ).fetchall()}
    return [r for r in rowids if r in found]


def browse_count(store: Store, browse: Browse) -> tuple[int, bool]:
    """``(n, exact)``: traces the explorer would list; a search stops counting at `SEARCH_COUNT_CAP`."""
    dialect, fts = store.dialect, _fts(store)
    where, params = browse.where(dialect)
    if not browse.searching:
        return _filter_count(store, browse), True
    index_fts(store)
    few = _candidates(store, browse)
    if few is not None:
        return len(few), True
    sql = (
        f"SELECT COUNT(*) FROM (SELECT 1 FROM traces_fts AS f {dialect.forced_join()} traces AS t{dialect.not_indexed()} "
        f"ON t.rowid = f.rowid WHERE {fts.match('f')}{' AND ' + where if where else ''} LIMIT ?) AS found"
    )
    n = store.execute(sql, [fts.query(browse.text), *params, SEARCH_COUNT_CAP + 1]).fetchone()[0]
    return min(n, SEARCH_COUNT_CAP), n <= SEARCH_COUNT_CAP


def _snippets(store: Store, text: str, rowids: list[int]) -> dict[int, str]:
    """Each row's best matching passage, matches between \\x02 and \\x03 (the view marks them)."""
    if not rowids:
        return {}
    fts = _fts(store)
    rows = store.execute(fts.snippets_sql(len(rowids)), [fts.snippet_query(text), *rowids]).fetchall()
    return {r[0]: r[1] for r in rows}


def browse_page(
    store: Store,
    browse: Browse,
    *,
    limit: int = 50,
    before: int | None = None,
    after: int | None = None,
    offset: int = 0,
    total: int | None = None,
) -> list[dict[str, Any]]:
    """One page of explorer rows, newest written first (highest rowid), each with its ``rowid``.

    Args:
        browse: the filters.
        limit: rows per page.
        before: only rows written before this rowid (the next page: the last row's rowid).
        after: only rows written after this rowid (the previous page: the first row's rowid).
        offset: rows to skip (jumping to a page; walks them, so keep it small).
        total: the count from `browse_count`, when known: a rare filter's page then
            comes from the index instead of a walk through most of the file.

    Rows carry `ROW_COLUMNS` (no input or output text) and, when searching,
    ``snippet``: the best matching passage with matches between ``\\x02`` and ``\\x03``.
    """
    cols = ", ".join(f"t.{c}" for c in ROW_COLUMNS)
    dialect, fts = store.dialect, _fts(store)
    where, params = browse.where(dialect)
    conds = [where] if where else []
    if before is not None:
        conds.append("t.rowid < ?")
        params.append(before)
    if after is not None:
        conds.append("t.rowid > ?")
        params.append(after)
    direction = "ASC" if after is not None and before is None else "DESC"
    few = None
    if browse.searching:
        index_fts(store)
        few = _candidates(store, browse)
    if few is not None:
        picked = [r for r in few if (before is None or r < before) and (after is None or r > after)]
        picked = picked[::-1][offset:offset + limit][::-1] if direction == "ASC" else picked[offset:offset + limit]
        sql = (
            f"SELECT t.rowid AS rowid, {cols} FROM traces AS t{dialect.not_indexed()} "
            f"WHERE {dialect.in_json_ints('t.rowid')} ORDER BY t.rowid DESC"
        )
        rows = store.query(sql, [json.dumps(picked)])
    elif browse.searching:
        sql = (
            f"SELECT t.rowid AS rowid, {cols} FROM traces_fts AS f {dialect.forced_join()} traces AS t{dialect.not_indexed()} "
            f"ON t.rowid = f.rowid WHERE {fts.match('f')}{''.join(' AND ' + c for c in conds)} "
            f"ORDER BY f.rowid {direction} LIMIT ? OFFSET ?"
        )
        params = [fts.query(browse.text), *params]
    else:
        (top,) = store.execute("SELECT COALESCE(MAX(rowid), 0) FROM traces").fetchone()
        sparse = total is not None and total * SPARSE_SCAN_ROWS < top * limit
        source = "traces AS t" + (dialect.indexed_by(EXPLORE_INDEX) if sparse else dialect.not_indexed())
        clause = (" WHERE " + " AND ".join(conds)) if conds else ""
        sql = f"SELECT t.rowid AS rowid, {cols} FROM {source}{clause} ORDER BY t.rowid {direction} LIMIT ? OFFSET ?"
    if few is None:
        rows = store.query(sql, [*params, limit, offset])
        if direction == "ASC":
            rows.reverse()
    for r in rows:
        r["tags"] = loads(r.pop("tags_json", None), [])
    if browse.searching:
        found = _snippets(store, browse.text, [r["rowid"] for r in rows])
        for r in rows:
            r["snippet"] = found.get(r["rowid"])
    return rows


def judges_of(store: Store, trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The judges' calls that scored ``trace`` (an experiment's main call), oldest first."""
    if not trace.get("experiment_id"):
        return []
    rows = store.query(
        f"SELECT id, name, prompt_name, status, latency_ms, cost_usd, metadata_json FROM traces "
        f"WHERE experiment_id = ? AND item_id {store.dialect.null_safe_eq()} ? AND {judge_sql(store.dialect)} ORDER BY id",
        (trace["experiment_id"], trace.get("item_id")),
    )
    found = []
    for r in rows:
        meta = loads(r.pop("metadata_json", None), {})
        if meta.get("judged_trace") == trace["id"]:
            found.append(r)
    return found


def experiment_variants(store: Store, experiment_id: str) -> list[str]:
    """The variants an experiment's calls ran under, sorted (from the experiment index)."""
    rows = store.execute(
        "SELECT DISTINCT variant FROM traces WHERE experiment_id = ? AND variant IS NOT NULL ORDER BY 1", (experiment_id,)
    ).fetchall()
    return [r[0] for r in rows]


def experiment_names(store: Store) -> list[tuple[str, str]]:
    """``(name, id)`` of every experiment that has traces, oldest first, for the explorer's picker.

    Reads the ids from the experiment index (fast at a million traces) and the
    names beside them; `Experiments.list` also sums every call, which takes a
    second on a big file.
    """
    rows = store.query(
        "SELECT e.name AS name, e.id AS id FROM experiments AS e WHERE e.id IN "
        "(SELECT DISTINCT experiment_id FROM traces WHERE experiment_id IS NOT NULL) ORDER BY e.created_at"
    )
    return [(r["name"], r["id"]) for r in rows]
