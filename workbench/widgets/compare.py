"""Compare variants' outputs: a grid of every item and repeat, a side-by-side view, ratings.

``wb.widgets.compare(exp, "A", "B")`` shows an overview grid (items down,
variants x repeats across, each cell coloured by its score, like a matrix
view) beside the side-by-side view of one item: inputs and reference, then
A's and B's outputs with the differing words marked, every repeat one click
(or key) away, each scorer's value with the judge's rationale beside it,
cost, latency and tokens. A click on a cell opens that item and repeat.

With focus anywhere in the widget, single keys rate and move: ``a`` / ``b``
(that variant is better), ``t`` (tie), ``x`` (both bad), ``n`` / ``p`` or
the arrows (next / previous item), ``1``-``9`` (repeat). A rating is a
``feedback`` row through ``bench.feedback.prefer`` and joins
``exp.compare()`` as a win rate. The widget opens on the first item where
the variants differ.

Frames (``exp.traces_df``, ``exp.scores_df``) are read once, when the
widget is built; after a rating only the feedback is read again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _format
from .._html import esc
from ..errors import ConfigError
from ._common import HTMLView, arg, button, error_html, info_html, money, scroll_box, select, truncate_note, word_diff

if TYPE_CHECKING:
    from ..experiments import Experiment

__all__ = ["CompareWidget", "FILTERS", "KEYS"]

FILTERS = ("all", "disagreements", "regressions", "unrated")
"""Values of ``CompareWidget.filter``."""

ORDERS = ("dataset", "regressions")
"""Values of ``CompareWidget.order``: dataset order, or the biggest drop from A to B first."""

MAX_CHARS = 2_000
"""Characters of each output shown until "Show full" is pressed."""

RATE_KEYS = {"a": "a", "b": "b", "t": "tie", "x": "both_bad"}
MOVE_KEYS = {"n": 1, "ArrowDown": 1, "ArrowRight": 1, "j": 1, "p": -1, "ArrowUp": -1, "ArrowLeft": -1, "k": -1}
KEYS = (*RATE_KEYS, *MOVE_KEYS, *"123456789")
"""Every single key the widget answers while it has focus."""


@dataclass
class _Call:
    """One cell of the grid: a variant's answer to one item in one repeat."""

    trace_id: str | None
    status: str
    output: str | None = None
    error: str | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    attempts: int = 1
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)


def _heat(value: float | None, lo: float, hi: float) -> str:
    """Background of a score cell: red (worst) through amber to green (best)."""
    if value is None or _format.missing(value):
        return ""
    share = 1.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    return f"background:hsl({round(share * 120)},62%,{78 - round(abs(share - 0.5) * 8)}%)"


