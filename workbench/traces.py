"""The ``traces`` table: the one writer and reader of trace rows.

Rows are written through the store's background writer (never on the caller's
path to disk) and read back as dicts or, for analysis, by ``frames.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._canonical import loads

if TYPE_CHECKING:
    from .store import Store

COLUMNS = (
    "id", "trace_id", "parent_id", "kind", "name", "started_at", "provider", "simulated",
    "model", "resolved_model", "prompt_name", "prompt_version", "experiment_id", "variant",
    "item_id", "repeat", "user_id", "input", "output", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "latency_ms", "ttft_ms", "cost_usd",
    "price_source", "status", "error_type", "error", "attempts", "stop_reason", "request_id",
    "tags_json", "metadata_json",
)
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


def row(**values: Any) -> tuple[Any, ...]:
    """A full trace row in column order; unknown names are refused."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown trace columns: {', '.join(sorted(unknown))}")
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
