"""Monitoring: how well each detector finds labelled incidents, false alarms in quiet weeks, and speed.

Traffic comes from ``simulation.labelled_traffic`` (the simulated models' latency and
prices, a daily rhythm, Poisson arrivals), drawn in memory for the detector figures and
written to a file for the timings. The tests assert the targets with margins; this prints
the figures.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
SIZES = {
    # rule kind: (incident setting, sizes from below the documented minimum to well above it)
    "error_rate": ("error_rate", (0.04, 0.08, 0.15)),
    "latency": ("latency_factor", (1.2, 1.3, 1.5)),
    "cost_per_call": ("input_factor", (1.3, 1.7, 2.5)),
    "spend": ("traffic_factor", (1.75, 2.5, 4.0)),
    "quality": ("quality_drop", (0.2, 0.4, 0.6)),
}
INCIDENTS = 12


def detection(rate: float = 30.0) -> None:
    """Per detector and size: detection rate, median and worst delay, false alarms beside the incidents."""
    import numpy as np

    from workbench import simulation as sim
    from workbench.monitor import detect

    print(f"labelled incidents: {INCIDENTS} one-hour incidents per size, any time of day, traffic {rate:g} calls a minute "
          "on average with a daily rhythm (a third of it at night), 20% of ok calls scored; checks every minute")
    print(f"  {'detector':14} {'size':>22} {'detected':>9} {'within 15 min':>14} {'median delay':>13} {'worst':>7}")
    for kind, (setting, sizes) in SIZES.items():
        for size in sizes:
            rng = np.random.default_rng(3)
            incidents = [sim.Incident(start_hour=48 + 12 * i + 4 * rng.random(), hours=1.0, **{setting: size})
                         for i in range(INCIDENTS)]
            traffic = sim.labelled_traffic(start=START, days=2 + INCIDENTS / 2 + 0.5, incidents=incidents, seed=4,
                                           streams=[sim.Stream(calls_per_minute=rate)], score_share=0.2)
            since = START + timedelta(days=2)
            found = detect(traffic.traces, since, traffic.end, scores=sim.scores_frame(traffic))
            rep = sim.detection_report(found, traffic, rule_kind=kind, since=since)
            within = sum(d <= 15 for d in rep.delays_min)
            worst = f"{max(rep.delays_min):.0f} min" if rep.delays_min else "n/a"
            median = f"{rep.median_delay:.0f} min" if rep.delays_min else "n/a"
            print(f"  {kind:14} {setting + ' ' + format(size, 'g'):>22} {rep.detected:>4}/{rep.incidents:<4} "
                  f"{within:>9}/{rep.incidents:<4} {median:>13} {worst:>7}", flush=True)


def quiet(weeks: int = 4, streams: int = 3, rate: float = 15.0) -> None:
    """False alarms per simulated week per rule on traffic with no incident."""
    import polars as pl

    from workbench import simulation as sim
    from workbench.monitor import default_rules, detect

    kinds = [r.kind for r in default_rules()]
    counts = dict.fromkeys(kinds, 0)
    total = 0.0
    for w in range(weeks):
        traffic = sim.labelled_traffic(
            start=START, days=9, seed=100 + w, score_share=0.2,
            streams=[sim.Stream(prompt_name=f"feature-{i}", calls_per_minute=rate) for i in range(streams)],
        )
        since = START + timedelta(days=2)
        found = detect(traffic.traces, since, traffic.end, scores=sim.scores_frame(traffic))
        for k in kinds:
            counts[k] += found.filter(pl.col("kind") == k).height
        total += (traffic.end - since).days / 7
    per_week = ", ".join(f"{k} {counts[k] / total:.2f}" for k in kinds)
    print(f"quiet weeks: {total:g} simulated weeks x {streams} scopes at {rate:g} calls a minute each: "
          f"false alarms per week per rule: {per_week} (target <= 1; stated bound 0.5)")


def speed(calls_per_day: int = 100_000, repeats: int = 7) -> None:
    """All default rules over a day of ``calls_per_day`` traces in a file: one check, a day's replay, vs metrics()."""
    import workbench as wb
    from workbench import simulation as sim

    with tempfile.TemporaryDirectory() as tmp:
        bench = wb.open(Path(tmp) / "monitor.db", provider="simulated")
        traffic = sim.labelled_traffic(start=START, days=1, seed=5, score_share=0.05,
                                       streams=[sim.Stream(calls_per_minute=calls_per_day / 1440)],
                                       incidents=[sim.Incident(start_hour=15, hours=1, error_rate=0.2)])
        t0 = time.perf_counter()
        n = traffic.write(bench)
        write_s = time.perf_counter() - t0
        end = START + timedelta(days=1)
        t0 = time.perf_counter()
        bench.monitor.check(now=end)
        cold = time.perf_counter() - t0
        checks, metrics = [], []
        for i in range(repeats):
            t0 = time.perf_counter()
            bench.monitor.check(now=end - timedelta(minutes=i + 1))
            checks.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bench.metrics(every="1h", since=START, until=end)
            metrics.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        found = bench.monitor.replay(START, end)
        replay_s = time.perf_counter() - t0
        bench.close()
    check_s, metrics_s = statistics.median(checks), statistics.median(metrics)
    print(f"a day of {n:,} traces ({len(traffic.scores):,} scored), written in bulk in {write_s:.1f} s ({n / write_s:,.0f} a second)")
    print(f"one check, all {5} default rules:  {check_s * 1000:.0f} ms (first in the process {cold * 1000:.0f} ms, "
          f"imports scipy and starts the reader); bench.metrics(every='1h') over the day: {metrics_s * 1000:.0f} ms "
          f"({check_s / metrics_s:.2f}x)")
    print(f"replay of the day, a check every minute (1,440 checks): {replay_s:.2f} s (target < 1 s; "
          f"{replay_s / metrics_s:.1f}x one metrics() call); {found.height} alert(s)")


def main() -> None:
    speed()
    quiet()
    detection()


if __name__ == "__main__":
    main()
