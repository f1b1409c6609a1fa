"""Gradual rollouts on simulated traffic with known effects: ramps that advance, regressions that roll back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

import workbench as wb
from workbench.cli import cli
from workbench.errors import ConfigError, LabelMoved, RolloutError, RolloutNotFound
from workbench.rollout import ramp
from workbench.simulation import VersionEffect, label_traffic

MODEL = "claude-haiku-4-5"
START = datetime(2026, 11, 20, tzinfo=timezone.utc)
FAST = {"min_units": 40, "min_scores": 20}
"""Small steps, so a test serves a few thousand calls rather than a real day's."""


@pytest.fixture
def served(bench):
    for template in ("Help-centre passage:\n{context}\n\nCustomer question: {question}",
                     "Passage:\n{context}\n\nQuestion from a customer: {question}",
                     "Passage:\n{context}\n\nQuestion: {question}"):
        bench.prompts.register("support", template, MODEL, max_tokens=300)
    bench.prompts.set_label("support", "production", 1)
    bench.ds = bench.datasets.load("support-qa", wb.demo.DATASET)
    bench.hour = 0
    return bench


def traffic(bench, requests=2500, **kwargs):
    bench.hour += 6
    label_traffic(bench, "support", bench.ds, requests=requests, users=kwargs.pop("users", 2500),
                  start=START + timedelta(hours=bench.hour), seed=bench.hour, scorers=[wb.scorers.contains_reference()],
                  **kwargs)


def run_until_decided(bench, ro, effects=None, rounds=12):
    """Serve traffic and step until the rollout leaves ``running``; every decision, in order."""
    decisions = []
    for _ in range(rounds):
        traffic(bench, effects=effects)
        decisions.append(ro.step())
        if decisions[-1].action in ("complete", "rollback", "stop"):
            break
    return decisions


def test_a_sound_candidate_ramps_through_every_step_to_completion(served):
    ro = served.rollout("support")
    traffic(served)  # the baseline's period before the rollout
    start = ro.start(2, steps=(10, 50, 100), guards={"error_rate": 0.02, "latency_p95": 0.25, "cost": 0.15}, **FAST)
    assert start.action == "start" and served.prompts.split("support", "production") == {1: 0.9, 2: 0.1}
    decisions = run_until_decided(served, ro)
    actions = [d.action for d in decisions]
    assert actions[-1] == "complete" and actions.count("advance") == 2 and "rollback" not in actions
    assert served.prompts.split("support", "production") == {2: 1.0}
    # Every move is in the label history, each with the reason and the rollout that made it.
    moves = ro.history()
    ramped = moves.filter(moves["reason"].str.contains(r"\[rollout \S+ step \d/3\]$"))
    assert ramped["action"].to_list() == ["set", "split", "split"]  # newest first: 100%, 50%, 10%
    assert ramped["split"].to_list() == ["v2 100%", "v1 50% / v2 50%", "v1 90% / v2 10%"]
    assert ramped["reason"][0].startswith("every guard held (error_rate, latency_p95, cost): 50% → 100% [rollout ")
    # The last step compared v2 at 100% with v1 before it, and says it is not randomised.
    assert decisions[-1].readout.before_after
    state = ro.current()
    assert state is None and ramp.latest(served, "support", "production").status == ramp.COMPLETED
    frame = ro.decisions()
    assert frame["action"].to_list()[0] == "start" and frame["action"].to_list()[-1] == "complete"
    guards = json.loads(frame["figures_json"].to_list()[-1])["guards"]
    assert {g["metric"] for g in guards} == {"error_rate", "latency_p95", "cost"}
    assert all(g["state"] == "holds" and g["ci_high"] is not None for g in guards)


@pytest.mark.parametrize("effect, guard", [
    (VersionEffect(error_rate=0.4), "error_rate"),
    (VersionEffect(latency_factor=2.0), "latency_p95"),
    (VersionEffect(quality_drop=0.5), "contains_reference"),
])
def test_a_regression_rolls_the_label_back_and_records_why(served, effect, guard):
    ro = served.rollout("support")
    ro.start(3, steps=(20, 50, 100), guards={"error_rate": 0.02, "latency_p95": 0.2, "cost": 0.2, "contains_reference": 0.05},
             **FAST)
    decisions = run_until_decided(served, ro, effects={3: effect})
    last = decisions[-1]
    assert last.action == "rollback", [d.reason for d in decisions]
    assert [g.guard.metric for g in last.guards if g.state == "regressed"] == [guard]
    assert served.prompts.split("support", "production") == {1: 1.0}
    newest = served.prompts.label_history("support", "production")[0]
    assert newest["action"] == "rollback" and newest["version"] == 1
    assert f"rolled back to v1: {guard}" in newest["reason"] and "worse beyond the margin" in newest["reason"]
    assert ramp.latest(served, "support", "production").status == ramp.ROLLED_BACK
    with pytest.raises(RolloutNotFound):
        ro.step()


def test_a_step_holds_until_both_arms_have_enough_units(served):
    ro = served.rollout("support")
    ro.start(2, steps=(5, 100), min_units=500)
    traffic(served, 300)
    held = ro.step()
    assert held.action == "hold" and "of 500 units in the smaller arm" in held.reason
    assert served.prompts.split("support", "production") == {1: 0.95, 2: 0.05}


