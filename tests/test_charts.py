"""charts: valid specs, small embedded data whatever the input size, PNG rendering, offline renderers."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import altair as alt
import numpy as np
import polars as pl
import pytest
import vl_convert as vlc

from workbench import charts, frames
from workbench.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def _traces(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2025-03-01T00:00:00", "us")
    return pl.DataFrame(
        {
            "kind": rng.choice(["llm"] * 9 + ["span"], n),
            "status": rng.choice(["ok"] * 9 + ["error"], n),
            "variant": rng.choice(["A", "B", "C"], n),
            "model": rng.choice(["haiku", "sonnet"], n),
            "item_id": [f"item-{i}" for i in rng.integers(0, max(n // 40, 1), n)],
            "started_at": start + np.sort(rng.integers(0, 6 * 3600 * 10**6, n)).astype("timedelta64[us]"),
            "latency_ms": np.where(rng.random(n) < 0.02, np.nan, rng.lognormal(6, 0.6, n)),
            "cost_usd": np.where(rng.random(n) < 0.05, np.nan, rng.uniform(0, 0.01, n)),
            "input_tokens": rng.integers(100, 2000, n),
            "output_tokens": rng.integers(10, 500, n),
            "cache_read_tokens": rng.integers(0, 1000, n),
            "cache_write_tokens": rng.integers(0, 200, n),
            "ttft_ms": rng.lognormal(5, 0.5, n),
        }
    ).with_columns(pl.col("latency_ms", "cost_usd").fill_nan(None), pl.col("started_at").dt.replace_time_zone("UTC"))


@pytest.fixture(scope="module")
def small():
    return _traces(60)


@pytest.fixture(scope="module")
def large():
    return _traces(200_000, seed=1)


def _summary() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "variant": ["A", "A", "B", "B"],
            "scorer": ["exact", "judge", "exact", "judge"],
            "mean": [0.61, 0.70, 0.66, 0.73],
            "ci_low": [0.55, 0.66, 0.60, 0.69],
            "ci_high": [0.67, 0.74, 0.72, 0.77],
            "n": [200] * 4,
        }
    )


def _item_scores(n_items: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    items = [f"i{i}" for i in range(n_items)]
    return pl.DataFrame(
        {
            "item_id": items * 2,
            "variant": ["A"] * n_items + ["B"] * n_items,
            "scorer": "exact",
            "value": np.concatenate([rng.random(n_items), rng.random(n_items)]),
        }
    )


def _points() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "variant": ["cheap", "mid", "dominated", "best", "twin-a", "twin-b", "no-cost"],
            "cost_per_item": [0.001, 0.002, 0.003, 0.004, 0.0025, 0.0025, None],
            "quality": [0.60, 0.70, 0.65, 0.80, 0.72, 0.72, 0.99],
            "ci_low": [0.55, 0.66, 0.60, 0.75, 0.70, 0.70, 0.95],
            "ci_high": [0.65, 0.74, 0.70, 0.85, 0.74, 0.74, 1.0],
        }
    )


def _rows(spec) -> int:
    """Data rows embedded anywhere in a spec (named datasets and inline values)."""
    n = sum(len(v) for v in spec.get("datasets", {}).values())

    def walk(node):
        nonlocal n
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and isinstance(data.get("values"), list):
                n += len(data["values"])
            for k, v in node.items():
                if k != "datasets":
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    return n


def _data(spec, field: str) -> list[dict]:
    """The rows of the one dataset that has ``field``."""
    found = [rows for rows in spec["datasets"].values() if rows and field in rows[0]]
    assert len(found) == 1, f"{len(found)} datasets have {field!r}"
    return found[0]


def _builders(traces):
    scored = _item_scores(min(traces.height, 6000))
    return {
        "latency": lambda: charts.latency(traces),
        "latency_linear_ungrouped": lambda: charts.latency(traces, by=None, log=False, bins=25),
        "cost_per_item": lambda: charts.cost_per_item(traces),
        "tokens": lambda: charts.tokens(traces, by=["variant", "model"]),
        "quality": lambda: charts.quality(_summary()),
        "paired_differences": lambda: charts.paired_differences(scored, "A", "B", "exact"),
        "cost_quality": lambda: charts.cost_quality(_points()),
        "timeseries": lambda: charts.timeseries(frames.metrics(traces, by="variant", every="30m")),
    }


NAMES = list(_builders(_traces(5)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", ["small", "large"])
def test_every_chart_validates_stays_small_and_renders(name, size, request):
    traces = request.getfixturevalue(size)
    chart = _builders(traces)[name]()
    assert isinstance(chart, alt.TopLevelMixin)
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    assert 0 < _rows(spec) < 5000
    assert vlc.vegalite_to_png(spec).startswith(PNG)


def test_latency_rules_are_exact_percentiles_per_group(small):
    spec = charts.latency(small).to_dict()
    rules = _data(spec, "percentile")
    ok = small.filter((pl.col("kind") == "llm") & (pl.col("status") == "ok")).drop_nulls("latency_ms")
    for r in rules:
        values = ok.filter(pl.col("variant") == r["group"])["latency_ms"].to_numpy()
        q = 50 if r["percentile"] == "p50" else 95
        assert r["latency_ms"] == pytest.approx(np.percentile(values, q), rel=1e-12)
    hist = _data(spec, "from_ms")
    assert sum(h["calls"] for h in hist) == ok.height  # every value lands in one bin
    assert len({h["from_ms"] for h in hist}) <= 40


def test_latency_handles_nulls_and_a_group_with_one_value():
    df = pl.DataFrame({"variant": ["A", "A", "B", "C"], "latency_ms": [100.0, None, 250.0, None]})
    spec = charts.latency(df).to_dict()
    rules = {(r["group"], r["percentile"]): r["latency_ms"] for r in _data(spec, "percentile")}
    assert rules == {("A", "p50"): 100.0, ("A", "p95"): 100.0, ("B", "p50"): 250.0, ("B", "p95"): 250.0}
    assert vlc.vegalite_to_png(spec).startswith(PNG)
    one = charts.latency(pl.DataFrame({"latency_ms": [42.0]}), by=None, log=False).to_dict()
    assert vlc.vegalite_to_png(one).startswith(PNG)


def test_cost_per_item_averages_repeats_per_item():
    df = pl.DataFrame(
        {
            "variant": ["A"] * 5 + ["B"] * 2,
            "item_id": ["i1", "i1", "i2", "i2", "i3", "i1", "i2"],
            "cost_usd": [0.01, 0.03, 0.05, None, None, 0.002, 0.004],
        }
    )
    stats = {r["group"]: r for r in _data(charts.cost_per_item(df).to_dict(), "median")}
    # A: i1 = (0.01 + 0.03) / 2, i2 = 0.05 (one priced repeat), i3 unpriced.
    assert stats["A"]["items"] == 2 and stats["A"]["unpriced_items"] == 1
    assert stats["A"]["min"] == pytest.approx(0.02) and stats["A"]["max"] == pytest.approx(0.05)
    assert stats["A"]["median"] == pytest.approx(0.035)
    assert stats["B"]["mean"] == pytest.approx(0.003)


def test_tokens_are_means_per_call_in_stacking_order(small):
    spec = charts.tokens(small).to_dict()
    rows = _data(spec, "mean_tokens")
    calls = small.filter(pl.col("kind") == "llm")
    a = {r["tokens"]: r["mean_tokens"] for r in rows if r["group"] == "A"}
    assert a["cache read"] == pytest.approx(calls.filter(pl.col("variant") == "A")["cache_read_tokens"].mean())
    assert [r["tokens"] for r in rows if r["group"] == "A"] == ["input", "cache read", "cache write", "output"]


def test_quality_can_keep_one_scorer_and_names_unknown_ones():
    spec = charts.quality(_summary(), scorer="judge").to_dict()
    assert {r["scorer"] for r in _data(spec, "ci_low")} == {"judge"}
    with pytest.raises(ConfigError, match="'nope'.*exact, judge"):
        charts.quality(_summary(), scorer="nope")
    with pytest.raises(ConfigError, match="ci_high"):
        charts.quality(_summary().drop("ci_high"))


def test_paired_differences_are_sorted_b_minus_a_and_thinned():
    scores = _item_scores(12_000)
    spec = charts.paired_differences(scores, "A", "B", "exact").to_dict()
    dots = _data(spec, "difference")
    diffs = [d["difference"] for d in dots]
    assert len(dots) <= charts.MAX_POINTS and diffs == sorted(diffs)
    wide = scores.pivot(on="variant", index="item_id", values="value")
    true = (wide["B"] - wide["A"]).to_numpy()
    assert diffs[0] == pytest.approx(true.min()) and diffs[-1] == pytest.approx(true.max())
    mean_rule = [r for r in _data(spec, "what") if r["what"] == "mean"][0]
    assert mean_rule["y"] == pytest.approx(true.mean())
    with pytest.raises(ConfigError, match="'Z'"):
        charts.paired_differences(scores, "A", "Z", "exact")


def test_paired_differences_average_repeats_and_drop_unpaired_items():
    df = pl.DataFrame(
        {
            "item_id": ["i1", "i1", "i1", "i2", "i3"],
            "variant": ["A", "B", "B", "A", "B"],
            "scorer": "s",
            "value": [0.0, 1.0, 0.0, 1.0, 1.0],
        }
    )
    dots = _data(charts.paired_differences(df, "A", "B", "s").to_dict(), "difference")
    assert [(d["item_id"], d["difference"]) for d in dots] == [("i1", 0.5)]


def test_pareto_front_marks_non_dominated_points_and_ties():
    marked = charts.pareto_front(_points())
    front = dict(zip(marked["variant"], marked["pareto"]))
    assert front == {
        "cheap": True, "mid": True, "dominated": False, "best": True,
        "twin-a": True, "twin-b": True,  # identical points do not dominate each other
        "no-cost": False,
    }
    line = charts.cost_quality(_points()).to_dict()
    assert {r["variant"] for r in _data(line, "pareto") if r["pareto"]} == {"cheap", "mid", "twin-a", "twin-b", "best"}


def test_timeseries_needs_buckets_and_refuses_huge_frames(small):
    with pytest.raises(ConfigError, match="bucket"):
        charts.timeseries(frames.metrics(small))
    with pytest.raises(ConfigError, match="latency_p42"):
        charts.timeseries(frames.metrics(small, every="1h"), fields=["latency_p42"])
    big = pl.DataFrame({"bucket": [T0 + timedelta(minutes=i) for i in range(6000)], "requests": 1})
    with pytest.raises(ConfigError, match="coarser"):
        charts.timeseries(big, fields=["requests"])
    chart = charts.timeseries(frames.metrics(small, every="1h"), fields=("requests", "cost_usd"))
    assert isinstance(chart, alt.VConcatChart) and len(chart.vconcat) == 2


def test_charts_stay_chainable(small):
    chart = charts.tokens(small).properties(width=300)
    assert chart.to_dict()["width"] == 300
    combined = charts.latency(small) | charts.cost_per_item(small)
    assert vlc.vegalite_to_svg(combined.to_dict()).startswith("<svg")


# -- theme, renderers, export -----------------------------------------------------------------


@pytest.fixture
def restore_altair():
    theme, renderer, options = alt.theme.active, alt.renderers.active, dict(alt.renderers.options)
    yield
    alt.theme.enable(theme)
    alt.renderers.enable(renderer, **options)


def test_theme_registers_and_applies(restore_altair, small):
    assert charts.THEME in alt.theme.names()
    assert charts.use_theme() == "workbench" and alt.theme.active == "workbench"
    spec = charts.tokens(small).to_dict()
    assert "Inter" in spec["config"]["font"]
    assert spec["config"]["range"]["category"][0] == "#0072B2"
    assert vlc.vegalite_to_png(spec).startswith(PNG)


def test_enable_offline_turns_on_the_data_only_renderer(restore_altair):
    assert charts.enable_offline() == charts.RENDERER == "workbench"
    assert alt.renderers.active == "workbench" and alt.renderers.options == {"fallback": "svg"}
    assert charts.enable_offline("vega", fallback=None) == "workbench"
    assert alt.renderers.options == {"fallback": None}


@pytest.mark.parametrize("renderer", ["svg", "png"])
def test_enable_offline_keeps_the_static_renderers(restore_altair, renderer):
    assert charts.enable_offline(renderer) == renderer
    assert alt.renderers.active == renderer


@pytest.mark.parametrize(("renderer", "why"), [
    ("html", "only the first chart"), ("mimetype", "nbclient rejects"), ("jupyter", "blank when a saved notebook"),
    ("default", "does not draw offline"),
])
def test_enable_offline_refuses_renderers_that_break_in_jupyterlab(restore_altair, renderer, why):
    with pytest.raises(ConfigError, match=f"'{renderer}' is not offered: .*{why}.*choose 'vega'"):
        charts.enable_offline(renderer)
    with pytest.raises(ConfigError, match="fallback must be 'svg', 'png' or None, not 'gif'"):
        charts.enable_offline("vega", fallback="gif")


def test_a_chart_displays_as_vega_data_with_a_static_fallback_and_no_script(restore_altair, small):
    from IPython.core.formatters import DisplayFormatter

    charts.enable_offline()
    data, metadata = DisplayFormatter().format(charts.latency(small))
    assert set(data) == {charts.VEGA_MIME, "image/svg+xml", "text/plain"}  # no text/html: no script anywhere
    vega = data[charts.VEGA_MIME]
    assert vega["$schema"] == "https://vega.github.io/schema/vega/v5.json"
    assert vlc.vega_to_svg(vega).startswith("<svg")
    assert data["image/svg+xml"].startswith("<svg") and "<script" not in data["image/svg+xml"]
    assert data["text/plain"] == "<chart: Latency per call>"
    # The embed actions that write the spec into a new window unescaped, or post it to a website, are off.
    actions = metadata[charts.VEGA_MIME]["embed_options"]["actions"]
    assert actions == {"export": True, "source": False, "compiled": False, "editor": False}


@pytest.mark.parametrize(("fallback", "keys"), [("png", {"image/png"}), (None, set())])
def test_the_static_fallback_can_be_png_or_none(small, fallback, keys):
    data, _ = charts.mimebundle(charts.quality(_summary()), fallback=fallback)
    assert set(data) == {charts.VEGA_MIME, "text/plain"} | keys
    if fallback == "png":
        assert base64.b64decode(data["image/png"]).startswith(PNG)


def test_a_chart_vega_lite_5_cannot_compile_comes_as_a_static_image(small, monkeypatch):
    def refuse(spec, vl_version=None):
        raise ValueError("Vega-Lite compile failed\nat line 1")

    monkeypatch.setattr(vlc, "vegalite_to_vega", refuse)
    data, metadata = charts.mimebundle(charts.tokens(small), fallback=None)
    assert set(data) == {"image/svg+xml", "text/plain"} and metadata == {}
    assert data["image/svg+xml"].startswith("<svg")
    data, _ = charts.mimebundle(charts.tokens(small), fallback="png")
    assert base64.b64decode(data["image/png"]).startswith(PNG)
    assert "static: Vega-Lite 5.21 cannot compile it for JupyterLab: Vega-Lite compile failed" in data["text/plain"]


def test_the_bundle_is_a_valid_notebook_output(small):
    """nbformat's schema is what rejected Altair 6's own mimetype output (``vegalite.v6.json``)."""
    nbformat = pytest.importorskip("nbformat")
    data, metadata = charts.mimebundle(charts.tokens(small))
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("chart", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("display_data", data=data, metadata=metadata)]
    nb.cells = [cell]
    nbformat.validate(nbformat.reads(nbformat.writes(nb), as_version=4))


def test_report_html_inlines_its_javascript_and_spec_is_a_dict(small):
    chart = charts.tokens(small)
    html = charts.to_html(chart)
    assert "<script" in html and 'src="https://' not in html and "vegaEmbed" in html
    spec = charts.embed_spec(chart)
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")


# -- names people and models type reach Vega as data only -------------------------------------

HOSTILE = {
    "script": "zq1</script><script>window.__wb_ran=(window.__wb_ran||0)+1</script>",
    "img": "zq2<img src=x onerror=\"window.__wb_ran=(window.__wb_ran||0)+1\">",
    "quotes": "zq3\\\";x;//'",
    "separators": "zq4 line\u2028para\u2029end\nnext",
    "dollars": "zq5 costs $0.47 and $1.36 {x} ${y} `z`",
}
"""Each carries a marker ``zq<n>`` so it can be found however a spec escapes it."""
A, B, SCORER, MODEL, ITEM = HOSTILE["quotes"], HOSTILE["separators"], HOSTILE["dollars"], HOSTILE["img"], HOSTILE["script"]
EXPRESSION_KEYS = {"signal", "expr", "test", "update", "init", "value_expr"}
FIELD_KEYS = {"field", "fields", "as", "groupby", "key"}


def _hostile_traces(n: int = 240, seed: int = 3) -> pl.DataFrame:
    t = _traces(n, seed)
    rng = np.random.default_rng(seed)
    return t.with_columns(
        pl.Series("variant", rng.choice([A, B], n)),
        pl.Series("model", rng.choice([MODEL, "plain"], n)),
        pl.Series("item_id", rng.choice([ITEM, HOSTILE["img"], "i3", "i4"], n)),
        pl.Series("prompt_version", rng.choice([HOSTILE["script"] + "@v1", "p@v2"], n)),
    )


def _hostile_builders():
    traces = _hostile_traces()
    items = [ITEM, HOSTILE["img"], HOSTILE["dollars"], "i4"]
    scores = pl.DataFrame({
        "item_id": items * 2, "variant": [A] * 4 + [B] * 4, "scorer": SCORER,
        "value": [0.0, 1.0, 0.5, 0.2, 1.0, 0.0, 0.5, 0.9],
    })
    summary = _summary().with_columns(
        pl.col("variant").replace({"A": A, "B": B}), pl.col("scorer").replace({"exact": SCORER, "judge": ITEM})
    )
    points = _points().with_columns(pl.Series("variant", [*HOSTILE.values(), "p6", "p7"]))
    odd = pl.DataFrame({"bucket": [T0 + timedelta(hours=i) for i in range(4)], 'a.b"\u2028c': [1.0, 2.0, 3.0, 4.0]})
    builders = {
        "latency": lambda: charts.latency(traces, by="variant"),
        "latency_by_model": lambda: charts.latency(traces, by="model", log=False),
        "cost_per_item": lambda: charts.cost_per_item(traces),
        "tokens": lambda: charts.tokens(traces, by=["variant", "model"]),
        "quality": lambda: charts.quality(summary),
        "paired_differences": lambda: charts.paired_differences(scores, A, B, SCORER),
        "cost_quality": lambda: charts.cost_quality(points),
        "timeseries": lambda: charts.timeseries(frames.metrics(traces, by="prompt_version", every="1h")),
        "timeseries_odd_column": lambda: charts.timeseries(odd, fields=['a.b"\u2028c']),
        "latency_odd_group_column": lambda: charts.latency(
            traces.rename({"variant": 'var"\u2028iant\\'}), by='var"\u2028iant\\'
        ),
    }
    # Builders other streams add: checked here as soon as they are merged.
    if hasattr(charts, "savings"):
        saved = pl.DataFrame({
            "prompt_name": [A, B, ITEM], "source": ["prompt_cache", "exact_cache", "routing"],
            "saved_usd": [0.5, 0.25, 0.1], "events": [10, 5, 2], "requests": [100, 50, 20], "rate": [0.1, 0.1, 0.1],
        })
        builders["savings"] = lambda: charts.savings(saved, by="prompt_name")
    if hasattr(charts, "alert_spans"):
        alerts = pl.DataFrame({
            "rule": [A], "scope": [MODEL], "metric": ["error_rate"], "first_seen": [T0 + timedelta(hours=1)],
            "resolved_at": [T0 + timedelta(hours=2)], "statistic": [ITEM],
        })
        builders["alert_spans"] = lambda: charts.alert_spans(
            charts.timeseries(frames.metrics(traces, every="1h")), alerts
        )
    return builders


def _code_strings(node, key=None):
    """(key, text) of every string in a Vega spec that Vega parses as an expression or reads as a field."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "values" and key == "data":
                continue
            yield from _code_strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _code_strings(v, key)
    elif isinstance(node, str) and key in EXPRESSION_KEYS | FIELD_KEYS:
        yield key, node


