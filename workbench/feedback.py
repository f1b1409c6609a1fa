"""Human feedback: pairwise preferences between variants, and ratings of single traces.

Only this module writes the ``feedback`` table (migration m006). Each rater has
at most one preference per (experiment, item, pair of variants) and one rating
per trace: rating again updates that row, keeping ``created_at`` and moving
``updated_at``.

Pairs are stored in canonical order, the two variant names sorted, so
``prefer(exp, item, "B", "A", "a")`` is stored as ``(A, B)`` with choice ``b``.
Readers that are given a pair (``preferences(..., a=, b=)``, `preference`)
answer from that pair's point of view, whichever way a row was stored.
"""

from __future__ import annotations

import getpass
import math
import numbers
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import traces
from ._ids import new_id, utc_now
from .errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from .stats import Preference
    from .store import Store

__all__ = ["CHOICES", "Feedback", "FeedbackRecord", "default_rater", "preference"]

CHOICES = ("a", "b", "tie", "both_bad")
"""Allowed preference choices: A better, B better, a tie, or both outputs bad."""

_FLIPPED = {"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"}

PREFERENCE_COLUMNS = (
    "id", "experiment_id", "item_id", "variant_a", "variant_b", "choice", "comment", "rater",
    "created_at", "updated_at",
)
RATING_COLUMNS = ("id", "trace_id", "experiment_id", "item_id", "rating", "comment", "rater", "created_at", "updated_at")

_PREFER_SQL = (
    "INSERT INTO feedback (id, experiment_id, item_id, variant_a, variant_b, choice, comment, rater, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    # The conflict target names the partial index, WHERE clause included, or SQLite will not use it.
    "ON CONFLICT (experiment_id, item_id, variant_a, variant_b, rater) WHERE trace_id IS NULL DO UPDATE SET "
    "choice = excluded.choice, updated_at = excluded.updated_at, "
    "comment = CASE WHEN ? THEN feedback.comment ELSE excluded.comment END"
)
_RATE_SQL = (
    "INSERT INTO feedback (id, experiment_id, item_id, trace_id, rating, comment, rater, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (trace_id, rater) WHERE trace_id IS NOT NULL DO UPDATE SET "
    "rating = excluded.rating, updated_at = excluded.updated_at, "
    "comment = CASE WHEN ? THEN feedback.comment ELSE excluded.comment END"
)


@dataclass(frozen=True)
class FeedbackRecord:
    """One stored feedback row: a pairwise preference or a rating of one trace."""

    id: str
    """Row id (time-sortable)."""
    experiment_id: str | None
    """The experiment rated in (for a trace rating: the trace's experiment, if any)."""
    item_id: str | None
    """The dataset item."""
    variant_a: str | None
    """First variant of a preference, in canonical (sorted) order; None for a trace rating."""
    variant_b: str | None
    """Second variant of a preference; None for a trace rating."""
    choice: str | None
    """``a``, ``b``, ``tie`` or ``both_bad`` relative to (variant_a, variant_b); None for a trace rating."""
    trace_id: str | None
    """The rated trace; None for a preference."""
    rating: float | None
    """The rating of a trace (any number, e.g. 1-5 or 0/1); None for a preference."""
    comment: str | None
    """Free text from the rater."""
    rater: str
    """Who rated (``$WORKBENCH_RATER`` or the login name by default)."""
    created_at: str
    """First rated (UTC)."""
    updated_at: str
    """Last changed (UTC)."""


def default_rater(rater: str | None = None) -> str:
    """The rater's name: the argument, else ``$WORKBENCH_RATER``, else the login name."""
    # os.environ directly, not config.setting: records sit below the entry layer that config belongs to.
    value = rater if rater is not None else (os.environ.get("WORKBENCH_RATER") or None)
    if value is None:
        try:
            value = getpass.getuser()
        except Exception:  # noqa: BLE001 - getuser raises OSError (or KeyError) when no user name exists, as in some containers
            value = "unknown"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"rater must be a non-empty string, got {value!r}; pass rater=... or set WORKBENCH_RATER")
    return value.strip()


