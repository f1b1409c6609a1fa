"""The widgets in a real JupyterLab (headless Chromium, offline): what a person clicks and types.

One notebook builds a small simulated experiment (two variants, two repeats,
an LLM judge) and shows the compare widget and the traces explorer. The tests
click grid cells and table rows, press single keys with focus on the widget
and Enter in the search box, and check what lands in the SQLite file.
Screenshots at 1280 and 1024 px go to ``test-artifacts/``.
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
NOTEBOOK = "widgets.ipynb"
RATER = "browser-test"
WIDTHS = (1280, 1024)

PAGE_TIMEOUT_MS = 120_000
"""Kernel start plus the notebook's run: a few seconds idle, far more with both cores busy."""
ROW_TIMEOUT_S = 60

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
    "browser-widgets", dataset=ds, variants={{"A": bare, "B": grounded}},
    scorers=[wb.scorers.contains_reference(), wb.scorers.llm_judge("Answers the question from the passage.")],
    repeats=2,
).run(progress=False)
exp.status""",
    """\
@bench.traced
def retrieve(question):
    return "passage about " + question

@bench.traced
def answer(question):
    retrieve(question)
    return bench.complete(grounded, variables={{"question": question, "context": "Share > Create Public Link"}}).text

answer("How do I share a note?")
bench.flush()""",
    """\
cw = wb.widgets.compare(exp, "A", "B")
cw""",
    """\
tw = wb.widgets.traces(bench)
tw""",
]

COMPARE = f"{PANEL} .wb-compare"
TRACES = f"{PANEL} .wb-traces"


def write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src.format(data=str(DATA))) for src in CELLS]
    nbformat.write(nb, path)


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab over a fresh folder holding the widgets notebook; always stopped."""
    with jupyterlab(tmp_path, {"WORKBENCH_RATER": RATER}) as server:
        write_notebook(server["root"] / NOTEBOOK)
        yield server


