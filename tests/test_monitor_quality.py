"""Quality in production: sampled calls scored (LLM judge included, within a budget), stored against their traces."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

import workbench as wb
from workbench import simulation as sim
from workbench.errors import ConfigError
from workbench.experiments import record_trace_scores, score_trace
from workbench.monitor.quality import picked

DAY = datetime(2026, 11, 26, tzinfo=timezone.utc)
ROWS = [{"context": f"Plan {i} allows {i % 5 + 1} devices.", "question": f"How many devices does plan {i} allow?",
         "expected": f"{i % 5 + 1} devices"} for i in range(12)]


@pytest.fixture
def traffic(bench):
    prompt = bench.prompts.register("support", template="{context}\n\nQuestion: {question}", model="claude-haiku-4-5")
    ds = bench.datasets.load("plans", ROWS)
    sim.production_traffic(bench, prompt, ds, start=DAY, hours=6, requests=400, seed=1)
    return ds


@wb.scorer
def short_answer(output: str) -> float:
    return 1.0 if len(output) < 1_000 else 0.0


def _production_scores(bench) -> pl.DataFrame:
    return bench.scores_df().filter(pl.col("experiment_id").is_null())


def test_a_share_is_scored_once_and_stored_against_its_trace(bench, traffic):
    until = DAY + timedelta(hours=6)
    run = bench.monitor.score([short_answer, wb.scorers.contains_reference()], share=0.2, references=traffic,
                              since=DAY, until=until)
    ok = bench.traces_df(kind="llm", status="ok", columns=["id"])
    assert run.candidates == ok.height and run.scored == run.sampled
    assert run.sampled == picked(ok["id"], 0.2).sum() > 0  # trace ids are random: the share is checked on fixed ids below
    scores = _production_scores(bench)
    assert scores.height == 2 * run.scored
    assert set(scores["trace_id"]) <= set(ok["id"])
    assert scores.filter(pl.col("scorer") == "contains_reference")["value"].mean() > 0.3  # references matched by item_id
    again = bench.monitor.score([short_answer, wb.scorers.contains_reference()], share=0.2, references=traffic,
                                since=DAY, until=until)
    assert again.scored == 0 and again.already == run.sampled  # the same calls are picked, none scored twice
    assert _production_scores(bench).height == scores.height
    assert "already scored" in repr(again)


def test_the_sample_is_a_stable_hash_of_the_id():
    ids = pl.Series([f"id-{i}" for i in range(4000)])
    first, second = picked(ids, 0.1), picked(ids, 0.1)
    assert first.to_list() == second.to_list()
    assert first.sum() == pytest.approx(400, rel=0.15)
    assert (picked(ids, 0.2) | ~first).all()  # a larger share keeps every call the smaller one picked


def test_an_llm_judge_scores_within_its_budget_and_is_not_production(bench, traffic):
    judge = wb.scorers.llm_judge("Does the answer state a number of devices?", name="devices")
    until = DAY + timedelta(hours=6)
    run = bench.monitor.score([judge], share=0.5, since=DAY, until=until, budget_usd=0.01, concurrency=4)
    assert run.stopped is not None and "budget of $0.01 reached" in run.stopped
    assert 0 < run.spent_usd <= 0.01
    assert 0 < run.scored < run.sampled
    judges = bench.traces_df(kind="llm").filter(pl.col("tags_json").str.contains("judge"))
    assert judges.height == run.scored
    assert judges["cost_usd"].sum() == pytest.approx(run.spent_usd)
    judged = judges["metadata_json"].str.json_path_match("$.judged_trace")
    assert set(judged) == set(_production_scores(bench)["trace_id"])
    # Judge calls are not production traffic: the monitor does not count them.
    from workbench.monitor import _data

    calls = _data.read_calls(bench, [(int(DAY.timestamp() * 1e6), int(until.timestamp() * 1e6))], ["model"])
    assert calls.height == 400


def test_an_unpriced_judge_is_refused_with_a_budget(bench, traffic):
    judge = wb.scorers.llm_judge("Polite?", model="my-local-model", name="polite")
    with pytest.raises(ConfigError, match="no known price.*set_price"):
        bench.monitor.score([judge], share=0.1, since=DAY, until=DAY + timedelta(hours=6), budget_usd=1.0)
    with pytest.raises(ConfigError, match="share must be above 0"):
        bench.monitor.score([short_answer], share=0)


def test_quality_over_time_has_a_ci_per_bucket(bench, traffic):
    bench.monitor.score([wb.scorers.contains_reference()], share=0.5, references=traffic, since=DAY, until=DAY + timedelta(hours=6))
    q = bench.monitor.quality(every="2h", since=DAY, until=DAY + timedelta(hours=6))
    assert q.columns == ["bucket", "scorer", "n", "mean", "ci_low", "ci_high"]
    assert q.height == 3 and q["n"].sum() == _production_scores(bench).height
    assert ((q["ci_low"] <= q["mean"]) & (q["mean"] <= q["ci_high"]) & (q["ci_low"] >= 0) & (q["ci_high"] <= 1)).all()


def test_score_trace_and_record_trace_scores_write_no_experiment(bench):
    answer = bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "Say hi"}])
    scores, spent = wb._loop.run_sync(score_trace(bench, answer.trace_id, answer.text, [short_answer]))
    assert scores[0].value == 1.0 and spent == 0.0
    record_trace_scores(bench.store, [(answer.trace_id, "manual", 0.25, False, "a person said so")])
    rows = _production_scores(bench).sort("scorer")
    assert rows.select("scorer", "value", "passed", "rationale").rows() == [
        ("manual", 0.25, 0, "a person said so"), ("short_answer", 1.0, None, None),
    ]
