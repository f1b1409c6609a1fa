"""Simulated production traffic: for demos, the monitoring notebook and the detector tests.

Two generators share one idea of an `Incident` (a stretch of degraded
service with a known start and size):

- `production_traffic` sends requests through the simulated provider and the
  normal tracer, backdated over a period (a few thousand calls, seconds to
  make). It is idempotent per seed and window: run again with the same
  settings it adds nothing and says so.
- `labelled_traffic` draws weeks of calls in bulk with numpy, with the same
  daily rhythm and the simulated models' latency and prices, straight into a
  Polars frame (and, with `LabelledTraffic.write`, into a file through the
  store's batched writer). It is how the monitor's detectors are measured:
  incidents of several sizes with known starts, and quiet weeks with none.

Every simulated trace is marked simulated; `production_traffic`'s are also
tagged ``simulated-traffic``.
"""

from __future__ import annotations

import asyncio
import random
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _format, _loop
from ._canonical import content_hash
from ._retry import RetryPolicy
from .errors import ConfigError
from .providers.simulated import PROFILES, SimulatedProvider

if TYPE_CHECKING:
    import polars as pl

    from .bench import Workbench
    from .datasets import Dataset
    from .prompts import PromptVersion
    from .scorers import Scorer

TRAFFIC_TAG = "simulated-traffic"


def daily_weight(clock_hours: Any) -> Any:
    """Relative traffic at a UTC clock hour: busiest at 15:00, a quarter of that at night."""
    import numpy as np

    clock = np.asarray(clock_hours, dtype=np.float64) % 24
    return 0.25 + 0.75 * np.maximum(0.0, 1 - np.abs(clock - 15) / 9)


DAILY_MEAN_WEIGHT = 0.25 + 0.75 * 9 / 24
"""The mean of `daily_weight` over a day (a triangle 18 hours wide, 1 high)."""


@dataclass(frozen=True)
class Incident:
    """A stretch of degraded service, with a known start and size.

    Only what is set changes: ``Incident(10, 1, latency_factor=1.5)`` is a
    latency incident with the normal error rate.
    """

    start_hour: float
    """Hours after the start of the traffic."""
    hours: float
    """How long it lasts."""
    error_rate: float | None = None
    """Chance that a call fails (in `production_traffic`: that one attempt fails; calls retry once)."""
    latency_factor: float = 1.0
    """Latency multiplier."""
    input_factor: float = 1.0
    """A prompt change that multiplies input tokens, and so each call's cost."""
    quality_drop: float = 0.0
    """How much less often answers are right (0.3: from 80% to 50%)."""
    traffic_factor: float = 1.0
    """Calls multiplied (a retry loop, a crawler)."""
    scope: Mapping[str, Any] | None = None
    """In `labelled_traffic`: which stream it hits, e.g. ``{"model": "claude-sonnet-4-5"}`` (None: all)."""

    def __post_init__(self) -> None:
        if self.hours <= 0:
            raise ConfigError(f"an incident lasts a positive number of hours, got {self.hours!r}")
        if self.error_rate is not None and not 0 <= self.error_rate <= 1:
            raise ConfigError(f"incident error_rate must be between 0 and 1, got {self.error_rate!r}")
        if min(self.latency_factor, self.input_factor, self.traffic_factor) <= 0:
            raise ConfigError("incident latency_factor, input_factor and traffic_factor must be positive")
        if not 0 <= self.quality_drop <= 1:
            raise ConfigError(f"incident quality_drop must be between 0 and 1, got {self.quality_drop!r}")

    def covers(self, hour: float) -> bool:
        return self.start_hour <= hour < self.start_hour + self.hours

    @property
    def kinds(self) -> tuple[str, ...]:
        """What it changes: error_rate, latency, cost, quality, traffic."""
        out = []
        if self.error_rate is not None:
            out.append("error_rate")
        if self.latency_factor != 1:
            out.append("latency")
        if self.input_factor != 1:
            out.append("cost")
        if self.quality_drop:
            out.append("quality")
        if self.traffic_factor != 1:
            out.append("traffic")
        return tuple(out)


# -- through the simulated provider --------------------------------------------------------------


