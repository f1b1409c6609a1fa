"""A live view of an experiment run: ``wb.widgets.experiment(exp)``.

Progress, errors, spend against the budget and per-variant running means with
95% CIs, redrawn as calls finish. The experiment calls our hook on its event
loop's thread after every call; the hook only records numbers and schedules a
redraw (at most one every `REDRAW_INTERVAL_S`, plus one on completion), so the
run is never slowed by rendering or by reading scores.

Every HTML value goes through `_html.root` (no MathJax on dollar amounts) and
every name through `_html.esc`; the chart is shown as `charts.mimebundle`
data whatever Altair renderer is active, so a hostile variant or scorer name
is drawn as text and never runs.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import ipywidgets as w

from .. import _format as fmt
from .. import _html

REDRAW_INTERVAL_S = 0.5
"""Redraws while a run is going are at least this far apart."""


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _no_interval(n: int, clusters: Any) -> str:
    """Why a mean has no interval yet, in the table's words."""
    if n < 2:
        return "n/a (fewer than 2 items)" if n else fmt.NA
    if isinstance(clusters, int) and clusters < 2:
        return "n/a (one cluster)"
    return fmt.NA


def _scroll(table: str) -> str:
    """A table that scrolls sideways inside the widget rather than being cut at its edge."""
    return f'<div style="overflow-x:auto;max-width:100%">{table}</div>'


def _cell(column: str, x: Any) -> Any:
    """One value of a frame as a person reads it: dollars, milliseconds, shares, scores."""
    if not isinstance(x, float):
        return "" if x is None else x
    if "usd" in column or "cost" in column:
        return fmt.money(x)
    if column.endswith("_ms"):
        return fmt.ms(x)
    if "rate" in column:
        return fmt.pct(x)
    return fmt.num(x)


def _frame_html(df: Any) -> str:
    """A frame as an escaped HTML table: its own readable display when it has one (``Summary.html``)."""
    own = getattr(df, "html", None)
    if callable(own):
        return own()
    rows = [[_cell(c, x) for c, x in zip(df.columns, r)] for r in df.iter_rows()]
    return _scroll(_html.table(df.columns, rows))


