"""The traces explorer: ``wb.widgets.traces(bench)``.

One-line rows (time, prompt@version or span name, model, status, latency,
cost, tokens, user), newest first; a click opens the trace beside the table
(above it when the notebook is narrow): its fields, input and output, and
its spans as a waterfall of nested bars with durations. Filters by
experiment, variant, item, model, status, kind, prompt, user and time; a
switch shows judges' calls (hidden by default), and a judge's call links to
the call it judged and to the experiment item. Enter in the search box runs
a full-text search; matches are highlighted in the rows and in the detail.

It stays quick on a file of a million traces: every count and page is one
query through `workbench.traces` (a covering index for counts, a walk back
by rowid for pages, the full-text index for searches); nothing loads the
table. Health counts (written, pending, spilled, failed) show in the header
when the workbench offers ``bench.health()``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from .. import _format, traces
from .._html import esc
from ._common import HTMLView, attrs, button, error_html, select

__all__ = ["TracesWidget", "parse_prompt", "parse_time"]

STATUSES = ("ok", "error", "cached", "guardrail_triggered")
KINDS = ("llm", "span")
MAX_TREE_SPANS = 500
"""Spans drawn in the waterfall; a bigger trace is cut with a note."""
DETAIL_CHARS = 20_000
"""Characters of input or output shown in the detail view."""
TEXT_FILTERS = ("prompt", "user", "since", "until", "search")
"""Boxes whose typed text applies on Enter (or Apply); selects apply at once."""
ROW_KEYS = {"ArrowDown": 1, "j": 1, "ArrowUp": -1, "k": -1}
PAGE_KEYS = {"n": 1, "ArrowRight": 1, "p": -1, "ArrowLeft": -1}

_PROMPT_REF = re.compile(r"^(?P<name>.+?)(?:\s*@\s*v?(?P<version>\d+))?$")
_HIT = re.compile("\x02(.*?)\x03", re.S)


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


def _when(started_at: str | None) -> str:
    # Stored as 2025-01-31T12:00:00.123456+00:00; a row shows month, day and seconds (UTC).
    return "" if not started_at else started_at[5:19].replace("T", " ")


def _label(r: dict[str, Any]) -> str:
    """A row's name: prompt@version for a prompt's call, else the span's name."""
    if r.get("prompt_name"):
        return f"{r['prompt_name']}@v{r['prompt_version']}" if r.get("prompt_version") is not None else r["prompt_name"]
    return r.get("name") or ""


def _tokens(r: dict[str, Any]) -> str:
    i, o = r.get("input_tokens"), r.get("output_tokens")
    if i is None and o is None:
        return ""
    return f"{_format.count(i)} → {_format.count(o)}"


def _is_judge(r: dict[str, Any]) -> bool:
    return "judge" in (r.get("tags") or [])


def highlight(text: str, words: str) -> str:
    """``text`` escaped, with every occurrence of each searched word marked (case-insensitive)."""
    terms = sorted({w.strip('"*').lower() for w in words.split() if w.strip('"*')}, key=len, reverse=True)
    if not terms:
        return esc(text)
    pattern = re.compile("|".join(re.escape(t) for t in terms), re.I)
    out, last = [], 0
    for m in pattern.finditer(text):
        out.append(esc(text[last:m.start()]))
        out.append(f'<mark class="wb-hit">{esc(m.group(0))}</mark>')
        last = m.end()
    out.append(esc(text[last:]))
    return "".join(out)


def _snippet_html(snippet: str) -> str:
    """An FTS5 snippet (matches between \\x02 and \\x03) as escaped HTML with the matches marked."""
    out, last = [], 0
    for m in _HIT.finditer(snippet):
        out.append(esc(snippet[last:m.start()]))
        out.append(f'<mark class="wb-hit">{esc(m.group(1))}</mark>')
        last = m.end()
    out.append(esc(snippet[last:].replace("\x02", "").replace("\x03", "")))
    return "".join(out)


