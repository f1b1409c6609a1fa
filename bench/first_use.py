"""First use: what a new user waits for, each step in a fresh process, against a bare interpreter start.

``workbench demo`` twice (the second run has every call recorded and makes
none), then in a new process on the demo's file: ``wb.open``, ``summary()``,
the first chart, and the report; and how long a chart-name typo takes to fail.
Statistics need only ``scipy.special``; what importing ``scipy.stats`` as well
would cost (as ``summary()`` did before) is measured beside it in fresh processes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = r"""
import json, sys, time
t0 = time.perf_counter()
times = {}
def lap(name):
    global t0
    now = time.perf_counter()
    times[name] = now - t0
    t0 = now
import workbench as wb
lap("import workbench")
bench = wb.open(sys.argv[1], provider="simulated")
exp = bench.experiments.get("context-helps")
lap("wb.open + experiments.get")
str(exp.summary())
lap("summary()")
str(exp.compare("A", "B"))
lap("compare()")
exp.chart("quality").to_dict()
lap("first chart (built, spec validated)")
bench.report(exp, sys.argv[2])
lap("report")
bench.close()
times["scipy.stats imported"] = "scipy.stats" in sys.modules
print(json.dumps(times))
"""

TYPO = r"""
import sys, time
t0 = time.perf_counter()
import workbench as wb
bench = wb.open(sys.argv[1], provider="simulated")
exp = bench.experiments.get("context-helps")
try:
    exp.chart("qualty")
except wb.WorkbenchError:
    pass
print(time.perf_counter() - t0, "altair" in sys.modules)
"""


def _run(args: list[str], env: dict[str, str], cwd: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, check=True).stdout
    return time.perf_counter() - t0, out


IMPORT = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "WORKBENCH_DB")}
    with tempfile.TemporaryDirectory() as tmp:
        bare = min(_run([sys.executable, "-c", "pass"], env, tmp)[0] for _ in range(3))
        # Altair as it imports on its own (jsonschema loads rfc3987_syntax at once), and after workbench deferred it.
        altair_alone = min(float(_run([sys.executable, "-c", IMPORT.format("import altair")], env, tmp)[1]) for _ in range(3))
        altair_after = min(float(_run([sys.executable, "-c", "import workbench; " + IMPORT.format("import altair")], env, tmp)[1])
                           for _ in range(3))
        # What summary() no longer imports: scipy.stats after what it does import (polars, scipy.special).
        stats_after = statistics.median(
            float(_run([sys.executable, "-c", "import workbench.stats, polars; " + IMPORT.format("import scipy.stats")], env, tmp)[1])
            for _ in range(3))
        demo = [sys.executable, "-m", "workbench.cli", "demo"]
        first, _ = _run(demo, env, tmp)
        second, out = _run(demo, env, tmp)
        assert "nothing to do: 360 of 360 calls recorded" in out, out
        db, report = str(Path(tmp) / "workbench.db"), str(Path(tmp) / "first-use.html")
        total, out = _run([sys.executable, "-c", STEPS, db, report], env, tmp)
        steps = json.loads(out.splitlines()[-1])
        typo_s, typo_out = _run([sys.executable, "-c", TYPO, db], env, tmp)
        in_process, altair_loaded = typo_out.split()
    print(f"bare interpreter start (baseline):  {bare:.2f} s")
    print(f"import altair, on its own:          {altair_alone:.2f} s")
    print(f"import altair after workbench:      {altair_after:.2f} s  ({altair_after / altair_alone:.2f}x; "
          "jsonschema's IRI grammars load on first use)")
    print(f"workbench demo, first run:          {first:.1f} s  ({first / bare:.0f}x baseline; 360 simulated calls)")
    print(f"workbench demo, again:              {second:.1f} s  ({second / bare:.0f}x; every call recorded, none made)")
    print("a fresh process on the demo file:")
    stats_loaded = steps.pop("scipy.stats imported")
    for name, seconds in steps.items():
        print(f"  {name:38s}{seconds:6.2f} s")
    print(f"  {'scipy.stats imported':38s}{'yes' if stats_loaded else '  no'}  (it would add {stats_after:.2f} s: "
          f"{stats_after / steps['summary()']:.2f}x this summary())")
    print(f"  {'total, process start to report':38s}{total:6.2f} s  ({total / bare:.0f}x baseline)")
    print(f"chart-name typo fails after:        {float(in_process):.2f} s in the process "
          f"({'Altair imported' if altair_loaded == 'True' else 'before Altair is imported'})")
