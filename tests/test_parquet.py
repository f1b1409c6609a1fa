"""Parquet: export by day, lazy scans that give the same frames and metrics as the file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import workbench as wb
from workbench import frames, traces
from workbench.errors import ConfigError

pytestmark = pytest.mark.backends("sqlite", "postgres")


def spread_over_days(bench, n: int = 90) -> None:
    """Calls and spans on three UTC days, some failed and some unpriced, then an experiment today."""
    rows = []
    for i in range(n):
        day = 10 + i % 3
        ok = i % 7 != 0
        rows.append(traces.row(
            id=f"0190{day:04d}-0000-7000-8000-{i:012d}", trace_id=f"t{i}", kind="llm" if i % 5 else "span",
            name="chat", started_at=f"2026-03-{day:02d}T{i % 24:02d}:00:00.{i:06d}+00:00", provider="anthropic",
            model=("claude-haiku-4-5", "claude-sonnet-4-5")[i % 2], user_id=f"u{i % 4}", status="ok" if ok else "error",
            input_tokens=100 + i, output_tokens=10 + i, cache_read_tokens=i, cache_write_tokens=0,
            latency_ms=200.0 + 13 * i if ok else None, ttft_ms=50.0 + i if ok else None,
            cost_usd=None if i % 11 == 0 or not ok else 0.0001 * i, tags_json='["a"]', metadata_json='{"k": 1}',
        ))
    bench.store.writer.put_many(traces.INSERT_SQL, rows)
    v = bench.prompts.register("support", "Q: {question}", "claude-haiku-4-5", max_tokens=50)
    ds = bench.datasets.load("tiny", [{"id": f"q{i}", "inputs": {"question": f"q{i}?"}, "expected": "q"} for i in range(3)])
    bench.experiment("tiny", dataset=ds, variants={"A": v}, scorers=[wb.scorers.contains_reference()]).run()
    bench.flush()


def test_parquet_round_trip_gives_the_same_frames_and_metrics(bench, tmp_path):
    spread_over_days(bench)
    counts = wb.parquet.export_parquet(bench, tmp_path / "lake")
    assert counts == {"traces": frames.traces_df(bench.store).height, "scores": 3, "experiments": 1}
    src = wb.scan(tmp_path / "lake")
    days = src.days()
    assert days[:3] == ["2026-03-10", "2026-03-11", "2026-03-12"] and len(days) == 4
    assert sorted(p.name for p in (tmp_path / "lake" / "traces").iterdir()) == [f"day={d}" for d in days]

    assert_frame_equal(frames.traces_df(src), frames.traces_df(bench.store))
    assert_frame_equal(frames.traces_df(src, parse_times=False), frames.traces_df(bench.store, parse_times=False))
    assert_frame_equal(frames.scores_df(src), frames.scores_df(bench.store))
    assert_frame_equal(frames.experiments_df(src), frames.experiments_df(bench.store))
    for kwargs in ({}, {"by": "model"}, {"by": ["model", "user_id"]}, {"every": "1d", "by": "status"},
                   {"since": "2026-03-11", "until": "2026-03-12T12:00:00Z", "by": "model"}):
        assert_frame_equal(frames.metrics(src, **kwargs), frames.metrics(bench.store, **kwargs),
                           check_exact=False, rel_tol=1e-12)
    filtered = frames.traces_df(src, since="2026-03-11", until="2026-03-12", model="claude-haiku-4-5")
    assert_frame_equal(filtered, frames.traces_df(bench.store, since="2026-03-11", until="2026-03-12",
                                                  model="claude-haiku-4-5"))
    assert filtered.height == 15


def test_exporting_again_rewrites_only_the_days_it_covers(bench, tmp_path):
    spread_over_days(bench)
    lake = tmp_path / "lake"
    wb.parquet.export_parquet(bench, lake)
    before = {p: p.stat().st_mtime_ns for p in lake.rglob("*.parquet")}
    counts = wb.parquet.export_parquet(bench, lake, since="2026-03-11T15:00:00Z", until="2026-03-12")
    assert counts["traces"] == 30  # the whole of 2026-03-11, not only its afternoon
    after = {p: p.stat().st_mtime_ns for p in lake.rglob("*.parquet")}
    changed = {p.parent.name for p in after if after[p] != before[p]}
    assert changed == {"day=2026-03-11"}
    assert frames.traces_df(wb.scan(lake)).height == frames.traces_df(bench.store).height  # no duplicates


def test_an_empty_folder_gives_empty_frames_with_the_right_columns(tmp_path):
    (tmp_path / "lake").mkdir()
    src = wb.scan(tmp_path / "lake")
    df = frames.traces_df(src)
    assert df.height == 0 and df.columns == list(traces.COLUMNS)
    assert frames.metrics(src)["requests"].to_list() == [0]
    with pytest.raises(ConfigError, match="is not a folder"):
        wb.scan(tmp_path / "nope")


def test_cli_export_parquet(bench, tmp_path):
    from click.testing import CliRunner

    from workbench.cli import cli

    spread_over_days(bench)
    result = CliRunner().invoke(cli, ["export", "parquet", str(tmp_path / "out"), "--db", bench.path])
    assert result.exit_code == 0, result.output
    assert "traces" in result.output and Path(tmp_path / "out" / "traces" / "day=2026-03-10").is_dir()
    assert pl.read_parquet(tmp_path / "out" / "traces" / "day=2026-03-10" / "part-0.parquet").height == 30


def test_days_exported_before_a_new_column_scan_beside_newer_ones(bench, tmp_path):
    spread_over_days(bench)
    wb.parquet.export_parquet(bench, tmp_path / "lake")
    # An older workbench wrote the first day: it had no cache_write_1h_tokens column.
    old = next((tmp_path / "lake" / "traces").glob("day=2026-03-10/*.parquet"))
    pl.read_parquet(old).drop("cache_write_1h_tokens").write_parquet(old)
    src = wb.scan(tmp_path / "lake")
    df = frames.traces_df(src)
    assert df.height == frames.traces_df(bench.store).height
    assert_frame_equal(frames.metrics(src, by="model"), frames.metrics(bench.store, by="model"),
                       check_exact=False, rel_tol=1e-12)
