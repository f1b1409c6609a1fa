"""Rollouts: what exposure logging adds to ``pick()``, and a readout of many production calls.

- ``pick()`` with exposure logging against ``pick(expose=False)``, interleaved in
  rounds so machine noise hits both alike: for units seen for the first time (each
  pick queues an exposure row) and for returning units (the in-memory seen-set
  answers). A traced call on the simulator is printed beside them for scale.
- ``rollout.readout()`` over a file of production calls against ``bench.metrics(by=
  "prompt_version")`` over the same calls (one read of the same rows, no statistics).
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path


def _split_bench(folder: str, shares: tuple[float, float]):
    """A workbench in ``folder`` whose label ``production`` splits prompt ``support`` between v1 and v2."""
    import workbench as wb
    from workbench.providers.simulated import SimulatedProvider

    bench = wb.open(Path(folder) / "bench.db", provider=SimulatedProvider(seed=0, time_scale=0))
    v1 = bench.prompts.register("support", "Q: {question}", "claude-haiku-4-5")
    v2 = bench.prompts.register("support", "Question: {question}", "claude-haiku-4-5")
    bench.prompts.set_label("support", "production", v1)
    bench.prompts.set_split("support", "production", {v1: shares[0], v2: shares[1]})
    return bench


def _picks(reg, keys: list[str], expose: bool) -> float:
    t0 = time.perf_counter()
    for k in keys:
        reg.pick("support", "production", key=k, expose=expose)
    return (time.perf_counter() - t0) / len(keys) * 1e6


def pick_overhead(rounds: int = 6, per_round: int = 20_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = _split_bench(tmp, (0.9, 0.1))
        reg = bench.prompts
        _picks(reg, [f"warm-{i}" for i in range(2_000)], True)  # imports, statement cache, writer thread
        new_on, new_off, back_on, back_off = [], [], [], []
        for r in range(rounds):
            fresh = [f"user-{r}-{i}" for i in range(per_round)]
            new_off.append(_picks(reg, [f"off-{k}" for k in fresh], False))
            new_on.append(_picks(reg, fresh, True))   # every pick queues an exposure row
            back_off.append(_picks(reg, fresh, False))
            back_on.append(_picks(reg, fresh, True))  # each unit seen already: the set answers
        bench.flush()
        (rows,) = bench.store.execute("SELECT COUNT(*) FROM exposures").fetchone()
        t0 = time.perf_counter()
        for i in range(300):
            bench.complete(reg.pick("support", "production", key=f"call-{i}"), question="How do I reset my password?")
        call = (time.perf_counter() - t0) / 300 * 1e6
        bench.close()
    med = statistics.median
    print(f"pick(), new units:          {med(new_on):.1f} us with exposure vs {med(new_off):.1f} us without "
          f"(ratio {med(new_on) / med(new_off):.2f}); {rows:,} exposure rows written for "
          f"{rounds * per_round + 2_300:,} units")
    print(f"pick(), returning units:    {med(back_on):.1f} us vs {med(back_off):.1f} us (ratio {med(back_on) / med(back_off):.2f})")
    print(f"for scale, pick + a traced call on the simulator: {call:.0f} us; exposure adds "
          f"{(med(new_on) - med(new_off)) / call:.1%} of it")


def readout_speed(calls: int = 200_000, users: int = 20_000) -> None:
    from workbench import traces
    from workbench.prompts import point

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        bench = _split_bench(tmp, (0.5, 0.5))
        state = bench.prompts.label_state("support", "production")
        # Calls written in bulk as pick() + a traced call would write them, with users who come back.
        weights = [1 / (k + 1) for k in range(users)]
        who = rng.choices(range(users), weights=weights, k=calls)
        rows = []
        t = time.time() - 86_400
        for i, u in enumerate(who):
            key = f"user-{u}"
            version = state.version_at(point("support", "production", key))
            status = "error" if rng.random() < 0.01 else "ok"
            rows.append(traces.row(
                id=f"{i:036d}", trace_id=f"{i:036d}", kind="llm", name="chat claude-haiku-4-5",
                started_at=traces.iso_utc(t + i * 0.4), provider="simulated", simulated=1, model="claude-haiku-4-5",
                prompt_name="support", prompt_version=version, user_id=key, status=status,
                latency_ms=rng.lognormvariate(6.2, 0.35) if status == "ok" else None,
                cost_usd=0.00025 * rng.uniform(0.8, 1.2) if status == "ok" else None,
                metadata_json=json.dumps({"label": "production", "label_move": state.move_id, "unit": key}),
            ))
            bench.prompts.record_exposure("support", "production", key, version, move_id=state.move_id)
        bench.store.writer.put_many(traces.INSERT_SQL, rows)
        bench.flush()
        ro = bench.rollout("support")
        t0 = time.perf_counter()
        bench.metrics(by="prompt_version")
        first_metrics = time.perf_counter() - t0
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            readout = ro.readout()
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bench.metrics(by="prompt_version", prompt_name="support")
        metrics_again = time.perf_counter() - t0
        bench.close()
    med = statistics.median(times)
    print(f"readout of {calls:,} calls by {readout.figure('error_rate').d.units_a + readout.figure('error_rate').d.units_b:,} "
          f"units: {med:.2f} s (median of 3; first {times[0]:.2f} s)")
    print(f"  vs metrics(by=prompt_version) over the same calls: {metrics_again:.2f} s (first in process {first_metrics:.2f} s); "
          f"ratio {med / max(metrics_again, 1e-9):.1f}x: the readout reads the rows again and adds the statistics")


def main() -> None:
    pick_overhead()
    readout_speed()
