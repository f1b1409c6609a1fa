"""Building the HTML report of a 1,000-item x 2-variant experiment."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def main(items: int = 1_000) -> None:
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    with tempfile.TemporaryDirectory() as tmp:
        bench = wb.open(Path(tmp) / "bench.db", provider=SimulatedProvider(seed=0, time_scale=0))
        a = bench.prompts.register("r", template="Question: {question}", model="claude-haiku-4-5")
        b = bench.prompts.register("r", template="Context: {context}\nQuestion: {question}", model="claude-haiku-4-5")
        rows = [{"context": f"Plan {i} costs {i} dollars. Plan {i} allows {i % 7 + 1} devices.",
                 "question": f"How many devices does plan {i} allow?", "expected": f"{i % 7 + 1} devices",
                 "cluster": f"c{i % 50}"} for i in range(items)]
        ds = bench.datasets.load("big", rows)
        exp = bench.experiment("big", dataset=ds, variants={"A": a, "B": b},
                               scorers=[wb.scorers.contains_reference()], concurrency=64)
        t0 = time.perf_counter()
        exp.run(progress=False)
        run_s = time.perf_counter() - t0
        out = Path(tmp) / "report.html"
        t0 = time.perf_counter()
        bench.report(exp, out)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        bench.report(exp, out)
        warm_s = time.perf_counter() - t0
        size = out.stat().st_size
        bench.close()
    print(f"experiment:                 {items:,} items x 2 variants run in {run_s:.1f} s (simulated, no sleeping)")
    print(f"report built, first:        {cold_s:.2f} s (target < 5 s; includes importing Altair and loading the Vega bundle)")
    print(f"report built, again:        {warm_s:.2f} s; {size / 1e6:.2f} MB (limit 3 MB)")
