"""Keeping API keys out of what workbench stores.

Shared by the provider (`providers.anthropic`) and the wrapped client
(`providers.wrap`): error text is scrubbed of the configured key before it
reaches a trace.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..errors import ProviderError

_BEARER = re.compile(r"(?i)(bearer\s+|x-api-key\W{0,3}\s*)[^\s'\"\\,]+")


def secrets_of(client: Any) -> tuple[str, ...]:
    found = []
    for name in ("api_key", "auth_token"):
        value = getattr(client, name, None)
        if isinstance(value, str) and len(value.strip()) >= 4:
            found += [value, value.strip(), repr(value)[1:-1]]
    return tuple(sorted(set(found), key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "<redacted>")
    return _BEARER.sub(r"\1<redacted>", text)


_standins: dict[str, type[Exception]] = {}


def scrubbed(error: BaseException, secrets: tuple[str, ...]) -> BaseException:
    """``error``, or a copy of it whose text holds no key, for the trace only."""
    text = str(error)
    if redact(text, secrets) == text:
        return error
    if isinstance(error, ProviderError):
        clean = copy.copy(error)
        clean.message = redact(error.message, secrets)
        clean.args = (clean.message,)
        return clean
    name = type(error).__name__
    cls = _standins.get(name) or _standins.setdefault(name, type(name, (Exception,), {}))
    standin = cls(redact(text, secrets))
    standin.request_id = getattr(error, "request_id", None)  # type: ignore[attr-defined]
    return standin
