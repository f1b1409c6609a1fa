"""Trace rows to OpenTelemetry span attributes and back: pure values, no SDK.

Out: a row becomes a span named as the row, with the GenAI semantic
conventions (``gen_ai.*``) where they have a word for a field and
``workbench.*`` attributes for the rest, so a span exported from one file and
ingested into another gives back the same row, field by field.

In: a span from any instrumentation becomes a row. GenAI, OpenInference
(``llm.*``, ``input.value``) and OpenLLMetry (``gen_ai.usage.prompt_tokens``,
``gen_ai.prompt.N.content``) name the same facts differently; the first name
present wins, in the order listed in `_PICK`.

Token semantics differ from ours on one point: all three conventions count
cached tokens inside their input total (``gen_ai.usage.input_tokens``,
``llm.token_count.prompt``, OpenLLMetry's ``prompt_tokens``), while the
``input_tokens`` column follows Anthropic and excludes cache reads and writes.
Out adds them in; in takes them out.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .. import traces
from .._canonical import dumps, loads

LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
"""``gen_ai.operation.name`` values that make a span a model call (kind ``llm``)."""

_WB_TEXT = ("experiment_id", "variant", "item_id", "price_source")
"""Columns carried as ``workbench.<column>`` text attributes, unchanged."""
_WB_NUMBER = ("repeat", "attempts", "latency_ms", "ttft_ms", "cost_usd", "cache_write_1h_tokens")
"""Columns carried as ``workbench.<column>`` numeric attributes."""


# -- ids and times ----------------------------------------------------------------------------


def id_int(text: str, bits: int) -> int:
    """An OTel id (``bits`` wide, never 0) for a workbench id.

    A UUID's hex digits are used as they are (its low 64 bits for a span id),
    so a UUIDv7 trace id crosses OTLP unchanged; any other text is hashed.
    """
    digits = text.replace("-", "")
    if len(digits) == 32 and re.fullmatch(r"[0-9a-fA-F]{32}", digits):
        value = int(digits, 16)
    else:
        value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
    return (value & ((1 << bits) - 1)) or 1


def uuid_text(value: int) -> str:
    """A 128-bit OTel trace id as UUID text, the form of our ids."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def span_row_id(start_ns: int, span_id: int) -> str:
    """A UUIDv7-shaped id for a foreign span: its start time, then its span id bits.

    Deterministic, so a span sent twice (a collector's retry) maps to the same
    row and is stored once; time-first, so ingested rows sort by start like ours.
    The 12 bits after the millisecond hold the fraction of it (UUIDv7's "method 3"),
    so spans started within one millisecond still sort by start.
    """
    ms, rest = divmod(max(start_ns, 0), 1_000_000)
    sub = rest * 4096 // 1_000_000
    h = f"{ms & 0xFFFFFFFFFFFF:012x}7{sub:03x}{(span_id & ((1 << 62) - 1)) | (1 << 63):016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def ns_from_iso(text: str) -> int:
    """Unix nanoseconds of ISO 8601 text (naive means UTC), exactly to the microsecond."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return calendar.timegm(dt.utctimetuple()) * 1_000_000_000 + dt.microsecond * 1_000


def iso_from_ns(ns: int) -> str:
    """`traces.iso_utc` text for Unix nanoseconds, without a float's rounding."""
    sec, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{rest // 1_000:06d}+00:00"


# -- out: row -> attributes -------------------------------------------------------------------


def span_attributes(row: Mapping[str, Any], *, content: bool = True) -> dict[str, Any]:
    """OTel attributes for one trace row (a dict of `traces.COLUMNS`).

    ``content=False`` leaves input, output and error text out (a collector
    that must not see prompts).
    """
    a: dict[str, Any] = {"workbench.id": row["id"], "workbench.kind": row["kind"], "workbench.status": row["status"]}
    if row.get("parent_id"):
        a["workbench.parent_id"] = row["parent_id"]
    if not _is_uuid(row["trace_id"]):
        # Only canonical UUID text comes back unchanged from a 128-bit OTel trace id.
        a["workbench.trace_id"] = row["trace_id"]
    if row.get("simulated"):
        a["workbench.simulated"] = True
    if row["kind"] == "llm":
        a["gen_ai.operation.name"] = "chat"
    for key, col in (
        ("gen_ai.provider.name", "provider"),
        ("gen_ai.request.model", "model"),
        ("gen_ai.response.model", "resolved_model"),
        ("gen_ai.response.id", "request_id"),
        ("error.type", "error_type"),
        ("user.id", "user_id"),
        ("workbench.prompt.name", "prompt_name"),
        ("workbench.prompt.version", "prompt_version"),
    ):
        if row.get(col) is not None:
            a[key] = row[col]
    if row.get("stop_reason") is not None:
        a["gen_ai.response.finish_reasons"] = [row["stop_reason"]]
    uncached, read, write = row.get("input_tokens"), row.get("cache_read_tokens"), row.get("cache_write_tokens")
    if uncached is not None:
        # GenAI's input count includes cached tokens; ours does not.
        a["gen_ai.usage.input_tokens"] = uncached + (read or 0) + (write or 0)
    if row.get("output_tokens") is not None:
        a["gen_ai.usage.output_tokens"] = row["output_tokens"]
    if read is not None:
        a["gen_ai.usage.cache_read.input_tokens"] = read
    if write is not None:
        a["gen_ai.usage.cache_creation.input_tokens"] = write
    for col in (*_WB_TEXT, *_WB_NUMBER):
        if row.get(col) is not None:
            a[f"workbench.{col}"] = row[col]
    if content:
        for col in ("input", "output", "error"):
            if row.get(col) is not None:
                a[f"workbench.{col}"] = row[col]
    tags = loads(row.get("tags_json"), None)
    if tags:
        a["workbench.tags"] = [str(t) for t in tags]
    if row.get("metadata_json"):
        a["workbench.metadata"] = row["metadata_json"]
    return a


def _is_uuid(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text))


