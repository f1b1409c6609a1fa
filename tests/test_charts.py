"""charts: valid specs, small embedded data whatever the input size, PNG rendering, offline renderers."""

from __future__ import annotations

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


@pytest.mark.parametrize(("renderer", "options"), [("html", {"template": "inline"}), ("svg", {}), ("png", {})])
def test_enable_offline_picks_a_renderer_that_needs_no_network(restore_altair, renderer, options):
    assert charts.enable_offline(renderer) == renderer
    assert alt.renderers.active == renderer
    assert alt.renderers.options == options


def test_enable_offline_refuses_the_mimetype_renderer(restore_altair):
    with pytest.raises(ConfigError, match="'mimetype'"):
        charts.enable_offline("mimetype")


def test_html_inlines_its_javascript_and_spec_is_a_dict(small):
    chart = charts.tokens(small)
    html = charts.to_html(chart)
    assert "<script" in html and 'src="https://' not in html and "vegaEmbed" in html
    spec = charts.embed_spec(chart)
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
