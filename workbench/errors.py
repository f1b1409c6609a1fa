"""The one error tree of workbench.

Every error the package raises on purpose derives from ``WorkbenchError``;
where callers expect a builtin, the error subclasses it too::

    WorkbenchError
    ├── ConfigError(ValueError)             bad argument or setting
    │   └── GateConfigError                 the CI gate's TOML file is missing or wrong (exit code 3)
    ├── StoreError                          the SQLite file (every message names it, the cause and a fix)
    │   ├── NotAWorkbenchDatabase           not SQLite, or another program's database; nothing is written to it
    │   ├── CorruptDatabase                 damaged pages or header; says how to recover what is readable
    │   ├── ReadOnlyDatabase(PermissionError)  file or folder not writable, or opened with readonly=True
    │   ├── DiskFull                        no space left (or the process's file size limit)
    │   ├── DatabaseLocked                  another process held the lock past the busy timeout
    │   └── RowsNotWritten                  flush()/close(): rows kept in the spill file, not in the database
    ├── PromptError
    │   ├── PromptNotFound(KeyError)
    │   ├── TemplateError(ValueError)       malformed template, refused at register
    │   ├── RenderError(ValueError)         missing or unexpected variables
    │   └── LabelMoved                      a label moved since it was read (a concurrent rollout step)
    ├── DatasetError(ValueError)            malformed dataset file or rows (names file and line)
    │   └── DatasetNotFound(KeyError)
    ├── ExperimentError
    │   ├── ExperimentNotFound(KeyError)
    │   └── BudgetExceeded                  the run stopped before exceeding its budget
    ├── ProviderError                       a failed model call; keeps status, request id, retry-after
    │   ├── RateLimited                     429
    │   ├── Overloaded                      529
    │   ├── ProviderUnavailable             other 5xx
    │   ├── ProviderTimeout                 408 or a client-side timeout
    │   ├── ProviderConnectionError         connection refused, reset or dropped
    │   ├── BadRequest                      400, 404, 409, 413, 422
    │   ├── AuthenticationFailed            401, 403
    │   ├── GatewayRefused                  a gateway refused the call itself (never retried)
    │   │   ├── UserRateLimited             a per-user/key/feature rate limit of yours; retry_after says when
    │   │   ├── SpendLimitReached           a per-user dollar budget of yours for the day or month
    │   │   └── GuardrailTriggered          an input or output check blocked the call
    │   └── UnexpectedProviderError         a provider raised something else (a custom provider's bug)
    ├── MonitorError                        monitoring: rules, checks, notifications
    │   └── NotificationError               a notification could not be delivered (after retries)
    ├── RolloutError                        a gradual rollout cannot start, step or roll back
    │   └── RolloutNotFound(KeyError)       no rollout running for that label
    ├── MissingDependency(ImportError)      an optional extra is not installed
    └── OtlpError                           sending or receiving OpenTelemetry spans failed
"""

from __future__ import annotations

