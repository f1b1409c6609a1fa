"""A real JupyterLab for browser tests: a server over a temp folder, and helpers to drive a notebook.

Every piece of Jupyter state (config, data, runtime, settings, workspaces,
IPython) lives under the test's temp folder. The kernel is reported ready
only when JupyterLab's session says so, not by the toolbar indicator.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from ._browser import unavailable
except ImportError:
    from _browser import unavailable

HOST = "127.0.0.1"
JUPYTER = Path(sys.executable).with_name("jupyter")
SERVER_START_S = 60
"""A busy machine starts JupyterLab in about 2.5 s idle, much more with both cores taken."""

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
KERNEL_READY = """() => {
  const session = window.jupyterapp?.shell?.currentWidget?.sessionContext;
  const kernel = session?.session?.kernel;
  return !!(session?.isReady && kernel?.connectionStatus === 'connected' && kernel?.status === 'idle');
}"""
"""The toolbar's execution indicator reads 'idle' for a moment before the kernel has even
started; a Run All in that moment runs nothing. Ask JupyterLab's session instead."""
# Tracebacks render as stderr too, so this catches errors and warnings alike.
STDERR_OUTPUTS = f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def write_settings(settings_dir: Path) -> None:
    """Start the kernel without asking, fetch no news, and keep every cell in the page.

    JupyterLab 4 leaves cells far outside the viewport out of the DOM by default
    ("windowing"); a test that counts every chart needs them all there.
    """
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "autoStartDefaultKernel": True, "windowingMode": "none",
        },
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, value in files.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"jupyter lab not ready after {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def jupyterlab(tmp_path: Path, env_extra: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """A JupyterLab server whose root is ``tmp_path / "root"``; always stopped.

    Yields ``base`` (URL), ``token``, ``root`` (put notebooks here) and ``log``.
    """
    if not JUPYTER.exists():
        unavailable(f"{JUPYTER} is missing; pip install -e '.[dev]'")
    state = tmp_path / "state"
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    env = dict(os.environ)
    # JUPYTER_DATA_DIR moves only the user data dir: the venv's share/jupyter (the
    # ipywidgets lab extension, the python3 kernelspec) stays on Jupyter's path.
    for var, sub in [
        ("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"), ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ]:
        env[var] = str(state / sub)
    env.pop("WORKBENCH_DB", None)
    env.update(env_extra or {})
    write_settings(state / "settings")

    token, port = secrets.token_hex(16), free_port()
    server_log = tmp_path / "jupyter.log"
    with server_log.open("wb") as out:
        proc = subprocess.Popen(
            [str(JUPYTER), "lab", "--no-browser", "--allow-root", f"--IdentityProvider.token={token}",
             f"--ip={HOST}", f"--port={port}", f"--ServerApp.root_dir={root}",
             # window.jupyterapp tells when the kernel is really ready (see KERNEL_READY).
             "--LabApp.expose_app_in_browser=True"],
            env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://{HOST}:{port}"
        wait_ready(f"{base}/api/status?token={token}", proc, server_log)
        yield {"base": base, "token": token, "root": root, "log": server_log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def open_notebook(page: Any, lab: dict[str, Any], name: str) -> None:
    """Open ``name`` (relative to the lab root) with no restored tabs and wait for its kernel."""
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")
    page.wait_for_function(KERNEL_READY)


def run_all(page: Any) -> None:
    """Run > Run All Cells, through the menu as a user would."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()


# -- running whole notebooks and counting what they drew ----------------------------------------

VEGA_MIME = "application/vnd.vega.v5+json"
"""What a workbench chart is in a notebook (``workbench.charts.VEGA_MIME``)."""
MATHJAX = ".jp-OutputArea mjx-container, .jp-OutputArea .MathJax, .jp-OutputArea .MathJax_Display"

