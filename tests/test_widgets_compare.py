"""The compare widget, driven from Python: navigation, filters, ratings, escaping, word diffs."""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import workbench as wb
from workbench import stats
from workbench.errors import ConfigError
from workbench.widgets._common import word_diff
from workbench.widgets.compare import CompareWidget

pytest.importorskip("ipywidgets")

DATA = Path(__file__).resolve().parent.parent / "data" / "support_qa.jsonl"


@pytest.fixture(autouse=True)
def _no_swallowed_callback_errors(caplog):
    """ipywidgets only logs an exception raised in a click handler; make it fail the test."""
    yield
    assert not [r.getMessage() for r in caplog.records if "Exception in callback" in r.getMessage()]


@pytest.fixture
def exp(bench):
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    ds = bench.datasets.load("d", rows[:8])
    v1 = bench.prompts.register("support", template="Answer: {question}", model="claude-haiku-4-5")
    v2 = bench.prompts.register("support", template="Context: {context}\nQuestion: {question}", model="claude-haiku-4-5")
    return bench.experiment(
        "context-helps", dataset=ds, variants={"A": v1, "B": v2},
        scorers=[wb.scorers.contains_reference()], repeats=1,
    ).run(progress=False)


def feedback_rows(bench):
    return bench.store.query("SELECT * FROM feedback ORDER BY id")


def item_scores(exp, variant):
    s = exp.item_scores().filter((pl.col("variant") == variant) & (pl.col("scorer") == "contains_reference"))
    return dict(zip(s["item_id"].to_list(), s["value"].to_list()))


def test_entry_point_builds_the_widget(exp):
    # Twice: importing the submodule workbench.widgets.compare replaces the package's
    # entry-point function of the same name with the module, which must still be callable.
    assert isinstance(wb.widgets.compare(exp, rater="alice"), CompareWidget)
    w = wb.widgets.compare(exp, "A", "B", rater="alice")
    assert isinstance(w, CompareWidget)
    assert w.a == "A" and w.b == "B" and w.scorer == "contains_reference" and w.rater == "alice"
    assert w.last_error is None


def test_navigation_and_position(exp):
    w = CompareWidget(exp, rater="alice")
    order = exp.items("A", "B")["item_id"].to_list()
    assert w.item_ids == order
    assert (w.position.value, w.index, w.current_item_id) == ("1 / 8", 0, order[0])
    assert w.prev_button.disabled and not w.next_button.disabled
    w.next_button.click()
    assert (w.position.value, w.index, w.current_item_id) == ("2 / 8", 1, order[1])
    w.prev_button.click()
    assert w.position.value == "1 / 8"
    w.prev_button.click()  # already at the first item
    assert w.position.value == "1 / 8"
    w.jump.value = 7
    assert (w.position.value, w.current_item_id) == ("8 / 8", order[7])
    assert w.next_button.disabled
    w.next_button.click()
    assert w.position.value == "8 / 8"
    w.index = 3
    assert w.jump.value == 3 and w.current_item_id == order[3]
    assert w.last_error is None


def test_item_shows_inputs_reference_outputs_scores_cost_latency(exp):
    w = CompareWidget(exp, rater="alice")
    row = exp.items("A", "B").row(0, named=True)
    item = exp.dataset[row["item_id"]]
    assert f"Item {row['item_id']}" in w.item_html.value
    assert html.escape(item.inputs["question"]) in w.item_html.value
    assert html.escape(item.expected) in w.item_html.value
    traces = {r["id"]: r for r in exp.traces_df().iter_rows(named=True)}
    for page, side in ((w.left_html.value, "a"), (w.right_html.value, "b")):
        trace = traces[row[f"trace_{side}"]]
        assert html.escape(row[f"output_{side}"].split()[0]) in page
        assert "contains_reference" in page
        assert f"${trace['cost_usd']:,.6f}" in html.unescape(page)
        assert f"{trace['latency_ms']:,.0f} ms" in page


@pytest.mark.parametrize(("a", "b"), [("A", "B"), ("B", "A")])
def test_filters_come_from_the_scores(exp, a, b):
    w = CompareWidget(exp, a=a, b=b, rater="alice")
    sa, sb = item_scores(exp, a), item_scores(exp, b)
    everything = w.item_ids
    disagree = [i for i in everything if sa[i] != sb[i]]
    regress = [i for i in everything if sb[i] < sa[i]]
    # With context B answers what A cannot: the two orders give regressions in one direction only.
    assert disagree and (regress if a == "B" else not regress)

    w.filter.value = "disagreements"
    assert w.item_ids == disagree and w.position.value == f"1 / {len(disagree)}"
    w.filter.value = "regressions"
    assert w.item_ids == regress
    if not regress:
        assert w.position.value == "0 / 0" and w.current_item_id is None
        assert "No items match" in w.item_html.value
        assert all(button.disabled for button in w.rate_buttons.values())
    w.filter.value = "all"
    assert w.item_ids == everything
    assert w.last_error is None