import linecache
import os
from collections.abc import Callable
from types import TracebackType

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "BudgetExceeded",
    "ConfigError",
    "CorruptDatabase",
    "DatabaseLocked",
    "DatasetError",
    "DatasetNotFound",
    "DiskFull",
    "ExperimentError",
    "ExperimentNotFound",
    "GateConfigError",
    "GatewayRefused",
    "GuardrailTriggered",
    "LabelMoved",
    "MissingDependency",
    "MonitorError",
    "NotAWorkbenchDatabase",
    "NotificationError",
    "OtlpError",
    "Overloaded",
    "PromptError",
    "PromptNotFound",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "ReadOnlyDatabase",
    "RenderError",
    "RolloutError",
    "RolloutNotFound",
    "RowsNotWritten",
    "SpendLimitReached",
    "StoreError",
    "TemplateError",
    "UnexpectedProviderError",
    "UserRateLimited",
    "WorkbenchError",
]


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose.

    In IPython and Jupyter it shows as its one-line message (which says what to
    do) and the line of your code that raised it, not the package's internals;
    ``WORKBENCH_DEBUG=1`` (``%env WORKBENCH_DEBUG=1`` in a notebook) shows the
    full traceback again.
    """

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print their message in quotes.
        return str(self.args[0]) if self.args else self.__class__.__name__

    @property
    def _render_traceback_(self) -> Callable[[], list[str]]:
        """IPython's hook for an exception's own traceback (a method returning lines).

        A property so that, with WORKBENCH_DEBUG set, ``hasattr`` finds nothing
        and IPython prints the ordinary full traceback.
        """
        if os.environ.get("WORKBENCH_DEBUG", "") not in ("", "0", "false"):
            raise AttributeError("_render_traceback_")
        return self._short_traceback

    def _short_traceback(self) -> list[str]:
        red, bold, dim, reset = "\x1b[0;31m", "\x1b[1m", "\x1b[2m", "\x1b[0m"
        lines = [f"{red}{bold}{type(self).__name__}{reset}: {self}"]
        where = _caller(self.__traceback__)
        if where:
            lines.append(f"  {dim}raised by{reset} {where}")
        lines.append(f"  {dim}(WORKBENCH_DEBUG=1 shows the full traceback: %env WORKBENCH_DEBUG=1){reset}")
        return lines


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller(tb: TracebackType | None) -> str:
    """The user's line that called into workbench: the last frame before the first one in the package."""
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    inside = [i for i, (name, _) in enumerate(frames) if os.path.abspath(name).startswith(_PACKAGE)]
    pick = (inside[0] - 1) if inside else len(frames) - 1
    if pick < 0 or not frames:
        return ""
    filename, lineno = frames[pick]
    code = linecache.getline(filename, lineno).strip()
    # IPython names cells after temporary files; "line 3" of the cell is what a reader can find.
    place = f"line {lineno} of the cell" if "ipykernel_" in filename else f"{filename}:{lineno}"
    return f"{code}  ({place})" if code else place


class ConfigError(WorkbenchError, ValueError):
    """A bad argument or setting."""


class StoreError(WorkbenchError):
    """The SQLite file cannot be used."""


class NotAWorkbenchDatabase(StoreError):
    """The file is not SQLite, or is another program's database; it was left untouched."""


class CorruptDatabase(StoreError):
    """SQLite reports damaged pages (``database disk image is malformed``) or a damaged header."""


class ReadOnlyDatabase(StoreError, PermissionError):
    """The file or its folder cannot be written, or it was opened with ``readonly=True``."""


class DiskFull(StoreError):
    """No space left on the file's disk (or the process's file size limit was reached)."""


class DatabaseLocked(StoreError):
    """Another process held the file's write lock for longer than the busy timeout."""


class RowsNotWritten(StoreError):
    """Queued rows that are not in the database: kept in the spill file (or in memory).

    Attributes:
        pending: rows waiting to be written (spill file and memory).
        failed: rows SQLite refuses (kept in the spill file with their error).
        spill_path: where they are kept, or None when only in memory.
    """

    def __init__(self, message: str, *, pending: int = 0, failed: int = 0, spill_path: str | None = None) -> None:
        super().__init__(message)
        self.pending = pending
        self.failed = failed
        self.spill_path = spill_path


class PromptError(WorkbenchError):
    """Base for prompt registry errors."""


class PromptNotFound(PromptError, KeyError):
    """No prompt with that name, version or label."""


class TemplateError(PromptError, ValueError):
    """A template that cannot be parsed."""


class RenderError(PromptError, ValueError):
    """Variables do not match the template."""


class LabelMoved(PromptError):
    """A label moved since it was read: decide again on a fresh reading."""


class RolloutError(WorkbenchError):
    """A gradual rollout cannot start, step or roll back."""


class RolloutNotFound(RolloutError, KeyError):
    """No rollout is running for that label."""


class GateConfigError(ConfigError):
    """The CI gate's configuration file is missing, unreadable or wrong."""


class DatasetError(WorkbenchError, ValueError):
    """A dataset file or row that cannot be loaded."""


class DatasetNotFound(DatasetError, KeyError):
    """No dataset with that name or version."""


class ExperimentError(WorkbenchError):
    """Base for experiment errors."""


class ExperimentNotFound(ExperimentError, KeyError):
    """No experiment with that name."""


