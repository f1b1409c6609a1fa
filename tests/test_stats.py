"""Tests for workbench.stats, against scipy, statsmodels or the closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as st
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.descriptivestats import sign_test
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from workbench import stats
from workbench.stats import (
    Estimate,
    bootstrap_difference,
    holm,
    item_means,
    mann_whitney,
    mcnemar_exact,
    mean_ci,
    minimum_detectable_effect,
    paired_difference,
    preference,
    sample_size_needed,
    verdict,
    wilson_interval,
)

NO_DIFFERENCE = "no detectable difference at this n"


def clustered_ols(y: np.ndarray, groups: np.ndarray, use_t: bool = False):
    """Statsmodels' constant-only regression with CR1 clustered errors: the reference."""
    return sm.OLS(y, np.ones(len(y))).fit(
        cov_type="cluster", cov_kwds={"groups": groups}, use_t=use_t
    )


def clustered_scores(rng: np.random.Generator, n_clusters: int, size: int) -> tuple:
    """Scores with a shared per-cluster effect, so items within a cluster correlate."""
    groups = np.repeat(np.arange(n_clusters), size)
    effect = rng.normal(0, 1, n_clusters)[groups]
    return effect + rng.normal(0, 0.5, len(groups)), groups


# --- Estimate -----------------------------------------------------------------


def test_estimate_repr_is_the_one_line_format():
    est = Estimate(
        mean=0.712, se=0.041, ci_low=0.671, ci_high=0.753, n=60, n_clusters=None, confidence=0.95
    )
    assert repr(est) == "0.712 ± 0.041 (95% CI 0.671–0.753, n=60)"
    clustered = Estimate(0.5, 0.1, 0.3, 0.7, 40, 8, 0.9)
    assert clustered.format(digits=2) == "0.50 ± 0.10 (90% CI 0.30–0.70, n=40, 8 clusters)"


# --- item_means ---------------------------------------------------------------


def test_item_means_averages_repeats_in_first_seen_order():
    ids, means = item_means([1, 0, 1, 0.5, 1, 0], ["q2", "q1", "q2", "q3", "q2", "q1"])
    assert ids.tolist() == ["q2", "q1", "q3"]
    np.testing.assert_allclose(means, [1.0, 0.0, 0.5])


def test_item_means_drops_nan_scores_and_all_nan_items():
    ids, means = item_means([np.nan, 1.0, 0.0, np.nan, np.nan], [7, 7, 7, 9, 9])
    assert ids.tolist() == [7]
    np.testing.assert_allclose(means, [0.5])


def test_item_means_matches_a_groupby_on_generated_data():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 50, 600)
    values = rng.random(600)
    got_ids, got = item_means(values, ids)
    expected = {i: values[ids == i].mean() for i in np.unique(ids)}
    assert len(got_ids) == len(expected)
    np.testing.assert_allclose(got, [expected[i] for i in got_ids])
    first_seen = list(dict.fromkeys(ids.tolist()))
    assert got_ids.tolist() == first_seen


def test_item_means_of_nothing_is_empty():
    ids, means = item_means([], [])
    assert len(ids) == 0 and len(means) == 0


def test_item_means_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="3 values.*2"):
        item_means([1, 2, 3], ["a", "b"])


# --- mean_ci ------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_mean_ci_matches_the_normal_interval(confidence):
    x = np.random.default_rng(1).binomial(1, 0.7, 80).astype(float)
    est = mean_ci(x, confidence=confidence)
    ref = DescrStatsW(x)
    assert est.mean == pytest.approx(x.mean())
    assert est.se == pytest.approx(np.std(x, ddof=1) / math.sqrt(80))
    assert est.se == pytest.approx(ref.std_mean)
    assert (est.ci_low, est.ci_high) == pytest.approx(ref.zconfint_mean(alpha=1 - confidence))
    assert est.n == 80 and est.n_clusters is None and est.confidence == confidence


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustered_mean_ci_matches_statsmodels_cr1(seed):
    rng = np.random.default_rng(seed)
    # Unequal cluster sizes, labelled with strings, in shuffled order.
    groups = rng.choice(["g" + str(i) for i in range(15)], size=120)
    y = rng.normal(size=120) + rng.normal(size=15)[np.char.lstrip(groups, "g").astype(int)]
    est = mean_ci(y, clusters=groups, confidence=0.9)
    ref = clustered_ols(y, groups)
    assert est.se == pytest.approx(ref.bse[0], rel=1e-12)
    z = st.norm.ppf(0.95)
    expected = (y.mean() - z * est.se, y.mean() + z * est.se)
    assert (est.ci_low, est.ci_high) == pytest.approx(expected)
    assert est.n_clusters == len(np.unique(groups))


