"""Self-contained HTML reports that open offline.

Vega, Vega-Lite and vega-embed are inlined once (from vl-convert); each chart's
spec sits in a JSON script block with ``<`` escaped, and every prompt, input and
output is HTML-escaped, so model output can never run as code. Long outputs
are cut with a visible marker; the database keeps them whole.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _format as fmt
from . import verdict as vd
from ._html import esc

if TYPE_CHECKING:
    import polars as pl

    from .bench import Workbench
    from .experiments import Experiment

MAX_OUTPUT_CHARS = 600
"""Characters of one output shown in a report table."""
MAX_ITEM_ROWS = 60
"""Per-item rows shown (regressions first, then improvements)."""

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1f2933;background:#f7f8fa}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #d9dee5;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#52606d;font-size:13px}
.banner{background:#fff4e5;border:1px solid #f0b35b;color:#7a4a00;padding:10px 14px;border-radius:6px;margin:12px 0;font-weight:600}
table{border-collapse:collapse;margin:8px 0;background:#fff;font-size:13px}
th,td{border:1px solid #d9dee5;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;max-height:320px;overflow:auto}
.cut{color:#b45309;font-style:italic}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.chart{background:#fff;border:1px solid #d9dee5;border-radius:6px;padding:8px;min-width:320px}
.verdict-better{color:#0f7b3f;font-weight:600}.verdict-worse{color:#b42318;font-weight:600}
.verdict-none{color:#52606d}
.note{color:#52606d;font-size:12px}
table{max-width:100%}
table.items{table-layout:fixed;width:100%}
table.items td{overflow-wrap:anywhere}
.diff-add{background:#e6ffed}.diff-del{background:#ffeef0}
details.repro{margin:8px 0}details.repro summary{cursor:pointer;color:#52606d}
.card{margin:12px 0}
"""

EMBED = """
document.querySelectorAll('script[type="application/json"][data-chart]').forEach(function (node) {
  var target = document.getElementById(node.getAttribute('data-chart'));
  vegaEmbed(target, JSON.parse(node.textContent), {actions: false, renderer: 'svg'}).catch(function (err) {
    target.textContent = 'chart failed to render: ' + err;
  });
});
"""


