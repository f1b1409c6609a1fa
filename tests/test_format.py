"""Numbers as a person writes them."""

from __future__ import annotations

import math
import re

import pytest

from workbench import _format as f


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (4.68e-05, "$0.0000468"),
        (2.94539e-05, "$0.0000295"),
        (0.4749, "$0.475"),
        (0.5, "$0.50"),
        (0.0012, "$0.0012"),
        (1.3612, "$1.36"),
        (1234.5, "$1,234.50"),
        (12345.6, "$12,346"),
        (0.0, "$0.00"),
        (-0.0012, "\u2212$0.0012"),
    ],
)
def test_money_precision_fits_the_size(value, text):
    assert f.money(value) == text
    assert "e-" not in f.money(value)


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_nothing_shows_as_nan(value):
    for fn in (f.money, f.pct, f.ms, f.num, f.count):
        assert fn(value) == "n/a"
    assert f.pvalue(value) == "p=n/a"


@pytest.mark.parametrize(("p", "text"), [(1.8e-07, "p<0.001"), (0.0342, "p=0.034"), (0.21, "p=0.21"), (0.0011, "p=0.0011"), (1.0, "p=1.00")])
def test_pvalues_never_zero_or_exponent(p, text):
    assert f.pvalue(p) == text


def test_signed_and_relative():
    assert f.money(0.0012, signed=True) == "+$0.0012"
    assert f.relative(1.2, 1.0) == "+20%"
    assert f.relative(0.965, 1.0) == "\u22123.5%"
    assert f.relative(1.0, 0.0) == "n/a"
    assert f.ms(-120, signed=True) == "\u2212120 ms"
    assert f.interval(0.519, 0.715, signed=True) == "+0.519 to +0.715"
    assert f.per_thousand(0.000468) == "$0.468 per 1,000 calls"


def test_units_go_to_headers():
    header, cell = f.column("cost_per_item_usd")
    assert (header, cell(4.68e-05)) == ("cost per item ($)", "0.0000468")
    header, cell = f.column("latency_p95_ms", pretty=False)
    assert (header, cell(1234.5)) == ("latency_p95_ms (ms)", "1,234")
    assert f.column("latency_p50")[0] == "latency p50 (ms)"
    assert f.column("error_rate")[1](0.125) == "12.5%"
    assert f.column("input_tokens_mean")[1](46.83) == "46.8" and f.column("input_tokens")[1](141878) == "141,878"
    assert f.column("requests")[1](None) == "n/a"


def test_plain_values_and_counts():
    from datetime import datetime, timezone

    assert f.plain(datetime(2026, 12, 2, 6, 2, 33, tzinfo=timezone.utc)) == "2026-12-02 06:02 UTC"
    assert f.plain(True) == "yes" and f.plain(1234) == "1,234" and f.plain(0.61666) == "0.617"
    assert f.plural(1, "call") == "1 call" and f.plural(360, "call") == "360 calls"
    assert f.ms(-60.8, signed=True, decimals=0) == "\u221261 ms" and f.ms(584.2, unit=False) == "584"
    assert f.money(0.000232, symbol=False) == "0.000232"


def test_tables_align_text_left_numbers_right_and_keep_ids_whole():
    from workbench import _html

    out = _html.table(["item", "inputs", "calls"], [("sq-001", '{"q": "a"}', 3), ("sq-002", "b", 12)])
    cells = re.findall(r"<td style=\"([^\"]*)\">([^<]*)</td>", out)
    styles = {text: style for style, text in cells}
    assert "white-space:nowrap" in styles["sq-001"] and "text-align:left" in styles["sq-001"]
    assert "text-align:left" in styles["b"]
    assert "text-align:right" in styles["12"]


def test_an_estimate_reads_dollars_like_every_other_readout():
    from workbench.experiments import Estimate

    est = Estimate(360, 0.2, 0.4749, 1.3612, {"A": {"calls": 180, "input_tokens_per_call": 51, "cost_low": 0.0845,
                                                   "cost_expected": 0.2193, "cost_high": 0.6597}}, "basis")
    assert "$0.475 expected (range $0.20 to $1.36)" in repr(est)
    html = est._repr_html_()
    assert "&#36;0.0845" in html and "&#36;0.475" in html and "0.4749" not in html
    unknown = Estimate(1, None, None, None, {}, "basis")._repr_html_()
    assert "unknown (no price for a model)" in unknown