def test_unrated_filter_drops_rated_items(bench, exp):
    w = CompareWidget(exp, rater="alice")
    order = w.item_ids
    w.rate_buttons["a"].click()
    w.filter.value = "unrated"
    assert w.item_ids == order[1:] and w.position.value == "1 / 7"
    w.jump.value = 2  # order[3]
    w.rate_buttons["tie"].click()
    # The rated item leaves the list; the next unrated one is shown.
    assert w.item_ids == [order[1], order[2], *order[4:]]
    assert w.current_item_id == order[4] and w.position.value == "3 / 6"
    # Another rater's ratings do not count as mine.
    other = CompareWidget(exp, rater="bob")
    other.filter.value = "unrated"
    assert other.item_ids == order
    assert len(feedback_rows(bench)) == 2


def test_clicking_b_better_writes_one_row_then_tie_updates_it(bench, exp):
    w = CompareWidget(exp, rater="alice")
    first = w.current_item_id
    w.rate_buttons["b"].click()
    (row,) = feedback_rows(bench)
    assert (row["experiment_id"], row["item_id"], row["variant_a"], row["variant_b"], row["choice"], row["rater"]) == (
        exp.id, first, "A", "B", "b", "alice"
    )
    assert row["trace_id"] is None
    assert datetime.fromisoformat(row["created_at"]).utcoffset() == timedelta(0)
    # Rating moves on to the next item.
    assert w.position.value == "2 / 8" and w.current_item_id != first
    assert "not rated yet" in w.rating_html.value
    w.prev_button.click()
    assert "B better" in w.rating_html.value and w.rate_buttons["b"].button_style == "success"
    w.rate_buttons["tie"].click()
    (again,) = feedback_rows(bench)
    assert again["id"] == row["id"] and again["choice"] == "tie" and again["created_at"] == row["created_at"]
    assert again["updated_at"] >= row["updated_at"]
    w.prev_button.click()
    assert "Tie" in w.rating_html.value
    assert w.rate_buttons["tie"].button_style == "success" and w.rate_buttons["b"].button_style == ""
    assert w.last_error is None


def test_rating_the_last_item_stays_there(bench, exp):
    w = CompareWidget(exp, rater="alice")
    w.jump.value = 7
    w.rate_buttons["both_bad"].click()
    assert w.position.value == "8 / 8" and "Both bad" in w.rating_html.value
    assert feedback_rows(bench)[0]["choice"] == "both_bad"


def test_comment_is_stored_and_shown_again(bench, exp):
    w = CompareWidget(exp, rater="alice")
    item = w.current_item_id
    w.comment.value = "B quotes the <docs> & gets it right"
    w.rate_buttons["b"].click()
    assert feedback_rows(bench)[0]["comment"] == "B quotes the <docs> & gets it right"
    assert w.comment.value == ""  # the next item has no comment yet
    w.prev_button.click()
    assert w.current_item_id == item and w.comment.value == "B quotes the <docs> & gets it right"


def test_summary_and_comparison_reflect_ratings(bench, exp):
    w = CompareWidget(exp, rater="alice")
    assert "no ratings yet" in w.summary_html.value
    for choice in ("b", "b", "b", "a", "tie", "both_bad"):
        w.rate_buttons[choice].click()
    expected = stats.preference(3, 1, 2)
    summary = w.summary_html.value
    assert "B wins 3, A wins 1, ties 2" in summary
    assert f"{expected.win_rate:.1%}" in summary
    assert f"95% CI {expected.ci_low:.1%}–{expected.ci_high:.1%}" in summary
    assert f"p={expected.p_value:.3g}" in summary
    assert "you rated 6 of 8 items" in summary
    pref = exp.compare("A", "B").preference
    assert pref == expected
    # Seen from the other side, the same ratings.
    flipped = exp.compare("B", "A").preference
    assert (flipped.wins_b, flipped.wins_a, flipped.ties) == (1, 3, 2)


def test_errors_stay_inline(bench, exp):
    w = CompareWidget(exp, rater="alice")
    w.filter.value = "regressions"  # none: B never does worse here
    w.rate("b")
    assert isinstance(w.last_error, ConfigError)
    assert "no item to rate" in w.message.value
    assert feedback_rows(bench) == []
    with pytest.raises(ConfigError, match="no scorer"):
        CompareWidget(exp, scorer="nope")
    with pytest.raises(ConfigError, match="no variant"):
        CompareWidget(exp, a="A", b="C")
    with pytest.raises(ConfigError, match="different variants"):
        CompareWidget(exp, a="A", b="A")


