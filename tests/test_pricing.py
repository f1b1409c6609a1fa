"""Usage to dollars, checked against Anthropic's published per-million-token prices.

Every expected value below is worked out by hand from the price list:

=================  =====  ======  ==========  ===============  ============
model              input  output  cache read  write (5 minutes) write (1 hour)
=================  =====  ======  ==========  ===============  ============
claude-haiku-4-5   $1     $5      $0.10       $1.25            $2
claude-sonnet-4    $3     $15     $0.30       $3.75            $6
claude-sonnet-4-5  $3     $15     $0.30       $3.75            $6
  above 200k input $6     $22.50  $0.60       $7.50            $12
claude-opus-4-5    $5     $25     $0.50       $6.25            $10
=================  =====  ======  ==========  ===============  ============

A 5-minute cache write costs 1.25x the input price, a 1-hour write 2x.

Usage follows Anthropic: ``input_tokens`` EXCLUDES cache reads and writes.
"""

from __future__ import annotations

import warnings

import pytest

import workbench as wb
from workbench.errors import ConfigError
from workbench.pricing import Pricer, UnknownPriceWarning
from workbench.providers.base import Usage
from workbench.providers.simulated import SimulatedProvider

M = 1_000_000


def price(model: str, usage: Usage) -> float:
    cost, source = Pricer().cost(model, usage)
    assert source is not None and source.startswith("genai-prices")
    return cost


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-haiku-4-5", (1_000 * 1 + 500 * 5) / M),
        ("claude-sonnet-4-5", (1_000 * 3 + 500 * 15) / M),
        ("claude-opus-4-5", (1_000 * 5 + 500 * 25) / M),
        ("claude-haiku-4-5-20251001", (1_000 * 1 + 500 * 5) / M),  # a dated id prices as its family
    ],
)
def test_plain_call(model, expected):
    assert price(model, Usage(input_tokens=1_000, output_tokens=500)) == pytest.approx(expected, rel=1e-12)


def test_cache_reads_and_writes_facts_example():
    # FACTS.md: sonnet-4, 1000 uncached, 2000 cache read, 300 cache write, 500 output = $0.012225.
    usage = Usage(input_tokens=1_000, output_tokens=500, cache_read_tokens=2_000, cache_write_tokens=300)
    expected = (1_000 * 3 + 2_000 * 0.30 + 300 * 3.75 + 500 * 15) / M
    assert expected == pytest.approx(0.012225)
    assert price("claude-sonnet-4", usage) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-haiku-4-5", (400 * 1 + 5_000 * 0.10 + 2_000 * 1.25 + 300 * 5) / M),
        ("claude-sonnet-4-5", (400 * 3 + 5_000 * 0.30 + 2_000 * 3.75 + 300 * 15) / M),
        ("claude-opus-4-5", (400 * 5 + 5_000 * 0.50 + 2_000 * 6.25 + 300 * 25) / M),
    ],
)
def test_cache_reads_and_writes(model, expected):
    usage = Usage(input_tokens=400, output_tokens=300, cache_read_tokens=5_000, cache_write_tokens=2_000)
    assert price(model, usage) == pytest.approx(expected, rel=1e-12)


def test_long_context_tier_counts_cached_input():
    # 150k uncached + 60k cache read = 210k input > 200k: every token at the long-context rate.
    usage = Usage(input_tokens=150_000, output_tokens=1_000, cache_read_tokens=60_000)
    expected = (150_000 * 6 + 60_000 * 0.60 + 1_000 * 22.50) / M
    assert price("claude-sonnet-4-5", usage) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # The threshold is on TOTAL input (uncached + cache read + cache write), strictly above 200k.
        (Usage(190_000, 0, cache_write_tokens=15_000), (190_000 * 6 + 15_000 * 7.50) / M),
        (Usage(200_001, 0), 200_001 * 6 / M),
        (Usage(200_000, 0), 200_000 * 3 / M),
        (Usage(150_000, 0, cache_read_tokens=50_000), (150_000 * 3 + 50_000 * 0.30) / M),
        # Output tokens do not count toward the threshold.
        (Usage(199_000, 10_000), (199_000 * 3 + 10_000 * 15) / M),
    ],
    ids=["cache-write-crosses", "just-above", "exactly-200k", "cached-exactly-200k", "output-not-counted"],
)
def test_long_context_threshold(usage, expected):
    assert price("claude-sonnet-4-5", usage) == pytest.approx(expected, rel=1e-12)