RUN_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim());
  const kernel = panel.sessionContext?.session?.kernel;
  return {counts: cells.map(c => c.model.executionCount), kernel: kernel ? kernel.status : 'none'};
}"""
"""Each non-empty code cell's execution count (null while queued or running) and the kernel's status."""

CHART_COUNTS = """(mime) => {
  const panel = window.jupyterapp.shell.currentWidget;
  let outputs = 0;
  for (const cell of panel.content.widgets) {
    if (cell.model.type !== 'code') continue;
    const area = cell.model.outputs;
    for (let i = 0; i < area.length; i++) if (mime in area.get(i).data) outputs++;
  }
  const drawn = [...panel.node.querySelectorAll('.jp-RenderedVegaCommon5')].filter(r =>
    [...r.querySelectorAll('svg.marks, canvas.marks')].some(g => {
      const box = g.getBoundingClientRect();
      return box.width > 20 && box.height > 20;
    })).length;
  return {outputs, drawn, renderers: panel.node.querySelectorAll('.jp-RenderedVegaCommon5').length};
}"""
"""Chart outputs counted in the notebook's model (whether or not they drew) and charts drawn in the
page (a Vega renderer holding an svg or canvas of real size). Outputs inside widgets are not in the
model; the caller adds them."""


def _wait(page: Any, what: str, done: Any, timeout_s: float, describe: Any = None) -> Any:
    """Poll ``done()`` (returns a truthy value when finished) up to ``timeout_s``; fail saying ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = describe() if describe else ""
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; {extra}", pytrace=False)
        page.wait_for_timeout(250)


def run_all_and_wait(page: Any, timeout_s: float = 900) -> None:
    """Run > Run All, then wait until every code cell has run again and the kernel is idle.

    A cell that raises stops Run All; the failure message then shows the counts and stderr.
    """
    before = [c or 0 for c in page.evaluate(RUN_STATE)["counts"]]
    floor = max(before, default=0)
    run_all(page)

    def finished() -> bool:
        state = page.evaluate(RUN_STATE)
        return state["kernel"] == "idle" and all(c is not None and c > floor for c in state["counts"])

    _wait(page, "Run All to finish", finished, timeout_s,
          lambda: f"state {page.evaluate(RUN_STATE)}; stderr: {page.locator(STDERR_OUTPUTS).all_inner_texts()[:3]}")


def wait_charts_drawn(page: Any, extra: int = 0, timeout_s: float = 120) -> dict[str, int]:
    """Wait until every chart output (plus ``extra`` inside widgets) has drawn; returns the counts."""
    def counts() -> dict[str, int]:
        return page.evaluate(CHART_COUNTS, VEGA_MIME)

    def all_drawn() -> dict[str, int] | None:
        c = counts()
        return c if c["drawn"] >= c["outputs"] + extra else None

    found = _wait(page, "every chart to draw", all_drawn, timeout_s, lambda: f"counts {counts()} (+{extra} in widgets)")
    return found


def save_and_shut_down(page: Any) -> None:
    """Save the notebook (waiting until it is clean) and shut its kernel down."""
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=60_000)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=60_000)


def screenshot_notebook(page: Any, path: Path, width: int) -> None:
    """A screenshot of the whole notebook at ``width`` px: the viewport grows to its full height."""
    page.set_viewport_size({"width": width, "height": 900})
    _next_frames(page)  # JupyterLab lays out again at the new width before it is measured
    height = page.evaluate("""() => {
      const scroller = document.querySelector('%s .jp-WindowedPanel-outer') || document.querySelector('%s');
      return scroller.scrollHeight;
    }""" % (PANEL, PANEL))
    page.set_viewport_size({"width": width, "height": min(max(int(height) + 200, 900), 16_000)})
    page.evaluate("""() => {
      const scroller = document.querySelector('%s .jp-WindowedPanel-outer');
      if (scroller) scroller.scrollTop = 0;
    }""" % PANEL)
    _next_frames(page)
    page.screenshot(path=str(path), full_page=True)


def _next_frames(page: Any) -> None:
    """Wait for two animation frames: a resize has been laid out and painted."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def shows_a_chart(source: str) -> bool:
    """The cell's last statement is a chart (``exp.chart(...)``, ``wb.charts.latency(...)``): read from
    the source, so a chart that failed to display is still counted."""
    last = [line for line in source.splitlines() if line.strip() and not line.startswith((" ", "#", ")"))][-1:]
    return bool(last) and (".chart(" in last[0] or "charts." in last[0]) and "enable_offline" not in last[0]


def chart_outputs(nb: Any) -> int:
    """Chart outputs in a saved or executed notebook."""
    return sum(VEGA_MIME in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
