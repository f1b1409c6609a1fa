"""Quality in production: score a sample of real calls, store the scores against them, track them over time.

Production calls have no reference answer, so the scorers that fit are the
reference-free ones: an LLM judge with a rubric, ``valid_json``, ``regex``,
``length_bounds`` or your own ``@wb.scorer``. Calls that came from a dataset
(simulated traffic records ``item_id`` in its metadata) can be scored against
it with ``references=dataset``.

The sample is deterministic: a call is picked when a hash of its id falls
below ``share``, so scoring the same period twice picks the same calls, and
calls already scored by a scorer are never scored (or paid for) again. A
budget caps what the judges spend: each judge call reserves its worst case
before it starts, as experiments do, and scoring stops before it could go over.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from .. import _format, _html, _loop
from ..errors import ConfigError
from ..providers.base import Usage
from ..scorers import Scorer
from ._monitor import from_micros, to_micros

if TYPE_CHECKING:
    from ..bench import Workbench
    from ..datasets import Dataset

SAMPLE_SALT = "workbench-production-sample"


@dataclass
class ScoringRun:
    """What one `score_production` did."""

    since: datetime
    until: datetime
    candidates: int
    """Ok production calls in the period."""
    sampled: int
    """Picked by ``share``."""
    already: int
    """Picked calls that every scorer had scored before (not scored again)."""
    scored: int
    """Calls scored by this run."""
    spent_usd: float
    """What the judges cost."""
    stopped: str | None
    """Why it stopped early (the budget), or None."""
    scorers: list[str]

    def __repr__(self) -> str:
        text = (
            f"scored {_format.count(self.scored)} production calls with {', '.join(self.scorers)} "
            f"({_format.count(self.sampled)} of {_format.count(self.candidates)} sampled from {self.since:%Y-%m-%d %H:%M} to "
            f"{self.until:%Y-%m-%d %H:%M} UTC; {_format.count(self.already)} already scored); judges spent {_format.money(self.spent_usd)}"
        )
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")

    def _repr_html_(self) -> str:
        return _html.root(_html.esc(repr(self)))


def picked(ids: pl.Series, share: float) -> pl.Series:
    """Whether each call id falls in the sample (a stable hash of the id, not Python's salted one)."""
    def point(trace_id: str) -> float:
        digest = hashlib.blake2b(f"{SAMPLE_SALT}\0{trace_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    return ids.map_elements(point, return_dtype=pl.Float64) < share


def _judge_reserve(bench: Workbench, scorers: Sequence[Scorer], text_chars: int) -> float | None:
    """Worst-case dollars of the judge calls for one call of ``text_chars`` characters (None: a judge is unpriced)."""
    total = 0.0
    for s in scorers:
        model = getattr(s, "model", None)
        if not model:
            continue
        usage = Usage(
            input_tokens=math.ceil((text_chars + len(getattr(s, "rubric", "")) + 1_000) / 2),
            output_tokens=getattr(s, "max_tokens", 300),
        )
        cost = bench.pricing.estimate(model, usage)
        if cost is None:
            return None
        total += cost
    return total


def score_production(
    bench: Workbench,
    scorers: Sequence[Scorer],
    *,
    share: float = 0.1,
    since: Any = None,
    until: Any = None,
    budget_usd: float | None = None,
    references: Dataset | None = None,
    limit: int | None = None,
    concurrency: int = 8,
) -> ScoringRun:
    """Score a ``share`` of the ok production calls started in [since, until) and store the scores.

    Args:
        scorers: e.g. ``[wb.scorers.llm_judge("Is the answer polite and on topic?")]``.
        share: the fraction of calls to score (0.05 = one in twenty), picked by a hash of the id.
        since: default: 24 hours before ``until``.
        until: default: now.
        budget_usd: the judges stop before they could spend more (required judges must have a price).
        references: a dataset whose items the calls came from (matched by ``item_id`` in their metadata).
        limit: score at most this many calls (the newest first).
        concurrency: calls scored at once.
    """
    from ..experiments import score_trace
    from ..frames import traces_df
    from ..scorers import Scorer as ScorerProtocol

    if not scorers:
        raise ConfigError("score_production needs at least one scorer, e.g. [wb.scorers.llm_judge('Is it polite?')]")
    for s in scorers:
        if not isinstance(s, ScorerProtocol):
            raise ConfigError(f"{s!r} is not a scorer; use wb.scorers.llm_judge(...) or @wb.scorer")
    if not 0 < share <= 1:
        raise ConfigError(f"share must be above 0 and at most 1 (0.1 = one call in ten), got {share!r}")
    if budget_usd is not None and budget_usd <= 0:
        raise ConfigError(f"budget_usd must be a positive number of dollars, got {budget_usd!r}")
    hi = to_micros(datetime.now(timezone.utc) if until is None else until, "until")
    lo = to_micros(from_micros(hi) - timedelta(hours=24) if since is None else since, "since")
    names = [s.name for s in scorers]

    calls = traces_df(
        bench.store, since=from_micros(lo), until=from_micros(hi), kind="llm", status="ok",
        columns=["id", "experiment_id", "tags_json", "started_at"],
    )
    from ._data import production

    calls = production(calls)
    sample = calls.filter(picked(calls["id"], share)) if calls.height else calls
    done = _scored_before(bench, sample["id"].to_list(), names)
    already = {i for i in sample["id"].to_list() if all((i, n) in done for n in names)}
    todo = [i for i in reversed(sample["id"].to_list()) if i not in already]  # newest first
    if limit is not None:
        todo = todo[:limit]
    items = {} if references is None else {item.item_id: item for item in references.items}
    judges = [s for s in scorers if getattr(s, "model", None)]
    if budget_usd is not None:
        for s in judges:
            if bench.pricing.estimate(s.model, Usage(1, 1)) is None:  # type: ignore[attr-defined]
                raise ConfigError(
                    f"budget_usd is set but judge {s.name!r} uses {s.model!r}, which has no known price; "  # type: ignore[attr-defined]
                    f"set one with bench.pricing.set_price({s.model!r}, input=..., output=...)"  # type: ignore[attr-defined]
                )
    run = ScoringRun(from_micros(lo), from_micros(hi), calls.height, sample.height, len(already), 0, 0.0, None, names)
    prompts: dict[str, Any] = {}
    reserved = 0.0

    async def one(trace_id: str, sem: asyncio.Semaphore) -> None:
        nonlocal reserved
        async with sem:
            if run.stopped:
                return
            row = bench.trace(trace_id)
            if row is None:
                return
            output, prompt = row.get("output") or "", row.get("input") or ""
            meta = row.get("metadata") or {}
            item = items.get(meta.get("item_id")) if items else None
            reserve = 0.0
            if budget_usd is not None and judges:
                reserve = _judge_reserve(bench, scorers, len(prompt) + len(output)) or 0.0
                if run.spent_usd + reserved + reserve > budget_usd:
                    run.stopped = f"budget of {_format.money(budget_usd)} reached ({_format.money(run.spent_usd)} spent)"
                    return
            reserved += reserve
            try:
                _, spent = await score_trace(
                    bench, trace_id, output, scorers,
                    inputs=item.inputs if item is not None else {"input": prompt},
                    expected=None if item is None else item.expected,
                    metadata=meta if item is None else item.metadata,
                    item_id=None if item is None else item.item_id,
                    judge_prompts=prompts,
                )
            finally:
                reserved -= reserve
            run.spent_usd += spent
            run.scored += 1

    async def run_all() -> None:
        sem = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(one(i, sem) for i in todo))

    if todo:
        _loop.run_sync(run_all())
        bench.flush()
    return run


def _scored_before(bench: Workbench, ids: Sequence[str], scorers: Sequence[str]) -> set[tuple[str, str]]:
    """(trace id, scorer) pairs already stored, outside experiments."""
    from ..frames import production_scored

    return production_scored(bench.store, ids, scorers)


def quality_over_time(
    bench: Workbench, *, every: str = "1h", since: Any = None, until: Any = None, by: Any = None
) -> pl.DataFrame:
    """Production scores per time bucket (of the scored call's start) and scorer: n, mean and a 95% CI.

    Pass/fail scorers get Wilson's interval; others the normal one. ``by``
    adds scope columns (model, prompt_name, prompt, user_id, ...).
    """
    from . import _data
    from .rules import scope_keys

    keys = list(scope_keys(by))
    hi = to_micros(datetime.now(timezone.utc) if until is None else until, "until")
    lo = to_micros(from_micros(hi) - timedelta(days=7) if since is None else since, "since")
    scores = _data.read_scores(bench, lo, hi, keys, None).filter(pl.col("value").is_not_null())
    z = 1.959964
    n = pl.len().alias("n")
    df = (
        scores.with_columns(pl.from_epoch("_t", time_unit="us").dt.replace_time_zone("UTC").dt.truncate(every).alias("bucket"))
        .group_by("bucket", *keys, "scorer")
        .agg(n, pl.col("value").mean().alias("mean"), pl.col("value").std().alias("sd"), pl.col("_binary").first())
        .sort("bucket", *keys, "scorer")
    )
    p, m = pl.col("mean"), pl.col("n")
    centre = (p + z * z / (2 * m)) / (1 + z * z / m)
    half_w = z / (1 + z * z / m) * ((p * (1 - p) / m + z * z / (4 * m * m)).sqrt())
    half_n = z * pl.col("sd") / m.sqrt()
    # Wilson's bounds are 0 or 1 exactly at 0 or n passes; the closed form only gets there up to rounding.
    low = pl.when(p == 0).then(0.0).otherwise((centre - half_w).clip(0, 1))
    high = pl.when(p == 1).then(1.0).otherwise((centre + half_w).clip(0, 1))
    return df.with_columns(
        pl.when(pl.col("_binary")).then(low).otherwise(p - half_n).alias("ci_low"),
        pl.when(pl.col("_binary")).then(high).otherwise(p + half_n).alias("ci_high"),
    ).drop("sd", "_binary")