def test_unknown_model_costs_none_and_warns_once_per_model():
    pricer = Pricer()
    usage = Usage(input_tokens=100, output_tokens=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(50):
            assert pricer.cost("acme-llm-7b", usage) == (None, None)
            assert pricer.cost("acme-llm-13b", usage) == (None, None)
    unknown = [w for w in caught if issubclass(w.category, UnknownPriceWarning)]
    assert len(unknown) == 2
    assert "'acme-llm-7b'" in str(unknown[0].message)
    assert "set_price('acme-llm-7b'" in str(unknown[0].message)
    assert "'acme-llm-13b'" in str(unknown[1].message)
    assert pricer.estimate("acme-llm-7b", usage) is None


def test_unknown_model_call_stores_cost_null(bench):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(5):
            r = bench.complete(model="acme-llm-7b", messages=[{"role": "user", "content": f"Question {i}?"}])
            assert r.status == "ok" and r.cost_usd is None
    assert len([w for w in caught if issubclass(w.category, UnknownPriceWarning)]) == 1
    rows = bench.traces(model="acme-llm-7b")
    assert len(rows) == 5
    assert all(r["cost_usd"] is None and r["price_source"] is None and r["input_tokens"] for r in rows)


def test_override_wins_and_persists_across_reopen(tmp_path):
    path = tmp_path / "prices.db"
    with wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0, error_rate=0)) as bench:
        bench.pricing.set_price("claude-haiku-4-5", input=0.5, output=2.0, cache_read=0.05)
        bench.pricing.set_price("acme-llm-7b", input=0.2, output=0.4)
    with wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0, error_rate=0)) as bench:
        assert set(bench.pricing.overrides()) == {"claude-haiku-4-5", "acme-llm-7b"}
        usage = Usage(input_tokens=1_000, output_tokens=100, cache_read_tokens=2_000, cache_write_tokens=500)
        # cache_write was not given: it defaults to the input price.
        expected = (1_000 * 0.5 + 100 * 2.0 + 2_000 * 0.05 + 500 * 0.5) / M
        assert bench.pricing.cost("claude-haiku-4-5", usage) == (pytest.approx(expected, rel=1e-12), "override")

        haiku = bench.complete(model="claude-haiku-4-5", messages="What is the refund window?")
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnknownPriceWarning)
            acme = bench.complete(model="acme-llm-7b", messages="What is the refund window?")
        rows = {r["model"]: r for r in bench.traces()}
        assert rows["claude-haiku-4-5"]["price_source"] == rows["acme-llm-7b"]["price_source"] == "override"
        h, a = rows["claude-haiku-4-5"], rows["acme-llm-7b"]
        assert h["cost_usd"] == pytest.approx((h["input_tokens"] * 0.5 + h["output_tokens"] * 2.0) / M, rel=1e-12)
        assert a["cost_usd"] == pytest.approx((a["input_tokens"] * 0.2 + a["output_tokens"] * 0.4) / M, rel=1e-12)
        assert (haiku.cost_usd, acme.cost_usd) == (h["cost_usd"], a["cost_usd"])


def test_set_price_refuses_negative_prices(bench):
    with pytest.raises(ConfigError, match="input"):
        bench.pricing.set_price("claude-haiku-4-5", input=-1, output=5)
    assert bench.pricing.overrides() == {}


def test_flat_fast_path_matches_genai_prices_exactly_enough():
    """Untiered models take a float fast path; it must agree with genai-prices' Decimal result."""
    from workbench.pricing import Pricer, flat_price, price_from_genai_prices
    from workbench.providers.base import Usage

    assert flat_price("claude-sonnet-4-5") is None  # tiered: always through genai-prices
    pricer = Pricer()
    for model in ("claude-haiku-4-5", "claude-opus-4-5", "claude-opus-4-1"):
        assert flat_price(model) is not None
        for usage in (Usage(1, 1), Usage(12_345, 678, 9_000, 1_200), Usage(0, 4_000, 150_000, 0),
                      Usage(300, 20, 0, 5_000, 5_000), Usage(7, 8, 9, 10_000, 2_500)):
            fast, _ = pricer.cost(model, usage)
            assert fast == pytest.approx(price_from_genai_prices(model, usage), rel=1e-12)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # 1,000 uncached, 500 out, 2,000 read, 3,000 written of which 1,000 to the 1-hour cache.
        ("claude-haiku-4-5", (1_000 * 1 + 500 * 5 + 2_000 * 0.10 + 2_000 * 1.25 + 1_000 * 2) / M),
        ("claude-sonnet-4-5", (1_000 * 3 + 500 * 15 + 2_000 * 0.30 + 2_000 * 3.75 + 1_000 * 6) / M),
        ("claude-opus-4-5", (1_000 * 5 + 500 * 25 + 2_000 * 0.50 + 2_000 * 6.25 + 1_000 * 10) / M),
    ],
)
def test_one_hour_cache_writes_cost_twice_the_input_price(model, expected):
    usage = Usage(input_tokens=1_000, output_tokens=500, cache_read_tokens=2_000, cache_write_tokens=3_000,
                  cache_write_1h_tokens=1_000)
    assert usage.cache_write_5m_tokens == 2_000
    assert price(model, usage) == pytest.approx(expected, rel=1e-12)
    # By hand for claude-haiku-4-5: a million 1-hour writes are $2.00, a million 5-minute ones $1.25.
    assert price("claude-haiku-4-5", Usage(cache_write_tokens=M, cache_write_1h_tokens=M)) == pytest.approx(2.00)
    assert price("claude-haiku-4-5", Usage(cache_write_tokens=M)) == pytest.approx(1.25)


def test_an_override_prices_1h_writes_at_its_own_rate_and_keeps_it(tmp_path):
    path = tmp_path / "prices.db"
    usage = Usage(input_tokens=100, output_tokens=10, cache_write_tokens=4_000, cache_write_1h_tokens=1_000)
    with wb.open(path, provider="simulated") as bench:
        bench.pricing.set_price("acme", input=1.0, output=2.0, cache_write=1.5)
        # Without a 1-hour price, 1-hour writes cost what other writes do.
        assert bench.pricing.cost("acme", usage)[0] == pytest.approx((100 + 10 * 2 + 4_000 * 1.5) / M)
        bench.pricing.set_price("acme", input=1.0, output=2.0, cache_write=1.5, cache_write_1h=3.0)
    with wb.open(path, provider="simulated") as bench:
        assert bench.pricing.cost("acme", usage)[0] == pytest.approx((100 + 10 * 2 + 3_000 * 1.5 + 1_000 * 3.0) / M)
        with pytest.raises(ConfigError, match="cache_write_1h"):
            bench.pricing.set_price("acme", input=1.0, output=2.0, cache_write_1h=float("inf"))
