"""Traces to per-scope, per-minute sums: what every detector reads.

A check at time ``now`` looks at windows that end at ``now`` (the last 10
minutes, the 6 hours before them, the same 15 minutes on earlier days). The
rows are put in one-minute bins counted back from the last check time, so a
window is a difference of two cumulative sums and one pass over the rows
serves any number of check times: a replay of a week at one check a minute
costs about as much as one check per scope.

Everything here is vectorised (Polars to prepare the rows, numpy bincounts
and cumulative sums); nothing loops over rows in Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

MINUTE_US = 60_000_000
"""One bin, in microseconds (``started_at`` is read as microseconds since the epoch)."""
DAY_MINUTES = 1440
NONE_LABEL = "(none)"
"""How a missing scope value (a call with no prompt, no user) is shown."""


@dataclass(frozen=True)
class Timeline:
    """The check times and the minute bins their windows read."""

    times_us: np.ndarray
    """Check times, microseconds since the epoch, ascending, whole minutes apart."""
    origin_us: int
    """Start of bin 0."""
    n_bins: int
    """Bins from the origin to the last check time."""
    ends: np.ndarray
    """For each check time, the index of the bin it closes (windows end there, exclusive)."""

    @classmethod
    def build(cls, times_us: Sequence[int] | np.ndarray, lookback_minutes: int) -> Timeline:
        times = np.asarray(times_us, dtype=np.int64)
        if times.ndim != 1 or len(times) == 0:
            raise ValueError("a timeline needs at least one check time")
        steps = np.diff(times)
        if (steps <= 0).any() or (steps % MINUTE_US).any():
            raise ValueError("check times must increase by whole minutes")
        origin = int(times[0]) - lookback_minutes * MINUTE_US
        ends = (times - origin) // MINUTE_US
        return cls(times, origin, int(ends[-1]), ends)

    @property
    def end_us(self) -> int:
        return int(self.times_us[-1])


def log_edges(low: float, high: float, ratio: float) -> np.ndarray:
    """Geometric bin edges from ``low`` to at least ``high``, each ``ratio`` times the last."""
    n = int(np.ceil(np.log(high / low) / np.log(ratio)))
    return low * ratio ** np.arange(n + 1)


def log_bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each (positive) value; values outside the edges go to the first or last bin."""
    ratio = edges[1] / edges[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        idx = np.floor(np.log(values / edges[0]) / np.log(ratio))
    idx = np.nan_to_num(idx, nan=0.0, neginf=0.0, posinf=len(edges) - 2)
    return np.clip(idx, 0, len(edges) - 2).astype(np.int64)


def hist_quantile(hist: np.ndarray, q: float, edges: np.ndarray) -> np.ndarray:
    """The q-quantile of each row of a histogram, interpolated geometrically inside its bin (NaN for empty rows)."""
    n = hist.sum(axis=1)
    cum = np.cumsum(hist, axis=1)
    target = q * n
    h = np.minimum((cum < target[:, None]).sum(axis=1), hist.shape[1] - 1)
    rows = np.arange(hist.shape[0])
    in_bin = hist[rows, h]
    before = cum[rows, h] - in_bin
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip(np.where(in_bin > 0, (target - before) / in_bin, 0.5), 0.0, 1.0)
    ratio = edges[1] / edges[0]
    value = edges[h] * ratio**frac
    return np.where(n > 0, value, np.nan)


class Grid:
    """Per-minute sums of one rule's rows, for each scope (a combination of key values).

    Args:
        rows: a frame with ``_t`` (microseconds since the epoch) and the key columns.
        keys: the columns that make a scope; empty for all traffic as one scope.
        timeline: the check times and their bins.
    """

    def __init__(self, rows: pl.DataFrame, keys: Sequence[str], timeline: Timeline) -> None:
        self.keys = tuple(keys)
        self.timeline = timeline
        tl = timeline
        rows = rows.filter((pl.col("_t") >= tl.origin_us) & (pl.col("_t") < tl.end_us))
        if self.keys and rows.height:
            # One text key per row, then dense codes in key order (nulls get a label of their own).
            joined = pl.concat_str(
                [pl.col(k).cast(pl.String).fill_null(NONE_LABEL) for k in self.keys], separator="\x1f"
            )
            rows = rows.with_columns((joined.rank("dense").cast(pl.Int64) - 1).alias("_code"))
            labels = rows.group_by("_code").agg(pl.col(k).first() for k in self.keys).sort("_code")
            self.scopes: list[dict[str, Any]] = labels.select(self.keys).to_dicts()
        else:
            rows = rows.with_columns(pl.lit(0, dtype=pl.Int64).alias("_code"))
            self.scopes = [{}] if not self.keys else []
        self.rows = rows
        self.code = rows["_code"].to_numpy()
        self.minute = ((rows["_t"].to_numpy() - tl.origin_us) // MINUTE_US).astype(np.int64)
        self.flat = self.code * tl.n_bins + self.minute
        self._cache: dict[Any, np.ndarray] = {}

    @property
    def n_scopes(self) -> int:
        return len(self.scopes)

    def column(self, name: str) -> np.ndarray:
        """A numeric column as float64 (null -> NaN)."""
        key = ("col", name)
        if key not in self._cache:
            self._cache[key] = self.rows[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        return self._cache[key]

    def mask(self, name: str, expr: pl.Expr) -> np.ndarray:
        """A boolean per row, cached under ``name``."""
        key = ("mask", name)
        if key not in self._cache:
            self._cache[key] = self.rows.select(expr.fill_null(False)).to_series().to_numpy()
        return self._cache[key]

    def cumulative(self, name: str, weights: np.ndarray | None = None, where: np.ndarray | None = None) -> np.ndarray:
        """Cumulative per-minute sums, shape (scopes, bins + 1), with a leading 0 column.

        ``weights`` default to 1 (a count); ``where`` keeps some rows only.
        """
        key = ("cum", name)
        if key in self._cache:
            return self._cache[key]
        S, B = self.n_scopes, self.timeline.n_bins
        flat, w = self.flat, weights
        if where is not None:
            flat = flat[where]
            w = None if w is None else w[where]
        sums = np.bincount(flat, weights=w, minlength=S * B).reshape(S, B) if S else np.zeros((0, B))
        out = np.zeros((S, B + 1), dtype=np.float64)
        np.cumsum(sums, axis=1, out=out[:, 1:])
        self._cache[key] = out
        return out

    def window_max(self, name: str, values: np.ndarray, where: np.ndarray, width: int) -> np.ndarray:
        """Max of ``values`` over ``width`` minutes ending at each bin: shape (scopes, bins + 1); 0 where empty.

        Column ``e`` holds the max over bins ``[e - width, e)`` (values are non-negative).
        """
        key = ("max", name, width)
        if key in self._cache:
            return self._cache[key]
        S, B = self.n_scopes, self.timeline.n_bins
        per_minute = np.zeros(S * B, dtype=np.float64)
        np.maximum.at(per_minute, self.flat[where], np.nan_to_num(values[where], nan=0.0))
        per_minute = per_minute.reshape(S, B)
        padded = np.concatenate([np.zeros((S, width)), per_minute], axis=1)
        from numpy.lib.stride_tricks import sliding_window_view

        out = sliding_window_view(padded, width, axis=1).max(axis=2)  # (S, B + 1)
        self._cache[key] = out
        return out

    def histograms(
        self, values: np.ndarray, where: np.ndarray, edges: np.ndarray, low_bin: int
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Per scope, cumulative per-minute histograms of ``values`` from bin ``low_bin`` on.

        Yields ``(scope, cum)`` with ``cum`` of shape (bins - low_bin + 1, len(edges) - 1):
        row ``e - low_bin`` holds the counts in minutes ``[low_bin, e)``. One scope at a
        time, so memory stays at one scope's (minutes x bins) table.
        """
        B = self.timeline.n_bins
        H = len(edges) - 1
        keep = where & (self.minute >= low_bin)
        codes = self.code[keep]
        cells = (self.minute[keep] - low_bin) * H + log_bin(values[keep], edges)
        order = np.argsort(codes, kind="stable")
        codes, cells = codes[order], cells[order]
        bounds = np.searchsorted(codes, np.arange(self.n_scopes + 1))
        span = B - low_bin
        for s in range(self.n_scopes):
            counts = np.bincount(cells[bounds[s] : bounds[s + 1]], minlength=span * H).reshape(span, H)
            cum = np.zeros((span + 1, H), dtype=np.int32)
            np.cumsum(counts, axis=0, out=cum[1:])
            yield s, cum

    def window_histograms(
        self, values: np.ndarray, where: np.ndarray, edges: np.ndarray, window: int, baseline: int = 0
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Per scope, histograms of the ``window`` minutes before each check and of the ``baseline`` before those.

        Yields ``(scope, current, before)``, each of shape (checks, bins); ``before``
        is all zeros without a baseline.
        """
        ends = self.timeline.ends
        low = max(0, int(ends.min()) - window - baseline)
        e = ends - low
        mid = np.maximum(e - window, 0)
        start = np.maximum(e - window - baseline, 0)
        for s, cum in self.histograms(values, where, edges, low):
            yield s, (cum[e] - cum[mid]).astype(np.int64), (cum[mid] - cum[start]).astype(np.int64)

    def first_minute(self) -> np.ndarray:
        """Each scope's first bin with a row (for "has this scope existed that long?")."""
        key = ("first",)
        if key not in self._cache:
            first = np.full(self.n_scopes, self.timeline.n_bins, dtype=np.int64)
            np.minimum.at(first, self.code, self.minute)
            self._cache[key] = first
        return self._cache[key]


def windowed(cum: np.ndarray, ends: np.ndarray, width: int, shift: int = 0) -> np.ndarray:
    """Sums over ``[end - shift - width, end - shift)`` for each check time: shape (scopes, times).

    Windows reaching before bin 0 are cut at it.
    """
    hi = np.clip(ends - shift, 0, cum.shape[-1] - 1)
    lo = np.clip(ends - shift - width, 0, cum.shape[-1] - 1)
    return cum[..., hi] - cum[..., lo]
