"""Small HTML helpers shared by the ``_repr_html_`` methods and the report."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any


def esc(value: Any) -> str:
    """Escape any value for HTML text and attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "wb-table") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def pre(text: str, max_chars: int | None = None) -> str:
    shown = text if max_chars is None or len(text) <= max_chars else text[:max_chars]
    marker = "" if shown is text else f'<span class="wb-trunc">… [{len(text) - max_chars:,} more characters truncated]</span>'  # type: ignore[operator]
    return f'<pre class="wb-pre">{esc(shown)}{marker}</pre>'
