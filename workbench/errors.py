"""The one error tree of workbench.

Every error the package raises on purpose derives from ``WorkbenchError``;
where callers expect a builtin, the error subclasses it too::

    WorkbenchError
    ├── ConfigError(ValueError)             bad argument or setting
    ├── StoreError                          the SQLite file
    │   └── NotAWorkbenchDatabase           foreign or corrupt file; nothing is written to it
    ├── PromptError
    │   ├── PromptNotFound(KeyError)
    │   ├── TemplateError(ValueError)       malformed template, refused at register
    │   └── RenderError(ValueError)         missing or unexpected variables
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
    │   └── AuthenticationFailed            401, 403
    ├── MonitorError                        monitoring: rules, checks, notifications
    │   └── NotificationError               a notification could not be delivered (after retries)
    └── MissingDependency(ImportError)      an optional extra is not installed
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "BudgetExceeded",
    "ConfigError",
    "DatasetError",
    "DatasetNotFound",
    "ExperimentError",
    "ExperimentNotFound",
    "MissingDependency",
    "MonitorError",
    "NotAWorkbenchDatabase",
    "NotificationError",
    "Overloaded",
    "PromptError",
    "PromptNotFound",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RenderError",
    "StoreError",
    "TemplateError",
    "WorkbenchError",
]


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose."""

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print their message in quotes.
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(WorkbenchError, ValueError):
    """A bad argument or setting."""


class StoreError(WorkbenchError):
    """The SQLite file cannot be used."""


class NotAWorkbenchDatabase(StoreError):
    """The file is not a workbench database (or is corrupt); it was left untouched."""


class PromptError(WorkbenchError):
    """Base for prompt registry errors."""


class PromptNotFound(PromptError, KeyError):
    """No prompt with that name, version or label."""


class TemplateError(PromptError, ValueError):
    """A template that cannot be parsed."""


class RenderError(PromptError, ValueError):
    """Variables do not match the template."""


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
    """

    retryable = False

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