def test_each_item_its_own_cluster_gives_exactly_the_unclustered_se():
    # Miller's clustered SE uses 1/n² sums, i.e. a ddof=0 variance, so alone it
    # would be sqrt((n-1)/n) times the ddof=1 SE; the CR1 factor G/(G-1) = n/(n-1)
    # cancels that exactly.
    x = np.random.default_rng(4).random(37)
    plain = mean_ci(x)
    clustered = mean_ci(x, clusters=np.arange(37))
    assert clustered.se == pytest.approx(plain.se, rel=1e-12)
    miller_without_cr1 = math.sqrt(np.sum((x - x.mean()) ** 2)) / 37
    assert clustered.se == pytest.approx(miller_without_cr1 * math.sqrt(37 / 36), rel=1e-12)


def test_positively_correlated_clusters_widen_the_interval():
    y, groups = clustered_scores(np.random.default_rng(5), n_clusters=20, size=10)
    plain = mean_ci(y)
    clustered = mean_ci(y, clusters=groups)
    assert clustered.se > 2 * plain.se
    assert clustered.ci_high - clustered.ci_low > 2 * (plain.ci_high - plain.ci_low)


def test_mean_ci_of_nothing_is_nan():
    est = mean_ci([])
    assert est.n == 0
    assert all(math.isnan(v) for v in (est.mean, est.se, est.ci_low, est.ci_high))


def test_mean_ci_of_one_value_has_a_mean_but_no_interval():
    est = mean_ci([0.4])
    assert est.mean == 0.4 and est.n == 1
    assert math.isnan(est.se) and math.isnan(est.ci_low) and math.isnan(est.ci_high)


@pytest.mark.parametrize("clusters", [None, [0, 0, 1, 1, 2]])
def test_all_equal_values_collapse_the_interval_to_the_mean(clusters):
    # 0.1 is not exact in binary, so a naive mean/std would leave rounding noise.
    est = mean_ci([0.1] * 5, clusters=clusters)
    assert est.se == 0.0
    assert est.mean == est.ci_low == est.ci_high == 0.1


def test_all_passes_have_zero_se():
    est = mean_ci(np.ones(30, dtype=bool))
    assert (est.mean, est.se, est.ci_low, est.ci_high) == (1.0, 0.0, 1.0, 1.0)


def test_mean_ci_drops_nan_with_its_cluster_label():
    est = mean_ci([1.0, np.nan, 0.0, 1.0], clusters=["a", "b", "c", "c"])
    assert est.n == 3 and est.n_clusters == 2
    assert est.mean == pytest.approx(2 / 3)
    assert est.se == pytest.approx(clustered_ols(np.array([1.0, 0, 1]), np.array([0, 1, 1])).bse[0])


def test_a_single_cluster_has_no_standard_error():
    est = mean_ci([0.0, 1.0, 1.0], clusters=["x", "x", "x"])
    assert est.n_clusters == 1 and math.isnan(est.se)


def test_mean_ci_refuses_mismatched_clusters_and_bad_confidence():
    with pytest.raises(ValueError, match="3 values.*2"):
        mean_ci([1, 2, 3], clusters=[1, 2])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2, 3], confidence=95)


# --- paired_difference --------------------------------------------------------


@pytest.mark.parametrize(("n", "confidence"), [(8, 0.95), (60, 0.9), (500, 0.99)])
def test_paired_difference_matches_ttest_rel(n, confidence):
    rng = np.random.default_rng(n)
    difficulty = rng.random(n)
    a = (rng.random(n) < difficulty).astype(float)
    b = (rng.random(n) < difficulty + 0.1).astype(float)
    got = paired_difference(a, b, confidence=confidence)
    ref = st.ttest_rel(b, a)
    assert got.diff == pytest.approx(b.mean() - a.mean())
    assert (got.mean_a, got.mean_b) == pytest.approx((a.mean(), b.mean()))
    assert got.diff / got.se == pytest.approx(ref.statistic)
    assert got.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(confidence)
    assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high))
    assert got.correlation == pytest.approx(st.pearsonr(a, b).statistic)
    assert got.n == n and got.n_clusters is None