def span_times(row: Mapping[str, Any]) -> tuple[int, int]:
    """(start, end) in Unix nanoseconds; a row without a latency ends where it starts."""
    start = ns_from_iso(row["started_at"])
    latency = row.get("latency_ms")
    return start, start + (0 if latency is None else max(0, round(latency * 1_000_000)))


# -- in: span -> row --------------------------------------------------------------------------

_PICK: dict[str, tuple[str, ...]] = {
    "model": ("gen_ai.request.model", "llm.model_name", "llm.request.model", "gen_ai.response.model"),
    "resolved_model": ("gen_ai.response.model", "llm.response.model"),
    "provider": ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"),
    "request_id": ("gen_ai.response.id",),
    "user_id": ("user.id", "enduser.id", "workbench.user_id"),
    "error_type": ("error.type",),
    "prompt_name": ("workbench.prompt.name",),
    "prompt_version": ("workbench.prompt.version", "llm.prompt_template.version"),
    "input_total": (
        "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt", "llm.usage.prompt_tokens",
    ),
    "output_tokens": (
        "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion",
        "llm.usage.completion_tokens",
    ),
    "cache_read_tokens": (
        "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
    ),
    "cache_write_tokens": (
        "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",
    ),
}
"""Per field, the attribute names that carry it, first match wins (GenAI, then OpenInference, then OpenLLMetry)."""

_CONSUMED = frozenset(
    name for names in _PICK.values() for name in names
) | {
    "gen_ai.operation.name", "gen_ai.response.finish_reasons", "gen_ai.input.messages", "gen_ai.output.messages",
    "gen_ai.system_instructions", "openinference.span.kind", "llm.request.type", "input.value", "output.value",
    "input.mime_type", "output.mime_type", "gen_ai.prompt", "gen_ai.completion",
}
_INDEXED_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.", "llm.input_messages.", "llm.output_messages.")
_INDEXED = re.compile(r"^(gen_ai\.prompt|gen_ai\.completion|llm\.input_messages|llm\.output_messages)\.(\d+)\.(.+)$")
MAX_FOREIGN_ATTRIBUTES = 64
"""Attributes of a foreign span that no column takes are kept in metadata, up to this many."""


