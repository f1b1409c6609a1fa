"""Notebook views: compare outputs and rate them, explore traces, browse prompts, watch a run, watch production.

The compare grid and the traces explorer are anywidgets (`_common.HTMLView`:
Python renders escaped HTML, a small ES module shipped in ``_static/`` draws
it and reports clicks and keys); the prompts and live widgets are ipywidgets.
Every action can be driven from Python, so the widgets are tested without a
browser; ``tests/test_browser_widgets.py`` checks the browser side in JupyterLab.
"""

from __future__ import annotations

from typing import Any

# The submodules are imported first so that the entry points below, which share
# their names, are what ``wb.widgets.compare`` and friends stay bound to.
from .compare import CompareWidget
from .live import ExperimentWidget
from .monitor import MonitorView
from .prompts import PromptsWidget, prompt_metrics
from .traces import TracesWidget

__all__ = [
    "CompareWidget", "ExperimentWidget", "MonitorView", "PromptsWidget", "TracesWidget", "compare", "experiment",
    "monitor", "prompt_metrics", "prompts", "traces",
]


def compare(exp: Any, a: str = "A", b: str = "B", **kwargs: Any) -> CompareWidget:
    """A grid of every item, variant and repeat, and a side-by-side view to rate (ratings go to the file)."""
    return CompareWidget(exp, a=a, b=b, **kwargs)


def prompts(bench: Any, **kwargs: Any) -> PromptsWidget:
    """Browse, diff, edit and try prompt versions, with each version's metrics."""
    return PromptsWidget(bench, **kwargs)


def traces(bench: Any, **kwargs: Any) -> TracesWidget:
    """The traces explorer: one-line rows, a detail with the span waterfall, filters and full-text search."""
    return TracesWidget(bench, **kwargs)


def monitor(bench: Any, now: Any = None, hours: float = 24.0) -> Any:
    """The monitoring view (last ``hours`` per scope, open incidents first) with Check now and Refresh buttons."""
    return bench.monitor.widget(now=now, hours=hours)


def experiment(exp: Any, **kwargs: Any) -> ExperimentWidget:
    """A live view of a run: progress, errors, spend, running means with CIs."""
    return ExperimentWidget(exp, **kwargs)