def test_paired_se_follows_millers_variance_of_a_difference():
    rng = np.random.default_rng(8)
    a = rng.normal(size=200)
    b = 0.8 * a + rng.normal(scale=0.5, size=200)
    got = paired_difference(a, b)
    var_a, var_b = np.var(a, ddof=1), np.var(b, ddof=1)
    cov = np.cov(a, b, ddof=1)[0, 1]
    assert got.se == pytest.approx(math.sqrt((var_a + var_b - 2 * cov) / 200))
    # The shared variance cancels: far tighter than treating the samples as independent.
    assert got.se < 0.5 * math.sqrt((var_a + var_b) / 200)


def test_clustered_paired_difference_matches_statsmodels_with_t_on_clusters():
    rng = np.random.default_rng(9)
    a, groups = clustered_scores(rng, n_clusters=12, size=5)
    b = a + 0.3 + rng.normal(0, 0.3, 12)[groups] + rng.normal(0, 0.2, len(a))
    got = paired_difference(a, b, clusters=groups, confidence=0.9)
    ref = clustered_ols(b - a, groups, use_t=True)
    assert got.n_clusters == 12
    assert got.se == pytest.approx(ref.bse[0], rel=1e-12)
    assert got.p_value == pytest.approx(ref.pvalues[0], rel=1e-9)
    assert (got.ci_low, got.ci_high) == pytest.approx(tuple(ref.conf_int(alpha=0.1)[0]))


@pytest.mark.parametrize("n, step", [(2, 1.0), (3, 0.25), (6, -1.0), (10, 1.0), (25, 0.5)])
def test_constant_differences_fall_back_to_the_exact_sign_test(n, step):
    # Every item moved by the same amount: t would say SE 0 and p = 0. The exact sign
    # test (McNemar's on pass/fail) over the n items is the honest p-value.
    a = np.linspace(0, 1, n)
    got = paired_difference(a, a + step)
    positives = n if step > 0 else 0
    assert got.test == "sign" and got.se == 0.0 and got.diff == pytest.approx(step)
    assert got.p_value == pytest.approx(st.binomtest(positives, n, 0.5).pvalue)
    _, sign_p = sign_test(a + step - a)
    assert got.p_value == pytest.approx(sign_p)
    assert got.p_value > 0
    assert "exact sign test" in got.notes[0] and f"over {n} items" in got.notes[0]
    if n >= 6:  # 1 - 2 / 2**n >= 0.95: the range of the differences is a 95% interval for the median
        assert got.ci_low == got.ci_high == pytest.approx(step)
        assert verdict(got.diff, got.ci_low, got.ci_high, got.p_value) == ("B better" if step > 0 else "B worse")
    else:
        assert math.isnan(got.ci_low) and math.isnan(got.ci_high)
        assert "no 95% interval exists at this n (the sign test needs 6 units)" in got.notes[0]
        assert verdict(got.diff, got.ci_low, got.ci_high, got.p_value) == NO_DIFFERENCE


def test_the_sign_fallback_agrees_with_mcnemar_on_pass_fail():
    # The case: two items, B passes both where A fails both.
    got = paired_difference([0, 0], [1, 1])
    exact = mcnemar_exact([0, 0], [1, 1])
    assert got.p_value == exact.p_value == pytest.approx(0.5)
    assert mcnemar([[0, 0], [2, 0]], exact=True).pvalue == pytest.approx(0.5)


def test_the_sign_fallback_counts_clusters_not_items():
    # Items in one cluster are not independent votes: 9 items in 3 clusters are 3 units.
    clusters = ["x", "x", "x", "y", "y", "y", "z", "z", "z"]
    got = paired_difference(np.zeros(9), np.ones(9), clusters=clusters)
    assert got.test == "sign" and got.n_clusters == 3
    assert got.p_value == pytest.approx(st.binomtest(3, 3, 0.5).pvalue)
    assert "over 3 clusters" in got.notes[0]


def test_identical_scores_have_p_value_one():
    got = paired_difference([1, 0, 1, 1, 0, 1], [1, 0, 1, 1, 0, 1])
    assert (got.diff, got.se, got.p_value, got.ci_low, got.ci_high, got.test) == (0.0, 0.0, 1.0, 0.0, 0.0, "sign")