def _data_strings(vega) -> set[str]:
    found = set()
    for dataset in vega.get("data", []):
        for row in dataset.get("values", []) or []:
            found.update(v for v in row.values() if isinstance(v, str))
    return found


def test_every_builder_is_checked_with_hostile_names():
    builders = {
        name for name in charts.__all__
        if callable(getattr(charts, name)) and name not in {
            "embed_spec", "enable_offline", "mimebundle", "pareto_front", "to_html", "use_theme",
        }
    }
    covered = {name.split("_by_")[0].split("_odd_")[0] for name in _hostile_builders()}
    assert builders <= covered, f"add {sorted(builders - covered)} to _hostile_builders()"


@pytest.mark.parametrize("name", list(_hostile_builders()))
def test_hostile_names_reach_vega_as_data_only(name):
    spec = _hostile_builders()[name]().to_dict()  # validates against the Vega-Lite schema
    vega, _ = charts.mimebundle(spec, fallback=None)
    vega = vega[charts.VEGA_MIME]
    # Never inside an expression or a field name, in the spec JupyterLab draws or in Altair's own.
    for compiled in (vega, vlc.vegalite_to_vega(spec)):
        leaks = [(k, text[:120]) for k, text in _code_strings(compiled) if "zq" in text or "\u2028" in text]
        assert leaks == []
    # Drawn without an expression parse error, by the Vega JupyterLab gets and by Vega-Lite 6.
    svg = vlc.vega_to_svg(vega)
    assert svg.startswith("<svg") and vlc.vegalite_to_svg(spec).startswith("<svg")
    assert "<script" not in svg and "<img" not in svg  # text in the SVG is escaped
    in_data = _data_strings(vega)
    wanted = {
        "latency": {A, B}, "latency_by_model": {MODEL}, "cost_per_item": {A, B},
        "tokens": {f"{A} / {MODEL}", f"{B} / plain"}, "quality": {A, B, SCORER, ITEM},
        "paired_differences": {A, B, ITEM, HOSTILE["img"], HOSTILE["dollars"], f"{B} better", f"{A} better"},
        "cost_quality": set(HOSTILE.values()), "timeseries": {HOSTILE["script"] + "@v1"},
        "timeseries_odd_column": set(), "latency_odd_group_column": {A, B},
        "savings": {A, B, ITEM}, "alert_spans": {A, MODEL, ITEM},
    }[name]
    assert wanted <= in_data, wanted - in_data


def test_hostile_names_title_the_paired_chart_as_literal_text():
    chart = _hostile_builders()["paired_differences"]()
    assert chart.title.text == f"Paired differences: {B} − {A} ({SCORER})"
    spec = json.dumps(chart.to_dict(), ensure_ascii=False)
    assert "score difference (b \u2212 a)" in spec  # the axis says b and a; the names are in the title and data