def _first(attrs: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as an int or float; None when absent or not a number (a foreign span's odd value)."""
    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    return _number(value, int)


def _float(value: Any) -> float | None:
    return _number(value, float)


def _parts_text(parts: Any) -> str:
    """Text of a GenAI message's parts (``[{"type": "text", "content": ...}]``) or of plain content."""
    if isinstance(parts, str):
        return parts
    out = []
    for p in parts or ():
        if isinstance(p, dict):
            text = p.get("content", p.get("text"))
            if isinstance(text, str):
                out.append(text)
        elif isinstance(p, str):
            out.append(p)
    return "".join(out)


def _messages_text(value: Any, *, roles: bool) -> str | None:
    """GenAI ``gen_ai.*.messages`` (JSON text or a list) as one text; ``roles`` prefixes ``[role]`` lines."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if not isinstance(value, list):
        return None
    chunks = []
    for m in value:
        if not isinstance(m, dict):
            continue
        text = _parts_text(m.get("parts", m.get("content")))
        chunks.append(f"[{m.get('role', 'user')}]\n{text}" if roles else text)
    return "\n\n".join(chunks)


def _indexed(attrs: Mapping[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    """OpenLLMetry ``gen_ai.prompt.N.role/content`` and OpenInference ``llm.input_messages.N.message.*``,
    grouped by prefix and index (one pass over the attributes)."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in attrs.items():
        if key.startswith(_INDEXED_PREFIXES):
            m = _INDEXED.match(key)
            if m:
                field = m.group(3).removeprefix("message.")
                found.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[field] = value
    return found


def _indexed_messages(found: Mapping[str, dict[int, dict[str, Any]]], prefix: str, *, roles: bool) -> str | None:
    chunks = []
    for _, msg in sorted(found.get(prefix, {}).items()):
        text = msg.get("content")
        if not isinstance(text, str):
            continue
        chunks.append(f"[{msg.get('role', 'user')}]\n{text}" if roles else text)
    return "\n\n".join(chunks) if chunks else None


def _input_text(attrs: Mapping[str, Any], found: Mapping[str, dict[int, dict[str, Any]]]) -> str | None:
    text = attrs.get("workbench.input")
    if text is not None:
        return text
    messages = attrs.get("gen_ai.input.messages")
    if messages is not None:
        text = _messages_text(messages, roles=True)
        system = attrs.get("gen_ai.system_instructions")
        if system is not None and text is not None:
            text = f"[system]\n{_parts_text(_json_or(system))}\n\n{text}"
        return text
    return (
        _str_or_none(attrs.get("input.value"))
        or _indexed_messages(found, "llm.input_messages", roles=True)
        or _indexed_messages(found, "gen_ai.prompt", roles=True)
        or _str_or_none(attrs.get("gen_ai.prompt"))
    )


def _output_text(attrs: Mapping[str, Any], found: Mapping[str, dict[int, dict[str, Any]]]) -> str | None:
    text = attrs.get("workbench.output")
    if text is not None:
        return text
    messages = attrs.get("gen_ai.output.messages")
    if messages is not None:
        return _messages_text(messages, roles=False)
    return (
        _str_or_none(attrs.get("output.value"))
        or _indexed_messages(found, "llm.output_messages", roles=False)
        or _indexed_messages(found, "gen_ai.completion", roles=False)
        or _str_or_none(attrs.get("gen_ai.completion"))
    )


def _json_or(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else (None if value is None else json.dumps(value))


def is_llm(attrs: Mapping[str, Any]) -> bool:
    """Whether a span's attributes describe a model call."""
    kind = attrs.get("workbench.kind")
    if kind is not None:
        return kind == "llm"
    if attrs.get("gen_ai.operation.name") in LLM_OPERATIONS:
        return True
    if str(attrs.get("openinference.span.kind", "")).upper() == "LLM":
        return True
    if attrs.get("llm.request.type") in ("chat", "completion"):
        return True
    return _first(attrs, _PICK["model"]) is not None


def row_from_span(
    *,
    name: str,
    trace_id: int,
    span_id: int,
    parent_span_id: int | None,
    start_ns: int,
    end_ns: int,
    error: bool,
    status_message: str | None,
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any] | None = None,
    exception: Mapping[str, Any] | None = None,
    parent_row_id: str | None = None,
) -> dict[str, Any]:
    """A trace row (dict of `traces.COLUMNS`) for one span; ``cost_usd`` is left None when the span has none.

    ``parent_row_id`` is the parent's row id when the caller knows it; a span
    exported by workbench names it itself (``workbench.parent_id``).
    ``exception`` is the attributes of the span's ``exception`` event, if any.
    """
    ours = "workbench.id" in attrs
    row_id = attrs.get("workbench.id") or span_row_id(start_ns, span_id)
    llm = is_llm(attrs)
    total = _int(_first(attrs, _PICK["input_total"]))
    read = _int(_first(attrs, _PICK["cache_read_tokens"]))
    write = _int(_first(attrs, _PICK["cache_write_tokens"]))
    uncached = None if total is None else max(0, total - (read or 0) - (write or 0))
    status = attrs.get("workbench.status") or ("error" if error else "ok")
    exception = exception or {}
    finish = attrs.get("gen_ai.response.finish_reasons")
    stop = attrs.get("workbench.stop_reason")
    if stop is None:
        stop = finish[0] if isinstance(finish, (list, tuple)) and finish else (finish if isinstance(finish, str) else None)
    if stop is None:
        stop = attrs.get("gen_ai.completion.0.finish_reason")
    latency = _float(attrs.get("workbench.latency_ms"))
    if latency is None:
        latency = max(0, end_ns - start_ns) / 1_000_000
    error_text = attrs.get("workbench.error")
    if error_text is None and status == "error":
        error_text = status_message or exception.get("exception.message")
    version = _int(_first(attrs, _PICK["prompt_version"]))
    tags = attrs.get("workbench.tags")
    metadata = attrs.get("workbench.metadata")
    found = _indexed(attrs)
    if not ours:
        extra = {
            k: v for k, v in attrs.items()
            if k not in _CONSUMED and not k.startswith(("workbench.", *_INDEXED_PREFIXES))
        }
        otel: dict[str, Any] = {"trace_id": f"{trace_id:032x}", "span_id": f"{span_id:016x}"}
        service = (resource or {}).get("service.name")
        if service is not None:
            otel["service"] = service
        if extra:
            otel["attributes"] = dict(list(extra.items())[:MAX_FOREIGN_ATTRIBUTES])
        meta = loads(metadata, {}) if isinstance(metadata, str) else {}
        meta["otel"] = otel
        metadata = dumps(meta)
    values = dict(
        id=row_id,
        trace_id=attrs.get("workbench.trace_id") or uuid_text(trace_id),
        parent_id=attrs.get("workbench.parent_id") or parent_row_id,
        kind="llm" if llm else (attrs.get("workbench.kind") or "span"),
        name=name or "span",
        started_at=iso_from_ns(start_ns),
        provider=_first(attrs, _PICK["provider"]),
        simulated=int(bool(attrs.get("workbench.simulated"))),
        model=_first(attrs, _PICK["model"]),
        resolved_model=_first(attrs, _PICK["resolved_model"]),
        prompt_name=_first(attrs, _PICK["prompt_name"]),
        prompt_version=version,
        experiment_id=attrs.get("workbench.experiment_id"),
        variant=attrs.get("workbench.variant"),
        item_id=attrs.get("workbench.item_id"),
        repeat=_int(attrs.get("workbench.repeat")),
        user_id=_first(attrs, _PICK["user_id"]),
        input=traces.clip(_input_text(attrs, found)),
        output=traces.clip(_output_text(attrs, found)),
        input_tokens=uncached,
        output_tokens=_int(_first(attrs, _PICK["output_tokens"])),
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=_int(attrs.get("workbench.cache_write_1h_tokens")),
        latency_ms=latency,
        ttft_ms=_float(attrs.get("workbench.ttft_ms")),
        cost_usd=_float(attrs.get("workbench.cost_usd")),
        price_source=attrs.get("workbench.price_source"),
        status=status,
        error_type=_first(attrs, _PICK["error_type"]) or (exception.get("exception.type") if status == "error" else None),
        error=error_text,
        attempts=_int(attrs.get("workbench.attempts")),
        stop_reason=stop,
        request_id=_first(attrs, _PICK["request_id"]),
        tags_json=dumps(list(tags)) if tags else None,
        metadata_json=metadata or None,
    )
    return values
