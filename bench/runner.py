"""The experiment runner against its ideal: calls x latency / concurrency.

Three things run the same 2,000 calls (20 ms each, 50 at a time), each three
times, interleaved, and the medians are printed:

- **floor**: bare asyncio, 50 workers sleeping 20 ms per call and nothing else:
  what the event loop and the OS timers alone cost (sleeps overshoot by up to a
  millisecond), measured in this run so a busy machine shows as a busy floor;
- **runner**: ``exp.run()`` with a provider that only waits 20 ms and answers,
  so the process CPU is the runner's own (rendering, tracing, pricing, scoring,
  committing to SQLite, the loop);
- **simulated**: ``exp.run()`` on the simulated provider (what the demo runs):
  the runner plus the simulator reading each prompt.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

CALLS = 2_000
LATENCY_MS = 20.0
CONCURRENCY = 50
TRIALS = 3


class _Waiting:
    """A provider that waits the latency and answers: every CPU cycle left is the runner's."""

    name = "simulated"
    simulated = True

    def __init__(self, latency_ms: float) -> None:
        from workbench.providers.base import Completion, Usage

        self.latency_s = latency_ms / 1000
        self.answer = Completion(text="The answer is 2.", model="claude-haiku-4-5", stop_reason="end_turn",
                                 usage=Usage(20, 6), latency_ms=latency_ms, ttft_ms=latency_ms / 2,
                                 request_id="msg_bench", provider=self.name)

    async def complete(self, request: Any) -> Any:
        await asyncio.sleep(self.latency_s)
        return self.answer

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _floor(calls: int, latency_ms: float, concurrency: int) -> tuple[float, float]:
    async def go() -> None:
        pending = iter(range(calls))

        async def worker() -> None:
            for _ in pending:
                await asyncio.sleep(latency_ms / 1000)

        await asyncio.gather(*[worker() for _ in range(concurrency)])

    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t0, time.process_time() - cpu0


def _experiment(kind: str, calls: int, latency_ms: float, concurrency: int) -> tuple[float, float, int]:
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    items = calls // 2
    with tempfile.TemporaryDirectory() as tmp:
        provider: Any = (
            _Waiting(latency_ms) if kind == "runner"
            else SimulatedProvider(seed=0, fixed_latency_ms=latency_ms, error_rate=0.0)
        )
        bench = wb.open(Path(tmp) / "bench.db", provider=provider)
        a = bench.prompts.register("bench", template="Question {i}: what is {i} plus one?", model="claude-haiku-4-5")
        b = bench.prompts.register("bench", template="Question {i}: add one to {i}.", model="claude-haiku-4-5")
        ds = bench.datasets.load("numbers", [{"i": i, "expected": str(i + 1)} for i in range(items)])
        # Warm-up: first-use imports and price data (about 0.3 s once per process) are not the runner's.
        bench.experiment("warm-up", dataset=bench.datasets.load("one", [{"i": 0, "expected": "1"}]), variants={"A": a},
                         scorers=[wb.scorers.contains_reference()]).run(progress=False)
        exp = bench.experiment("runner", dataset=ds, variants={"A": a, "B": b},
                               scorers=[wb.scorers.contains_reference()], concurrency=concurrency)
        cpu0, t0 = time.process_time(), time.perf_counter()
        exp.run(progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        done = len(exp.completed_cells())
        bench.close()
    return wall, cpu, done


def main(calls: int = CALLS, latency_ms: float = LATENCY_MS, concurrency: int = CONCURRENCY, trials: int = TRIALS) -> None:
    ideal = calls * latency_ms / 1000 / concurrency
    runs: dict[str, list[tuple[float, float]]] = {"floor": [], "runner": [], "simulated": []}
    for _ in range(trials):
        runs["floor"].append(_floor(calls, latency_ms, concurrency))
        for kind in ("runner", "simulated"):
            wall, cpu, done = _experiment(kind, calls, latency_ms, concurrency)
            if done != calls:
                raise SystemExit(f"{kind}: {done} of {calls} calls recorded")
            runs[kind].append((wall, cpu))
    print(f"{calls:,} calls at {latency_ms:.0f} ms each, concurrency {concurrency}; ideal {ideal:.3f} s; "
          f"median of {trials} interleaved trials")
    floor_wall = statistics.median(w for w, _ in runs["floor"])
    for kind, label in (("floor", "bare asyncio (floor)"), ("runner", "runner, waiting provider"),
                        ("simulated", "runner, simulated provider")):
        wall = statistics.median(w for w, _ in runs[kind])
        cpu = statistics.median(c for _, c in runs[kind])
        print(f"{label:28s} wall {wall:.3f} s = {wall / ideal:.3f}x ideal ({wall / floor_wall:.3f}x floor); "
              f"CPU {cpu / calls * 1e6:5.0f} us per call")
    print("targets: runner CPU <= 100 us per call; runner wall <= 1.1x ideal")
