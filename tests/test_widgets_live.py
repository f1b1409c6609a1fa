"""The live experiment widget, driven from Python: progress, errors, spend, running means."""

from __future__ import annotations

import re

import json
import threading
import time
from pathlib import Path

import pytest

import workbench as wb
from workbench import _format as fmt
from workbench import charts
from workbench.providers.simulated import SimulatedProvider
from workbench.widgets import live
from workbench.widgets.live import ExperimentWidget

pytest.importorskip("ipywidgets")

DATA = Path(__file__).resolve().parent.parent / "data" / "support_qa.jsonl"

def _cells(html: str) -> str:
    """The HTML with table cells' alignment styles dropped, so a test can look for ``<td>text</td>``."""
    return re.sub(r"<(td|th) style=\"[^\"]*\">", r"<\1>", html)



@pytest.fixture(autouse=True)
def _click_errors_fail_the_test(caplog):
    """ipywidgets logs, not raises, what a click handler raises: turn that into a failure."""
    yield
    swallowed = [r.getMessage() for r in caplog.records if "Exception in callback" in r.getMessage()]
    assert not swallowed


def make_experiment(bench, name="live", *, items=6, repeats=2, budget_usd=None, scorers=None):
    # Every sixth item: one per cluster, so the clustered CIs have clusters to work with.
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][::6][:items]
    ds = bench.datasets.load(f"{name}-data", rows)
    v1 = bench.prompts.register("support", template="Answer: {question}", model="claude-haiku-4-5")
    v2 = bench.prompts.register("support", template="Context: {context}\nQuestion: {question}", model="claude-haiku-4-5")
    return bench.experiment(
        name, dataset=ds, variants={"A": v1, "B": v2},
        scorers=[wb.scorers.contains_reference()] if scorers is None else scorers,
        repeats=repeats, budget_usd=budget_usd,
    )


def test_running_through_the_widget_fills_every_part(bench):
    exp = make_experiment(bench, budget_usd=1.0)
    wdg = ExperimentWidget(exp)
    assert (wdg.progress.value, wdg.progress.max) == (0, 24)
    assert "0 / 24 calls" == wdg.progress_label.value
    assert "<td>A</td>" in _cells(wdg.means_html.value) and "<td>B</td>" in _cells(wdg.means_html.value)
    assert "<td>n/a</td>" in _cells(wdg.means_html.value)  # no score yet
    assert wdg.summary_html.value == ""

    assert wdg.run() is wdg
    assert wdg.progress.value == wdg.progress.max == 24
    assert wdg.progress_label.value == "24 / 24 calls"
    assert "errors: 0" in wdg.errors_label.value
    spent = exp.spent_usd()
    assert spent > 0
    assert f"<b>{_esc_money(spent)}</b>" in wdg.spend.value and f"of {_esc_money(1.0)} budget" in wdg.spend.value
    assert wdg.budget_bar is not None and wdg.budget_bar.value == pytest.approx(spent)
    # Each variant's mean and CI, as exp.quality() computes them.
    q = {r["variant"]: r for r in exp.quality().iter_rows(named=True)}
    for v in ("A", "B"):
        assert f"<td>{v}</td>" in _cells(wdg.means_html.value)
        assert f"{q[v]['mean']:.3f}" in wdg.means_html.value
        assert f"{q[v]['ci_low']:.3f} to {q[v]['ci_high']:.3f}" in wdg.means_html.value
    assert "<td>6</td>" in _cells(wdg.means_html.value)  # items scored per variant
    assert ">variant</th>" in wdg.summary_html.value and "support@v2" in wdg.summary_html.value
    assert "completed" in wdg.status_html.value
    assert wdg.chart is not None and wdg.chart_error is None
    # Every HTML value sits in the root that keeps MathJax off its dollar amounts.
    for part in (wdg.title, wdg.errors_label, wdg.spend, wdg.status_html, wdg.means_html, wdg.summary_html):
        assert part.value.startswith('<div class="wb-out tex2jax_ignore mathjax_ignore"'), part.value[:80]


def _esc_money(x: float) -> str:
    return fmt.money(x).replace("$", "&#36;")


def _bundle_shown(monkeypatch, wdg) -> list[tuple[dict, dict]]:
    """What ``show_results`` passes to IPython's display (outside a kernel the Output widget keeps nothing)."""
    import IPython.display

    shown: list[tuple[dict, dict]] = []
    monkeypatch.setattr(IPython.display, "display", lambda data, metadata=None, raw=False: shown.append((data, metadata)))
    wdg.show_results()
    return shown


def test_the_chart_is_shown_as_vega_data_whatever_renderer_is_active(bench, monkeypatch):
    import altair as alt

    exp = make_experiment(bench, items=3, repeats=1).run(progress=False)
    wdg = ExperimentWidget(exp)
    active, options = alt.renderers.active, dict(alt.renderers.options)
    try:
        alt.renderers.enable("html")  # a user's choice that would inline script
        [(data, metadata)] = _bundle_shown(monkeypatch, wdg)
    finally:
        alt.renderers.enable(active, **options)
    assert set(data) == {charts.VEGA_MIME, "image/svg+xml", "text/plain"}
    assert metadata[charts.VEGA_MIME]["embed_options"]["actions"]["source"] is False


