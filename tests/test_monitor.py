"""Detectors, alerts and checks: the statistics on hand-made traffic, the labelled incidents, the file."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

import workbench as wb
from workbench import simulation as sim
from workbench.errors import ConfigError
from workbench.monitor import (
    CostPerCall,
    ErrorRateSpike,
    LatencyShift,
    QualityDrop,
    SpendAnomaly,
    Threshold,
    default_rules,
    detect,
    load_config,
)

pytestmark = pytest.mark.backends("sqlite", "postgres")

NOW = datetime(2026, 11, 26, 14, 0, tzinfo=timezone.utc)


def calls(start: datetime, minutes: float, per_minute: float, *, errors: float = 0.0, latency: float = 500.0,
          cost: float = 0.001, spread: float = 0.2, seed: int = 0, **scope: str) -> pl.DataFrame:
    """Evenly spaced calls; ``errors`` of them fail (spread evenly); latency and cost vary by ``spread``."""
    n = int(round(minutes * per_minute))
    rng = np.random.default_rng(seed)
    t_us = int(start.timestamp() * 1e6) + ((np.arange(n) + 0.5) * minutes * 60e6 / max(n, 1)).astype(np.int64)
    failed = (np.floor((np.arange(n) + 1) * errors) - np.floor(np.arange(n) * errors)) > 0
    return pl.DataFrame({
        "started_at": pl.from_epoch(pl.Series(t_us), time_unit="us").dt.replace_time_zone("UTC"),
        "status": np.where(failed, "error", "ok"),
        "latency_ms": latency * rng.lognormal(0, spread, n),
        "cost_usd": pl.Series(np.where(failed, np.nan, cost * rng.lognormal(0, spread, n))).fill_nan(None),
        "model": scope.get("model", "claude-haiku-4-5"),
        "prompt_name": scope.get("prompt_name", "support"),
        "prompt_version": int(scope.get("prompt_version", 1)),
        "user_id": scope.get("user_id", "u1"),
    })


def one_check(frame: pl.DataFrame, *rules, at: datetime = NOW) -> pl.DataFrame:
    return detect(frame, at, rules=list(rules) or None)


# -- the error-rate test --------------------------------------------------------------------------


def _baseline(**kw) -> pl.DataFrame:
    """Six hours at 30 calls a minute with 1% errors, ending where the rules' window starts."""
    return calls(NOW - timedelta(minutes=15 + 360), 360, 30, errors=0.01, **kw)


def test_two_errors_in_ten_calls_is_not_an_incident():
    frame = pl.concat([_baseline(), calls(NOW - timedelta(minutes=15), 15, 10 / 15, errors=0.2)])
    assert frame.filter(pl.col("started_at") >= NOW - timedelta(minutes=15))["status"].to_list().count("error") == 2
    assert one_check(frame, ErrorRateSpike()).height == 0
    # Not only the minimum count: with every count gate opened, the exact test itself says no
    # (20% against a 1% baseline over 10 calls is not evidence at the rule's false-alarm level).
    assert one_check(frame, ErrorRateSpike(min_calls=1, min_errors=1)).height == 0
    from workbench.monitor._significance import excess_in_window

    p = excess_in_window(np.array([2]), np.array([10]), np.array([2 + 108]), np.array([10 + 10_800]))[0]
    assert ErrorRateSpike().level(1) < p < 0.05


def test_fifty_errors_in_five_hundred_calls_against_a_one_percent_baseline_is():
    frame = pl.concat([_baseline(), calls(NOW - timedelta(minutes=15), 15, 500 / 15, errors=0.1)])
    found = one_check(frame, ErrorRateSpike())
    assert found.height == 1
    alert = found.row(0, named=True)
    assert alert["observed"] == pytest.approx(0.1)
    assert alert["baseline"] == pytest.approx(0.01, abs=0.001)
    assert alert["p_value"] < 1e-15
    assert alert["n"] == 500
    assert "50 errors in 500 calls (10.0%)" in alert["statistic"] and "hypergeometric" in alert["statistic"]


def test_the_error_test_is_exact_and_needs_no_baseline_rate():
    # 5 errors in 100 calls after 0 in 1,000: the exact tail against the pooled calls.
    from scipy.stats import hypergeom

    from workbench.monitor._significance import excess_in_window

    p = excess_in_window(np.array([5]), np.array([100]), np.array([5]), np.array([1100]))[0]
    assert p == pytest.approx(hypergeom.sf(4, 1100, 5, 100))
    assert excess_in_window(np.array([0]), np.array([0]), np.array([0]), np.array([0]))[0] == 1.0