def _experiment_id(value: Any) -> str:
    # An Experiment object works as well as its id.
    if not isinstance(value, str) and isinstance(getattr(value, "id", None), str):
        value = value.id
    return _text(value, "experiment_id")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _choice(choice: Any) -> str:
    if choice not in CHOICES:
        raise ConfigError(
            f"unknown choice {choice!r}; use one of {', '.join(repr(c) for c in CHOICES)} "
            "('a': A better, 'b': B better, 'tie', 'both_bad': both outputs bad)"
        )
    return str(choice)


def _comment(comment: Any) -> tuple[str | None, bool]:
    """(text to store, keep the stored comment): None keeps it, '' clears it."""
    if comment is None:
        return None, True
    if not isinstance(comment, str):
        raise ConfigError(f"comment must be text, got {type(comment).__name__}")
    return (comment if comment.strip() else None), False


def _rating(rating: Any) -> float:
    if not isinstance(rating, numbers.Real) or not math.isfinite(float(rating)):
        raise ConfigError(f"rating must be a finite number (e.g. 1-5, or 1/0 for thumbs up/down), got {rating!r}")
    return float(rating)


def _record(row: dict[str, Any]) -> FeedbackRecord:
    return FeedbackRecord(**{k: row[k] for k in FeedbackRecord.__dataclass_fields__})


