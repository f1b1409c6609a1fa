"""Readouts lead with the answer: the verdict card, the narrow summary, and honest empty and broken states."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import workbench as wb
from workbench import stats
from workbench import verdict as vd
from workbench.errors import ConfigError
from workbench.experiments import variant
from workbench.providers.simulated import SimulatedProvider
from workbench.scorers import contains_reference

ROOT = Path(__file__).resolve().parent.parent
SUPPORT_QA = ROOT / "data" / "support_qa.jsonl"

NO_CONTEXT = "Answer the customer's question.\nQuestion: {question}"
WITH_CONTEXT = "Use this help-centre text.\nContext: {context}\nQuestion: {question}"
NUMBER_NOISE = re.compile(r"\bnan\b|\binf\b|\d[eE][-+]?\d", re.IGNORECASE)
"""What a person must never read: nan, inf, or a number in exponent notation."""


def prompts(bench):
    a = bench.prompts.register("support", NO_CONTEXT, "claude-haiku-4-5")
    b = bench.prompts.register("support", WITH_CONTEXT, "claude-haiku-4-5")
    return a, b


def dataset(bench, n: int | None = None, rows: list[dict] | None = None, name: str = "support-qa"):
    if rows is not None:
        return bench.datasets.load(name, rows)
    ds = bench.datasets.load(name, SUPPORT_QA)
    return ds if n is None else bench.datasets.load(f"{name}-{n}", [i.canonical() for i in ds.items[:n]])


def visible_text(html: str) -> str:
    """The text a reader sees in an HTML fragment (tags dropped, entities decoded)."""
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", " ", html.replace("<wbr>", "")))


@pytest.fixture
def finished(bench):
    a, b = prompts(bench)

    @wb.scorer(name="mentions_settings")
    def mentions_settings(output: str) -> float:
        return 1.0 if "settings" in output.lower() else 0.0

    return bench.experiment(
        "context-helps", dataset=dataset(bench), variants={"A": a, "B": b}, repeats=2,
        scorers=[contains_reference(), mentions_settings],
    ).run(progress=False)


# -- summary -----------------------------------------------------------------------------------------


def test_summary_is_narrow_by_default_and_every_column_on_request(finished):
    narrow = finished.summary()
    names = ["contains_reference", "mentions_settings"]
    assert isinstance(narrow, pl.DataFrame)
    assert narrow.columns == (
        ["variant", "label", "model", "n_items"]
        + [c for n in names for c in (n, f"{n}_ci_low", f"{n}_ci_high")]
        + ["error_rate", "cost_per_item_usd", "latency_p50_ms", "latency_p95_ms"]
    )
    wide = finished.summary(wide=True)
    assert set(narrow.columns) < set(wide.columns)
    assert {"calls", "errors", "cost_usd", "repeats", "contains_reference_pass_rate", "unpriced_calls"} <= set(wide.columns)
    assert narrow.equals(wide.select(narrow.columns))
    # Anything derived from it is plain Polars, with Polars' display.
    assert type(narrow.filter(pl.col("variant") == "A")) is pl.DataFrame


def test_summary_values(finished):
    s = finished.summary(wide=True)
    assert s["variant"].to_list() == ["A", "B"]
    for row in s.iter_rows(named=True):
        assert row["n_items"] == 60 and row["repeats"] == 2
        assert row["contains_reference_ci_low"] <= row["contains_reference"] <= row["contains_reference_ci_high"]
        assert row["error_rate"] == 0.0
        assert row["cost_usd"] > 0
        assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"]
    by = {r["variant"]: r for r in s.iter_rows(named=True)}
    assert by["B"]["contains_reference"] > by["A"]["contains_reference"]
    assert by["B"]["cost_usd"] > by["A"]["cost_usd"]  # the context is sent with every call


def test_summary_reads_like_a_person_wrote_it(finished):
    s = finished.summary()
    html, text = s._repr_html_(), str(s)
    for shown in (visible_text(html), text):
        assert "cost/item ($)" in shown and "p50 (ms)" in shown and "p95 (ms)" in shown
        assert "contains_reference (95% CI)" in shown
        assert "240 of 240 calls recorded" in shown
        assert not NUMBER_NOISE.search(shown), shown
    row = s.row(1, named=True)
    # Each scorer's mean shows with its interval, at three decimals.
    lo, hi = row["contains_reference_ci_low"], row["contains_reference_ci_high"]
    assert f"{row['contains_reference']:.3f} ({lo:.3f} to {hi:.3f})" in text
    # HTML: MathJax is kept out and "$" never reaches the page raw.
    assert 'class="wb-out tex2jax_ignore mathjax_ignore' in html and "$" not in html
    assert "simulated provider" in text


def test_a_missing_number_reads_n_a_with_the_reason(bench):
    v = bench.prompts.register("p", "Question: {q}", "my-local-model")
    ds = bench.datasets.load("d", [{"q": f"q{i}?", "expected": "q"} for i in range(3)])
    exp = bench.experiment("unpriced", dataset=ds, variants={"A": v}, scorers=[contains_reference()])
    with pytest.warns(UserWarning, match="no price known"):
        exp.run(progress=False)
    text = str(exp.summary())
    assert "n/a" in text and "nan" not in text.lower()
    assert "cost n/a for A: no price known for my-local-model; set one with bench.pricing.set_price" in text


# -- the comparison card -----------------------------------------------------------------------------


def test_compare_says_context_helps(finished):
    c = finished.compare("A", "B")
    assert c.scores["scorer"].to_list() == ["contains_reference", "mentions_settings"]
    items = finished.item_scores()
    for row in c.scores.iter_rows(named=True):
        assert row["n"] == 60
        assert row["p_holm"] >= row["p_value"]  # two scorers: Holm adjusts upwards
        assert row["mde"] > 0 and row["target_effect"] == pytest.approx(0.05)  # scores within 0..1
        # The items fall in 10 clusters: what n detects follows the clustered SE on 9 degrees of freedom,
        # and n needed is the fewest clusters (of today's size) at which the effect that matters shows.
        assert row["n_clusters"] == 10
        assert row["mde"] == pytest.approx(stats.detectable_effect_from_se(row["se"], 9, power=vd.POWER))
        g = row["clusters_needed"]

        def detects(clusters):
            return stats.detectable_effect_from_se(row["se"] * math.sqrt(10 / clusters), clusters - 1, power=vd.POWER) <= 0.05

        assert detects(g) and not detects(g - 1)
        assert row["n_needed"] == math.ceil(60 * g / 10)
        assert items.filter(pl.col("scorer") == row["scorer"]).height == 120
    assert (c.scores["p_holm"] > c.scores["p_value"]).any()
    row = c.scores.row(0, named=True)
    assert row["verdict"] == "B better" == c.verdicts()["contains_reference"] and row["badge"] == vd.BETTER
    assert row["diff"] > 0 and 0 < row["ci_low"] <= row["diff"] <= row["ci_high"]
    with pytest.raises(ConfigError, match="no variant 'C'"):
        finished.compare("A", "C")


def test_the_card_leads_with_the_answer_as_text_and_html(finished):
    c = finished.compare("A", "B")
    text = str(c)
    lines = text.splitlines()
    assert lines[0] == "context-helps: B vs A  [simulated provider]"
    assert lines[1].startswith("240 of 240 calls recorded")
    quality = [line for line in lines if "contains_reference:" in line][0]
    r = c.scores.row(0, named=True)
    assert quality.lstrip().startswith("B better")
    assert f"diff +{r['diff']:.3f} (95% CI +{r['ci_low']:.3f} to +{r['ci_high']:.3f})" in quality
    assert "p<0.001 (Holm)" in quality and f"n={r['n']} in 10 clusters, MDE {r['mde']:.3f}" in quality
    cost = [line for line in lines if "per item" in line][0]
    assert "B costlier" in cost and "per 1,000 calls" in cost and re.search(r"\(\+\d+%\)", cost)
    latency = [line for line in lines if line.lstrip().split("  ")[-1].startswith(("p50", "p95"))]
    assert len(latency) == 2 and all(" ms (95% CI " in line for line in latency)
    assert not NUMBER_NOISE.search(text)

    html = c._repr_html_()
    shown = visible_text(html)
    assert shown.index("B better") < shown.index("contains_reference") < shown.index("per item") < shown.index("p50")
    assert "<details" in html and "Details: statistics" in shown  # detail tables follow, collapsed
    assert "tex2jax_ignore" in html and "$" not in html and not NUMBER_NOISE.search(shown)
    # A p-value never splits across lines: it sits in a piece that does not wrap.
    assert re.search(r'white-space:nowrap">p&lt;0\.001 \(Holm\)</span>', html)
    assert "Simulated provider" in shown


def test_no_detectable_difference_needs_enough_data(bench):
    """Identical variants on 60 items: the MDE is below the effect that matters, so "no detectable difference"."""
    _, b = prompts(bench)
    exp = bench.experiment("same", dataset=dataset(bench), variants={"A": b, "B": b},
                           scorers=[contains_reference()]).run(progress=False)
    row = exp.compare().scores.row(0, named=True)
    assert row["badge"] == vd.NONE and row["verdict"] == "no detectable difference"
    assert row["mde"] <= row["target_effect"]
    assert "enough to detect it" in str(exp.compare())


def test_without_clusters_n_needed_is_the_n_at_which_the_effect_shows(bench):
    rows = [json.loads(line) for line in SUPPORT_QA.read_text().splitlines()]
    for row in rows:
        row.pop("cluster")
    a, b = prompts(bench)
    exp = bench.experiment("iid", dataset=dataset(bench, rows=rows, name="no-clusters"), variants={"A": a, "B": b},
                           scorers=[contains_reference()]).run(progress=False)
    row = exp.compare().scores.row(0, named=True)
    items = exp.item_scores().sort("item_id")
    va = items.filter(pl.col("variant") == "A")["value"].to_numpy()
    vb = items.filter(pl.col("variant") == "B")["value"].to_numpy()
    sds = float(np.std(va, ddof=1)), float(np.std(vb, ddof=1))
    corr = row["correlation"] or 0.0  # null when either side is constant
    assert row["n_clusters"] is None and row["clusters_needed"] is None
    assert stats.minimum_detectable_effect(*sds, corr, row["n_needed"]) <= 0.05
    assert stats.minimum_detectable_effect(*sds, corr, row["n_needed"] - 1) > 0.05


def test_few_clusters_never_read_as_enough_data(bench):
    """Equal prompts over 120 items in only 2 clusters: the clustered interval cannot rule out the effect
    that matters, so the card must not say n was enough, and it says why."""
    rows = [json.loads(line) for line in SUPPORT_QA.read_text().splitlines()]
    rows = [{**r, "id": f"{r['id']}-{k}", "cluster": f"c{i % 2}"} for k in range(2) for i, r in enumerate(rows)]
    _, b = prompts(bench)
    exp = bench.experiment("two-clusters", dataset=dataset(bench, rows=rows, name="two-clusters"),
                           variants={"A": b, "B": variant(b, max_tokens=299)}, scorers=[contains_reference()]).run(progress=False)
    c = exp.compare(target_effect=0.1)
    row = c.scores.row(0, named=True)
    assert row["n"] == 120 and row["n_clusters"] == 2
    iid = stats.minimum_detectable_effect(0.5, 0.5, 0.0, 120)
    assert row["mde"] > iid and row["mde"] > 0.1
    assert row["badge"] == vd.UNDERPOWERED and row["clusters_needed"] > 2
    assert -1 <= row["ci_low"] <= row["ci_high"] <= 1  # a difference of two 0..1 scores
    text = str(c)
    assert "in 2 clusters" in text and "only 2 clusters" in text and "enough to detect it" not in text


def test_too_few_items_say_not_enough_data_and_how_many_are_needed(bench):
    _, b = prompts(bench)
    exp = bench.experiment("models", dataset=dataset(bench, 10), scorers=[contains_reference()],
                           variants={"A": b, "B": variant(b, model="claude-sonnet-4-5")}).run(progress=False)
    c = exp.compare()
    row = c.scores.row(0, named=True)
    assert row["badge"] == vd.UNDERPOWERED and row["verdict"] == "not enough data"
    assert row["mde"] > row["target_effect"] and row["n_needed"] > row["n"]
    assert f"about {row['n_needed']:,} items in {row['clusters_needed']:,} clusters needed" in str(c)
    # The same data judged against a larger effect that matters: now n was enough.
    relaxed = exp.compare(target_effect={"contains_reference": 2 * row["mde"]}).scores.row(0, named=True)
    assert relaxed["badge"] == vd.NONE


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        ((0.2, 0.1, 0.3, 0.001), vd.BETTER),
        ((-0.2, -0.3, -0.1, 0.001), vd.WORSE),
        ((0.2, 0.1, 0.3, 0.2), vd.NONE),  # interval excludes 0 but p (after Holm) does not clear alpha
        ((0.01, -0.05, 0.07, 0.7), vd.NONE),
        ((0.2, 0.1, 0.3, None), vd.BETTER),  # a bootstrap interval: judged by the interval alone
    ],
)
def test_decide(args, kind):
    assert vd.decide(*args, n=60, mde=0.04, target=0.05) == kind


def test_decide_underpowered_and_empty():
    assert vd.decide(0.01, -0.2, 0.22, 0.9, n=12, mde=0.3, target=0.05) == vd.UNDERPOWERED
    assert vd.decide(0.0, math.nan, math.nan, math.nan, n=1) == vd.UNDERPOWERED
    assert vd.decide(None, None, None, None, n=0) == vd.EMPTY
    assert vd.flip(vd.BETTER) == vd.WORSE and vd.flip(vd.UNDERPOWERED) == vd.UNDERPOWERED


def test_a_card_can_be_built_from_other_numbers():
    """The card is a reusable piece: an online readout or a CI gate builds one from its own numbers."""
    card = vd.Card(
        title="support@production, last 24 h", a="v1", b="v2",
        metrics=[vd.Metric("thumbs_up", 0.61, 0.66, 0.05, 0.01, 0.09, 0.02, 4_000, vd.BETTER, 0.03, 0.02, None)],
        cost=vd.Cost(0.0004, 0.00048, 0.00008, 0.00006, 0.0001, 4_000, vd.WORSE),
        status="4,000 sessions per arm",
    )
    text = vd.text(card)
    assert text.splitlines()[0] == "support@production, last 24 h: v2 vs v1"
    assert "v2 better" in text and "v2 costlier" in text and "+$0.08 per 1,000 calls" in text
    assert "v2 better" in visible_text(vd.html(card))


def test_target_effect_is_checked(finished):
    with pytest.raises(ConfigError, match="target_effect names no scorer 'nope'"):
        finished.compare(target_effect={"nope": 0.1})
    with pytest.raises(ConfigError, match="non-zero finite number"):
        finished.compare(target_effect=0)


def test_human_preference_joins_the_card(finished):
    items = [i.item_id for i in finished.dataset.items]
    for i, item in enumerate(items[:12]):
        finished.bench.feedback.prefer(finished.id, item, "A", "B", "b" if i < 10 else "a")
    c = finished.compare()
    assert "Human preference" in visible_text(c._repr_html_())
    line = [x for x in str(c).splitlines() if "wins" in x][0]
    assert "B preferred" in line and "B wins 10, A wins 2, ties 0" in line and "win rate 83.3%" in line


# -- empty and misleading states ---------------------------------------------------------------------


def test_no_recorded_calls_say_so_instead_of_a_verdict(bench):
    a, b = prompts(bench)
    exp = bench.experiment("not-run", dataset=dataset(bench), variants={"A": a, "B": b}, scorers=[contains_reference()])
    c = exp.compare()
    assert c.empty and set(c.verdicts().values()) == {"no data"}
    for shown in (str(c), visible_text(c._repr_html_()), str(exp.summary()), visible_text(exp.summary()._repr_html_())):
        assert "0 of 120 calls made: run exp.run()" in shown
        assert "no detectable difference" not in shown and not NUMBER_NOISE.search(shown)


def test_a_partial_run_says_what_is_missing(bench):
    a, b = prompts(bench)
    exp = bench.experiment("partial", dataset=dataset(bench), variants={"A": a, "B": b},
                           scorers=[contains_reference()], budget_usd=0.01).run(progress=False)
    made = len(exp.completed_cells())
    assert 0 < made < 120
    expected = f"{made} of 120 calls recorded ({120 - made} missing): run exp.run() to finish"
    assert expected in str(exp.compare()) and expected in str(exp.summary())


def test_run_on_a_complete_experiment_says_nothing_to_do(tmp_path, capsys):
    provider = SimulatedProvider(seed=0, time_scale=0)
    with wb.open(tmp_path / "wb.db", provider=provider) as bench:
        a, b = prompts(bench)
        exp = bench.experiment("done", dataset=dataset(bench, 10), variants={"A": a, "B": b}, repeats=2)
        exp.run(progress=False)
        calls = provider.calls
        capsys.readouterr()
        exp.run(progress=False)
        assert provider.calls == calls
        assert capsys.readouterr().out.strip() == "nothing to do: 40 of 40 calls recorded"
        assert exp.last_run.status == "completed"


def test_one_scorers_bad_values_never_break_the_others(finished):
    """Infinities in one scorer and nothing but nulls in another: the rest of the readout stands."""
    before = finished.compare().scores.filter(pl.col("scorer") == "contains_reference")
    store = finished.bench.store
    store.execute("UPDATE scores SET value = 9e999 WHERE scorer = 'mentions_settings' AND item_id IN "
                  "(SELECT item_id FROM dataset_items WHERE idx % 3 = 0)")
    store.execute("UPDATE scores SET value = NULL, rationale = 'TimeoutError: judge took too long' "
                  "WHERE scorer = 'contains_reference'")
    c = finished.compare()
    rows = {r["scorer"]: r for r in c.scores.iter_rows(named=True)}
    assert rows["contains_reference"]["badge"] == vd.EMPTY
    assert "no usable values" in rows["contains_reference"]["note"] and "TimeoutError" in rows["contains_reference"]["note"]
    assert rows["mentions_settings"]["n"] > 0 and "infinite or not a number" in rows["mentions_settings"]["note"]
    assert math.isfinite(rows["mentions_settings"]["diff"])
    text = str(c)
    assert "infinite or not a number" in text and not NUMBER_NOISE.search(text)
    summary = str(finished.summary())
    assert "mentions_settings" in summary and "TimeoutError" in summary
    q = finished.quality().filter(pl.col("scorer") == "mentions_settings")
    assert q["mean"].is_not_null().all()
    # The report of the same experiment still builds.
    finished.bench.report(finished, finished.bench.path + ".html")
    assert before.height == 1


def test_items_without_a_cluster_are_clusters_of_their_own(bench):
    rows = [json.loads(line) for line in SUPPORT_QA.read_text().splitlines()][:30]
    for i, row in enumerate(rows):
        if i % 3:
            row.pop("cluster")
    a, b = prompts(bench)
    exp = bench.experiment("clusters", dataset=dataset(bench, rows=rows, name="partial-clusters"),
                           variants={"A": a, "B": b}, scorers=[contains_reference()]).run(progress=False)
    q = exp.quality().filter(pl.col("variant") == "B").row(0, named=True)
    items = exp.item_scores().filter((pl.col("variant") == "B")).sort("item_id")
    own = [c if c is not None else f"own-{i}" for i, c in zip(items["item_id"], items["cluster"])]
    reference = stats.mean_ci(items["value"].to_numpy(), clusters=own)
    assert q["se"] == pytest.approx(reference.se) and q["n_clusters"] == reference.n_clusters
    note = "20 of 30 items have no cluster: each counts as a cluster of its own"
    assert note in str(exp.compare()) and note in str(exp.summary())


def test_a_chart_name_typo_fails_before_altair_is_imported():
    code = (
        "import sys\nfrom workbench import readouts\nfrom workbench.errors import ConfigError\n"
        "try:\n    readouts.chart(None, 'qualty')\nexcept ConfigError as exc:\n    print(exc)\n"
        "print('altair' in sys.modules, 'polars' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("unknown chart 'qualty'; did you mean 'quality'?")
    assert out[1] == "False False"


def test_intervals_of_0_to_1_scores_stay_in_their_range(bench):
    """Two items, one right and one wrong: the t interval of the mean reaches past 0 and 1; the readout does not."""
    _, b = prompts(bench)
    rows = [json.loads(line) for line in SUPPORT_QA.read_text().splitlines()][:2]
    rows[0]["expected"] = "no answer says this"
    for row in rows:
        row.pop("cluster")
    exp = bench.experiment("tiny", dataset=dataset(bench, rows=rows, name="tiny"), variants={"A": b},
                           scorers=[contains_reference()]).run(progress=False)
    row = exp.quality().row(0, named=True)
    raw = stats.mean_ci(exp.item_scores()["value"].to_numpy())
    assert raw.ci_low < 0 and raw.ci_high > 1  # what the t interval alone says
    assert (row["mean"], row["ci_low"], row["ci_high"]) == (0.5, 0.0, 1.0)
