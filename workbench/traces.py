"""The ``traces`` table: the one writer and reader of trace rows.

Rows are written through the store's background writer (never on the caller's
path to disk) and read back as dicts or, for analysis, by ``frames.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._canonical import dumps, escape_surrogates, escape_surrogates_in, has_surrogates, loads

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
INSERT_SQL = f"INSERT INTO traces ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
SPAN_SQL = (
    "INSERT INTO traces (id, trace_id, parent_id, kind, name, started_at, input, output, "
    "latency_ms, status, error_type, error, simulated) VALUES (?, ?, ?, 'span', ?, ?, ?, ?, ?, ?, ?, ?, 0)"
)
"""The short insert used by ``@bench.traced`` spans: fewer values to bind on the hot path."""
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
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown trace columns: {', '.join(sorted(unknown))}")
    values.setdefault("simulated", 0)  # NOT NULL: binding None would drop the row
    escaped = [c for c, v in values.items() if isinstance(v, str) and has_surrogates(v)]
    if escaped:
        _escape_columns(values, escaped)
    return tuple(values.get(c) for c in COLUMNS)


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
            cur = conn.execute(
                "INSERT INTO traces_fts (rowid, input, output) SELECT rowid, input, output FROM traces "
                "WHERE rowid > ? AND rowid <= ? AND (input IS NOT NULL OR output IS NOT NULL)",
                (last, upto),
            )
            added += cur.rowcount
            conn.execute("UPDATE traces_fts_state SET last_rowid = ? WHERE id = 1", (upto,))


def rebuild_fts(store: Store) -> int:
    """Rebuild the full-text index from scratch; returns the rows indexed.

    Needed only if rowids changed under the index (a ``VACUUM`` may renumber
    the rowids of ``traces``, whose primary key is text) or rows were deleted.
    """
    with store.transaction() as conn:
        conn.execute("INSERT INTO traces_fts (traces_fts) VALUES ('delete-all')")
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


def _search_sql(select: str, text: str, query: TraceQuery | None) -> tuple[str, list[Any]]:
    where, params = (query or TraceQuery()).where()
    # Drive the join from the index: FTS5 yields matches in rowid order, so
    # "ORDER BY f.rowid DESC LIMIT n" stops after n hits instead of sorting them all.
    extra = where.replace(" WHERE ", " AND ", 1)
    sql = (
        f"SELECT {select} FROM traces_fts AS f JOIN traces AS t ON t.rowid = f.rowid "
        f"WHERE traces_fts MATCH ?{extra}"
    )
    return sql, [fts_query(text), *params]


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
    sql, params = _search_sql("t.*", text, query)
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
        sql, params = "SELECT COUNT(*) FROM traces_fts WHERE traces_fts MATCH ?", [fts_query(text)]
    else:
        sql, params = _search_sql("COUNT(*)", text, query)
    return store.execute(sql, params).fetchone()[0]


def distinct(store: Store, column: str, recent: int | None = 100_000, limit: int = 500) -> list[Any]:
    """Distinct non-null values of a filter column, sorted, for pickers.

    Only the ``recent`` newest rows are looked at (None: all of them): there
    is no index on these columns, and a picker must open fast at a million traces.
    """
    allowed = ("model", "prompt_name", "status", "kind", "provider", "variant", "user_id")
    if column not in allowed:
        raise KeyError(f"distinct values are offered for {', '.join(allowed)}, not {column!r}")
    source = "traces" if recent is None else f"(SELECT {column} FROM traces ORDER BY id DESC LIMIT {int(recent)})"
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
        "SELECT experiment_id, SUM(kind = 'llm' AND variant IS NOT NULL) AS calls, SUM(cost_usd) AS cost_usd, "
        "MAX(simulated) AS simulated, GROUP_CONCAT(DISTINCT provider) AS providers "
        "FROM traces WHERE experiment_id IS NOT NULL GROUP BY experiment_id"
    )
    return {r.pop("experiment_id"): r for r in rows}
