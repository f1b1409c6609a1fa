"""Simulated production traffic, for demos and the monitoring notebook.

Requests go through the simulated provider and the normal tracer, backdated
over a period, with an optional incident (more errors, slower answers). Every
trace is marked simulated and tagged ``simulated-traffic``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _loop
from ._retry import RetryPolicy
from .providers.simulated import SimulatedProvider

if TYPE_CHECKING:
    from .bench import Workbench
    from .datasets import Dataset
    from .prompts import PromptVersion
    from .scorers import Scorer


@dataclass(frozen=True)
class Incident:
    """A window of degraded service."""

    start_hour: float
    """Hours after the start of the traffic."""
    hours: float
    """How long it lasts."""
    error_rate: float = 0.5
    """Chance that an attempt fails during the incident."""
    latency_factor: float = 2.5
    """Latency multiplier during the incident."""

    def covers(self, hour: float) -> bool:
        return self.start_hour <= hour < self.start_hour + self.hours


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
) -> int:
    """Trace ``requests`` simulated calls spread over ``hours`` with a daily rhythm.

    Returns the number of calls traced. Busier in the (UTC) afternoon, quieter at
    night; during ``incident`` the error rate and latency go up.
    """
    start = start or datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    rng = random.Random(seed)
    # Draw request times from a day-shaped density by rejection.
    times: list[float] = []
    while len(times) < requests:
        h = rng.random() * hours
        clock = (start.hour + h) % 24
        weight = 0.25 + 0.75 * max(0.0, 1 - abs(clock - 15) / 9)
        if rng.random() < weight:
            times.append(h)
    times.sort()
    normal = SimulatedProvider(seed=seed, time_scale=0)
    degraded = SimulatedProvider(
        seed=seed, time_scale=0,
        error_rate=incident.error_rate if incident else None,
        latency_factor=incident.latency_factor if incident else 1.0,
    )
    policy = RetryPolicy(max_attempts=2)
    items = dataset.items

    async def one(i: int, hour: float, sem: asyncio.Semaphore) -> None:
        item = items[rng_items[i]]
        provider = degraded if incident is not None and incident.covers(hour) else normal
        request = prompt.to_request(item.inputs, allow_extra=True)
        request.metadata["sample"] = f"traffic:{seed}:{i}"
        async with sem:
            await bench.tracer.call(
                provider, request, policy=policy,
                started=start.timestamp() + hour * 3600,
                context={"user_id": f"user-{rng_users[i]:03d}", "tags": ["simulated-traffic"],
                         "metadata": {"item_id": item.item_id}},
            )

    rng_items = [rng.randrange(len(items)) for _ in times]
    # A few heavy users and a long tail (Zipf-like weights).
    rng_users = rng.choices(range(users), weights=[1 / (k + 1) for k in range(users)], k=len(times))

    async def run_all() -> None:
        sem = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(one(i, h, sem) for i, h in enumerate(times)))

    _loop.run_sync(run_all())
    bench.flush()
    return len(times)




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