def test_hostile_names_are_text_in_the_live_view(bench, monkeypatch):
    hostile = "</script><script>window.__wb_ran=1</script>$1 and $2"
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:2]
    ds = bench.datasets.load("hostile-data", [{**r, "id": f"{hostile}{i}"} for i, r in enumerate(rows)])
    v1 = bench.prompts.register("support", template="Answer: {question}", model="claude-haiku-4-5")
    scorer = wb.scorers.contains_reference(name=f"{hostile} scorer")
    exp = bench.experiment(f"{hostile} exp", dataset=ds, variants={hostile: v1, "B": v1}, scorers=[scorer], repeats=1)
    wdg = ExperimentWidget(exp).run()
    html = "".join(part.value for part in (wdg.title, wdg.means_html, wdg.summary_html, wdg.status_html))
    assert "<script" not in html and "&lt;/script&gt;&lt;script&gt;" in html
    [(data, _)] = _bundle_shown(monkeypatch, wdg)
    values = {v for d in data[charts.VEGA_MIME]["data"] for row in d.get("values", []) for v in row.values()}
    assert hostile in values and f"{hostile} scorer" in values  # the names reach Vega as data


def test_the_run_button_runs_the_experiment(bench):
    exp = make_experiment(bench, items=3, repeats=1)
    wdg = ExperimentWidget(exp)
    wdg.run_button.click()
    assert wdg.progress.value == 6 and not wdg.run_button.disabled
    assert "no budget set" in wdg.spend.value and wdg.budget_bar is None
    assert "summary" in wdg.summary_html.value


def test_the_hook_redraws_while_running_but_throttled(tmp_path, monkeypatch):
    # Simulated latency scaled so that the 60 calls take about a second and a half.
    bench = wb.open(tmp_path / "slow.db", provider=SimulatedProvider(seed=0, time_scale=0.15))
    try:
        exp = make_experiment(bench, items=10, repeats=3)  # 60 calls
        wdg = ExperimentWidget(exp)
        draws: list[tuple[int, str]] = []
        real_draw = wdg._draw

        def counting_draw(done, errors, spent):
            draws.append((done, threading.current_thread().name))
            real_draw(done, errors, spent)

        monkeypatch.setattr(wdg, "_draw", counting_draw)
        hooks: list[int] = []
        exp.on_call(lambda e, outcome: hooks.append(outcome.calls))
        t0 = time.monotonic()
        exp.run(progress=False)  # not through the widget: the hook alone keeps it current
        elapsed = time.monotonic() - t0
        assert len(hooks) == 60
        # The completed run is drawn at once, from the hook, without waiting for a timer.
        assert draws and draws[-1][0] == 60
        assert wdg.progress.value == 60 and "60 / 60" in wdg.progress_label.value
        assert "<td>10</td>" in _cells(wdg.means_html.value)
        # Redraws came while the run went on, never from the caller's thread, and at most
        # one per interval (plus the first and the one on completion).
        assert any(done < 60 for done, _ in draws), draws
        assert all(name != threading.main_thread().name for _, name in draws)
        assert len(draws) <= elapsed / live.REDRAW_INTERVAL_S + 3, (len(draws), elapsed)
    finally:
        bench.close()


def test_errors_are_counted_and_progress_still_reaches_every_call(tmp_path):
    bench = wb.open(tmp_path / "err.db", provider=SimulatedProvider(seed=0, time_scale=0, error_rate=1.0))
    try:
        exp = make_experiment(bench, items=3, repeats=1)
        wdg = ExperimentWidget(exp)
        wdg.run()
        assert wdg.progress.value == 6
        assert "errors: 6" in wdg.errors_label.value and "100.0%" in wdg.errors_label.value
        assert f"spent <b>{_esc_money(0.0)}</b>" in wdg.spend.value
        assert "completed_with_errors" in wdg.status_html.value
        for v in ("A", "B"):
            assert f"<td>{v}</td>" in _cells(wdg.means_html.value)  # listed, with no scores yet
        # A fresh view of the same experiment reads the same state back from the store.
        again = ExperimentWidget(exp)
        assert again.progress.value == 6 and "errors: 6" in again.errors_label.value
    finally:
        bench.close()


def test_a_view_opened_after_a_run_shows_its_results(bench):
    exp = make_experiment(bench, items=4, repeats=1).run(progress=False)
    wdg = ExperimentWidget(exp)
    assert wdg.progress.value == wdg.progress.max == 8
    assert "n/a" not in wdg.means_html.value.split("<tbody>")[1].split("</td>")[3]  # A's mean is a number
    assert _esc_money(exp.spent_usd()) in wdg.spend.value


def test_without_scorers_the_variants_are_still_listed(bench):
    exp = make_experiment(bench, items=2, repeats=1, scorers=[])
    wdg = ExperimentWidget(exp).run()
    assert "no scorers" in wdg.means_html.value
    assert "<td>A</td>" in _cells(wdg.means_html.value) and "<td>B</td>" in _cells(wdg.means_html.value)
    assert wdg.progress.value == 4