def test_a_sample_ratio_mismatch_holds_the_ramp(served):
    ro = served.rollout("support")
    ro.start(2, steps=(50, 100), **FAST)
    traffic(served, 1500)
    for u in range(400):  # an app that also serves v2 to users it picked itself
        served.prompts.record_exposure("support", "production", f"extra-{u}", 2)
    held = ro.step()
    assert held.action == "hold" and held.reason.startswith("sample ratio mismatch")
    assert served.prompts.split("support", "production") == {1: 0.5, 2: 0.5}


def test_blue_green_switches_at_once_and_switches_back_on_a_regression(served):
    ro = served.rollout("support")
    traffic(served)  # blue: v1 alone
    ro.blue_green(2, guards={"error_rate": 0.01}, **FAST)
    assert served.prompts.split("support", "production") == {2: 1.0}
    decisions = run_until_decided(served, ro, effects={2: VersionEffect(error_rate=0.4)})
    assert decisions[-1].action == "rollback" and decisions[-1].readout.before_after
    assert served.prompts.split("support", "production") == {1: 1.0}


def test_blue_green_completes_when_green_is_sound(served):
    ro = served.rollout("support")
    traffic(served)
    ro.blue_green(2, guards={"error_rate": 0.02, "cost": 0.2}, **FAST)
    decisions = run_until_decided(served, ro)
    assert decisions[-1].action == "complete"


def test_a_label_moved_by_hand_stops_the_rollout(served):
    ro = served.rollout("support")
    ro.start(2, steps=(10, 100), **FAST)
    served.prompts.set_label("support", "production", 3)
    stopped = ro.step() if ro.current() else None
    assert stopped is not None and stopped.action == "stop" and "moved outside the rollout" in stopped.reason
    assert served.prompts.split("support", "production") == {3: 1.0}


def test_a_decision_on_a_stale_reading_does_not_move_the_label(served):
    state_move = served.prompts.label_state("support", "production").move_id
    served.prompts.set_label("support", "production", 2)  # someone else, meanwhile
    with pytest.raises(LabelMoved, match="moved since it was read"):
        served.prompts.set_split("support", "production", {1: 0.5, 3: 0.5}, expect_move=state_move)
    assert served.prompts.split("support", "production") == {2: 1.0}


def test_a_crash_between_moving_the_label_and_saving_the_step_is_recovered(served, monkeypatch):
    ro = served.rollout("support")
    ro.start(2, steps=(10, 50, 100), guards={"cost": 0.5}, **FAST)
    traffic(served)

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(ramp, "_record", crash)
    with pytest.raises(RuntimeError):
        ro.step()  # the label moved to 50%, the state still says 10%
    monkeypatch.undo()
    assert served.prompts.split("support", "production") == {1: 0.5, 2: 0.5}
    traffic(served)
    again = ro.step()  # adopts its own move instead of stopping
    assert again.action in ("advance", "hold") and again.share == 0.5


def test_plans_are_checked():
    with pytest.raises(ConfigError, match="increasing shares"):
        ramp.Plan.make((50, 10, 100))
    with pytest.raises(ConfigError, match="margin >= 0"):
        ramp.Plan.make(guards={"error_rate": -1})
    assert ramp.Plan.make((5, 25, 100)).steps == (0.05, 0.25, 1.0)


def test_starting_needs_one_version_and_no_running_rollout(served):
    ro = served.rollout("support")
    with pytest.raises(RolloutError, match="already serves"):
        ro.start(1)
    ro.start(2)
    with pytest.raises(RolloutError, match="already running"):
        ro.start(3)
    ro.stop("changed my mind")
    with pytest.raises(RolloutError, match="is split"):
        ro.start(3)


def test_cron_steps_every_running_rollout_from_the_command_line(served):
    ro = served.rollout("support")
    ro.start(2, steps=(10, 100), guards={"cost": 0.5}, **FAST)
    traffic(served)
    served.flush()
    result = CliRunner().invoke(cli, ["rollout", "step", "--db", served.path])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("[advance] support/production v2 over v1, step 1 of 2 (10%)")
    listing = CliRunner().invoke(cli, ["rollout", "--db", served.path])
    assert "support/production\tv2 over v1\trunning\t10% → [100%]" in listing.output
    rolled = CliRunner().invoke(cli, ["rollout", "rollback", "support", "--reason", "pager went off", "--db", served.path])
    assert rolled.exit_code == 0 and "rolled back to v1 by hand: pager went off" in rolled.output
    assert "rolled back to v1 by hand: pager went off [rollout " in served.prompts.label_history("support", "production")[0]["reason"]


def test_start_readout_and_history_from_the_command_line(served):
    served.flush()
    run = CliRunner()
    started = run.invoke(cli, ["rollout", "start", "support", "2", "--steps", "10,100", "--guard", "error_rate=0.02",
                               "--min-units", "40", "--db", served.path])
    assert started.exit_code == 0, started.output
    assert "[start]" not in started.output and "v2 at 10% over v1 (10% → 100%)" in started.output
    traffic(served, 1500)
    served.flush()
    readout = run.invoke(cli, ["rollout", "readout", "support", "--db", served.path])
    assert readout.exit_code == 0 and "[assignment ok]" in readout.output and "v2 vs v1" in readout.output
    history = run.invoke(cli, ["rollout", "history", "support", "--db", served.path])
    assert history.output.splitlines()[0].split("\t")[1:3] == ["split", "v1"]
    bad = run.invoke(cli, ["rollout", "start", "support", "3", "--guard", "error_rate", "--db", served.path])
    assert bad.exit_code == 2 and "METRIC=MARGIN" in bad.output
