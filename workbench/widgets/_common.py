"""Helpers the widgets share: the HTML view base class, word diffs, scroll boxes, messages.

Everything that reaches the page goes through `esc` first: model output,
inputs and references are text, never markup. Numbers go through `_format`.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .. import _format
from .._html import esc, root

__all__ = [
    "HTMLView",
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
    """Dollars for a person (``$0.0000468``); ``unknown`` when the price is not known."""
    return "unknown" if _format.missing(x) else _format.money(x)


def ms(x: Any) -> str:
    return _format.ms(x)


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
            self.show_message(error_html(f"{type(exc).__name__}: {exc}"))
            return None

    return wrapper




# -- the HTML view: Python renders, a small ES module draws and reports clicks and keys -------

STATIC = Path(__file__).with_name("_static")
"""The front end shipped inside the package (works offline; anywidget loads it over the widget comm)."""


def arg(value: Any) -> str:
    """A value for ``data-wb-arg`` (JSON, escaped for an attribute)."""
    return esc(json.dumps(value, separators=(",", ":")))


def attrs(action: str, value: Any = None) -> str:
    """``data-wb-action`` and ``data-wb-arg`` attributes for a clickable element."""
    return f'data-wb-action="{esc(action)}"' + ("" if value is None else f' data-wb-arg="{arg(value)}"')


def button(label: str, action: str, value: Any = None, *, title: str = "", on: bool = False,
           disabled: bool = False, cls: str = "") -> str:
    """A button the front end reports as a click on ``action`` (label and title are escaped)."""
    classes = " ".join(x for x in ("wb-btn", "wb-on" if on else "", cls) if x)
    extra = (f' title="{esc(title)}"' if title else "") + (" disabled" if disabled else "")
    return f'<button type="button" class="{classes}" {attrs(action, value)}{extra}>{esc(label)}</button>'


def select(name: str, options: list[tuple[str, str]], value: str, *, title: str = "") -> str:
    """A ``<select>`` whose changes reach `HTMLView.on_change` as ``name``."""
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if v == value else ""}>{esc(label)}</option>' for label, v in options
    )
    tip = f' title="{esc(title)}"' if title else ""
    return f'<select class="wb-select" data-wb-input="{esc(name)}"{tip}>{opts}</select>'


class HTMLView(anywidget.AnyWidget):
    """A widget drawn from HTML that Python renders; the browser only reports what the person does.

    ``shell`` is the outer HTML with ``<div data-wb-slot="NAME">`` holes (its
    outermost element from `_html.root`), ``parts`` the HTML of each hole: the
    front end redraws only the parts that changed, keeping focus, typed text
    and scroll positions. ``hotkeys`` lists the single keys the widget handles
    while it has focus (and no text box does).

    The browser sends messages that land in `on_click`, `on_input`,
    `on_enter`, `on_change` and `on_key`; tests send the same messages with
    `send_front` (the path a real click takes), or call the public methods.
    """

    _esm = (STATIC / "view.js").read_text(encoding="utf-8")
    _css = (STATIC / "view.css").read_text(encoding="utf-8")
    shell = traitlets.Unicode("").tag(sync=True)
    parts = traitlets.Dict().tag(sync=True)
    hotkeys = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.last_error: Exception | None = None
        self._pending: dict[str, str] | None = None
        self.on_msg(self._on_front)

    # -- drawing ---------------------------------------------------------------------------

    def set_parts(self, **html: str) -> None:
        """Replace some parts' HTML; one message to the browser for all of them."""
        parts = dict(self.parts)
        parts.update(html)
        self.parts = parts

    def part(self, name: str) -> str:
        """The HTML of one part as the browser has it."""
        return self.parts.get(name, "")

    def show_message(self, html: str) -> None:
        self.set_parts(message=html)

    @property
    def text(self) -> str:
        """Every part's HTML joined: what tests search for visible text."""
        return "".join(self.parts.values())

    # -- what the browser sends ------------------------------------------------------------

    def send_front(self, message: dict[str, Any]) -> None:
        """Handle ``message`` exactly as if the browser had sent it (``{"type": "click", ...}``)."""
        self._handle_custom_msg(message, [])

    def _on_front(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        self._dispatch(content)

    @guarded
    def _dispatch(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        if kind == "click":
            raw = content.get("arg")
            self.on_click(str(content.get("action")), None if raw is None else json.loads(raw))
        elif kind == "input":
            self.on_input(str(content.get("name")), content.get("value"))
        elif kind == "enter":
            self.on_enter(str(content.get("name")), content.get("value"))
        elif kind == "change":
            self.on_change(str(content.get("name")), content.get("value"))
        elif kind == "key":
            self.on_key(str(content.get("key")))

    def on_click(self, action: str, value: Any) -> None:
        """A click on an element with ``data-wb-action``."""

    def on_input(self, name: str, value: Any) -> None:
        """Text typed into the box ``name`` (every keystroke; no redraw needed)."""

    def on_enter(self, name: str, value: Any) -> None:
        """Enter pressed in the box ``name``."""

    def on_change(self, name: str, value: Any) -> None:
        """A select or checkbox ``name`` changed."""

    def on_key(self, key: str) -> None:
        """A single key from `hotkeys`, pressed with focus in the widget."""

    def shell_html(self, inner: str, cls: str) -> str:
        """The outer element (through `_html.root`, so MathJax leaves it alone)."""
        return root(inner, cls=cls)
