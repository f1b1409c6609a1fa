"""workbench: prompts, experiments, evaluation and tracing for LLM features, in one SQLite file."""

from __future__ import annotations

from .bench import Workbench, open
from .errors import WorkbenchError
from .prompts import PromptDiff, PromptVersion
from .providers.base import Completion, Message, Provider, Request, Usage
from .tracing import CallResult

__version__ = "0.1.0"

__all__ = [
    "CallResult",
    "Completion",
    "Message",
    "PromptDiff",
    "PromptVersion",
    "Provider",
    "Request",
    "Usage",
    "Workbench",
    "WorkbenchError",
    "__version__",
    "open",
]
