"""Input and output checks that block, redact or flag.

A check looks at text (the last user turn on the way in, the answer on the way
out) and fires or not. What then happens is its ``action``: ``block`` refuses the
call (``GuardrailTriggered``, trace status ``guardrail_triggered``), ``redact``
replaces what matched and goes on, ``flag`` only records it on the trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["Check", "Guardrails", "custom", "json_schema", "max_length", "pii", "regex"]

ACTIONS = ("block", "redact", "flag")
PII_PATTERNS = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    # 13 to 19 digits, optionally grouped by spaces or dashes; Luhn decides.
    "card": re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"),
    "phone": re.compile(r"(?<![\w+])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\d)"),
}
_DIGIT = re.compile(r"\d")


def _may_match(kind: str, text: str) -> bool:
    """Whether ``PII_PATTERNS[kind]`` can match at all: a cheap look first, since most texts hold no PII."""
    return "@" in text if kind == "email" else _DIGIT.search(text) is not None


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Finding:
    """What one check found in one text."""

    fired: bool
    detail: str = ""
    redacted: str | None = None
    """The text with what matched replaced (redacting checks only)."""


class Check:
    """A guardrail check; build one with ``max_length``, ``regex``, ``pii``, ``json_schema`` or ``custom``."""

    def __init__(self, name: str, action: str, run: Callable[[str], Finding], spec: dict[str, Any], can_redact: bool) -> None:
        if action not in ACTIONS:
            raise ConfigError(f"guardrail {name!r} action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if action == "redact" and not can_redact:
            raise ConfigError(f"guardrail {name!r} cannot redact (nothing to replace); use block or flag")
        self.name = name
        self.action = action
        self.run = run
        self._spec = {"check": name, "action": action, **spec}

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)

    def __repr__(self) -> str:
        return f"<guardrail {self.name} ({self.action})>"


def max_length(*, chars: int | None = None, tokens: int | None = None, action: str = "block", name: str = "max_length") -> Check:
    """Fires when the text is longer than ``chars`` characters or about ``tokens`` tokens (4 chars a token)."""
    if chars is None and tokens is None:
        raise ConfigError("max_length needs chars=... or tokens=...")
    limit = min(x for x in (chars, None if tokens is None else tokens * 4) if x is not None)

    def run(text: str) -> Finding:
        if len(text) > limit:
            return Finding(True, f"{len(text):,} characters > {limit:,}")
        return Finding(False)

    return Check(name, action, run, {"chars": chars, "tokens": tokens}, can_redact=False)


def regex(pattern: str, *, action: str = "block", name: str | None = None, replacement: str | None = None) -> Check:
    """Fires when ``pattern`` is found (case-insensitive); redacting replaces each match."""
    try:
        compiled = re.compile(pattern, re.I)
    except re.error as exc:
        raise ConfigError(f"guardrail regex {pattern!r} is invalid: {exc}") from None
    label = name or f"regex:{pattern[:30]}"
    repl = replacement if replacement is not None else f"[{label}]"

    def run(text: str) -> Finding:
        found = compiled.findall(text)
        if not found:
            return Finding(False)
        return Finding(True, f"{len(found)} match{'es' if len(found) > 1 else ''}", compiled.sub(repl, text))

    return Check(label, action, run, {"pattern": pattern}, can_redact=True)


def pii(kinds: Sequence[str] = ("email", "card"), *, action: str = "redact", name: str = "pii") -> Check:
    """E-mail addresses, card numbers (checked with Luhn, so order numbers pass) and phone numbers."""
    unknown = [k for k in kinds if k not in PII_PATTERNS]
    if unknown:
        raise ConfigError(f"unknown PII kinds {unknown}; choose from {', '.join(PII_PATTERNS)}")
    kinds = tuple(kinds)

    def run(text: str) -> Finding:
        counts: dict[str, int] = {}
        out = text
        for kind in kinds:
            if not _may_match(kind, out):
                continue
            pattern = PII_PATTERNS[kind]

            def replace(m: re.Match[str], kind: str = kind) -> str:
                if kind == "card" and not luhn_ok(re.sub(r"\D", "", m.group())):
                    return m.group()
                counts[kind] = counts.get(kind, 0) + 1
                return f"[{kind}]"

            out = pattern.sub(replace, out)
        if not counts:
            return Finding(False)
        return Finding(True, ", ".join(f"{n} {k}" for k, n in counts.items()), out)

    return Check(name, action, run, {"kinds": list(kinds)}, can_redact=True)


def json_schema(schema: dict[str, Any], *, action: str = "block", name: str = "json_schema") -> Check:
    """Fires when the text is not JSON valid against ``schema`` (for structured answers)."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"guardrail json_schema: the schema is invalid: {exc.message}") from None
    validator = jsonschema.validators.validator_for(schema)(schema)

    def run(text: str) -> Finding:
        body = text.strip()
        if body.startswith("```"):
            body = body.strip("`").split("\n", 1)[-1]
        try:
            value = json.loads(body)
        except ValueError as exc:
            return Finding(True, f"not JSON: {exc}")
        error = next(iter(validator.iter_errors(value)), None)
        if error is not None:
            return Finding(True, f"schema: {error.message[:200]}")
        return Finding(False)

    return Check(name, action, run, {"schema": schema}, can_redact=False)


def custom(fn: Callable[[str], Any], *, action: str = "block", name: str | None = None) -> Check:
    """Your own check: ``fn(text)`` returns True (fired), False/None (passed) or a string.

    A string return is the redacted text when it differs from the input (``action="redact"``).
    """
    if not callable(fn):
        raise ConfigError(f"guardrail custom check must be callable, got {fn!r}")
    label = name or getattr(fn, "__name__", "custom")

    def run(text: str) -> Finding:
        result = fn(text)
        if isinstance(result, str):
            return Finding(result != text, "changed", result) if result != text else Finding(False)
        return Finding(bool(result), "")

    return Check(label, action, run, {"fn": label}, can_redact=True)


class Guardrails:
    """Checks on the way in (the last user turn) and on the way out (the answer)."""

    def __init__(self, input: Iterable[Check] = (), output: Iterable[Check] = ()) -> None:  # noqa: A002
        self.input = tuple(input)
        self.output = tuple(output)
        for c in (*self.input, *self.output):
            if not isinstance(c, Check):
                raise ConfigError(f"guardrails take checks such as wb.gateway.pii(), got {c!r}")

    def spec(self) -> dict[str, Any]:
        return {"input": [c.spec() for c in self.input], "output": [c.spec() for c in self.output]}

    @staticmethod
    def apply(checks: Sequence[Check], text: str, stage: str) -> tuple[str, list[dict[str, Any]], Check | None]:
        """(text after redactions, what fired, the first blocking check or None)."""
        fired: list[dict[str, Any]] = []
        for check in checks:
            finding = check.run(text)
            if not finding.fired:
                continue
            fired.append({"stage": stage, "rule": check.name, "action": check.action, "detail": finding.detail})
            if check.action == "block":
                return text, fired, check
            if check.action == "redact" and finding.redacted is not None:
                text = finding.redacted
        return text, fired, None

    def __repr__(self) -> str:
        return f"Guardrails(input={list(self.input)}, output={list(self.output)})"
