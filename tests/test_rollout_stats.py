"""Statistics of online comparisons (workbench.rollout._stats), against scipy, statsmodels or the closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as st
from statsmodels.stats.proportion import confint_proportions_2indep

from workbench import stats
from workbench.rollout import _stats as S


def clustered_calls(rng, units: int, mean: float, unit_sd: float, call_sd: float, calls_per_unit=(1, 30)):
    """Calls of ``units`` users: each user has their own level, and makes a Zipf-ish number of calls."""
    sizes = np.minimum(rng.zipf(1.6, units), calls_per_unit[1])
    unit_of = np.repeat(np.arange(units), sizes)
    level = rng.normal(mean, unit_sd, units)[unit_of]
    return level + rng.normal(0, call_sd, len(unit_of)), unit_of


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_one_call_per_unit_is_welchs_t_test(confidence):
    rng = np.random.default_rng(3)
    a, b = rng.normal(1, 1, 60), rng.normal(1.4, 2, 90)
    d = S.two_sample(a, b, confidence=confidence)
    ref = st.ttest_ind(b, a, equal_var=False)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert (d.ci_low, d.ci_high) == pytest.approx(tuple(ref.confidence_interval(confidence)), rel=1e-12)


def test_each_arms_clustered_se_is_statsmodels_cr1_and_the_delta_method():
    rng = np.random.default_rng(5)
    ya, ua = clustered_calls(rng, 200, 1.0, 0.5, 0.3)
    yb, ub = clustered_calls(rng, 150, 1.2, 0.5, 0.3)
    d = S.two_sample(ya, yb, ua, ub)
    se = []
    for y, u in ((ya, ua), (yb, ub)):
        ref = sm.OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": u})
        se.append(ref.bse[0])
        # Delta method for a ratio metric (sum of values over sum of calls, per unit), as online
        # experiments compute it; the clustered SE is that times sqrt(G / (G - 1)).
        sums, counts = np.bincount(u, weights=y), np.bincount(u).astype(float)
        g, mx, my = len(sums), counts.mean(), sums.mean()
        var = (np.var(sums) / mx**2 - 2 * my * np.cov(sums, counts, ddof=0)[0, 1] / mx**3 + my**2 * np.var(counts) / mx**4) / g
        assert ref.bse[0] == pytest.approx(math.sqrt(var * g / (g - 1)), rel=1e-9)
    assert d.se == pytest.approx(math.hypot(*se), rel=1e-12)
    assert d.units_a == 200 and d.units_b == 150


def test_clustered_intervals_cover_and_per_call_ones_do_not():
    """With users who differ from each other, treating calls as independent overstates certainty."""
    rng = np.random.default_rng(11)
    covered = naive = 0
    runs = 300
    for _ in range(runs):
        ya, ua = clustered_calls(rng, 60, 0.0, 1.0, 0.2)
        yb, ub = clustered_calls(rng, 60, 0.0, 1.0, 0.2)  # no true difference
        d = S.two_sample(ya, yb, ua, ub)
        covered += d.ci_low <= 0 <= d.ci_high
        flat = S.two_sample(ya, yb)
        naive += flat.ci_low <= 0 <= flat.ci_high
    assert 0.91 <= covered / runs <= 0.99
    assert naive / runs < 0.8


def test_one_call_per_unit_is_newcombes_interval():
    rng = np.random.default_rng(2)
    for pa, pb, na, nb in ((0.1, 0.2, 200, 150), (0.02, 0.03, 1000, 800), (0.5, 0.45, 40, 60)):
        a = (rng.random(na) < pa).astype(float)
        b = (rng.random(nb) < pb).astype(float)
        d = S.rate_difference(a, b)
        ref = confint_proportions_2indep(int(b.sum()), nb, int(a.sum()), na, method="newcomb", compare="diff")
        assert (d.ci_low, d.ci_high) == pytest.approx(tuple(ref), rel=1e-9)


def test_rate_p_value_and_interval_agree():
    rng = np.random.default_rng(4)
    for _ in range(40):
        n = int(rng.integers(20, 400))
        a = (rng.random(n) < rng.uniform(0, 0.2)).astype(float)
        b = (rng.random(n) < rng.uniform(0, 0.2)).astype(float)
        d = S.rate_difference(a, b)
        if a.mean() == b.mean():
            assert d.p_value == 1.0
            continue
        assert (d.p_value < 0.05) == (d.ci_low > 0 or d.ci_high < 0)
        at = S.rate_difference(a, b, confidence=1 - d.p_value * 1.0001)
        assert at.ci_low > 0 or at.ci_high < 0


def test_no_errors_in_either_arm_is_not_proof_of_no_difference():
    d = S.rate_difference(np.zeros(300), np.zeros(50))
    assert d.diff == 0 and d.p_value == 1.0
    # Wilson's upper end for 0 of 50 is about 3.8 / 50 (the "rule of three" at 95%).
    assert 0.06 < d.ci_high < 0.08 and -0.02 < d.ci_low < 0


def test_errors_concentrated_in_a_few_units_widen_the_interval():
    rng = np.random.default_rng(8)
    units = np.repeat(np.arange(50), 20)
    prone = rng.random(50) < 0.1  # a few users hit every error
    a = (prone[units] & (rng.random(1000) < 0.8)).astype(float)
    b = (rng.random(1000) < a.mean()).astype(float)
    clustered = S.rate_difference(a, b, units, np.repeat(np.arange(50, 100), 20))
    flat = S.rate_difference(a, b)
    assert clustered.ci_high - clustered.ci_low > 1.5 * (flat.ci_high - flat.ci_low)


def test_quantile_interval_of_single_call_units_matches_a_bootstrap_of_calls():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(6.2, 0.4, 3000), rng.lognormal(6.3, 0.4, 3000)
    for q, stat in ((0.5, "median"), (0.95, "p95")):
        d = S.quantile_difference(a, b, q=q)
        ref = stats.bootstrap_difference(a, b, stat=stat, n_boot=4000)
        width = ref.ci_high - ref.ci_low
        assert d.a == pytest.approx(np.quantile(a, q, method="inverted_cdf"))
        assert abs(d.ci_low - ref.ci_low) < 0.15 * width and abs(d.ci_high - ref.ci_high) < 0.15 * width
        assert (d.p_value < 0.05) == (d.ci_low > 0 or d.ci_high < 0)


def test_quantile_interval_is_clustered_by_unit():
    rng = np.random.default_rng(6)
    la, ua = clustered_calls(rng, 80, 600, 200, 30)
    lb, ub = clustered_calls(rng, 80, 600, 200, 30)
    by_unit = S.quantile_difference(la, lb, ua, ub, q=0.95)
    by_call = S.quantile_difference(la, lb, q=0.95)
    assert by_unit.ci_high - by_unit.ci_low > 1.3 * (by_call.ci_high - by_call.ci_low)
    assert by_unit.units_a == 80


def test_clustered_quantile_intervals_cover():
    rng = np.random.default_rng(12)
    covered, runs = 0, 200
    for _ in range(runs):
        la, ua = clustered_calls(rng, 100, 600, 150, 60)
        lb, ub = clustered_calls(rng, 100, 600, 150, 60)
        d = S.quantile_difference(la, lb, ua, ub, q=0.5)
        covered += d.ci_low <= 0 <= d.ci_high
    assert 0.9 <= covered / runs <= 0.99


def test_sample_ratio_is_scipys_chi_square():
    srm = S.sample_ratio({1: 5_210, 2: 4_790}, {1: 0.5, 2: 0.5})
    ref = st.chisquare([5_210, 4_790], [5_000, 5_000])
    assert srm.chi2 == pytest.approx(ref.statistic) and srm.p_value == pytest.approx(ref.pvalue)
    assert srm.mismatch  # p is about 3e-5
    fine = S.sample_ratio({1: 9_020, 2: 980}, {1: 0.9, 2: 0.1})
    assert not fine.mismatch and fine.expected == {1: 9_000.0, 2: 1_000.0}


def test_units_outside_the_split_are_a_mismatch():
    srm = S.sample_ratio({1: 500, 2: 500, 3: 4}, {1: 0.5, 2: 0.5})
    assert srm.outside == 4 and srm.mismatch


@pytest.mark.parametrize("low, high, higher_is_better, expected", [
    (-0.01, 0.02, True, S.HOLDS),       # B may be 0.01 worse: within a 0.02 margin
    (-0.05, -0.03, True, S.REGRESSED),  # B at least 0.03 worse: beyond it
    (-0.05, 0.01, True, S.UNSURE),      # could be either
    (0.0, 0.015, False, S.HOLDS),       # lower is better (errors): +1.5 points at most
    (0.03, 0.06, False, S.REGRESSED),
    (float("nan"), 0.0, False, S.UNSURE),
])
def test_judge_reads_the_interval_against_the_margin(low, high, higher_is_better, expected):
    assert S.judge(low, high, 0.02, higher_is_better=higher_is_better) == expected
