"""What a chart costs in a notebook: kernel time and saved bytes per output, by static fallback.

The baseline is building the chart's Vega-Lite spec (``chart.to_dict()``), which
every renderer pays; each fallback is reported as a multiple of it, measured in
the same run. Charts are those of a 60-item x 2-variant x 3-repeat experiment
on the simulated provider (the demo's size).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

ROUNDS = 5


def _median_s(fn) -> float:
    times = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    import workbench as wb
    from workbench import charts
    from workbench.providers.simulated import SimulatedProvider

    with tempfile.TemporaryDirectory() as tmp:
        bench = wb.open(Path(tmp) / "bench.db", provider=SimulatedProvider(seed=0, time_scale=0))
        a = bench.prompts.register("c", template="Question: {question}", model="claude-haiku-4-5")
        b = bench.prompts.register("c", template="Context: {context}\nQuestion: {question}", model="claude-haiku-4-5")
        rows = [{"context": f"Plan {i} allows {i % 7 + 1} devices.", "question": f"Devices on plan {i}?",
                 "expected": f"{i % 7 + 1} devices"} for i in range(60)]
        exp = bench.experiment("charts", dataset=bench.datasets.load("c", rows), variants={"A": a, "B": b},
                               scorers=[wb.scorers.contains_reference()], repeats=3).run(progress=False)
        built = {kind: exp.chart(kind) for kind in ("quality", "paired", "latency", "cost_quality")}
        bench.close()

    charts.mimebundle(built["quality"])  # the first call starts vl-convert's engine: not a per-chart cost
    print(f"{'chart':14} {'spec (base)':>12} {'no fallback':>14} {'+ svg':>14} {'+ png':>14}   bytes: none / svg / png")
    for kind, chart in built.items():
        base = _median_s(chart.to_dict)
        cells = []
        sizes = []
        for fallback in (None, "svg", "png"):
            t = _median_s(lambda f=fallback: charts.mimebundle(chart, fallback=f))
            data, meta = charts.mimebundle(chart, fallback=fallback)
            cells.append(f"{t * 1000:6.0f} ms {t / base:4.1f}x")
            sizes.append(len(json.dumps({"data": data, "metadata": meta})))
        print(f"{kind:14} {base * 1000:9.0f} ms {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}   "
              + " / ".join(f"{s / 1024:,.0f} KB" for s in sizes))
