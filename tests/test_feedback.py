"""Human feedback records: preferences and trace ratings, upserts, canonical pairs, counts."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from workbench import feedback, stats
from workbench.errors import ConfigError
from workbench.feedback import CHOICES, Feedback, default_rater

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
def fb(bench):
    return bench.feedback


def rows(bench):
    return bench.store.query("SELECT * FROM feedback ORDER BY id")


def test_bench_has_feedback(bench):
    assert isinstance(bench.feedback, Feedback)
    assert bench.feedback.store is bench.store


def test_prefer_writes_one_row(bench, fb):
    rec = fb.prefer("exp-1", "item-1", "A", "B", "b", rater="alice", comment="B cites the docs")
    (row,) = rows(bench)
    assert row["id"] == rec.id
    assert (row["experiment_id"], row["item_id"], row["variant_a"], row["variant_b"], row["choice"]) == (
        "exp-1", "item-1", "A", "B", "b"
    )
    assert row["rater"] == "alice" and row["comment"] == "B cites the docs"
    assert row["trace_id"] is None and row["rating"] is None
    created = datetime.fromisoformat(row["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert row["updated_at"] == row["created_at"]


def test_rating_again_updates_the_same_row(bench, fb, monkeypatch):
    times = iter(["2026-01-01T00:00:00.000000+00:00", "2026-01-01T00:05:00.000000+00:00"])
    monkeypatch.setattr(feedback, "utc_now", lambda: next(times))
    first = fb.prefer("exp-1", "item-1", "A", "B", "b", rater="alice")
    second = fb.prefer("exp-1", "item-1", "A", "B", "tie", rater="alice")
    (row,) = rows(bench)
    assert second.id == first.id == row["id"]
    assert row["choice"] == "tie"
    assert row["created_at"] == "2026-01-01T00:00:00.000000+00:00"
    assert row["updated_at"] == "2026-01-01T00:05:00.000000+00:00"


def test_each_rater_item_and_pair_has_its_own_row(bench, fb):
    fb.prefer("exp-1", "item-1", "A", "B", "a", rater="alice")
    fb.prefer("exp-1", "item-1", "A", "B", "b", rater="bob")
    fb.prefer("exp-1", "item-2", "A", "B", "b", rater="alice")
    fb.prefer("exp-1", "item-1", "A", "C", "b", rater="alice")
    fb.prefer("exp-2", "item-1", "A", "B", "b", rater="alice")
    assert len(rows(bench)) == 5


def test_reversed_pair_is_stored_canonically_and_flipped(bench, fb):
    rec = fb.prefer("exp-1", "item-1", "B", "A", "a", rater="alice")
    assert (rec.variant_a, rec.variant_b, rec.choice) == ("A", "B", "b")
    # The same comparison asked the other way round updates that row.
    fb.prefer("exp-1", "item-1", "A", "B", "a", rater="alice")
    (row,) = rows(bench)
    assert (row["variant_a"], row["variant_b"], row["choice"]) == ("A", "B", "a")
    # tie and both_bad have no direction.
    assert fb.prefer("exp-1", "item-2", "B", "A", "both_bad", rater="alice").choice == "both_bad"


def test_preferences_frame_from_either_side(fb):
    fb.prefer("exp-1", "item-1", "A", "B", "b", rater="alice")
    fb.prefer("exp-1", "item-2", "B", "A", "b", rater="alice")  # given as (B, A): "b" means A was better
    fb.prefer("exp-1", "item-3", "A", "C", "a", rater="alice")
    fb.prefer("exp-1", "item-4", "A", "B", "tie", rater="bob")
    ab = fb.preferences("exp-1", a="A", b="B")
    assert ab["item_id"].to_list() == ["item-1", "item-2", "item-4"]
    assert ab["choice"].to_list() == ["b", "a", "tie"]
    ba = fb.preferences("exp-1", a="B", b="A")
    assert set(ba["variant_a"]) == {"B"} and ba["choice"].to_list() == ["a", "b", "tie"]
    assert fb.preferences("exp-1", a="A", b="B", rater="bob")["item_id"].to_list() == ["item-4"]
    assert fb.preferences("exp-1").height == 4
    empty = fb.preferences("nothing")
    assert empty.height == 0 and empty.columns[:6] == ["id", "experiment_id", "item_id", "variant_a", "variant_b", "choice"]
    with pytest.raises(ConfigError, match="both a and b"):
        fb.preferences("exp-1", a="A")


def test_comment_none_keeps_empty_clears(bench, fb):
    fb.prefer("e", "i", "A", "B", "b", rater="r", comment="first")
    fb.prefer("e", "i", "A", "B", "a", rater="r")
    assert rows(bench)[0]["comment"] == "first"
    fb.prefer("e", "i", "A", "B", "a", rater="r", comment="second")
    assert rows(bench)[0]["comment"] == "second"
    fb.prefer("e", "i", "A", "B", "a", rater="r", comment="")
    assert rows(bench)[0]["comment"] is None


@pytest.mark.parametrize("choice", ["A better", "B", "A", "draw", "", None, 1])
def test_unknown_choice_names_the_allowed_values(bench, fb, choice):
    with pytest.raises(ConfigError) as err:
        fb.prefer("e", "i", "A", "B", choice, rater="r")
    for allowed in CHOICES:
        assert repr(allowed) in str(err.value)
    assert rows(bench) == []


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("e", "i", "A", "A", "a"), "two different variants"),
        (("e", "", "A", "B", "a"), "item_id"),
        (("", "i", "A", "B", "a"), "experiment_id"),
        (("e", "i", None, "B", "a"), "variant a"),
    ],
)
def test_prefer_validates_ids(bench, fb, args, match):
    with pytest.raises(ConfigError, match=match):
        fb.prefer(*args, rater="r")
    assert rows(bench) == []


def test_prefer_accepts_an_experiment_object(fb):
    class Exp:
        id = "exp-9"

    assert fb.prefer(Exp(), "i", "A", "B", "a", rater="r").experiment_id == "exp-9"


def test_default_rater(monkeypatch, fb):
    monkeypatch.setenv("WORKBENCH_RATER", "carol")
    assert default_rater() == "carol"
    assert fb.prefer("e", "i", "A", "B", "a").rater == "carol"
    assert default_rater("dan") == "dan"
    monkeypatch.delenv("WORKBENCH_RATER")
    monkeypatch.setattr(feedback.getpass, "getuser", lambda: "erin")
    assert default_rater() == "erin"

    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(feedback.getpass, "getuser", no_user)
    assert default_rater() == "unknown"
    with pytest.raises(ConfigError, match="rater"):
        default_rater("  ")


def test_rate_trace_upserts_and_copies_experiment(bench, fb, monkeypatch):
    v1 = bench.prompts.register("p", template="Answer: {question}", model="claude-haiku-4-5")
    result = bench.complete(v1, question="How do I sync?")
    times = iter(["2026-01-01T00:00:00.000000+00:00", "2026-01-01T00:01:00.000000+00:00"])
    monkeypatch.setattr(feedback, "utc_now", lambda: next(times, "2026-01-01T00:02:00.000000+00:00"))
    first = fb.rate(result.trace_id, 4, rater="alice", comment="fine")
    second = fb.rate(result.trace_id, 2, rater="alice")
    assert first.id == second.id and second.rating == 2.0 and second.comment == "fine"
    assert first.experiment_id is None and first.item_id is None  # a call outside any experiment
    assert second.created_at < second.updated_at
    fb.rate(result.trace_id, True, rater="bob")  # thumbs up
    frame = fb.ratings(result.trace_id)
    assert frame["rater"].to_list() == ["alice", "bob"]
    assert frame["rating"].to_list() == [2.0, 1.0]
    assert fb.ratings(rater="bob").height == 1
    # A rating is not a preference.
    assert fb.preferences("anything").height == 0


def test_rate_copies_the_traces_experiment_and_item(bench, fb):
    ds = bench.datasets.load("d", [{"id": "q1", "question": "Sync?"}, {"id": "q2", "question": "Share?"}])
    v1 = bench.prompts.register("p", template="Answer: {question}", model="claude-haiku-4-5")
    exp = bench.experiment("e", dataset=ds, variants={"A": v1}).run(progress=False)
    trace_id = exp.completed_cells()[("A", "q2", 0)]
    rec = fb.rate(trace_id, 5, rater="alice")
    assert (rec.experiment_id, rec.item_id, rec.trace_id) == (exp.id, "q2", trace_id)
    assert fb.ratings(experiment_id=exp)["trace_id"].to_list() == [trace_id]


def test_rate_validates(bench, fb):
    with pytest.raises(ConfigError, match="no trace"):
        fb.rate("not-a-trace", 1, rater="r")
    v1 = bench.prompts.register("p", template="{q}", model="claude-haiku-4-5")
    tid = bench.complete(v1, q="hi").trace_id
    for bad in (float("nan"), float("inf"), "5", None):
        with pytest.raises(ConfigError, match="finite number"):
            fb.rate(tid, bad, rater="r")
    assert rows(bench) == []


def test_preference_none_without_ratings(bench):
    assert feedback.preference(bench.store, "exp-1", "A", "B") is None
    bench.feedback.prefer("exp-1", "i", "A", "C", "a", rater="r")
    assert feedback.preference(bench.store, "exp-1", "A", "B") is None


def test_preference_counts_match_stats(bench, fb):
    # B wins 3 (one given the other way round), A wins 1, ties 2 (both_bad counts as a tie).
    fb.prefer("exp-1", "i1", "A", "B", "b", rater="r")
    fb.prefer("exp-1", "i2", "A", "B", "b", rater="r")
    fb.prefer("exp-1", "i3", "B", "A", "a", rater="r")
    fb.prefer("exp-1", "i4", "A", "B", "a", rater="r")
    fb.prefer("exp-1", "i5", "A", "B", "tie", rater="r")
    fb.prefer("exp-1", "i6", "B", "A", "both_bad", rater="r")
    # Not counted: another experiment, another pair.
    fb.prefer("exp-2", "i1", "A", "B", "a", rater="r")
    fb.prefer("exp-1", "i1", "A", "C", "a", rater="r")
    # A row stored the other way round by something other than prefer() reads correctly too.
    bench.store.execute(
        "INSERT INTO feedback (id, experiment_id, item_id, variant_a, variant_b, choice, rater, created_at, updated_at) "
        "VALUES ('raw', 'exp-1', 'i7', 'B', 'A', 'a', 'r', 'x', 'x')"
    )
    p = feedback.preference(bench.store, "exp-1", "A", "B")
    assert (p.wins_b, p.wins_a, p.ties, p.n) == (4, 1, 2, 7)
    assert p == stats.preference(4, 1, 2)
    q = fb.preference("exp-1", "B", "A")
    assert (q.wins_b, q.wins_a, q.ties) == (1, 4, 2)
    assert math.isclose(q.win_rate, 1 - p.win_rate)


def test_all_ties_give_nan_rate(fb):
    fb.prefer("e", "i", "A", "B", "tie", rater="r")
    p = fb.preference("e", "A", "B")
    assert p.ties == 1 and p.n == 1 and math.isnan(p.win_rate) and p.p_value == 1.0
