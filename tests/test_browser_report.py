"""HTML reports opened from disk in headless Chromium: charts draw, nothing loads, model output stays text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import workbench as wb
from workbench.providers.simulated import SimulatedProvider
from workbench.report import SIMULATED_BANNER

try:
    from ._browser import PageLog, artifact, chromium
except ImportError:
    from _browser import PageLog, artifact, chromium

DATA = Path(__file__).resolve().parent.parent / "data" / "support_qa.jsonl"

XSS_SCRIPT = "</script><script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"
PAYLOADS = (XSS_SCRIPT, XSS_IMG)
MAX_BYTES = 3_000_000
RENDER_TIMEOUT_MS = 15_000

ALL_CHARTS_DRAWN = """() => {
  const charts = [...document.querySelectorAll('.vega-chart')];
  return charts.length > 0 && charts.every(c => c.querySelector('svg, canvas'));
}"""


def poisoned_rows(n: int = 10) -> list[dict]:
    """Dataset rows whose context holds a sentence, carrying both payloads, that answers the question.

    The simulated provider answers with the context sentence that best matches the
    question, so the variant that sees the context copies the payloads into its output;
    the reference is in that sentence too, so those items improve and are listed in the
    report's per-item table.
    """
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:n]
    # Item ids reach the charts' JSON blocks (the per-item chart's data), where a raw
    # "</script>" would end the block early.
    rows[0]["id"] += XSS_SCRIPT
    for row in rows[: n // 2]:
        question = row["inputs"]["question"].rstrip("?")
        row["inputs"]["context"] += f" {question} {row['expected']} {XSS_SCRIPT} {XSS_IMG}"
    return rows


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """An experiment whose outputs carry XSS payloads, and its report and a traces report."""
    tmp = tmp_path_factory.mktemp("reports")
    bench = wb.open(tmp / "wb.db", provider=SimulatedProvider(seed=0, time_scale=0))
    try:
        ds = bench.datasets.load("support-xss", poisoned_rows())
        bare = bench.prompts.register("support", template="Answer: {question}", model="claude-haiku-4-5")
        grounded = bench.prompts.register(
            "support", template="Context: {context}\nQuestion: {question}", model="claude-haiku-4-5"
        )
        exp = bench.experiment(
            "xss-in-outputs", dataset=ds, variants={"A": bare, "B": grounded},
            scorers=[wb.scorers.contains_reference()], repeats=1,
        ).run(progress=False)
        experiment_path = bench.report(exp, tmp / "experiment.html")
        traces_path = bench.report("traces", tmp / "traces.html")
        outputs = [r["output"] for r in bench.store.query("SELECT output FROM traces WHERE kind = 'llm'")]
        c = exp.compare("A", "B")
        verdicts = [*c.scores["verdict"], *c.cost["verdict"], *c.latency["verdict"]]
    finally:
        bench.close()
    return {"experiment": Path(experiment_path), "traces": Path(traces_path), "outputs": outputs, "verdicts": verdicts}


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def open_report(browser, path: Path, width: int = 1280, height: int = 900):
    """Open ``path`` from disk with every event recorded; wait until each chart has drawn."""
    page = browser.new_page(viewport={"width": width, "height": height})
    log = PageLog(page)
    page.goto(path.as_uri())
    try:
        page.wait_for_function(ALL_CHARTS_DRAWN, timeout=RENDER_TIMEOUT_MS)
    except Exception:
        page.close()
        raise AssertionError(f"charts of {path.name} did not draw within {RENDER_TIMEOUT_MS} ms; {log.summary()}") from None
    return page, log


def assert_charts_drawn(page, expected: int) -> None:
    assert page.locator('script[type="application/json"][data-chart]').count() == expected
    assert page.locator(".vega-chart").count() == expected
    assert page.locator(".vega-chart svg.marks, .vega-chart canvas.marks").count() == expected
    assert "chart failed to render" not in page.inner_text("body")
    assert "not available:" not in page.inner_text("body")


def test_payloads_reached_stored_outputs(reports):
    # Without this the XSS assertions below would pass vacuously.
    for payload in PAYLOADS:
        assert any(payload in (out or "") for out in reports["outputs"]), payload


def test_reports_are_small_and_say_simulated(reports):
    for path in (reports["experiment"], reports["traces"]):
        assert path.stat().st_size < MAX_BYTES, (path.name, path.stat().st_size)
        assert SIMULATED_BANNER in path.read_text(encoding="utf-8")


@pytest.mark.browser
def test_experiment_report_renders_offline_and_shows_output_as_text(reports, browser):
    page, log = open_report(browser, reports["experiment"])
    try:
        assert_charts_drawn(page, expected=6)
        body = page.inner_text("body")
        for payload in PAYLOADS:
            assert payload in body
        # The payloads sit in the per-item table as text, in variant B's output column.
        outputs_b = page.locator("table:has(th:text-is('output B')) tbody td:nth-child(5)").all_inner_texts()
        assert any(XSS_IMG in text and XSS_SCRIPT in text for text in outputs_b), outputs_b
        # The item id with "</script>" sits, escaped, inside a chart's JSON block, and parses back whole.
        blocks = page.locator('script[type="application/json"][data-chart]').all_text_contents()
        assert not any(XSS_SCRIPT in raw for raw in blocks)
        assert any(XSS_SCRIPT in json.dumps(json.loads(raw), ensure_ascii=False) for raw in blocks)
        # Nothing the model wrote became markup: only the bundle and the embedding script run.
        assert page.locator('script:not([type="application/json"])').count() == 2
        assert page.locator("img").count() == 0
        assert page.get_by_role("alert").first.inner_text().startswith("Simulated data")
        page.screenshot(path=str(artifact("report.png")), full_page=True)
        assert log.dialogs == [], log.summary()
        assert log.console_errors == [] and log.page_errors == [], log.summary()
        assert log.non_local_requests() == []
        assert log.requests == [reports["experiment"].as_uri()]
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 1024])
def test_experiment_report_opens_with_the_verdict_card_above_the_fold(reports, browser, width):
    page, log = open_report(browser, reports["experiment"], width=width, height=800)
    try:
        card = page.locator(".wb-card").first
        box = card.bounding_box()
        assert box is not None and box["y"] >= 0
        # The whole card, every verdict in it, is on the first screen; the page never scrolls sideways.
        assert box["y"] + box["height"] <= 800, box
        assert box["x"] + box["width"] <= width
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        badges = card.locator(".wb-badge").all_inner_texts()
        assert badges == ["simulated provider", *reports["verdicts"]]
        # Before anything else on the page: title, one meta line and the banner come first.
        first_h2 = page.locator("h2").first.bounding_box()
        assert first_h2["y"] > box["y"] + box["height"]
        page.screenshot(path=str(artifact(f"report-top-{width}.png")))
        page.screenshot(path=str(artifact(f"report-{width}.png")), full_page=True)
        # Opening the details keeps every table inside the page.
        card.locator("details summary").click()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        card.screenshot(path=str(artifact(f"report-card-details-{width}.png")))
        assert log.console_errors == [] and log.page_errors == [], log.summary()
    finally:
        page.close()


@pytest.mark.browser
def test_traces_report_renders_offline(reports, browser):
    page, log = open_report(browser, reports["traces"])
    try:
        assert_charts_drawn(page, expected=3)
        assert log.dialogs == [], log.summary()
        assert log.console_errors == [] and log.page_errors == [], log.summary()
        assert log.non_local_requests() == []
    finally:
        page.close()