def test_infinite_values_are_left_out_like_missing_ones_and_noted():
    values = [0.5, math.inf, 1.0, -math.inf, 0.0]
    got = mean_ci(values)
    assert (got.n, got.mean) == (3, pytest.approx(0.5))
    assert got.notes == ("2 values of the values were infinite and left out, as missing scores are",)
    assert got.ci_low == mean_ci([0.5, 1.0, 0.0]).ci_low
    diff = paired_difference([0.1, 0.4, 0.8, 0.3], [0.2, math.inf, 0.9, 0.6])
    ref = st.ttest_rel([0.2, 0.9, 0.6], [0.1, 0.8, 0.3])
    assert diff.n == 3 and diff.p_value == pytest.approx(ref.pvalue)
    assert diff.notes == ("1 value of b was infinite and left out, as missing scores are",)
    ids, means = item_means([1.0, math.inf, 0.0, 0.5], ["a", "a", "b", "b"])
    assert list(ids) == ["a", "b"] and list(means) == [1.0, 0.25]
    assert bootstrap_difference([1.0, math.inf, 2.0], [3.0, 4.0], stat="mean").n_a == 2
    assert mann_whitney([1.0, math.inf], [2.0, 3.0]) == mann_whitney([1.0], [2.0, 3.0])
    assert mean_ci([0.1, 0.2]).notes == ()


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_items_without_a_cluster_are_clusters_of_their_own(missing):
    rng = np.random.default_rng(3)
    values = rng.random(12)
    partial = ["a", "a", "a", missing, "b", "b", missing, "c", "c", missing, "d", "d"]
    spelled_out = ["a", "a", "a", "u1", "b", "b", "u2", "c", "c", "u3", "d", "d"]
    got, ref = mean_ci(values, clusters=partial), mean_ci(values, clusters=spelled_out)
    assert (got.mean, got.se, got.n_clusters) == (ref.mean, pytest.approx(ref.se), 7)
    assert got.notes == ("3 of 12 items have no cluster; each counts as a cluster of its own",)
    assert ref.notes == ()
    assert got.se == pytest.approx(clustered_ols(values, np.array(spelled_out)).bse[0])
    other = rng.random(12)
    pd_got = paired_difference(values, other, clusters=partial)
    pd_ref = paired_difference(values, other, clusters=spelled_out)
    assert (pd_got.p_value, pd_got.n_clusters) == (pytest.approx(pd_ref.p_value), 7)
    assert pd_got.notes == got.notes
    # Labels of mixed types cluster as given (1 and "1" are different clusters).
    mixed = mean_ci([0.1, 0.2, 0.3, 0.9], clusters=[1, 1, "1", None])
    assert mixed.n_clusters == 3


def test_all_passes_on_both_sides_have_no_correlation():
    got = paired_difference(np.ones(20, dtype=bool), np.ones(20, dtype=bool))
    assert got.p_value == 1.0 and got.diff == 0.0
    assert math.isnan(got.correlation)


def test_paired_difference_of_one_item_has_no_interval():
    got = paired_difference([0.2], [0.9])
    assert got.diff == pytest.approx(0.7) and got.n == 1
    assert all(math.isnan(v) for v in (got.se, got.p_value, got.ci_low, got.correlation))


def test_paired_difference_of_nothing_is_nan():
    got = paired_difference([], [])
    assert got.n == 0 and math.isnan(got.diff) and math.isnan(got.mean_a)


def test_paired_difference_drops_items_missing_either_score():
    a = [1.0, np.nan, 0.0, 1.0, 0.0]
    b = [1.0, 1.0, 1.0, np.nan, 1.0]
    got = paired_difference(a, b)
    ref = st.ttest_rel([1.0, 1.0, 1.0], [1.0, 0.0, 0.0])
    assert got.n == 3
    assert got.p_value == pytest.approx(ref.pvalue)


def test_paired_difference_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="a has 3 values but b has 4"):
        paired_difference([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="a has 2 values but clusters has 3"):
        paired_difference([1, 2], [1, 2], clusters=[0, 0, 1])


# --- wilson_interval ----------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "confidence"),
    [(0, 10, 0.95), (10, 10, 0.95), (3, 7, 0.9), (55, 60, 0.95), (1, 1, 0.99), (480, 1000, 0.8)],
)
def test_wilson_matches_statsmodels(successes, n, confidence):
    got = wilson_interval(successes, n, confidence)
    ref = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    assert got == pytest.approx(ref, abs=1e-12)
    assert 0.0 <= got[0] <= successes / n <= got[1] <= 1.0


