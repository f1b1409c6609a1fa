"""The notebooks run top to bottom in a real Jupyter kernel, offline, and are stored clean."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from workbench import charts

try:
    from ._jupyterlab import shows_a_chart
except ImportError:
    from _jupyterlab import shows_a_chart

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DATABASES = {"01_quickstart": "quickstart", "02_ab_experiment": "ab", "03_monitoring": "monitoring", "04_gateway": "gateway",
             "05_rollout": "rollout"}
POLARS_HTML = "<div><style>"
"""How a Polars frame's own HTML starts: not ours to wrap."""


def test_the_shipped_notebooks_are_there():
    assert {f"{stem}.ipynb" for stem in DATABASES} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} has outputs; clear them"


def _outputs(nb) -> str:
    """Every text and HTML output of the notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            for key in ("text/plain", "text/html"):
                if key in out.get("data", {}):
                    parts.append(out["data"][key])
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_offline(path, tmp_path, monkeypatch):
    # The notebooks sit in notebooks/ and read ../data; mirror that layout.
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copytree(ROOT / "data", tmp_path / "data")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("WORKBENCH_PROVIDER", "simulated")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    nbformat.validate(nb)  # what Altair 6's own mimetype output fails
    text = _outputs(nb)
    assert "Traceback" not in text
    _charts_are_data_only(nb)
    if path.stem == "02_ab_experiment":
        assert "B better" in text
        assert (work / "reports" / "context-helps.html").exists()
    if path.stem == "03_monitoring":
        assert (work / "reports" / "monitoring.html").exists()
        assert "error rate: incident" in text
    if path.stem == "01_quickstart":
        assert "missing variable 'context' for prompt 'support' v2" in text
    if path.stem == "05_rollout":
        assert "assignment ok" in text  # the sample-ratio check on top of the readout
        assert "complete " in text and "rollback rolled back to v2: error_rate" in text
        assert "before/after" in text
    if path.stem in DATABASES:
        assert os.path.exists(work / f"{DATABASES[path.stem]}.db")


def _charts_are_data_only(nb) -> None:
    """Every chart cell shows Vega data with a static fallback; no output carries script; HTML skips MathJax."""
    outputs = [o for c in nb.cells for o in c.get("outputs", []) if "data" in o]
    drawn = [o for o in outputs if charts.VEGA_MIME in o["data"]]
    chart_cells = [c for c in nb.cells if c.cell_type == "code" and shows_a_chart(c.source)]
    assert len(drawn) >= len(chart_cells) > 0, (len(drawn), len(chart_cells))
    for o in drawn:
        assert {"image/svg+xml", "text/plain"} <= set(o["data"]) and "text/html" not in o["data"]
        assert o["metadata"][charts.VEGA_MIME]["embed_options"]["actions"]["source"] is False
    for o in outputs:
        html = o["data"].get("text/html", "")
        assert "<script" not in html.lower() and "application/javascript" not in o["data"]
        if html and not html.startswith(POLARS_HTML):
            assert html.startswith('<div class="wb-out tex2jax_ignore mathjax_ignore'), html[:120]


@pytest.mark.slow
def test_charts_render_offline_in_a_kernel_without_asking(tmp_path):
    """In a kernel the workbench switches Altair to its data-only renderer by itself."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import polars as pl, workbench as wb\n"
            "df = pl.DataFrame({'variant': ['A', 'B'], 'scorer': ['s', 's'], 'mean': [0.2, 0.6], "
            "'ci_low': [0.1, 0.5], 'ci_high': [0.3, 0.7], 'n': [10, 10]})\n"
            "wb.charts.quality(df)"
        )
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    data = nb.cells[0].outputs[0]["data"]
    assert set(data) == {charts.VEGA_MIME, "image/svg+xml", "text/plain"}
    assert data[charts.VEGA_MIME]["$schema"].endswith("/vega/v5.json")
