"""``exp.summary()``: a real Polars frame that displays as a readable readout.

Kept apart from ``readouts.py`` because subclassing ``pl.DataFrame`` needs
Polars at import time, and ``import workbench`` must not load it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from . import _format as fmt
from . import _html

Cell = Callable[[dict[str, Any]], str]


class Summary(pl.DataFrame):
    """One row per variant; a ``pl.DataFrame`` in every respect but its display.

    It shows units in the headers, each scorer's mean beside its interval, and
    ``n/a`` (with the reason below the table) where a number is missing. Any
    operation on it returns a plain Polars frame with Polars' own display.
    """

    # Class-level defaults: frames Polars derives from this one (``head()``) keep the class.
    experiment: str = ""
    """The experiment's name."""
    scorers: tuple[str, ...] = ()
    """Scorer names, each a column with ``_ci_low``/``_ci_high`` beside it."""
    status: str = ""
    """How complete the data is (``360 of 360 calls recorded``)."""
    empty: str = ""
    """Set when no call was recorded yet, with what to do."""
    notes: tuple[str, ...] = ()
    """Why a number reads n/a, and other caveats."""
    simulated: bool = False
    confidence: float = 0.95

    def _columns(self) -> list[tuple[str, Cell, bool]]:
        """(header, cell, numeric) for each displayed column present in the frame."""
        have = set(self.columns)
        out: list[tuple[str, Cell, bool]] = []

        def text(col: str) -> Cell:
            return lambda r: "" if r.get(col) is None else str(r[col])

        for col, head in (("variant", "variant"), ("label", "prompt"), ("model", "model")):
            if col in have:
                out.append((head, text(col), False))
        if "n_items" in have:
            out.append(("items", lambda r: fmt.count(r["n_items"] or 0), True))
        for s in self.scorers:
            if s not in have:
                continue

            def score(r: dict[str, Any], s: str = s) -> str:
                ci = fmt.interval(r.get(f"{s}_ci_low"), r.get(f"{s}_ci_high"))
                return f"{fmt.num(r[s])} ({ci})" if not fmt.missing(r[s]) else fmt.NA

            out.append((f"{s} ({self.confidence * 100:g}% CI)", score, True))
        numbers: tuple[tuple[str, str, Cell], ...] = (
            ("error_rate", "errors", lambda r: fmt.pct(r["error_rate"])),
            ("cost_per_item_usd", "cost/item ($)", lambda r: fmt.money(r["cost_per_item_usd"], symbol=False)),
            ("latency_p50_ms", "p50 (ms)", lambda r: fmt.ms(r["latency_p50_ms"], unit=False)),
            ("latency_p95_ms", "p95 (ms)", lambda r: fmt.ms(r["latency_p95_ms"], unit=False)),
        )
        for col, head, cell in numbers:
            if col in have:
                out.append((head, cell, True))
        return out

    def cells(self) -> tuple[list[str], list[list[str]], list[bool]]:
        """Headers, rows of display strings, and which columns are numbers."""
        cols = self._columns()
        rows = [[cell(r) for _, cell, _ in cols] for r in self.iter_rows(named=True)]
        return [h for h, _, _ in cols], rows, [n for _, _, n in cols]

    def title(self) -> str:
        bits = [b for b in (self.experiment, self.empty or self.status) if b]
        return ": ".join(bits)

    def html(self) -> str:
        """The readout as HTML (not wrapped in ``_html.root``).

        Narrower than the text, to fit a notebook beside JupyterLab's file
        browser: the model sits small under the prompt, a scorer's interval
        under its mean, and headers break at spaces and underscores.
        """
        heads, rows, numeric = self.cells()
        # Each cell: (main line, small line below).
        cells = [[(v, "") if not n else _split_ci(v) for v, n in zip(row, numeric)] for row in rows]
        if "prompt" in heads and "model" in heads:
            ip, im = heads.index("prompt"), heads.index("model")
            for row in cells:
                row[ip] = (row[ip][0], row[im][0])
                del row[im]
            heads = [h if i != ip else "prompt, model" for i, h in enumerate(heads) if i != im]
            numeric = [n for i, n in enumerate(numeric) if i != im]
        pad = "padding:3px 8px;border-bottom:1px solid #e4e7eb;"
        th = "".join(
            f'<th style="{pad}text-align:{"right" if n else "left"};vertical-align:bottom;background:#eef1f5">'
            f'{_html.esc(h).replace("_", "_<wbr>")}</th>'
            for h, n in zip(heads, numeric)
        )

        def td(cell: tuple[str, str], numeric: bool) -> str:
            main, small = cell
            below = f'<br><span style="font-size:11px;color:#52606d">{_html.esc(small)}</span>' if small else ""
            return (f'<td style="{pad}white-space:nowrap;text-align:{"right" if numeric else "left"};'
                    f'font-variant-numeric:tabular-nums;vertical-align:top">{_html.esc(main)}{below}</td>')

        body = "".join("<tr>" + "".join(td(c, n) for c, n in zip(row, numeric)) + "</tr>" for row in cells)
        parts = []
        title = self.title()
        if title or self.simulated:
            parts.append(
                '<div style="margin-bottom:4px">'
                + (f"<b>{_html.esc(title)}</b>" if title else "")
                + (' <span style="color:#7a4a00">· simulated provider</span>' if self.simulated else "")
                + "</div>"
            )
        parts.append(
            '<div style="overflow-x:auto;max-width:100%"><table class="wb-summary" style="border-collapse:collapse;'
            f'font-size:13px;margin:0"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'
        )
        if self.notes:
            parts.append(
                '<ul style="margin:6px 0 0;padding-left:18px;color:#52606d;font-size:12px">'
                + "".join(f"<li>{_html.esc(n)}</li>" for n in self.notes) + "</ul>"
            )
        return "".join(parts)

    def _repr_html_(self, **kwargs: Any) -> str:
        return _html.root(self.html(), cls="wb-summary-out")

    def text(self) -> str:
        """The readout as an aligned plain-text table."""
        heads, rows, numeric = self.cells()
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]

        def line(values: list[str]) -> str:
            return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

        lines = []
        title = self.title()
        if title or self.simulated:
            lines.append(title + ("  [simulated provider]" if self.simulated else ""))
        lines.append(line(heads))
        lines.extend(line(r) for r in rows)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()


def _split_ci(value: str) -> tuple[str, str]:
    """``0.617 (0.532 to 0.702)`` -> (``0.617``, ``0.532 to 0.702``); other numbers stay whole."""
    mean, _, ci = value.partition(" (")
    return mean, ci.removesuffix(")")


def make(frame: pl.DataFrame, **facts: Any) -> Summary:
    """Wrap ``frame`` as a ``Summary`` carrying ``facts`` (experiment, scorers, status, ...)."""
    out = Summary(frame)
    for key, value in facts.items():
        setattr(out, key, value)
    return out
