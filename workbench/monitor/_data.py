"""Production calls and scores as the frames the detectors read.

"Production" means model calls that are neither part of an experiment nor an
LLM judge's own call (tagged ``judge``). Scope columns are derived here:
``prompt`` (name@version), ``metadata.KEY`` (from the metadata JSON) and
``label`` (the prompt label that pointed at the call's version when it was
made, from the label history; a call under two labels counts in both).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import polars as pl

from .._canonical import loads
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..bench import Workbench

_BASE_COLUMNS = ("started_at", "status", "latency_ms", "cost_usd", "experiment_id", "tags_json")
_DIRECT_KEYS = {"model", "prompt_name", "user_id", "provider"}
def trace_columns(keys: Iterable[str]) -> list[str]:
    """Trace columns to read for these scope keys."""
    cols = list(_BASE_COLUMNS)
    for k in keys:
        if k in _DIRECT_KEYS:
            cols.append(k)
        elif k in ("prompt", "label"):
            cols += ["prompt_name", "prompt_version"]
        elif k.startswith("metadata."):
            cols.append("metadata_json")
    return list(dict.fromkeys(cols))


def _metadata_path(key: str) -> str:
    name = key[len("metadata."):]
    if "'" in name or "\\" in name:
        raise ConfigError(f"metadata scope key {name!r} may not contain quotes or backslashes")
    return f"$['{name}']"


def _times(df: pl.DataFrame) -> pl.DataFrame:
    """``_t``: the start time in microseconds since the epoch."""
    if "_t" in df.columns:
        return df
    col = df.schema["started_at"]
    if col == pl.String:
        from ..frames import _parse_started_at

        df = _parse_started_at(df)
    return df.with_columns(pl.col("started_at").dt.epoch("us").alias("_t"))


def with_scopes(df: pl.DataFrame, keys: Iterable[str], labels: pl.DataFrame | None = None) -> pl.DataFrame:
    """``df`` with a column for every scope key (and ``_t``)."""
    df = _times(df)
    exprs = []
    keys = list(dict.fromkeys(keys))
    for k in keys:
        if k in df.columns:
            continue
        if k == "prompt":
            exprs.append(
                pl.when(pl.col("prompt_name").is_not_null())
                .then(pl.concat_str([pl.col("prompt_name"), pl.lit("@"), pl.col("prompt_version").cast(pl.String).fill_null("?")]))
                .alias("prompt")
            )
        elif k.startswith("metadata."):
            exprs.append(pl.col("metadata_json").str.json_path_match(_metadata_path(k)).alias(k))
    if exprs:
        df = df.with_columns(exprs)
    if "label" in keys and "label" not in df.columns:
        df = _with_labels(df, labels)
    return df


def _with_labels(df: pl.DataFrame, labels: pl.DataFrame | None) -> pl.DataFrame:
    """One row per (call, label that pointed at its version then); calls under no label keep a null label."""
    if labels is None or labels.height == 0 or df.height == 0:
        return df.with_columns(pl.lit(None, dtype=pl.String).alias("label"))
    df = df.with_row_index("_row").sort("_t")
    hist = labels.sort("_set")
    parts = []
    for label in hist["label"].unique().sort().to_list():
        h = hist.filter(pl.col("label") == label).select("prompt_name", "_set", "versions")
        joined = df.join_asof(h, left_on="_t", right_on="_set", by="prompt_name", strategy="backward", check_sortedness=False)
        hit = joined.filter(pl.col("versions").list.contains(pl.col("prompt_version").cast(pl.Int64)).fill_null(False))
        parts.append(hit.drop("_set", "versions").with_columns(pl.lit(label).alias("label")))
    labelled = pl.concat(parts) if parts else df.clear().with_columns(pl.lit(None, dtype=pl.String).alias("label"))
    rest = df.join(labelled.select("_row"), on="_row", how="anti").with_columns(pl.lit(None, dtype=pl.String).alias("label"))
    return pl.concat([labelled, rest], how="diagonal_relaxed").sort("_t").drop("_row")


def production(df: pl.DataFrame) -> pl.DataFrame:
    """Only production calls: model calls outside experiments that are not a judge's."""
    conds = []
    if "kind" in df.columns:
        conds.append(pl.col("kind").cast(pl.String) == "llm")
    if "experiment_id" in df.columns:
        conds.append(pl.col("experiment_id").is_null())
    if "tags_json" in df.columns:
        conds.append(~pl.col("tags_json").str.contains('"judge"', literal=True).fill_null(False))
    return df.filter(*conds) if conds else df