def feedback_rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(
            "SELECT item_id, variant_a, variant_b, choice, rater FROM feedback WHERE trace_id IS NULL ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def wait_rows(db: Path, n: int) -> list[tuple]:
    deadline = time.monotonic() + ROW_TIMEOUT_S
    rows = feedback_rows(db)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = feedback_rows(db)
    return rows


def run_notebook(page, lab, log) -> None:
    open_notebook(page, lab, NOTEBOOK)
    run_all(page)
    try:
        page.locator(f"{TRACES} .wb-rows-table tbody tr").first.wait_for()
        page.locator(f"{COMPARE} td.wb-cell").first.wait_for()
    except Exception:
        page.screenshot(path=str(artifact("jupyterlab-widgets-failed.png")), full_page=True)
        errors = page.locator(STDERR_OUTPUTS).all_inner_texts()
        server = lab["log"].read_text(errors="replace")[-2000:]
        raise AssertionError(f"widgets did not draw; stderr: {errors}; {log.summary()}\nserver log:\n{server}") from None
    assert page.locator(STDERR_OUTPUTS).count() == 0, page.locator(STDERR_OUTPUTS).all_inner_texts()
    assert "Error displaying widget" not in page.locator(PANEL).inner_text()


def n_cells(page) -> int:
    return page.locator(f"{PANEL} .jp-Cell").count()


def shoot(page, selector: str, name: str) -> None:
    """Screenshots of one widget at each width (the element, scrolled into view)."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1800})
        target = page.locator(selector)
        target.scroll_into_view_if_needed()
        # Layout settles after a resize; wait until the widget's width stops changing.
        page.wait_for_function(
            """([sel]) => { const e = document.querySelector(sel); if (!e) return false;
                 const w = e.getBoundingClientRect().width; const last = e.dataset.wbLastWidth;
                 e.dataset.wbLastWidth = String(w); return last === String(w); }""",
            arg=[selector], polling=200,
        )
        target.screenshot(path=str(artifact(f"jupyterlab-{name}-{width}.png")))


@pytest.mark.browser
@pytest.mark.slow
def test_compare_grid_click_and_keys_rate_into_the_file(browser, lab):  # browser first: skip before a server starts
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    log = PageLog(page)
    try:
        run_notebook(page, lab, log)
        grid = page.locator(f"{COMPARE} table.wb-grid")
        # 8 items x (2 variants x 2 repeats) cells, every one drawn.
        assert grid.locator("td.wb-cell").count() == 8 * 4
        assert page.locator(f"{COMPARE} .wb-rationale").count() >= 1  # the judge's rationale beside its score

        # A click on a cell of another item opens that item, at the cell's repeat.
        target = grid.locator("tbody tr").nth(5)
        item = target.locator("td.wb-item").inner_text()
        target.locator("td.wb-cell").nth(3).click()  # variant B, repeat 2
        page.locator(f"{COMPARE} .wb-right b", has_text=f"Item {item}").wait_for()
        page.locator(f"{COMPARE} .wb-chip.wb-on", has_text="repeat 2").first.wait_for()

        # Focus is on the widget (the click put it there): one key rates, with no text box clicked.
        cells_before = n_cells(page)
        db = lab["root"] / "wb.db"
        assert feedback_rows(db) == []
        page.keyboard.press("b")
        rows = wait_rows(db, 1)
        page.locator(f"{COMPARE} .wb-info", has_text=f"Saved “B better” for {item}.").wait_for()
        assert rows == [(item, "A", "B", "b", RATER)]
        # The key went to the widget, not to JupyterLab (b in command mode inserts a cell below).
        assert n_cells(page) == cells_before
        page.keyboard.press("p")  # back to the rated item
        page.locator(f"{COMPARE} .wb-right b", has_text=f"Item {item}").wait_for()
        page.keyboard.press("t")
        page.locator(f"{COMPARE} .wb-info", has_text=f"Saved “Tie” for {item}.").wait_for()
        deadline = time.monotonic() + ROW_TIMEOUT_S
        while feedback_rows(db) != [(item, "A", "B", "tie", RATER)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert feedback_rows(db) == [(item, "A", "B", "tie", RATER)]  # rating again updates the one row
        assert n_cells(page) == cells_before

        shoot(page, COMPARE, "compare")
        assert page.locator(f"{PANEL} .wb-view mjx-container, {PANEL} .wb-view .MathJax").count() == 0
        assert log.off_host_requests(HOST) == [], log.off_host_requests(HOST)
        assert log.page_errors == [] and log.dialogs == [], log.summary()
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.slow
def test_traces_explorer_row_click_opens_the_span_tree_and_enter_searches(browser, lab):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    log = PageLog(page)
    try:
        run_notebook(page, lab, log)
        explorer = page.locator(TRACES)
        rows = explorer.locator(".wb-rows-table tbody tr")
        # Judges' calls are hidden by default: 8 items x 2 variants x 2 repeats, plus the traced function's 3 rows.
        explorer.locator(".wb-bar", has_text="35 traces").first.wait_for()
        assert explorer.locator(".wb-tag", has_text="judge").count() == 0
        # Every row is one line high.
        heights = {round(h) for h in rows.evaluate_all("rs => rs.map(r => r.getBoundingClientRect().height)")}
        assert max(heights) < 30, heights

        cells_before = n_cells(page)
        rows.filter(has_text="answer").first.click()
        tree = explorer.locator(".wb-detail .wb-span-tree")
        tree.wait_for()
        assert tree.locator(".wb-wf-row").count() == 3  # answer > retrieve, support@v2
        assert tree.locator(".wb-wf-name").all_inner_texts() == ["answer", "retrieve", "support@v2"]
        # Bars are to scale: the longest span has the widest bar, and every bar stays on its track.
        bars = tree.locator(".wb-wf-row").evaluate_all("""rows => rows.map(r => {
            const bar = r.querySelector('.wb-wf-bar').getBoundingClientRect();
            const track = r.querySelector('.wb-wf-track').getBoundingClientRect();
            return [bar.width, bar.left >= track.left - 0.5 && bar.right <= track.right + 0.5,
                    parseFloat(r.querySelector('.wb-wf-ms').textContent.replace(/,/g, ''))]; })""")
        assert all(inside for _, inside, _ in bars), bars
        widest = max(bars, key=lambda b: b[0])
        assert widest[2] == max(b[2] for b in bars), bars
        # The detail opens beside or above the table, never far below it.
        detail_box = explorer.locator(".wb-detail").bounding_box()
        table_box = explorer.locator(".wb-rows").bounding_box()
        assert detail_box["y"] < table_box["y"] + table_box["height"], (detail_box, table_box)

        # Arrow keys move between rows with focus on the widget; the notebook keeps its cells.
        page.keyboard.press("ArrowDown")
        explorer.locator(".wb-rows-table tr.wb-sel").wait_for()
        assert n_cells(page) == cells_before

        search = explorer.locator("input[data-wb-input='search']")
        search.click()
        search.fill("collaborators")
        search.press("Enter")
        explorer.locator(".wb-bar", has_text="matching 'collaborators'").first.wait_for()
        explorer.locator(".wb-rows-table mark.wb-hit").first.wait_for()
        hits = explorer.locator(".wb-rows-table mark.wb-hit").all_inner_texts()
        assert hits and all(h.lower() == "collaborators" for h in hits), hits
        assert search.input_value() == "collaborators"  # the redraw kept what was typed
        assert n_cells(page) == cells_before  # Enter did not run the cell

        # The judges' switch shows them; a judge's call links to the call it judged.
        explorer.locator("input[data-wb-input='search']").fill("")
        explorer.locator("input[data-wb-input='search']").press("Enter")
        explorer.locator("input[data-wb-input='judges']").check()
        explorer.locator(".wb-rows-table .wb-tag", has_text="judge").first.wait_for()
        explorer.locator(".wb-rows-table tbody tr", has=page.locator(".wb-tag", has_text="judge")).first.click()
        # Wait for the judge's own detail: the previous row's detail has links too.
        explorer.locator(".wb-detail", has_text="judged call").wait_for()
        explorer.locator(".wb-detail .wb-link").first.click()  # the judged call comes first
        explorer.locator(".wb-detail", has_text="judged by").wait_for()

        shoot(page, TRACES, "traces")
        assert page.locator(f"{PANEL} .wb-view mjx-container, {PANEL} .wb-view .MathJax").count() == 0
        assert log.off_host_requests(HOST) == [], log.off_host_requests(HOST)
        assert log.page_errors == [] and log.dialogs == [], log.summary()
    finally:
        page.close()
