"""The experiment runner against its ideal: calls x latency / concurrency."""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path


def main(calls: int = 2_000, latency_ms: float = 20.0, concurrency: int = 50) -> None:
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    items = calls // 2
    with tempfile.TemporaryDirectory() as tmp:
        provider = SimulatedProvider(seed=0, fixed_latency_ms=latency_ms, error_rate=0.0)
        bench = wb.open(Path(tmp) / "bench.db", provider=provider)
        a = bench.prompts.register("bench", template="Question {i}: what is {i} plus one?", model="claude-haiku-4-5")
        b = bench.prompts.register("bench", template="Q{i}. Add one to {i}.", model="claude-haiku-4-5")
        ds = bench.datasets.load("numbers", [{"i": i, "expected": str(i + 1)} for i in range(items)])
        # Warm-up: first-use imports and price data (about 0.3 s once per process) are not the runner's.
        bench.experiment("warm-up", dataset=bench.datasets.load("one", [{"i": 0}]), variants={"A": a},
                         scorers=[wb.scorers.contains_reference()]).run(progress=False)
        exp = bench.experiment("runner", dataset=ds, variants={"A": a, "B": b},
                               scorers=[wb.scorers.contains_reference()], concurrency=concurrency)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        exp.run(progress=False)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        done = len(exp.completed_cells())
        bench.close()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    ideal = calls * latency_ms / 1000 / concurrency
    print(f"calls:                      {done:,} of {calls:,} at {latency_ms:.0f} ms each, concurrency {concurrency}")
    print(f"wall time:                  {wall:.3f} s; ideal {ideal:.3f} s; ratio {wall / ideal:.3f} (target <= 1.3)")
    print(f"runner CPU per call:        {cpu / calls * 1e6:.0f} us (process CPU incl. tracing, scoring and SQLite)")
