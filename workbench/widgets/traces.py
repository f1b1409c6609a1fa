"""A filterable, paged table of traces with a detail view: ``wb.widgets.traces(bench)``.

Every page is one ``LIMIT/OFFSET`` query through `workbench.traces` plus one
``COUNT(*)``, so the widget stays quick on a file of a million traces; free
text goes through the FTS5 index (`traces.search`). All model text is escaped.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

import ipywidgets as w

from .. import _html, traces

STATUSES = ("ok", "error", "cached", "guardrail")
KINDS = ("llm", "span")
PREVIEW_CHARS = 60
"""Characters of input and output shown in a table row."""
MAX_TREE_SPANS = 500
"""Spans listed in the detail view's tree; a bigger trace is cut with a note."""

_PRE_STYLE = (
    "max-height:320px;overflow:auto;white-space:pre-wrap;word-break:break-word;"
    "background:#f6f8fa;border:1px solid #ddd;padding:6px;margin:2px 0 8px 0;font-size:12px"
)
_STATUS_COLOR = {"ok": "#15803d", "error": "#b91c1c", "cached": "#1d4ed8", "guardrail": "#b45309"}
_PROMPT_REF = re.compile(r"^(?P<name>.+?)(?:\s*@\s*v?(?P<version>\d+))?$")