def test_a_spike_below_the_minimum_effect_does_not_alarm_however_significant():
    # 1.5% against 1% over 15,000 calls is very significant, but under both bars (2x and +2 points).
    frame = pl.concat([calls(NOW - timedelta(minutes=375), 360, 300, errors=0.01),
                       calls(NOW - timedelta(minutes=15), 15, 1000, errors=0.015)])
    assert one_check(frame, ErrorRateSpike()).height == 0
    assert one_check(frame, ErrorRateSpike(min_ratio=1.2, min_increase=0.002)).height == 1


def test_the_test_level_is_split_over_scopes_and_checks():
    rule = ErrorRateSpike()
    assert rule.level(1) == pytest.approx(0.5 / (7 * 1440))
    assert rule.level(40) == pytest.approx(rule.level(1) / 40)
    assert LatencyShift().level(3, tests=2) == pytest.approx(0.5 / (7 * 1440 * 3 * 2))


# -- other detectors on hand-made traffic ----------------------------------------------------------


def test_latency_shift_finds_a_slower_p95_and_ignores_a_steady_one():
    base = calls(NOW - timedelta(minutes=370), 360, 20, latency=800, seed=1)
    steady = pl.concat([base, calls(NOW - timedelta(minutes=10), 10, 20, latency=800, seed=2)])
    slow = pl.concat([base, calls(NOW - timedelta(minutes=10), 10, 20, latency=1400, seed=2)])
    assert one_check(steady, LatencyShift()).height == 0
    found = one_check(slow, LatencyShift())
    assert found.height == 1
    alert = found.row(0, named=True)
    assert alert["metric"] in ("latency_p50", "latency_p95")
    assert alert["observed"] / alert["baseline"] == pytest.approx(1.75, rel=0.1)
    assert "Mood's quantile test" in alert["statistic"]


def test_cost_per_call_finds_a_pricier_prompt():
    base = calls(NOW - timedelta(minutes=375), 360, 20, cost=0.001, seed=1)
    pricier = pl.concat([base, calls(NOW - timedelta(minutes=15), 15, 20, cost=0.0015, seed=2, prompt_version=2)])
    found = one_check(pricier, CostPerCall())
    assert found.height == 1  # scoped by prompt name, so the new version is judged against the old one
    assert found["observed"][0] / found["baseline"][0] == pytest.approx(1.5, rel=0.05)
    assert one_check(pricier, CostPerCall(by="prompt")).height == 0  # support@2 has no baseline of its own


def test_spend_is_judged_against_the_same_time_on_earlier_days():
    days = [calls(NOW - timedelta(days=d, minutes=30), 60, 20, seed=d) for d in range(1, 4)]
    surge = pl.concat([*days, calls(NOW - timedelta(minutes=30), 30, 20, seed=9), calls(NOW - timedelta(minutes=10), 10, 40, seed=10)])
    quiet = pl.concat([*days, calls(NOW - timedelta(minutes=30), 30, 20, seed=9)])
    assert one_check(quiet, SpendAnomaly()).height == 0
    found = one_check(surge, SpendAnomaly())
    assert found.height == 1
    assert "on 3 earlier days" in found["statistic"][0] and found["observed"][0] == pytest.approx(3 * found["baseline"][0], rel=0.15)
    # A scope seen for the first time today has no seasonal baseline: it never alarms.
    assert one_check(pl.concat([calls(NOW - timedelta(minutes=10), 10, 40)]), SpendAnomaly()).height == 0


def test_thresholds_fire_beyond_their_limit_with_enough_calls():
    few = calls(NOW - timedelta(minutes=5), 5, 2, errors=0.5)  # 10 calls, half failing: below min_calls
    many = calls(NOW - timedelta(minutes=5), 5, 10, errors=0.1)
    rule = Threshold(metric="error_rate", above=0.05)
    assert one_check(few, rule).height == 0
    assert one_check(many, rule)["observed"][0] == pytest.approx(0.1)
    # p95 above 2 s means more than 5% of ok calls took longer than 2 s: exactly.
    slow = pl.concat([calls(NOW - timedelta(minutes=5), 5, 19, latency=500, spread=0.0),
                      calls(NOW - timedelta(minutes=5), 5, 1.2, latency=2500, spread=0.0)])
    fast = pl.concat([calls(NOW - timedelta(minutes=5), 5, 19, latency=500, spread=0.0),
                      calls(NOW - timedelta(minutes=5), 5, 0.8, latency=2500, spread=0.0)])
    p95 = Threshold(metric="latency_p95", above=2000)
    assert one_check(slow, p95).height == 1 and one_check(fast, p95).height == 0
    assert "took longer (the limit allows 5%)" in one_check(slow, p95)["statistic"][0]