def _json_for_script(value: Any) -> str:
    """JSON safe inside a <script> block: no '<', '>' or '&' survive unescaped."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _cut(text: Any, limit: int = MAX_OUTPUT_CHARS) -> str:
    if text is None:
        return '<span class="note">—</span>'
    text = str(text)
    if len(text) <= limit:
        return f"<pre>{esc(text)}</pre>"
    return f'<pre>{esc(text[:limit])}<span class="cut"> … [{len(text) - limit:,} more characters cut; full text in the database]</span></pre>'


def frame_table(df: pl.DataFrame, columns: Iterable[str] | None = None) -> str:
    """A frame as an HTML table: units in headers, numbers right-aligned and formatted."""
    cols = [c for c in (columns or df.columns) if c in df.columns]
    specs = [fmt.column(c) for c in cols]
    head = "".join(f"<th>{esc(h)}</th>" for h, _ in specs)
    body = []
    for row in df.select(cols).iter_rows():
        cells = []
        for v, (_, cell) in zip(row, specs):
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{esc(cell(v) if v is not None else fmt.NA)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_bundle: str | None = None


def vega_bundle() -> str:
    """vega-embed, Vega-Lite and Vega as one script, from vl-convert.

    Bundling takes vl-convert about 1.7 s, so the result is kept in memory and in
    the user's cache folder, keyed by the vl-convert version.
    """
    global _bundle
    if _bundle is not None:
        return _bundle
    import os

    import vl_convert as vlc

    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbench"
    cached = cache_dir / f"vega-bundle-vl-convert-{vlc.__version__}.js"
    try:
        _bundle = cached.read_text(encoding="utf-8")
        return _bundle
    except OSError:
        pass
    # A literal "</script" inside the bundle would end the tag early.
    _bundle = vlc.javascript_bundle().replace("</script", "<\\/script")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(_bundle, encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # a read-only home only costs the next process 1.7 s
    return _bundle


class _Page:
    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.charts = 0

    def add(self, html: str) -> None:
        self.parts.append(html)

    def chart(self, title: str, build: Any) -> None:
        """Add a chart; a chart that cannot be built says so in the page and warns."""
        try:
            chart = build()
            spec = chart.to_dict()
        except Exception as exc:  # noqa: BLE001 - one bad chart must not lose the report
            warnings.warn(f"report chart {title!r} could not be built: {exc}", RuntimeWarning, stacklevel=2)
            self.add(f'<div class="chart"><h3>{esc(title)}</h3><p class="note">not available: {esc(exc)}</p></div>')
            return
        self.charts += 1
        cid = f"chart-{self.charts}"
        self.add(
            f'<div class="chart"><h3>{esc(title)}</h3><div id="{cid}" class="vega-chart"></div>'
            f'<script type="application/json" data-chart="{cid}">{_json_for_script(spec)}</script></div>'
        )

    def render(self) -> str:
        from . import __version__

        bundle = vega_bundle()
        generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
            "style-src 'unsafe-inline'; img-src data:; font-src data:\">"
            f"<title>{esc(self.title)}</title><style>{CSS}</style>"
            f"<script>{bundle}</script></head><body><main>"
            + "".join(self.parts)
            + f'<p class="note">Generated by workbench {esc(__version__)} on {generated}. '
            "Self-contained: opens offline, loads nothing from the network.</p>"
            f"</main><script>{EMBED}</script></body></html>"
        )


SIMULATED_BANNER = (
    '<div class="banner" role="alert">Simulated data: some or all calls in this report were answered by '
    "workbench's built-in simulated provider, not by a real model. Quality, latency and cost describe a "
    "declared simulation.</div>"
)


def experiment_report(exp: Experiment, *, lead: str = "") -> str:
    """The HTML of an experiment report (``lead``: escaped HTML that opens it instead of the comparison
    cards, such as the CI gate's card, which is the comparison with the gate's checks on top).

    It opens with the verdict card of each comparison (the first variant against
    every other), then what was compared and the narrow summary, charts, the
    items that changed, and at the end, collapsed, what it takes to reproduce
    the run (templates, hashes, params, scorer specs).
    """

    from . import charts

    traces = exp.traces_df()
    page = _Page(f"workbench · {exp.name}")
    simulated = bool(traces.height and traces["simulated"].fill_null(0).max())
    providers = ", ".join(sorted(set(traces["provider"].drop_nulls().to_list()))) or "none yet"
    page.add(f"<h1>Experiment: {esc(exp.name)}</h1>")
    page.add(
        f'<div class="meta">status {esc(exp.status)} · dataset {esc(exp.dataset.ref)} '
        f"({esc(fmt.plural(len(exp.dataset), 'item'))}) · {esc(fmt.plural(exp.repeats, 'repeat'))} · "
        f"provider {esc(providers)}</div>"
    )
    if simulated:
        page.add(SIMULATED_BANNER)

    names = list(exp.variants)
    if lead:
        page.add(f'<div class="card">{lead}</div>')
    for other in names[1:] if not lead else ():
        page.add(f'<div class="card">{vd.html(exp.compare(names[0], other).card(details=True), wrap=False)}</div>')

    page.add("<h2>What was compared</h2>")
    page.add(_html_table(
        ["variant", "prompt", "model", "params"],
        [(name, v.prompt.ref, v.effective_model, _params(v.effective_params)) for name, v in exp.variants.items()],
    ))
    for other in names[1:]:
        page.add(_prompt_diff(exp, names[0], other))
    summary = exp.summary()
    page.add("<h3>Summary per variant</h3>" + summary.html())  # type: ignore[attr-defined]
    page.add('<p class="note">Quality: mean of per-item means (repeats averaged first) with a 95% CI'
             + (", standard errors clustered by item cluster" if exp.dataset.has_clusters else "")
             + "; a Wilson interval where every item scored the same 0 or 1. Pass rate: the share of items that "
             "pass on most of their repeats, with a Wilson interval. Cost per item: the mean cost of answering one "
             "item once. Every column: exp.summary(wide=True).</p>")

    scorer_names = [s.name for s in exp.scorers]
    if traces.height == 0:
        page.add('<p class="meta">No calls recorded yet, so no charts or items: run exp.run(), then write the report again.</p>')
        page.add(_reproduce_section(exp))
        return page.render()
    page.add('<h2>Charts</h2><div class="charts">')
    page.chart("Quality per variant (95% CI)", lambda: exp.chart("quality"))
    if len(names) > 1 and scorer_names:
        page.chart(f"Per-item difference {names[-1]} − {names[0]} ({scorer_names[0]})", lambda: exp.chart("paired", a=names[0], b=names[-1]))
    page.chart("Latency distribution", lambda: charts.latency(traces, by="variant"))
    page.chart("Cost per item", lambda: charts.cost_per_item(traces, by="variant"))
    page.chart("Tokens per call", lambda: charts.tokens(traces, by="variant"))
    if scorer_names:
        page.chart("Cost vs quality", lambda: exp.chart("cost_quality"))
    page.add("</div>")

    if len(names) > 1 and scorer_names:
        page.add(_items_section(exp, names[0], names[-1], scorer_names[0]))
    page.add(_reproduce_section(exp))
    return page.render()


def _html_table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _params(params: dict[str, Any]) -> str:
    """Params in one short line; the system prompt is named, not quoted (it is in the reproduce section)."""
    shown = []
    for k, v in sorted(params.items()):
        text = repr(v)
        shown.append(f"{k}={text if len(text) <= 40 else text[:37] + '…'}")
    return ", ".join(shown) or "none"


def _prompt_diff(exp: Experiment, a: str, b: str) -> str:
    from .prompts import diff_versions

    pa, pb = exp.variants[a].prompt, exp.variants[b].prompt
    if pa.content_hash == pb.content_hash:
        return f'<p class="meta">{esc(b)} and {esc(a)} use the same prompt ({esc(pa.ref)}).</p>'
    d = diff_versions(pa, pb)
    lines = []
    for line in d.template_diff.splitlines()[2:]:  # the ---/+++ header repeats the refs
        cls = "diff-add" if line.startswith("+") else "diff-del" if line.startswith("-") else ""
        lines.append(f'<span class="{cls}">{esc(line)}</span>' if cls else esc(line))
    changed = "".join(f"<li>{esc(k)}: {esc(_short(x))} → {esc(_short(y))}</li>" for k, (x, y) in d.changed.items())
    body = "\n".join(lines) if lines else "template unchanged"
    return (
        f"<h3>Prompt {esc(b)} against {esc(a)}: {esc(pa.ref)} → {esc(pb.ref)}</h3>"
        + (f"<ul>{changed}</ul>" if changed else "")
        + f"<pre>{body}</pre>"
    )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _items_section(exp: Experiment, a: str, b: str, scorer: str) -> str:
    import polars as pl

    items = exp.items(a, b)
    regress = items.filter(pl.col("delta") < 0)
    improve = items.filter(pl.col("delta") > 0).sort("delta", descending=True)
    shown = pl.concat([regress, improve]).head(MAX_ITEM_ROWS)
    rows = []
    for r in shown.iter_rows(named=True):
        rows.append(
            f"<tr><td>{esc(r['item_id'])}</td><td>{_cut(r['inputs'], 400)}</td><td>{_cut(r['expected'], 200)}</td>"
            f"<td>{_cut(r['output_a'])}</td><td>{_cut(r['output_b'])}</td>"
            f'<td class="num">{esc(fmt.num(r["score_a"]))}</td><td class="num">{esc(fmt.num(r["score_b"]))}</td>'
            f'<td class="num">{esc(fmt.num(r["delta"], signed=True))}</td></tr>'
        )
    more = items.height - shown.height
    unchanged = items.height - regress.height - improve.height
    return (
        f"<h2>Per item: {esc(b)} vs {esc(a)} on {esc(scorer)}</h2>"
        f'<p class="meta">{esc(fmt.plural(regress.height, "regression"))}, {esc(fmt.plural(improve.height, "improvement"))}, '
        f"{esc(fmt.count(unchanged))} unchanged or unscored. Regressions first.</p>"
        '<table class="items"><colgroup><col style="width:8%"><col style="width:19%"><col style="width:10%">'
        '<col style="width:21%"><col style="width:21%"><col style="width:7%"><col style="width:7%"><col style="width:7%">'
        f"</colgroup><thead><tr><th>item</th><th>inputs</th><th>reference</th><th>output {esc(a)}</th><th>output {esc(b)}</th>"
        f"<th>{esc(a)}</th><th>{esc(b)}</th><th>Δ</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + (f'<p class="note">{esc(fmt.plural(more, "more item"))} not shown; see exp.items() in a notebook.</p>' if more > 0 else "")
    )


def _reproduce_section(exp: Experiment) -> str:
    """Everything needed to rebuild the run, collapsed: it matters to few readers, and to them a lot."""
    parts = [
        f'<div class="meta">experiment id {esc(exp.id)} · seed {exp.seed} · dataset {esc(exp.dataset.ref)} '
        f"{esc(exp.dataset.content_hash)}</div>"
    ]
    for name, v in exp.variants.items():
        parts.append(
            f"<h3>Variant {esc(name)}: {esc(v.label())}</h3>"
            f'<div class="meta">model {esc(v.effective_model)} · {esc(v.prompt.content_hash)}</div>'
            f'<div class="meta">params {esc(", ".join(f"{k}={val!r}" for k, val in sorted(v.effective_params.items())) or "none")}</div>'
            f"{_cut(v.prompt.template, 4000)}"
        )
    if exp.scorers:
        parts.append("<h3>Scorers</h3>" + _html_table(["scorer", "spec"], [(s.name, json.dumps(s.spec())) for s in exp.scorers]))
    return (
        "<h2>Reproduce</h2>"
        '<details class="repro"><summary>Prompts, hashes, params and scorer specs</summary>'
        + "".join(parts) + "</details>"
    )


METRIC_COLUMNS = ("model", "requests", "errors", "error_rate", "input_tokens", "output_tokens", "cost_usd",
                  "latency_p50", "latency_p95", "latency_p99", "ttft_p50")
"""Metrics shown in a traces report's tables (a frame from ``bench.metrics`` has all of them and more)."""


