"""Helpers the widgets share: escaping, word diffs, scroll boxes, inline messages.

Everything that reaches an ``HTML`` widget goes through `esc` first: model
output, inputs and references are text, never markup.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Callable
from typing import Any

from .._html import esc

__all__ = [
    "MAX_DIFF_WORDS",
    "error_html",
    "guarded",
    "info_html",
    "money",
    "ms",
    "scroll_box",
    "truncate_note",
    "word_diff",
]

MAX_DIFF_WORDS = 20_000
"""Longer outputs are shown without word highlighting: difflib is quadratic at worst."""

SCROLL_STYLE = (
    "white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,monospace;font-size:12px;line-height:1.4;"
    "border:1px solid #ddd;border-radius:4px;padding:6px;overflow:auto;max-height:{height}"
)
DEL_STYLE = "background:#ffd7d5;text-decoration:none"
INS_STYLE = "background:#ccffd8;text-decoration:none"

_WORD = re.compile(r"\S+\s*")


def _tokens(text: str) -> tuple[str, list[str]]:
    """(leading whitespace, words each with its trailing whitespace)."""
    lead = text[: len(text) - len(text.lstrip())]
    return lead, _WORD.findall(text, len(lead))


def _render(lead: str, tokens: list[str], marked: list[bool], tag: str, style: str, limit: int | None) -> tuple[str, int]:
    """HTML of tokens with marked runs wrapped in ``tag``; stops after ``limit`` characters.

    Returns the HTML and how many characters were left out.
    """
    out = [esc(lead)]
    shown = len(lead)
    total = len(lead) + sum(len(t) for t in tokens)
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and marked[j] == marked[i]:
            j += 1
        run = "".join(tokens[i:j])
        if limit is not None and shown + len(run) > limit:
            run = run[: max(0, limit - shown)]
            j = len(tokens)
        shown += len(run)
        if marked[i] and run.strip():
            body = run.rstrip()
            out.append(f'<{tag} class="wb-diff" style="{style}">{esc(body)}</{tag}>{esc(run[len(body):])}')
        else:
            out.append(esc(run))
        i = j
    return "".join(out), total - shown


def word_diff(a: str | None, b: str | None, *, limit: int | None = None) -> tuple[str, str, int, int]:
    """Escaped HTML of two texts with the words that differ marked.

    Words only in ``a`` are wrapped in ``<del class="wb-diff">``, words only in
    ``b`` in ``<ins class="wb-diff">``; whitespace differences are ignored.
    With ``limit``, each side stops after that many characters.

    Returns:
        ``(html_a, html_b, hidden_a, hidden_b)``: the hidden counts are the
        characters cut by ``limit``.
    """
    a, b = a or "", b or ""
    lead_a, ta = _tokens(a)
    lead_b, tb = _tokens(b)
    mark_a, mark_b = [False] * len(ta), [False] * len(tb)
    if len(ta) + len(tb) <= MAX_DIFF_WORDS:
        matcher = difflib.SequenceMatcher(None, [t.strip() for t in ta], [t.strip() for t in tb], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op != "equal":
                mark_a[i1:i2] = [True] * (i2 - i1)
                mark_b[j1:j2] = [True] * (j2 - j1)
    html_a, hidden_a = _render(lead_a, ta, mark_a, "del", DEL_STYLE, limit)
    html_b, hidden_b = _render(lead_b, tb, mark_b, "ins", INS_STYLE, limit)
    return html_a, html_b, hidden_a, hidden_b


def scroll_box(inner_html: str, height: str = "320px") -> str:
    """A bordered, scrolling block of preformatted text (``inner_html`` must be escaped already)."""
    return f'<div class="wb-scroll" style="{SCROLL_STYLE.format(height=height)}">{inner_html}</div>'


def truncate_note(hidden: int) -> str:
    return f'<div class="wb-trunc" style="color:#6b7280;font-size:11px">… {hidden:,} more characters (use “Show full”)</div>' if hidden else ""


def error_html(message: Any) -> str:
    return f'<div class="wb-error" style="color:#b91c1c;white-space:pre-wrap">{esc(message)}</div>'


def info_html(message: Any) -> str:
    return f'<div class="wb-info" style="color:#166534;white-space:pre-wrap">{esc(message)}</div>'


def money(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "unknown"
    return f"${x:,.6f}"


def ms(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.0f} ms"


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a widget callback so that no exception escapes: it is shown in ``self.message``.

    ipywidgets would only log an exception raised in a callback; here the user
    sees it where they clicked, and ``self.last_error`` keeps it for tests.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            self.last_error = None
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - shown inline instead of lost in a log
            self.last_error = exc
            self.message.value = error_html(f"{type(exc).__name__}: {exc}")
            return None

    return wrapper


