"""The verdict card: a comparison of B against A that leads with the answer.

Pure rendering over plain values. ``Card`` holds what one comparison found
(per metric the difference, its interval, n and whether n was enough; cost;
latency; human preference), and ``html(card)`` and ``text(card)`` draw the
same card for a notebook or report and for a terminal. An experiment's
``Comparison`` builds one; an online A/B readout (``workbench.rollout``) and
the CI gate build theirs from their own numbers and show the same thing, with
``checks`` on top (is the assignment sound, did the gate pass) and the error
rate as a section of its own.

A badge says one of five things, decided by ``decide``:

- ``better`` / ``worse``: the difference is significant (p < alpha) and its
  interval excludes 0 on the same side;
- ``no detectable difference``: not significant, and the minimum detectable
  effect (MDE, 80% power) at this n is no larger than the effect that
  matters, so a difference of that size would most likely have shown;
- ``not enough data``: not significant, and this n could not have detected
  the effect that matters (the card says how many items would);
- ``no data``: nothing to compare yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _format as fmt
from . import _html

BETTER, WORSE, NONE, UNDERPOWERED, EMPTY = "better", "worse", "none", "underpowered", "empty"
"""Badge kinds, in the order a reader cares about them."""

COLOURS = {
    BETTER: ("#0f5f32", "#dcf3e4", "#8fd1a6"),
    WORSE: ("#8a1c12", "#fde4e1", "#f1a399"),
    NONE: ("#33404d", "#eceff3", "#c5ccd5"),
    UNDERPOWERED: ("#7a4a00", "#fff1d6", "#f0c36b"),
    EMPTY: ("#52606d", "#f4f5f7", "#d9dee5"),
}
"""Per badge kind: text, background and border colour (contrast above 7:1 for the text)."""

POWER = 0.8
"""The power at which MDEs and sample sizes are stated."""


def decide(
    diff: Any,
    ci_low: Any,
    ci_high: Any,
    p_value: Any,
    *,
    n: int,
    alpha: float = 0.05,
    mde: Any = None,
    target: Any = None,
) -> str:
    """The badge kind of one difference B − A where higher is better.

    Args:
        diff: The estimated difference B − A.
        ci_low: Lower end of its confidence interval.
        ci_high: Upper end of its confidence interval.
        p_value: Its p-value (already adjusted for several metrics, if any);
            None to judge by the interval alone (a bootstrap interval has no p).
        n: Units compared (items, or calls for unpaired metrics).
        alpha: Significance level.
        mde: Minimum detectable effect at this n; None when not computed,
            which makes a non-significant result read ``none``.
        target: The effect that matters; None means any detectable one.

    Returns:
        One of ``better``, ``worse``, ``none``, ``underpowered``, ``empty``.
    """
    if n == 0 or fmt.missing(diff):
        return EMPTY
    if n < 2 or fmt.missing(ci_low) or fmt.missing(ci_high):
        return UNDERPOWERED
    significant = p_value is None or (not fmt.missing(p_value) and float(p_value) < alpha)
    if significant and float(diff) > 0 and float(ci_low) > 0:
        return BETTER
    if significant and float(diff) < 0 and float(ci_high) < 0:
        return WORSE
    if mde is None or target is None:
        return NONE
    if fmt.missing(mde) or float(mde) > float(target):
        return UNDERPOWERED
    return NONE


def flip(kind: str) -> str:
    """The badge of a metric where lower is better (cost, latency)."""
    return {BETTER: WORSE, WORSE: BETTER}.get(kind, kind)


@dataclass(frozen=True)
class Metric:
    """One quality metric (a scorer): B against A on the same items."""

    name: str
    """The scorer's name."""
    mean_a: float | None
    """A's mean over the items both variants have scores for."""
    mean_b: float | None
    """B's mean over the same items."""
    diff: float | None
    """B − A."""
    ci_low: float | None
    """Lower end of the interval of ``diff``."""
    ci_high: float | None
    """Upper end of the interval of ``diff``."""
    p_value: float | None
    """p-value of ``diff`` (Holm-adjusted across metrics when there are several)."""
    n: int
    """Items compared."""
    kind: str
    """The badge (see ``decide``)."""
    mde: float | None = None
    """Smallest true difference this n detects with 80% power."""
    target: float | None = None
    """The effect that matters, against which ``mde`` is judged."""
    n_needed: int | None = None
    """Items needed to detect ``target`` with 80% power."""
    detail: str = ""
    """A secondary line, e.g. pass rates and McNemar's test."""
    note: str = ""
    """What is wrong with this metric's data, if anything (shown beside it)."""
    n_clusters: int | None = None
    """Clusters the items fall in, when the interval is clustered."""
    clusters_needed: int | None = None
    """With clusters: how many (of today's size) ``n_needed`` items fall in."""