def test_scopes_with_no_traffic_never_alarm():
    rules = default_rules(by="user_id")
    # u2 made calls during the baseline and then stopped; u3 made 3 calls now, all failing.
    frame = pl.concat([
        calls(NOW - timedelta(minutes=375), 360, 20, errors=0.01, user_id="u1"),
        calls(NOW - timedelta(minutes=375), 300, 20, errors=0.01, user_id="u2"),
        calls(NOW - timedelta(minutes=15), 15, 20, errors=0.01, user_id="u1"),
        calls(NOW - timedelta(minutes=3), 3, 1, errors=1.0, user_id="u3"),
    ])
    assert detect(frame, NOW - timedelta(hours=1), NOW, rules=rules).height == 0
    # A period with no traffic at all is quiet too, and so is an empty frame.
    assert detect(frame, NOW + timedelta(days=2), NOW + timedelta(days=2, hours=1), rules=rules).height == 0
    assert detect(frame.clear(), NOW, rules=rules).height == 0


def test_experiment_and_judge_calls_are_not_production():
    bad = calls(NOW - timedelta(minutes=15), 15, 30, errors=0.5)
    frame = pl.concat([
        _baseline().with_columns(pl.lit(None, dtype=pl.String).alias("experiment_id"), pl.lit(None, dtype=pl.String).alias("tags_json")),
        bad.with_columns(pl.lit("exp-1").alias("experiment_id"), pl.lit(None, dtype=pl.String).alias("tags_json")),
        bad.with_columns(pl.lit(None, dtype=pl.String).alias("experiment_id"), pl.lit('["judge"]').alias("tags_json")),
    ])
    assert one_check(frame, ErrorRateSpike()).height == 0


def test_metadata_and_label_scopes(bench):
    bench.prompts.register("support", template="v1 {q}", model="claude-haiku-4-5")
    bench.prompts.register("support", template="v2 {q}", model="claude-haiku-4-5")
    bench.prompts.set_label("support", "production", 1)
    bench.prompts.set_label("support", "staging", 2)
    from workbench.monitor import _data

    labels = _data.label_history(bench, ["support"])
    frame = pl.concat([calls(NOW, 1, 2, prompt_version=1), calls(NOW, 1, 2, prompt_version=2)]).with_columns(
        pl.lit('{"region": "eu"}').alias("metadata_json"))
    labels = labels.with_columns(pl.lit(0, dtype=pl.Int64).alias("_set"))  # the labels were set before the calls
    scoped = _data.with_scopes(frame, ["label", "metadata.region", "prompt"], labels)
    assert sorted(zip(scoped["label"], scoped["prompt"])) == [("production", "support@1")] * 2 + [("staging", "support@2")] * 2
    assert set(scoped["metadata.region"]) == {"eu"}


# -- the labelled incident generator: the targets, with margins ---------------------------------

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
MINIMUM_SIZES = [
    # (rule kind, calls a minute, incident settings at the documented minimum size)
    ("error_rate", 10, {"error_rate": 0.15}),
    ("error_rate", 30, {"error_rate": 0.08}),
    ("latency", 10, {"latency_factor": 1.4}),
    ("latency", 30, {"latency_factor": 1.3}),
    ("cost_per_call", 10, {"input_factor": 1.7}),
    ("spend", 10, {"traffic_factor": 2.5}),
    ("quality", 30, {"quality_drop": 0.4}),
]


@pytest.mark.parametrize(("kind", "rate", "size"), MINIMUM_SIZES, ids=lambda v: str(v))
def test_every_incident_at_the_documented_minimum_is_detected_within_15_minutes(kind, rate, size):
    rng = np.random.default_rng(11)
    # One-hour incidents every 12 hours (a baseline never holds the last one), at any time of day.
    incidents = [sim.Incident(start_hour=48 + 12 * i + 4 * rng.random(), hours=1.0, **size) for i in range(12)]
    traffic = sim.labelled_traffic(
        start=START, days=8.5, incidents=incidents, seed=5, streams=[sim.Stream(calls_per_minute=rate)],
        daily_rhythm=False, score_share=0.2,
    )
    since = START + timedelta(days=2)
    found = detect(traffic.traces, since, traffic.end, scores=sim.scores_frame(traffic))
    report = sim.detection_report(found, traffic, rule_kind=kind, since=since)
    assert report.incidents == 12
    assert report.detected == 12, report
    assert max(report.delays_min) <= 15, report.delays_min
    assert report.false_alarms == 0


