"""Keeping API keys out of what workbench stores.

Shared by the provider (`providers.anthropic`) and the wrapped client
(`providers.wrap`): error text is scrubbed before it reaches a trace or an
error message. Two rules, because a malformed key is quoted in ways an exact
match misses (httpx quotes a header with a stray newline as ``b'Bearer
sk-...\\n-...'``; a server decodes a non-ASCII key's UTF-8 bytes as Latin-1
and echoes that back):

- the value after ``Bearer``, ``x-api-key`` or ``api_key`` is redacted
  whatever it is, escapes (``\\n``, ``\\xd0``) included;
- any run of 8 or more characters of the configured key is redacted, in each
  spelling it can take on its way (as is, Python- or JSON-escaped, as UTF-8
  bytes, decoded as Latin-1, percent-encoded).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from ..errors import ProviderError

REDACTED = "<redacted>"
FRAGMENT = 8
"""Characters of the key that count as a leak on their own."""

_HEADER_VALUE = re.compile(
    r"""(?ix)
    ( \bbearer\s+                                       # Authorization: Bearer <key>
    | \b(?:x-)?api[-_]key (?: ["']?\s*[:=]\s* | ["']\s*,\s*b? ) ["']?  # x-api-key: <key>, ('x-api-key', b'<key>')
    )
    ( (?: \\+. | [^\s'",;\\)\]}] )+ )                   # the value, escape sequences included
    """
)


def _spellings(key: str) -> set[str]:
    """The forms ``key`` takes in error text and logs."""
    forms = {key, key.strip()}
    utf8 = key.encode("utf-8", "surrogatepass")
    forms.add(key.encode("unicode_escape").decode("ascii"))  # repr: \n, \u043a
    forms.add(repr(utf8)[2:-1])  # bytes repr: \n, \xd0\xba
    forms.add(utf8.decode("latin-1"))  # how http.server and others decode header bytes
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}
    forms.add(quote(key, safe=""))
    forms |= {form.replace("\\", "\\\\") for form in list(forms) if "\\" in form}  # a repr of a repr
    return {form for form in forms if form}


class Redactor:
    """Scrubs text of the keys it was given (see the module's two rules).

    Args:
        keys: the configured keys; shorter than 4 characters are ignored.
    """

    __slots__ = ("_grams", "_size")

    def __init__(self, keys: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for key in keys:
            if isinstance(key, str) and len(key.strip()) >= 4:
                forms |= _spellings(key)
        # A key shorter than FRAGMENT is matched whole.
        self._size = min([FRAGMENT, *(len(f) for f in forms)])
        self._grams = frozenset(form[i:i + self._size] for form in forms for i in range(len(form) - self._size + 1))

    def __bool__(self) -> bool:
        return bool(self._grams)

    def __call__(self, text: str) -> str:
        """``text`` with every key fragment and every credential header value replaced."""
        if self._grams and len(text) >= self._size:
            text = self._without_fragments(text)
        return _HEADER_VALUE.sub(r"\1" + REDACTED, text)

    def _without_fragments(self, text: str) -> str:
        size, grams = self._size, self._grams
        spans: list[list[int]] = []
        for i in range(len(text) - size + 1):
            if text[i:i + size] in grams:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = i + size
                else:
                    spans.append([i, i + size])
        if not spans:
            return text
        out, last = [], 0
        for start, end in spans:
            out.append(text[last:start])
            out.append(REDACTED)
            last = end
        out.append(text[last:])
        return "".join(out)


def keys_of(client: Any) -> list[str]:
    """The credentials an anthropic client holds (``api_key``, ``auth_token``)."""
    return [v for v in (getattr(client, name, None) for name in ("api_key", "auth_token")) if isinstance(v, str)]


def exception_text(exc: BaseException) -> str:
    """The text of ``exc`` and of the exceptions it was raised from, as a traceback shows them."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{current!r} {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


_standins: dict[str, type[Exception]] = {}


def scrubbed(error: BaseException, redact: Redactor) -> BaseException:
    """``error``, or a copy of it whose text holds no key, for the trace only."""
    text = str(error)
    clean_text = redact(text)
    if clean_text == text:
        return error
    if isinstance(error, ProviderError):
        clean = copy.copy(error)
        clean.message = redact(error.message)
        clean.args = (clean.message,)
        return clean
    name = type(error).__name__
    cls = _standins.get(name) or _standins.setdefault(name, type(name, (Exception,), {}))
    standin = cls(clean_text)
    standin.request_id = getattr(error, "request_id", None)  # type: ignore[attr-defined]
    return standin