@dataclass(frozen=True)
class TrafficRun:
    """What `production_traffic` did."""

    requests: int
    """Calls this seed and window hold (made now or before)."""
    added: int
    """Calls traced by this run."""
    start: datetime
    end: datetime
    seed: int
    others: int = 0
    """Simulated calls from other runs (another seed or settings) in the same window."""

    def __int__(self) -> int:
        return self.added

    def __str__(self) -> str:
        window = f"{self.start:%Y-%m-%d %H:%M}–{self.end:%Y-%m-%d %H:%M} UTC"
        if self.added == 0:
            text = (f"{_format.count(self.requests)} simulated calls for seed {self.seed} over {window} were already in the file: "
                    "nothing appended (change seed or start for more traffic)")
        elif self.added < self.requests:
            text = f"{_format.count(self.added)} simulated calls traced to complete {_format.count(self.requests)} for seed {self.seed} over {window}"
        else:
            text = f"{_format.count(self.added)} simulated calls traced for seed {self.seed} over {window}"
        if self.others:
            text += f"; the window also holds {_format.count(self.others)} simulated calls from other runs"
        return text

    __repr__ = __str__


def _draw_hours(rng: random.Random, n: int, hours: float, start_hour: float) -> list[float]:
    """``n`` times (hours after the start) from the daily rhythm, by rejection."""
    times: list[float] = []
    while len(times) < n:
        h = rng.random() * hours
        if rng.random() < float(daily_weight(start_hour + h)):
            times.append(h)
    times.sort()
    return times


