"""Canonical JSON and the content hashes built from it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_DEPTH = 100
"""Levels of nested objects and lists canonical JSON accepts. Far past any real
config or dataset item, and far below Python's recursion limit, so a hostile
file gets a clear error instead of a ``RecursionError``."""


class TooDeeplyNested(ValueError):
    """A value nests objects or lists deeper than `MAX_DEPTH` levels."""


_PLAIN = frozenset({str, int, bool, type(None)})
"""Types that canonical JSON writes as they are (exact types; subclasses take the slow path)."""


def _normalise(value: Any, depth: int = 0) -> Any:
    """1.0 and 1 are the same setting: integral floats hash as integers."""
    kind = type(value)
    if kind is dict or kind is list or kind is tuple or isinstance(value, (dict, list, tuple)):
        if depth >= MAX_DEPTH:
            raise TooDeeplyNested(f"nested more than {MAX_DEPTH} levels deep")
        depth += 1
        # Plain leaves are checked inline: a call per string would double the cost.
        if isinstance(value, dict):
            return {k: v if type(v) in _PLAIN else _normalise(v, depth) for k, v in value.items()}
        return [v if type(v) in _PLAIN else _normalise(v, depth) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_PLAIN_JSON = json.JSONEncoder(ensure_ascii=False, default=str)
# json.dumps builds a new encoder on every call that passes options; these are built once.


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal content gives equal text.

    Raises:
        TooDeeplyNested: ``value`` nests deeper than `MAX_DEPTH` levels.
    """
    return _CANONICAL.encode(_normalise(value))


def content_hash(value: Any) -> str:
    """An algorithm-tagged hash of the canonical JSON of ``value``."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


class ListHash:
    """`content_hash` of a list, fed one element at a time.

    ``h.add(canonical_json(x).encode())`` for each element gives the same digest
    as ``content_hash(list_of_elements)``, without holding the list or its JSON:
    canonical JSON of a list is ``[`` + the elements' canonical JSON joined by
    ``,`` + ``]``.
    """

    __slots__ = ("_sha", "_empty")

    def __init__(self) -> None:
        self._sha = hashlib.sha256(b"[")
        self._empty = True

    def add(self, element_json: bytes) -> None:
        """Add one element, given as its canonical JSON in UTF-8."""
        if not self._empty:
            self._sha.update(b",")
        self._empty = False
        self._sha.update(element_json)

    def digest(self) -> str:
        """The tagged digest of the list so far (the hasher can go on)."""
        sha = self._sha.copy()
        sha.update(b"]")
        return "sha256:" + sha.hexdigest()


def escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate written as a ``\\udXXX`` escape.

    A lone surrogate (``"\\udcff"``, as ``os.fsdecode`` makes of a non-UTF-8
    file name, or ``"\\ud800"`` from JSON) is no Unicode text: UTF-8 and so
    SQLite cannot store it. Everything else is left alone.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (cheap for ASCII text)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def escape_surrogates_in(value: Any) -> Any:
    """`escape_surrogates` applied to every string (keys too) inside ``value``."""
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {escape_surrogates_in(k): escape_surrogates_in(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_surrogates_in(v) for v in value]
    return value


def dumps(value: Any) -> str | None:
    """JSON text for a ``*_json`` column; None stays NULL."""
    if value is None:
        return None
    return _PLAIN_JSON.encode(value)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)
