"""Simulated production traffic through a gateway, for the gateway notebook and demos.

Questions come from a dataset with a popularity skew (a few asked very often),
about a third reworded the way people do ("quick question: ...", "... thanks"),
so both caches have something to do. Users have tiers and a few are heavy
enough to meet their limits. An optional outage makes the primary provider
answer 529 for some hours, so fallbacks and the breaker show up. Time is
simulated: calls are backdated over ``days`` and a ``SimClock`` drives the
breaker and the limits, so cool-downs and daily budgets follow simulated time.
Every trace is marked simulated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .. import _loop
from ..errors import Overloaded
from ..providers.simulated import SimulatedProvider

if TYPE_CHECKING:
    from ..bench import Workbench
    from ..datasets import Dataset
    from ..prompts import PromptVersion
    from ._core import Gateway

__all__ = ["Outage", "SimClock", "flaky", "simulate", "simulated_openai"]

REWORDINGS = (
    "{q}", "{q}", "{q}", "Quick question: {q}", "{q} Thanks!", "Hi, {q_lower}", "Hello! {q}", "{q} Thank you.",
)
"""How people reword the same question; the plain form is the most common."""


class SimClock:
    """The simulated time (Unix seconds) that breakers and limits read; ``simulate`` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Outage:
    """The primary answers 529 from ``start_hour`` (after the traffic starts) for ``hours``."""

    start_hour: float
    hours: float


class _Flaky:
    """A provider that is overloaded while the clock is inside an outage."""

    def __init__(self, inner: Any, clock: SimClock, start: float, outage: Outage | None) -> None:
        self.inner = inner
        self.name = inner.name
        self.simulated = inner.simulated
        self.clock = clock
        self.window = None if outage is None else (start + outage.start_hour * 3600, start + (outage.start_hour + outage.hours) * 3600)

    async def complete(self, request: Any) -> Any:
        if self.window is not None and self.window[0] <= self.clock() < self.window[1]:
            raise Overloaded("simulated outage: overloaded", status_code=529, error_type="overloaded_error")
        return await self.inner.complete(request)

    async def sleep(self, seconds: float) -> None:
        return None


def simulated_openai(seed: int = 0) -> SimulatedProvider:
    """A simulated stand-in for an OpenAI-compatible fallback, priced with OpenAI's prices."""
    provider = SimulatedProvider(seed=seed + 101, time_scale=0, error_rate=0.0)
    provider.name = "simulated-openai"  # type: ignore[misc]
    provider.price_provider = "openai"  # type: ignore[attr-defined]
    return provider


def flaky(provider: Any, clock: SimClock, outage: Outage | None) -> Any:
    """``provider``, overloaded during ``outage`` (hours after the clock's current time)."""
    return _Flaky(provider, clock, clock.now, outage)


def simulate(
    bench: Workbench,
    gateway: Gateway,
    prompt: PromptVersion,
    dataset: Dataset,
    *,
    clock: SimClock,
    days: float = 7.0,
    requests: int = 3_000,
    users: int = 60,
    heavy_users: int = 3,
    personal: float = 0.35,
    seed: int = 0,
) -> dict[str, int]:
    """Send ``requests`` simulated calls through ``gateway`` over ``days``; returns counts by outcome.

    Calls run one after another in simulated time order (the clock moves to each
    call's time first), tagged ``simulated-traffic``, with users ``user-000`` ...
    (tier ``free`` or ``pro``; the first ``heavy_users`` send a large share). A
    share ``personal`` of questions carry an order number, as real ones often do.
    """
    rng = random.Random(seed)
    start = clock.now
    span = days * 86_400
    times = sorted(start + rng.random() * span for _ in range(requests))
    items = dataset.items
    popularity = [1 / (k + 1) ** 0.9 for k in range(len(items))]
    user_weights = [8.0 if u < heavy_users else 1 / (u + 1) ** 0.5 for u in range(users)]
    tiers = {u: ("pro" if rng.random() < 0.3 else "free") for u in range(users)}
    counts: dict[str, int] = {}

    async def run_all() -> None:
        for at in times:
            clock.now = at
            item = items[rng.choices(range(len(items)), weights=popularity)[0]]
            user = rng.choices(range(users), weights=user_weights)[0]
            inputs = dict(item.inputs)
            question = str(inputs.get("question", ""))
            form = rng.choice(REWORDINGS)
            question = form.format(q=question, q_lower=question[:1].lower() + question[1:])
            if rng.random() < personal:
                # Account details make a question one of a kind: no cache can answer it.
                question += f" My order number is {rng.randrange(10_000, 99_999)}."
            inputs["question"] = question
            request = prompt.to_request(inputs, allow_extra=True)
            request.metadata["caller"] = {"user_id": f"user-{user:03d}", "metadata": {"tier": tiers[user]}}
            result = await bench.tracer.call(
                gateway, request, started=at,
                context={"user_id": f"user-{user:03d}", "tags": ["simulated-traffic"],
                         "metadata": {"item_id": item.item_id, "tier": tiers[user]}},
            )
            outcome = result.status if result.error is None else type(result.error).__name__
            counts[outcome] = counts.get(outcome, 0) + 1

    _loop.run_sync(run_all())
    bench.flush()
    return counts