# -- escaping and word diffs, with outputs we choose -----------------------------------------------

XSS_A = "<script>alert(1)</script> The cat sat on the mat."
XSS_B = "<img src=x onerror=alert(1)> The dog sat on the mat."


@pytest.fixture
def scripted_exp(scripted_bench, scripted):
    ds = scripted_bench.datasets.load("x", [
        {"id": "x1", "inputs": {"question": "<b>bold</b> question"}, "expected": "<i>mat</i>"},
        {"id": "x2", "inputs": {"question": "long one"}, "expected": "word"},
    ])
    v1 = scripted_bench.prompts.register("p", template="Q: {question}", model="claude-haiku-4-5")
    v2 = scripted_bench.prompts.register("p", template="Question: {question}", model="claude-haiku-4-5")
    # concurrency=1 calls in cell order: item, then variant.
    scripted.queue(XSS_A, XSS_B, "word " * 300, "word " * 299 + "different")
    return scripted_bench.experiment(
        "xss", dataset=ds, variants={"A": v1, "B": v2}, scorers=[wb.scorers.contains_reference()], concurrency=1,
    ).run(progress=False)


def test_model_output_is_escaped(scripted_exp):
    w = CompareWidget(scripted_exp, rater="alice")
    w.jump.value = w.item_ids.index("x1")
    left, right, item = w.left_html.value, w.right_html.value, w.item_html.value
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in left
    assert "<script" not in left and "<script" not in right
    assert "&lt;img src=x onerror=alert(1)&gt;" in right
    assert "<img" not in left + right + item
    assert "&lt;b&gt;bold&lt;/b&gt; question" in item and "&lt;i&gt;mat&lt;/i&gt;" in item
    assert "<b>bold" not in item


def test_differing_words_are_marked(scripted_exp):
    w = CompareWidget(scripted_exp, rater="alice")
    w.jump.value = w.item_ids.index("x1")
    left, right = w.left_html.value, w.right_html.value
    assert ">cat</del>" in left and "cat</ins>" not in right
    assert ">dog</ins>" in right and "dog" not in left
    # Shared words are not marked.
    assert ">sat" not in left and ">sat" not in right
    assert "sat on the mat." in left and "sat on the mat." in right


def test_long_outputs_truncate_until_show_full(scripted_exp):
    w = CompareWidget(scripted_exp, rater="alice", max_chars=100)
    w.jump.value = w.item_ids.index("x2")
    assert "more characters" in w.right_html.value
    assert w.right_html.value.count("word ") < 50
    assert not w.show_full.disabled
    w.show_full.value = True
    assert "more characters" not in w.right_html.value
    assert w.right_html.value.count("word ") == 299
    assert ">different</ins>" in w.right_html.value
    assert "overflow:auto" in w.right_html.value and "max-height" in w.right_html.value


def test_word_diff_unit():
    a, b, hidden_a, hidden_b = word_diff("one two  three", "one 2 three\n")
    assert a == 'one <del class="wb-diff" style="background:#ffd7d5;text-decoration:none">two</del>  three'
    assert ">2</ins> three\n" in b and (hidden_a, hidden_b) == (0, 0)
    # Only whitespace differs: nothing marked.
    a, b, *_ = word_diff("a  b", "a b")
    assert "wb-diff" not in a + b
    a, b, hidden_a, hidden_b = word_diff("x " * 10, "x " * 10, limit=5)
    assert a == "x x x" and hidden_a == 15
    a, b, *_ = word_diff("<a>", None)
    assert a == '<del class="wb-diff" style="background:#ffd7d5;text-decoration:none">&lt;a&gt;</del>' and b == ""


def test_entry_points_stay_callable_after_their_modules_are_imported():
    import workbench.widgets as widgets
    import workbench.widgets.compare  # noqa: F401 - the import that used to shadow the function
    import workbench.widgets.traces  # noqa: F401

    assert callable(widgets.compare) and callable(widgets.traces)
    assert widgets.compare.__module__ == "workbench.widgets"


def test_single_keys_rate_and_move(bench, exp):
    w = wb.widgets.compare(exp, "A", "B", rater="keys")
    first = w.current_item_id
    w.key_box.value = "b"  # as typed into the key box
    assert w.key_box.value == ""
    assert [(r["item_id"], r["choice"]) for r in feedback_rows(bench)] == [(first, "b")]
    assert w.current_item_id != first  # rating moves on
    w.key_box.value = "p"
    assert w.current_item_id == first
    w.key_box.value = "t"
    assert [(r["item_id"], r["choice"]) for r in feedback_rows(bench)] == [(first, "tie")]
