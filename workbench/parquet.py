"""Parquet out of the file, and lazy Polars scans of a Parquet folder.

``export_parquet(bench, "lake/")`` writes one file per table and UTC day::

    lake/traces/day=2026-01-31/part-0.parquet
    lake/scores/day=2026-01-31/part-0.parquet
    lake/experiments/day=2026-01-30/part-0.parquet

(Hive-style folders, which Polars, DuckDB, Spark and Arrow read as a ``day``
column.) Exporting again rewrites exactly the days it covers, so a nightly
``--since yesterday`` keeps a folder up to date without duplicates.

``wb.scan("lake/")`` gives a `ParquetSource` that the analysis functions take
in place of a store: ``frames.metrics(src, by="model")`` runs as one streaming
Polars query that reads only the columns it needs and skips days outside
``since``/``until``, so a folder far larger than memory can be summarised.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from .store import Store

TABLES = ("traces", "scores", "experiments")
PART = "part-0.parquet"
"""Each day is one file with a fixed name: exporting a day again replaces it."""


class ParquetSource:
    """A folder written by `export_parquet` (or laid out the same way), scanned lazily.

    Pass it wherever a store is taken for analysis: ``frames.traces_df(src)``,
    ``frames.metrics(src, ...)``, ``frames.scores_df(src)``, ``frames.experiments_df(src)``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"{self.path} is not a folder; write one with `workbench export parquet {self.path}`")

    def days(self, table: str = "traces") -> list[str]:
        """The UTC days present for ``table``, oldest first."""
        folder = self.path / table
        if not folder.is_dir():
            return []
        return sorted(p.name[4:] for p in folder.glob("day=*") if any(p.glob("*.parquet")))

    def scan(self, table: str) -> pl.LazyFrame:
        """One table as a LazyFrame with its declared dtypes (a ``day`` column included)."""
        import polars as pl

        from .frames import EXPERIMENT_SCHEMA, SCORE_SCHEMA, TRACE_SCHEMA

        if table not in TABLES:
            raise ConfigError(f"unknown table {table!r}; a Parquet folder has {', '.join(TABLES)}")
        schema = {"traces": TRACE_SCHEMA, "scores": SCORE_SCHEMA, "experiments": EXPERIMENT_SCHEMA}[table]
        files = sorted((self.path / table).glob("day=*/*.parquet"))
        if not files:
            empty = {c: pl.String() if isinstance(t, pl.Categorical) else t for c, t in schema.items()}
            if table == "traces":
                empty["started_at"] = pl.Datetime("us", "UTC")
            return pl.LazyFrame(schema={**empty, "day": pl.Date()})
        # Days exported by an older workbench lack columns added since: scan with the union of
        # every file's columns, the missing ones read as nulls.
        union: dict[str, Any] = {}
        for f in files:
            for name, dtype in pl.read_parquet_schema(f).items():
                union.setdefault(name, dtype)
        return pl.scan_parquet(files, schema=union, missing_columns="insert", hive_partitioning=True)

    def traces(self, *, columns: Any = None, **filters: Any) -> pl.LazyFrame:
        """Trace rows as a LazyFrame, filtered like `frames.traces_df` (since, until, model, ...).

        ``since``/``until`` also prune whole days, so only the files they touch are opened.
        """
        import polars as pl

        from .frames import _FILTERS, _check_columns, _utc_text

        cols = _check_columns(columns)
        preds = []
        for name, value in filters.items():
            if name not in _FILTERS:
                raise ConfigError(f"unknown trace filter {name!r}; filters are: {', '.join(_FILTERS)}")
            if value is None:
                continue
            if name in ("since", "until"):
                bound = datetime.fromisoformat(_utc_text(value, name))  # type: ignore[arg-type]
                day = bound.date()
                if name == "since":
                    preds += [pl.col("day") >= day, pl.col("started_at") >= bound]
                else:
                    preds += [pl.col("day") <= day, pl.col("started_at") < bound]
            else:
                preds.append(pl.col(name) == value)
        lf = self.scan("traces")
        if preds:
            lf = lf.filter(preds)
        return lf.select(cols)

    def __repr__(self) -> str:
        days = self.days()
        span = f"{days[0]} .. {days[-1]}" if days else "no days"
        return f"<ParquetSource {self.path} traces: {len(days)} days, {span}>"


def scan(path: str | os.PathLike[str]) -> ParquetSource:
    """Open a Parquet folder (from ``workbench export parquet``) for lazy analysis."""
    return ParquetSource(path)


def _day_bounds(day: str) -> tuple[str, str]:
    d = date.fromisoformat(day)
    nxt = d + timedelta(days=1)
    return f"{d.isoformat()}T00:00:00.000000+00:00", f"{nxt.isoformat()}T00:00:00.000000+00:00"


def _write(df: pl.DataFrame, folder: Path, day: str) -> None:
    import polars as pl

    target = folder / f"day={day}"
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".{PART}.tmp"
    # Other tools read Parquet dictionary strings fine; Polars' Categorical is ours alone.
    cats = [c for c, t in df.schema.items() if isinstance(t, pl.Categorical)]
    if cats:
        df = df.with_columns(pl.col(cats).cast(pl.String))
    df.write_parquet(tmp, compression="zstd", statistics=True)
    os.replace(tmp, target / PART)  # a reader never sees half a file


def export_parquet(
    source: Any,
    path: str | os.PathLike[str],
    *,
    since: str | datetime | date | None = None,
    until: str | datetime | date | None = None,
) -> dict[str, int]:
    """Write traces, scores and experiments as Parquet, one file per table and UTC day.

    Args:
        source: a `Workbench` or a `Store`.
        path: the folder (created if missing).
        since, until: only the days these touch are written (whole days: a day
            that is exported is always exported complete).

    Returns rows written per table.
    """
    from . import frames

    store: Store = getattr(source, "store", source)
    store.sync()
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    lo = None if since is None else frames._utc_text(since, "since")[:10]  # type: ignore[index]
    hi = None if until is None else frames._utc_text(until, "until")
    written = {}
    for table in TABLES:
        days = frames.days_with_rows(store, table, lo, hi)
        n = 0
        for day in days:
            start, end = _day_bounds(day)
            df = _read_day(store, table, start, end)
            if table == "traces":
                df = frames._parse_started_at(df)
            _write(df, root / table, day)
            n += df.height
        written[table] = n
    return written


def _read_day(store: Store, table: str, start: str, end: str) -> pl.DataFrame:
    from . import frames

    if table == "traces":
        return frames.traces_df(store, since=start, until=end, parse_times=False)
    if table == "scores":
        return frames.scores_between(store, start, end)
    import polars as pl

    # A handful of rows: filter the frame rather than teach experiments_df a time range.
    df = frames.experiments_df(store)
    return df.filter((pl.col("created_at") >= start) & (pl.col("created_at") < end))
