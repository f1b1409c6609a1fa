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
    """Start the kernel without asking, and fetch no news."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
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
