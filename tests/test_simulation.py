"""Simulated production traffic: idempotent per seed and window, and the labelled incident generator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from workbench import simulation as sim
from workbench.errors import ConfigError
from workbench.providers.simulated import SimulatedProvider

DAY = datetime(2026, 11, 26, tzinfo=timezone.utc)
ROWS = [{"context": f"Plan {i} allows {i % 5 + 1} devices.", "question": f"How many devices does plan {i} allow?",
         "expected": f"{i % 5 + 1} devices"} for i in range(12)]


@pytest.fixture
def support(bench):
    prompt = bench.prompts.register("support", template="{context}\n\nQuestion: {question}", model="claude-haiku-4-5")
    return prompt, bench.datasets.load("plans", ROWS)


def _user_counts(bench) -> dict[str, int]:
    df = bench.traces_df(kind="llm", columns=["user_id"])
    return dict(df.group_by("user_id").len().iter_rows())


def test_production_traffic_twice_adds_nothing_and_says_so(bench, support):
    prompt, ds = support
    first = sim.production_traffic(bench, prompt, ds, start=DAY, hours=6, requests=300, seed=3)
    counts = _user_counts(bench)
    again = sim.production_traffic(bench, prompt, ds, start=DAY, hours=6, requests=300, seed=3)
    assert (first.added, first.requests) == (300, 300)
    assert (again.added, again.requests) == (0, 300)
    assert "already in the file: nothing appended" in str(again)
    assert _user_counts(bench) == counts  # user-000 keeps its count instead of doubling
    assert sum(counts.values()) == 300


def test_another_seed_in_the_same_window_appends_and_warns(bench, support):
    prompt, ds = support
    sim.production_traffic(bench, prompt, ds, start=DAY, hours=6, requests=200, seed=1)
    with pytest.warns(UserWarning, match="already holds 200 simulated calls from another run"):
        run = sim.production_traffic(bench, prompt, ds, start=DAY, hours=6, requests=200, seed=2)
    assert run.added == 200 and run.others == 200
    assert "from other runs" in str(run)
    assert bench.traces_df(kind="llm", columns=["id"]).height == 400


def test_a_run_cut_short_is_completed_by_the_next(bench, support, monkeypatch):
    prompt, ds = support
    real = SimulatedProvider.complete

    async def fail_late(self, request):
        # Something that stops the run (a provider's own failures would only be error traces).
        if int(request.metadata["sample"].rsplit(":", 1)[1]) >= 120:
            raise ConfigError("the process died here")
        return await real(self, request)

    monkeypatch.setattr(SimulatedProvider, "complete", fail_late)
    with pytest.raises(ConfigError, match="died"):
        sim.production_traffic(bench, prompt, ds, start=DAY, hours=6, requests=300, seed=4, concurrency=1)
    bench.flush()
    made = bench.traces_df(kind="llm", columns=["id"]).height
    assert 0 < made < 300
    monkeypatch.setattr(SimulatedProvider, "complete", real)
    rest = sim.production_traffic(bench, prompt, ds, start=DAY, hours=6, requests=300, seed=4)
    assert rest.added == 300 - made
    assert bench.traces_df(kind="llm", columns=["id"]).height == 300


def test_incidents_change_what_they_say_during_their_window(bench, support):
    prompt, ds = support
    sim.production_traffic(bench, prompt, ds, start=DAY, hours=8, requests=1200, seed=5,
                           incident=sim.Incident(start_hour=4, hours=2, error_rate=0.6, latency_factor=3.0, input_factor=2.0))
    df = bench.traces_df(kind="llm").with_columns(
        ((pl.col("started_at") - DAY).dt.total_minutes() / 60).is_between(4, 6, closed="left").alias("inside")
    )
    by = df.group_by("inside").agg(
        (pl.col("status") == "error").mean().alias("errors"),
        pl.col("latency_ms").filter(pl.col("status") == "ok").median().alias("latency"),
        pl.col("input_tokens").mean().alias("tokens"),
    ).sort("inside")
    outside, inside = by.row(0, named=True), by.row(1, named=True)
    assert inside["errors"] > 0.2 > outside["errors"]  # two attempts at 60% each fail together 36% of the time
    assert inside["latency"] > 2 * outside["latency"]
    assert inside["tokens"] > 1.6 * outside["tokens"]  # the longer prompt of a prompt change


def test_incident_settings_are_checked():
    with pytest.raises(ConfigError, match="error_rate"):
        sim.Incident(1, 1, error_rate=1.5)
    with pytest.raises(ConfigError, match="positive number of hours"):
        sim.Incident(1, 0)
    assert sim.Incident(1, 1, latency_factor=1.5).kinds == ("latency",)
    assert sim.Incident(1, 1, error_rate=0.1, quality_drop=0.2).kinds == ("error_rate", "quality")


def test_labelled_traffic_injects_incidents_of_known_start_and_size():
    incidents = [sim.Incident(start_hour=10, hours=2, error_rate=0.2),
                 sim.Incident(start_hour=30, hours=1, latency_factor=2.0, scope={"model": "claude-sonnet-4-5"})]
    streams = [sim.Stream(calls_per_minute=20), sim.Stream(model="claude-sonnet-4-5", calls_per_minute=10)]
    tr = sim.labelled_traffic(start=DAY, days=2, streams=streams, incidents=incidents, seed=1)
    assert [(i.kinds, i.start, i.end) for i in tr.incidents] == [
        (("error_rate",), DAY + timedelta(hours=10), DAY + timedelta(hours=12)),  # both streams
        (("error_rate",), DAY + timedelta(hours=10), DAY + timedelta(hours=12)),
        (("latency",), DAY + timedelta(hours=30), DAY + timedelta(hours=31)),     # only sonnet
    ]
    df = tr.traces.with_columns(((pl.col("started_at") - DAY).dt.total_minutes() / 60).alias("h"))
    per_day = df.height / 2 / 1440
    assert 29 < per_day < 31  # 20 + 10 calls a minute on average
    inside = df.filter(pl.col("h").is_between(10, 12, closed="left"))
    outside = df.filter(pl.col("h") < 10)
    assert (inside["status"] == "error").mean() == pytest.approx(0.2, abs=0.03)
    assert (outside["status"] == "error").mean() == pytest.approx(0.01, abs=0.005)
    sonnet = df.filter(pl.col("model") == "claude-sonnet-4-5", pl.col("status") == "ok")
    slow = sonnet.filter(pl.col("h").is_between(30, 31, closed="left"))["latency_ms"].median()
    assert slow > 1.8 * sonnet.filter(pl.col("h") < 30)["latency_ms"].median()
    haiku = df.filter(pl.col("model") == "claude-haiku-4-5", pl.col("status") == "ok")
    assert haiku.filter(pl.col("h").is_between(30, 31, closed="left"))["latency_ms"].median() < 1.2 * haiku["latency_ms"].median()


def test_labelled_traffic_has_a_daily_rhythm_unless_asked_not_to():
    flat = sim.labelled_traffic(start=DAY, days=1, seed=2, daily_rhythm=False).traces
    shaped = sim.labelled_traffic(start=DAY, days=1, seed=2).traces

    def night_to_afternoon(df: pl.DataFrame) -> float:
        hours = df["started_at"].dt.hour()
        return (hours == 3).sum() / (hours == 15).sum()

    assert night_to_afternoon(flat) == pytest.approx(1.0, abs=0.1)
    assert night_to_afternoon(shaped) == pytest.approx(0.25, abs=0.05)


def test_labelled_traffic_writes_to_the_file_in_bulk(bench):
    tr = sim.labelled_traffic(start=DAY, days=0.25, seed=3, streams=[sim.Stream(calls_per_minute=5)], score_share=0.5)
    written = tr.write(bench)
    stored = bench.traces_df(kind="llm")
    assert written == stored.height == tr.traces.height
    assert stored["id"].is_sorted()  # ids sort by start time, as real UUIDv7 ids do
    assert stored["started_at"].to_list() == tr.traces["started_at"].to_list()
    assert stored["cost_usd"].sum() == pytest.approx(tr.traces["cost_usd"].sum())
    scores = bench.scores_df()
    assert scores.height == tr.scores.height
    assert scores["experiment_id"].null_count() == scores.height
    assert set(scores["trace_id"]) <= set(stored["id"])