def test_wilson_of_no_trials_is_nan():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_wilson_refuses_impossible_counts():
    with pytest.raises(ValueError, match="successes=5, n=3"):
        wilson_interval(5, 3)


# --- mcnemar_exact ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_mcnemar_matches_statsmodels_exact(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(40) < 0.6
    b = rng.random(40) < 0.6 + 0.1 * seed
    got = mcnemar_exact(a, b)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert (got.a_only, got.b_only, got.n) == (table[0][1], table[1][0], 40)
    assert got.p_value == pytest.approx(mcnemar(table, exact=True).pvalue)


def test_mcnemar_with_no_discordant_pairs_has_p_value_one():
    got = mcnemar_exact([1, 0, 1], [1, 0, 1])
    assert (got.a_only, got.b_only, got.p_value) == (0, 0, 1.0)


def test_mcnemar_all_passes():
    got = mcnemar_exact(np.ones(15), np.ones(15))
    assert (got.a_only, got.b_only, got.n, got.p_value) == (0, 0, 15, 1.0)


def test_mcnemar_one_sided_discordance_is_significant():
    # Eight discordant pairs all won by B: p = 2 * 0.5**8.
    got = mcnemar_exact([0] * 8 + [1] * 5, [1] * 8 + [1] * 5)
    assert got.p_value == pytest.approx(2 * 0.5**8)


def test_mcnemar_drops_missing_outcomes_and_refuses_bad_input():
    assert mcnemar_exact([1, np.nan, 0], [0, 1, 1]).n == 2
    with pytest.raises(ValueError, match="a_pass has 2 values but b_pass has 3"):
        mcnemar_exact([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        mcnemar_exact([1, 0.5], [1, 0])


# --- bootstrap_difference -----------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 100])
@pytest.mark.parametrize("q", [0.3, 0.5, 0.95])
def test_row_quantile_matches_numpys_linear_quantile(n, q):
    rng = np.random.default_rng(n)
    values = np.sort(rng.normal(size=n))
    positions = rng.integers(0, n, size=(20, n))
    expected = np.quantile(values[positions], q, axis=1)
    np.testing.assert_allclose(stats._row_quantile(values, positions, q), expected, rtol=1e-12)


def test_bootstrap_is_reproducible_for_a_fixed_seed():
    rng = np.random.default_rng(10)
    a, b = rng.exponential(size=300), rng.exponential(1.2, size=250)
    first = bootstrap_difference(a, b, n_boot=300, seed=42)
    assert bootstrap_difference(a, b, n_boot=300, seed=42) == first
    assert bootstrap_difference(a, b, n_boot=300, seed=43).ci_low != first.ci_low
    assert (first.n_a, first.n_b, first.n_boot, first.seed) == (300, 250, 300, 42)


@pytest.mark.parametrize(
    ("stat", "true_value"),
    [
        ("median", lambda mu, s: math.exp(mu)),
        ("p95", lambda mu, s: math.exp(mu + s * st.norm.ppf(0.95))),
        ("mean", lambda mu, s: math.exp(mu + s**2 / 2)),
    ],
)
def test_bootstrap_ci_covers_the_true_difference_on_a_large_sample(stat, true_value):
    # Lognormal latencies: every statistic has a closed form. 100k draws per
    # side also exercise the chunked resampling.
    rng = np.random.default_rng(11)
    a = rng.lognormal(0.0, 0.5, 100_000)
    b = rng.lognormal(0.1, 0.5, 100_000)
    got = bootstrap_difference(a, b, stat=stat, n_boot=200)
    truth = true_value(0.1, 0.5) - true_value(0.0, 0.5)
    assert got.ci_low < truth < got.ci_high
    assert got.ci_low > 0  # the shift is detected
    point = {"median": np.median, "p95": lambda x: np.quantile(x, 0.95), "mean": np.mean}[stat]
    assert (got.a, got.b) == pytest.approx((point(a), point(b)))
    assert got.diff == pytest.approx(got.b - got.a)


def test_paired_bootstrap_keeps_items_together():
    rng = np.random.default_rng(12)
    a = rng.lognormal(size=400)
    b = a + 0.25
    paired = bootstrap_difference(a, b, stat="mean", n_boot=300, paired=True)
    unpaired = bootstrap_difference(a, b, stat="mean", n_boot=300)
    # Every paired resample moves both sides together, so the difference never varies.
    assert (paired.ci_low, paired.ci_high) == pytest.approx((0.25, 0.25))
    assert unpaired.ci_high - unpaired.ci_low > 0.1


def test_paired_bootstrap_of_a_quantile_matches_resampling_by_hand():
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=50), rng.normal(size=50)
    got = bootstrap_difference(a, b, stat="p95", n_boot=100, seed=5, paired=True)
    idx = np.random.default_rng(5).integers(0, 50, size=(100, 50), dtype=np.int32)
    diffs = np.quantile(b[idx], 0.95, axis=1) - np.quantile(a[idx], 0.95, axis=1)
    assert (got.ci_low, got.ci_high) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])))


