"""Memory of loading a big JSONL dataset: ``bench.datasets.load`` against plain ``json.loads``.

Each measurement runs in a fresh subprocess and reads its own peak RSS
(``ru_maxrss``), minus the RSS it had before reading the file (Python,
workbench and an open file), so imports are not counted. The baseline is the
least any loader can hold: every line parsed into a list of dicts. The ratio
of the two says how much the loader adds on top of holding the data.

``python -m bench datasets`` loads 1,000,000 items (about 69 MiB);
``WORKBENCH_BENCH_ITEMS=100000`` makes it quicker.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = 1_000_000

_WORDS = ("refund", "invoice", "password", "export", "account", "billing", "login", "sync", "plan", "team")

_CHILD = r"""
import json, resource, sys, time

def rss_kib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

mode, path, db = sys.argv[1:4]
import workbench as wb
bench = wb.open(db, provider="simulated")
before = rss_kib()
t0 = time.perf_counter()
if mode == "workbench":
    ds = bench.datasets.load("big", path)
    n = len(ds)
else:
    with open(path, encoding="utf-8") as fh:
        data = [json.loads(line) for line in fh if line.strip()]
    n = len(data)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "before_kib": before, "peak_kib": peak, "seconds": seconds}))
"""


def write_jsonl(path: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` support-style items (about 72 bytes a line); returns the file's size in bytes."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            a, b = rng.sample(_WORDS, 2)
            fh.write(json.dumps({"id": f"q{i:07d}", "question": f"How do I {a} my {b}?",
                                 "expected": f"{rng.randint(1, 999)}"}) + "\n")
    return path.stat().st_size


def _measure(mode: str, path: Path, db: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path), str(db)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    n = int(os.environ.get("WORKBENCH_BENCH_ITEMS", N))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        t0 = time.perf_counter()
        size = write_jsonl(path, n)
        print(f"{n:,} items, {size / 2**20:.1f} MiB of JSONL (written in {time.perf_counter() - t0:.1f} s)")
        base = _measure("json", path, Path(tmp) / "base.db")
        ours = _measure("workbench", path, Path(tmp) / "wb.db")
    if base["n"] != n or ours["n"] != n:
        raise SystemExit(f"expected {n} items, the loaders saw {base['n']} and {ours['n']}")
    per_million = 1_000_000 / n
    base_mib = (base["peak_kib"] - base["before_kib"]) / 1024
    ours_mib = (ours["peak_kib"] - ours["before_kib"]) / 1024
    print(f"json.loads into a list:     peak +{base_mib:7.0f} MiB ({base_mib * per_million:,.0f} MiB per million items), "
          f"{base['seconds']:.1f} s")
    print(f"bench.datasets.load:        peak +{ours_mib:7.0f} MiB ({ours_mib * per_million:,.0f} MiB per million items), "
          f"{ours['seconds']:.1f} s; peak RSS {ours['peak_kib'] / 2**20:.2f} GiB")
    print(f"ratio to the baseline:      {ours_mib / base_mib:.2f}x memory, {ours['seconds'] / base['seconds']:.1f}x time")


if __name__ == "__main__":
    main()
