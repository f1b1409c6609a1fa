"""Settings: an explicit argument wins, then a ``WORKBENCH_*`` variable, then the default."""

from __future__ import annotations

import os

from .errors import ConfigError

DEFAULT_DB = "workbench.db"
PROVIDERS = ("auto", "simulated", "anthropic")


def setting(value: object, env: str, default: object) -> object:
    """Resolve one setting from an argument, the environment, or a default."""
    if value is not None:
        return value
    found = os.environ.get(env)
    if found not in (None, ""):
        return found
    return default


def db_path(value: str | os.PathLike[str] | None = None) -> str:
    """Path of the SQLite file, or a PostgreSQL URL (``WORKBENCH_DB``, default ``workbench.db``)."""
    return os.fspath(setting(value, "WORKBENCH_DB", DEFAULT_DB))  # type: ignore[arg-type]


def provider_choice(value: str | None = None) -> str:
    """Which provider ``wb.open`` uses by default (``WORKBENCH_PROVIDER``).

    ``auto`` means Anthropic when ``ANTHROPIC_API_KEY`` is set, else the simulator.
    """
    choice = str(setting(value, "WORKBENCH_PROVIDER", "auto")).lower()
    if choice not in PROVIDERS:
        raise ConfigError(
            f"unknown provider {choice!r} (WORKBENCH_PROVIDER); use one of: {', '.join(PROVIDERS)}"
        )
    if choice == "auto":
        return "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "simulated"
    return choice


def int_setting(value: int | None, env: str, default: int) -> int:
    """An integer setting; a bad environment value names the variable."""
    raw = setting(value, env, default)
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{env} must be an integer, got {raw!r}") from None


def debug() -> bool:
    """Full tracebacks in the CLI (``WORKBENCH_DEBUG=1``)."""
    return os.environ.get("WORKBENCH_DEBUG", "") not in ("", "0", "false")