@dataclass(frozen=True)
class Rate:
    """A share of calls (errors) for A and B, and the difference; lower is better."""

    name: str
    """What is counted, e.g. ``error rate``."""
    a: float | None
    b: float | None
    diff: float | None
    """B − A, as a share (0.01 is one percentage point)."""
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_a: int
    """Calls of A."""
    n_b: int
    kind: str
    """Badge with ``better`` meaning fewer."""
    note: str = ""


@dataclass(frozen=True)
class Check:
    """A line above the comparison: whether its data can be trusted, or what was decided on it."""

    kind: str
    """Badge kind (colour): ``better`` for a pass, ``worse`` for a failure, ``underpowered`` for undecided."""
    badge: str
    """The badge's text, e.g. ``assignment ok`` or ``gate: fail``."""
    text: str
    """The line beside it, with the figures."""


@dataclass(frozen=True)
class Cost:
    """Dollars per item (one call) of A and B, and the paired difference."""

    a: float | None
    b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    """Items priced for both variants."""
    kind: str
    """Badge with ``better`` meaning cheaper."""
    note: str = ""
    per: str = "item"
    """What one cost is for: ``item`` (an experiment) or ``call`` (production traffic)."""


@dataclass(frozen=True)
class Latency:
    """One latency statistic (p50 or p95) of A and B in ms, and its difference."""

    stat: str
    """``p50`` or ``p95``."""
    a: float | None
    b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    kind: str
    """Badge with ``better`` meaning faster."""


@dataclass(frozen=True)
class Preference:
    """Human ratings of B against A."""

    wins_b: int
    wins_a: int
    ties: int
    win_rate: float | None
    """B's share of the decided comparisons."""
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    """Exact sign test."""
    kind: str


@dataclass(frozen=True)
class Card:
    """Everything a verdict card shows."""

    title: str
    """What was compared, e.g. the experiment's name."""
    a: str
    """The baseline's name."""
    b: str
    """The challenger's name."""
    metrics: Sequence[Metric] = ()
    cost: Cost | None = None
    latency: Sequence[Latency] = ()
    preference: Preference | None = None
    simulated: bool = False
    """Whether any of the data came from the simulated provider."""
    status: str = ""
    """How complete the data is, e.g. ``360 of 360 calls recorded``."""
    empty: str = ""
    """When set, there is nothing to judge and this says why (and what to do)."""
    notes: Sequence[str] = ()
    """Caveats that apply to the whole card."""
    confidence: float = 0.95
    adjusted: str = ""
    """How p-values were adjusted, e.g. ``Holm across 2 scorers``."""
    details_html: str = ""
    """Escaped HTML shown collapsed below the card (detail tables)."""
    checks: Sequence[Check] = ()
    """Lines shown first, above every section (a sample-ratio check, a gate's decision)."""
    rates: Sequence[Rate] = ()
    """Shares of calls where lower is better (errors), shown after quality."""
    unit: str = "item"
    """What ``n`` counts in the quality lines: ``item``, or ``call`` for production traffic."""


def label(kind: str, b: str, better: str = "better", worse: str = "worse") -> str:
    """The badge text: ``B better``, ``B cheaper``, ``no detectable difference``, ..."""
    return {
        BETTER: f"{b} {better}",
        WORSE: f"{b} {worse}",
        NONE: "no detectable difference",
        UNDERPOWERED: "not enough data",
        EMPTY: "no data",
    }[kind]


# -- what each line says ----------------------------------------------------------------------


def _ci(card: Card, low: Any, high: Any, f: Any = fmt.num, **kw: Any) -> str:
    return f"{card.confidence * 100:g}% CI {fmt.interval(low, high, f, signed=True, **kw)}"


def _power(m: Metric, unit: str = "item") -> str:
    """Whether n was enough, in words."""
    if m.n == 0:
        return ""
    n = f"n={fmt.count(m.n)}" + (f" in {fmt.plural(m.n_clusters, 'cluster')}" if m.n_clusters else "")
    if fmt.missing(m.mde):
        return n
    size = f"{n}, MDE {fmt.num(m.mde)}"
    if m.kind == UNDERPOWERED and not fmt.missing(m.target):
        need = f"; about {fmt.plural(m.n_needed, unit)} needed" if m.n_needed else ""
        if m.n_needed and m.clusters_needed:
            need = f"; about {fmt.plural(m.n_needed, unit)} in {fmt.plural(m.clusters_needed, 'cluster')} needed"
        return f"{size}: too few to detect {fmt.num(m.target)}, the effect that matters{need}"
    if m.kind == NONE and not fmt.missing(m.target):
        return f"{size} ≤ {fmt.num(m.target)} that matters: enough to detect it"
    return size


