"""Polars frames from the store: the analysis layer's only way into SQLite.

Reads go through Arrow (ADBC's SQLite driver) rather than a Python loop over
rows, and never write. Every frame has a declared schema, so an empty result
still has the right columns and dtypes::

    df = frames.traces_df(store, experiment_id=exp.id)
    frames.metrics(df, by="variant")                 # one row per variant
    frames.metrics(store, by="model", every="1h")    # loads only the columns it needs

`metrics` is built to stay fast at a million traces: from a store it pushes
the ``kind`` filter and the column choice into SQL and skips the ORDER BY;
it parses times only when bucketing; it gives each row an integer group code
once, sums over the codes in one Polars ``group_by``, and sorts each group's
latencies once (numpy) for exact percentiles.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import math
import sqlite3

import numpy as np
import polars as pl

from . import traces
from .errors import ConfigError, StoreError

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "COLUMN_CACHE_ENTRIES",
    "EXPERIMENT_SCHEMA",
    "GROUP_COLUMNS",
    "METRIC_COLUMNS",
    "METRIC_INPUTS",
    "SAVINGS_SOURCES",
    "SCORE_SCHEMA",
    "SPLIT_ROWS",
    "TRACE_SCHEMA",
    "days_with_rows",
    "experiments_df",
    "gateway_calls",
    "gateway_events",
    "metrics",
    "production_scored",
    "production_scores",
    "read_sql",
    "read_sql_parts",
    "savings",
    "scores_between",
    "scores_df",
    "top_users",
    "traces_df",
    "traces_in_ranges",
]

_INT_TRACE_COLUMNS = {
    "simulated", "prompt_version", "repeat", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "attempts",
}
_FLOAT_TRACE_COLUMNS = {"latency_ms", "ttft_ms", "cost_usd"}

_CATEGORICAL_TRACE_COLUMNS = {"kind", "status"}
"""A handful of values each: Categorical makes ``status == "ok"`` an integer compare
(about 5x cheaper over a million rows than comparing strings)."""
TRACE_SCHEMA: dict[str, pl.DataType] = {
    c: pl.Int64() if c in _INT_TRACE_COLUMNS
    else pl.Float64() if c in _FLOAT_TRACE_COLUMNS
    else pl.Categorical() if c in _CATEGORICAL_TRACE_COLUMNS
    else pl.String()
    for c in traces.COLUMNS
}
"""Dtypes of the ``traces`` columns as read (``started_at`` before time parsing)."""

SCORE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "trace_id": pl.String(),
    "experiment_id": pl.String(),
    "variant": pl.String(),
    "item_id": pl.String(),
    "repeat": pl.Int64(),
    "scorer": pl.String(),
    "value": pl.Float64(),
    "passed": pl.Int64(),
    "rationale": pl.String(),
    "judge_trace_id": pl.String(),
    "created_at": pl.String(),
}
"""Dtypes of the ``scores`` columns; ``passed`` stays 1/0/null as stored."""

EXPERIMENT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "name": pl.String(),
    "status": pl.String(),
    "created_at": pl.String(),
    "updated_at": pl.String(),
    "n_traces": pl.Int64(),
    "cost_usd": pl.Float64(),
}

GROUP_COLUMNS = (
    "model", "prompt_name", "prompt_version", "variant", "experiment_id", "user_id", "provider", "status",
)
"""Columns `metrics` can group by."""

METRIC_COLUMNS = (
    "requests", "errors", "error_rate", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "cost_usd", "unpriced", "latency_mean", "latency_p50", "latency_p95",
    "latency_p99", "ttft_p50", "ttft_p95",
)
"""The columns `metrics` computes, in output order (after the group keys)."""

METRIC_INPUTS = (
    "status", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cost_usd", "latency_ms", "ttft_ms",
)
"""Trace columns `metrics` reads besides the group keys (and ``started_at`` when bucketing)."""

_FILTERS = (
    "since", "until", "model", "prompt_name", "prompt_version", "experiment_id", "variant",
    "status", "user_id", "kind",
)

_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%6f+00:00"
"""Exactly how `traces.iso_utc` writes ``started_at``. Spelled with a literal
offset and fixed-width fraction, it takes Polars' fast parser (about 4x faster
than ``%.f%:z`` on this machine)."""
_OTHER_ISO_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S%.f%#z", True),  # 'Z' or any offset
    ("%Y-%m-%d %H:%M:%S%.f%#z", True),
    ("%Y-%m-%dT%H:%M:%S%.f", False),  # no offset: UTC
    ("%Y-%m-%d %H:%M:%S%.f", False),
)
"""Forms other writers use, tried only for the rows the fast format rejects."""

SPLIT_ROWS = 200_000
"""Unordered trace reads over more rows than this go in two parallel halves."""
_BATCH_ROWS = str(2**30)
"""One Arrow batch per result. ADBC's SQLite driver infers a column's type from
its first batch and fails on a later batch that disagrees (text after a batch
of NULLs); with one batch it sees every value and widens as it goes."""


# -- reading ---------------------------------------------------------------------------------


def _apply_schema(df: pl.DataFrame, schema: Mapping[str, pl.DataType] | None) -> pl.DataFrame:
    if not schema:
        return df
    casts = [
        pl.col(name).cast(dtype)
        for name, dtype in schema.items()
        if name in df.columns and df.schema[name] != dtype
    ]
    if not casts:
        return df
    try:
        return df.with_columns(casts)
    except pl.exceptions.PolarsError as exc:
        raise StoreError(f"a column does not hold the type the schema declares: {exc}") from None


def read_sql(
    store: Store,
    sql: str,
    params: Sequence[Any] = (),
    *,
    schema: Mapping[str, pl.DataType] | None = None,
) -> pl.DataFrame:
    """Run one SELECT and return a Polars frame, through Arrow.

    Queued trace rows are flushed first so they are visible. ``schema`` casts
    the named columns, which gives empty results (and all-NULL columns) their
    real dtypes; columns it does not name keep what the driver inferred.
    An in-memory store is read over its own connection (``pl.read_database``):
    no other connection can see it.
    """
    params = list(params)
    if store.path == ":memory:" or not store.path:
        store.sync()
        with store.lock:
            try:
                df = pl.read_database(
                    sql,
                    store.conn,
                    execute_options={"parameters": params} if params else None,
                    infer_schema_length=None,
                )
            except sqlite3.Error as exc:
                raise store.error(exc, "reading") from None
        return _apply_schema(df, schema)

    return read_sql_parts(store, [(sql, params)], schema=schema)


def read_sql_parts(
    store: Store,
    parts: Sequence[tuple[str, Sequence[Any]]],
    *,
    schema: Mapping[str, pl.DataType] | None = None,
) -> pl.DataFrame:
    """Several SELECTs of one shape, read at once, their rows stacked in order (file or server stores).

    The store reads them as Arrow: SQLite through ADBC in the reader process,
    PostgreSQL through ADBC's PostgreSQL driver (see `Store.read_frame`).
    """
    store.sync()
    df = store.read_frame(parts, {"adbc.sqlite.query.batch_rows": _BATCH_ROWS})
    return _apply_schema(df, schema)


# -- traces ----------------------------------------------------------------------------------


def _utc_text(value: str | datetime | date | None, name: str) -> str | None:
    """``since``/``until`` as the UTC ISO text ``started_at`` is stored in (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(
                f"{name}={value!r} is not an ISO 8601 time; pass e.g. '2025-01-31T12:00:00Z' or a datetime"
            ) from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ConfigError(f"{name} must be a str, date or datetime, not {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _check_columns(columns: str | Iterable[str] | None) -> list[str]:
    if columns is None:
        return list(traces.COLUMNS)
    cols = [columns] if isinstance(columns, str) else list(columns)
    known = set(traces.COLUMNS)
    for c in cols:
        if c not in known:
            raise ConfigError(f"unknown trace column {c!r}; known columns: {', '.join(traces.COLUMNS)}")
    if not cols:
        raise ConfigError("columns is empty; pass None for every column")
    return list(dict.fromkeys(cols))


def _parse_started_at(df: pl.DataFrame) -> pl.DataFrame:
    """``started_at`` text to Datetime(us, UTC), vectorised with explicit formats."""
    if "started_at" not in df.columns or df.schema["started_at"] != pl.String:
        return df
    raw = df["started_at"]
    parsed = raw.str.to_datetime(_ISO_FORMAT, time_unit="us", strict=False).dt.replace_time_zone("UTC")
    if parsed.null_count() > raw.null_count():
        # Rows written by other tools: try their forms, only when some exist.
        tries = [parsed]
        for fmt, aware in _OTHER_ISO_FORMATS:
            t = raw.str.to_datetime(fmt, time_unit="us", strict=False)
            tries.append(t.dt.convert_time_zone("UTC") if aware else t.dt.replace_time_zone("UTC"))
        parsed = pl.select(pl.coalesce(tries)).to_series()
    return df.with_columns(parsed.alias("started_at"))


def traces_df(
    store: Store,
    *,
    since: str | datetime | date | None = None,
    until: str | datetime | date | None = None,
    model: str | None = None,
    prompt_name: str | None = None,
    prompt_version: int | None = None,
    experiment_id: str | None = None,
    variant: str | None = None,
    status: str | None = None,
    user_id: str | None = None,
    kind: str | None = None,
    columns: str | Iterable[str] | None = None,
    parse_times: bool = True,
) -> pl.DataFrame:
    """Trace rows as a frame, oldest first.

    Args:
        since: keep rows started at or after this time (str or datetime; naive means UTC).
        until: keep rows started before this time.
        columns: a subset of `traces.COLUMNS`, selected in SQL (the fast path for big files).
        parse_times: turn ``started_at`` into ``Datetime(us, UTC)``; otherwise it stays text.

    The other arguments are equality filters on their column. ``tags_json`` and
    ``metadata_json`` stay JSON text (decode with ``str.json_decode`` when needed).
    """
    filters = dict(
        since=since, until=until, model=model, prompt_name=prompt_name, prompt_version=prompt_version,
        experiment_id=experiment_id, variant=variant, status=status, user_id=user_id, kind=kind,
    )
    if _is_parquet(store):
        df = _collect_parquet(store.traces(columns=columns, **filters))  # type: ignore[attr-defined]
        df = _apply_schema(df, {c: t for c, t in TRACE_SCHEMA.items() if c != "started_at"})
        if not parse_times and "started_at" in df.columns:
            df = df.with_columns(pl.col("started_at").dt.strftime(_ISO_FORMAT))
        return df
    return _read_traces(store, _check_columns(columns), filters, ordered=True, parse_times=parse_times)


def _is_parquet(source: Any) -> bool:
    """A `workbench.parquet.ParquetSource` (checked without importing it)."""
    return type(source).__name__ == "ParquetSource" and hasattr(source, "scan")


def _collect_parquet(lf: pl.LazyFrame) -> pl.DataFrame:
    """Run a scan of a Parquet folder on Polars' streaming engine (bounded memory)."""
    return lf.collect(engine="streaming")


def _read_traces(
    store: Store, cols: list[str], filters: Mapping[str, Any], *, ordered: bool, parse_times: bool
) -> pl.DataFrame:
    times = {name: _utc_text(filters.get(name), name) for name in ("since", "until")}
    query = traces.TraceQuery(**{**filters, **times})
    where, params = query.where()
    # `id` is a UUIDv7, so id order is start order; aggregates skip the sort (an index walk).
    order = " ORDER BY id" if ordered else ""
    sql = f"SELECT {', '.join(cols)} FROM traces{where}{order}"
    schema = {c: TRACE_SCHEMA[c] for c in cols}
    if not ordered and store.path not in ("", ":memory:"):
        df = _read_appending(store, sql, where, params, schema)
    else:
        df = read_sql(store, sql, params, schema=schema)
    return _parse_started_at(df) if parse_times else df


@dataclass
class _Columns:
    """Columns of trace rows up to ``last_rowid``, read once and kept for the next read."""

    frame: pl.DataFrame
    last_rowid: int
    total: int
    """Rows in the table when read: a smaller count later means rows were deleted."""
    file: tuple[Any, ...]
    """`Store.identity`: another file (or database) at the same path starts afresh."""


COLUMN_CACHE_ENTRIES = 4
"""Distinct unordered reads (column sets and filters) whose columns are kept per process."""
_column_cache: OrderedDict[tuple[Any, str, tuple[Any, ...]], _Columns] = OrderedDict()
_column_lock = threading.Lock()


def _table_state(store: Store) -> tuple[tuple[Any, ...], int, int]:
    """(identity, highest rowid, rows) of ``traces`` once queued rows are in: what the caches check."""
    store.sync()
    hi, total = store.execute("SELECT MAX(rowid), COUNT(*) FROM traces").fetchone()
    return store.identity(), hi or 0, total


def _appending(
    store: Store, key: tuple[Any, ...], state: tuple[tuple[Any, ...], int, int],
    read: Any, combine: Any,
) -> pl.DataFrame:
    """A frame of every trace row, kept per process and caught up by reading only the rows added since.

    ``read(lo, hi)`` gives the frame of the rows with ``lo < rowid <= hi``;
    ``combine(old, new)`` merges it into what was kept (rows stacked, or sums added).
    Trace rows are append-only (the full-text index relies on it too: see
    `traces.index_fts`), so the rows with a rowid above the last one read are
    exactly the new ones. A table that shrank or another database at the same
    path is read again from scratch. Reading SQLite costs about 50 ns a value
    while Polars needs under 2 ns for the same aggregate: rereading a million
    unchanged rows would be nearly all of a repeated ``metrics()``.
    """
    ident, hi, total = state
    with _column_lock:
        cached = _column_cache.get(key)
    if cached is not None and cached.file == ident and hi >= cached.last_rowid:
        (added,) = store.execute("SELECT COUNT(*) FROM traces WHERE rowid > ?", (cached.last_rowid,)).fetchone()
        if cached.total + added == total:
            frame = cached.frame if not added else combine(cached.frame, read(cached.last_rowid, hi))
            _remember(key, _Columns(frame, hi, total, ident))
            return frame
    # Bounded by the max rowid seen above, so the cache's mark is exact even while rows arrive.
    frame = read(0, hi)
    _remember(key, _Columns(frame, hi, total, ident))
    return frame


def _read_appending(
    store: Store, sql: str, where: str, params: Sequence[Any], schema: Mapping[str, pl.DataType],
    state: tuple[tuple[Any, ...], int, int] | None = None,
) -> pl.DataFrame:
    """An unordered read (what `metrics` asks for) that reads only rows added since the last same read."""
    state = state or _table_state(store)
    joiner = " AND " if where else " WHERE "

    def read(lo: int, hi: int) -> pl.DataFrame:
        if lo == 0 and hi > SPLIT_ROWS:
            # A big read goes in two rowid halves, read at once on two connections.
            mid = hi // 2
            parts = [(f"{sql}{joiner}rowid <= ?", [*params, mid]),
                     (f"{sql}{joiner}rowid > ? AND rowid <= ?", [*params, mid, hi])]
        else:
            parts = [(f"{sql}{joiner}rowid > ? AND rowid <= ?", [*params, lo, hi])]
        return read_sql_parts(store, parts, schema=schema)

    return _appending(store, (state[0], sql, tuple(params)), state, read,
                      lambda old, new: pl.concat([old, new], how="vertical_relaxed"))


def _remember(key: tuple[Any, str, tuple[Any, ...]], entry: _Columns) -> None:
    with _column_lock:
        _column_cache[key] = entry
        _column_cache.move_to_end(key)
        while len(_column_cache) > COLUMN_CACHE_ENTRIES:
            _column_cache.popitem(last=False)


def scores_df(store: Store, experiment_id: str | None = None) -> pl.DataFrame:
    """The ``scores`` table (of one experiment, or all), in insertion-id order (a store or a Parquet folder)."""
    if _is_parquet(store):
        lf = store.scan("scores")  # type: ignore[attr-defined]
        if experiment_id is not None:
            lf = lf.filter(pl.col("experiment_id") == experiment_id)
        return _apply_schema(_collect_parquet(lf.select(list(SCORE_SCHEMA)).sort("id")), SCORE_SCHEMA)
    cols = ", ".join(SCORE_SCHEMA)
    if experiment_id is None:
        return read_sql(store, f"SELECT {cols} FROM scores ORDER BY id", schema=SCORE_SCHEMA)
    return read_sql(
        store, f"SELECT {cols} FROM scores WHERE experiment_id = ? ORDER BY id", [experiment_id], schema=SCORE_SCHEMA
    )


def experiments_df(store: Store) -> pl.DataFrame:
    """One row per experiment with its trace count and total known cost, newest first.

    ``cost_usd`` sums the priced traces only; it is null when none was priced.
    From a Parquet folder, the counts are those of the day the experiments were exported.
    """
    if _is_parquet(store):
        lf = store.scan("experiments").select(list(EXPERIMENT_SCHEMA))  # type: ignore[attr-defined]
        df = _collect_parquet(lf.sort(["created_at", "id"], descending=True))
        return _apply_schema(df, EXPERIMENT_SCHEMA)
    sql = """
        SELECT e.id, e.name, e.status, e.created_at, e.updated_at,
               COALESCE(t.n_traces, 0) AS n_traces, t.cost_usd
        FROM experiments AS e
        LEFT JOIN (
            SELECT experiment_id, COUNT(*) AS n_traces, SUM(cost_usd) AS cost_usd
            FROM traces WHERE experiment_id IS NOT NULL GROUP BY experiment_id
        ) AS t ON t.experiment_id = e.id
        ORDER BY e.created_at DESC, e.id DESC
    """
    return read_sql(store, sql, schema=EXPERIMENT_SCHEMA)


# -- metrics ---------------------------------------------------------------------------------


def _group_keys(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    keys = [by] if isinstance(by, str) else list(by)
    for k in keys:
        if k not in GROUP_COLUMNS:
            raise ConfigError(f"cannot group metrics by {k!r}; choose from: {', '.join(GROUP_COLUMNS)}")
    return list(dict.fromkeys(keys))


def _check_filters(filters: Mapping[str, Any]) -> None:
    for name in filters:
        if name not in _FILTERS:
            raise ConfigError(f"unknown metrics filter {name!r}; filters are: {', '.join(_FILTERS)}")
    if filters.get("kind") not in (None, "llm"):
        raise ConfigError("metrics are computed over model calls (kind='llm'); drop the kind filter")


def _filter_frame(df: pl.DataFrame, filters: Mapping[str, Any]) -> pl.DataFrame:
    """The same filters as `traces_df`, applied to a frame already loaded."""
    preds = []
    for name, value in filters.items():
        if value is None or name == "kind":
            continue
        if name in ("since", "until"):
            if "started_at" not in df.columns:
                raise ConfigError(f"{name}= needs a started_at column in the frame")
            text = _utc_text(value, name)
            col = pl.col("started_at")
            bound: Any = text
            dtype = df.schema["started_at"]
            if isinstance(dtype, pl.Datetime):
                bound = datetime.fromisoformat(text)  # type: ignore[arg-type]
                if dtype.time_zone is None:  # a naive column holds UTC times
                    bound = bound.replace(tzinfo=None)
            elif dtype != pl.String:
                raise ConfigError(f"{name}= needs started_at as text or Datetime, not {dtype}")
            preds.append(col >= bound if name == "since" else col < bound)
        else:
            if name not in df.columns:
                raise ConfigError(f"filter {name}= needs a {name!r} column in the frame")
            preds.append(pl.col(name) == value)
    return df.filter(preds) if preds else df


_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
_QUANTILES = (("latency_ms", "latency", (0.50, 0.95, 0.99)), ("ttft_ms", "ttft", (0.50, 0.95)))
_LOOP_GROUPS = 4096
"""Up to this many groups, each group's values are sorted on their own (numpy's
SIMD sort); beyond it one lexsort orders them all."""


_SPARSE_CODES = 1 << 16
"""Codes may leave gaps up to this many (empty groups cost nothing and drop out);
beyond it they are compacted."""


def _densify(arr: np.ndarray, *, compact: bool = False) -> tuple[np.ndarray, int]:
    """Integer keys to codes 0..k-1 in value order; returns the codes and k.

    Without ``compact`` a small range is only shifted to start at 0, so some
    codes may have no rows.
    """
    n = arr.size
    if n == 0:
        return arr.astype(np.int64), 0
    lo, hi = int(arr.min()), int(arr.max())
    span = hi - lo + 1
    if span <= _SPARSE_CODES and not compact:
        return (arr - lo).astype(np.int64, copy=False), span
    if span <= max(4 * n, _SPARSE_CODES):
        shifted = arr - lo
        present = np.bincount(shifted, minlength=span) > 0
        lut = np.cumsum(present) - 1
        return lut[shifted], int(lut[-1]) + 1
    if bool(np.all(arr[1:] >= arr[:-1])):
        # Time buckets of rows in time order (as traces_df returns them): run-length codes.
        codes = np.empty(n, np.int64)
        codes[0] = 0
        np.cumsum(arr[1:] != arr[:-1], out=codes[1:])
        return codes, int(codes[-1]) + 1
    # Otherwise buckets are far apart in microseconds but share a step (the
    # duration, or a day for calendar months): divided by it they are dense.
    step = int(np.gcd.reduce(arr - lo))
    if step > 1 and (hi - lo) // step < max(4 * n, _SPARSE_CODES):
        return _densify((arr - lo) // step, compact=True)
    uniq, inverse = np.unique(arr, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), len(uniq)


def _key_codes(s: pl.Series) -> tuple[np.ndarray, int]:
    """Codes for one key column; null is a value of its own."""
    if s.dtype == pl.String:
        s = s.cast(pl.Categorical)
    elif not (s.dtype.is_integer() or s.dtype.is_temporal() or isinstance(s.dtype, (pl.Categorical, pl.Enum))):
        s = s.cast(pl.String).cast(pl.Categorical)
    phys = s.to_physical()
    if phys.null_count():
        phys = phys.cast(pl.Int64)
        lo = phys.min()
        phys = phys.fill_null((lo - 1) if lo is not None else 0)  # type: ignore[operator]
    return _densify(phys.to_numpy())


def _combine_codes(parts: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray | None, int]:
    """One code per row for a combination of keys, from each key's codes (None for no keys)."""
    codes: np.ndarray | None = None
    n_groups = 1
    for ck, k in parts:
        codes = ck if codes is None else codes * k + ck
        n_groups *= k
        if n_groups > 2**31:  # keep the next product inside int64
            codes, n_groups = _densify(codes, compact=True)
    if codes is not None and n_groups > _SPARSE_CODES:
        codes, n_groups = _densify(codes, compact=True)
    return codes, n_groups


def _grouped_quantiles(
    values: np.ndarray, rows: np.ndarray, offsets: np.ndarray, qs: Sequence[float]
) -> list[np.ndarray]:
    """Exact linear-interpolated quantiles of ``values[rows]`` per group segment.

    ``rows`` lists row numbers grouped by segment (``offsets`` bound them);
    NaN (null) values are left out. Returns one array per quantile, NaN for a
    segment with no value.
    """
    v = values[rows].astype(np.float64, copy=False)
    n_groups = len(offsets) - 1
    sizes = np.diff(offsets)
    to_sort = np.flatnonzero(sizes > 1)
    if n_groups == 1:
        v.sort()  # NaN sorts last
    elif len(to_sort) <= _LOOP_GROUPS:
        for g in to_sort.tolist():
            v[offsets[g] : offsets[g + 1]].sort()
    else:
        seg = np.repeat(np.arange(n_groups), sizes)
        v = v[np.lexsort((v, seg))]
    starts = offsets[:-1]
    missing = np.isnan(v)
    if missing.any():  # NaN sorted last in each segment: count what precedes it
        valid = np.zeros(len(v) + 1, np.int64)
        np.cumsum(~missing, out=valid[1:])
        n = valid[offsets[1:]] - valid[starts]
    else:
        n = sizes
    if len(v) == 0:
        return [np.full(n_groups, np.nan) for _ in qs]
    last = np.maximum(n - 1, 0)
    out = []
    for q in qs:
        # Closest ranks around q * (n - 1); for n = 1 both are the one value.
        pos = q * last
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, last)
        # Empty segments would index a neighbour: clip, then mask them out.
        a = v[np.minimum(starts + lo, len(v) - 1)]
        b = v[np.minimum(starts + hi, len(v) - 1)]
        out.append(np.where(n > 0, a + (b - a) * (pos - lo), np.nan))
    return out


def _sum_exprs() -> list[pl.Expr]:
    cost = pl.col("cost_usd")
    return [
        pl.len().cast(pl.Int64).alias("requests"),
        pl.col("_err").sum().cast(pl.Int64).alias("errors"),
        *(pl.col(c).sum().cast(pl.Int64) for c in _TOKENS),
        cost.sum().alias("cost_usd"),
        cost.count().cast(pl.Int64).alias("_priced"),
        pl.col("_unpriced").sum().cast(pl.Int64).alias("unpriced"),
        pl.col("_lat").mean().alias("latency_mean"),
    ]


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """Two threads that overlap Polars work (it releases the GIL) with numpy work.

    One pool per process: a forked child inherits the pool object but not its
    threads, and would wait forever on it.
    """
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        pool = _pools[pid] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="workbench-frames")
    return pool


def _uint(n: int) -> Any:
    return np.uint8 if n < 2**8 else np.uint16 if n < 2**16 else np.uint32 if n < 2**32 else np.uint64


def _compute(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The metrics of `metrics`, one row per group of ``keys`` (unsorted).

    Rows get an integer group code first. Polars then sums over the codes
    (much cheaper than grouping by strings once per aggregate), and numpy
    sorts each group's ok latencies once for exact percentiles: its SIMD sort
    beats Polars' grouped quantile several times over.
    """
    # Coding the keys (a hash per row, on worker threads) overlaps the status comparisons.
    key_codes = [_pool().submit(_key_codes, df[k]) for k in keys]
    status = df["status"]
    ok = (status == "ok").fill_null(False)
    err = (status == "error").fill_null(False)
    llm = (df["kind"] == "llm").fill_null(False) if "kind" in df.columns else None
    if llm is not None:
        ok, err = ok & llm, err & llm

    codes, n_groups = _combine_codes([f.result() for f in key_codes])
    cost = df["cost_usd"].cast(pl.Float64)
    columns = [
        err.alias("_err"),
        (ok & cost.is_null()).alias("_unpriced"),
        *(df[c] for c in _TOKENS),
        cost,
        df["latency_ms"].cast(pl.Float64).zip_with(ok, pl.Series([None], dtype=pl.Float64)).alias("_lat"),
    ]
    if codes is None:
        lf = pl.DataFrame(columns).lazy()
        if llm is not None:
            lf = lf.filter(llm)
        sums_plan = lf.select(_sum_exprs()).with_columns(pl.lit(0, dtype=pl.Int64).alias("_g"))
    else:
        # Spans and other non-call rows go to a spare group, dropped below.
        gid = codes if llm is None else np.where(llm.to_numpy(), codes, n_groups)
        sums_plan = (
            pl.DataFrame([pl.Series("_g", gid.astype(_uint(n_groups + 1))), *columns, *(df[k] for k in keys)])
            .lazy()
            .group_by("_g")
            .agg(*_sum_exprs(), *(pl.col(k).first() for k in keys))  # a group's rows share its keys
            .with_columns(pl.col("_g").cast(pl.Int64))
        )
    # Polars sums (GIL released) while numpy sorts latencies below.
    sums_future = _pool().submit(sums_plan.collect)

    if codes is None:
        # One group: select the ok values (zero-copy when they have no nulls) and
        # find the needed order statistics by successive partitions, not a sort.
        quant: dict[str, Any] = {"_g": np.arange(1)}

        def column_quantiles(col: str, qs: Sequence[float]) -> list[float]:
            return _exact_quantiles(df[col].filter(ok).drop_nulls().cast(pl.Float64).to_numpy(), qs)

        # The second column on a worker thread: numpy and Polars release the GIL.
        (col0, name0, qs0), (col1, name1, qs1) = _QUANTILES
        second = _pool().submit(column_quantiles, col1, qs1)
        for name, qs, xs in ((name0, qs0, column_quantiles(col0, qs0)), (name1, qs1, second.result())):
            for q, x in zip(qs, xs):
                quant[f"{name}_p{round(q * 100)}"] = np.array([x])
        return _finish(pl.DataFrame(quant), sums_future.result(), keys)

    # Ok calls' row numbers, grouped by code, for the percentiles.
    rows = np.flatnonzero(ok.to_numpy())
    if codes is None:
        counts = np.array([len(rows)])
    else:
        rc = codes[rows]
        counts = np.bincount(rc, minlength=n_groups)
        if len(rc) > 1 and not bool(np.all(rc[1:] >= rc[:-1])):
            rows = rows[np.argsort(rc.astype(_uint(n_groups)), kind="stable")]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    quant: dict[str, Any] = {"_g": np.arange(n_groups)}
    for col, name, qs in _QUANTILES:
        values = df[col].cast(pl.Float64).to_numpy()
        for q, arr in zip(qs, _grouped_quantiles(values, rows, offsets, qs)):
            quant[f"{name}_p{round(q * 100)}"] = arr

    return _finish(pl.DataFrame(quant), sums_future.result(), keys)


def _exact_quantiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Linear-interpolated quantiles (numpy's default) of values without NaN.

    Each needed order statistic comes from a partition of what lies above the
    previous one: about half the cost of sorting a million values.
    """
    n = len(values)
    if n == 0:
        return [float("nan")] * len(qs)
    positions = [q * (n - 1) for q in qs]
    needed = sorted({math.floor(p) for p in positions} | {min(math.floor(p) + 1, n - 1) for p in positions})
    found: dict[int, float] = {}
    # One copy (the input may be a read-only view of Polars memory), then partition
    # in place: each slice after the first is a view of what lies above.
    rest, start = np.array(values, dtype=np.float64, copy=True), 0
    for k in needed:
        rest.partition(k - start)
        found[k] = float(rest[k - start])
        rest, start = rest[k - start + 1 :], k + 1
    out = []
    for p in positions:
        lo = math.floor(p)
        hi = min(lo + 1, n - 1)
        out.append(found[lo] + (found[hi] - found[lo]) * (p - lo))
    return out


def _finish(quant: pl.DataFrame, sums: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    out = quant.fill_nan(None)
    # Inner join: groups seen only on non-call rows (and the spare group) drop out.
    return _derive(out.join(sums, on="_g", how="left" if not keys else "inner"), keys)


def _derive(out: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Rates and nulls from the sums, in `METRIC_COLUMNS` order."""
    zero = ("requests", "errors", "unpriced", *_TOKENS)
    return out.with_columns(pl.col(zero).fill_null(0)).with_columns(
        pl.when(pl.col("requests") > 0).then(pl.col("errors") / pl.col("requests")).alias("error_rate"),
        # Null, not 0, when nothing in the group was priced: unknown is not free.
        pl.when(pl.col("_priced") > 0).then(pl.col("cost_usd")).alias("cost_usd"),
    ).select(*keys, *METRIC_COLUMNS)


def _metrics_lazy(lf: pl.LazyFrame, keys: list[str], every: str | None) -> pl.DataFrame:
    """`metrics` over a scan (a Parquet folder) in two streaming passes: bounded memory.

    The first pass sums every column as it streams by. The second keeps only
    the ok calls' keys, latencies and ttfts (16 bytes a call plus keys) for
    exact percentiles, which numpy finds by partitioning: about three times
    faster, and half the memory, of one Polars query with grouped quantiles.
    """
    if every is not None:
        lf = lf.with_columns(pl.col("started_at").dt.truncate(every).alias("bucket"))
        keys = ["bucket", *keys]
    ok = pl.col("status") == "ok"
    cost = pl.col("cost_usd")
    sums = [
        pl.len().cast(pl.Int64).alias("requests"),
        (pl.col("status") == "error").sum().cast(pl.Int64).alias("errors"),
        *(pl.col(c).sum().cast(pl.Int64) for c in _TOKENS),
        cost.sum().alias("cost_usd"),
        cost.count().cast(pl.Int64).alias("_priced"),
        (ok & cost.is_null()).sum().cast(pl.Int64).alias("unpriced"),
        pl.col("latency_ms").filter(ok).mean().alias("latency_mean"),
    ]
    cols = [col for col, _, _ in _QUANTILES]
    try:
        totals = _collect_parquet(lf.group_by(keys).agg(sums) if keys else lf.select(sums))
        values = _collect_parquet(lf.filter(ok).select(*keys, *cols))
    except (pl.exceptions.PolarsError, ValueError) as exc:
        if every is not None and ("truncate" in str(exc).lower() or "duration" in str(exc).lower()):
            raise ConfigError(f"every={every!r} is not a Polars duration such as '5m', '1h', '1d': {exc}") from None
        raise
    quant = _quantiles_by(values, keys)
    if not keys:
        return _derive(pl.concat([totals, quant], how="horizontal").fill_nan(None), keys)
    joined = totals.join(quant, on=keys, how="left", nulls_equal=True)
    return _derive(joined.fill_nan(None), keys)


_SUM_SQL = (
    "COUNT(*) AS requests, "
    "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors, "
    + ", ".join(f"SUM({c}) AS {c}" for c in _TOKENS) + ", "
    "SUM(cost_usd) AS cost_usd, COUNT(cost_usd) AS _priced, "
    "SUM(CASE WHEN status = 'ok' AND cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced, "
    "SUM(CASE WHEN status = 'ok' THEN latency_ms END) AS _lat_sum, "
    "COUNT(CASE WHEN status = 'ok' THEN latency_ms END) AS _lat_n"
)
_SUM_SCHEMA = {"requests": pl.Int64, "errors": pl.Int64, **{c: pl.Int64 for c in _TOKENS}, "cost_usd": pl.Float64,
               "_priced": pl.Int64, "unpriced": pl.Int64, "_lat_sum": pl.Float64, "_lat_n": pl.Int64}


def _metrics_split(store: Store, keys: list[str], filters: Mapping[str, Any]) -> pl.DataFrame:
    """`metrics` of a store without time buckets: SQLite sums, the Arrow reader brings only latencies.

    The counts and sums are one aggregate query that the database runs itself
    (no value leaves it), on a worker thread; at the same time the reader fetches
    the ok calls' group keys, latencies and ttfts, all exact percentiles need.
    Both are kept per process and caught up by rowid (sums add up), so a repeated
    call reads only the traces written since.
    """
    times = {name: _utc_text(filters.get(name), name) for name in ("since", "until")}
    where, params = traces.TraceQuery(**{**filters, **times, "kind": "llm"}).where()
    state = _table_state(store)
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    sum_sql = f"SELECT {''.join(k + ', ' for k in keys)}{_SUM_SQL} FROM traces{where}"
    joiner = " AND " if where else " WHERE "
    schema = {**{k: TRACE_SCHEMA[k] for k in keys}, **_SUM_SCHEMA}

    def sums_between(lo: int, hi: int) -> pl.DataFrame:
        rows = store.query(f"{sum_sql}{joiner}rowid > ? AND rowid <= ?{group}", [*params, lo, hi])
        frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
        return frame.filter(pl.col("requests") > 0)  # no keys and no rows: SQLite's one empty row

    def add(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
        both = pl.concat([old, new], how="vertical_relaxed")
        if not keys:
            return both.select(pl.all().sum())
        return both.group_by(keys).agg(pl.all().sum())  # null keys group together, as in SQL

    sums = _pool().submit(_appending, store, (state[0], sum_sql, tuple(params)), state, sums_between, add)
    value_cols = [*keys, *(col for col, _, _ in _QUANTILES)]
    ok_where = f"{where}{joiner}status = 'ok'"
    values = _read_appending(store, f"SELECT {', '.join(value_cols)} FROM traces{ok_where}", ok_where, params,
                             {c: TRACE_SCHEMA[c] for c in value_cols}, state)
    quant = _quantiles_by(values, keys)
    totals = sums.result()
    if not keys and totals.height == 0:
        totals = pl.DataFrame({c: [0] if t == pl.Int64 else [None] for c, t in _SUM_SCHEMA.items()}, schema=_SUM_SCHEMA)
    totals = totals.with_columns(
        pl.when(pl.col("_lat_n") > 0).then(pl.col("_lat_sum") / pl.col("_lat_n")).alias("latency_mean")
    )
    if keys:
        out = totals.join(quant, on=keys, how="left", nulls_equal=True)
    else:
        out = pl.concat([totals, quant], how="horizontal")
    return _derive(out.fill_nan(None), keys)


def _quantiles_by(values: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Exact latency and ttft percentiles of ok calls, one row per group of ``keys`` present in ``values``."""
    if not keys:
        quant: dict[str, Any] = {}
        for col, name, qs in _QUANTILES:
            xs = _exact_quantiles(values[col].drop_nulls().cast(pl.Float64).to_numpy(), qs)
            quant.update({f"{name}_p{round(q * 100)}": [x] for q, x in zip(qs, xs)})
        return pl.DataFrame(quant, schema={k: pl.Float64 for k in quant})
    # Per group: the rows as one code, then numpy's sort per segment (as `_compute` does).
    codes, n_groups = _combine_codes([_key_codes(values[k]) for k in keys])
    assert codes is not None
    order = np.argsort(codes, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=n_groups))])
    present = np.diff(offsets) > 0
    quant = {k: values[k].gather(order[offsets[:-1][present]]) for k in keys}
    for col, name, qs in _QUANTILES:
        arr = values[col].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        for q, got in zip(qs, _grouped_quantiles(arr, order, offsets, qs)):
            quant[f"{name}_p{round(q * 100)}"] = got[present]
    return pl.DataFrame(quant)


def metrics(
    df_or_store: pl.DataFrame | Store,
    by: str | Sequence[str] | None = None,
    every: str | None = None,
    **filters: Any,
) -> pl.DataFrame:
    """Traffic, errors, tokens, cost and latency of model calls (``kind == 'llm'``).

    Args:
        df_or_store: a traces frame (from `traces_df`), a store, or a Parquet
            folder (``wb.scan(path)``); from a store only the needed columns of
            the llm rows are read; a folder is summarised by one streaming query.
        by: a column name or list of them among `GROUP_COLUMNS`.
        every: a Polars duration ("5m", "1h", "1d"): adds a ``bucket`` column,
            ``started_at`` truncated to it.
        filters: the filters of `traces_df` (since, until, model, variant, ...).

    Returns one row per group (``bucket`` first, then ``by``), sorted by the
    keys, with `METRIC_COLUMNS`: ``requests`` counts every call, ``errors``
    those with status 'error'; token columns and ``cost_usd`` are sums
    (``cost_usd`` null when no call was priced, ``unpriced`` counts ok calls
    with no known price); latency (ms) mean and exact p50/p95/p99 and ttft
    p50/p95 are over ok calls only (linear interpolation, as numpy's default).
    Without ``by`` or ``every`` the result is one row, even for no calls.
    """
    keys = _group_keys(by)
    _check_filters(filters)
    if every is not None and not isinstance(every, str):
        raise ConfigError(f"every must be a Polars duration string such as '5m' or '1h', not {every!r}")

    if _is_parquet(df_or_store):
        needed = [*keys, *(c for c in METRIC_INPUTS if c not in keys)]
        if every is not None:
            needed.append("started_at")
        lf = df_or_store.traces(columns=needed, **{**filters, "kind": "llm"})  # type: ignore[union-attr]
        out = _metrics_lazy(lf, keys, every)
        out = out.with_columns(pl.col(k).cast(TRACE_SCHEMA[k]) for k in keys)  # as a store's keys come
        keys = ["bucket", *keys] if every is not None else keys
        return out.sort(keys, nulls_last=True) if keys else out
    if isinstance(df_or_store, pl.DataFrame):
        df = df_or_store
        # Only the columns used (selecting is free; filtering wide frames is not).
        used = [*keys, *METRIC_INPUTS, "kind", *(f for f, v in filters.items() if v is not None)]
        if every is not None or filters.get("since") is not None or filters.get("until") is not None:
            used.append("started_at")
        df = _filter_frame(df.select(c for c in dict.fromkeys(used) if c in df.columns), filters)
    elif hasattr(df_or_store, "conn") and hasattr(df_or_store, "path") and every is None \
            and df_or_store.path not in ("", ":memory:"):  # type: ignore[union-attr]
        out = _metrics_split(df_or_store, keys, filters)  # type: ignore[arg-type]
        out = out.with_columns(pl.col(k).cast(TRACE_SCHEMA[k]) for k in keys)
        return out.sort(keys, nulls_last=True) if keys else out
    elif hasattr(df_or_store, "conn") and hasattr(df_or_store, "path"):
        needed = [*keys, *(c for c in METRIC_INPUTS if c not in keys)]
        if every is not None:
            needed.append("started_at")
        df = _read_traces(
            df_or_store,  # type: ignore[arg-type]
            needed,
            {**filters, "kind": "llm"},
            ordered=False,
            parse_times=every is not None,
        )
    else:
        raise ConfigError(
            f"metrics() takes a traces frame or a Store, not {type(df_or_store).__name__}; "
            "convert other frames with pl.DataFrame(...)"
        )

    opaque = [k for k in keys if k in df.columns and df.schema[k] == pl.Object]
    if opaque:
        raise ConfigError(
            f"group column(s) {', '.join(opaque)} hold Python objects (dtype Object); "
            "build the frame from lists, or with schema_overrides={name: pl.String}"
        )
    missing = [c for c in (*keys, *METRIC_INPUTS) if c not in df.columns]
    if every is not None and "started_at" not in df.columns:
        missing.append("started_at")
    if missing:
        raise ConfigError(
            f"the frame lacks column(s) {', '.join(missing)} that metrics() needs; "
            "load it with traces_df(store) without columns=, or pass the store"
        )

    if every is not None:
        if df.schema["started_at"] == pl.String:
            df = _parse_started_at(df)
        try:
            bucket = df["started_at"].dt.truncate(every)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise ConfigError(f"every={every!r} is not a Polars duration such as '5m', '1h', '1d': {exc}") from None
        df = df.with_columns(bucket.alias("bucket"))
        keys = ["bucket", *keys]

    out = _compute(df, keys)
    return out.sort(keys, nulls_last=True) if keys else out


# -- reads other parts of the analysis layer ask for (the monitor, Parquet export) --------------

def traces_in_ranges(store: Store, ranges: Sequence[tuple[str, str]], columns: Sequence[str]) -> pl.DataFrame:
    """Model calls started in any of the ``[since, until)`` ranges (UTC ISO text), in one trip to the reader."""
    cols = _check_columns(list(columns))
    sql = f"SELECT {', '.join(cols)} FROM traces WHERE kind = 'llm' AND started_at >= ? AND started_at < ?"
    return _parse_started_at(read_sql_parts(store, [(sql, [lo, hi]) for lo, hi in ranges],
                                            schema={c: TRACE_SCHEMA[c] for c in cols}))


_SCORED_CALL_SCHEMA = {
    "trace_id": pl.String(), "scorer": pl.String(), "value": pl.Float64(), "started_at": pl.String(),
    "model": pl.String(), "prompt_name": pl.String(), "prompt_version": pl.Int64(), "user_id": pl.String(),
    "provider": pl.String(), "metadata_json": pl.String(),
}


def production_scores(store: Store, since: str, until: str, scorers: Sequence[str] | None = None) -> pl.DataFrame:
    """Scores stored outside experiments against calls started in ``[since, until)``, with the calls' columns."""
    sql = (
        "SELECT s.trace_id, s.scorer, s.value, t.started_at, t.model, t.prompt_name, t.prompt_version, t.user_id, "
        "t.provider, t.metadata_json FROM scores AS s JOIN traces AS t ON t.id = s.trace_id "
        "WHERE s.experiment_id IS NULL AND t.started_at >= ? AND t.started_at < ?"
    )
    params: list[Any] = [since, until]
    if scorers:
        sql += f" AND s.scorer IN ({', '.join('?' * len(scorers))})"
        params += sorted(scorers)
    return read_sql(store, sql, params, schema=_SCORED_CALL_SCHEMA)


def production_scored(store: Store, trace_ids: Sequence[str], scorers: Sequence[str]) -> set[tuple[str, str]]:
    """``(trace id, scorer)`` pairs already scored outside experiments, of these traces and scorers."""
    out: set[tuple[str, str]] = set()
    marks = ", ".join("?" * len(scorers))
    for start in range(0, len(trace_ids), 500):
        chunk = list(trace_ids[start:start + 500])
        if not chunk or not scorers:
            continue
        df = read_sql(
            store,
            f"SELECT trace_id, scorer FROM scores WHERE experiment_id IS NULL AND scorer IN ({marks}) "
            f"AND trace_id IN ({', '.join('?' * len(chunk))})",
            [*scorers, *chunk], schema={"trace_id": pl.String(), "scorer": pl.String()},
        )
        out.update(zip(df["trace_id"].to_list(), df["scorer"].to_list()))
    return out


def scores_between(store: Store, since: str, until: str) -> pl.DataFrame:
    """Scores created in ``[since, until)`` (UTC ISO text), in id order."""
    cols = ", ".join(SCORE_SCHEMA)
    return read_sql(store, f"SELECT {cols} FROM scores WHERE created_at >= ? AND created_at < ? ORDER BY id",
                    [since, until], schema=SCORE_SCHEMA)


def days_with_rows(store: Store, table: str, since: str | None = None, until: str | None = None) -> list[str]:
    """The UTC days (``YYYY-MM-DD``) on which ``table`` (traces, scores, experiments) has rows."""
    column = {"traces": "started_at", "scores": "created_at", "experiments": "created_at"}[table]
    where, params = [], []
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        where.append(f"{column} < ?")
        params.append(until)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    rows = store.query(f"SELECT DISTINCT substr({column}, 1, 10) AS day FROM {table}{clause} ORDER BY 1", params)
    return [r["day"] for r in rows]


# -- the gateway's savings and events (decisions are in metadata_json under "gateway") -----------

SAVINGS_SOURCES = ("prompt_cache", "exact_cache", "semantic_cache", "routing")
_SAVINGS_KEYS = {"day": "day", "prompt": "prompt_name", "model": "model", "user": "user_id", "provider": "provider"}
_GATEWAY_COLUMNS = ["started_at", "provider", "model", "prompt_name", "user_id", "status", "input_tokens", "output_tokens",
                    "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "cost_usd", "error_type", "metadata_json"]


def gateway_calls(store: Store, **filters: Any) -> pl.DataFrame:
    """Model calls with the gateway's decisions as columns (one row per call).

    Adds ``day``, ``cache`` (hit/miss/skipped), ``cache_kind``, ``cache_saved_usd``,
    ``routed_from``, ``route_by``, ``route_saved_usd``, ``fallback`` (the target that
    answered after others failed), ``breaker`` (transitions, comma-separated),
    ``refused`` (the refusal's error type) and ``guardrail`` (rules that fired).
    """
    _check_filters(filters)
    df = traces_df(store, kind="llm", columns=_GATEWAY_COLUMNS, **filters)
    meta = pl.col("metadata_json")
    return df.with_columns(
        pl.col("started_at").dt.date().alias("day"),
        meta.str.json_path_match("$.gateway.cache.result").alias("cache"),
        meta.str.json_path_match("$.gateway.cache.kind").alias("cache_kind"),
        meta.str.json_path_match("$.gateway.cache.saved_usd").cast(pl.Float64, strict=False).alias("cache_saved_usd"),
        meta.str.json_path_match("$.gateway.route.requested").alias("routed_from"),
        meta.str.json_path_match("$.gateway.route.by").alias("route_by"),
        meta.str.json_path_match("$.gateway.route.saved_usd").cast(pl.Float64, strict=False).alias("route_saved_usd"),
        meta.str.json_path_match("$.gateway.fallback.used").alias("fallback"),
        meta.str.extract_all(r'"breaker_transition": "(\w+)"').list.eval(
            pl.element().str.extract(r'"(\w+)"$')).list.join(",").replace("", None).alias("breaker"),
        meta.str.json_path_match("$.gateway.refused.error_type").alias("refused"),
        meta.str.extract_all(r'"rule": "([^"]+)"').list.eval(
            pl.element().str.extract(r'"([^"]+)"$')).list.join(",").replace("", None).alias("guardrail"),
        meta.str.contains('"gateway"').fill_null(False).alias("via_gateway"),
    ).drop("metadata_json")


def _prompt_cache_prices(calls: pl.DataFrame, pricer: Any) -> pl.DataFrame:
    """Per provider and model: what one token of each cache kind saved or cost against plain input.

    ``read_saved``: a cache read's price below plain input; ``write_5m_premium`` and
    ``write_1h_premium``: what a 5-minute or 1-hour cache write costs above plain
    input. Per-token prices are flat, so a call's saving is its own tokens times
    these (a long-context tier is priced at the flat rate, an approximation noted in
    ``savings``). Null where the model has no known price.
    """
    from .providers.base import Usage

    rows = []
    for provider, model in calls.select("provider", "model").unique().iter_rows():
        pid = "openai" if provider == "openai" else None
        unit = 10_000  # per-token prices from a count under any long-context tier (sonnet: 200k)

        def price(**tokens: int) -> float | None:
            return pricer.estimate(model, Usage(**tokens), pid) if model else None

        plain = price(input_tokens=unit)
        read = price(cache_read_tokens=unit)
        w5 = price(cache_write_tokens=unit)
        w1 = price(cache_write_tokens=unit, cache_write_1h_tokens=unit)
        known = None not in (plain, read, w5, w1)
        rows.append((provider, model, (plain - read) / unit if known else None,
                     (w5 - plain) / unit if known else None, (w1 - plain) / unit if known else None))
    schema = {"provider": pl.String, "model": pl.String, "read_saved": pl.Float64,
              "write_5m_premium": pl.Float64, "write_1h_premium": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def savings(store: Store, by: str | Sequence[str] = "day", **filters: Any) -> pl.DataFrame:
    """Dollars saved, per ``by`` group and source, with how often each source fired.

    Sources and how each is estimated:

    - ``prompt_cache``: each call's cache-read tokens priced as plain input minus
      their read price, less the premium its 5-minute and 1-hour cache writes paid
      over plain input (genai-prices, per model; negative while writes outweigh reads).
    - ``exact_cache`` / ``semantic_cache``: each hit saves what the stored call
      cost when it was made (the same model, so the call it replaced).
    - ``routing``: the tokens of each routed call priced at the model that was
      requested, minus what the routed call cost (assumes the requested model
      would have used as many tokens; negative when a route chose a dearer model).

    Args:
        by: ``day``, ``prompt``, ``model``, ``user``, ``provider`` or a list of them.
        filters: as ``traces_df`` (since, until, model, prompt_name, user_id, ...).

    Returns:
        Columns: the ``by`` keys, ``source``, ``requests`` (calls in the group),
        ``events`` (hits, routed calls, or calls reading the prompt cache),
        ``rate`` (events / requests) and ``saved_usd``.
    """
    from .pricing import Pricer

    keys = [by] if isinstance(by, str) else list(by)
    unknown = [k for k in keys if k not in _SAVINGS_KEYS]
    if unknown:
        raise ConfigError(f"savings(by=...) takes {', '.join(_SAVINGS_KEYS)}; got {', '.join(unknown)}")
    cols = [_SAVINGS_KEYS[k] for k in keys]
    calls = gateway_calls(store, **filters)
    prices = _prompt_cache_prices(calls, Pricer(store))
    write_1h = pl.col("cache_write_1h_tokens").fill_null(0)
    write_5m = pl.col("cache_write_tokens").fill_null(0) - write_1h
    calls = calls.join(prices, on=["provider", "model"], how="left").with_columns(
        # Each call's own reads save, its own 5-minute and 1-hour writes cost their premium.
        (pl.col("cache_read_tokens").fill_null(0) * pl.col("read_saved")
         - write_5m * pl.col("write_5m_premium") - write_1h * pl.col("write_1h_premium")).alias("prompt_cache_saved"),
    )
    agg = calls.group_by(cols).agg(
        pl.len().alias("requests"),
        (pl.col("cache_read_tokens").fill_null(0) > 0).sum().alias("prompt_cache_events"),
        pl.col("prompt_cache_saved").sum().alias("prompt_cache_saved"),
        ((pl.col("cache") == "hit") & (pl.col("cache_kind") == "exact")).sum().alias("exact_cache_events"),
        pl.col("cache_saved_usd").filter(pl.col("cache_kind") == "exact").sum().alias("exact_cache_saved"),
        ((pl.col("cache") == "hit") & (pl.col("cache_kind") == "semantic")).sum().alias("semantic_cache_events"),
        pl.col("cache_saved_usd").filter(pl.col("cache_kind") == "semantic").sum().alias("semantic_cache_saved"),
        # A routed call answered from a cache saved nothing by its route.
        (pl.col("routed_from").is_not_null() & (pl.col("cache").fill_null("") != "hit")).sum().alias("routing_events"),
        pl.col("route_saved_usd").sum().alias("routing_saved"),
    )
    parts = [
        agg.select(*cols, pl.lit(src).alias("source"), "requests",
                   pl.col(f"{src}_events").cast(pl.Int64).alias("events"),
                   pl.col(f"{src}_saved").fill_null(0.0).cast(pl.Float64).alias("saved_usd"))
        for src in SAVINGS_SOURCES
    ]
    out = pl.concat(parts).with_columns((pl.col("events") / pl.col("requests")).alias("rate"))
    return out.select(*cols, "source", "requests", "events", "rate", "saved_usd").sort([*cols, "source"])


def gateway_events(store: Store, every: str = "1d", **filters: Any) -> pl.DataFrame:
    """Per time bucket: calls, cache hits, fallbacks, breaker transitions, refusals and guardrail blocks."""
    calls = gateway_calls(store, **filters)
    return (
        calls.sort("started_at").group_by_dynamic("started_at", every=every).agg(
            pl.len().alias("calls"),
            (pl.col("cache") == "hit").sum().alias("cache_hits"),
            pl.col("fallback").is_not_null().sum().alias("fallbacks"),
            pl.col("breaker").str.count_matches("opened|reopened").fill_null(0).sum().alias("breaker_opened"),
            pl.col("breaker").str.count_matches("closed").fill_null(0).sum().alias("breaker_closed"),
            pl.col("refused").is_in(["UserRateLimited", "SpendLimitReached"]).sum().alias("limit_refusals"),
            (pl.col("status") == "guardrail_triggered").sum().alias("guardrail_blocks"),
            (pl.col("status") == "error").sum().alias("errors"),
        )
    )


def top_users(store: Store, n: int = 10, **filters: Any) -> pl.DataFrame:
    """Users by spend, with their calls, cache hits and refusals (rate limits, budgets, guardrails)."""
    calls = gateway_calls(store, **filters).filter(pl.col("user_id").is_not_null())
    return (
        calls.group_by("user_id").agg(
            pl.len().alias("calls"),
            pl.col("cost_usd").sum().alias("spend_usd"),
            (pl.col("cache") == "hit").sum().alias("cache_hits"),
            (pl.col("refused") == "UserRateLimited").sum().alias("rate_limited"),
            (pl.col("refused") == "SpendLimitReached").sum().alias("over_budget"),
            (pl.col("status") == "guardrail_triggered").sum().alias("guardrail_blocks"),
        )
        .with_columns((pl.col("rate_limited") + pl.col("over_budget") + pl.col("guardrail_blocks")).alias("refusals"))
        .sort(["spend_usd", "refusals"], descending=True, nulls_last=True)
        .head(n)
    )