def production_traffic(
    bench: Workbench,
    prompt: PromptVersion,
    dataset: Dataset,
    *,
    start: datetime | None = None,
    hours: float = 24.0,
    requests: int = 3_000,
    users: int = 40,
    incident: Incident | None = None,
    seed: int = 0,
    concurrency: int = 64,
) -> TrafficRun:
    """Trace ``requests`` simulated calls spread over ``hours`` with a daily rhythm.

    Busier in the (UTC) afternoon, quieter at night; during ``incident`` the
    error rate, latency, prompt length, answer quality or traffic change as it
    says. Idempotent: the same seed, window and settings trace their calls
    once, so running a notebook twice does not double its traffic (a run cut
    short is completed). Returns a `TrafficRun` that says what happened.
    """
    from ._canonical import loads

    if requests < 1 or hours <= 0:
        raise ConfigError(f"production_traffic needs requests >= 1 and hours > 0, got {requests!r} and {hours!r}")
    start = start or datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    end = start + timedelta(hours=hours)
    run_key = content_hash({
        "seed": seed, "start": start.isoformat(), "hours": hours, "requests": requests, "users": users,
        "incident": None if incident is None else asdict(incident), "prompt": prompt.content_hash,
        "dataset": dataset.content_hash,
    })[7:23]
    done, others = _existing_traffic(bench, start, end, run_key, loads)

    rng = random.Random(seed)
    times = _draw_hours(rng, requests, hours, start.hour + start.minute / 60)
    extra = 0
    if incident is not None and incident.traffic_factor > 1:
        # The surge: more calls inside the incident, on top of the planned ones.
        inside = sum(1 for h in times if incident.covers(h))
        extra = int(round(inside * (incident.traffic_factor - 1)))
        times = sorted(times + [incident.start_hour + rng.random() * incident.hours for _ in range(extra)])
        times = [h for h in times if h < hours]
    normal = SimulatedProvider(seed=seed, time_scale=0)
    degraded = normal
    if incident is not None:
        profiles = None
        if incident.quality_drop:
            profiles = {m: replace(p, skill=max(0.0, p.skill - incident.quality_drop)) for m, p in PROFILES.items()}
        degraded = SimulatedProvider(
            seed=seed, time_scale=0, error_rate=incident.error_rate,
            latency_factor=incident.latency_factor, profiles=profiles,
        )
    policy = RetryPolicy(max_attempts=2)
    items = dataset.items
    rng_items = [rng.randrange(len(items)) for _ in times]
    # A few heavy users and a long tail (Zipf-like weights).
    rng_users = rng.choices(range(users), weights=[1 / (k + 1) for k in range(users)], k=len(times))
    todo = [i for i in range(len(times)) if i not in done]

    async def one(i: int, sem: asyncio.Semaphore) -> None:
        hour = times[i]
        item = items[rng_items[i]]
        hit = incident is not None and incident.covers(hour)
        provider = degraded if hit else normal
        request = prompt.to_request(item.inputs, allow_extra=True)
        if hit and incident.input_factor != 1:  # type: ignore[union-attr]
            request = _lengthen(request, incident.input_factor)  # type: ignore[union-attr]
        request.metadata["sample"] = f"traffic:{seed}:{i}"
        async with sem:
            await bench.tracer.call(
                provider, request, policy=policy,
                started=start.timestamp() + hour * 3600,
                context={"user_id": f"user-{rng_users[i]:03d}", "tags": [TRAFFIC_TAG],
                         "metadata": {"item_id": item.item_id, "traffic": run_key, "traffic_index": i}},
            )

    async def run_all() -> None:
        sem = asyncio.Semaphore(concurrency)
        tasks = [asyncio.ensure_future(one(i, sem)) for i in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # Ctrl-C or a failure: stop the calls not yet made; the next run makes only those.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    if todo:
        if others:
            warnings.warn(
                f"the window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC already holds {_format.count(others)} simulated calls "
                f"from another run (other seed or settings); {_format.count(len(todo))} more are appended",
                UserWarning, stacklevel=2,
            )
        _loop.run_sync(run_all())
        bench.flush()
    return TrafficRun(requests=len(times), added=len(todo), start=start, end=end, seed=seed, others=others)


def _existing_traffic(bench: Workbench, start: datetime, end: datetime, run_key: str, loads: Any) -> tuple[set[int], int]:
    """Indices this run already traced in the window, and how many simulated calls other runs left there."""
    import polars as pl

    from . import frames

    df = frames.traces_df(bench.store, since=start, until=end, kind="llm", columns=["metadata_json", "tags_json"])
    df = df.filter(pl.col("tags_json").str.contains(TRAFFIC_TAG, literal=True).fill_null(False))
    if df.height == 0:
        return set(), 0
    meta = df.select(
        pl.col("metadata_json").str.json_path_match("$.traffic").alias("run"),
        pl.col("metadata_json").str.json_path_match("$.traffic_index").cast(pl.Int64, strict=False).alias("i"),
    )
    mine = meta.filter(pl.col("run") == run_key)
    return set(mine["i"].drop_nulls().to_list()), meta.height - mine.height


def _lengthen(request: Any, factor: float) -> Any:
    """The request with a longer system prompt (a prompt change), so its input grows by ``factor``."""
    base = len(request.prompt_text())
    pad_chars = max(0, int(base * (factor - 1)))
    policy = "Follow the support style guide: be concise, cite the help-centre passage, stay polite. "
    system = ((request.system or "") + "\n" + policy * (pad_chars // len(policy) + 1))[: len(request.system or "") + pad_chars]
    return replace(request, system=system)


# -- labelled traffic in bulk --------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """One stream of production calls: a model serving a prompt at a rate."""

    model: str = "claude-haiku-4-5"
    prompt_name: str = "support"
    prompt_version: int = 1
    calls_per_minute: float = 30.0
    """Mean over a day; the afternoon peak is about 1.6 times this, the night a third."""
    error_rate: float = 0.01
    """Share of calls that fail in normal times."""
    pass_rate: float | None = None
    """Share of answers a pass/fail scorer passes in normal times (default: the model's simulated skill)."""
    input_tokens: float = 260.0
    """Median input tokens of a call."""
    output_tokens: float = 45.0
    """Median output tokens of a call."""


@dataclass(frozen=True)
class LabelledIncident:
    """An injected incident: where, when, what and how big."""

    kinds: tuple[str, ...]
    start: datetime
    end: datetime
    scope: dict[str, Any]
    """The stream's model and prompt name."""
    size: dict[str, float]
    """What changed: error_rate, latency_factor, input_factor, quality_drop, traffic_factor."""


@dataclass
class LabelledTraffic:
    """Calls (and sampled pass/fail scores) with the incidents injected into them."""

    traces: pl.DataFrame
    """One row per call: started_at (UTC), kind, status, model, prompt_name, prompt_version, user_id,
    input/output tokens, latency_ms, ttft_ms, cost_usd, provider, simulated, tags_json, metadata_json."""
    scores: pl.DataFrame
    """One row per scored call: trace_row (index into ``traces``), scorer, value (1.0 or 0.0)."""
    incidents: list[LabelledIncident]
    start: datetime
    end: datetime
    scorer: str = "correct"

    def write(self, bench: Workbench) -> int:
        """Put the calls and scores in ``bench``'s file, in bulk; returns the calls written.

        Trace rows go through the store's batched writer (about 100,000 a
        second), scores through `experiments.record_trace_scores`. Ids are
        UUIDv7 from each call's start time, so they sort by time as real ones do.
        """
        import polars as pl

        from . import traces as traces_mod
        from .experiments import record_trace_scores

        df = self.traces
        ids = _time_ids(df["started_at"].dt.epoch("ms").to_numpy(), seed=int(self.start.timestamp()))
        df = df.with_columns(
            pl.Series("id", ids), pl.Series("trace_id", ids),
            pl.col("started_at").dt.strftime("%Y-%m-%dT%H:%M:%S.%6f+00:00"),
            pl.lit("llm").alias("kind"), pl.concat_str([pl.lit("chat "), pl.col("model")]).alias("name"),
            pl.col("status").cast(pl.String),
        )
        cols = [c if c in df.columns else None for c in traces_mod.COLUMNS]
        table = df.select(pl.col(c) if c else pl.lit(None).alias(f"_none{i}") for i, c in enumerate(cols))
        bench.store.writer.put_many(traces_mod.INSERT_SQL, table.iter_rows())
        bench.flush()
        trace_ids = pl.Series(ids).gather(self.scores["trace_row"])
        record_trace_scores(bench.store, [
            (tid, scorer, value, value >= 0.5, None)
            for tid, scorer, value in zip(trace_ids, self.scores["scorer"], self.scores["value"])
        ])
        return df.height


def _time_ids(epoch_ms: Any, seed: int = 0) -> list[str]:
    """UUIDv7 text for each millisecond time (a per-millisecond counter keeps them in order)."""
    import numpy as np

    ms = np.asarray(epoch_ms, dtype=np.int64)
    order = np.argsort(ms, kind="stable")
    seq = np.zeros(len(ms), dtype=np.int64)
    sorted_ms = ms[order]
    if len(ms):
        same = np.concatenate([[False], sorted_ms[1:] == sorted_ms[:-1]])
        run_start = np.maximum.accumulate(np.where(~same, np.arange(len(ms)), 0))
        seq[order] = np.arange(len(ms)) - run_start
    rand = np.random.default_rng(seed).integers(0, 2**62, len(ms), dtype=np.int64)
    out = []
    for m, s, r in zip(ms.tolist(), seq.tolist(), rand.tolist()):
        h = f"{m:012x}7{s & 0xFFF:03x}{(r | 0x8000000000000000):016x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def _unit_prices(model: str) -> tuple[float, float]:
    """Dollars per input and per output token of a model (genai-prices, as the tracer prices it)."""
    from .pricing import Pricer
    from .providers.base import Usage

    pricer = Pricer()
    per_in = pricer.estimate(model, Usage(input_tokens=1000, output_tokens=0))
    per_out = pricer.estimate(model, Usage(input_tokens=0, output_tokens=1000))
    if per_in is None or per_out is None:
        raise ConfigError(f"no price known for model {model!r}; labelled traffic needs a priced model")
    return per_in / 1000, per_out / 1000


def labelled_traffic(
    *,
    start: datetime,
    days: float = 7.0,
    streams: Sequence[Stream] = (Stream(),),
    incidents: Sequence[Incident] = (),
    seed: int = 0,
    score_share: float = 0.1,
    users: int = 200,
    daily_rhythm: bool = True,
) -> LabelledTraffic:
    """Draw ``days`` of production calls per stream, with ``incidents`` injected.

    Arrivals are Poisson per minute with the daily rhythm of `daily_weight`;
    latency is lognormal with the stream's model profile (time to first token
    plus output at the model's speed); tokens are lognormal around the
    stream's medians and priced with genai-prices; errors, answer quality and
    traffic follow the stream's rates except inside an incident, where the
    incident's settings apply (only to the streams its ``scope`` matches). A
    cost incident is a prompt change: those calls carry the next prompt
    version. ``score_share`` of the ok calls get a pass/fail score (scorer
    ``correct``), as production sampling would. ``daily_rhythm=False`` keeps
    every stream at its mean rate around the clock.
    """
    import numpy as np
    import polars as pl

    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    if days <= 0:
        raise ConfigError(f"days must be positive, got {days!r}")
    rng = np.random.default_rng(seed)
    minutes = int(round(days * 1440))
    start_us = int(start.timestamp() * 1e6)
    minute_hours = np.arange(minutes) / 60.0
    clock = (start.hour + start.minute / 60 + minute_hours) % 24
    shape = daily_weight(clock) / DAILY_MEAN_WEIGHT if daily_rhythm else np.ones(minutes)
    frames = []
    labelled: list[LabelledIncident] = []
    for k, stream in enumerate(streams):
        prof = PROFILES.get(stream.model)
        if prof is None:
            raise ConfigError(f"labelled traffic simulates {', '.join(PROFILES)}; got model {stream.model!r}")
        per_in, per_out = _unit_prices(stream.model)
        scope = {"model": stream.model, "prompt_name": stream.prompt_name}
        rate = stream.calls_per_minute * shape
        err = np.full(minutes, stream.error_rate)
        lat = np.ones(minutes)
        inp = np.ones(minutes)
        drop = np.zeros(minutes)
        version_bump = np.zeros(minutes, dtype=np.int64)
        for inc in incidents:
            if inc.scope is not None and any(scope.get(key) != value for key, value in inc.scope.items()):
                continue
            lo = int(round(inc.start_hour * 60))
            hi = min(minutes, int(round((inc.start_hour + inc.hours) * 60)))
            if lo >= minutes:
                continue
            if inc.error_rate is not None:
                err[lo:hi] = inc.error_rate
            lat[lo:hi] *= inc.latency_factor
            inp[lo:hi] *= inc.input_factor
            drop[lo:hi] += inc.quality_drop
            rate[lo:hi] *= inc.traffic_factor
            if inc.input_factor != 1:
                version_bump[lo:hi] = 1
            labelled.append(LabelledIncident(
                kinds=inc.kinds, start=start + timedelta(minutes=lo), end=start + timedelta(minutes=hi), scope=scope,
                size={k2: v for k2, v in (("error_rate", inc.error_rate), ("latency_factor", inc.latency_factor),
                                          ("input_factor", inc.input_factor), ("quality_drop", inc.quality_drop),
                                          ("traffic_factor", inc.traffic_factor)) if v is not None},
            ))
        counts = rng.poisson(rate)
        minute = np.repeat(np.arange(minutes), counts)
        n = len(minute)
        t_us = start_us + minute * 60_000_000 + (rng.random(n) * 60_000_000).astype(np.int64)
        failed = rng.random(n) < err[minute]
        out_tok = np.clip(np.round(stream.output_tokens * rng.lognormal(0, 0.5, n)), 5, 600).astype(np.int64)
        in_tok = np.round(stream.input_tokens * rng.lognormal(0, 0.35, n) * inp[minute]).astype(np.int64)
        ttft = prof.ttft_median_ms * rng.lognormal(0, prof.latency_sigma, n)
        gen = out_tok / prof.tokens_per_s * 1000 * rng.lognormal(0, prof.latency_sigma, n)
        latency = (ttft + gen) * lat[minute]
        pass_rate = prof.skill if stream.pass_rate is None else stream.pass_rate
        passed = rng.random(n) < np.clip(pass_rate - drop[minute], 0, 1)
        scored = (~failed) & (rng.random(n) < score_share)
        user = np.minimum(rng.zipf(1.3, n), users) - 1
        cost = in_tok * per_in + out_tok * per_out
        frames.append(pl.DataFrame({
            "_t": t_us,
            "status": np.where(failed, "error", "ok"),
            "model": np.full(n, stream.model),
            "prompt_name": np.full(n, stream.prompt_name),
            "prompt_version": stream.prompt_version + version_bump[minute],
            "user_id": np.char.add("user-", user.astype(str)),
            "input_tokens": np.where(failed, 0, in_tok),
            "output_tokens": np.where(failed, 0, out_tok),
            "latency_ms": np.where(failed, ttft * lat[minute], latency),
            "ttft_ms": np.where(failed, np.nan, ttft * lat[minute]),
            "cost_usd": np.where(failed, np.nan, cost),
            "_scored": scored,
            "_pass": passed,
            "_stream": np.full(n, k),
        }))
    df = pl.concat(frames).sort("_t")
    df = df.with_columns(
        pl.from_epoch("_t", time_unit="us").dt.replace_time_zone("UTC").alias("started_at"),
        pl.col("status").cast(pl.Categorical),
        pl.lit("llm").cast(pl.Categorical).alias("kind"),
        pl.lit("simulated").alias("provider"),
        pl.lit(1, dtype=pl.Int64).alias("simulated"),
        pl.lit(1, dtype=pl.Int64).alias("attempts"),
        pl.lit('["labelled-traffic"]').alias("tags_json"),
        pl.lit(None, dtype=pl.String).alias("experiment_id"),
        pl.lit(None, dtype=pl.String).alias("metadata_json"),
        pl.when(pl.col("status") == "error").then(None).otherwise(pl.col("input_tokens")).alias("input_tokens"),
        pl.when(pl.col("status") == "error").then(None).otherwise(pl.col("output_tokens")).alias("output_tokens"),
        pl.col("cost_usd").fill_nan(None),
        pl.col("ttft_ms").fill_nan(None),
    ).with_row_index("_row")
    scores = df.filter(pl.col("_scored")).select(
        pl.col("_row").cast(pl.Int64).alias("trace_row"), pl.lit("correct").alias("scorer"),
        pl.col("_pass").cast(pl.Float64).alias("value"),
    )
    traces = df.drop("_scored", "_pass", "_stream", "_row")
    labelled.sort(key=lambda inc: inc.start)
    return LabelledTraffic(traces, scores, labelled, start, start + timedelta(minutes=minutes))


def scores_frame(traffic: LabelledTraffic) -> pl.DataFrame:
    """The scores of labelled traffic joined to their calls (``_t``, scope columns), as the quality rules read them."""
    import polars as pl

    calls = traffic.traces.with_row_index("trace_row").with_columns(pl.col("trace_row").cast(pl.Int64))
    return traffic.scores.join(calls, on="trace_row", how="inner")


@dataclass
class DetectionReport:
    """How a rule did on labelled traffic."""

    rule: str
    incidents: int
    detected: int
    delays_min: list[float] = field(default_factory=list)
    """Minutes from each detected incident's start to the check that opened its alert."""
    false_alarms: int = 0
    weeks: float = 0.0

    @property
    def rate(self) -> float:
        return self.detected / self.incidents if self.incidents else float("nan")

    @property
    def median_delay(self) -> float:
        return float(sorted(self.delays_min)[len(self.delays_min) // 2]) if self.delays_min else float("nan")

    @property
    def false_alarms_per_week(self) -> float:
        return self.false_alarms / self.weeks if self.weeks else float("nan")


RULE_FOR_KIND = {"error_rate": "error_rate", "latency": "latency", "cost": "cost_per_call", "quality": "quality", "traffic": "spend"}
"""Which rule kind is meant to catch each incident kind."""


def detection_report(
    alerts: pl.DataFrame, traffic: LabelledTraffic, *, rule_kind: str, since: datetime, grace_minutes: int = 60
) -> DetectionReport:
    """Score one rule kind's alerts against the labelled incidents checked from ``since`` on.

    An incident counts as detected when an alert of ``rule_kind`` for its
    stream opened between its start and its end plus ``grace_minutes``. Any
    other alert of that kind is a false alarm.
    """
    import polars as pl

    from ._canonical import loads

    mine = alerts.filter(pl.col("kind") == rule_kind)
    targets = [inc for inc in traffic.incidents if any(RULE_FOR_KIND.get(k) == rule_kind for k in inc.kinds) and inc.start >= since]
    used: set[int] = set()
    rep = DetectionReport(rule_kind, len(targets), 0, weeks=(traffic.end - since).total_seconds() / (7 * 86400))
    rows = mine.select("first_seen", "scope_json").to_dicts()
    for inc in targets:
        hit = None
        for i, r in enumerate(rows):
            scope = loads(r["scope_json"], {})
            same = all(scope.get(k, v) == v for k, v in inc.scope.items())
            if same and inc.start <= r["first_seen"] <= inc.end + timedelta(minutes=grace_minutes) and i not in used:
                hit = i
                break
        if hit is not None:
            used.add(hit)
            rep.detected += 1
            rep.delays_min.append((rows[hit]["first_seen"] - inc.start).total_seconds() / 60)
    rep.false_alarms = len(rows) - len(used)
    return rep


# -- traffic served through a label (rollouts) -------------------------------------------------


@dataclass(frozen=True)
class VersionEffect:
    """How one prompt version behaves in `label_traffic`, beyond what its template makes it do."""

    error_rate: float | None = None
    """Chance that an attempt fails (calls retry once); None keeps the model's own rate."""
    latency_factor: float = 1.0
    """Latency multiplier."""
    quality_drop: float = 0.0
    """How much less often answers are right (0.3: from 80% to 50%)."""


def label_traffic(
    bench: Workbench,
    name: str,
    dataset: Dataset,
    *,
    label: str = "production",
    requests: int = 2_000,
    users: int = 2_000,
    hours: float = 6.0,
    start: datetime | None = None,
    effects: Mapping[int, VersionEffect] | None = None,
    scorers: Sequence[Scorer] = (),
    score_share: float = 0.25,
    seed: int = 0,
    concurrency: int = 64,
) -> int:
    """Serve ``requests`` simulated calls through ``label``: each user gets the version ``pick`` gives them.

    Users come back (a few heavy ones and a long tail), so each keeps a version
    while the split stays, and every pick records an exposure. ``effects`` makes a
    version fail more, answer slower or worse than its template alone would (a
    regression to catch). A ``score_share`` of the answered calls is scored with
    ``scorers`` against the dataset's reference answers, as a production sample
    scored later would be (reference scorers only: no judge is called). Calls are
    backdated over ``hours`` from ``start``. Returns the calls traced.
    """
    import hashlib
    import math
    from dataclasses import replace

    from ._ids import new_id, utc_now
    from .errors import ConfigError
    from .experiments import SCORE_SQL
    from .providers.simulated import PROFILES
    from .scorers import Example

    if requests < 1 or users < 1 or hours <= 0 or not 0 <= score_share <= 1:
        raise ConfigError(f"label_traffic needs requests >= 1, users >= 1, hours > 0 and score_share in [0, 1], got "
                          f"{requests!r}, {users!r}, {hours!r}, {score_share!r}")
    start = start or datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    rng = random.Random(seed)
    times = sorted(rng.random() * hours for _ in range(requests))
    weights = [1 / (k + 1) for k in range(users)]
    who = rng.choices(range(users), weights=weights, k=requests)
    what = [rng.randrange(len(dataset.items)) for _ in range(requests)]
    providers: dict[int, SimulatedProvider] = {}

    def provider(version: int) -> SimulatedProvider:
        if version not in providers:
            e = (effects or {}).get(version, VersionEffect())
            profiles = ({m: replace(p, skill=max(0.0, p.skill - e.quality_drop)) for m, p in PROFILES.items()}
                        if e.quality_drop else None)
            providers[version] = SimulatedProvider(seed=seed, time_scale=0, error_rate=e.error_rate,
                                                   latency_factor=e.latency_factor, profiles=profiles)
        return providers[version]

    policy = RetryPolicy(max_attempts=2)
    scored: list[tuple[Any, ...]] = []

    async def one(i: int, sem: asyncio.Semaphore) -> None:
        user = f"user-{who[i]:05d}"
        served = bench.prompts.pick(name, label, key=user)
        item = dataset.items[what[i]]
        request = served.to_request(item.inputs, allow_extra=True)
        request.metadata["sample"] = f"label-traffic:{seed}:{i}"
        async with sem:
            result = await bench.tracer.call(
                provider(served.version), request, policy=policy, started=start.timestamp() + times[i] * 3600,
                context={"user_id": user, "tags": ["simulated-traffic"], "metadata": {"item_id": item.item_id}},
            )
        # The sample is a stable function of the call's place in the run, as a hash of its id would be.
        sampled = int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:8], 16) / 2**32 < score_share
        if result.status != "ok" or not scorers or not sampled:
            return
        example = Example(output=result.text, expected=item.expected, inputs=item.inputs, item_id=item.item_id)
        for s in scorers:
            score = await s.score(example, None)
            value = None if score.value is None or not math.isfinite(score.value) else float(score.value)
            scored.append((new_id(), result.trace_id, None, None, item.item_id, None, s.name, value,
                           None if score.passed is None else int(score.passed), score.rationale, None, utc_now()))

    async def run_all() -> None:
        sem = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(one(i, sem) for i in range(requests)))

    _loop.run_sync(run_all())
    # Scores belong to the experiments module's table; its insert is reused as is (experiment-less rows,
    # as production scoring writes them).
    bench.store.writer.put_many(SCORE_SQL, scored)
    bench.flush()
    return requests
