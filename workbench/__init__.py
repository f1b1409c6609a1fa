"""workbench: prompts, experiments, evaluation and tracing for LLM features, in one SQLite file."""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

from . import _deferred, scorers
from .bench import Workbench, open
from .datasets import Dataset, DatasetItem
from .errors import WorkbenchError
from .experiments import Experiment, Variant, variant
from .prompts import PromptDiff, PromptVersion
from .parquet import scan
from .readouts import Comparison
from .providers.base import Completion, Message, Provider, Request, Usage
from .scorers import Score, Scorer, scorer
from .tracing import CallResult

__version__ = "0.1.0"

_deferred.defer()  # charts import Altair, which imports a module that takes 1 to 10 s to load and is rarely used

_LAZY = ("charts", "demo", "frames", "gateway", "monitor", "otel", "report", "rollout", "stats", "verdict", "widgets")
"""Submodules loaded on first use: most import heavy libraries (Altair, Polars, ipywidgets, OpenTelemetry, SciPy)."""


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = [
    "CallResult",
    "Comparison",
    "Completion",
    "Dataset",
    "DatasetItem",
    "Experiment",
    "Message",
    "PromptDiff",
    "PromptVersion",
    "Provider",
    "Request",
    "Score",
    "Scorer",
    "Usage",
    "Variant",
    "Workbench",
    "WorkbenchError",
    "__version__",
    "open",
    "scan",
    "scorer",
    "scorers",
    "variant",
]
