"""The exposure log: who saw which version of a split label, once per unit, version and split period; and the
trace of a picked call carries its label."""

from __future__ import annotations

import json

import pytest

import workbench as wb
from workbench.providers.simulated import SimulatedProvider

MODEL = "claude-haiku-4-5"


@pytest.fixture
def reg(bench):
    bench.prompts.register("support", "A {question}", MODEL)
    bench.prompts.register("support", "B {question}", MODEL)
    bench.prompts.set_label("support", "production", 1)
    bench.prompts.set_split("support", "production", {1: 0.5, 2: 0.5})
    return bench.prompts


def rows(bench):
    bench.flush()
    return bench.store.query("SELECT name, label, move_id, unit, version FROM exposures ORDER BY unit, move_id")


def test_each_unit_is_recorded_once_per_version_and_split_period(bench, reg):
    for _ in range(5):
        for u in range(100):
            reg.pick("support", "production", key=f"user-{u}")
    first = rows(bench)
    assert len(first) == 100
    move = reg.label_state("support", "production").move_id
    assert {r["move_id"] for r in first} == {move}
    assert all(r["version"] == reg.pick("support", "production", key=r["unit"], expose=False).version for r in first)

    reg.set_split("support", "production", {1: 0.2, 2: 0.8})  # a new split period: units are counted again
    for u in range(100):
        reg.pick("support", "production", key=f"user-{u}")
    assert len(rows(bench)) == 200
    counts = reg.exposures("support", "production")
    assert counts.total == 100 and counts.mixed == 0 and set(counts.units) <= {1, 2}


def test_a_second_process_adds_no_duplicate(bench, reg):
    reg.pick("support", "production", key="user-1")
    other = wb.open(bench.path, provider=SimulatedProvider(seed=0, time_scale=0))
    try:
        other.prompts.pick("support", "production", key="user-1")
        other.flush()
    finally:
        other.close()
    assert len(rows(bench)) == 1


def test_picks_without_a_key_or_with_expose_false_record_nothing(bench, reg):
    reg.pick("support", "production")
    reg.pick("support", "production", key="user-1", expose=False)
    assert rows(bench) == []


def test_record_exposure_for_traffic_assigned_elsewhere(bench, reg):
    reg.record_exposure("support", "production", "edge-7", 2)
    reg.record_exposure("support", "production", "edge-7", 2)
    reg.record_exposure("support", "production", "edge-7", 1)
    counts = reg.exposures("support", "production")
    assert counts.units == {1: 1, 2: 1} and counts.mixed == 1


def test_the_trace_of_a_picked_call_carries_label_unit_and_split_period(bench, reg):
    picked = reg.pick("support", "production", key="user-42")
    assert picked == reg.get("support", picked.version)  # the served info is not part of a version's identity
    result = bench.complete(picked, question="How do I reset my password?")
    trace = bench.trace(result.trace_id)
    assert trace["prompt_name"] == "support" and trace["prompt_version"] == picked.version
    assert trace["metadata"]["label"] == "production"
    assert trace["metadata"]["unit"] == "user-42"
    assert trace["metadata"]["label_move"] == reg.label_state("support", "production").move_id
    assert trace["user_id"] == "user-42"  # the pick key stands in for a user id not given


def test_rollout_complete_picks_calls_and_records_in_one_step(bench, reg):
    ro = bench.rollout("support", "production")
    result = ro.complete("user-9", {"question": "Where are my invoices?"})
    trace = bench.trace(result.trace_id)
    assert trace["user_id"] == "user-9" and json.loads(json.dumps(trace["metadata"]))["label"] == "production"
    assert [r["unit"] for r in rows(bench)] == ["user-9"]


def test_a_misspelt_label_names_the_labels_there_are(bench, reg):
    with pytest.raises(wb.WorkbenchError, match="no label 'prodution' \\(labels: production\\)"):
        bench.rollout("support", "prodution")