def traces_report(bench: Workbench, every: str | None = None, **filters: Any) -> str:
    """The HTML of a report over traces: metrics over time and their charts."""
    import polars as pl

    from . import charts, frames

    df = frames.traces_df(bench.store, **filters)
    llm = df.filter(pl.col("kind") == "llm")
    page = _Page("workbench · traces")
    page.add("<h1>Traces</h1>")
    if llm.height == 0:
        page.add('<p class="meta">No model calls recorded yet.</p>')
        return page.render()
    first, last = llm["started_at"].min(), llm["started_at"].max()
    page.add(f'<div class="meta">{esc(fmt.plural(llm.height, "model call"))} from {esc(fmt.plain(first))} to '
             f'{esc(fmt.plain(last))} · file {esc(bench.path)}</div>')
    if llm["simulated"].fill_null(0).max():
        page.add(SIMULATED_BANNER)
    if every is None:
        span_s = (last - first).total_seconds() if hasattr(last - first, "total_seconds") else 0
        every = "1m" if span_s <= 3 * 3600 else ("15m" if span_s <= 2 * 86400 else "1d")
    overall = frames.metrics(llm, by="model")
    page.add("<h2>By model</h2>" + frame_table(overall, METRIC_COLUMNS))
    over_time = frames.metrics(llm, every=every)
    page.add(f"<h2>Over time (every {esc(every)})</h2>")
    page.add('<div class="charts">')
    page.chart("Requests, error rate, p95 latency and cost", lambda: charts.timeseries(over_time))
    page.chart("Latency by model", lambda: charts.latency(llm, by="model"))
    page.chart("Tokens by model", lambda: charts.tokens(llm, by="model"))
    page.add("</div>")
    page.add(frame_table(over_time, ["bucket", *METRIC_COLUMNS]))
    errors = llm.filter(pl.col("status") == "error").group_by("error_type").len().sort("len", descending=True)
    if errors.height:
        page.add("<h2>Errors</h2>" + frame_table(errors))
    return page.render()