def test_quiet_weeks_stay_under_one_false_alarm_per_week_per_rule():
    streams = [sim.Stream(calls_per_minute=15, prompt_name=f"feature-{i}") for i in range(3)]
    counts: dict[str, int] = {r.kind: 0 for r in default_rules()}
    weeks = 0.0
    for seed in (21, 22):
        traffic = sim.labelled_traffic(start=START, days=9, seed=seed, streams=streams)
        since = START + timedelta(days=2)
        found = detect(traffic.traces, since, traffic.end, scores=sim.scores_frame(traffic))
        for kind in counts:
            counts[kind] += found.filter(pl.col("kind") == kind).height
        weeks += (traffic.end - since).days / 7
    assert all(n / weeks <= 1 for n in counts.values()), counts  # the stated bound is 0.5 a week per rule


def test_the_alert_resolves_after_the_incident_and_cools_down():
    incidents = [sim.Incident(start_hour=30, hours=1, error_rate=0.3), sim.Incident(start_hour=31.5, hours=1, error_rate=0.3)]
    traffic = sim.labelled_traffic(start=START, days=2, incidents=incidents, seed=6, daily_rhythm=False)
    found = detect(traffic.traces, START + timedelta(hours=24), traffic.end, rules=[ErrorRateSpike()])
    first = found.filter(pl.col("first_seen") < START + timedelta(hours=31)).row(0, named=True)
    assert first["status"] == "resolved"
    # Resolved once the window has been clean for resolve_after (15 minutes) after the incident ended.
    assert START + timedelta(hours=31) < first["resolved_at"] <= START + timedelta(hours=31, minutes=40)
    assert first["peak"] >= 0.25
    # The second incident starts within the cool-down: it opens only once the 30 minutes have passed.
    second = found.filter(pl.col("first_seen") > START + timedelta(hours=31)).row(0, named=True)
    assert second["first_seen"] >= first["resolved_at"] + timedelta(minutes=30)


def test_quality_drop_alert_shows_the_difference_with_a_ci():
    traffic = sim.labelled_traffic(start=START, days=2, seed=7, daily_rhythm=False, score_share=0.3,
                                   incidents=[sim.Incident(start_hour=36, hours=1, quality_drop=0.5)])
    found = detect(traffic.traces, START + timedelta(hours=35), START + timedelta(hours=37),
                   rules=[QualityDrop()], scores=sim.scores_frame(traffic))
    assert found.height == 1
    alert = found.row(0, named=True)
    assert '"scorer":"correct"' in alert["scope_json"]
    assert alert["observed"] <= alert["baseline"] - 0.1  # opened on the first window a min_drop below
    assert alert["peak"] < alert["baseline"] - 0.3
    assert "95% CI" in alert["statistic"] and "difference −" in alert["statistic"]


# -- checks against the file ------------------------------------------------------------------------


@pytest.fixture
def incident_day(bench):
    """A day of labelled traffic in the file with an error and latency incident from 14:00 to 15:00."""
    day = datetime(2026, 11, 25, tzinfo=timezone.utc)
    traffic = sim.labelled_traffic(start=day, days=1, seed=8, streams=[sim.Stream(calls_per_minute=12)],
                                   incidents=[sim.Incident(start_hour=14, hours=1, error_rate=0.3, latency_factor=2.0)])
    traffic.write(bench)
    return day


def test_checks_every_minute_record_what_a_replay_finds(bench, incident_day):
    since, until = incident_day + timedelta(hours=13, minutes=50), incident_day + timedelta(hours=15, minutes=40)
    replayed = bench.monitor.replay(since, until)
    assert set(replayed["rule"]) == {"error_rate", "latency"}
    t = since
    while t <= until:
        bench.monitor.check(now=t)
        t += timedelta(minutes=1)
    checked = bench.monitor.alerts()
    cols = ["rule", "scope", "status", "first_seen", "last_seen", "resolved_at", "observed", "baseline", "p_value"]
    assert checked.select(cols).sort("rule").to_dicts() == replayed.select(cols).sort("rule").to_dicts()
    assert set(checked["source"]) == {"check"}