class Feedback:
    """``bench.feedback``: record and read human preferences and ratings."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- writing -----------------------------------------------------------------------------

    def prefer(
        self,
        experiment_id: Any,
        item_id: str,
        a: str,
        b: str,
        choice: str,
        *,
        rater: str | None = None,
        comment: str | None = None,
    ) -> FeedbackRecord:
        """Record which of two variants' outputs for one item is better.

        Args:
            experiment_id: the experiment (its id, or the Experiment).
            item_id: the dataset item.
            a, b: the two variants, e.g. ``"A", "B"``; ``choice`` is relative to this order.
            choice: ``"a"``, ``"b"``, ``"tie"`` or ``"both_bad"``.
            rater: default ``$WORKBENCH_RATER``, else the login name.
            comment: free text; ``None`` keeps a comment given earlier, ``""`` clears it.

        Returns:
            The stored row, in canonical pair order (so ``choice`` may be flipped).
        """
        exp_id = _experiment_id(experiment_id)
        item = _text(item_id, "item_id")
        a, b = _text(a, "variant a"), _text(b, "variant b")
        if a == b:
            raise ConfigError(f"a preference needs two different variants, got {a!r} twice")
        chosen = _choice(choice)
        who = default_rater(rater)
        text, keep = _comment(comment)
        if a > b:
            a, b, chosen = b, a, _FLIPPED[chosen]
        now = utc_now()
        with self.store.transaction() as conn:
            conn.execute(_PREFER_SQL, (new_id(), exp_id, item, a, b, chosen, text, who, now, now, keep))
        rows = self.store.query(
            "SELECT * FROM feedback WHERE experiment_id = ? AND item_id = ? AND variant_a = ? AND variant_b = ? "
            "AND rater = ? AND trace_id IS NULL",
            (exp_id, item, a, b, who),
        )
        return _record(rows[0])

    def rate(
        self,
        trace_id: str,
        rating: float,
        *,
        rater: str | None = None,
        comment: str | None = None,
    ) -> FeedbackRecord:
        """Rate one trace (a number on any scale you choose); rating it again updates the row.

        The trace's experiment and item are copied onto the row so ratings group by them.
        """
        tid = _text(trace_id, "trace_id")
        value = _rating(rating)
        who = default_rater(rater)
        text, keep = _comment(comment)
        self.store.sync()  # the trace may still be queued in the writer
        trace = traces.get_trace(self.store, tid)
        if trace is None:
            raise ConfigError(f"no trace with id {tid!r} in {self.store.path}; rate a trace id from bench.traces()")
        now = utc_now()
        with self.store.transaction() as conn:
            conn.execute(
                _RATE_SQL, (new_id(), trace.get("experiment_id"), trace.get("item_id"), tid, value, text, who, now, now, keep)
            )
        rows = self.store.query("SELECT * FROM feedback WHERE trace_id = ? AND rater = ?", (tid, who))
        return _record(rows[0])

    # -- reading -----------------------------------------------------------------------------

    def preferences(
        self,
        experiment_id: Any,
        *,
        a: str | None = None,
        b: str | None = None,
        rater: str | None = None,
    ) -> pl.DataFrame:
        """Preferences recorded in an experiment, oldest first.

        With ``a`` and ``b``, only that pair, with ``variant_a``/``variant_b``
        and ``choice`` given from (a, b)'s point of view. With ``rater``, only
        that rater's rows.
        """
        import polars as pl

        exp_id = _experiment_id(experiment_id)
        sql = f"SELECT {', '.join(PREFERENCE_COLUMNS)} FROM feedback WHERE trace_id IS NULL AND experiment_id = ?"
        params: list[Any] = [exp_id]
        if (a is None) != (b is None):
            raise ConfigError("pass both a and b to select a pair of variants, or neither")
        if a is not None and b is not None:
            sql += " AND ((variant_a = ? AND variant_b = ?) OR (variant_a = ? AND variant_b = ?))"
            params += [a, b, b, a]
        if rater is not None:
            sql += " AND rater = ?"
            params.append(rater)
        rows = self.store.query(sql + " ORDER BY id", params)
        if a is not None:
            for r in rows:
                if r["variant_a"] != a:
                    r["variant_a"], r["variant_b"], r["choice"] = a, b, _FLIPPED.get(r["choice"], r["choice"])
        return pl.DataFrame(rows, schema={c: pl.String for c in PREFERENCE_COLUMNS}, orient="row")

    def ratings(
        self,
        trace_id: str | None = None,
        *,
        experiment_id: Any = None,
        rater: str | None = None,
    ) -> pl.DataFrame:
        """Ratings of single traces, oldest first, filtered by trace, experiment or rater."""
        import polars as pl

        sql = f"SELECT {', '.join(RATING_COLUMNS)} FROM feedback WHERE trace_id IS NOT NULL"
        params: list[Any] = []
        if trace_id is not None:
            sql += " AND trace_id = ?"
            params.append(trace_id)
        if experiment_id is not None:
            sql += " AND experiment_id = ?"
            params.append(_experiment_id(experiment_id))
        if rater is not None:
            sql += " AND rater = ?"
            params.append(rater)
        rows = self.store.query(sql + " ORDER BY id", params)
        schema = {c: (pl.Float64 if c == "rating" else pl.String) for c in RATING_COLUMNS}
        return pl.DataFrame(rows, schema=schema, orient="row")

    def preference(self, experiment_id: Any, a: str, b: str, confidence: float = 0.95) -> Preference | None:
        """B's win rate over A from the stored preferences (see `preference`)."""
        return preference(self.store, _experiment_id(experiment_id), a, b, confidence=confidence)

    def __repr__(self) -> str:
        (n,) = self.store.execute("SELECT COUNT(*) FROM feedback").fetchone()
        return f"<Feedback {n} rows>"


def preference(store: Store, experiment_id: str, a: str, b: str, confidence: float = 0.95) -> Preference | None:
    """Human preference of ``b`` over ``a`` in an experiment, over every rater.

    Each stored preference is one comparison; ``both_bad`` counts as a tie.
    Rows stored as (b, a) are read the other way round. Returns None when
    nobody has rated this pair.
    """
    # stats is pure (numpy/scipy, no store): a records module may lean on it without a cycle.
    from . import stats

    rows = store.query(
        "SELECT variant_a, choice, COUNT(*) AS n FROM feedback WHERE trace_id IS NULL AND experiment_id = ? "
        "AND ((variant_a = ? AND variant_b = ?) OR (variant_a = ? AND variant_b = ?)) GROUP BY variant_a, choice",
        (experiment_id, a, b, b, a),
    )
    if not rows:
        return None
    wins_a = wins_b = ties = 0
    for r in rows:
        choice = r["choice"] if r["variant_a"] == a else _FLIPPED.get(r["choice"], r["choice"])
        if choice == "a":
            wins_a += r["n"]
        elif choice == "b":
            wins_b += r["n"]
        else:
            ties += r["n"]
    return stats.preference(wins_b, wins_a, ties, confidence=confidence)