def gateway_report(bench: Workbench, **filters: Any) -> str:
    """The HTML of the gateway section: savings, hit rates, fallbacks and breakers, top users."""
    import polars as pl

    from . import charts, frames

    page = _Page("workbench · gateway")
    page.add("<h1>Gateway</h1>")
    calls = frames.gateway_calls(bench.store, **filters)
    if not calls.height or not calls["via_gateway"].any():
        page.add('<p class="meta">No calls went through a gateway yet.</p>')
        return page.render()
    page.add(f'<div class="meta">{calls.height:,} model calls · file {esc(bench.path)}</div>')
    from ._format import money, pct

    by_day = frames.savings(bench.store, by="day", **filters)
    totals = (
        by_day.group_by("source").agg(pl.col("requests").sum(), pl.col("events").sum(), pl.col("saved_usd").sum())
        .sort("saved_usd", descending=True)
    )
    totals = totals.select(
        "source", "events",
        (pl.col("events") / pl.col("requests")).map_elements(pct, return_dtype=pl.String).alias("share of requests"),
        pl.col("saved_usd").map_elements(money, return_dtype=pl.String).alias("saved"),
    )
    page.add("<h2>Savings</h2>" + frame_table(totals))
    page.add(
        '<p class="note">Prompt caching: cache reads priced as plain input minus their read price, less the '
        "cache-write premium. Caches: each hit saves what the stored call cost. Routing: the routed call's tokens "
        "priced at the requested model, minus what the call cost (same token counts assumed).</p>"
    )
    page.add('<div class="charts">')
    page.chart("Dollars saved per day", lambda: charts.savings(by_day))
    page.chart("Dollars saved per prompt", lambda: charts.savings(frames.savings(bench.store, by="prompt", **filters)))
    page.add("</div>")
    events = frames.gateway_events(bench.store, **filters)
    events = events.with_columns(pl.col("started_at").dt.date().cast(pl.String).alias("started_at")).rename({"started_at": "day (UTC)"})
    page.add("<h2>Cache hits, fallbacks, breakers and refusals per day</h2>" + frame_table(events))
    users = frames.top_users(bench.store, **filters)
    users = users.with_columns(pl.col("spend_usd").map_elements(money, return_dtype=pl.String).alias("spend_usd"))
    page.add("<h2>Top users by spend</h2>" + frame_table(users.rename({"spend_usd": "spend"})))
    return page.render()


def write_report(bench: Workbench, obj: Any, path: str | Path, **kwargs: Any) -> Path:
    """Write ``obj`` (an Experiment, or ``"traces"``) as one HTML file; returns its path."""
    from .errors import ConfigError
    from .experiments import Experiment

    if isinstance(obj, Experiment):
        html = experiment_report(obj, **kwargs)
    elif obj == "traces":
        html = traces_report(bench, **kwargs)
    elif obj == "gateway":
        html = gateway_report(bench, **kwargs)
    else:
        raise ConfigError(f"cannot report on {type(obj).__name__}; pass an experiment, \"traces\" or \"gateway\"")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
