"""Altair chart builders over workbench frames (the views layer), and how notebooks draw them.

Each builder takes a Polars frame (from `frames` or `stats`), aggregates or
bins it in Polars first, and returns an Altair chart the caller can keep
chaining (``.properties(width=600)``, ``.interactive()``, ``|``, ``&``).
Because only aggregates reach Altair, no chart carries more than a few
thousand rows whatever the input size, and Altair's 5,000-row limit never
trips::

    charts.use_theme()
    charts.enable_offline()                      # draws in JupyterLab with no network
    charts.latency(frames.traces_df(store), by="variant")
    charts.timeseries(frames.metrics(store, every="1h"))

Builders that take traces use the model calls only (``kind == 'llm'``) when
the frame has a ``kind`` column.

Names people or models type (item ids, variants, scorers, models, prompt
names) reach Vega as data only: as values in a chart's datasets, or as
literal title text. They never become a field name or part of a Vega
expression (axis, legend and tooltip titles end up inside the ARIA
description and tooltip expressions Vega-Lite generates, so those titles
come from this module's own words, never from data).

In a notebook a chart is shown as a data-only mime bundle (`mimebundle`):
the chart compiled to a Vega 5 spec, which JupyterLab draws with the Vega it
bundles, plus a static image for other front ends. No script is sent, so any
number of charts draw, in trusted and untrusted notebooks alike.
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import altair as alt
import numpy as np
import polars as pl

from .errors import ConfigError

__all__ = [
    "MAX_POINTS",
    "MAX_ROWS",
    "RENDERER",
    "THEME",
    "VEGA_MIME",
    "alert_spans",
    "cost_per_item",
    "cost_quality",
    "embed_spec",
    "enable_offline",
    "latency",
    "mimebundle",
    "paired_differences",
    "pareto_front",
    "quality",
    "savings",
    "timeseries",
    "to_html",
    "tokens",
    "use_theme",
]

THEME = "workbench"
"""Name of the registered Altair theme; `use_theme` enables it."""
MAX_POINTS = 2_000
"""Most per-item marks a chart draws; longer inputs are thinned evenly by rank."""
MAX_ROWS = 5_000
"""Altair's default row limit; a time series longer than this asks for coarser buckets."""

_FONT = "Inter, 'Helvetica Neue', Helvetica, Arial, 'Liberation Sans', sans-serif"
# Okabe-Ito, reordered so the first colours are the most distinct on white.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#F0E442")
_GROUP = "group"
"""Internal field holding the group label; axes and legends show the real column name."""


@alt.theme.register(THEME, enable=False)
def _workbench_theme() -> alt.theme.ThemeConfig:
    label, title = 12, 13
    return {
        "config": {
            "font": _FONT,
            "background": "white",
            "title": {"fontSize": 15, "fontWeight": 600, "anchor": "start", "subtitleFontSize": 12,
                      "subtitleColor": "#555555", "offset": 8},
            "axis": {"labelFontSize": label, "titleFontSize": title, "titleFontWeight": 500,
                     "labelColor": "#333333", "titleColor": "#333333", "gridColor": "#e8e8e8",
                     "domainColor": "#888888", "tickColor": "#888888"},
            "legend": {"labelFontSize": label, "titleFontSize": title, "titleFontWeight": 500},
            "header": {"labelFontSize": label, "titleFontSize": title},
            "range": {"category": list(_PALETTE)},
            "view": {"continuousWidth": 480, "continuousHeight": 260, "stroke": None},
        }
    }


def use_theme() -> str:
    """Enable the workbench theme for every chart drawn after; returns its name."""
    alt.theme.enable(THEME)
    return THEME


# -- how notebooks draw charts ---------------------------------------------------------------

RENDERER = "workbench"
"""Name of the Altair renderer `enable_offline` turns on (``alt.renderers.enable("workbench")``)."""
VEGA_MIME = "application/vnd.vega.v5+json"
"""The mime type JupyterLab 4 draws with its own bundled Vega 5: offline, and in untrusted notebooks too."""
VEGA_LITE_FOR_VEGA5 = "5.21"
"""The Vega-Lite that compiles a chart for `VEGA_MIME`: the newest 5.x that vl-convert ships, whose
output targets Vega 5. Altair 6 writes Vega-Lite 6 specs; JupyterLab 4.6 bundles Vega 5.33 and
Vega-Lite 5.6.1, and labels only v3 to v5 Vega-Lite as its own."""
EMBED_OPTIONS: dict[str, Any] = {
    "renderer": "svg",
    # vega-embed's "View Source" and "View Compiled Vega" write the spec, data and all, into a
    # new same-origin window unescaped: a hostile name would run there. "Open in Vega Editor"
    # posts the data to a website. Only the image exports stay.
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}
"""vega-embed options JupyterLab reads from the output's metadata."""
FALLBACKS = ("svg", "png", None)
"""Static images a chart's bundle can carry for front ends that do not draw Vega."""
DEFAULT_FALLBACK = "svg"
"""SVG: for the demo's charts 16 to 69 KB and 50 to 180 ms each, where vl-convert's PNGs are 34 to
380 KB and up to 0.3 s (``python -m bench charts``). JupyterLab stores a PNG of its own beside it
when a drawn chart is saved."""


