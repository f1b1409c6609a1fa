"""Sticky assignment under a label's split: the same unit keeps its version, weights hold, and a change of
weights moves only the units it must (for any number of versions)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats as st

import workbench as wb
from workbench.prompts import SPACE, point, relayout, segments
from workbench.providers.simulated import SimulatedProvider

UNITS = 100_000
MODEL = "claude-haiku-4-5"


@pytest.fixture
def reg(bench):
    for text in ("A {q}", "B {q}", "C {q}", "D {q}"):
        bench.prompts.register("support", text, MODEL)
    bench.prompts.set_label("support", "production", 1)
    return bench.prompts


def assign(reg, keys: list[str]) -> np.ndarray:
    """The version each key is served now, in bulk: what ``pick`` computes, without a query per key."""
    state = reg.label_state("support", "production")
    return np.array([state.version_at(point("support", "production", k)) for k in keys])


KEYS = [f"user-{i}" for i in range(UNITS)]


def test_bulk_assignment_is_what_pick_serves(reg):
    reg.set_split("support", "production", {1: 0.5, 2: 0.3, 3: 0.2})
    sample = random.Random(0).sample(KEYS, 2_000)
    picked = [reg.pick("support", "production", key=k, expose=False).version for k in sample]
    assert picked == assign(reg, sample).tolist()


def test_the_same_unit_always_gets_the_same_version(bench, reg, tmp_path):
    reg.set_split("support", "production", {1: 0.6, 2: 0.4})
    keys = KEYS[:500]
    first = [reg.pick("support", "production", key=k).version for k in keys]
    again = [reg.pick("support", "production", key=k).version for k in reversed(keys)][::-1]
    assert first == again
    # Another process (a new workbench on the same file) serves each unit the same version.
    other = wb.open(bench.path, provider=SimulatedProvider(seed=0, time_scale=0))
    try:
        assert [other.prompts.pick("support", "production", key=k).version for k in keys] == first
    finally:
        other.close()


@pytest.mark.parametrize("weights", [{1: 0.5, 2: 0.5}, {1: 0.95, 2: 0.05}, {1: 0.5, 2: 0.3, 3: 0.2},
                                     {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}])
def test_weights_hold_within_sampling_error_over_100000_units(reg, weights):
    reg.set_split("support", "production", weights)
    got = assign(reg, KEYS)
    versions = sorted(weights)
    counts = np.array([(got == v).sum() for v in versions])
    expected = np.array([weights[v] * UNITS for v in versions])
    assert counts.sum() == UNITS
    # Each share within 4 standard errors of its weight, and the whole split by a chi-square test.
    se = np.sqrt(expected * (1 - expected / UNITS))
    assert np.all(np.abs(counts - expected) < 4 * se), (counts, expected)
    assert st.chisquare(counts, expected).pvalue > 0.001


def _moved_share(before: np.ndarray, after: np.ndarray) -> float:
    return float((before != after).mean())


def _tv(a: dict[int, float], b: dict[int, float]) -> float:
    return sum(max(0.0, a.get(v, 0.0) - b.get(v, 0.0)) for v in set(a) | set(b))


@pytest.mark.parametrize("sequence", [
    [{1: 0.95, 2: 0.05}, {1: 0.75, 2: 0.25}, {1: 0.5, 2: 0.5}, {2: 1.0}],           # a two-version ramp
    [{1: 0.5, 2: 0.25, 3: 0.25}, {1: 0.25, 2: 0.25, 3: 0.5}],                      # the cumulative pick moved v2 here
    [{1: 0.4, 2: 0.3, 3: 0.3}, {1: 0.2, 2: 0.5, 3: 0.3}, {1: 0.2, 2: 0.2, 3: 0.2, 4: 0.4}, {3: 0.5, 4: 0.5}],
])
def test_changing_weights_moves_only_the_necessary_share_of_units(reg, sequence):
    reg.set_split("support", "production", sequence[0])
    before = assign(reg, KEYS)
    for old, new in zip(sequence, sequence[1:]):
        reg.set_split("support", "production", new)
        after = assign(reg, KEYS)
        moved = _moved_share(before, after)
        need = _tv(old, new)
        # The moved share is the total variation between the splits, within sampling error.
        assert abs(moved - need) < 4 * np.sqrt(need * (1 - need) / UNITS) + 1e-9, (old, new, moved, need)
        # And a unit only ever moves from a version that shrank to one that grew.
        for v_from, v_to in set(zip(before[before != after].tolist(), after[before != after].tolist())):
            assert new.get(v_from, 0) < old.get(v_from, 0) and new.get(v_to, 0) > old.get(v_to, 0), (v_from, v_to)
        before = after


def test_relayout_moves_exactly_the_total_variation_for_any_weights():
    """The layout itself, exactly (no sampling): over random sequences of splits of up to six versions."""
    rng = random.Random(7)
    layout = relayout(None, {1: 1.0})
    for _ in range(300):
        versions = rng.sample(range(1, 7), rng.randint(1, 6))
        raw = [rng.random() for _ in versions]
        new = {v: w / sum(raw) for v, w in zip(versions, raw)}
        nxt = relayout(layout, new)
        old_share = {v: 0.0 for _, _, v in segments(layout)}
        for s, e, v in segments(layout):
            old_share[v] += (e - s) / SPACE
        cuts = sorted({s for s, _ in layout} | {s for s, _ in nxt} | {SPACE})
        moved = sum(b - a for a, b in zip(cuts, cuts[1:]) if _at(layout, a) != _at(nxt, a)) / SPACE
        assert moved == pytest.approx(_tv(old_share, new), abs=1e-8)
        got = {v: 0.0 for v in new}
        for s, e, v in segments(nxt):
            got[v] += (e - s) / SPACE
        assert got == pytest.approx(new, abs=1e-8)
        layout = nxt


def _at(layout, x):
    return next(v for s, e, v in segments(layout) if s <= x < e)


def test_rollback_gives_every_unit_back_its_version(reg):
    reg.set_split("support", "production", {1: 0.5, 2: 0.25, 3: 0.25})
    before = assign(reg, KEYS[:20_000])
    reg.set_split("support", "production", {1: 0.25, 2: 0.25, 3: 0.5})
    reg.rollback("support", "production")
    assert reg.split("support", "production") == {1: 0.5, 2: 0.25, 3: 0.25}
    assert np.array_equal(assign(reg, KEYS[:20_000]), before)


def test_a_split_set_before_layouts_were_kept_serves_as_it_did(reg):
    # Files written before migration m014 have splits without a layout: the version order then decides.
    reg.set_split("support", "production", {1: 0.7, 2: 0.3})
    reg.store.execute("UPDATE prompt_labels SET layout_json = NULL, move_id = NULL")
    reg._layouts.clear()
    got = assign(reg, KEYS[:20_000])
    points = np.array([point("support", "production", k) for k in KEYS[:20_000]])
    assert np.array_equal(got, np.where(points < round(0.7 * SPACE), 1, 2))
    # The next change of weights starts from that layout and still moves only what it must.
    reg.set_split("support", "production", {1: 0.5, 2: 0.5})
    assert _moved_share(got, assign(reg, KEYS[:20_000])) == pytest.approx(0.2, abs=0.015)