def _metric_parts(card: Card, m: Metric) -> list[str]:
    """The pieces of a metric's line; each piece never breaks across lines."""
    if m.kind == EMPTY:
        return [m.note or "no scores to compare"]
    parts = [
        f"{fmt.num(m.mean_a)} → {fmt.num(m.mean_b)}",
        f"diff {fmt.num(m.diff, signed=True)}",
        f"({_ci(card, m.ci_low, m.ci_high)})",
        fmt.pvalue(m.p_value) + (" (Holm)" if card.adjusted.startswith("Holm") else ""),
    ]
    power = _power(m, card.unit)
    if power:
        parts.append(power)
    return parts


def _cost_parts(card: Card, c: Cost) -> list[str]:
    if c.kind == EMPTY:
        return [c.note or "no priced calls to compare"]

    def per_1000(x: Any) -> float | None:
        return None if fmt.missing(x) else float(x) * 1000

    return [
        f"per {c.per} {fmt.money(c.a)} → {fmt.money(c.b)}",
        f"({fmt.relative(c.b, c.a)})",
        f"{fmt.money(per_1000(c.diff), signed=True)} per 1,000 calls",
        f"({_ci(card, per_1000(c.ci_low), per_1000(c.ci_high), fmt.money)})",
    ]


def _latency_parts(card: Card, lat: Latency) -> list[str]:
    if lat.kind == EMPTY:
        return [f"{lat.stat}: no successful calls to compare"]
    digits = ms_decimals(lat.a, lat.b)

    def ms(x: Any, unit: bool = True) -> str:
        return fmt.ms(x, signed=True, decimals=digits, unit=unit)

    ci = f"{card.confidence * 100:g}% CI {ms(lat.ci_low, False)} to {ms(lat.ci_high)}" if not (
        fmt.missing(lat.ci_low) or fmt.missing(lat.ci_high)) else f"{card.confidence * 100:g}% CI {fmt.NA}"
    return [
        f"{lat.stat} {fmt.ms(lat.a, decimals=digits)} → {fmt.ms(lat.b, decimals=digits)}",
        ms(lat.diff),
        f"({ci})",
    ]


def ms_decimals(*latencies: Any) -> int | None:
    """Whole milliseconds once latencies reach 100 ms (a tenth of a ms is noise there); else ``ms``'s default."""
    sizes = [abs(float(x)) for x in latencies if not fmt.missing(x)]
    return 0 if sizes and max(sizes) >= 100 else None


def join(parts: list[str]) -> str:
    """Pieces of a line as a person punctuates them: ``a, b (c), d``."""
    out = ""
    for p in parts:
        out += ("" if not out else " " if p.startswith("(") else ", ") + p
    return out


def points(x: Any, *, unit: bool = True) -> str:
    """A difference of shares in percentage points: ``+0.3 pts`` (never ``−0.0``)."""
    if fmt.missing(x):
        return fmt.NA
    shown = round(float(x) * 100, 1) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0
    return f"{fmt.num(shown, 1, signed=True)}{' pts' if unit else ''}"


def _rate_parts(card: Card, r: Rate) -> list[str]:
    if r.kind == EMPTY:
        return [r.note or f"{r.name}: no calls to compare"]
    ci = (f"{card.confidence * 100:g}% CI {fmt.NA}" if fmt.missing(r.ci_low) or fmt.missing(r.ci_high) else
          f"{card.confidence * 100:g}% CI {points(r.ci_low, unit=False)} to {points(r.ci_high)}")
    return [
        f"{r.name} {fmt.pct(r.a)} → {fmt.pct(r.b)}",
        points(r.diff),
        f"({ci})",
        fmt.pvalue(r.p_value),
        f"calls {fmt.count(r.n_a)} and {fmt.count(r.n_b)}",
    ]


