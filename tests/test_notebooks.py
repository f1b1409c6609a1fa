"""The notebooks run top to bottom in a real Jupyter kernel, offline, and are stored clean."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_these():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb", "02_ab_experiment.ipynb", "03_monitoring.ipynb", "05_rollout.ipynb",
    ]


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
    text = _outputs(nb)
    assert "Traceback" not in text
    # Charts render offline: the inline renderer embeds vega-embed instead of loading it from a CDN.
    html = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    charts = [h for h in html if "vegaEmbed" in h]
    assert charts, "no chart output"
    assert all("cdn.jsdelivr.net" not in h for h in charts)
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
    assert os.path.exists(work / f"{ {'01_quickstart': 'quickstart', '02_ab_experiment': 'ab', '03_monitoring': 'monitoring', '05_rollout': 'rollout'}[path.stem] }.db".replace(" ", ""))


@pytest.mark.slow
def test_charts_render_offline_in_a_kernel_without_asking(tmp_path):
    """In a kernel the workbench switches Altair to its inline renderer by itself."""
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
    html = nb.cells[0].outputs[0]["data"]["text/html"]
    assert "vegaEmbed" in html and "cdn.jsdelivr.net" not in html