def test_bootstrap_drops_nan_and_gives_nan_for_an_empty_side():
    got = bootstrap_difference([1.0, np.nan, 3.0], [2.0, 4.0], stat="mean", n_boot=50)
    assert (got.n_a, got.a, got.b) == (2, 2.0, 3.0)
    empty = bootstrap_difference([], [1.0, 2.0], n_boot=50)
    assert empty.n_a == 0 and math.isnan(empty.diff) and math.isnan(empty.ci_low)


def test_bootstrap_refuses_bad_arguments():
    with pytest.raises(ValueError, match="unknown stat 'p99'"):
        bootstrap_difference([1], [2], stat="p99")
    with pytest.raises(ValueError, match="a has 2 values but b has 1"):
        bootstrap_difference([1, 2], [2], paired=True)


# --- mann_whitney -------------------------------------------------------------


def test_mann_whitney_matches_scipy():
    rng = np.random.default_rng(14)
    a, b = rng.exponential(size=40), rng.exponential(1.5, size=55)
    ref = st.mannwhitneyu(a, b, alternative="two-sided")
    assert mann_whitney(a, b) == pytest.approx((ref.statistic, ref.pvalue))


@pytest.mark.parametrize("case", ["continuous", "few levels", "rounded latencies", "all tied", "tiny, no ties", "tiny, tied"])
def test_mann_whitney_is_scipys_to_the_last_bit(case):
    """The normal approximation is computed here without scipy.stats: the same arithmetic, the same floats."""
    rng = np.random.default_rng(len(case))
    for _ in range(40):
        n1, n2 = rng.integers(9, 120, 2) if not case.startswith("tiny") else rng.integers(2, 8, 2)
        a, b = {
            "continuous": lambda: (rng.normal(size=n1), rng.normal(0.2, size=n2)),
            "few levels": lambda: (rng.integers(0, 4, n1) * 1.0, rng.integers(0, 5, n2) * 1.0),
            "rounded latencies": lambda: (np.round(rng.lognormal(6, 0.5, n1)), np.round(rng.lognormal(6.1, 0.5, n2))),
            "all tied": lambda: (np.full(n1, 250.0), np.full(n2, 250.0)),
            "tiny, no ties": lambda: (rng.normal(size=n1), rng.normal(size=n2)),
            "tiny, tied": lambda: (rng.integers(0, 3, n1) * 1.0, rng.integers(0, 3, n2) * 1.0),
        }[case]()
        ref = st.mannwhitneyu(a, b, alternative="two-sided")
        assert mann_whitney(a, b) == (ref.statistic, ref.pvalue)


def test_quantiles_and_tails_are_scipy_stats_own_values():
    from workbench import stats as ws

    for q in (0.5, 0.8, 0.9, 0.95, 0.975, 0.995, 1e-9):
        assert ws._normal_quantile(q) == st.norm.ppf(q)
        for df in (1, 2, 7, 29.5, 59, 1000, 1e6):
            assert ws._t_quantile(q, df) == st.t.ppf(q, df)
            assert ws._t_upper_tail(q * 4 - 1, df) == st.t.sf(q * 4 - 1, df)


