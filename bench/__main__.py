"""Run every benchmark, or the ones named: ``python -m bench [tracing ingest import runner metrics report otel otel-ingest parquet widgets first_use gateway durability charts monitor postgres rollout]``."""

from __future__ import annotations

import sys

from . import charts, durability, first_use, gateway, metrics, monitor, otel, parquet, report, rollout, runner, tracing, widgets

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
    "gateway": gateway.main,
    "durability": durability.main,
    "charts": charts.main,
    "monitor": monitor.main,
    "rollout": rollout.main,
}


def _postgres() -> None:
    """SQLite against PostgreSQL: ingest and metrics over 100,000 traces (``bench/postgres.py``)."""
    from . import postgres

    postgres.main()


SUITES["postgres"] = _postgres


def _datasets() -> None:
    """Peak memory of loading a million-item JSONL (``bench/datasets.py``)."""
    from . import datasets

    datasets.main()


SUITES["datasets"] = _datasets


def _batches() -> None:
    """``exp.run(batch=True)`` on the simulated batch engine against a live run (``bench/batches.py``)."""
    from . import batches

    batches.main()


SUITES["batches"] = _batches


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
