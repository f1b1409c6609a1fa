"""The notebook experience end to end: JupyterLab in headless Chromium, offline.

A notebook builds a small simulated experiment, draws a chart with
``wb.charts.enable_offline()`` and shows the compare widget. Rating from the
browser (cell clicks, single keys, the feedback row in the file) is tested in
``test_browser_widgets.py``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

try:
    from ._browser import PageLog, artifact, chromium
    from ._jupyterlab import HOST, PANEL, STDERR_OUTPUTS, jupyterlab, open_notebook, run_all
except ImportError:
    from _browser import PageLog, artifact, chromium
    from _jupyterlab import HOST, PANEL, STDERR_OUTPUTS, jupyterlab, open_notebook, run_all

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "support_qa.jsonl"
NOTEBOOK = "compare.ipynb"
RATER = "browser-test"

PAGE_TIMEOUT_MS = 30_000
"""Kernel start plus the notebook's run; both are usually a few seconds."""
FEEDBACK_TIMEOUT_S = 10
CHART_MARKS = ".jp-OutputArea-output .vega-embed .marks"

CELLS = [
    """\
import json
from pathlib import Path

import workbench as wb
from workbench.providers.simulated import SimulatedProvider

rows = [json.loads(line) for line in Path({data!r}).read_text().splitlines() if line.strip()][:8]
bench = wb.open("wb.db", provider=SimulatedProvider(seed=0, time_scale=0))
ds = bench.datasets.load("support-8", rows)
bare = bench.prompts.register("support", template="Answer: {{question}}", model="claude-haiku-4-5")
grounded = bench.prompts.register("support", template="Context: {{context}}\\nQuestion: {{question}}", model="claude-haiku-4-5")
exp = bench.experiment(
    "browser-compare", dataset=ds, variants={{"A": bare, "B": grounded}},
    scorers=[wb.scorers.contains_reference()], repeats=1,
).run(progress=False)
exp.status""",
    """\
wb.charts.enable_offline()
exp.chart("quality")""",
    """\
w = wb.widgets.compare(exp, "A", "B")
w""",
]


def write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src.format(data=str(DATA))) for src in CELLS]
    nbformat.write(nb, path)


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab over a fresh folder holding the compare notebook; always stopped."""
    with jupyterlab(tmp_path, {"WORKBENCH_RATER": RATER}) as server:
        write_notebook(server["root"] / NOTEBOOK)
        yield server


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def feedback_rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(
            "SELECT item_id, variant_a, variant_b, choice, rater FROM feedback WHERE trace_id IS NULL"
        ).fetchall()
    finally:
        conn.close()


def first_item_shown(db: Path) -> str:
    """The item the compare widget opens on (regressions first), read through workbench itself."""
    import workbench as wb

    bench = wb.open(db, provider="simulated")
    try:
        return bench.experiments.get("browser-compare").items("A", "B")["item_id"][0]
    finally:
        bench.close()


@pytest.mark.browser
@pytest.mark.slow
def test_compare_widget_rates_from_the_browser(browser, lab):  # browser first: skip before starting a server
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    log = PageLog(page)
    panel = page.locator(PANEL)
    try:
        open_notebook(page, lab, NOTEBOOK)
        run_all(page)

        grid = panel.locator(".jp-OutputArea-output .wb-compare td.wb-cell").first
        try:
            grid.wait_for()
        except Exception:
            page.screenshot(path=str(artifact("jupyterlab-compare.png")), full_page=True)
            errors = page.locator(STDERR_OUTPUTS).all_inner_texts()
            server = lab["log"].read_text(errors="replace")[-2000:]
            raise AssertionError(f"no compare widget; stderr: {errors}; {log.summary()}\nserver log:\n{server}") from None
        chart = panel.locator(CHART_MARKS).first
        chart.wait_for()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50, box
        assert page.locator(STDERR_OUTPUTS).count() == 0, page.locator(STDERR_OUTPUTS).all_inner_texts()
        assert "Error displaying widget" not in panel.inner_text()
        page.screenshot(path=str(artifact("jupyterlab-compare.png")))
        assert log.off_host_requests(HOST) == [], log.off_host_requests(HOST)
        assert log.dialogs == [], log.summary()
        assert log.page_errors == [], log.summary()
    finally:
        page.close()
