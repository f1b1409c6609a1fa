"""The notebook experience end to end: JupyterLab in headless Chromium, offline.

A notebook builds a small simulated experiment, draws a chart with
``wb.charts.enable_offline()`` and shows the compare widget. Rating from the
browser (cell clicks, single keys, the feedback row in the file) is tested in
``test_browser_widgets.py``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

try:
    from ._browser import PageLog, artifact, chromium
    from ._jupyterlab import HOST, PANEL, STDERR_OUTPUTS, jupyterlab, open_notebook, run_all
    from ._jupyterlab import (
        KERNEL_READY, MATHJAX, chart_outputs, run_all_and_wait, save_and_shut_down, screenshot_notebook,
        shows_a_chart, wait_charts_drawn,
    )
except ImportError:
    from _browser import PageLog, artifact, chromium
    from _jupyterlab import HOST, PANEL, STDERR_OUTPUTS, jupyterlab, open_notebook, run_all
    from _jupyterlab import (
        KERNEL_READY, MATHJAX, chart_outputs, run_all_and_wait, save_and_shut_down, screenshot_notebook,
        shows_a_chart, wait_charts_drawn,
    )

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


# -- every notebook in notebooks/, run completely in JupyterLab --------------------------------

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WIDTHS = (1280, 1024)


def _lay_out(root: Path) -> None:
    """notebooks/ beside data/, as in the repository: the notebooks read ../data."""
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "data", root / "data")


def _expected_charts(path: Path) -> int:
    """Chart cells, read from the notebook's source: a chart that never displayed still counts."""
    nb = nbformat.read(path, as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" and shows_a_chart(c.source))


def _all_drawn(page, log: PageLog, when: str, extra: int = 0) -> dict[str, int]:
    """Every chart output drew; nothing went to stderr or the console; no MathJax in any output."""
    counts = wait_charts_drawn(page, extra=extra)
    assert counts["drawn"] == counts["renderers"] == counts["outputs"] + extra, f"{when}: {counts}"
    assert page.locator(STDERR_OUTPUTS).count() == 0, f"{when}: {page.locator(STDERR_OUTPUTS).all_inner_texts()[:3]}"
    assert page.locator(f"{PANEL} {MATHJAX}").count() == 0, f"{when}: MathJax typeset an output"
    assert log.console_errors == [] and log.page_errors == [], f"{when}: {log.summary()}"
    return counts


@pytest.fixture
def offline_env(monkeypatch):
    """The notebooks run on the simulated provider, as a first-time user's would with no key."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    return {"WORKBENCH_PROVIDER": "simulated"}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_draws_every_chart_run_rerun_and_reopened(browser, tmp_path, offline_env, path):
    expected = _expected_charts(path)
    with jupyterlab(tmp_path, offline_env) as lab:
        _lay_out(lab["root"])
        name = f"notebooks/{path.name}"
        page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        log = PageLog(page)
        try:
            open_notebook(page, lab, name)
            run_all_and_wait(page)
            first = _all_drawn(page, log, "first run")
            assert first["outputs"] >= expected, f"{first} but {expected} chart cells"
            for width in WIDTHS:
                screenshot_notebook(page, artifact(f"jupyterlab-{path.stem}-{width}.png"), width)

            run_all_and_wait(page)  # every chart draws again, as often as cells re-run
            assert _all_drawn(page, log, "re-run")["outputs"] == first["outputs"]

            save_and_shut_down(page)
            saved = nbformat.read(lab["root"] / name, as_version=4)
            nbformat.validate(saved)
            assert chart_outputs(saved) == first["outputs"]
            page.reload()  # a fresh page, a new kernel that has run nothing: the saved outputs draw
            page.wait_for_function(KERNEL_READY)
            assert _all_drawn(page, log, "reopened")["outputs"] == first["outputs"]
            assert log.off_host_requests(HOST) == [], log.off_host_requests(HOST)
            assert log.dialogs == [], log.summary()
        finally:
            page.close()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executed_by_nbclient_draws_when_opened(browser, tmp_path, offline_env, path, monkeypatch):
    """Executed elsewhere and opened afterwards, the notebook is untrusted: no script of it would run."""
    from nbclient import NotebookClient

    for var, value in offline_env.items():
        monkeypatch.setenv(var, value)
    with jupyterlab(tmp_path, offline_env) as lab:
        _lay_out(lab["root"])
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(lab["root"] / "notebooks")}}).execute()
        executed = f"executed-{path.name}"
        nbformat.write(nb, lab["root"] / "notebooks" / executed)
        assert chart_outputs(nb) >= _expected_charts(path)

        page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        log = PageLog(page)
        try:
            open_notebook(page, lab, f"notebooks/{executed}")
            trusted = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.model.cells.get(1).trusted")
            assert trusted is False
            assert _all_drawn(page, log, "opened after nbclient")["outputs"] == chart_outputs(nb)
            assert log.off_host_requests(HOST) == [], log.off_host_requests(HOST)
        finally:
            page.close()


# -- hostile names: item ids, variants, scorer and model, drawn and never run ------------------

RAN = "window.__wb_ran = (window.__wb_ran || 0) + 1"
HOSTILE = {
    "script": f"</script><script>{RAN}; alert('script')</script>",
    "img": f'<img src=x onerror="{RAN}">',
    "svg": f"<svg onload=\"{RAN}\"></svg>",
    "quotes": f'\\";{RAN};//',
    "separators": "line\u2028sep\u2029end $1 and $2",
}
HOSTILE_CELLS = [
    """\
import json
from pathlib import Path

import workbench as wb
from workbench.providers.simulated import SimulatedProvider

wb.charts.enable_offline()
H = json.loads({names!r})
rows = [json.loads(line) for line in Path({data!r}).read_text().splitlines() if line.strip()][:6]
bench = wb.open("hostile.db", provider=SimulatedProvider(seed=0, time_scale=0))
bench.pricing.set_price(H["img"], input=1.0, output=5.0)
ds = bench.datasets.load(H["quotes"], [{{**r, "id": i}} for r, i in zip(rows, [*H.values(), "plain"])])
first = bench.prompts.register(H["script"], template="Answer: {{question}}", model=H["img"])
second = bench.prompts.register(H["svg"], template="Context: {{context}}\\nQuestion: {{question}}", model="claude-haiku-4-5")
exp = bench.experiment(
    H["separators"], dataset=ds, variants={{H["script"]: first, H["separators"]: second}},
    scorers=[wb.scorers.contains_reference(name=H["img"] + " $x$")], repeats=2,
)""",
    "live = wb.widgets.experiment(exp)\nlive",
    "live.run();",
    # JupyterLab typesets a Label's value; the class no_math() adds is what stops it.
    "import ipywidgets\nfrom workbench import _html\n_html.no_math(ipywidgets.Label(H['separators'] + ' costs $0.47 to $1.36'))",
    *(f"exp.chart({kind!r})" for kind in ("quality", "latency", "cost", "tokens", "paired", "cost_quality")),
]


def _hostile_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    names = json.dumps(HOSTILE)
    nb.cells = [nbformat.v4.new_code_cell(src.format(names=names, data=str(DATA))) for src in HOSTILE_CELLS]
    nbformat.write(nb, path)


@pytest.mark.browser
@pytest.mark.slow
def test_hostile_names_are_drawn_as_text_and_never_run(browser, tmp_path):
    with jupyterlab(tmp_path) as lab:
        _hostile_notebook(lab["root"] / "hostile.ipynb")
        page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.add_init_script("window.__wb_ran = 0")
        log = PageLog(page)
        try:
            open_notebook(page, lab, "hostile.ipynb")
            run_all_and_wait(page)
            counts = _all_drawn(page, log, "hostile", extra=1)  # the live widget's chart is not a cell output
            assert counts["outputs"] == 6, counts

            # The names are on the page as text: in the charts' SVG and in the widget's tables.
            svg_text = " ".join(page.locator(f"{PANEL} .jp-RenderedVegaCommon5 svg text").all_text_contents())
            assert "<img src=x" in svg_text and "</script>" in svg_text, svg_text[:500]
            widget_text = " ".join(page.locator(f"{PANEL} .jp-OutputArea-output .widget-html").all_inner_texts())
            assert "<img src=x" in widget_text and "</script>" in widget_text, widget_text[:500]
            # Tooltips show the names (vega-tooltip escapes them) without running them.
            dots = page.locator(f"{PANEL} .jp-RenderedVegaCommon5 .mark-symbol path")
            shown = []
            for i in range(min(dots.count(), 24)):
                dots.nth(i).hover(force=True)
                tip = page.locator("#vg-tooltip-element")
                if tip.count() and tip.is_visible():
                    shown.append(tip.inner_text())
                    assert tip.locator("img, script, svg").count() == 0
            assert any("onerror" in t or "</script>" in t for t in shown), shown[:3]
            # No embed action writes the spec, names and all, into a new window or sends it away.
            menu = page.locator(f"{PANEL} .vega-embed details > summary").first
            menu.click()
            actions = page.locator(f"{PANEL} .vega-embed details[open] .vega-actions a").all_inner_texts()
            assert actions and all(a.startswith("Save as") for a in actions), actions
            menu.click()

            for width in WIDTHS:
                screenshot_notebook(page, artifact(f"jupyterlab-hostile-{width}.png"), width)
            assert page.evaluate("() => window.__wb_ran") == 0
            assert log.dialogs == [] and log.page_errors == [], log.summary()
            assert page.locator(f"{PANEL} .jp-OutputArea-output img[src='x']").count() == 0
        finally:
            page.close()