def test_a_stored_replay_is_not_recorded_twice(bench, incident_day):
    since, until = incident_day + timedelta(hours=12), incident_day + timedelta(hours=18)
    bench.monitor.replay(since, until, store=True)
    bench.monitor.replay(since, until, store=True)
    stored = bench.monitor.alerts()
    assert stored.height == 2 and set(stored["source"]) == {"replay"}
    # Checks over a period a replay covered add nothing either.
    result = bench.monitor.check(now=incident_day + timedelta(hours=14, minutes=30))
    assert result.opened == [] and bench.monitor.alerts().height == 2


def test_one_notification_per_incident_even_with_two_checkers(tmp_path, incident_day, bench):
    events = []
    second = wb.open(bench.path, provider="simulated")
    try:
        bench.monitor.notify(events.append)
        second.monitor.notify(events.append)
        t = incident_day + timedelta(hours=13, minutes=50)
        while t <= incident_day + timedelta(hours=15, minutes=40):
            bench.monitor.check(now=t)
            second.monitor.check(now=t)  # the same minute, from another handle on the file
            t += timedelta(minutes=1)
        bench.monitor.drain()
        second.monitor.drain()
    finally:
        second.close()
    kinds = sorted((e.rule, e.event) for e in events)
    assert kinds == [("error_rate", "opened"), ("error_rate", "resolved"), ("latency", "opened"), ("latency", "resolved")]


def test_check_result_and_alerts_frame(bench, incident_day):
    result = bench.monitor.check(now=incident_day + timedelta(hours=14, minutes=20))
    assert {e.rule for e in result.opened} == {"error_rate", "latency"}
    assert "2 opened" in result.line() and "Incident: error_rate" in repr(result)
    assert "<script" not in result._repr_html_() and "wb-out" in result._repr_html_()
    frame = bench.monitor.alerts("open")
    assert frame.columns[:4] == ["rule", "kind", "scope", "status"]
    assert frame.schema["first_seen"] == pl.Datetime("us", "UTC")
    with pytest.raises(ConfigError, match="status must be"):
        bench.monitor.alerts("closed")


# -- configuration ---------------------------------------------------------------------------------


def test_rules_refuse_bad_settings_with_the_fix():
    with pytest.raises(ConfigError, match="window must be a duration such as '10m'"):
        ErrorRateSpike(window="ten minutes")
    with pytest.raises(ConfigError, match="whole number of minutes"):
        ErrorRateSpike(window="90s")
    with pytest.raises(ConfigError, match="unknown scope key 'modle'"):
        LatencyShift(by="modle")
    with pytest.raises(ConfigError, match="exactly one of above= or below="):
        Threshold(metric="error_rate")
    with pytest.raises(ConfigError, match="two rules are named 'error_rate'"):
        wb.monitor.Monitor(None, [ErrorRateSpike(), ErrorRateSpike()])  # type: ignore[arg-type]


def test_rules_from_toml(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text(
        '[defaults]\nby = ["model"]\nmin_drop = 0.2\n\n'
        '[[rule]]\ntype = "error_rate"\nwindow = "10m"\n\n'
        '[[rule]]\ntype = "threshold"\nname = "slow"\nmetric = "latency_p95"\nabove = 2000\n\n'
        '[[notify]]\nwebhook = "http://127.0.0.1:9/hook"\ntimeout = 2\n'
    )
    rules, targets = load_config(path)
    assert [(r.kind, r.name, r.by) for r in rules] == [("error_rate", "error_rate", ("model",)), ("threshold", "slow", ("model",))]
    assert rules[0].window == 10 and rules[1].limit == 2000
    assert targets[0].channel == "webhook 127.0.0.1:9" and targets[0].timeout == 2
    # Spec round trip: every rule's settings can be written back as TOML.
    from workbench.monitor.rules import rule_from_spec

    assert all(rule_from_spec(r.spec()) == r for r in [*rules, *default_rules()])


def test_a_toml_file_without_rules_tunes_the_defaults(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[defaults]\nby = "user_id"\nfalse_alarms_per_week = 0.1\n')
    rules, _ = load_config(path)
    assert [r.kind for r in rules] == [r.kind for r in default_rules()]
    assert all(r.by == ("user_id",) and r.false_alarms_per_week == 0.1 for r in rules)


@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\ntype = "errors"\n', "type must be one of error_rate"),
    ('[[rule]]\ntype = "latency"\nwindw = "5m"\n', "unknown setting(s) windw"),
    ('[rule]\ntype = "latency"\n', "rules are [[rule]] tables"),
    ('[[notify]]\nemail = "a@b.c"\n', "needs webhook"),
    ("[[rule]\n", "not valid TOML"),
])
def test_toml_mistakes_name_the_problem(tmp_path, text, message):
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(path)
