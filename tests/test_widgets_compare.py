"""The compare widget, driven from Python: the grid, cell clicks, keys, filters, ratings, escaping.

Clicks, keys and typing go through ``send_front``: the very messages the
browser sends, handled by the same code (the browser test checks the
browser sends them).
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import workbench as wb
from workbench import _format, stats
from workbench.errors import ConfigError
from workbench.widgets._common import word_diff
from workbench.widgets.compare import KEYS, CompareWidget

pytest.importorskip("anywidget")

DATA = Path(__file__).resolve().parent.parent / "data" / "support_qa.jsonl"
CELL = re.compile(r'<td class="wb-cell[^"]*"(?: style="([^"]*)")? data-wb-action="cell" data-wb-arg="([^"]*)"[^>]*>([^<]*)</td>')


def rows_of(n):
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:n]


def support_experiment(bench, name, items, scorers, repeats):
    """Variant A without the passage, B with it, on the first ``items`` support questions."""
    ds = bench.datasets.load(f"d{items}", rows_of(items))
    v1 = bench.prompts.register("support", template="Answer: {question}", model="claude-haiku-4-5")
    v2 = bench.prompts.register("support", template="Context: {context}\nQuestion: {question}", model="claude-haiku-4-5")
    return bench.experiment(name, dataset=ds, variants={"A": v1, "B": v2}, scorers=scorers, repeats=repeats).run(progress=False)


@pytest.fixture
def exp(bench):
    return support_experiment(bench, "context-helps", 8, [wb.scorers.contains_reference()], 1)


@pytest.fixture
def judged(bench):
    """Three repeats and an LLM judge beside the reference check."""
    scorers = [wb.scorers.contains_reference(), wb.scorers.llm_judge("Answers from the passage.")]
    return support_experiment(bench, "judged", 4, scorers, 3)


def front(w, **message):
    """What the browser sends on a click, a key, typing or a select; it must not fail."""
    if "arg" in message:
        message["arg"] = json.dumps(message["arg"])
    w.send_front(message)
    assert w.last_error is None, w.last_error


def feedback_rows(bench):
    return bench.store.query("SELECT * FROM feedback ORDER BY id")


def item_scores(exp, variant):
    s = exp.item_scores().filter((pl.col("variant") == variant) & (pl.col("scorer") == "contains_reference"))
    return dict(zip(s["item_id"].to_list(), s["value"].to_list()))


def cells(w):
    """Every grid cell: (item, variant, repeat, text, style)."""
    out = []
    for style, raw, text in CELL.findall(w.part("grid")):
        where = json.loads(html.unescape(raw))
        out.append((where["item"], where["variant"], where["repeat"], text, style))
    return out


def test_entry_point_builds_the_widget(exp):
    # Twice: importing the submodule workbench.widgets.compare replaces the package's
    # entry-point function of the same name with the module, which must still be callable.
    assert isinstance(wb.widgets.compare(exp, rater="alice"), CompareWidget)
    w = wb.widgets.compare(exp, "A", "B", rater="alice")
    assert isinstance(w, CompareWidget)
    assert w.a == "A" and w.b == "B" and w.scorer == "contains_reference" and w.rater == "alice"
    assert w.last_error is None
    assert set(KEYS) <= set(w.hotkeys)  # the keys the browser reports
    assert 'class="wb-out tex2jax_ignore mathjax_ignore wb-compare"' in w.shell  # MathJax skips it all


def test_grid_has_every_item_variant_and_repeat_coloured_by_score(judged):
    w = CompareWidget(judged, rater="alice")
    got = cells(w)
    assert len(got) == 4 * 2 * 3
    scores = judged.scores_df().filter(pl.col("scorer") == "contains_reference")
    calls = judged.traces_df().filter(pl.col("status") == "ok").select("id", "item_id", "variant", "repeat")
    by_cell = {(r["item_id"], r["variant"], r["repeat"] + 1): r["id"] for r in calls.iter_rows(named=True)}
    value = dict(zip(scores["trace_id"].to_list(), scores["value"].to_list()))
    for item, variant, repeat, text, style in got:
        v = value[by_cell[(item, variant, repeat)]]
        assert text == _format.num(v, 2)
        assert style.startswith("background:hsl(" + ("120" if v == 1 else "0" if v == 0 else ""))
    # The item rows are the dataset's, in order.
    assert [c[0] for c in got[::6]] == [i.item_id for i in judged.dataset.items]


def test_a_cell_click_opens_that_item_and_repeat(judged):
    w = CompareWidget(judged, rater="alice")
    item = judged.dataset.items[2].item_id
    front(w, type="click", action="cell", arg={"item": item, "variant": "B", "repeat": 3})
    assert w.current_item_id == item and w.repeat == 2 and w.focus_variant == "B"
    call = judged.traces_df().filter(
        (pl.col("item_id") == item) & (pl.col("variant") == "B") & (pl.col("repeat") == 2) & (pl.col("status") == "ok")
    ).row(0, named=True)
    detail = w.part("detail")
    assert f"Item {item}" in detail
    assert html.escape(call["output"].split()[0]) in detail
    assert 'wb-chip wb-on' in detail and "repeat 3" in detail
    assert 'class="wb-cell wb-cur"' in w.part("grid")  # the clicked cell is outlined


def test_every_repeat_can_be_seen_by_chip_or_key(judged):
    w = CompareWidget(judged, rater="alice")
    item = w.current_item_id
    outputs = judged.traces_df().filter((pl.col("item_id") == item) & (pl.col("variant") == "A")).sort("repeat")
    assert w.part("detail").count('data-wb-action="repeat"') == 2 * 3  # three chips per side
    for k in (1, 2, 3):
        front(w, type="key", key=str(k)) if k != 2 else front(w, type="click", action="repeat", arg=2)
        assert w.repeat == k - 1
        text = outputs.filter(pl.col("repeat") == k - 1)["output"][0]
        assert html.escape(text.split()[-1]) in w.part("detail")
    assert w.current_item_id == item  # a repeat is not a move


def test_the_judges_rationale_stands_beside_its_score(judged):
    w = CompareWidget(judged, rater="alice")
    item = w.current_item_id
    judge = judged.scores_df().filter((pl.col("scorer") == "judge") & (pl.col("item_id") == item)
                                      & (pl.col("variant") == "B") & (pl.col("repeat") == 0)).row(0, named=True)
    assert judge["rationale"] and judge["judge_trace_id"]
    detail = w.part("detail")
    assert f"judge <span class=\"wb-tag\">LLM judge</span>: <b>{_format.num(judge['value'], 2)}</b>" in detail
    assert html.escape(judge["rationale"]) in detail
    # Its mean over the three repeats is there too.
    assert "mean of 3" in detail


def test_opens_on_the_first_item_where_the_variants_differ(scripted_bench, scripted):
    ds = scripted_bench.datasets.load("same", [
        {"id": f"s{i}", "inputs": {"q": f"question {i}"}, "expected": "yes"} for i in range(4)
    ])
    v1 = scripted_bench.prompts.register("p", template="Q: {q}", model="claude-haiku-4-5")
    v2 = scripted_bench.prompts.register("p", template="Question: {q}", model="claude-haiku-4-5")
    # Items s0 and s1: both say yes; s2: only B does; s3: both do.
    scripted.queue("yes", "yes", "yes", "yes", "no", "yes", "yes", "yes")
    e = scripted_bench.experiment("first-diff", dataset=ds, variants={"A": v1, "B": v2},
                                  scorers=[wb.scorers.contains_reference()], concurrency=1).run(progress=False)
    w = CompareWidget(e, rater="alice")
    assert w.item_ids == ["s0", "s1", "s2", "s3"] and w.current_item_id == "s2" and w.index == 2


def test_navigation_by_buttons_and_keys(exp):
    w = CompareWidget(exp, rater="alice")
    order = [i.item_id for i in exp.dataset.items]
    assert w.item_ids == order
    start = w.index
    front(w, type="click", action="move", arg=1)
    assert w.index == start + 1
    for key, step in (("n", 1), ("ArrowDown", 1), ("ArrowRight", 1), ("p", -1), ("ArrowUp", -1), ("ArrowLeft", -1)):
        before = w.index
        front(w, type="key", key=key)
        assert w.index == before + step, key
    w.go(0)
    front(w, type="key", key="p")  # already at the first item
    assert w.position == "1 / 8"
    w.go(7)
    front(w, type="key", key="n")
    assert w.position == "8 / 8" and w.current_item_id == order[7]
    front(w, type="click", action="item", arg=order[3])  # the item's name in the grid
    assert w.current_item_id == order[3]


@pytest.mark.parametrize(("a", "b"), [("A", "B"), ("B", "A")])
def test_filters_come_from_the_scores(exp, a, b):
    w = CompareWidget(exp, a=a, b=b, rater="alice")
    sa, sb = item_scores(exp, a), item_scores(exp, b)
    everything = w.item_ids
    disagree = [i for i in everything if sa[i] != sb[i]]
    regress = [i for i in everything if sb[i] < sa[i]]
    # With context B answers what A cannot: the two orders give regressions in one direction only.
    assert disagree and (regress if a == "B" else not regress)

    front(w, type="change", name="filter", value="disagreements")
    assert w.item_ids == disagree and w.position == f"1 / {len(disagree)}"
    front(w, type="change", name="filter", value="regressions")
    assert w.item_ids == regress
    if not regress:
        assert w.position == "0 / 0" and w.current_item_id is None
        assert "No items match" in w.part("grid")
    front(w, type="change", name="filter", value="all")
    assert w.item_ids == everything
    front(w, type="change", name="order", value="regressions")
    deltas = [sb[i] - sa[i] for i in w.item_ids]
    assert deltas == sorted(deltas)


def test_unrated_filter_drops_rated_items(bench, exp):
    w = CompareWidget(exp, rater="alice")
    order = w.item_ids
    w.go(0)
    front(w, type="key", key="a")
    front(w, type="change", name="filter", value="unrated")
    assert w.item_ids == order[1:] and w.position == "1 / 7"
    w.go(2)  # order[3]
    front(w, type="key", key="t")
    # The rated item leaves the list; the next unrated one is shown.
    assert w.item_ids == [order[1], order[2], *order[4:]]
    assert w.current_item_id == order[4] and w.position == "3 / 6"
    # Another rater's ratings do not count as mine.
    other = CompareWidget(exp, rater="bob")
    other.filter = "unrated"
    assert other.item_ids == order
    assert len(feedback_rows(bench)) == 2


def test_single_keys_rate_into_the_file_and_rating_again_updates(bench, exp):
    w = CompareWidget(exp, rater="alice")
    first = w.current_item_id
    front(w, type="key", key="b")
    (row,) = feedback_rows(bench)
    assert (row["experiment_id"], row["item_id"], row["variant_a"], row["variant_b"], row["choice"], row["rater"]) == (
        exp.id, first, "A", "B", "b", "alice"
    )
    assert row["trace_id"] is None
    assert datetime.fromisoformat(row["created_at"]).utcoffset() == timedelta(0)
    # Rating moves on to the next item, and says what it saved.
    assert w.current_item_id != first and "not rated yet" in w.part("rate")
    assert f"Saved “B better” for {first}." in w.part("message")
    front(w, type="key", key="p")
    assert "Your rating: <b>B better</b>" in w.part("rate") and 'class="wb-btn wb-on"' in w.part("rate")
    front(w, type="key", key="t")
    (again,) = feedback_rows(bench)
    assert again["id"] == row["id"] and again["choice"] == "tie" and again["created_at"] == row["created_at"]
    front(w, type="key", key="p")
    front(w, type="click", action="rate", arg="both_bad")  # the button does the same
    assert feedback_rows(bench)[0]["choice"] == "both_bad"
    front(w, type="key", key="p")
    front(w, type="key", key="x")
    assert [r["choice"] for r in feedback_rows(bench)] == ["both_bad"]
    # The grid's "you" column shows the rating.
    assert ">bad</td>" in w.part("grid")


def test_rating_the_last_item_stays_there(bench, exp):
    w = CompareWidget(exp, rater="alice")
    w.go(7)
    front(w, type="click", action="rate", arg="both_bad")
    assert w.position == "8 / 8" and "Both bad" in w.part("rate")
    assert feedback_rows(bench)[0]["choice"] == "both_bad"


def test_comment_typed_is_stored_and_shown_again(bench, exp):
    w = CompareWidget(exp, rater="alice")
    item = w.current_item_id
    front(w, type="input", name="comment", value="B quotes the <docs> & gets it right")
    front(w, type="key", key="b")
    assert feedback_rows(bench)[0]["comment"] == "B quotes the <docs> & gets it right"
    assert w.comment == ""  # the next item has no comment yet
    front(w, type="key", key="p")
    assert w.current_item_id == item and w.comment == "B quotes the <docs> & gets it right"
    assert "B quotes the &lt;docs&gt; &amp; gets it right</textarea>" in w.part("rate")


def test_summary_and_comparison_reflect_ratings(bench, exp):
    w = CompareWidget(exp, rater="alice")
    w.go(0)
    assert "no ratings yet" in w.part("summary")
    for key in ("b", "b", "b", "a", "t", "x"):
        front(w, type="key", key=key)
    expected = stats.preference(3, 1, 2)
    summary = html.unescape(w.part("summary"))
    assert "B wins 3, A wins 1, ties 2" in summary
    assert _format.pct(expected.win_rate) in summary
    assert f"95% CI {_format.interval(expected.ci_low, expected.ci_high, _format.pct)}" in summary
    assert _format.pvalue(expected.p_value) in summary
    assert "you rated 6 of 8 items" in summary
    assert exp.compare("A", "B").preference == expected
    flipped = exp.compare("B", "A").preference
    assert (flipped.wins_b, flipped.wins_a, flipped.ties) == (1, 3, 2)


def test_errors_stay_inline(bench, exp):
    w = CompareWidget(exp, rater="alice")
    w.filter = "regressions"  # none: B never does worse here
    w.send_front({"type": "key", "key": "b"})
    assert isinstance(w.last_error, ConfigError)
    assert "no item to rate" in w.part("message")
    assert feedback_rows(bench) == []
    w.send_front({"type": "click", "action": "cell", "arg": json.dumps({"item": "nope", "variant": "A", "repeat": 1})})
    assert "no item" in w.part("message")
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


def sides(w):
    """The side-by-side part split at the A / B boundary, and the item part before them."""
    detail = w.part("detail")
    item, rest = detail.split('<div class="wb-sides">', 1)
    left, right = rest.split('<div class="wb-side', 2)[1:]
    return left, right, item


def test_model_output_is_escaped(scripted_exp):
    w = CompareWidget(scripted_exp, rater="alice")
    w.select("x1")
    left, right, item = sides(w)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in left
    assert "<script" not in left and "<script" not in right
    assert "&lt;img src=x onerror=alert(1)&gt;" in right
    assert "<img" not in left + right + item
    assert "&lt;b&gt;bold&lt;/b&gt; question" in item and "&lt;i&gt;mat&lt;/i&gt;" in item
    assert "<b>bold" not in item


def test_differing_words_are_marked(scripted_exp):
    w = CompareWidget(scripted_exp, rater="alice")
    w.select("x1")
    left, right, _ = sides(w)
    assert ">cat</del>" in left and "cat</ins>" not in right
    assert ">dog</ins>" in right and "dog" not in left
    # Shared words are not marked.
    assert ">sat" not in left and ">sat" not in right
    assert "sat on the mat." in left and "sat on the mat." in right


def test_long_outputs_truncate_until_show_full(scripted_exp):
    w = CompareWidget(scripted_exp, rater="alice", max_chars=100)
    w.select("x2")
    right = sides(w)[1]
    assert "more characters" in right and right.count("word ") < 50
    assert 'data-wb-action="full"' in w.part("detail")
    front(w, type="click", action="full")
    right = sides(w)[1]
    assert "more characters" not in right
    assert right.count("word ") == 299
    assert ">different</ins>" in right
    assert "overflow:auto" in right and "max-height" in right


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
