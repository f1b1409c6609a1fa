"""Run every benchmark, or the ones named: ``python -m bench [tracing ingest import runner metrics report monitor]``."""

from __future__ import annotations

import sys

from . import metrics, monitor, report, runner, tracing

SUITES = {
    "tracing": tracing.overhead,
    "ingest": tracing.ingest,
    "import": tracing.import_time,
    "runner": runner.main,
    "metrics": metrics.main,
    "report": report.main,
    "monitor": monitor.main,
}


def main(argv: list[str]) -> None:
    names = argv or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    for name in names:
        print(f"\n== {name} ==", flush=True)
        SUITES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
