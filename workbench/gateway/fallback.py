"""Fallback chains and circuit breakers.

A chain tries its targets in order; a target's failure moves to the next only
when the error is of a class the chain falls back on (overloaded, rate limited,
timeouts, server errors and dropped connections by default: a bad request would
fail the same way everywhere). A breaker per target skips it after repeated
failures for a cool-down, then lets one probe through (half-open): a success
closes it, a failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..errors import ConfigError, ProviderError

__all__ = ["CircuitBreaker", "Fallbacks", "Target", "ERROR_CLASSES"]

ERROR_CLASSES: dict[str, type[ProviderError]] = {
    "overloaded": errors.Overloaded,
    "rate_limited": errors.RateLimited,
    "timeout": errors.ProviderTimeout,
    "server_error": errors.ProviderUnavailable,
    "connection": errors.ProviderConnectionError,
}
"""Names a chain's ``on=`` accepts, and the errors they stand for."""
DEFAULT_ON = tuple(ERROR_CLASSES)


@dataclass(frozen=True)
class Target:
    """One step of a chain: a provider and, optionally, the model to ask it for."""

    provider: Any
    """A Provider (``AnthropicProvider``, ``OpenAIProvider``, ``SimulatedProvider``, ...)."""
    model: str | None = None
    """The model for this provider (None: the routed or requested model)."""

    @property
    def label(self) -> str:
        return f"{self.provider.name}:{self.model or '*'}"


class CircuitBreaker:
    """Closed, open or half-open, per target.

    Args:
        failures: consecutive failures that open the breaker.
        cooldown_s: seconds it stays open before one probe is let through.
        clock: a monotonic clock (tests pass their own).
    """

    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(failures, int) or failures < 1:
            raise ConfigError(f"CircuitBreaker failures must be an integer >= 1, got {failures!r}")
        if not isinstance(cooldown_s, (int, float)) or cooldown_s < 0:
            raise ConfigError(f"CircuitBreaker cooldown_s must be seconds >= 0, got {cooldown_s!r}")
        self.failures = failures
        self.cooldown_s = float(cooldown_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, list[Any]] = {}
        """target -> [state, consecutive failures, opened at, probe in flight]."""

    def spec(self) -> dict[str, Any]:
        return {"failures": self.failures, "cooldown_s": self.cooldown_s}

    def state(self, target: str) -> str:
        """``closed``, ``open`` or ``half_open`` (an open breaker whose cool-down has passed)."""
        with self._lock:
            s = self._state.get(target)
            if s is None:
                return "closed"
            if s[0] == "open" and self.clock() - s[2] >= self.cooldown_s:
                return "half_open"
            return s[0]

    def allow(self, target: str) -> tuple[bool, str]:
        """(may this call go to ``target``, the state it found)."""
        with self._lock:
            s = self._state.setdefault(target, ["closed", 0, 0.0, False])
            if s[0] == "closed":
                return True, "closed"
            if s[0] == "open" and self.clock() - s[2] >= self.cooldown_s:
                s[0] = "half_open"
            if s[0] == "half_open" and not s[3]:
                s[3] = True  # one probe at a time
                return True, "half_open"
            return False, s[0]

    def record(self, target: str, ok: bool) -> str | None:
        """Count an outcome; returns the transition (``opened``, ``closed``, ``reopened``) or None."""
        with self._lock:
            s = self._state.setdefault(target, ["closed", 0, 0.0, False])
            was = s[0]
            s[3] = False
            if ok:
                s[1] = 0
                if was != "closed":
                    s[0] = "closed"
                    return "closed"
                return None
            s[1] += 1
            if was == "half_open":
                s[0], s[2] = "open", self.clock()
                return "reopened"
            if was == "closed" and s[1] >= self.failures:
                s[0], s[2] = "open", self.clock()
                return "opened"
            return None

    def __repr__(self) -> str:
        return f"CircuitBreaker(failures={self.failures}, cooldown_s={self.cooldown_s:g})"


class Fallbacks:
    """An ordered chain of targets tried on chosen error classes.

    ``Fallbacks([Target(anthropic), Target(openai, "gpt-4.1-mini")], on=("overloaded", "rate_limited"))``

    Args:
        targets: Providers or ``Target``s, in order; the first is the primary.
        on: error class names (``overloaded``, ``rate_limited``, ``timeout``,
            ``server_error``, ``connection``) or ProviderError subclasses that move
            on to the next target; any other error ends the chain.
        retries: extra tries of the same target before moving on (SDK backoff).
        breaker: a CircuitBreaker (default: 5 failures, 30 s cool-down); None for none.
    """

    def __init__(
        self,
        targets: Iterable[Any],
        *,
        on: Iterable[str | type[ProviderError]] = DEFAULT_ON,
        retries: int = 0,
        breaker: CircuitBreaker | None | bool = True,
    ) -> None:
        self.targets = tuple(t if isinstance(t, Target) else Target(t) for t in targets)
        if not self.targets:
            raise ConfigError("Fallbacks needs at least one target, e.g. Fallbacks([anthropic, openai])")
        for t in self.targets:
            if not hasattr(t.provider, "complete"):
                raise ConfigError(f"fallback target {t.provider!r} is not a Provider (it has no async complete)")
        classes: list[type[ProviderError]] = []
        for item in on:
            if isinstance(item, str):
                if item not in ERROR_CLASSES:
                    raise ConfigError(f"unknown fallback error class {item!r}; choose from {', '.join(ERROR_CLASSES)}")
                classes.append(ERROR_CLASSES[item])
            elif isinstance(item, type) and issubclass(item, ProviderError):
                classes.append(item)
            else:
                raise ConfigError(f"fallback on= takes names or ProviderError subclasses, got {item!r}")
        self.on = tuple(classes)
        self.on_names = tuple(item if isinstance(item, str) else item.__name__ for item in on)
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"Fallbacks retries must be an integer >= 0, got {retries!r}")
        self.retries = retries
        self.breaker = CircuitBreaker() if breaker is True else (breaker or None)

    def spec(self) -> dict[str, Any]:
        return {"targets": [t.label for t in self.targets], "on": list(self.on_names), "retries": self.retries,
                "breaker": None if self.breaker is None else self.breaker.spec()}

    def falls_back_on(self, error: ProviderError) -> bool:
        return isinstance(error, self.on)

    def __repr__(self) -> str:
        return f"Fallbacks({', '.join(t.label for t in self.targets)}; on {', '.join(self.on_names)})"
