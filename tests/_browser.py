"""Helpers the browser tests share: Debian's chromium driven by Playwright, and what a page did.

The tests skip (with the reason) when Playwright is not importable or
``/usr/bin/chromium`` is missing. CI installs both and sets
``WORKBENCH_REQUIRE_BROWSER=1`` (``.ci/run``), which turns that skip into a
failure, so there they really run. Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium (``apt-get install -y chromium``)."""

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root in a container
    "--disable-gpu",
    "--disable-quic",
    # Chromium's own traffic (updates, sync, first-run pings) would show up as requests leaving the machine.
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
"""Screenshots kept for a human to look at (git-ignored)."""

LOCAL_SCHEMES = ("file", "data", "about", "blob")
"""Schemes that never reach the network."""


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where the browser tests must run (``WORKBENCH_REQUIRE_BROWSER=1``, set by ``.ci/run``)."""
    if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"WORKBENCH_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def artifact(name: str) -> Path:
    """Path of an artifact file under ``test-artifacts/``, creating the folder."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian chromium through Playwright; skips the test when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"playwright is not importable ({exc}); pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing; apt-get install -y chromium (never `playwright install`)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageLog:
    """Everything a page did that a test may want to fail on: console errors, uncaught
    exceptions, dialogs (answered with dismiss), requests and websockets."""

    def __init__(self, page: Any) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("dialog", self._on_dialog)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda ws: self.requests.append(ws.url))

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def requests_where(self, leaves: Callable[[str], bool]) -> list[str]:
        return [url for url in self.requests if leaves(url)]

    def non_local_requests(self) -> list[str]:
        """Requests to anything but ``file:``, ``data:``, ``about:`` and ``blob:`` URLs."""
        return self.requests_where(lambda url: urlsplit(url).scheme not in LOCAL_SCHEMES)

    def off_host_requests(self, host: str) -> list[str]:
        """Requests that go to a host other than ``host`` (local schemes are fine)."""
        return self.requests_where(
            lambda url: urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).hostname != host
        )

    def summary(self) -> str:
        """A short account of the page's errors for an assertion message."""
        return (
            f"console errors: {self.console_errors[:10]}; page errors: {self.page_errors[:10]}; "
            f"dialogs: {self.dialogs[:10]}"
        )