def _preference_parts(card: Card, p: Preference) -> list[str]:
    return [
        f"{card.b} wins {fmt.count(p.wins_b)}, {card.a} wins {fmt.count(p.wins_a)}, ties {fmt.count(p.ties)}",
        f"win rate {fmt.pct(p.win_rate)}",
        f"({card.confidence * 100:g}% CI {fmt.interval(p.ci_low, p.ci_high, fmt.pct)})",
        f"sign test {fmt.pvalue(p.p_value)}",
    ]


def _line(parts: list[str]) -> str:
    """A row's pieces as text; a leading ``name:`` piece is followed by a space, not a comma."""
    if parts and parts[0].endswith(":"):
        return parts[0] + " " + join(parts[1:])
    return join(parts)


def _sections(card: Card) -> list[tuple[str, list[tuple[str, str, list[str], list[str]]]]]:
    """(heading, rows) where a row is (badge kind, badge text, pieces, sub-lines)."""
    out = []
    quality = [
        (m.kind, label(m.kind, card.b), [m.name + ":"] + _metric_parts(card, m),
         [x for x in (m.detail if m.kind != EMPTY else "", m.note if m.kind != EMPTY else "") if x])
        for m in card.metrics
    ]
    if quality:
        out.append(("Quality", quality))
    if card.rates:
        out.append(("Errors", [(r.kind, label(r.kind, card.b, "fewer errors", "more errors"), _rate_parts(card, r),
                                [r.note] if r.note and r.kind != EMPTY else []) for r in card.rates]))
    if card.cost is not None:
        c = card.cost
        out.append(("Cost", [(c.kind, label(c.kind, card.b, "cheaper", "costlier"), _cost_parts(card, c),
                              [c.note] if c.note and c.kind != EMPTY else [])]))
    if card.latency:
        out.append(("Latency", [(lat.kind, label(lat.kind, card.b, "faster", "slower"), _latency_parts(card, lat), [])
                                for lat in card.latency]))
    if card.preference is not None:
        p = card.preference
        out.append(("Human preference", [(p.kind, label(p.kind, card.b, "preferred", "less preferred"),
                                          _preference_parts(card, p), [])]))
    return out


def _subtitle(card: Card) -> str:
    bits = [card.status] if card.status else []
    if not card.empty:
        bits.append(f"{card.confidence * 100:g}% confidence intervals")
        if card.adjusted:
            bits.append(f"p-values adjusted by {card.adjusted}")
    return "; ".join(bits)


# -- text -------------------------------------------------------------------------------------


def text(card: Card) -> str:
    """The card as plain text for a terminal: one line per metric, badge first."""
    lines = [f"{card.title}: {card.b} vs {card.a}" + ("  [simulated provider]" if card.simulated else "")]
    sub = _subtitle(card)
    if sub:
        lines.append(sub)
    lines.extend(f"[{c.badge}] {c.text}" for c in card.checks)
    if card.empty:
        lines.append(card.empty)
        lines.extend(f"note: {n}" for n in card.notes)
        return "\n".join(lines)
    sections = _sections(card)
    width = max((len(row[1]) for _, rows in sections for row in rows), default=0)
    for heading, rows in sections:
        lines.append(heading.lower())
        for _, badge, parts, subs in rows:
            lines.append(f"  {badge:<{width}}  " + _line(parts))
            lines.extend(f"  {'':<{width}}    {s}" for s in subs)
    lines.extend(f"note: {n}" for n in card.notes)
    return "\n".join(lines)


# -- HTML -------------------------------------------------------------------------------------

_NOWRAP = "white-space:nowrap"


def badge_html(kind: str, text_: str) -> str:
    """A coloured pill; its text never wraps."""
    fg, bg, border = COLOURS[kind]
    return (
        f'<span class="wb-badge wb-badge-{kind}" style="display:inline-block;{_NOWRAP};padding:1px 8px;'
        f'border-radius:10px;border:1px solid {border};background:{bg};color:{fg};font-weight:600;'
        f'font-size:12px;line-height:18px">{_html.esc(text_)}</span>'
    )


WRAP_AT = 40
"""Pieces longer than this are sentences (``too few to detect ...``) and may wrap between words; a number
never holds a space, so it still never splits."""


def _pieces(parts: list[str]) -> str:
    # Each piece keeps its numbers together ("p<0.001" never splits); lines break between pieces.
    out = ""
    for i, p in enumerate(parts):
        sep = "" if i == 0 else " " if p.startswith("(") or parts[i - 1].endswith(":") else ", "
        if i == 0 and p.endswith(":"):
            out += f"<b>{_html.esc(p[:-1])}</b>:"
            continue
        style = "" if len(p) > WRAP_AT else f' style="{_NOWRAP}"'
        out += f"{sep}<span{style}>{_html.esc(p)}</span>"
    return out


