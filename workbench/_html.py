"""Small HTML helpers shared by the ``_repr_html_`` methods and the report."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any


NO_MATH = "tex2jax_ignore mathjax_ignore"
"""Classes MathJax skips: JupyterLab typesets HTML outputs, and ``$0.47 ... $1.36`` would become math."""


def esc(value: Any) -> str:
    """Escape any value for HTML text and attributes (``$`` too, so it never opens math)."""
    return html.escape("" if value is None else str(value), quote=True).replace("$", "&#36;")


def root(inner: str, *, cls: str = "", style: str = "") -> str:
    """The outermost element of every HTML output and widget the package writes.

    It carries the classes MathJax skips; ``inner`` must be escaped already.
    """
    style_attr = f' style="{esc(style)}"' if style else ""
    return f'<div class="wb-out {NO_MATH}{" " + esc(cls) if cls else ""}"{style_attr}>{inner}</div>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "wb-table") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def pre(text: str, max_chars: int | None = None) -> str:
    shown = text if max_chars is None or len(text) <= max_chars else text[:max_chars]
    marker = "" if shown is text else f'<span class="wb-trunc">… [{len(text) - max_chars:,} more characters truncated]</span>'  # type: ignore[operator]
    return f'<pre class="wb-pre">{esc(shown)}{marker}</pre>'