@pytest.mark.parametrize("m", [1, 2, 9, 40, 301, 2_000])
def test_exact_binomial_tails_are_within_rounding_of_scipy(m):
    from workbench import stats as ws

    for k in range(0, m + 1, max(1, m // 50)):
        exact = ws._half_binomial_cdf(k, m)
        assert exact == pytest.approx(st.binom.cdf(k, m, 0.5), rel=1e-12, abs=1e-300)
        assert exact == float(sum(__import__("fractions").Fraction(math.comb(m, i), 2**m) for i in range(k + 1)))


def test_a_fresh_readout_never_imports_scipy_stats():
    """scipy.stats costs 0.4 to 1.2 s to import: summary() and compare() need only scipy.special."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from workbench import stats\n"
        "rng = np.random.default_rng(0)\n"
        "a, b = rng.random(50), rng.random(50)\n"
        "stats.mean_ci(a); stats.paired_difference(a, b); stats.paired_difference(a, a + 1)\n"
        "stats.mcnemar_exact(a > 0.5, b > 0.5); stats.mann_whitney(a, b); stats.preference(30, 12, 3)\n"
        "stats.minimum_detectable_effect(0.2, 0.2, 0.5, 60); stats.bootstrap_difference(a, b, seed=1)\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.stats')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_mann_whitney_drops_nan_and_gives_nan_for_empty_input():
    ref = st.mannwhitneyu([1.0, 2.0], [3.0, 4.0, 5.0], alternative="two-sided")
    assert mann_whitney([1.0, np.nan, 2.0], [3.0, 4.0, 5.0]) == pytest.approx(
        (ref.statistic, ref.pvalue)
    )
    assert all(math.isnan(v) for v in mann_whitney([], [1.0]))


# --- power --------------------------------------------------------------------


def test_sample_size_follows_millers_formula():
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    variance = 0.4**2 + 0.5**2 - 2 * 0.6 * 0.4 * 0.5
    assert sample_size_needed(0.05, 0.4, 0.5, 0.6) == math.ceil(z**2 * variance / 0.05**2)
    assert minimum_detectable_effect(0.4, 0.5, 0.6, 200) == pytest.approx(
        z * math.sqrt(variance / 200)
    )


@pytest.mark.parametrize("n", [1, 2, 10, 64, 100, 1000, 12345])
@pytest.mark.parametrize("correlation", [-0.3, 0.0, 0.7])
def test_sample_size_round_trips_through_the_minimum_detectable_effect(n, correlation):
    mde = minimum_detectable_effect(0.45, 0.5, correlation, n, alpha=0.01, power=0.9)
    assert sample_size_needed(mde, 0.45, 0.5, correlation, alpha=0.01, power=0.9) == n


def test_sample_size_is_the_smallest_n_reaching_the_effect():
    n = sample_size_needed(0.07, 0.5, 0.5, 0.3)
    assert minimum_detectable_effect(0.5, 0.5, 0.3, n) <= 0.07
    assert minimum_detectable_effect(0.5, 0.5, 0.3, n - 1) > 0.07


def test_correlation_between_variants_reduces_the_sample_size():
    sizes = [sample_size_needed(0.05, 0.5, 0.5, rho) for rho in (0.0, 0.5, 0.9)]
    assert sizes[0] > sizes[1] > sizes[2]
    assert sample_size_needed(-0.05, 0.5, 0.5, 0.5) == sizes[1]


def test_sample_size_gives_the_promised_power_in_simulation():
    # Simulate 4000 paired experiments of the computed size and count how
    # often the paired test detects the true effect.
    sd, rho, effect = 1.0, 0.5, 0.3
    n = sample_size_needed(effect, sd, sd, rho)
    rng = np.random.default_rng(15)
    shared = rng.normal(size=(4000, n))
    a = sd * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.normal(size=(4000, n)))
    b = sd * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.normal(size=(4000, n))) + effect
    d = b - a
    z = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    power = np.mean(np.abs(z) > st.norm.ppf(0.975))
    assert power == pytest.approx(0.8, abs=0.03)


def test_zero_variance_needs_one_item_and_detects_anything():
    assert minimum_detectable_effect(0.0, 0.0, 0.0, 50) == 0.0
    assert minimum_detectable_effect(0.3, 0.3, 1.0, 50) == 0.0
    assert sample_size_needed(0.01, 0.3, 0.3, 1.0) == 1


def test_power_refuses_a_zero_effect_and_bad_inputs():
    with pytest.raises(ValueError, match="effect must be a non-zero"):
        sample_size_needed(0.0, 0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="correlation"):
        sample_size_needed(0.1, 0.5, 0.5, 1.5)
    with pytest.raises(ValueError, match="sd_a"):
        minimum_detectable_effect(float("nan"), 0.5, 0.5, 10)
    with pytest.raises(ValueError, match="n must be at least 1"):
        minimum_detectable_effect(0.5, 0.5, 0.5, 0)


# --- holm ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_holm_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = rng.random(12) ** 3
    p[3] = p[7]  # a tie
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12)


def test_holm_is_monotone_and_capped_at_one():
    p = np.array([0.04, 0.01, 0.5, 0.03, 0.9])
    adjusted = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert adjusted.max() == 1.0
    assert np.all(adjusted >= p)


def test_holm_keeps_nan_in_place_and_out_of_the_count():
    p = [0.01, np.nan, 0.04, 0.03]
    adjusted = holm(p)
    assert math.isnan(adjusted[1])
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    np.testing.assert_allclose(adjusted[[0, 2, 3]], expected)


def test_holm_keeps_shape_and_handles_nothing():
    p = np.array([[0.01, 0.2], [0.03, 0.04]])
    adjusted = holm(p)
    assert adjusted.shape == (2, 2)
    np.testing.assert_allclose(adjusted.ravel(), multipletests(p.ravel(), method="holm")[1])
    assert holm([]).shape == (0,)
    with pytest.raises(ValueError, match="1.5"):
        holm([0.1, 1.5])


# --- preference ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("wins_b", "wins_a", "ties"), [(10, 4, 3), (30, 30, 0), (0, 7, 2), (18, 2, 40)]
)
def test_preference_matches_binomtest_and_wilson(wins_b, wins_a, ties):
    got = preference(wins_b, wins_a, ties)
    decided = wins_a + wins_b
    assert got.n == decided + ties
    assert got.win_rate == pytest.approx(wins_b / decided)
    assert got.p_value == pytest.approx(st.binomtest(wins_b, decided, 0.5).pvalue)
    ref = proportion_confint(wins_b, decided, method="wilson")
    assert (got.ci_low, got.ci_high) == pytest.approx(ref)


def test_preference_with_only_ties_has_no_rate():
    got = preference(0, 0, ties=5)
    assert got.n == 5 and got.p_value == 1.0
    assert math.isnan(got.win_rate) and math.isnan(got.ci_low)


def test_preference_refuses_negative_counts():
    with pytest.raises(ValueError, match="wins_a must be >= 0"):
        preference(3, -1)


# --- verdict ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((0.05, 0.01, 0.09, 0.01), {}, "B better"),
        ((-0.05, -0.09, -0.01, 0.01), {}, "B worse"),
        ((-120.0, -200.0, -40.0, 0.001), {"higher_is_better": False}, "B better"),
        ((120.0, 40.0, 200.0, 0.001), {"higher_is_better": False}, "B worse"),
        ((0.05, -0.01, 0.11, 0.01), {}, NO_DIFFERENCE),  # p says yes, the CI says no
        ((0.05, 0.01, 0.09, 0.2), {}, NO_DIFFERENCE),  # the CI says yes, p says no
        ((0.05, 0.01, 0.09, 0.04), {"alpha": 0.01}, NO_DIFFERENCE),
        ((float("nan"),) * 4, {}, NO_DIFFERENCE),
        ((0.05, 0.01, 0.09, 0.01), {"a": "v1", "b": "v2"}, "v2 better"),
    ],
)
def test_verdict(args, kwargs, expected):
    assert verdict(*args, **kwargs) == expected


def test_verdict_agrees_with_a_paired_difference():
    rng = np.random.default_rng(16)
    a = rng.random(300)
    b = a + 0.05 + rng.normal(0, 0.1, 300)
    d = paired_difference(a, b)
    assert verdict(d.diff, d.ci_low, d.ci_high, d.p_value) == "B better"
    d = paired_difference(b, a)
    assert verdict(d.diff, d.ci_low, d.ci_high, d.p_value) == "B worse"


def test_all_lists_the_public_names():
    public = {
        name
        for name, value in vars(stats).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == stats.__name__
    }
    assert sorted(stats.__all__) == stats.__all__
    assert set(stats.__all__) == public
