"""Small HTML helpers shared by the ``_repr_html_`` methods, the widgets and the report.

What keeps MathJax off our text, as measured in JupyterLab 4.6 (headless
chromium, ``tests/test_browser_jupyterlab.py``):

- An HTML output (``_repr_html_``) is typeset, and ``$0.47 ... $1.36`` becomes
  math, unless an element from the output's root down carries the class
  ``mathjax_ignore``: `root` puts it on the outermost element. ``tex2jax_ignore``
  alone does not stop JupyterLab 4.6 (it stops MathJax 2, as in classic
  front ends, so `root` carries both), and neither does ``&#36;``: the browser
  decodes the entity before MathJax reads the text.
- An ipywidgets ``HTML`` value is not typeset at all; `root` is used there too
  so the same markup reads the same everywhere.
- A ``Label`` value and any widget's ``description`` are typeset. A class on
  the ``Label`` itself stops it (`no_math`); one on a box around it does not,
  and none stops a description: keep ``$`` out of descriptions.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any


NO_MATH = "tex2jax_ignore mathjax_ignore"
"""Classes MathJax skips: JupyterLab typesets HTML outputs, and ``$0.47 ... $1.36`` would become math."""
NO_MATH_CLASSES = tuple(NO_MATH.split())
"""The same classes one by one, as ``Widget.add_class`` takes them."""


def esc(value: Any) -> str:
    """Escape any value for HTML text and attributes.

    ``$`` becomes ``&#36;`` too, which keeps it out of math where a reader of
    the raw HTML typesets (not JupyterLab: there `root`'s class does it).
    """
    return html.escape("" if value is None else str(value), quote=True).replace("$", "&#36;")


def root(inner: str, *, cls: str = "", style: str = "") -> str:
    """The outermost element of every HTML output and widget the package writes.

    It carries the classes MathJax skips; ``inner`` must be escaped already.
    """
    style_attr = f' style="{esc(style)}"' if style else ""
    return f'<div class="wb-out {NO_MATH}{" " + esc(cls) if cls else ""}"{style_attr}>{inner}</div>'


def no_math(widget: Any) -> Any:
    """Keep MathJax off a ``Label``'s value (JupyterLab typesets it); returns the widget."""
    for cls in NO_MATH_CLASSES:
        widget.add_class(cls)
    return widget


_TEXT_CELL = ' style="text-align:left"'
_NUMBER_CELL = ' style="text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap"'
_FIRST_CELL = ' style="text-align:left;white-space:nowrap"'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "wb-table") -> str:
    """A plain table: text left-aligned, numbers right-aligned, the first column (a name or id) never wrapped.

    JupyterLab right-aligns every cell of an output table by default, which
    scatters text; the alignment is set on each cell so it holds there too.
    """
    rows = list(rows)
    numeric = [
        bool(rows) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows if r[i] is not None)
        for i in range(len(headers))
    ]

    def style(i: int) -> str:
        return _FIRST_CELL if i == 0 else _NUMBER_CELL if numeric[i] else _TEXT_CELL

    head = "".join(f"<th{style(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{style(i)}>{esc(c)}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def pre(text: str, max_chars: int | None = None) -> str:
    shown = text if max_chars is None or len(text) <= max_chars else text[:max_chars]
    marker = "" if shown is text else f'<span class="wb-trunc">… [{len(text) - max_chars:,} more characters truncated]</span>'  # type: ignore[operator]
    return f'<pre class="wb-pre">{esc(shown)}{marker}</pre>'