def parse_time(text: str, name: str) -> str | None:
    """A since/until box as the UTC ISO text ``started_at`` is stored in (naive means UTC)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)  # 2025-01-31, 2025-01-31 12:00, ...T12:00:00Z
    except ValueError:
        raise ValueError(f"{name} {text!r} is not an ISO time; type e.g. 2025-01-31 or 2025-01-31T12:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def parse_prompt(text: str) -> tuple[str | None, int | None]:
    """``support``, ``support@v2`` or ``support@2`` as (name, version)."""
    text = text.strip()
    if not text:
        return None, None
    m = _PROMPT_REF.match(text)
    assert m is not None  # the pattern matches any non-empty text
    version = m.group("version")
    return m.group("name").strip(), None if version is None else int(version)


def _preview(text: Any, n: int = PREVIEW_CHARS) -> str:
    if text is None:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def _time(started_at: str | None) -> str:
    # Stored as 2025-01-31T12:00:00.123456+00:00; the table shows seconds, UTC.
    return "" if not started_at else started_at[:19].replace("T", " ")


def _money(x: float | None) -> str:
    return "—" if x is None else f"${x:.6f}"


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f} ms"


def _tokens(r: dict[str, Any]) -> str:
    i, o = r.get("input_tokens"), r.get("output_tokens")
    if i is None and o is None:
        return "—"
    return f"{'?' if i is None else f'{i:,}'} / {'?' if o is None else f'{o:,}'}"


def _pre(text: Any) -> str:
    return f'<pre style="{_PRE_STYLE}">{_html.esc(text)}</pre>'


class TracesWidget(w.VBox):
    """Filter, page through and open traces.

    Set filters (``model``, ``prompt``, ``status``, ``kind``, ``user``,
    ``since``, ``until``, free-text ``search``), then ``apply_button.click()``;
    ``prev_button`` / ``next_button`` move a page; pick a row in ``select`` and
    ``show_button.click()`` for the detail view. ``rows`` holds the current
    page's trace dicts and ``total`` the number of matching traces.
    """

    def __init__(self, bench: Any, page_size: int = 50) -> None:
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
        self.bench = bench
        self.store = bench.store
        self.page_size = page_size
        self.page = 0
        self.total = 0
        self.rows: list[dict[str, Any]] = []
        self.query = traces.TraceQuery()
        self.text = ""

        self.model = w.Dropdown(description="model", options=[("any", "")], value="")
        self.prompt = w.Combobox(description="prompt", placeholder="name or name@v2", ensure_option=False)
        self.status = w.Dropdown(description="status", options=[("any", ""), *((x, x) for x in STATUSES)], value="")
        self.kind = w.Dropdown(description="kind", options=[("any", ""), *((x, x) for x in KINDS)], value="")
        self.user = w.Text(description="user id")
        self.since = w.Text(description="since", placeholder="2025-01-31T00:00Z (UTC)")
        self.until = w.Text(description="until", placeholder="before this time")
        self.search = w.Text(description="search", placeholder="words in input or output")
        self.apply_button = w.Button(description="Apply", button_style="primary", icon="filter")
        self.message = w.HTML()
        self.prev_button = w.Button(description="Prev", icon="arrow-left")
        self.next_button = w.Button(description="Next", icon="arrow-right")
        self.page_label = w.Label()
        self.total_label = w.HTML()
        self.table_html = w.HTML()
        self.select = w.Dropdown(description="trace", options=[], layout=w.Layout(width="60%"))
        self.show_button = w.Button(description="Show", icon="search")
        self.detail_html = w.HTML()

        self.apply_button.on_click(lambda _: self.apply())
        self.prev_button.on_click(lambda _: self.go(self.page - 1))
        self.next_button.on_click(lambda _: self.go(self.page + 1))
        self.show_button.on_click(lambda _: self.show())

        filters = w.VBox([
            w.HBox([self.model, self.prompt, self.status]),
            w.HBox([self.kind, self.user, self.search]),
            w.HBox([self.since, self.until, self.apply_button]),
        ])
        pager = w.HBox([self.prev_button, self.page_label, self.next_button, self.total_label])
        super().__init__([filters, self.message, pager, self.table_html,
                          w.HBox([self.select, self.show_button]), self.detail_html])
        self.refresh_options()
        self.apply()

    # -- actions -----------------------------------------------------------------------------

    def refresh_options(self) -> None:
        """Fill the model and prompt pickers from the store (keeps current choices)."""
        self.bench.flush()
        models = set(traces.distinct(self.store, "model"))
        prompts = set(traces.distinct(self.store, "prompt_name"))
        try:
            for p in self.bench.prompts.list():
                models.add(p.model)
                prompts.add(p.name)
        except Exception:  # noqa: BLE001 - the pickers are a convenience; traces still list
            pass
        current = self.model.value
        if current:
            models.add(current)
        self.model.options = [("any", ""), *((m, m) for m in sorted(models))]
        self.model.value = current
        self.prompt.options = sorted(prompts)

    def apply(self) -> None:
        """Read the filter controls and show the first page."""
        try:
            name, version = parse_prompt(self.prompt.value)
            query = traces.TraceQuery(
                since=parse_time(self.since.value, "since"),
                until=parse_time(self.until.value, "until"),
                model=self.model.value or None,
                prompt_name=name,
                prompt_version=version,
                status=self.status.value or None,
                user_id=self.user.value.strip() or None,
                kind=self.kind.value or None,
            )
        except ValueError as exc:
            self.message.value = f'<span style="color:#b91c1c">{_html.esc(exc)}</span>'
            return
        self.message.value = ""
        self.query = query
        self.text = self.search.value.strip()
        self.bench.flush()
        if self.text:
            self.total = traces.search_count(self.store, self.text, self.query)
        else:
            self.total = traces.count(self.store, self.query)
        self.detail_html.value = ""
        self.go(0)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    def go(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped) of the applied filters."""
        self.page = min(max(0, page), self.pages - 1)
        offset = self.page * self.page_size
        if self.text:
            self.rows = traces.search(self.store, self.text, self.query, limit=self.page_size, offset=offset)
        else:
            self.rows = traces.list_traces(self.store, self.query, limit=self.page_size, offset=offset)
        self.page_label.value = f"page {self.page + 1} / {self.pages}"
        self.total_label.value = f"<b>{self.total:,}</b> traces" + (
            f" matching <code>{_html.esc(self.text)}</code>" if self.text else ""
        )
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.pages - 1
        self.table_html.value = self._table()
        self.select.options = [
            (f"{i}: {r['name']} · {r.get('model') or r['kind']} · {_time(r['started_at'])}", i)
            for i, r in enumerate(self.rows)
        ]
        self.select.value = 0 if self.rows else None

    def show(self, index: int | None = None) -> None:
        """Open row ``index`` of the current page (default: the one in ``select``)."""
        index = self.select.value if index is None else index
        if index is None or not 0 <= index < len(self.rows):
            self.detail_html.value = "<i>no trace selected</i>"
            return
        self.detail_html.value = self._detail(self.rows[index])

    # -- rendering ---------------------------------------------------------------------------

    def _table(self) -> str:
        if not self.rows:
            return "<i>no traces match</i>"
        head = ("#", "id", "time (UTC)", "kind", "name", "model", "status", "tokens in / out",
                "latency", "cost", "input", "output")
        cells = "".join(f'<th style="text-align:left;padding:2px 6px">{_html.esc(h)}</th>' for h in head)
        body = []
        for i, r in enumerate(self.rows):
            color = _STATUS_COLOR.get(r["status"], "inherit")
            values = [
                _html.esc(i),
                f'<span title="{_html.esc(r["id"])}">…{_html.esc(r["id"][-8:])}</span>',
                _html.esc(_time(r["started_at"])),
                _html.esc(r["kind"]),
                _html.esc(_preview(r["name"], 40)),
                _html.esc(r.get("model") or ""),
                f'<span style="color:{color}">{_html.esc(r["status"])}</span>',
                _html.esc(_tokens(r)),
                _html.esc(_ms(r.get("latency_ms"))),
                _html.esc(_money(r.get("cost_usd"))),
                _html.esc(_preview(r.get("input"))),
                _html.esc(_preview(r.get("output") if r["status"] != "error" else r.get("error"))),
            ]
            body.append("<tr>" + "".join(f'<td style="padding:2px 6px;vertical-align:top">{v}</td>' for v in values) + "</tr>")
        return (
            '<table class="wb-table wb-traces" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )

    def _detail(self, r: dict[str, Any]) -> str:
        skip = {"input", "output", "error", "metadata", "tags"}
        fields = [(k, r.get(k)) for k in traces.COLUMNS if k not in skip and k in r]
        parts = [
            f"<h4 style='margin:6px 0'>{_html.esc(r['name'])} <small>{_html.esc(r['id'])}</small></h4>",
            _html.table(["field", "value"], [(k, "" if v is None else v) for k, v in fields]),
            "<b>input</b>", _pre(r.get("input") or ""),
            "<b>output</b>", _pre(r.get("output") or ""),
        ]
        if r.get("error"):
            parts += ["<b>error</b>", _pre(f"{r.get('error_type') or ''}: {r['error']}")]
        parts += ["<b>metadata</b>", _pre(json.dumps(r.get("metadata") or {}, indent=2, sort_keys=True, ensure_ascii=False, default=str))]
        if r.get("tags"):
            parts.append("<b>tags</b> " + ", ".join(f"<code>{_html.esc(t)}</code>" for t in r["tags"]))
        parts += ["<div><b>spans of this trace</b></div>", self._tree(r)]
        return '<div class="wb-trace-detail">' + "".join(parts) + "</div>"

    def _tree(self, selected: dict[str, Any]) -> str:
        spans = traces.span_tree(self.store, selected["trace_id"])
        if not spans:
            return "<i>no spans</i>"
        ids = {s["id"] for s in spans}
        children: dict[str | None, list[dict[str, Any]]] = {}
        for s in spans:
            parent = s["parent_id"] if s["parent_id"] in ids else None
            children.setdefault(parent, []).append(s)
        lines: list[str] = []
        stack = [(s, 0) for s in reversed(children.get(None, []))]
        while stack and len(lines) < MAX_TREE_SPANS:
            span, depth = stack.pop()
            detail = " · ".join(
                x for x in (
                    span["kind"],
                    span.get("model") or "",
                    span["status"],
                    _ms(span.get("latency_ms")),
                    "" if span.get("cost_usd") is None else _money(span["cost_usd"]),
                ) if x
            )
            label = f"{_html.esc(span['name'])} <small style='color:#666'>{_html.esc(detail)}</small>"
            if span["id"] == selected["id"]:
                label = f"<b>▶ {label}</b>"
            lines.append(f'<div style="padding-left:{depth * 1.5}em">{label}</div>')
            stack.extend((c, depth + 1) for c in reversed(children.get(span["id"], [])))
        if len(spans) > len(lines):
            lines.append(f"<i>… {len(spans) - len(lines):,} more spans not shown</i>")
        return '<div class="wb-span-tree" style="font-size:12px">' + "".join(lines) + "</div>"
