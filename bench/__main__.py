"""Run every benchmark, or the ones named: ``python -m bench [tracing ingest import runner metrics report otel otel-ingest parquet widgets first_use rollout]``."""

from __future__ import annotations

import sys

from . import first_use, metrics, otel, parquet, report, rollout, runner, tracing, widgets

SUITES = {
    "tracing": tracing.overhead,
    "ingest": tracing.ingest,
    "import": tracing.import_time,
    "runner": runner.main,
    "metrics": metrics.main,
    "report": report.main,
    "otel": otel.overhead,
    "otel-ingest": otel.ingest,
    "parquet": parquet.main,
    "widgets": widgets.main,
    "first_use": first_use.main,
    "rollout": rollout.main,
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
