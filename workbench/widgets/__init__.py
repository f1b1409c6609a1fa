"""ipywidgets views: compare outputs and rate them, browse prompts and traces, watch a run.

Every control can be driven from Python (set values, call ``click()``), so the
widgets are tested without a browser.
"""

from __future__ import annotations

from typing import Any

# The submodules are imported first so that the entry points below, which share
# their names, are what ``wb.widgets.compare`` and friends stay bound to.
from .compare import CompareWidget
from .live import ExperimentWidget
from .prompts import PromptsWidget
from .traces import TracesWidget

__all__ = ["CompareWidget", "ExperimentWidget", "PromptsWidget", "TracesWidget", "compare", "experiment", "prompts", "traces"]


def compare(exp: Any, a: str = "A", b: str = "B", **kwargs: Any) -> CompareWidget:
    """Side-by-side outputs of two variants, with ratings written to the store."""
    return CompareWidget(exp, a=a, b=b, **kwargs)


def prompts(bench: Any, **kwargs: Any) -> PromptsWidget:
    """Browse, diff, edit and try prompt versions."""
    return PromptsWidget(bench, **kwargs)


def traces(bench: Any, **kwargs: Any) -> TracesWidget:
    """A filterable, paged table of traces with a detail view."""
    return TracesWidget(bench, **kwargs)


def experiment(exp: Any, **kwargs: Any) -> ExperimentWidget:
    """A live view of a run: progress, errors, spend, running means with CIs."""
    return ExperimentWidget(exp, **kwargs)