class BudgetExceeded(ExperimentError):
    """A run stopped because the next call could exceed its budget."""


class MissingDependency(WorkbenchError, ImportError):
    """An optional dependency is not installed."""


class OtlpError(WorkbenchError):
    """Spans could not be sent to a collector, or an OTLP payload could not be read."""
class MonitorError(WorkbenchError):
    """Base for monitoring errors."""


class NotificationError(MonitorError):
    """A notification was not delivered.

    Attributes:
        attempts: how many times it was tried.
    """

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class ProviderError(WorkbenchError):
    """A model call failed.

    Attributes:
        status_code: HTTP status, or None for connection errors and timeouts.
        request_id: the provider's request id when it sent one.
        error_type: the provider's error type (``rate_limit_error``, ...).
        retry_after: seconds the provider asked us to wait, if it did.
        retryable: whether the retry policy may try again.
        latency_ms: time from sending the request to the failure, when the
            provider measured it (the trace's latency; None: the call's wall time).
    """

    retryable = False
    latency_ms: float | None = None
    note = None
    """A ``providers.base.CallNote`` a gateway attaches for the trace (status, decisions)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.error_type = error_type
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"status {self.status_code}")
        if self.request_id:
            parts.append(f"request {self.request_id}")
        return " | ".join(parts)


class RateLimited(ProviderError):
    """429 from the provider."""

    retryable = True


class Overloaded(ProviderError):
    """529 from the provider."""

    retryable = True


class ProviderUnavailable(ProviderError):
    """A 5xx other than 529."""

    retryable = True


class ProviderTimeout(ProviderError):
    """408 or a client-side timeout."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The connection failed or dropped."""

    retryable = True


class BadRequest(ProviderError):
    """The provider refused the request as malformed (not retried, except 409)."""


class AuthenticationFailed(ProviderError):
    """The key was missing, wrong or not allowed."""


class GatewayRefused(ProviderError):
    """A gateway refused the call before (or instead of) answering it; not retried.

    Attributes:
        rule: which limit, budget or guardrail refused it.
    """

    retryable = False

    def __init__(self, message: str, *, rule: str = "", retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, retry_after=retry_after, retryable=False, **kwargs)  # type: ignore[arg-type]
        self.rule = rule


class UserRateLimited(GatewayRefused):
    """A per-user (or key, or feature) rate limit set on the gateway refused the call.

    Not the provider's 429 (that is ``RateLimited``). ``retry_after`` is the
    seconds until the bucket has room again.
    """


class SpendLimitReached(GatewayRefused):
    """A per-user dollar budget for the day or month would be exceeded.

    Not an experiment's ``BudgetExceeded``. ``retry_after`` is the seconds until
    the budget's period starts again.
    """


class GuardrailTriggered(GatewayRefused):
    """An input or output guardrail blocked the call; ``rule`` names it."""
class UnexpectedProviderError(ProviderError):
    """A provider raised an exception that is not a ``ProviderError`` (not retried).

    The original exception is ``__cause__`` and ``original``; the trace records
    its class name as ``error_type``.
    """

    def __init__(self, provider: str, original: BaseException) -> None:
        super().__init__(
            f"provider {provider!r} raised {type(original).__name__}: {original} "
            "(not a workbench ProviderError, so it was not retried; a custom provider should raise "
            "workbench.errors.ProviderError subclasses to choose what is retried)",
            error_type=type(original).__name__,
        )
        self.original = original
        self.__cause__ = original


def provider_error_for_status(
    status_code: int | None, message: str, **kwargs: object
) -> ProviderError:
    """Build the ProviderError subclass that matches an HTTP status."""
    if status_code is None:
        cls: type[ProviderError] = ProviderConnectionError
    elif status_code == 429:
        cls = RateLimited
    elif status_code == 529:
        cls = Overloaded
    elif status_code == 408:
        cls = ProviderTimeout
    elif status_code in (401, 403):
        cls = AuthenticationFailed
    elif status_code >= 500:
        cls = ProviderUnavailable
    else:
        cls = BadRequest
    if status_code == 409:
        kwargs.setdefault("retryable", True)
    return cls(message, status_code=status_code, **kwargs)  # type: ignore[arg-type]
