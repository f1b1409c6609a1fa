"""Rollout views in a real JupyterLab and the gate's report in Chromium: the online readout and a ramp's
decision card fit at 1024 and 1280 px, their checks come first, dollars stay text; the CI artifact opens
offline with the gate's verdict on top."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    from ._browser import PageLog, artifact, chromium
    from ._jupyterlab import PANEL, jupyterlab, open_notebook, run_all
    from .test_browser_readouts import FITS
except ImportError:
    from _browser import PageLog, artifact, chromium
    from _jupyterlab import PANEL, jupyterlab, open_notebook, run_all
    from test_browser_readouts import FITS

nbformat = pytest.importorskip("nbformat")

pytestmark = pytest.mark.browser

NOTEBOOK = "rollout.ipynb"
RUN_TIMEOUT_MS = 180_000
"""Kernel start and a few thousand simulated calls: seconds when idle, much more on a busy machine."""

CELLS = [
    """\
from datetime import datetime, timezone
import workbench as wb
from workbench.providers.simulated import SimulatedProvider
from workbench.simulation import VersionEffect, label_traffic

bench = wb.open("wb.db", provider=SimulatedProvider(seed=0, time_scale=0))
ds = bench.datasets.load("support-qa", wb.demo.DATASET)
for text in ("Help-centre passage:\\n{context}\\n\\nCustomer question: {question}",
             "Passage:\\n{context}\\n\\nQuestion: {question}"):
    bench.prompts.register("support", text, "claude-haiku-4-5", max_tokens=300)
bench.prompts.set_label("support", "production", 1)
bench.prompts.set_split("support", "production", {1: 0.7, 2: 0.3})
start = datetime(2026, 11, 20, tzinfo=timezone.utc)
label_traffic(bench, "support", ds, requests=1500, users=1200, start=start, scorers=[wb.scorers.contains_reference()])
ro = bench.rollout("support")""",
    "ro.readout()",
    """\
bench.prompts.set_label("support", "production", 1)
ro.start(2, steps=(20, 100), guards={"error_rate": 0.01, "cost": 0.1}, min_units=40)
label_traffic(bench, "support", ds, requests=1500, users=1500, start=start, seed=3,
              effects={2: VersionEffect(error_rate=0.4)})
ro.step()""",
]


@pytest.fixture
def lab(tmp_path):
    with jupyterlab(tmp_path) as server:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
        nbformat.write(nb, Path(server["root"]) / NOTEBOOK)
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("width", [1024, 1280])
def test_readout_and_decision_cards_fit_and_lead_with_their_checks(lab, width):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 1000})
        log = PageLog(page)
        try:
            open_notebook(page, lab, NOTEBOOK)
            run_all(page)
            cards = page.locator(f"{PANEL} .wb-card")
            cards.nth(1).wait_for(timeout=RUN_TIMEOUT_MS)
            readout, decision = cards.nth(0), cards.nth(1)
            readout.scroll_into_view_if_needed()
            page.screenshot(path=str(artifact(f"jupyterlab-rollout-readout-{width}.png")))
            decision.scroll_into_view_if_needed()
            page.screenshot(path=str(artifact(f"jupyterlab-rollout-decision-{width}.png")))
            for box in page.evaluate(FITS, f"{PANEL} .wb-card"):
                assert box["right"] <= box["areaRight"] + 1 and box["scrolled"] == 0, box
            first = readout.locator(".wb-check .wb-badge").first.inner_text()
            assert first == "assignment ok"
            checks = decision.locator(".wb-check .wb-badge").all_inner_texts()
            assert checks[0] == "rollback" and "error_rate regressed" in checks
            text = decision.inner_text().upper()  # headings are upper-cased by CSS
            assert text.index("ROLLED BACK TO V1") < text.index("\nERRORS\n") < text.index("\nCOST\n")
            assert "per 1,000 calls" in readout.inner_text() and "$0.0" in readout.inner_text()
            assert page.locator(f"{PANEL} .wb-out mjx-container, {PANEL} .wb-out .MathJax").count() == 0
            assert page.locator(f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
            assert log.page_errors == [], log.summary()
        finally:
            page.close()


@pytest.mark.slow
@pytest.mark.parametrize("width", [1024, 1280])
def test_the_gate_report_opens_offline_with_the_verdict_first(tmp_path, width):
    import workbench as wb

    lines = Path(wb.demo.DATASET).read_text().splitlines()[:30]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "workbench-gate.toml").write_text(
        'name = "support"\ndataset = "items.jsonl"\nprovider = "simulated"\n'
        '[baseline]\ntemplate = "Help-centre passage:\\n{context}\\n\\nCustomer question: {question}"\n'
        'model = "claude-haiku-4-5"\n'
        '[candidate]\ntemplate = "Customer question: {question}"\nmodel = "claude-haiku-4-5"\n'
        "[scorers.contains_reference]\nmargin = 0.02\n[cost]\nmax_increase = 0.2\n"
    )
    out = subprocess.run([str(Path(sys.executable).with_name("workbench")), "gate", "--html", "gate.html"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stdout + out.stderr
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 1000})
        log = PageLog(page)
        try:
            page.goto((tmp_path / "gate.html").as_uri())
            page.locator(".vega-embed svg.marks").first.wait_for()
            page.screenshot(path=str(artifact(f"gate-report-{width}.png")))
            badges = page.locator(".wb-card .wb-check .wb-badge").all_inner_texts()
            assert badges[:2] == ["gate: fail", "contains_reference: fail"]
            card = page.locator(".wb-card").first.bounding_box()
            assert card is not None and card["x"] + card["width"] <= width
            assert log.non_local_requests() == [] and log.page_errors == [], log.summary()
        finally:
            page.close()