class ExperimentWidget(w.VBox):
    """Watch (and run) an experiment.

    ``progress`` counts finished calls (ok or failed) against every cell;
    ``errors_label`` the failed calls; ``spend`` dollars spent (and
    ``budget_bar`` against ``budget_usd`` when set); ``means_html`` each
    variant's mean score with a 95% CI so far. ``run()`` runs the experiment,
    then fills ``summary_html`` and ``chart_output``. ``refresh()`` redraws
    from the store.
    """

    def __init__(self, exp: Any) -> None:
        self.exp = exp
        self.total = len(exp.cells())
        self.chart: Any = None
        self.chart_error: str | None = None

        self.title = w.HTML(_html.root(self._title()))
        self.progress = w.IntProgress(min=0, max=max(self.total, 1), value=0, description="calls")
        self.progress_label = w.Label()
        self.errors_label = w.HTML()
        self.spend = w.HTML()
        self.budget_bar: w.FloatProgress | None = None
        if exp.budget_usd is not None:
            self.budget_bar = w.FloatProgress(min=0.0, max=float(exp.budget_usd), value=0.0, description="budget")
        self.status_html = w.HTML()
        self.means_html = w.HTML()
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.run_button.on_click(lambda _: self.run())
        self.summary_html = w.HTML()
        self.chart_output = w.Output()

        rows: list[w.Widget] = [self.title, w.HBox([self.progress, self.progress_label]), self.errors_label]
        rows.append(w.HBox([self.budget_bar, self.spend]) if self.budget_bar is not None else self.spend)
        rows += [self.status_html, self.means_html, self.run_button, self.summary_html, self.chart_output]
        super().__init__(rows)

        # State shared with the hook's thread; guarded by _lock. Drawing is
        # serialised by _draw_lock (hook, timer and caller may all draw).
        self._lock = threading.Lock()
        self._draw_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._last_draw = 0.0
        self._closed = False
        self._run_base = 0      # cells done (ok) before the current run: where its count starts
        self._errors_base = 0   # failed calls before the current run
        self._live: tuple[int, int, float] | None = None  # (done, errors, spent) from the hook
        self._finished: Any = None  # the run outcome whose completion was drawn
        exp.on_call(self._on_call)
        self.refresh()

    # -- public ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw everything from the store (progress, errors, spend, means, status)."""
        with self._draw_lock:
            done_ok, attempted, errors = self._read_progress()
            spent = self.exp.spent_usd()
            with self._lock:
                self._run_base = done_ok
                self._errors_base = errors
                self._live = None
            self._draw(attempted, errors, spent)

    def run(self, **kwargs: Any) -> ExperimentWidget:
        """Run the experiment here (``exp.run(progress=False)``), then show its summary and chart."""
        self.refresh()
        self.run_button.disabled = True
        self.status_html.value = _html.root("<i>running…</i>")
        try:
            self.exp.run(progress=False, **kwargs)
        finally:
            self.run_button.disabled = False
            self._cancel_timer()
            self.refresh()
        self.show_results()
        return self

    def show_results(self) -> None:
        """Fill ``summary_html`` with ``exp.summary()`` and ``chart_output`` with the quality chart.

        The chart goes out as `charts.mimebundle` data (Vega for JupyterLab, a PNG
        for other front ends), whichever Altair renderer is active.
        """
        try:
            self.summary_html.value = _html.root("<b>summary</b>" + _frame_html(self.exp.summary()))
        except Exception as exc:  # noqa: BLE001 - show why instead of breaking the view
            self.summary_html.value = _html.root(f"<i>no summary: {_html.esc(exc)}</i>")
        self.chart = None
        self.chart_error = None
        bundle: tuple[dict[str, Any], dict[str, Any]] | None = None
        try:
            from .. import charts

            self.chart = self.exp.chart("quality")
            bundle = charts.mimebundle(self.chart)
        except Exception as exc:  # noqa: BLE001 - a chart that cannot draw must not break the view
            self.chart_error = f"{type(exc).__name__}: {exc}"
        self.chart_output.clear_output()
        with self.chart_output:
            if bundle is not None:
                from IPython.display import display

                data, metadata = bundle
                display(data, metadata=metadata, raw=True)
            else:
                print(f"quality chart unavailable ({self.chart_error})")

    def close(self) -> None:
        self._closed = True
        self._cancel_timer()
        super().close()

    # -- the hook (runs on the experiment's event-loop thread) -------------------------------

    def _on_call(self, exp: Any, outcome: Any) -> None:
        if self._closed:
            return
        try:
            with self._lock:
                # A run started elsewhere (exp.run()) counts on from the last refresh.
                done = min(self.total, self._run_base + outcome.calls)
                self._live = (done, self._errors_base + outcome.errors, outcome.spent_usd)
                # Draw completion at once, but only once: calls finishing together can
                # each see the final count; the ones after the first are throttled.
                finished = done >= self.total and self._finished is not outcome
                if finished:
                    self._finished = outcome
                due = time.monotonic() - self._last_draw >= REDRAW_INTERVAL_S
                if not finished and (self._timer is not None):
                    return
                if not finished:
                    delay = 0.0 if due else self._last_draw + REDRAW_INTERVAL_S - time.monotonic()
                    self._timer = threading.Timer(max(0.0, delay), self._draw_live)
                    self._timer.daemon = True
                    self._timer.start()
                    return
                timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            self._draw_live()  # always on completion, at once
        except Exception as exc:  # noqa: BLE001 - a view must never break the run it watches
            self.status_html.value = _html.root(f"<i>live view error: {_html.esc(exc)}</i>")

    def _draw_live(self) -> None:
        with self._lock:
            self._timer = None
        try:
            # Read the numbers only once holding the draw lock, so a redraw that waited
            # for another never paints older numbers over newer ones.
            with self._draw_lock:
                with self._lock:
                    live = self._live
                if live is not None and not self._closed:
                    self._draw(*live)
        except Exception as exc:  # noqa: BLE001 - may run on a timer thread: report, do not raise
            self.status_html.value = _html.root(f"<i>live view error: {_html.esc(exc)}</i>")

    def _cancel_timer(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    # -- drawing -----------------------------------------------------------------------------

    def _read_progress(self) -> tuple[int, int, int]:
        """(cells done ok, cells attempted, failed calls) of this experiment, from the store."""
        import polars as pl

        from .. import frames

        df = frames.traces_df(
            self.exp.bench.store, experiment_id=self.exp.id, kind="llm",
            columns=["variant", "item_id", "repeat", "status"], parse_times=False,
        ).filter(pl.col("variant").is_not_null())
        cells = set(self.exp.cells())
        keys = list(zip(df["variant"].to_list(), df["item_id"].to_list(), df["repeat"].to_list()))
        statuses = df["status"].to_list()
        ok = {k for k, s in zip(keys, statuses) if s == "ok"} & cells
        attempted = set(keys) & cells
        return len(ok), len(attempted), sum(1 for s in statuses if s == "error")

    def _draw(self, done: int, errors: int, spent: float) -> None:
        """Paint the numbers and re-read the means; callers hold ``_draw_lock``."""
        self.progress.value = min(done, self.progress.max)
        self.progress_label.value = f"{fmt.count(done)} / {fmt.count(self.total)} calls"
        self.progress.bar_style = "success" if done >= self.total and not errors else ("warning" if errors else "")
        color = "#b91c1c" if errors else "#15803d"
        rate = f" ({fmt.pct(errors / done)} of calls)" if done and errors else ""
        self.errors_label.value = _html.root(f'<span style="color:{color}">errors: {fmt.count(errors)}{rate}</span>')
        budget = self.exp.budget_usd
        if budget is not None and self.budget_bar is not None:
            self.budget_bar.value = min(spent, float(budget))
            self.budget_bar.bar_style = "danger" if spent >= 0.9 * budget else ""
            share = fmt.pct(spent / budget, 0) if budget else fmt.NA
            self.spend.value = _html.root(
                f"spent <b>{_html.esc(fmt.money(spent))}</b> of {_html.esc(fmt.money(budget))} budget ({share})"
            )
        else:
            self.spend.value = _html.root(f"spent <b>{_html.esc(fmt.money(spent))}</b> (no budget set)")
        self.status_html.value = _html.root(self._status())
        self.means_html.value = _html.root(self._means())
        self._last_draw = time.monotonic()

    def _status(self) -> str:
        last = self.exp.last_run
        status = self.exp.status
        text = f"status <b>{_html.esc(status)}</b>"
        if last is not None and last.message:
            text += f" · {_html.esc(last.message)}"
        return text

    def _means(self) -> str:
        """Per variant and scorer: mean of item means so far, 95% CI and items scored."""
        exp = self.exp
        if not exp.scorers:
            rows = [(v, exp.variants[v].label(), "no scorers", fmt.NA, fmt.NA, 0) for v in exp.variants]
        else:
            q = {(r["variant"], r["scorer"]): r for r in exp.quality(0.95).iter_rows(named=True)}
            rows = []
            for v, variant in exp.variants.items():
                for s in exp.scorers:
                    r = q.get((v, s.name)) or {}
                    n = r.get("n") or 0
                    lo, hi = r.get("ci_low"), r.get("ci_high")
                    ci = fmt.interval(lo, hi) if _finite(lo) and _finite(hi) else _no_interval(n, r.get("n_clusters"))
                    rows.append((v, variant.label(), s.name, fmt.num(r.get("mean") if n else None), ci, fmt.count(n)))
        return "<b>running means (95% CI)</b>" + _scroll(_html.table(
            ["variant", "prompt / model", "scorer", "mean", "95% CI", "items"], rows
        ))

    def _title(self) -> str:
        exp = self.exp
        sim = ""
        if getattr(exp.bench.provider, "simulated", False):
            sim = ' · <span style="color:#b45309">simulated provider</span>'
        return (
            f"<b>experiment {_html.esc(exp.name)}</b> · {fmt.count(len(exp.dataset))} items × {len(exp.variants)} variants"
            f" × {exp.repeats} repeats = {fmt.count(self.total)} calls{sim}"
        )
