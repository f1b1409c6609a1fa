"""``exp.run(batch=True)`` on the simulated batch engine, against a live run of the same cells.

Both runs make the same calls on the simulator with no simulated time (``time_scale=0``),
so each figure is the workbench's own work per cell: rendering, submitting and reading
results (batch) or calling (live), recording traces, scoring, committing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def _run(items: int, batch: bool) -> tuple[float, int]:
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    with tempfile.TemporaryDirectory() as tmp:
        bench = wb.open(Path(tmp) / "bench.db", provider=SimulatedProvider(seed=0, time_scale=0))
        a = bench.prompts.register("bench", template="Question {i}: what is {i} plus one?", model="claude-haiku-4-5")
        b = bench.prompts.register("bench", template="Question {i}: add one to {i}.", model="claude-haiku-4-5")
        ds = bench.datasets.load("numbers", [{"i": i, "expected": str(i + 1)} for i in range(items)])
        exp = bench.experiment("batched" if batch else "live", dataset=ds, variants={"A": a, "B": b},
                               scorers=[wb.scorers.contains_reference()], concurrency=50)
        t0 = time.perf_counter()
        exp.run(batch=batch, progress=False)
        elapsed = time.perf_counter() - t0
        done = len(exp.completed_cells())
        bench.close()
    return elapsed, done


def main(items: int = 25_000) -> None:
    _run(10, True)  # first-use imports and price data are not the runner's
    cells = 2 * items
    live, live_done = _run(items, False)
    batched, batch_done = _run(items, True)
    if live_done != cells or batch_done != cells:
        raise SystemExit(f"recorded {live_done} live and {batch_done} batched of {cells} cells")
    print(f"{cells:,} cells on the simulator, no simulated time")
    print(f"live run():              {live:.2f} s ({live / cells * 1e6:.0f} us a cell)")
    print(f"run(batch=True):         {batched:.2f} s ({batched / cells * 1e6:.0f} us a cell; "
          f"{batched / live:.2f}x the live run), in batches of 10,000")
