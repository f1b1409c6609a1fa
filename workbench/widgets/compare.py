"""Compare two variants' outputs item by item, and rate which is better.

``wb.widgets.compare(exp, "A", "B")`` shows one item at a time: its inputs and
reference, both outputs side by side with the differing words marked, their
scores, cost and latency. The rating buttons write through
``bench.feedback.prefer`` and move on to the next item; a summary line keeps
B's win rate over A (Wilson interval, sign test) up to date.

The widget reads frames (``exp.items``, ``exp.item_scores``,
``exp.traces_df``) once when it is built; after a rating only the feedback is
read again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from .._html import esc
from ..errors import ConfigError
from ._common import error_html, guarded, info_html, money, ms, scroll_box, truncate_note, word_diff

if TYPE_CHECKING:
    from ..experiments import Experiment

__all__ = ["CompareWidget", "FILTERS"]

FILTERS = ("all", "disagreements", "regressions", "unrated")
"""Values of ``CompareWidget.filter``."""

MAX_CHARS = 2_000
"""Characters of each output shown until "Show full" is pressed."""


class CompareWidget(W.VBox):
    """Side-by-side outputs of variants ``a`` and ``b`` of an experiment, with ratings.

    Args:
        exp: a run experiment.
        a, b: the variants to compare; ratings are "B better than A" and so on.
        scorer: the scorer that orders items and defines disagreements and
            regressions (default: the experiment's first).
        rater: who is rating (default ``$WORKBENCH_RATER``, else the login name).
        max_chars: characters of each output shown before "Show full".

    Every control is a standard ipywidget, reachable with Tab, and can be
    driven from Python: ``w.rate_buttons["b"].click()``, ``w.filter.value = "regressions"``.
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
        names = [s.name for s in exp.scorers]
        if scorer is not None and scorer not in names:
            raise ConfigError(f"no scorer {scorer!r} in experiment {exp.name!r} (scorers: {', '.join(names) or 'none'})")
        self.exp = exp
        self.a, self.b = a, b
        self.scorer = scorer or (names[0] if names else None)
        self.rater = default_rater(rater)
        self.max_chars = max_chars
        self.last_error: Exception | None = None
        self._feedback = getattr(exp.bench, "feedback", None) or Feedback(exp.bench.store)

        self._load_frames()
        self._ratings: dict[str, dict[str, Any]] = {}
        self._load_ratings()
        self._visible: list[int] = list(range(len(self._rows)))
        self._pos = 0
        self._syncing = False

        self._build_controls()
        super().__init__(children=self._layout(), layout=W.Layout(width="100%"))
        self._apply_filter("all")

    # -- data --------------------------------------------------------------------------------

    def _load_frames(self) -> None:
        import polars as pl

        exp, a, b = self.exp, self.a, self.b
        self.frame = exp.items(a, b, self.scorer)
        self._rows: list[dict[str, Any]] = self.frame.to_dicts()
        scores = exp.item_scores().filter(pl.col("variant").is_in([a, b]))
        self._scores: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for r in scores.iter_rows(named=True):
            self._scores.setdefault((r["item_id"], r["variant"]), {})[r["scorer"]] = r
        t = exp.traces_df().filter(pl.col("variant").is_in([a, b])).select(
            "id", "variant", "item_id", "repeat", "status", "cost_usd", "latency_ms", "input_tokens", "output_tokens", "error"
        )
        self._traces = {r["id"]: r for r in t.iter_rows(named=True)}
        self._errors: dict[tuple[str, str], str] = {}
        for r in t.filter(pl.col("status") != "ok").iter_rows(named=True):
            self._errors[(r["item_id"], r["variant"])] = r["error"] or r["status"]

    def _load_ratings(self) -> None:
        frame = self._feedback.preferences(self.exp.id, a=self.a, b=self.b, rater=self.rater)
        self._ratings = {r["item_id"]: r for r in frame.iter_rows(named=True)}

    def _matches(self, row: dict[str, Any], mode: str) -> bool:
        if mode == "all":
            return True
        if mode == "unrated":
            return row["item_id"] not in self._ratings
        sa, sb = row.get("score_a"), row.get("score_b")
        if sa is None or sb is None or math.isnan(sa) or math.isnan(sb):
            return False
        return sa != sb if mode == "disagreements" else sb < sa

    # -- controls ----------------------------------------------------------------------------

    def _build_controls(self) -> None:
        a, b = self.a, self.b
        self.title = W.HTML()
        self.prev_button = W.Button(description="◀ Previous", tooltip="Previous item", layout=W.Layout(width="auto"))
        self.next_button = W.Button(description="Next ▶", tooltip="Next item", layout=W.Layout(width="auto"))
        self.position = W.Label(value="0 / 0")
        self.jump = W.Dropdown(description="Item", options=[], tooltip="Jump to an item", layout=W.Layout(width="260px"))
        scored = self.scorer is not None
        options = [("All items", "all")]
        if scored:
            options += [
                (f"Disagreements ({self.scorer} differs)", "disagreements"),
                (f"Regressions ({b} worse than {a})", "regressions"),
            ]
        options.append(("Unrated by me", "unrated"))
        self.filter = W.Dropdown(description="Show", options=options, value="all", tooltip="Which items to go through",
                                 layout=W.Layout(width="320px"))
        self.show_full = W.ToggleButton(description="Show full", value=False, tooltip="Show the whole of long outputs",
                                        layout=W.Layout(width="auto"))
        self.item_html = W.HTML()
        self.left_html = W.HTML(layout=W.Layout(width="50%"))
        self.right_html = W.HTML(layout=W.Layout(width="50%"))
        self.rate_buttons: dict[str, W.Button] = {
            "a": W.Button(description=f"{a} better", tooltip=f"{a}'s output is better; save and go to the next item"),
            "b": W.Button(description=f"{b} better", tooltip=f"{b}'s output is better; save and go to the next item"),
            "tie": W.Button(description="Tie", tooltip="Both are as good; save and go to the next item"),
            "both_bad": W.Button(description="Both bad", tooltip="Neither is acceptable; save and go to the next item"),
        }
        self.comment = W.Textarea(placeholder="Comment (optional), saved with the rating", rows=2,
                                  layout=W.Layout(width="100%"))
        self.rating_html = W.HTML()
        self.key_box = W.Text(
            placeholder="keys: a / b = better, t = tie, x = both bad, n / p = next / previous",
            continuous_update=True, layout=W.Layout(width="420px"),
            tooltip="Click here, then rate and move with single keys",
        )
        self.message = W.HTML()
        self.summary_html = W.HTML()

        self.prev_button.on_click(lambda _: self.prev())
        self.next_button.on_click(lambda _: self.next())
        for choice, button in self.rate_buttons.items():
            button.on_click(lambda _, c=choice: self.rate(c))
        self.filter.observe(self._on_filter, names="value")
        self.jump.observe(self._on_jump, names="value")
        self.show_full.observe(self._on_show_full, names="value")
        self.key_box.observe(self._on_key, names="value")

    def _layout(self) -> list[W.Widget]:
        return [
            self.title,
            W.HBox([self.prev_button, self.position, self.next_button, self.jump, self.filter, self.show_full],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            self.item_html,
            W.HBox([self.left_html, self.right_html], layout=W.Layout(width="100%")),
            W.HBox(list(self.rate_buttons.values()) + [self.rating_html], layout=W.Layout(align_items="center")),
            self.key_box,
            self.comment,
            self.message,
            self.summary_html,
        ]

    # -- navigation --------------------------------------------------------------------------

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
        row = self._current()
        return None if row is None else row["item_id"]

    @property
    def item_ids(self) -> list[str]:
        """Item ids the current filter goes through, in order."""
        return [self._rows[i]["item_id"] for i in self._visible]

    def _current(self) -> dict[str, Any] | None:
        return self._rows[self._visible[self._pos]] if self._visible else None

    @guarded
    def go(self, index: int) -> None:
        """Show the item at ``index`` of the filtered list."""
        if not self._visible:
            return
        if not 0 <= index < len(self._visible):
            raise ConfigError(f"item position {index} is out of range 0..{len(self._visible) - 1}")
        self._pos = index
        self.message.value = ""
        self._show()

    def next(self) -> None:
        if self._pos + 1 < len(self._visible):
            self.go(self._pos + 1)

    def prev(self) -> None:
        if self._pos > 0:
            self.go(self._pos - 1)

    @guarded
    def _on_filter(self, change: dict[str, Any]) -> None:
        self._apply_filter(change["new"])

    @guarded
    def _on_show_full(self, change: dict[str, Any]) -> None:
        self._render()

    def _on_jump(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"] is not None:
            self.go(change["new"])

    def _apply_filter(self, mode: str, keep_after: int | None = None) -> None:
        """Recompute the visible items; with ``keep_after``, land on the first one after that row."""
        self._visible = [i for i, r in enumerate(self._rows) if self._matches(r, mode)]
        self._pos = 0
        if keep_after is not None and self._visible:
            later = [k for k, i in enumerate(self._visible) if i > keep_after]
            self._pos = later[0] if later else len(self._visible) - 1
        self._syncing = True
        try:
            self.jump.options = [(f"{k + 1}. {self._rows[i]['item_id']}", k) for k, i in enumerate(self._visible)]
            self.jump.value = self._pos if self._visible else None
        finally:
            self._syncing = False
        self._show()

    # -- rating ------------------------------------------------------------------------------

    KEYS = {"a": "a", "b": "b", "t": "tie", "x": "both_bad"}
    """Single keys typed into ``key_box``: rate (then move on), or ``n`` / ``p`` to move."""

    def _on_key(self, change: dict[str, Any]) -> None:
        typed = (change["new"] or "")[-1:].lower()
        if not typed:
            return
        self.key_box.value = ""  # ready for the next key; this change lands here with "" and stops
        if typed in self.KEYS:
            self.rate(self.KEYS[typed])
        elif typed == "n":
            self.next()
        elif typed == "p":
            self.prev()

    @guarded
    def rate(self, choice: str) -> None:
        """Save ``choice`` (``a``, ``b``, ``tie``, ``both_bad``) and the comment for the current item, then move on."""
        row = self._current()
        if row is None:
            raise ConfigError("no item to rate: the filter leaves none")
        self._feedback.prefer(
            self.exp.id, row["item_id"], self.a, self.b, choice, rater=self.rater, comment=self.comment.value
        )
        self._load_ratings()
        label = self.rate_buttons[choice].description
        saved = info_html(f"Saved “{label}” for {row['item_id']}.")
        if self.filter.value == "unrated":
            self._apply_filter("unrated", keep_after=self._visible[self._pos])
        elif self._pos + 1 < len(self._visible):
            self._pos += 1
            self._show()
        else:
            self._show()
        self.message.value = saved

    # -- rendering ---------------------------------------------------------------------------

    def _show(self) -> None:
        n = len(self._visible)
        self.position.value = f"{self._pos + 1} / {n}" if n else "0 / 0"
        self.prev_button.disabled = self._pos <= 0
        self.next_button.disabled = self._pos >= n - 1
        for button in self.rate_buttons.values():
            button.disabled = n == 0
        if n:
            self._syncing = True
            try:
                self.jump.value = self._pos
            finally:
                self._syncing = False
        row = self._current()
        self.comment.value = "" if row is None else (self._ratings.get(row["item_id"], {}).get("comment") or "")
        self._render()

    def _render(self) -> None:
        exp, a, b = self.exp, self.a, self.b
        self.title.value = (
            f"<b>{esc(exp.name)}</b>: {esc(b)} <small>({esc(exp.variants[b].label())})</small> vs "
            f"{esc(a)} <small>({esc(exp.variants[a].label())})</small>"
            + (f" · ordered by {esc(self.scorer)}, regressions first" if self.scorer else "")
            + f" · rater <code>{esc(self.rater)}</code>"
        )
        self._render_summary()
        row = self._current()
        if row is None:
            empty = "All items are rated." if self.filter.value == "unrated" else "No items match this filter."
            self.item_html.value = f"<i>{esc(empty)}</i>"
            self.left_html.value = self.right_html.value = ""
            self.rating_html.value = ""
            self.show_full.disabled = True
            return
        item_id = row["item_id"]
        cluster = f" · cluster {esc(row['cluster'])}" if row.get("cluster") else ""
        expected = row["expected"]
        self.item_html.value = (
            f"<div><b>Item {esc(item_id)}</b>{cluster}</div>"
            f"<div><small>Inputs</small>{scroll_box(esc(row['inputs']), '160px')}</div>"
            f"<div><small>Reference</small>"
            f"{scroll_box(esc(expected) if expected is not None else '<i>none</i>', '100px')}</div>"
        )
        limit = None if self.show_full.value else self.max_chars
        html_a, html_b, hidden_a, hidden_b = word_diff(row.get("output_a"), row.get("output_b"), limit=limit)
        self.left_html.value = self._side(row, a, "a", html_a, hidden_a)
        self.right_html.value = self._side(row, b, "b", html_b, hidden_b)
        self.show_full.disabled = not (self.show_full.value or hidden_a or hidden_b)
        rating = self._ratings.get(item_id)
        for choice, button in self.rate_buttons.items():
            button.button_style = "success" if rating is not None and rating["choice"] == choice else ""
        if rating is None:
            self.rating_html.value = "<i>not rated yet</i>"
        else:
            label = self.rate_buttons[rating["choice"]].description
            self.rating_html.value = f"Your rating: <b>{esc(label)}</b> <small>({esc(rating['updated_at'][:19])} UTC)</small>"

    def _side(self, row: dict[str, Any], variant: str, suffix: str, body: str, hidden: int) -> str:
        item_id = row["item_id"]
        head = f"<div><b>{esc(variant)}</b> <small>{esc(self.exp.variants[variant].label())}</small></div>"
        score_lines = []
        for name, s in sorted(self._scores.get((item_id, variant), {}).items()):
            value = "–" if s["value"] is None else f"{s['value']:.3g}"
            passed = "" if s["pass_rate"] is None else (" ✓" if s["pass_rate"] >= 0.5 else " ✗")
            mean = f" (mean of {s['n']})" if s["n"] and s["n"] > 1 else ""
            score_lines.append(f"{esc(name)}: <b>{esc(value)}</b>{passed}{mean}")
        trace = self._traces.get(row.get(f"trace_{suffix}") or "")
        meta = ""
        if trace is not None:
            tokens = f" · {trace['input_tokens']} → {trace['output_tokens']} tokens" if trace["input_tokens"] is not None else ""
            meta = f"cost {esc(money(trace['cost_usd']))} · latency {esc(ms(trace['latency_ms']))}{tokens}"
            if self.exp.repeats > 1:
                meta += f" · repeat {trace['repeat'] + 1} of {self.exp.repeats}"
        scores = "<br>".join(score_lines) or "<i>no scores</i>"
        if row.get(f"output_{suffix}") is None:
            error = self._errors.get((item_id, variant))
            text = error_html(f"no successful output: {error}") if error else "<i>no output yet</i>"
            return f"{head}<div><small>{scores}</small></div>{text}"
        return f"{head}<div><small>{scores}<br>{meta}</small></div>{scroll_box(body)}{truncate_note(hidden)}"

    def _render_summary(self) -> None:
        a, b = self.a, self.b
        mine = sum(1 for r in self._rows if r["item_id"] in self._ratings)
        progress = f"you rated {mine} of {len(self._rows)} items"
        p = self._feedback.preference(self.exp.id, a, b)
        if p is None:
            self.summary_html.value = f"<div><b>Preference</b>: no ratings yet · {esc(progress)}</div>"
            return
        rate = "n/a (all ties)" if math.isnan(p.win_rate) else (
            f"{p.win_rate:.1%} (95% CI {p.ci_low:.1%}–{p.ci_high:.1%}), sign test p={p.p_value:.3g}"
        )
        self.summary_html.value = (
            f"<div><b>Preference</b> (all raters): {esc(b)} wins {p.wins_b}, {esc(a)} wins {p.wins_a}, "
            f"ties {p.ties} (both bad counts as a tie) · {esc(b)} win rate {esc(rate)} · {esc(progress)}</div>"
        )

    def __repr__(self) -> str:
        return f"<CompareWidget {self.exp.name!r}: {self.b} vs {self.a}, item {self.position.value}>"