def mimebundle(
    chart: alt.TopLevelMixin | dict[str, Any], *, fallback: str | None = DEFAULT_FALLBACK
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A chart as a notebook output that carries data only: ``(data, metadata)``.

    ``data`` holds the chart compiled to a Vega 5 spec (`VEGA_MIME`, which
    JupyterLab draws interactively with its own Vega, no script sent), a
    static ``image/svg+xml`` (or ``image/png``) for other front ends (GitHub,
    nbconvert) unless ``fallback`` is None, and ``text/plain``. A chart that
    Vega-Lite 5 cannot compile (one using Vega-Lite 6 features) comes as a
    static image drawn by Vega-Lite 6 instead, and its text says so.
    """
    import vl_convert as vlc

    _check_fallback(fallback)
    spec = chart if isinstance(chart, dict) else chart.to_dict()
    text = f"<chart: {_spec_title(spec)}>"
    try:
        vega = vlc.vegalite_to_vega(spec, vl_version=VEGA_LITE_FOR_VEGA5)
    except ValueError as exc:
        note = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text += f" (static: Vega-Lite {VEGA_LITE_FOR_VEGA5} cannot compile it for JupyterLab: {note})"
        if fallback == "png":
            return {"image/png": base64.b64encode(vlc.vegalite_to_png(spec)).decode("ascii"), "text/plain": text}, {}
        return {"image/svg+xml": vlc.vegalite_to_svg(spec), "text/plain": text}, {}
    data: dict[str, Any] = {VEGA_MIME: vega}
    if fallback == "png":
        data["image/png"] = base64.b64encode(vlc.vega_to_png(vega)).decode("ascii")
    elif fallback == "svg":
        data["image/svg+xml"] = vlc.vega_to_svg(vega)
    data["text/plain"] = text
    return data, {VEGA_MIME: {"embed_options": EMBED_OPTIONS}}


def _check_fallback(fallback: Any) -> None:
    if fallback not in FALLBACKS:
        raise ConfigError(f"fallback must be 'svg', 'png' or None, not {fallback!r}")


def _spec_title(spec: dict[str, Any]) -> str:
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    if isinstance(title, list):
        title = " ".join(map(str, title))
    return str(title) if title else "Vega-Lite chart"


def _render(spec: dict[str, Any], fallback: str | None = DEFAULT_FALLBACK) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Altair renderer registered as `RENDERER`."""
    return mimebundle(spec, fallback=fallback)


alt.renderers.register(RENDERER, _render)


def enable_offline(renderer: str = "vega", *, fallback: str | None = DEFAULT_FALLBACK) -> str:
    """Make Altair draw every chart in notebooks with no network; returns the renderer's name.

    ``"vega"`` (the default) enables the `RENDERER` renderer: each chart is a
    data-only bundle (`mimebundle`) that JupyterLab draws interactively,
    any number per notebook, after a restart and in untrusted notebooks,
    with a static ``fallback`` image for other front ends. ``"svg"`` and
    ``"png"`` render static images through vl-convert instead.

    Refused, with the reason: ``"html"`` (Vega's JavaScript inlined in each
    output: only the first chart of a notebook draws, an untrusted notebook
    draws none, and a name containing ``</script>`` runs as script),
    ``"mimetype"`` (Altair 6 labels its output Vega-Lite v6, which JupyterLab
    cannot draw and nbclient rejects) and ``"jupyter"`` (blank when a saved
    notebook is reopened; about 925 KB per chart).
    """
    if renderer == "vega":
        _check_fallback(fallback)
        alt.renderers.enable(RENDERER, fallback=fallback)
        return RENDERER
    if renderer in ("svg", "png"):
        alt.renderers.enable(renderer)
        return renderer
    why = {
        "html": "only the first chart of a notebook draws, untrusted notebooks draw none, and names "
                "containing </script> run as script",
        "mimetype": "Altair 6 labels it Vega-Lite v6: JupyterLab cannot draw it and nbclient rejects the notebook",
        "jupyter": "its charts are blank when a saved notebook is reopened, at about 925 KB each "
                   "(alt.renderers.enable('jupyter', offline=True) turns it on if you need it)",
    }.get(renderer, "it does not draw offline")
    raise ConfigError(f"renderer {renderer!r} is not offered: {why}; choose 'vega' (interactive), 'svg' or 'png'")


def to_html(chart: alt.TopLevelMixin) -> str:
    """A standalone HTML page for ``chart`` with Vega's JavaScript inlined (opens offline)."""
    return chart.to_html(inline=True)


def embed_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec (validated), with its data, for embedding in a report."""
    return chart.to_dict()


# -- input helpers ---------------------------------------------------------------------------


def _frame(data: Any, required: Iterable[str], fn: str) -> pl.DataFrame:
    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    if not isinstance(data, pl.DataFrame):
        try:
            data = pl.DataFrame(data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{fn}() takes a Polars frame (or rows it can build one from): {exc}") from None
    missing = [c for c in required if c not in data.columns]
    if missing:
        raise ConfigError(
            f"{fn}() needs column(s) {', '.join(missing)}; the frame has: {', '.join(data.columns) or 'none'}"
        )
    return data


_PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE_TITLE = re.compile(r"[^\w .,:;/()%+\-\u2212#@&*=]")


def _label(text: str) -> str:
    """``text`` fit for an axis, legend or tooltip title: those land inside Vega expressions.

    Only column names reach here (the titles of data never do); anything but
    letters, digits, spaces and plain punctuation is dropped, so no quote,
    backslash or line separator can end an expression's string early.
    """
    return _UNSAFE_TITLE.sub("", text).strip() or "value"


def _keys(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _with_group(df: pl.DataFrame, keys: list[str]) -> tuple[pl.DataFrame, str]:
    """Adds the ``group`` label column (keys joined by ' / ', null as '(none)')."""
    if not keys:
        return df.with_columns(pl.lit("all").alias(_GROUP)), "all"
    parts = [pl.col(k).cast(pl.String).fill_null("(none)") for k in keys]
    label = parts[0] if len(parts) == 1 else pl.concat_str(parts, separator=" / ")
    return df.with_columns(label.alias(_GROUP)), _label(" / ".join(keys))


def _calls(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("kind") == "llm") if "kind" in df.columns else df


def _group_color(title: str, legend: bool) -> alt.Color:
    return alt.Color(f"{_GROUP}:N", title=title, legend=alt.Legend() if legend else None)


# -- traces ----------------------------------------------------------------------------------


def latency(
    traces: pl.DataFrame,
    by: str | Sequence[str] | None = "variant",
    log: bool = True,
    bins: int = 40,
    ok_only: bool = True,
) -> alt.LayerChart:
    """Histogram of ``latency_ms`` per group with p50 and p95 rules.

    Bins are shared by every group (equal widths on a log10 scale when
    ``log``) and counted in Polars; rules mark each group's exact p50 and
    p95. With ``ok_only`` and a ``status`` column only ok calls count, as in
    `frames.metrics`. Null latencies (and, on a log scale, zero ones) are left out.
    """
    keys = _keys(by)
    if bins < 1:
        raise ConfigError(f"bins must be at least 1, not {bins}")
    df = _calls(_frame(traces, ["latency_ms", *keys], "latency"))
    if ok_only and "status" in df.columns:
        df = df.filter(pl.col("status") == "ok")
    df, title = _with_group(df, keys)
    df = df.select(_GROUP, pl.col("latency_ms").cast(pl.Float64)).drop_nulls("latency_ms")
    df = df.filter(pl.col("latency_ms").is_finite() & ((pl.col("latency_ms") > 0) if log else pl.lit(True)))

    x = pl.col("latency_ms").log10() if log else pl.col("latency_ms")
    if df.height:
        lo, hi = df.select(x.min().alias("lo"), x.max().alias("hi")).row(0)
    else:
        lo, hi = (0.0, 3.0) if log else (0.0, 1000.0)
    if hi - lo < 1e-9:  # one distinct value: give its bin some width
        pad = 0.05 if log else max(abs(lo) * 0.05, 0.5)
        lo, hi = lo - pad, hi + pad
    width = (hi - lo) / bins
    hist = (
        df.with_columns(((x - lo) / width).floor().clip(0, bins - 1).cast(pl.Int64).alias("bin"))
        .group_by(_GROUP, "bin")
        .agg(pl.len().alias("calls"))
        .with_columns(
            (pl.col("calls") / pl.col("calls").sum().over(_GROUP)).alias("share"),
            (lo + pl.col("bin") * width).alias("start"),
            (lo + (pl.col("bin") + 1) * width).alias("end"),
        )
    )
    if log:
        hist = hist.with_columns(pl.lit(10.0).pow(pl.col(c)).alias(c) for c in ("start", "end"))
    hist = hist.rename({"start": "from_ms", "end": "to_ms"}).drop("bin").sort(_GROUP, "from_ms")
    stats = (
        df.group_by(_GROUP)
        .agg(
            pl.col("latency_ms").quantile(0.5, interpolation="linear").alias("p50"),
            pl.col("latency_ms").quantile(0.95, interpolation="linear").alias("p95"),
            pl.len().alias("calls"),
        )
        .unpivot(index=[_GROUP, "calls"], on=["p50", "p95"], variable_name="percentile", value_name="latency_ms")
        .sort(_GROUP, "percentile")
    )

    # The bins span the data: a "nice" log domain would pad it out to whole powers of ten.
    scale = alt.Scale(type="log", nice=False) if log else alt.Scale(zero=False)
    x_title = "latency (ms, log scale)" if log else "latency (ms)"
    color = _group_color(title, bool(keys))
    bars = (
        alt.Chart(hist)
        .mark_rect(opacity=0.5)
        .encode(
            x=alt.X("from_ms:Q", scale=scale, title=x_title),
            x2="to_ms:Q",
            y=alt.Y("calls:Q", title="calls", axis=alt.Axis(tickMinStep=1, format=",d")),
            y2=alt.datum(0),
            color=color,
            tooltip=[
                alt.Tooltip(f"{_GROUP}:N", title=title),
                alt.Tooltip("from_ms:Q", title="from (ms)", format=",.1f"),
                alt.Tooltip("to_ms:Q", title="to (ms)", format=",.1f"),
                alt.Tooltip("calls:Q", format=","),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
    )
    rules = (
        alt.Chart(stats)
        .mark_rule(strokeWidth=2)
        .encode(
            x=alt.X("latency_ms:Q", scale=scale),
            color=color,
            strokeDash=alt.StrokeDash(
                "percentile:N", title="percentile",
                scale=alt.Scale(domain=["p50", "p95"], range=[[1, 0], [6, 3]]),
            ),
            tooltip=[
                alt.Tooltip(f"{_GROUP}:N", title=title),
                alt.Tooltip("percentile:N"),
                alt.Tooltip("latency_ms:Q", title="latency (ms)", format=",.1f"),
                alt.Tooltip("calls:Q", format=","),
            ],
        )
    )
    return alt.layer(bars, rules).properties(
        title=alt.Title("Latency per call", subtitle="histogram with p50 (solid) and p95 (dashed)")
    )


def cost_per_item(traces: pl.DataFrame, by: str | Sequence[str] | None = "variant") -> alt.LayerChart:
    """Distribution over items of the mean cost per call, as a box per group.

    Per item and group, cost is the sum of ``cost_usd`` over its repeats
    divided by the number of priced repeats; the box spans the quartiles,
    the whisker min to max, the tick marks the median and the diamond the
    mean. Items with no priced call are left out (and counted in the tooltip).
    """
    keys = _keys(by)
    df = _calls(_frame(traces, ["item_id", "cost_usd", *keys], "cost_per_item"))
    df, title = _with_group(df, keys)
    per_item = (
        df.filter(pl.col("item_id").is_not_null())
        .group_by(_GROUP, "item_id")
        .agg(pl.col("cost_usd").cast(pl.Float64).mean().alias("cost"))
    )
    stats = (
        per_item.group_by(_GROUP)
        .agg(
            pl.col("cost").count().alias("items"),
            pl.col("cost").null_count().alias("unpriced_items"),
            pl.col("cost").min().alias("min"),
            pl.col("cost").quantile(0.25, interpolation="linear").alias("q1"),
            pl.col("cost").quantile(0.5, interpolation="linear").alias("median"),
            pl.col("cost").quantile(0.75, interpolation="linear").alias("q3"),
            pl.col("cost").max().alias("max"),
            pl.col("cost").mean().alias("mean"),
        )
        .filter(pl.col("items") > 0)
        .sort(_GROUP)
    )
    y = alt.Y(f"{_GROUP}:N", title=title if keys else None)
    x_title = "cost per item (USD, mean per call)"
    fmt = "$.3~g"
    tooltip = [
        alt.Tooltip(f"{_GROUP}:N", title=title),
        alt.Tooltip("items:Q", format=","),
        alt.Tooltip("unpriced_items:Q", title="items with no price"),
        *(alt.Tooltip(f"{c}:Q", format=fmt) for c in ("min", "q1", "median", "q3", "max", "mean")),
    ]
    color = _group_color(title, False)
    base = alt.Chart().encode(y=y, tooltip=tooltip)
    whisker = base.mark_rule(color="#666666").encode(
        x=alt.X("min:Q", title=x_title, axis=alt.Axis(format=fmt)), x2="max:Q"
    )
    box = base.mark_bar(size=16, opacity=0.8).encode(x="q1:Q", x2="q3:Q", color=color)
    median = base.mark_tick(color="white", thickness=2, size=16).encode(x="median:Q")
    mean = base.mark_point(shape="diamond", filled=True, color="black", size=50).encode(x="mean:Q")
    return alt.layer(whisker, box, median, mean, data=stats).properties(
        title=alt.Title("Cost per item", subtitle="box: quartiles; whisker: min to max; tick: median; diamond: mean")
    )


_TOKEN_PARTS = (
    ("input_tokens", "input"),
    ("cache_read_tokens", "cache read"),
    ("cache_write_tokens", "cache write"),
    ("output_tokens", "output"),
)


def tokens(traces: pl.DataFrame, by: str | Sequence[str] | None = "variant") -> alt.Chart:
    """Stacked bars of the mean input, cache-read, cache-write and output tokens per call.

    Calls that reported no usage at all are left out; a missing cache count
    on a call that reported usage counts as 0.
    """
    keys = _keys(by)
    cols = [c for c, _ in _TOKEN_PARTS]
    df = _calls(_frame(traces, [*cols, *keys], "tokens"))
    df, title = _with_group(df, keys)
    reported = pl.any_horizontal(pl.col(c).is_not_null() for c in cols)
    means = (
        df.filter(reported)
        .group_by(_GROUP)
        .agg(pl.len().alias("calls"), *(pl.col(c).fill_null(0).mean().alias(label) for c, label in _TOKEN_PARTS))
        .unpivot(index=[_GROUP, "calls"], on=[label for _, label in _TOKEN_PARTS],
                 variable_name="tokens", value_name="mean_tokens")
        .with_columns(
            pl.col("tokens").replace_strict({label: i for i, (_, label) in enumerate(_TOKEN_PARTS)},
                                            return_dtype=pl.Int64).alias("order")
        )
        .sort(_GROUP, "order")
    )
    labels = [label for _, label in _TOKEN_PARTS]
    return (
        alt.Chart(means)
        .mark_bar()
        .encode(
            y=alt.Y(f"{_GROUP}:N", title=title if keys else None),
            x=alt.X("mean_tokens:Q", stack="zero", title="tokens per call (mean)"),
            color=alt.Color("tokens:N", title="tokens", scale=alt.Scale(domain=labels), sort=labels),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip(f"{_GROUP}:N", title=title),
                alt.Tooltip("tokens:N"),
                alt.Tooltip("mean_tokens:Q", title="mean tokens", format=",.1f"),
                alt.Tooltip("calls:Q", format=","),
            ],
        )
        .properties(title="Tokens per call")
    )


# -- evaluation results ----------------------------------------------------------------------


def quality(scores_summary: pl.DataFrame, scorer: str | Sequence[str] | None = None) -> alt.LayerChart:
    """Mean score per variant with its 95% interval, one colour per scorer.

    Input: a long frame with columns variant, scorer, mean, ci_low, ci_high, n
    (one row per variant and scorer). ``scorer`` keeps only the named scorer(s).
    """
    df = _frame(scores_summary, ["variant", "scorer", "mean", "ci_low", "ci_high", "n"], "quality")
    if scorer is not None:
        wanted = _keys(scorer)
        known = df["scorer"].unique().sort().to_list()
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise ConfigError(
                f"no scorer {', '.join(map(repr, unknown))} in the summary; scorers: {', '.join(map(str, known))}"
            )
        df = df.filter(pl.col("scorer").is_in(wanted))
    df = df.select(
        pl.col("variant").cast(pl.String), pl.col("scorer").cast(pl.String),
        pl.col("mean", "ci_low", "ci_high").cast(pl.Float64), pl.col("n"),
    ).sort("variant", "scorer")
    several = df["scorer"].n_unique() > 1
    base = alt.Chart().encode(
        y=alt.Y("variant:N", title="variant"),
        yOffset=alt.YOffset("scorer:N") if several else alt.Undefined,
        color=alt.Color("scorer:N", title="scorer"),
        tooltip=[
            alt.Tooltip("variant:N"), alt.Tooltip("scorer:N"),
            alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("ci_low:Q", title="95% CI low", format=".3f"),
            alt.Tooltip("ci_high:Q", title="95% CI high", format=".3f"), alt.Tooltip("n:Q", title="items"),
        ],
    )
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("ci_low:Q", title="score (mean and 95% CI)", scale=alt.Scale(zero=False)), x2="ci_high:Q"
    )
    points = base.mark_point(filled=True, size=70, opacity=1).encode(x="mean:Q")
    return alt.layer(bars, points, data=df).properties(title="Quality per variant")


def paired_differences(
    item_scores: pl.DataFrame, a: str, b: str, scorer: str, max_points: int = MAX_POINTS
) -> alt.LayerChart:
    """Per-item difference ``b - a`` of one scorer, sorted, with zero and mean rules.

    Input: a long frame with columns item_id, variant, scorer, value (the
    per-item mean over repeats; repeats left in are averaged here). Only
    items scored under both variants count. Beyond ``max_points`` items the
    sorted curve is drawn from evenly spaced ranks (the mean uses every item).
    """
    df = _frame(item_scores, ["item_id", "variant", "scorer", "value"], "paired_differences")
    scorers = df["scorer"].unique().drop_nulls().sort().to_list()
    if scorer not in scorers:
        raise ConfigError(f"no scorer {scorer!r} in the item scores; scorers: {', '.join(map(str, scorers))}")
    df = df.filter(pl.col("scorer") == scorer)
    variants = df["variant"].unique().drop_nulls().sort().to_list()
    for v in (a, b):
        if v not in variants:
            raise ConfigError(f"no variant {v!r} scored by {scorer!r}; variants: {', '.join(map(str, variants))}")
    if a == b:
        raise ConfigError(f"paired_differences() compares two different variants; a and b are both {a!r}")

    def per_item(v: str, name: str) -> pl.DataFrame:
        return (
            df.filter(pl.col("variant") == v)
            .group_by("item_id")
            .agg(pl.col("value").cast(pl.Float64).mean().alias(name))
        )

    pairs = (
        per_item(a, "a").join(per_item(b, "b"), on="item_id", how="inner")
        .drop_nulls(["a", "b"])
        .with_columns((pl.col("b") - pl.col("a")).alias("difference"))
        .sort("difference", "item_id")
        .with_row_index("rank", offset=1)
    )
    n = pairs.height
    mean = float(pairs["difference"].mean()) if n else float("nan")  # type: ignore[arg-type]
    shown = pairs
    if n > max_points:
        idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
        shown = pairs[idx]
    better = pl.when(pl.col("difference") > 0).then(pl.lit(f"{b} better")).when(
        pl.col("difference") < 0).then(pl.lit(f"{a} better")).otherwise(pl.lit("tie"))
    # The variant names ride along as data, for the tooltip: a title made of them would
    # land inside the tooltip and ARIA expressions Vega-Lite writes.
    shown = shown.with_columns(
        better.alias("outcome"), pl.col("item_id").cast(pl.String),
        pl.lit(a, dtype=pl.String).alias("variant_a"), pl.lit(b, dtype=pl.String).alias("variant_b"),
    )
    outcomes = [f"{b} better", "tie", f"{a} better"]

    x = alt.X("rank:Q", title="items, sorted by difference", scale=alt.Scale(domain=[0, max(n, 1) + 1], nice=False))
    color = alt.Color(
        "outcome:N", title=None, scale=alt.Scale(domain=outcomes, range=["#0072B2", "#999999", "#D55E00"])
    )
    tooltip = [
        alt.Tooltip("item_id:N", title="item"),
        alt.Tooltip("variant_a:N", title="variant a"), alt.Tooltip("a:Q", title="score a", format=".3f"),
        alt.Tooltip("variant_b:N", title="variant b"), alt.Tooltip("b:Q", title="score b", format=".3f"),
        alt.Tooltip("difference:Q", title="difference (b − a)", format="+.3f"),
    ]
    stems = alt.Chart(shown).mark_rule(opacity=0.5).encode(
        x=x, y=alt.Y("difference:Q", title="score difference (b − a)"), y2=alt.datum(0), color=color
    )
    dots = alt.Chart(shown).mark_circle(size=28 if len(shown) <= 300 else 10, opacity=0.9).encode(
        x=x, y="difference:Q", color=color, tooltip=tooltip
    )
    lines = pl.DataFrame(
        {"y": [0.0, mean], "what": ["zero", "mean"], "label": ["", f"mean {mean:+.3f} (n={n})" if n else ""]}
    )
    rules = alt.Chart(lines).mark_rule().encode(
        y="y:Q",
        strokeDash=alt.StrokeDash(
            "what:N", legend=None, scale=alt.Scale(domain=["zero", "mean"], range=[[1, 0], [6, 3]])
        ),
        color=alt.value("#333333"),
    )
    label = (
        alt.Chart(lines)
        .mark_text(align="left", dx=4, dy=-6, fontSize=11)
        .encode(x=alt.value(4), y="y:Q", text="label:N")
        .transform_filter(alt.datum.what == "mean")
    )
    subtitle = f"{n:,} items scored under both" + (f"; {len(shown):,} shown, evenly by rank" if n > max_points else "")
    return alt.layer(stems, dots, rules, label).properties(
        title=alt.Title(f"Paired differences: {b} − {a} ({scorer})", subtitle=subtitle)
    )


def pareto_front(points: pl.DataFrame) -> pl.DataFrame:
    """``points`` with a boolean ``pareto`` column: no other point is as cheap and as good, and better in one.

    Lower ``cost_per_item`` and higher ``quality`` dominate. Points missing
    either value are never on the front. Identical points share their fate.
    """
    df = _frame(points, ["cost_per_item", "quality"], "pareto_front")
    cost = df["cost_per_item"].cast(pl.Float64).to_numpy()
    qual = df["quality"].cast(pl.Float64).to_numpy()
    front = np.zeros(df.height, dtype=bool)
    usable = np.flatnonzero(~(np.isnan(cost) | np.isnan(qual)))
    # Cheapest first, best first among equal cost: a point is on the front
    # when it beats every cheaper one's quality (or ties the best exactly).
    order = usable[np.lexsort((-qual[usable], cost[usable]))]
    best_q, best_c = -np.inf, np.nan
    for i in order:
        if qual[i] > best_q:
            front[i], best_q, best_c = True, qual[i], cost[i]
        elif qual[i] == best_q and cost[i] == best_c:
            front[i] = True
    return df.with_columns(pl.Series("pareto", front))


def cost_quality(points: pl.DataFrame) -> alt.LayerChart:
    """Quality against cost per item, with 95% intervals and the Pareto front marked.

    Input: columns variant, cost_per_item, quality, ci_low, ci_high (one row
    per variant). Front points are filled and joined by a line, cheapest first.
    """
    df = pareto_front(_frame(points, ["variant", "cost_per_item", "quality", "ci_low", "ci_high"], "cost_quality"))
    df = df.select(
        pl.col("variant").cast(pl.String),
        pl.col("cost_per_item", "quality", "ci_low", "ci_high").cast(pl.Float64),
        "pareto",
    ).drop_nulls(["cost_per_item", "quality"]).sort("cost_per_item")
    df = df.with_columns(pl.when("pareto").then(pl.lit("Pareto front")).otherwise(pl.lit("dominated")).alias("front"))
    fmt = "$.3~g"
    x = alt.X("cost_per_item:Q", title="cost per item (USD)", scale=alt.Scale(zero=False), axis=alt.Axis(format=fmt))
    y = alt.Y("quality:Q", title="quality (mean and 95% CI)", scale=alt.Scale(zero=False))
    tooltip = [
        alt.Tooltip("variant:N"), alt.Tooltip("cost_per_item:Q", title="cost per item (USD)", format=fmt),
        alt.Tooltip("quality:Q", format=".3f"), alt.Tooltip("ci_low:Q", title="95% CI low", format=".3f"),
        alt.Tooltip("ci_high:Q", title="95% CI high", format=".3f"), alt.Tooltip("front:N"),
    ]
    front_color = alt.Color(
        "front:N", title=None, scale=alt.Scale(domain=["Pareto front", "dominated"], range=["#0072B2", "#999999"])
    )
    base = alt.Chart()
    line = (
        base.mark_line(strokeDash=[4, 3], color="#0072B2")
        .encode(x=x, y=y, order="cost_per_item:Q")
        .transform_filter(alt.datum.pareto == True)  # noqa: E712 - a Vega expression, not Python truthiness
    )
    bars = base.mark_rule(opacity=0.6).encode(x=x, y="ci_low:Q", y2="ci_high:Q", color=front_color)
    dots = base.mark_point(size=90, filled=True, opacity=1).encode(x=x, y=y, color=front_color, tooltip=tooltip)
    labels = base.mark_text(align="left", dx=7, dy=-7, fontSize=11).encode(x=x, y=y, text="variant:N")
    return alt.layer(line, bars, dots, labels, data=df).properties(
        title=alt.Title("Cost and quality", subtitle="up and to the left is better")
    )


# -- time series -----------------------------------------------------------------------------

_FIELD_TITLES = {
    "requests": ("requests", ",d"),
    "errors": ("errors", ",d"),
    "error_rate": ("error rate", ".1%"),
    "input_tokens": ("input tokens", ",d"),
    "output_tokens": ("output tokens", ",d"),
    "cache_read_tokens": ("cache-read tokens", ",d"),
    "cache_write_tokens": ("cache-write tokens", ",d"),
    "cost_usd": ("cost (USD)", "$.3~g"),
    "unpriced": ("unpriced calls", ",d"),
    "latency_mean": ("latency mean (ms)", ",.0f"),
    "latency_p50": ("latency p50 (ms)", ",.0f"),
    "latency_p95": ("latency p95 (ms)", ",.0f"),
    "latency_p99": ("latency p99 (ms)", ",.0f"),
    "ttft_p50": ("ttft p50 (ms)", ",.0f"),
    "ttft_p95": ("ttft p95 (ms)", ",.0f"),
}


def timeseries(
    metrics_frame: pl.DataFrame,
    fields: Sequence[str] = ("requests", "error_rate", "latency_p95", "cost_usd"),
) -> alt.VConcatChart:
    """Small line charts of metrics over time, stacked and sharing the time axis.

    Input: the output of ``frames.metrics(..., every=...)`` (a ``bucket``
    column). Group columns it carries (``by=``) become one coloured line each.
    """
    from .frames import GROUP_COLUMNS

    if isinstance(fields, str):
        fields = (fields,)
    df = _frame(metrics_frame, ["bucket"], "timeseries")
    missing = [f for f in fields if f not in df.columns]
    if missing:
        raise ConfigError(f"timeseries() has no column(s) {', '.join(missing)}; the frame has: {', '.join(df.columns)}")
    if not fields:
        raise ConfigError("timeseries() needs at least one field")
    if df.height > MAX_ROWS:
        raise ConfigError(
            f"the metrics frame has {df.height:,} rows, more than the {MAX_ROWS:,} a chart carries; "
            "compute it with a coarser every= (e.g. '1h' instead of '5m') or fewer groups"
        )
    keys = [c for c in df.columns if c in GROUP_COLUMNS]
    df, title = _with_group(df, keys)
    # A column name is a Vega-Lite field path ("a.b" reads a nested field): plain names
    # stay, others are carried under a plain alias.
    names = {f: f if _PLAIN_FIELD.fullmatch(f) else f"field_{i}" for i, f in enumerate(dict.fromkeys(fields))}
    df = df.select("bucket", _GROUP, *(pl.col(f).alias(a) for f, a in names.items())).sort("bucket", _GROUP)
    point = df.height <= 200
    color = _group_color(title, bool(keys))
    rows = []
    for i, name in enumerate(fields):
        field = names[name]
        label, fmt = _FIELD_TITLES.get(name, (_label(name), ",.3~g"))
        last = i == len(fields) - 1
        rows.append(
            alt.Chart()
            .mark_line(point=point)
            .encode(
                x=alt.X("bucket:T", scale=alt.Scale(type="utc"), title="time (UTC)" if last else None,
                        axis=alt.Axis(labels=last, format="%b %d %H:%M")),
                y=alt.Y(f"{field}:Q", title=label, axis=alt.Axis(format=fmt)),
                color=color,
                tooltip=[
                    alt.Tooltip("bucket:T", title="bucket (UTC)", format="%Y-%m-%d %H:%M", formatType="utc"),
                    alt.Tooltip(f"{_GROUP}:N", title=title),
                    alt.Tooltip(f"{field}:Q", title=label, format=fmt),
                ],
            )
            .properties(height=110)
        )
    return alt.vconcat(*rows, data=df).resolve_scale(x="shared").properties(title="Metrics over time")


def alert_spans(chart: alt.VConcatChart, alerts: pl.DataFrame, *, end: Any = None) -> alt.VConcatChart:
    """``chart`` (from `timeseries`) with each alert shaded from when it opened to when it resolved.

    Input: an alerts frame (``bench.monitor.alerts()``: rule, scope, metric,
    first_seen, resolved_at, statistic). Open alerts run to ``end`` (default:
    their last check). Every panel shows every alert, as annotations do: the
    shaded stretch is the incident, the lines show what it did.
    """
    df = _frame(alerts, ["rule", "scope", "first_seen"], "alert_spans")
    if df.height == 0:
        return chart
    stop = pl.col("resolved_at") if "resolved_at" in df.columns else pl.lit(None)
    last = pl.col("last_seen") if "last_seen" in df.columns else pl.col("first_seen")
    open_end = pl.lit(end).cast(df.schema["first_seen"]) if end is not None else last
    spans = df.select(
        pl.col("first_seen").alias("start"),
        pl.coalesce(stop, open_end).alias("end"),
        pl.col("rule").cast(pl.String),
        pl.col("scope").cast(pl.String),
        (pl.col("statistic") if "statistic" in df.columns else pl.lit("")).cast(pl.String).alias("evidence"),
        pl.when(stop.is_null()).then(pl.lit("open")).otherwise(pl.lit("resolved")).alias("status"),
    )
    shade = (
        alt.Chart(spans)
        .mark_rect(opacity=0.16, color="#D55E00")
        .encode(
            x=alt.X("start:T", scale=alt.Scale(type="utc"), title=None),
            x2="end:T",
            tooltip=[
                alt.Tooltip("rule:N"), alt.Tooltip("scope:N"), alt.Tooltip("status:N"),
                alt.Tooltip("start:T", title="opened (UTC)", format="%Y-%m-%d %H:%M", formatType="utc"),
                alt.Tooltip("end:T", title="until (UTC)", format="%Y-%m-%d %H:%M", formatType="utc"),
                alt.Tooltip("evidence:N"),
            ],
        )
    )
    subtitle = f"shaded: {spans.height} alert{'s' if spans.height != 1 else ''} (hover for the evidence)"
    title = chart.title if isinstance(chart.title, str) else "Metrics over time"
    return (
        alt.vconcat(*(alt.layer(shade, panel) for panel in chart.vconcat), data=chart.data)
        .resolve_scale(x="shared")
        .properties(title=alt.Title(title, subtitle=subtitle))
    )


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (not a plain IPython terminal or a script)."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _offline_by_default() -> None:
    # Altair's default renderer loads Vega from a CDN and stays blank offline: in a
    # kernel, switch to ours unless the user chose a renderer already.
    if _in_kernel() and alt.renderers.active == "default":
        enable_offline()


_offline_by_default()


_SOURCE_TITLES = {"prompt_cache": "prompt caching", "exact_cache": "exact cache", "semantic_cache": "semantic cache",
                  "routing": "routing"}


def savings(savings_frame: pl.DataFrame, by: str | None = None) -> alt.Chart:
    """Dollars saved per day (or prompt, model, user) and source, stacked; hit rates in the tooltip.

    Input: ``bench.savings(by=...)`` (``frames.savings``). The frame is already
    aggregated, so the chart carries one row per group and source.
    """
    df = _frame(savings_frame, ["source", "saved_usd", "events", "requests"], "savings")
    keys = [c for c in df.columns if c not in ("source", "requests", "events", "rate", "saved_usd")]
    key = by or (keys[0] if keys else None)
    if key is None or key not in df.columns:
        raise ConfigError(f"savings() needs the frame's group column (day, prompt_name, ...); the frame has: {', '.join(df.columns)}")
    if df.height > MAX_ROWS:
        raise ConfigError(f"the savings frame has {df.height:,} rows; group it coarser (by='day' or by='prompt')")
    df = df.with_columns(
        pl.col("source").replace_strict(_SOURCE_TITLES, default=pl.col("source")).alias("saved by"),
        pl.col(key).cast(pl.String).alias(key),
    )
    x = alt.X(f"{key}:N", title=key.replace("_", " "), sort=None)
    if savings_frame.schema.get(key) in (pl.Date, pl.Datetime):
        x = alt.X(f"{key}:N", title="day (UTC)", sort="ascending")
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("sum(saved_usd):Q", title="dollars saved", axis=alt.Axis(format="$,.2f")),
            color=alt.Color("saved by:N", title="saved by", sort=list(_SOURCE_TITLES.values())),
            tooltip=[
                alt.Tooltip(f"{key}:N", title=key.replace("_", " ")),
                alt.Tooltip("saved by:N"),
                alt.Tooltip("saved_usd:Q", title="saved", format="$,.4f"),
                alt.Tooltip("events:Q", title="hits / routed calls", format=","),
                alt.Tooltip("rate:Q", title="share of requests", format=".1%"),
            ],
        )
        .properties(title="Dollars saved by caching and routing")
    )