class CompareWidget(HTMLView):
    """Every item, variant and repeat of an experiment as a grid, and a side-by-side view to rate.

    Args:
        exp: a run experiment.
        a, b: the variants compared side by side; ratings are "B better than A" and so on.
        scorer: the scorer that colours the grid and defines disagreements and
            regressions (default: the experiment's first).
        rater: who is rating (default ``$WORKBENCH_RATER``, else the login name).
        max_chars: characters of each output shown before "Show full".

    Everything a person does can be done from Python: ``w.select("item-3", "B", 2)``
    (a grid cell), ``w.press("b")`` (a key), ``w.rate("tie")``, ``w.next()``,
    ``w.filter = "regressions"``, ``w.comment = "..."``; or send what the
    browser sends with ``w.send_front({"type": "key", "key": "a"})``.
    """

    def __init__(
        self,
        exp: Experiment,
        a: str = "A",
        b: str = "B",
        scorer: str | None = None,
        rater: str | None = None,
        *,
        max_chars: int = MAX_CHARS,
    ) -> None:
        from ..feedback import Feedback, default_rater

        if a == b:
            raise ConfigError(f"compare two different variants, got {a!r} twice")
        for v in (a, b):
            if v not in exp.variants:
                raise ConfigError(f"no variant {v!r} in experiment {exp.name!r} (variants: {', '.join(exp.variants)})")
        names = [s.name for s in exp.scorers]
        if scorer is not None and scorer not in names:
            raise ConfigError(f"no scorer {scorer!r} in experiment {exp.name!r} (scorers: {', '.join(names) or 'none'})")
        super().__init__()
        self.exp = exp
        self.a, self.b = a, b
        self.scorer = scorer or (names[0] if names else None)
        self.rater = default_rater(rater)
        self.max_chars = max_chars
        self._feedback = getattr(exp.bench, "feedback", None) or Feedback(exp.bench.store)
        # The grid shows the compared pair first, then any other variant.
        self.variants = [a, b, *(v for v in exp.variants if v not in (a, b))]
        self.repeats = max(1, int(exp.repeats))

        self._load()
        self._ratings: dict[str, dict[str, Any]] = {}
        self._load_ratings()
        self._filter = "all"
        self._order = "dataset"
        self._visible: list[int] = list(range(len(self._items)))
        self._pos = 0
        self.repeat = 0
        """The repeat shown side by side (0-based)."""
        self.focus_variant = a
        """The variant of the last grid cell clicked (outlined in the view)."""
        self.full = False
        self._comment = ""

        self.hotkeys = list(KEYS)
        self.shell = self.shell_html(
            '<div data-wb-slot="head"></div>'
            '<div class="wb-split"><div class="wb-left" data-wb-slot="grid"></div>'
            '<div class="wb-right"><div data-wb-slot="detail"></div><div data-wb-slot="rate"></div>'
            '<div data-wb-slot="message"></div></div></div>'
            '<div data-wb-slot="summary"></div>',
            cls="wb-compare",
        )
        start = self._first_difference()
        self._pos = self._visible.index(start) if start in self._visible else 0
        self._draw()

    # -- data ------------------------------------------------------------------------------

    def _load(self) -> None:
        import polars as pl

        exp = self.exp
        self._items = list(exp.dataset.items)
        self._index = {item.item_id: i for i, item in enumerate(self._items)}
        t = exp.traces_df().filter(pl.col("variant").is_in(self.variants)).select(
            "id", "variant", "item_id", "repeat", "status", "output", "error", "cost_usd", "latency_ms",
            "input_tokens", "output_tokens", "attempts",
        ).sort("id")
        self._calls: dict[tuple[str, str, int], _Call] = {}
        for r in t.iter_rows(named=True):
            key = (r["item_id"], r["variant"], int(r["repeat"] or 0))
            kept = self._calls.get(key)
            if kept is not None and kept.status == "ok":
                continue  # the first successful call of a cell is the one scored and compared
            self._calls[key] = _Call(
                r["id"], r["status"], r["output"], r["error"], r["cost_usd"], r["latency_ms"],
                r["input_tokens"], r["output_tokens"], r["attempts"] or 1,
            )
        by_trace = {c.trace_id: c for c in self._calls.values()}
        s = exp.scores_df()
        self._ranges: dict[str, tuple[float, float]] = {}
        for r in s.iter_rows(named=True):
            call = by_trace.get(r["trace_id"])
            if call is not None:
                call.scores[r["scorer"]] = r
        for name in (sc.name for sc in exp.scorers):
            values = s.filter((pl.col("scorer") == name) & pl.col("value").is_not_null())["value"]
            lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
            # Scores in [0, 1] keep that scale, so 0.5 looks the same in every experiment.
            self._ranges[name] = (0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, hi)

    def _load_ratings(self) -> None:
        frame = self._feedback.preferences(self.exp.id, a=self.a, b=self.b, rater=self.rater)
        self._ratings = {r["item_id"]: r for r in frame.iter_rows(named=True)}

    def _score(self, item_id: str, variant: str, repeat: int, scorer: str | None = None) -> float | None:
        call = self._calls.get((item_id, variant, repeat))
        s = None if call is None else call.scores.get(scorer or self.scorer or "")
        return None if s is None or _format.missing(s["value"]) else float(s["value"])

    def _mean(self, item_id: str, variant: str, scorer: str | None = None) -> float | None:
        values = [v for r in range(self.repeats) if (v := self._score(item_id, variant, r, scorer)) is not None]
        return sum(values) / len(values) if values else None

    def _delta(self, item_id: str) -> float | None:
        sa, sb = self._mean(item_id, self.a), self._mean(item_id, self.b)
        return None if sa is None or sb is None else sb - sa

    def _differs(self, item_id: str) -> bool:
        """Whether A and B differ on this item: any scorer's mean, else the text of any repeat."""
        for sc in self.exp.scorers:
            sa, sb = self._mean(item_id, self.a, sc.name), self._mean(item_id, self.b, sc.name)
            if sa is not None and sb is not None and not math.isclose(sa, sb, abs_tol=1e-12):
                return True
        return False

    def _first_difference(self) -> int:
        """Dataset position of the first item where the variants differ (scores first, then text)."""
        for i, item in enumerate(self._items):
            if self._differs(item.item_id):
                return i
        for i, item in enumerate(self._items):
            for r in range(self.repeats):
                ca, cb = self._calls.get((item.item_id, self.a, r)), self._calls.get((item.item_id, self.b, r))
                if ca is not None and cb is not None and (ca.output or "").split() != (cb.output or "").split():
                    return i
        return 0

    def _matches(self, i: int, mode: str) -> bool:
        item_id = self._items[i].item_id
        if mode == "all":
            return True
        if mode == "unrated":
            return item_id not in self._ratings
        d = self._delta(item_id)
        if d is None:
            return False
        return abs(d) > 1e-12 if mode == "disagreements" else d < -1e-12

    def _refilter(self, keep: int | None = None, after: int | None = None) -> None:
        """Recompute the visible rows; stay on dataset row ``keep``, or land on the first one after ``after``."""
        rows = [i for i in range(len(self._items)) if self._matches(i, self._filter)]
        if self._order == "regressions":
            rows.sort(key=lambda i: (d if (d := self._delta(self._items[i].item_id)) is not None else math.inf, i))
        self._visible = rows
        if keep is not None and keep in rows:
            self._pos = rows.index(keep)
        elif after is not None and rows:
            later = [k for k, i in enumerate(rows) if i > after]
            self._pos = later[0] if later else len(rows) - 1
        else:
            self._pos = 0

    # -- the state a person sees -----------------------------------------------------------

    @property
    def item_ids(self) -> list[str]:
        """Item ids the current filter goes through, in order."""
        return [self._items[i].item_id for i in self._visible]

    @property
    def index(self) -> int:
        """Position of the current item in the filtered list (0-based)."""
        return self._pos

    @index.setter
    def index(self, value: int) -> None:
        self.go(value)

    @property
    def current_item_id(self) -> str | None:
        """The item shown, or None when the filter leaves no items."""
        return self._items[self._visible[self._pos]].item_id if self._visible else None

    @property
    def position(self) -> str:
        """``3 / 60``: where the shown item is in the filtered list."""
        return f"{self._pos + 1} / {len(self._visible)}" if self._visible else "0 / 0"

    @property
    def filter(self) -> str:
        return self._filter

    @filter.setter
    def filter(self, mode: str) -> None:
        if mode not in FILTERS:
            raise ConfigError(f"unknown filter {mode!r}; use one of {', '.join(FILTERS)}")
        current = self._visible[self._pos] if self._visible else None
        self._filter = mode
        self._refilter(keep=current)
        self._draw()

    @property
    def order(self) -> str:
        return self._order

    @order.setter
    def order(self, mode: str) -> None:
        if mode not in ORDERS:
            raise ConfigError(f"unknown order {mode!r}; use one of {', '.join(ORDERS)}")
        current = self._visible[self._pos] if self._visible else None
        self._order = mode
        self._refilter(keep=current)
        self._draw()

    @property
    def comment(self) -> str:
        """The comment box: saved with the next rating."""
        return self._comment

    @comment.setter
    def comment(self, text: str) -> None:
        self._comment = text or ""
        self._draw("rate")

    # -- actions ---------------------------------------------------------------------------

    def go(self, index: int) -> None:
        """Show the item at ``index`` of the filtered list."""
        if not self._visible:
            return
        if not 0 <= index < len(self._visible):
            raise ConfigError(f"item position {index} is out of range 0..{len(self._visible) - 1}")
        self._pos = index
        self._comment = self._saved_comment()
        self.full = False
        self.show_message("")
        self._draw()

    def next(self) -> None:
        if self._pos + 1 < len(self._visible):
            self.go(self._pos + 1)

    def prev(self) -> None:
        if self._pos > 0:
            self.go(self._pos - 1)

    def select(self, item_id: str, variant: str | None = None, repeat: int | None = None) -> None:
        """Open ``item_id`` (a click on its grid row, or on the cell of ``variant`` and ``repeat``, 1-based)."""
        if item_id not in self._index:
            raise ConfigError(f"no item {item_id!r} in experiment {self.exp.name!r}")
        row = self._index[item_id]
        if row not in self._visible:
            self._filter = "all"  # a cell click never lands on nothing: show every item again
            self._refilter(keep=row)
        if variant is not None:
            if variant not in self.variants:
                raise ConfigError(f"no variant {variant!r} in experiment {self.exp.name!r}")
            self.focus_variant = variant
        if repeat is not None:
            self.show_repeat(repeat)
        self.go(self._visible.index(row))

    def show_repeat(self, repeat: int) -> None:
        """Show repeat ``repeat`` (1-based) side by side."""
        if not 1 <= int(repeat) <= self.repeats:
            raise ConfigError(f"repeat {repeat} is out of range 1..{self.repeats}")
        self.repeat = int(repeat) - 1
        self._draw("grid", "detail")

    def press(self, key: str) -> None:
        """A single key, as typed with focus in the widget: rate, move or pick a repeat."""
        if key in RATE_KEYS:
            self.rate(RATE_KEYS[key])
        elif key in MOVE_KEYS:
            self.next() if MOVE_KEYS[key] > 0 else self.prev()
        elif key.isdigit() and 1 <= int(key) <= self.repeats:
            self.show_repeat(int(key))

    def rate(self, choice: str) -> None:
        """Save ``choice`` (``a``, ``b``, ``tie``, ``both_bad``) and the comment for the current item, then move on."""
        item_id = self.current_item_id
        if item_id is None:
            raise ConfigError("no item to rate: the filter leaves none")
        self._feedback.prefer(self.exp.id, item_id, self.a, self.b, choice, rater=self.rater, comment=self._comment)
        self._load_ratings()
        saved = info_html(f"Saved “{self._choice_label(choice)}” for {item_id}.")
        if self._filter == "unrated":
            self._refilter(after=self._visible[self._pos])
        elif self._pos + 1 < len(self._visible):
            self._pos += 1
        self._comment = self._saved_comment()
        self.full = False
        self._draw()
        self.show_message(saved)

    def toggle_full(self) -> None:
        """Show the whole of long outputs, or cut them again."""
        self.full = not self.full
        self._draw("detail")

    # -- what the browser sends ------------------------------------------------------------

    def on_click(self, action: str, value: Any) -> None:
        if action == "cell":
            self.select(value["item"], value.get("variant"), value.get("repeat"))
        elif action == "item":
            self.select(value)
        elif action == "repeat":
            self.show_repeat(value)
        elif action == "rate":
            self.rate(value)
        elif action == "move":
            self.next() if value > 0 else self.prev()
        elif action == "full":
            self.toggle_full()

    def on_input(self, name: str, value: Any) -> None:
        if name == "comment":
            self._comment = str(value or "")  # no redraw: the person is typing

    def on_change(self, name: str, value: Any) -> None:
        if name == "filter":
            self.filter = str(value)
        elif name == "order":
            self.order = str(value)
        elif name == "scorer":
            names = [s.name for s in self.exp.scorers]
            if value not in names:
                raise ConfigError(f"no scorer {value!r} (scorers: {', '.join(names)})")
            current = self._visible[self._pos] if self._visible else None
            self.scorer = str(value)
            self._refilter(keep=current)
            self._draw()

    def on_key(self, key: str) -> None:
        self.press(key)

    # -- rendering -------------------------------------------------------------------------

    def _saved_comment(self) -> str:
        item_id = self.current_item_id
        return "" if item_id is None else (self._ratings.get(item_id, {}).get("comment") or "")

    def _choice_label(self, choice: str) -> str:
        return {"a": f"{self.a} better", "b": f"{self.b} better", "tie": "Tie", "both_bad": "Both bad"}[choice]

    def _draw(self, *names: str) -> None:
        render = {"head": self._head, "grid": self._grid, "detail": self._detail, "rate": self._rate,
                  "summary": self._summary}
        self.set_parts(**{n: f() for n, f in render.items() if not names or n in names})

    def _head(self) -> str:
        exp, a, b = self.exp, self.a, self.b
        filters = [("All items", "all")]
        if self.scorer:
            filters += [(f"Disagreements ({self.scorer} differs)", "disagreements"),
                        (f"Regressions ({b} worse than {a})", "regressions")]
        filters.append(("Unrated by me", "unrated"))
        orders = [("Dataset order", "dataset")] + ([(f"Biggest drop {a}→{b} first", "regressions")] if self.scorer else [])
        scorers = [(s.name, s.name) for s in exp.scorers]
        controls = [select("filter", filters, self._filter, title="Which items to go through"),
                    select("order", orders, self._order, title="Order of the grid")]
        if len(scorers) > 1:
            controls.insert(0, select("scorer", scorers, self.scorer or "", title="The scorer that colours the grid"))
        others = [v for v in self.variants if v not in (a, b)]
        note = f" · also in the grid: {', '.join(others)}" if others else ""
        return (
            f'<div class="wb-bar"><b>{esc(exp.name)}</b>'
            f'<span>{esc(b)} <span class="wb-muted">({esc(exp.variants[b].label())})</span> vs '
            f'{esc(a)} <span class="wb-muted">({esc(exp.variants[a].label())})</span>{esc(note)}</span>'
            f'<span class="wb-grow"></span><span class="wb-muted">rater {esc(self.rater)}</span></div>'
            f'<div class="wb-bar">{"".join(controls)}{self._legend()}</div>'
        )

    def _legend(self) -> str:
        if not self.scorer:
            return '<span class="wb-muted">no scorer: cells show whether a call succeeded</span>'
        lo, hi = self._ranges.get(self.scorer, (0.0, 1.0))
        stops = "".join(f'<span class="wb-swatch" style="{_heat(lo + (hi - lo) * k / 4, lo, hi)}"></span>' for k in range(5))
        return (f'<span class="wb-legend">{esc(self.scorer)}: {esc(_format.num(lo, 2))} {stops} '
                f'{esc(_format.num(hi, 2))} · <span class="wb-swatch" style="background:#7f1d1d"></span> error '
                f'· <span class="wb-swatch" style="background:#e5e7eb"></span> not scored</span>')

    def _grid(self) -> str:
        current = self._visible[self._pos] if self._visible else None
        rep = self.repeats
        head = ['<th title="dataset item">item</th>']
        for v in self.variants:
            head.append(f'<th colspan="{rep}" title="{esc(self.exp.variants[v].label())}">{esc(v)}</th>')
        head.append('<th title="your rating">you</th>')
        sub = ""
        if rep > 1:
            sub = "<tr><th></th>" + "".join(
                f'<th class="wb-muted">{k + 1}</th>' for _ in self.variants for k in range(rep)) + "<th></th></tr>"
        short = {"a": self.a, "b": self.b, "tie": "tie", "both_bad": "bad"}
        body = []
        for i in self._visible:
            item_id = self._items[i].item_id
            sel = i == current
            cells = [f'<td class="wb-item" data-wb-action="item" data-wb-arg="{arg(item_id)}" '
                     f'title="{esc(item_id)}"{" data-wb-reveal=" + chr(34) + esc(item_id) + chr(34) if sel else ""}>'
                     f'{esc(item_id)}</td>']
            for v in self.variants:
                for r in range(rep):
                    cells.append(self._cell(item_id, v, r, sel and r == self.repeat and v == self.focus_variant))
            rating = self._ratings.get(item_id)
            cells.append(f'<td class="wb-rated">{esc(short.get(rating["choice"], "")) if rating else ""}</td>')
            body.append(f'<tr class="{"wb-sel" if sel else ""}">{"".join(cells)}</tr>')
        if not body:
            empty = "All items are rated." if self._filter == "unrated" else "No items match this filter."
            return f'<div class="wb-muted"><i>{esc(empty)}</i></div>'
        n_items = len(self._items)
        shown = f"{len(self._visible)} of {n_items} items" if len(self._visible) != n_items else f"{n_items} items"
        return (
            f'<div class="wb-muted">{esc(shown)} × {len(self.variants)} variants'
            f'{esc(f" × {rep} repeats") if rep > 1 else ""}; click a cell to open it</div>'
            f'<div class="wb-gridwrap" data-wb-scroll="grid"><table class="wb-grid">'
            f'<thead><tr>{"".join(head)}</tr>{sub}</thead><tbody>{"".join(body)}</tbody></table></div>'
        )

    def _cell(self, item_id: str, variant: str, repeat: int, current: bool) -> str:
        call = self._calls.get((item_id, variant, repeat))
        where = {"item": item_id, "variant": variant, "repeat": repeat + 1}
        title = f"{item_id} · {variant} · repeat {repeat + 1}"
        cls = "wb-cell" + (" wb-cur" if current else "")
        if call is None:
            return (f'<td class="{cls} wb-none" data-wb-action="cell" data-wb-arg="{arg(where)}" '
                    f'title="{esc(title)}: no call yet">·</td>')
        if call.status != "ok":
            return (f'<td class="{cls} wb-err" data-wb-action="cell" data-wb-arg="{arg(where)}" '
                    f'title="{esc(title)}: {esc(call.status)}">err</td>')
        value = self._score(item_id, variant, repeat)
        if self.scorer is None:
            return (f'<td class="{cls}" style="background:#bbf7d0" data-wb-action="cell" '
                    f'data-wb-arg="{arg(where)}" title="{esc(title)}: ok">ok</td>')
        if value is None:
            return (f'<td class="{cls} wb-none" data-wb-action="cell" data-wb-arg="{arg(where)}" '
                    f'title="{esc(title)}: not scored">–</td>')
        lo, hi = self._ranges.get(self.scorer, (0.0, 1.0))
        text = _format.num(value, 2)
        return (f'<td class="{cls}" style="{_heat(value, lo, hi)}" data-wb-action="cell" data-wb-arg="{arg(where)}" '
                f'title="{esc(title)}: {esc(self.scorer)} {esc(text)}">{esc(text)}</td>')

    def _detail(self) -> str:
        if not self._visible:
            return ""
        item = self._items[self._visible[self._pos]]
        n = len(self._visible)
        nav = (
            f'<div class="wb-bar">{button("◀ Previous", "move", -1, title="Previous item (p or ↑)", disabled=self._pos == 0)}'
            f'<span>{esc(self.position)}</span>'
            f'{button("Next ▶", "move", 1, title="Next item (n or ↓)", disabled=self._pos >= n - 1)}'
            f'<b>Item {esc(item.item_id)}</b>'
            + (f'<span class="wb-muted">cluster {esc(item.cluster)}</span>' if item.cluster else "")
            + "</div>"
        )
        expected = item.expected
        inputs_text = "\n".join(f"{k}: {v}" for k, v in item.inputs.items())
        inputs = (
            f'<div class="wb-label">Inputs</div>{scroll_box(esc(inputs_text), "140px")}'
            f'<div class="wb-label">Reference</div>'
            f'{scroll_box(esc(expected) if expected is not None else "<i>none</i>", "90px")}'
        )
        shown = [self.a, self.b] + ([self.focus_variant] if self.focus_variant not in (self.a, self.b) else [])
        ca = self._calls.get((item.item_id, self.a, self.repeat))
        cb = self._calls.get((item.item_id, self.b, self.repeat))
        limit = None if self.full else self.max_chars
        html_a, html_b, hidden_a, hidden_b = word_diff(
            ca.output if ca and ca.status == "ok" else None, cb.output if cb and cb.status == "ok" else None, limit=limit
        )
        bodies = {self.a: (html_a, hidden_a), self.b: (html_b, hidden_b)}
        sides = [self._side(item.item_id, v, bodies.get(v)) for v in shown]
        cut = hidden_a or hidden_b or self.full
        full = button("Cut long outputs" if self.full else "Show full", "full", title="Show the whole of long outputs") if cut else ""
        return f'{nav}{inputs}<div class="wb-bar"></div><div class="wb-sides">{"".join(sides)}</div>{full}'

    def _side(self, item_id: str, variant: str, body: tuple[str, int] | None) -> str:
        exp = self.exp
        focus = " wb-focus" if variant == self.focus_variant else ""
        head = (f'<div><b>{esc(variant)}</b> <span class="wb-muted">{esc(exp.variants[variant].label())}</span></div>')
        chips = []
        for r in range(self.repeats):
            call = self._calls.get((item_id, variant, r))
            value = self._score(item_id, variant, r)
            lo, hi = self._ranges.get(self.scorer or "", (0.0, 1.0))
            style = _heat(value, lo, hi) if call is not None and call.status == "ok" else (
                "background:#fecaca" if call is not None else "background:#e5e7eb")
            label = f"repeat {r + 1}" + (f" · {_format.num(value, 2)}" if value is not None else
                                          " · error" if call is not None and call.status != "ok" else "")
            chips.append(
                f'<span class="wb-chip{" wb-on" if r == self.repeat else ""}" style="{style}" '
                f'data-wb-action="repeat" data-wb-arg="{r + 1}" title="Show repeat {r + 1} (key {r + 1})">{esc(label)}</span>'
            )
        chip_row = f'<div>{"".join(chips)}</div>' if self.repeats > 1 else ""
        call = self._calls.get((item_id, variant, self.repeat))
        if call is None:
            return f'<div class="wb-side{focus}">{head}{chip_row}<i class="wb-muted">no call for this repeat yet</i></div>'
        scores = self._scores_html(item_id, variant, call)
        tokens = (f" · {_format.count(call.input_tokens)} → {_format.count(call.output_tokens)} tokens"
                  if call.input_tokens is not None else "")
        attempts = f" · {call.attempts} attempts" if call.attempts and call.attempts > 1 else ""
        meta = f'<div class="wb-muted">cost {esc(money(call.cost_usd))} · latency {esc(_format.ms(call.latency_ms))}{esc(tokens)}{esc(attempts)}</div>'
        if call.status != "ok":
            text = error_html(f"{call.status}: {call.error or 'no output'}")
            return f'<div class="wb-side{focus}">{head}{chip_row}{meta}{text}</div>'
        if body is None:  # a third variant: shown as it is, without a diff
            text = call.output or ""
            cut = len(text) if self.full else self.max_chars
            html, hidden = esc(text[:cut]), max(0, len(text) - cut)
        else:
            html, hidden = body
        return (f'<div class="wb-side{focus}">{head}{chip_row}{scores}{meta}'
                f'{scroll_box(html)}{truncate_note(hidden)}</div>')

    def _scores_html(self, item_id: str, variant: str, call: _Call) -> str:
        lines = []
        for sc in self.exp.scorers:
            s = call.scores.get(sc.name)
            mean = self._mean(item_id, variant, sc.name)
            mean_text = f" (mean of {self.repeats}: {_format.num(mean, 2)})" if self.repeats > 1 and mean is not None else ""
            if s is None:
                lines.append(f'<div class="wb-score">{esc(sc.name)}: <i>not scored</i>{esc(mean_text)}</div>')
                continue
            value = _format.num(s["value"], 2) if not _format.missing(s["value"]) else "n/a"
            passed = "" if s["passed"] is None else (" ✓ pass" if s["passed"] else " ✗ fail")
            judge = " <span class=\"wb-tag\">LLM judge</span>" if s.get("judge_trace_id") else ""
            line = f'<div class="wb-score">{esc(sc.name)}{judge}: <b>{esc(value)}</b>{esc(passed)}{esc(mean_text)}</div>'
            if s.get("rationale"):
                line += f'<div class="wb-rationale">{esc(s["rationale"])}</div>'
            lines.append(line)
        return f'<div class="wb-scores">{"".join(lines) or "<i>no scorers</i>"}</div>'

    def _rate(self) -> str:
        item_id = self.current_item_id
        if item_id is None:
            return ""
        rating = self._ratings.get(item_id)
        chosen = rating["choice"] if rating else None
        buttons = "".join(
            button(f"{self._choice_label(c)} ({k})", "rate", c, on=c == chosen,
                   title=f"{self._choice_label(c)}: save and go to the next item (key {k})")
            for k, c in RATE_KEYS.items()
        )
        status = ("<i>not rated yet</i>" if rating is None else
                  f'Your rating: <b>{esc(self._choice_label(rating["choice"]))}</b> '
                  f'<span class="wb-muted">({esc(rating["updated_at"][:19].replace("T", " "))} UTC)</span>')
        keys = ('<span class="wb-keyhint wb-muted">keys: <span class="wb-kbd">a</span> <span class="wb-kbd">b</span> '
                'better · <span class="wb-kbd">t</span> tie · <span class="wb-kbd">x</span> both bad · '
                '<span class="wb-kbd">n</span>/<span class="wb-kbd">p</span> or arrows move'
                + (' · <span class="wb-kbd">1</span>–<span class="wb-kbd">' + esc(min(self.repeats, 9)) + '</span> repeat'
                   if self.repeats > 1 else "") + "</span>")
        return (
            f'<div class="wb-bar">{buttons}<span>{status}</span></div>'
            f'<textarea class="wb-textarea" rows="2" data-wb-input="comment" '
            f'placeholder="Comment (optional), saved with the rating">{esc(self._comment)}</textarea>'
            f'<div>{keys}</div>'
        )

    def _summary(self) -> str:
        a, b = self.a, self.b
        mine = sum(1 for item in self._items if item.item_id in self._ratings)
        progress = f"you rated {mine} of {len(self._items)} items"
        p = self._feedback.preference(self.exp.id, a, b)
        if p is None:
            return f"<div><b>Preference</b>: no ratings yet · {esc(progress)}</div>"
        rate = "n/a (all ties)" if _format.missing(p.win_rate) else (
            f"{_format.pct(p.win_rate)} (95% CI {_format.interval(p.ci_low, p.ci_high, _format.pct)}), "
            f"sign test {_format.pvalue(p.p_value)}"
        )
        return (
            f"<div><b>Preference</b> (all raters): {esc(b)} wins {p.wins_b}, {esc(a)} wins {p.wins_a}, "
            f"ties {p.ties} (both bad counts as a tie) · {esc(b)} win rate {esc(rate)} · {esc(progress)}</div>"
        )

    def __repr__(self) -> str:
        return f"<CompareWidget {self.exp.name!r}: {self.b} vs {self.a}, item {self.position}>"

