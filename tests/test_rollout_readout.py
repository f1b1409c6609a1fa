"""The online readout: versions served under a split, compared on production calls, with the sample-ratio check."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest
import statsmodels.api as sm

import workbench as wb
from workbench.errors import ConfigError
from workbench.prompts import Served
from workbench.rollout import _stats as S
from workbench.simulation import VersionEffect, label_traffic

MODEL = "claude-haiku-4-5"
GROUNDED = "Help-centre passage:\n{context}\n\nCustomer question: {question}"
START = datetime(2026, 11, 20, tzinfo=timezone.utc)


@pytest.fixture
def served(bench):
    bench.prompts.register("support", GROUNDED, MODEL, max_tokens=300)
    bench.prompts.register("support", "Passage:\n{context}\n\nQuestion: {question}", MODEL, max_tokens=300)
    bench.prompts.set_label("support", "production", 1)
    bench.ds = bench.datasets.load("support-qa", wb.demo.DATASET)
    return bench


def traffic(bench, requests=1500, **kwargs):
    kwargs.setdefault("scorers", [wb.scorers.contains_reference()])
    return label_traffic(bench, "support", bench.ds, requests=requests, users=kwargs.pop("users", 1200), start=START, **kwargs)


def test_readout_statistics_equal_a_direct_computation_from_the_traces(served):
    served.prompts.set_split("support", "production", {1: 0.5, 2: 0.5})
    traffic(served, 1200)
    ro = served.rollout("support").readout()
    # Independently: every trace row of the prompt, split by version, clustered by user.
    rows = served.traces(limit=None, prompt_name="support")
    arms = {v: [r for r in rows if r["prompt_version"] == v] for v in (1, 2)}
    ok = {v: [r for r in arms[v] if r["status"] == "ok"] for v in (1, 2)}
    cost = ro.figure("cost").d
    se = []
    for v in (1, 2):
        y = np.array([r["cost_usd"] for r in ok[v]])
        g = np.array([r["user_id"] for r in ok[v]])
        se.append(sm.OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": g}).bse[0])
        assert (cost.a if v == 1 else cost.b) == pytest.approx(y.mean())
    assert cost.se == pytest.approx(np.hypot(*se), rel=1e-9)
    errors = ro.figure("error_rate").d
    flags = {v: np.array([r["status"] == "error" for r in arms[v]], dtype=float) for v in (1, 2)}
    units = {v: np.array([r["user_id"] for r in arms[v]]) for v in (1, 2)}
    ref = S.rate_difference(flags[1], flags[2], units[1], units[2])
    assert (errors.ci_low, errors.ci_high, errors.n_a, errors.n_b) == pytest.approx((ref.ci_low, ref.ci_high, ref.n_a, ref.n_b))
    assert errors.units_a == len(set(units[1])) and errors.units_b == len(set(units[2]))
    scores = served.store.query("SELECT trace_id, value FROM scores WHERE scorer = 'contains_reference'")
    version_of = {r["id"]: r["prompt_version"] for r in rows}
    means = {v: np.mean([s["value"] for s in scores if version_of[s["trace_id"]] == v]) for v in (1, 2)}
    quality = ro.figure("contains_reference").d
    assert (quality.a, quality.b) == pytest.approx((means[1], means[2]))


def test_known_effects_show_as_regressions_on_the_card(served):
    served.prompts.set_split("support", "production", {1: 0.5, 2: 0.5})
    traffic(served, 2000, score_share=0.5, effects={2: VersionEffect(error_rate=0.35, quality_drop=0.5)})
    ro = served.rollout("support").readout()
    assert ro.figure("error_rate").kind == "worse"
    assert ro.figure("contains_reference").kind == "worse"
    text = str(ro)
    assert "v2 more errors" in text and "v2 worse" in text and "[assignment ok]" in text


def biased_app(bench, shares_v2: float, units: int, *, per_call: bool = False) -> None:
    """An app that assigns versions itself (a coin weighted ``shares_v2``) instead of pick(), and says so in the log."""
    rng = random.Random(3)
    reg = bench.prompts
    move = reg.label_state("support", "production").move_id
    sticky: dict[str, int] = {}
    for i in range(units * 2):
        user = f"user-{rng.randrange(units)}"
        if per_call:  # the seed's getABVersion: a coin per call, so a user sees both versions
            version = 2 if rng.random() < shares_v2 else 1
        else:
            version = sticky.setdefault(user, 2 if rng.random() < shares_v2 else 1)
        reg.record_exposure("support", "production", user, version)
        item = bench.ds.items[i % len(bench.ds.items)]
        pv = replace(reg.get("support", version), served=Served("production", user, move))
        bench.complete(pv, variables={k: item.inputs[k] for k in pv.variables})


def test_sample_ratio_mismatch_is_flagged_when_assignment_is_broken(served):
    served.prompts.set_split("support", "production", {1: 0.5, 2: 0.5})
    biased_app(served, 0.6, 800)
    ro = served.rollout("support").readout()
    assert ro.srm is not None and ro.srm.mismatch and ro.srm.p_value < 1e-4
    card = ro.card()
    assert card.checks[0].badge == "sample ratio mismatch"
    text = str(ro)
    assert text.index("[sample ratio mismatch]") < text.index("errors")  # on top, before any number
    assert "do not trust the comparison below" in text


def test_a_coin_per_call_is_flagged_as_not_sticky(served):
    served.prompts.set_split("support", "production", {1: 0.5, 2: 0.5})
    biased_app(served, 0.5, 300, per_call=True)
    ro = served.rollout("support").readout()
    assert ro.mixed > 50
    assert any(c.badge == "not sticky" for c in ro.card().checks)


def test_sound_assignment_passes_the_check(served):
    served.prompts.set_split("support", "production", {1: 0.8, 2: 0.2})
    traffic(served, 1500)
    ro = served.rollout("support").readout()
    assert ro.srm_source == "exposures" and not ro.srm.mismatch and ro.mixed == 0
    assert ro.card().checks[0].badge == "assignment ok"


def test_the_card_is_html_that_mathjax_leaves_alone(served):
    served.prompts.set_split("support", "production", {1: 0.5, 2: 0.5})
    traffic(served, 600)
    html = served.rollout("support").readout()._repr_html_()
    assert html.startswith('<div class="wb-out tex2jax_ignore mathjax_ignore')
    assert "$" not in html.replace("&#36;", "")  # every dollar escaped, so no pair of them typesets as math
    assert html.index("assignment ok") < html.index("Quality") < html.index("Errors") < html.index("Cost")


def test_a_label_that_serves_one_version_is_read_against_the_period_before(served):
    traffic(served, 800, seed=1)
    served.prompts.set_label("support", "production", 2)
    traffic(served, 800, seed=2)
    ro = served.rollout("support").readout()
    assert ro.before_after and ro.baseline == 1 and ro.challengers == [2]
    assert ro.card().checks[0].badge == "before/after"


def test_nothing_to_compare_says_what_to_do(served):
    with pytest.raises(ConfigError, match="serves v1 alone and has no earlier version"):
        served.rollout("support").readout()


def test_after_a_split_ends_the_readout_is_of_the_last_split(served):
    served.prompts.set_split("support", "production", {1: 0.5, 2: 0.5})
    traffic(served, 800)
    split_period = served.prompts.label_state("support", "production").move_id
    served.prompts.set_label("support", "production", 2)  # the test is over: v2 for everyone
    ro = served.rollout("support").readout()
    assert ro.period.move_id == split_period and ro.baseline == 1 and not ro.before_after
    assert "v2 serves label production alone now; this is its last split" in str(ro)
