"""ipywidgets views: compare outputs and rate them, browse prompts and traces, watch a run.

Every control can be driven from Python (set values, call ``click()``), so the
widgets are tested without a browser.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compare", "experiment", "prompts", "traces"]


def compare(exp: Any, a: str = "A", b: str = "B", **kwargs: Any) -> Any:
    """Side-by-side outputs of two variants, with ratings written to the store."""
    from .compare import CompareWidget

    return CompareWidget(exp, a=a, b=b, **kwargs)


def prompts(bench: Any, **kwargs: Any) -> Any:
    """Browse, diff, edit and try prompt versions."""
    from .prompts import PromptsWidget

    return PromptsWidget(bench, **kwargs)


def traces(bench: Any, **kwargs: Any) -> Any:
    """A filterable, paged table of traces with a detail view."""
    from .traces import TracesWidget

    return TracesWidget(bench, **kwargs)


def experiment(exp: Any, **kwargs: Any) -> Any:
    """A live view of a run: progress, errors, spend, running means with CIs."""
    from .live import ExperimentWidget

    return ExperimentWidget(exp, **kwargs)