def html(card: Card, *, wrap: bool = True) -> str:
    """The card as HTML: inline styles only, fits 1024 px, text escaped.

    Args:
        card: What to show.
        wrap: Wrap it in ``_html.root`` (off when the caller's page wraps it).
    """
    muted = "color:#52606d"
    head = (
        f'<div style="display:flex;flex-wrap:wrap;gap:4px 10px;align-items:baseline">'
        f'<span style="font-size:16px;font-weight:700">{_html.esc(card.b)} vs {_html.esc(card.a)}</span>'
        f'<span style="{muted}">{_html.esc(card.title)}</span>'
        + (badge_html(UNDERPOWERED, "simulated provider") if card.simulated else "")
        + "</div>"
    )
    sub = _subtitle(card)
    body = [head]
    if sub:
        body.append(f'<div style="{muted};font-size:12px;margin-top:2px">{_html.esc(sub)}</div>')
    if card.simulated:
        body.append(
            '<div style="color:#7a4a00;font-size:12px">Simulated provider: these numbers describe a declared '
            "simulation, not a real model.</div>"
        )
    for c in card.checks:
        body.append(
            f'<div class="wb-check" style="margin-top:6px">{badge_html(c.kind, c.badge)} '
            f'<span class="wb-line">{_html.esc(c.text)}</span></div>'
        )
    if card.empty:
        body.append(
            f'<div class="wb-empty" style="margin-top:10px;font-size:14px">{badge_html(EMPTY, "no data")} '
            f"<b>{_html.esc(card.empty)}</b></div>"
        )
    else:
        # One grid for every section, so the badges form one column and the text lines up.
        grid = []
        for heading, rows in _sections(card):
            grid.append(
                f'<div style="grid-column:1/-1;margin-top:8px;font-weight:600;font-size:12px;text-transform:uppercase;'
                f'letter-spacing:.04em;{muted}">{_html.esc(heading)}</div>'
            )
            for kind, badge, parts, subs in rows:
                sub_html = "".join(f'<div style="{muted};font-size:12px">{_pieces([s])}</div>' for s in subs)
                grid.append(
                    f"<div>{badge_html(kind, badge)}</div>"
                    f'<div class="wb-line" style="min-width:0">{_pieces(parts)}{sub_html}</div>'
                )
        body.append(
            '<div style="display:grid;grid-template-columns:max-content minmax(0,1fr);gap:4px 10px;'
            f'align-items:baseline;margin-top:2px">{"".join(grid)}</div>'
        )
    if card.notes:
        body.append(
            f'<ul style="margin:10px 0 0;padding-left:18px;{muted};font-size:12px">'
            + "".join(f"<li>{_html.esc(n)}</li>" for n in card.notes)
            + "</ul>"
        )
    if card.details_html:
        body.append(card.details_html)
    style = (
        "font:13px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2933;background:#fff;"
        "border:1px solid #d9dee5;border-radius:8px;padding:12px 14px;max-width:100%;box-sizing:border-box;"
        "overflow-wrap:anywhere"
    )
    inner = "".join(body)
    if wrap:
        return _html.root(inner, cls="wb-card", style=style)
    return f'<div class="wb-card" style="{style}">{inner}</div>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A compact table with inline styles (the card carries no stylesheet): first column text, the rest numbers."""
    cell = "padding:2px 8px;border-bottom:1px solid #e4e7eb;"

    def align(i: int) -> str:
        return "left" if i == 0 else "right"

    head = "".join(f'<th style="{cell}text-align:{align(i)};background:#eef1f5">{_html.esc(h)}</th>' for i, h in enumerate(headers))
    # Cells may wrap between words ("−292 to" / "−15 ms"), so a narrow notebook column needs no scroll bar;
    # a number itself has no space to break at.
    body = "".join(
        "<tr>" + "".join(f'<td style="{cell}text-align:{align(i)};font-variant-numeric:tabular-nums">{_html.esc(c)}</td>'
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (f'<table style="border-collapse:collapse;font-size:12px;margin:2px 0 8px">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def details(summary: str, content: str) -> str:
    """A collapsed section; ``content`` must be escaped HTML."""
    return (
        '<details style="margin-top:10px"><summary style="cursor:pointer;color:#52606d;font-size:12px">'
        f"{_html.esc(summary)}</summary>"
        f'<div style="overflow-x:auto;max-width:100%">{content}</div></details>'
    )