def mark_binary(scores: pl.DataFrame) -> pl.DataFrame:
    """``_binary``: whether every score of that scorer is 0 or 1 (pass/fail scorers get the exact test)."""
    if scores.height == 0:
        return scores.with_columns(pl.lit(False).alias("_binary"))
    is01 = pl.col("value").is_in([0.0, 1.0]) | pl.col("value").is_null()
    return scores.with_columns(is01.all().over("scorer").alias("_binary"))


# -- from the store -----------------------------------------------------------------------------


def _utc(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, timezone.utc)


def _iso(us: int) -> str:
    """A time as ``started_at`` is stored (so text comparison in SQL is time order)."""
    return _utc(us).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching [start, end) ranges merged, in order."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def label_history(bench: Workbench, names: Sequence[str]) -> pl.DataFrame:
    """Label moves of these prompts: prompt_name, label, ``_set`` (µs), versions the label then served."""
    rows = []
    for name in names:
        for h in bench.prompts.label_history(name):
            if h["split_json"]:
                versions = sorted(int(v) for v in loads(h["split_json"]))
            else:
                versions = [] if h["version"] is None else [int(h["version"])]
            rows.append({"prompt_name": name, "label": h["label"], "_set": h["set_at"], "versions": versions})
    schema = {"prompt_name": pl.String, "label": pl.String, "_set": pl.String, "versions": pl.List(pl.Int64)}
    df = pl.DataFrame(rows, schema=schema)
    parsed = df["_set"].str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    return df.with_columns(parsed.dt.epoch("us").alias("_set"))


def read_calls(bench: Workbench, ranges: Sequence[tuple[int, int]], keys: Iterable[str]) -> pl.DataFrame:
    """Production calls started in any of the [start, end) µs ranges, with scope columns."""
    from .. import frames

    keys = list(keys)
    cols = trace_columns(keys)
    ranges = merge_ranges(ranges)
    if len(ranges) > 1 and bench.store.path not in ("", ":memory:"):
        # Several stretches (a seasonal baseline reads the same minutes on 7 days): one trip to the reader.
        df = frames.traces_in_ranges(bench.store, [(_iso(lo), _iso(hi)) for lo, hi in ranges], cols)
    else:
        parts = [frames.traces_df(bench.store, since=_utc(lo), until=_utc(hi), kind="llm", columns=cols) for lo, hi in ranges]
        df = pl.concat(parts, how="vertical_relaxed") if parts else frames.traces_df(bench.store, kind="llm", columns=cols).clear()
    df = production(df)
    labels = None
    if "label" in keys:
        labels = label_history(bench, df["prompt_name"].drop_nulls().unique().to_list())
    return with_scopes(df, keys, labels)


def read_scores(bench: Workbench, lo: int, hi: int, keys: Iterable[str], scorers: set[str] | None) -> pl.DataFrame:
    """Scores stored against production calls started in [lo, hi) µs, with the calls' scope columns."""
    from .. import frames

    keys = list(keys)
    df = frames.production_scores(bench.store, _iso(lo), _iso(hi), sorted(scorers) if scorers else None)
    labels = None
    if "label" in keys:
        labels = label_history(bench, df["prompt_name"].drop_nulls().unique().to_list())
    return mark_binary(with_scopes(df, keys, labels))
