"""Readouts in a real JupyterLab (headless Chromium): the verdict card and the summary fit, nothing is cut,
MathJax leaves the dollars alone, and a WorkbenchError shows as its message, not the package's internals."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from ._browser import PageLog, artifact, chromium
    from ._jupyterlab import PANEL, jupyterlab, open_notebook, run_all
except ImportError:
    from _browser import PageLog, artifact, chromium
    from _jupyterlab import PANEL, jupyterlab, open_notebook, run_all

nbformat = pytest.importorskip("nbformat")

pytestmark = pytest.mark.browser

NOTEBOOK = "readouts.ipynb"
RUN_TIMEOUT_MS = 120_000
"""Kernel start and a 16-item simulated experiment; seconds when idle, much more on a busy machine."""

CELLS = [
    """\
import workbench as wb
from workbench.providers.simulated import SimulatedProvider

bench = wb.open("wb.db", provider=SimulatedProvider(seed=0, time_scale=0))
ds = bench.datasets.load("support-16", [i.canonical() for i in bench.datasets.load("all", wb.demo.DATASET).items[:16]])
bare = bench.prompts.register("support", template="Answer: {question}", model="claude-haiku-4-5")
grounded = bench.prompts.register("support", template="Context: {context}\\nQuestion: {question}", model="claude-haiku-4-5")
judge = wb.scorers.llm_judge("Does the answer give the fact in the reference? 1 yes, 0 no.", name="judge")
exp = bench.experiment("readouts-in-lab", dataset=ds, variants={"A": bare, "B": grounded},
                       scorers=[wb.scorers.contains_reference(), judge], repeats=2).run(progress=False)""",
    "exp.summary()",
    "exp.compare()",
    "bench.experiments.get('readouts-in-lbe')",
]


@pytest.fixture
def lab(tmp_path):
    with jupyterlab(tmp_path) as server:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
        nbformat.write(nb, Path(server["root"]) / NOTEBOOK)
        yield server


FITS = """(sel) => [...document.querySelectorAll(sel)].map(el => {
  const box = el.getBoundingClientRect();
  const area = el.closest('.jp-OutputArea-output').getBoundingClientRect();
  const scrollers = [el, ...el.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1
      && getComputedStyle(e).overflowX !== 'visible');
  return {right: box.right, areaRight: area.right, scrolled: scrollers.length,
          what: scrollers.map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '>' + e.clientWidth + ' ' + getComputedStyle(e).overflowX)};
})"""


@pytest.mark.parametrize("width", [1024, 1280])
def test_card_and_summary_fit_and_errors_are_short(lab, width):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 900})
        log = PageLog(page)
        try:
            open_notebook(page, lab, NOTEBOOK)
            run_all(page)
            error = page.locator(f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            error.first.wait_for(timeout=RUN_TIMEOUT_MS)
            page.locator(f"{PANEL} .wb-card").scroll_into_view_if_needed()
            page.screenshot(path=str(artifact(f"jupyterlab-readouts-{width}.png")))
            # The card fits beside the open file browser: inside its output area, no scroll bar anywhere in it.
            (card_box,) = page.evaluate(FITS, f"{PANEL} .wb-card")
            assert card_box["right"] <= card_box["areaRight"] + 1 and card_box["scrolled"] == 0, card_box
            # The summary's ten columns need the notebook's full width: with the file browser open at
            # 1024 px it scrolls inside its own box (never past the page); closed, it fits whole.
            (summary_box,) = page.evaluate(FITS, f"{PANEL} .wb-summary-out")
            assert summary_box["right"] <= summary_box["areaRight"] + 1, summary_box
            page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")
            page.wait_for_function("() => !document.querySelector('#jp-left-stack:not(.lm-mod-hidden)')")
            (summary_box,) = page.evaluate(FITS, f"{PANEL} .wb-summary-out")
            assert summary_box["scrolled"] == 0, summary_box
            (card_box,) = page.evaluate(FITS, f"{PANEL} .wb-card")
            assert card_box["scrolled"] == 0, card_box
            card = page.locator(f"{PANEL} .wb-card")
            badges = card.locator(".wb-badge").all_inner_texts()
            assert badges[0] == "simulated provider" and len(badges) == 1 + 2 + 1 + 2  # two scorers, cost, p50 and p95
            text = card.inner_text()
            assert "per 1,000 calls" in text and "$0.0" in text  # dollars stay text: MathJax did not take them
            assert page.locator(f"{PANEL} .wb-out mjx-container, {PANEL} .wb-out .MathJax").count() == 0
            assert "cost/item ($)" in page.locator(f"{PANEL} .wb-summary-out").inner_text()
            trace = error.first.inner_text().strip().splitlines()
            assert trace[0] == "ExperimentNotFound: experiment 'readouts-in-lbe' not found; experiments: readouts-in-lab"
            assert len(trace) == 3 and "workbench/" not in error.first.inner_text()
            page.locator(f"{PANEL} .wb-summary-out").scroll_into_view_if_needed()
            page.screenshot(path=str(artifact(f"jupyterlab-readouts-{width}-wide-notebook.png")))
            assert log.page_errors == [], log.summary()
        finally:
            page.close()
