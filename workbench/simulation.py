"""Simulated production traffic, for demos and the monitoring notebook.

Requests go through the simulated provider and the normal tracer, backdated
over a period, with an optional incident (more errors, slower answers). Every
trace is marked simulated and tagged ``simulated-traffic``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from . import _loop
from ._retry import RetryPolicy
from .providers.simulated import SimulatedProvider

if TYPE_CHECKING:
    from .bench import Workbench
    from .datasets import Dataset
    from .prompts import PromptVersion


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