class TracesWidget(HTMLView):
    """Filter, search, page through and open traces.

    Args:
        bench: the workbench.
        page_size: rows per page.

    Drive it as a person would, from Python: ``w.set_filter("status", "error")``
    (a select), ``w.type("search", "refund")`` then ``w.enter("search")`` (Enter
    in the box), ``w.open_trace(trace_id)`` or ``w.open_row(0)`` (a row click),
    ``w.next_page()``, ``w.show_judges(True)``; or send what the browser
    sends with ``w.send_front({...})``. ``rows`` is the current page,
    ``total`` the number of matching traces (``exact`` is False when a search
    stopped counting), ``selected`` the open trace.
    """

    def __init__(self, bench: Any, page_size: int = 50) -> None:
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
        super().__init__()
        self.bench = bench
        self.store = bench.store
        self.page_size = page_size
        self.values: dict[str, Any] = {
            "experiment": "", "variant": "", "item": "", "model": "", "status": "", "kind": "",
            "prompt": "", "user": "", "since": "", "until": "", "search": "", "judges": False,
        }
        """Every filter as the person set it (typed boxes apply on Enter)."""
        self.browse = traces.Browse()
        self.total = 0
        self.exact = True
        self.rows: list[dict[str, Any]] = []
        self.page = 0
        self.selected: dict[str, Any] | None = None
        self._experiments: list[tuple[str, str]] = []
        self._variants: list[str] = []
        self._models: list[str] = []
        self.hotkeys = [*ROW_KEYS, *PAGE_KEYS]
        self.shell = self.shell_html(
            '<div data-wb-slot="head"></div><div data-wb-slot="filters"></div><div data-wb-slot="message"></div>'
            '<div class="wb-traces-main"><div class="wb-detail" data-wb-slot="detail" data-wb-scroll="detail"></div>'
            '<div class="wb-list" data-wb-slot="list"></div></div>',
            cls="wb-traces",
        )
        if not getattr(self.store, "readonly", False):
            # The writer catches the search index up in its quiet moments: starting it now means a
            # big file written by another process is (mostly) indexed by the time a search is typed.
            self.store.writer  # noqa: B018 - the property starts the writer thread
        self.refresh_options()
        self.apply()

    # -- the filters -----------------------------------------------------------------------

    def refresh_options(self) -> None:
        """Read the experiments, models and variants offered in the selects again."""
        self.bench.store.sync()
        self._experiments = traces.experiment_names(self.store)
        models = set(traces.distinct(self.store, "model"))
        try:
            models.update(p.model for p in self.bench.prompts.list())
        except Exception:  # noqa: BLE001 - the picker is a convenience; traces still list
            pass
        if self.values["model"]:
            models.add(self.values["model"])
        self._models = sorted(models)
        exp = self.values["experiment"]
        self._variants = traces.experiment_variants(self.store, exp) if exp else []

    def _query(self) -> traces.Browse:
        """The filters as a query; a bad time or prompt raises ValueError naming the box."""
        v = self.values
        name, version = parse_prompt(v["prompt"])
        query = traces.TraceQuery(
            since=parse_time(v["since"], "since"),
            until=parse_time(v["until"], "until"),
            model=v["model"] or None,
            prompt_name=name,
            prompt_version=version,
            experiment_id=v["experiment"] or None,
            variant=v["variant"] or None,
            status=v["status"] or None,
            user_id=v["user"].strip() or None,
            kind=v["kind"] or None,
        )
        return traces.Browse(query, item_id=v["item"] or None, judges=bool(v["judges"]), text=v["search"].strip())

    def apply(self) -> None:
        """Apply the filters as set (typed boxes included): count, then show the first page."""
        try:
            browse = self._query()
        except ValueError as exc:
            self.show_message(error_html(exc))
            return
        self.show_message("")
        self.browse = browse
        self.bench.store.sync()
        self.total, self.exact = traces.browse_count(self.store, browse)
        self._load(page=0)
        self._draw()

    def set_filter(self, name: str, value: Any) -> None:
        """Set one filter and apply (a select or the judges switch; typed boxes too)."""
        if name not in self.values:
            raise KeyError(f"no filter {name!r}; filters: {', '.join(self.values)}")
        self.values[name] = bool(value) if name == "judges" else ("" if value is None else str(value))
        if name == "experiment":
            self.values["variant"] = self.values["item"] = ""
            self._variants = traces.experiment_variants(self.store, self.values["experiment"]) if value else []
        self.apply()

    def type(self, name: str, text: str) -> None:
        """Type into a box (no search yet: that waits for Enter)."""
        if name not in TEXT_FILTERS:
            raise KeyError(f"no text box {name!r}; boxes: {', '.join(TEXT_FILTERS)}")
        self.values[name] = text

    def enter(self, name: str = "search") -> None:
        """Enter in a box: apply every filter, the typed ones included."""
        self.apply()

    def search(self, text: str) -> None:
        """Type ``text`` into the search box and press Enter."""
        self.type("search", text)
        self.enter("search")

    def show_judges(self, show: bool = True) -> None:
        """Show or hide judges' calls (the switch)."""
        self.set_filter("judges", show)

    def clear(self) -> None:
        """Every filter back to its default."""
        for key in self.values:
            self.values[key] = False if key == "judges" else ""
        self._variants = []
        self.apply()

    # -- pages and rows --------------------------------------------------------------------

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    def _load(self, page: int, before: int | None = None, after: int | None = None) -> None:
        offset = 0 if before is not None or after is not None else page * self.page_size
        rows = traces.browse_page(self.store, self.browse, limit=self.page_size, before=before, after=after,
                                  offset=offset, total=self.total if self.exact else None)
        if rows or page == 0:
            self.rows = rows
            self.page = page

    def next_page(self) -> None:
        """Older traces: the next page (by the last row's rowid, so deep pages stay quick)."""
        if self.rows and len(self.rows) == self.page_size:
            self._load(self.page + 1, before=self.rows[-1]["rowid"])
            self._draw("list")

    def prev_page(self) -> None:
        """Newer traces: the previous page."""
        if self.page > 0 and self.rows:
            self._load(self.page - 1, after=self.rows[0]["rowid"])
            if self.page == 0:
                self._load(0)  # the first page is always the newest rows, also after new writes
            self._draw("list")

    def first_page(self) -> None:
        self._load(0)
        self._draw("list")

    def go(self, page: int) -> None:
        """Page ``page`` (0-based, clamped): walks the rows before it, so prefer next/previous."""
        self._load(min(max(0, page), self.pages - 1))
        self._draw("list")

    def open_trace(self, trace_id: str) -> None:
        """Open the trace with this id beside the table (it need not be on the page)."""
        trace = traces.get_trace(self.store, trace_id)
        if trace is None:
            raise KeyError(f"no trace {trace_id!r} in {self.store.path}")
        self.selected = trace
        self._draw("list", "detail")

    def open_row(self, index: int) -> None:
        """Open row ``index`` of the current page (a click on it)."""
        if not 0 <= index < len(self.rows):
            raise IndexError(f"row {index} is not on this page (0..{len(self.rows) - 1})")
        self.open_trace(self.rows[index]["id"])

    def open_item(self, experiment_id: str, item_id: str) -> None:
        """Show every call of one experiment item: its variants, repeats and judges."""
        self.values.update(experiment=experiment_id, variant="", item=item_id, judges=True)
        self._variants = traces.experiment_variants(self.store, experiment_id)
        self.apply()

    def move(self, step: int) -> None:
        """Open the row ``step`` rows below (or above) the open one."""
        if not self.rows:
            return
        ids = [r["id"] for r in self.rows]
        here = ids.index(self.selected["id"]) if self.selected and self.selected["id"] in ids else (-1 if step > 0 else len(ids))
        self.open_row(min(max(0, here + step), len(ids) - 1))

    # -- what the browser sends ------------------------------------------------------------

    def on_click(self, action: str, value: Any) -> None:
        if action == "row":
            self.open_trace(value)
        elif action == "page":
            {"next": self.next_page, "prev": self.prev_page, "first": self.first_page}[value]()
        elif action == "apply":
            self.apply()
        elif action == "clear":
            self.clear()
        elif action == "item":
            self.open_item(value["experiment"], value["item"])
        elif action == "close":
            self.selected = None
            self._draw("list", "detail")

    def on_input(self, name: str, value: Any) -> None:
        if name in TEXT_FILTERS:
            self.values[name] = str(value or "")

    def on_enter(self, name: str, value: Any) -> None:
        self.on_input(name, value)
        self.enter(name)

    def on_change(self, name: str, value: Any) -> None:
        self.set_filter(name, value)

    def on_key(self, key: str) -> None:
        if key in ROW_KEYS:
            self.move(ROW_KEYS[key])
        elif key in PAGE_KEYS:
            self.next_page() if PAGE_KEYS[key] > 0 else self.prev_page()

    # -- rendering -------------------------------------------------------------------------

    def _draw(self, *names: str) -> None:
        render = {"head": self._head, "filters": self._filters, "list": self._list, "detail": self._detail}
        self.set_parts(**{n: f() for n, f in render.items() if not names or n in names})

    def _head(self) -> str:
        matching = f" matching {self.browse.text!r}" if self.browse.searching else ""
        n = _format.count(self.total) + ("" if self.exact else "+")
        judges = "" if self.browse.judges else " · judges' calls hidden"
        return (
            f'<div class="wb-bar"><b>Traces</b><span><b>{esc(n)}</b> {esc("trace" if self.total == 1 else "traces")}'
            f'{esc(matching)}{esc(judges)}</span><span class="wb-grow"></span>{self._health()}</div>'
        )

    def _health(self) -> str:
        health = getattr(self.bench, "health", None)
        if not callable(health):
            return ""
        try:
            h = health()
        except Exception as exc:  # noqa: BLE001 - the header must draw even if the writer is unwell
            return f'<span class="wb-error">health unknown: {esc(exc)}</span>'
        parts = []
        for key in ("written", "pending", "spilled", "failed"):
            value = getattr(h, key, None)
            if value is None:
                continue
            bad = key in ("spilled", "failed") and value
            parts.append(f'<span class="{"wb-error" if bad else "wb-muted"}">{esc(key)} <b>{esc(_format.count(value))}</b></span>')
        return f'<span class="wb-health" title="rows handed to this process\'s writer">{"".join(parts)}</span>'

    def _filters(self) -> str:
        v = self.values
        any_ = [("any", "")]
        exp_options = any_ + self._experiments
        if v["experiment"] and v["experiment"] not in {i for _, i in self._experiments}:
            exp_options.append((v["experiment"], v["experiment"]))
        variant_options = any_ + [(x, x) for x in self._variants]
        model_options = any_ + [(m, m) for m in self._models]
        status_options = any_ + [(s, s) for s in STATUSES]
        kind_options = any_ + [(k, k) for k in KINDS]

        def box(name: str, placeholder: str, width: str = "10em") -> str:
            return (f'<input type="text" class="wb-text" style="min-width:{width};width:{width}" data-wb-input="{name}" '
                    f'value="{esc(v[name])}" placeholder="{esc(placeholder)}" title="{esc(placeholder)}; Enter applies">')

        def field(label: str, control: str) -> str:
            return f'<label class="wb-small">{esc(label)} {control}</label>'

        item = ""
        if v["item"]:
            item = (f'<span class="wb-chip wb-on">item {esc(v["item"])}</span>')
        checked = " checked" if v["judges"] else ""
        return (
            f'<div class="wb-bar">{box("search", "words in input or output", "18em")}'
            f'{button("Search", "apply", title="Run the search (or press Enter in the box)", cls="wb-primary")}'
            f'{field("experiment", select("experiment", exp_options, v["experiment"]))}'
            f'{field("variant", select("variant", variant_options, v["variant"]))}{item}'
            f'<label class="wb-small" title="Judges\' calls score an experiment\'s outputs; hidden by default">'
            f'<input type="checkbox" data-wb-input="judges"{checked}> judge calls</label></div>'
            f'<div class="wb-bar">{field("model", select("model", model_options, v["model"]))}'
            f'{field("status", select("status", status_options, v["status"]))}'
            f'{field("kind", select("kind", kind_options, v["kind"]))}'
            f'{box("prompt", "prompt@v2", "8em")}{box("user", "user id", "7em")}'
            f'{box("since", "since 2025-01-31", "9em")}{box("until", "until (UTC)", "9em")}'
            f'{button("Apply", "apply", title="Apply the typed filters (Enter in any box does too)")}'
            f'{button("Clear", "clear", title="Every filter back to its default")}</div>'
        )

    def _list(self) -> str:
        if not self.rows:
            return '<div class="wb-muted"><i>no traces match</i></div>'
        searching = self.browse.searching
        widths = [("time (UTC)", "9.5em"), ("name", "20%"), ("model", "16%"), ("status", "5em"),
                  ("latency", "6em"), ("cost", "6.5em"), ("tokens", "7.5em"), ("user", "10%")]
        if searching:
            widths.append(("match", "30%"))
        cols = "".join(f'<col style="width:{w}">' for _, w in widths)
        head = "".join(f"<th>{esc(h)}</th>" for h, _ in widths)
        open_id = self.selected["id"] if self.selected else None
        body = []
        for r in self.rows:
            tag = '<span class="wb-tag">judge</span>' if _is_judge(r) else ""
            label = _label(r)
            status = r["status"]
            cells = [
                f'<td title="{esc(r["started_at"])}">{esc(_when(r["started_at"]))}</td>',
                f'<td title="{esc(label)} · {esc(r["kind"])} · {esc(r["id"])}">{esc(label)}{tag}</td>',
                f'<td title="{esc(r.get("model") or "")}">{esc(r.get("model") or "")}</td>',
                f'<td class="wb-status-{esc(status)}" title="{esc(r.get("error_type") or status)}">{esc(status)}</td>',
                f'<td class="wb-num">{esc(_format.ms(r.get("latency_ms")) if r.get("latency_ms") is not None else "")}</td>',
                f'<td class="wb-num">{esc(_format.money(r["cost_usd"]) if r.get("cost_usd") is not None else "")}</td>',
                f'<td class="wb-num">{esc(_tokens(r))}</td>',
                f'<td title="{esc(r.get("user_id") or "")}">{esc(r.get("user_id") or "")}</td>',
            ]
            if searching:
                cells.append(f'<td>{_snippet_html(r.get("snippet") or "")}</td>')
            sel = r["id"] == open_id
            body.append(f'<tr class="{"wb-sel" if sel else ""}" {attrs("row", r["id"])}'
                        f'{" data-wb-reveal=" + chr(34) + esc(r["id"]) + chr(34) if sel else ""}>{"".join(cells)}</tr>')
        first = self.page * self.page_size + 1
        last = first + len(self.rows) - 1
        of = _format.count(self.total) + ("" if self.exact else "+")
        older = len(self.rows) == self.page_size and (last < self.total or not self.exact)
        pager = (
            f'<div class="wb-bar">{button("« Newest", "page", "first", disabled=self.page == 0, title="The newest traces")}'
            f'{button("◀ Newer", "page", "prev", disabled=self.page == 0, title="Newer traces (p)")}'
            f'<span>{esc(_format.count(first))}–{esc(_format.count(last))} of {esc(of)}</span>'
            f'{button("Older ▶", "page", "next", disabled=not older, title="Older traces (n)")}'
            '<span class="wb-muted wb-keyhint">click a row to open it · ↑/↓ move · n/p page</span></div>'
        )
        return (f'{pager}<div class="wb-rows" data-wb-scroll="rows"><table class="wb-rows-table"><colgroup>{cols}</colgroup>'
                f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')

    # -- the open trace --------------------------------------------------------------------

    def _detail(self) -> str:
        r = self.selected
        if r is None:
            return ""
        words = self.browse.text
        title = _label(r)
        fields = [
            ("id", r["id"]), ("time (UTC)", r["started_at"]), ("kind", r["kind"]), ("status", r["status"]),
            ("model", r.get("model")), ("resolved model", r.get("resolved_model")), ("provider", r.get("provider")),
            ("prompt", f"{r['prompt_name']}@v{r['prompt_version']}" if r.get("prompt_name") else None),
            ("latency", _format.ms(r["latency_ms"]) if r.get("latency_ms") is not None else None),
            ("time to first token", _format.ms(r["ttft_ms"]) if r.get("ttft_ms") is not None else None),
            ("cost", _format.money(r["cost_usd"]) if r.get("cost_usd") is not None else
             ("unknown (no price)" if r["kind"] == "llm" else None)),
            ("tokens in → out", _tokens(r) or None),
            ("cache read / write", f"{_format.count(r.get('cache_read_tokens') or 0)} / {_format.count(r.get('cache_write_tokens') or 0)}"
             if r.get("cache_read_tokens") or r.get("cache_write_tokens") else None),
            ("attempts", r.get("attempts") if (r.get("attempts") or 1) > 1 else None),
            ("stop reason", r.get("stop_reason")), ("request id", r.get("request_id")),
            ("user", r.get("user_id")), ("variant", r.get("variant")),
            ("repeat", r["repeat"] + 1 if r.get("repeat") is not None else None),
            ("tags", ", ".join(r.get("tags") or []) or None),
        ]
        grid = "".join(f"<div>{esc(k)}</div><div>{esc(v)}</div>" for k, v in fields if v not in (None, ""))
        links = self._links(r)

        def text_block(label: str, text: str | None) -> str:
            if not text:
                return ""
            shown = text[:DETAIL_CHARS]
            more = f'<div class="wb-muted">… {_format.count(len(text) - DETAIL_CHARS)} more characters</div>' if len(text) > DETAIL_CHARS else ""
            body = highlight(shown, words) if words else esc(shown)
            return f'<div class="wb-label">{esc(label)}</div><div class="wb-box" style="max-height:220px">{body}</div>{more}'

        error = f"{r.get('error_type') or ''}: {r['error']}" if r.get("error") else None
        meta = r.get("metadata") or {}
        meta_text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False, default=str) if meta else None
        return (
            f'<div class="wb-bar"><b>{esc(title)}</b><span class="wb-muted">{esc(r["kind"])}</span>'
            f'<span class="wb-grow"></span>{button("Close", "close", title="Close the detail")}</div>'
            f'{links}<div class="wb-fields">{grid}</div>'
            f'{text_block("input", r.get("input"))}{text_block("output", r.get("output"))}'
            f'{error_html(error) if error else ""}{text_block("metadata", meta_text)}'
            f'<div class="wb-label">spans of this trace</div>{self._waterfall(r)}'
        )

    def _links(self, r: dict[str, Any]) -> str:
        """Where a judge's call, an experiment call or a child span leads."""
        out = []
        meta = r.get("metadata") or {}
        if _is_judge(r) and meta.get("judged_trace"):
            out.append(f'judged call: <button type="button" class="wb-link" {attrs("row", meta["judged_trace"])}>'
                       f'{esc(meta.get("judged_variant") or "")} {esc(meta["judged_trace"][-8:])}</button>')
        elif r.get("experiment_id"):
            for j in traces.judges_of(self.store, r):
                out.append(f'judged by: <button type="button" class="wb-link" {attrs("row", j["id"])}>'
                           f'{esc(j.get("prompt_name") or j["name"])}</button>')
        if r.get("experiment_id") and r.get("item_id"):
            name = dict((i, n) for n, i in self._experiments).get(r["experiment_id"], r["experiment_id"])
            where = {"experiment": r["experiment_id"], "item": r["item_id"]}
            out.append(f'experiment item: <button type="button" class="wb-link" {attrs("item", where)} '
                       f'title="List every call of this item: variants, repeats, judges">{esc(name)} · {esc(r["item_id"])}</button>')
        if r.get("parent_id"):
            out.append(f'parent: <button type="button" class="wb-link" {attrs("row", r["parent_id"])}>{esc(r["parent_id"][-8:])}</button>')
        return f'<div class="wb-bar wb-small">{" · ".join(out)}</div>' if out else ""

    def _waterfall(self, selected: dict[str, Any]) -> str:
        """The trace's spans as nested bars: where each starts and how long it took, to scale."""
        spans = traces.span_tree(self.store, selected["trace_id"])
        if not spans:
            return "<i>no spans</i>"
        ids = {s["id"] for s in spans}
        children: dict[str | None, list[dict[str, Any]]] = {}
        for s in spans:
            children.setdefault(s["parent_id"] if s["parent_id"] in ids else None, []).append(s)
        starts = {s["id"]: _epoch_ms(s["started_at"]) for s in spans}
        t0 = min(starts.values())
        t1 = max(starts[s["id"]] + (s.get("latency_ms") or 0) for s in spans)
        total = max(t1 - t0, 1e-9)
        lines: list[str] = []
        stack = [(s, 0) for s in reversed(children.get(None, []))]
        while stack and len(lines) < MAX_TREE_SPANS:
            span, depth = stack.pop()
            left = (starts[span["id"]] - t0) / total * 100
            width = (span.get("latency_ms") or 0) / total * 100
            kind = " wb-llm" if span["kind"] == "llm" else ""
            bad = " wb-bad" if span["status"] == "error" else ""
            sel = " wb-sel" if span["id"] == selected["id"] else ""
            name = _label(span)
            tip = f"{name} · {span['kind']} · {span['status']} · starts at +{_format.ms(starts[span['id']] - t0)}"
            lines.append(
                f'<div class="wb-wf-row{sel}" {attrs("row", span["id"])} title="{esc(tip)}">'
                f'<div class="wb-wf-name" style="padding-left:{depth * 1.2:g}em">{esc(name)}</div>'
                f'<div class="wb-wf-track"><div class="wb-wf-bar{kind}{bad}" style="left:{left:.2f}%;width:{width:.2f}%"></div></div>'
                f'<div class="wb-wf-ms">{esc(_format.ms(span.get("latency_ms")))}</div></div>'
            )
            stack.extend((c, depth + 1) for c in reversed(children.get(span["id"], [])))
        if len(spans) > len(lines):
            lines.append(f'<div class="wb-muted">… {_format.count(len(spans) - len(lines))} more spans not shown</div>')
        return f'<div class="wb-wf wb-span-tree">{"".join(lines)}</div>'

    def __repr__(self) -> str:
        return f"<TracesWidget {self.total:,} traces, page {self.page + 1}>"


def _epoch_ms(started_at: str) -> float:
    return datetime.fromisoformat(started_at).timestamp() * 1000
