"""The online readout: versions served under a label's split, compared on production calls.

Every call served through ``pick`` carries its label, unit and split period
(``metadata.label``, ``unit``, ``label_move``), so the calls of one period split
cleanly into arms by version. Each challenger is compared with the baseline on
error rate, cost per call, latency p50 and p95, and every quality score sampled
from those calls (the ``scores`` table, experiment-less rows); intervals are
clustered by unit (`_stats`). Before any of that, the units exposed in the
period are tested against the split's weights: a sample ratio mismatch means
the assignment is broken, and the card says so on top.

It displays as the experiments' verdict card (``workbench.verdict``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import _format as fmt
from .. import _html
from .. import verdict as vd
from ..errors import ConfigError
from . import _stats

if TYPE_CHECKING:
    import polars as pl

    from ..bench import Workbench

CALL_COLUMNS = ["id", "started_at", "prompt_version", "status", "latency_ms", "cost_usd", "user_id", "metadata_json", "simulated"]
"""What a readout reads of each trace."""
BUILTIN = ("error_rate", "cost", "latency_p50", "latency_p95")
"""Metrics every readout has; any other name is a quality scorer's."""


def served_calls(bench: Workbench, name: str, label: str) -> pl.DataFrame:
    """Every model call served through ``label`` of prompt ``name``: one row per call.

    Columns: id, started_at, version, move_id (the split period), unit (the pick
    key, else the user id, else the call itself), status, latency_ms, cost_usd,
    simulated, unit_code (the unit as an integer).
    """
    import polars as pl

    from .. import frames

    bench.flush()
    t = frames.traces_df(bench.store, prompt_name=name, kind="llm", columns=CALL_COLUMNS)
    meta = pl.col("metadata_json")
    return (
        t.with_columns(
            meta.str.json_path_match("$.label").alias("label"),
            meta.str.json_path_match("$.label_move").alias("move_id"),
            meta.str.json_path_match("$.unit").alias("unit"),
        )
        .filter(pl.col("label") == label)
        .select(
            "id", "started_at", pl.col("prompt_version").alias("version"), "move_id",
            pl.coalesce("unit", "user_id", "id").alias("unit"), "status", "latency_ms", "cost_usd", "simulated",
        )
        # Integer codes for the clustering: numpy groups a hundred thousand strings ten times slower.
        .with_columns(pl.col("unit").rank("dense").cast(pl.Int64).alias("unit_code"))
    )


def sampled_scores(bench: Workbench, calls: pl.DataFrame) -> pl.DataFrame:
    """Scores stored against ``calls`` (production scoring, no experiment): trace id, scorer, value."""
    import polars as pl

    from .. import frames

    s = frames.scores_df(bench.store)
    return (
        s.filter(pl.col("experiment_id").is_null() & pl.col("value").is_not_null() & pl.col("value").is_finite())
        .join(calls.select(pl.col("id").alias("trace_id")), on="trace_id", how="semi")
        .select("trace_id", "scorer", "value")
    )


@dataclass(frozen=True)
class Period:
    """One split period of a label: what one move set."""

    move_id: str
    set_at: str
    split: dict[int, float]
    action: str = ""
    reason: str | None = None

    def describe(self) -> str:
        """``v1 90% / v2 10% (set 2026-12-02 07:04 UTC)``."""
        return f"{shares_text(self.split)} ({self.when()})"

    def when(self) -> str:
        return f"set {self.set_at[:16].replace('T', ' ')} UTC"


def shares_text(split: Mapping[int, float]) -> str:
    """``v1 90% / v2 10%``: whole percents unless a share needs a decimal."""
    return " / ".join(f"v{v} {fmt.pct(w, 0 if w * 100 == round(w * 100) else 1)}" for v, w in sorted(split.items()))


def periods(bench: Workbench, name: str, label: str) -> dict[str, Period]:
    """Every split period of a label by move id, from its history."""
    from .._canonical import loads

    out = {}
    for h in bench.prompts.label_history(name, label):
        if h["version"] is None:
            continue
        split = {h["version"]: 1.0} if h["split_json"] is None else {int(k): float(v) for k, v in loads(h["split_json"]).items()}
        out[h["id"]] = Period(h["id"], h["set_at"], split, h["action"], h["reason"])
    return out


@dataclass(frozen=True)
class Figure:
    """One metric of a challenger against the baseline: the difference and, where it is a quality score, power."""

    metric: str
    """``error_rate``, ``cost``, ``latency_p50``, ``latency_p95`` or a scorer's name."""
    d: _stats.Difference
    higher_is_better: bool
    kind: str
    """The card's badge kind (``better`` meaning better for users)."""
    p_adjusted: float = math.nan
    """Holm-adjusted across the quality scores (quality only)."""
    mde: float | None = None
    target: float | None = None
    n_needed: int | None = None


@dataclass
class OnlineReadout:
    """Versions served under a label's split, each challenger against the baseline.

    Displays as a verdict card per challenger (the split's sample-ratio check on
    top); ``str()`` is the same as text; ``figures`` holds the numbers and
    ``summary()`` a frame per version.
    """

    name: str
    label: str
    baseline: int
    challengers: list[int]
    period: Period
    """The split period the challengers were served in."""
    baseline_periods: list[Period]
    """Where the baseline's calls come from: the same period, or earlier ones (before/after)."""
    calls: Any
    """Polars frame of the calls compared (`served_calls` columns)."""
    scores: Any
    """Polars frame of their sampled scores (trace_id, scorer, value)."""
    figures: dict[int, dict[str, Figure]]
    """Per challenger, per metric."""
    srm: _stats.SampleRatio | None
    srm_source: str = ""
    """``exposures`` or ``calls``: what the sample ratio counted."""
    mixed: int = 0
    """Units served more than one version within the period."""
    simulated: bool = False
    confidence: float = 0.95
    notes: list[str] = field(default_factory=list)

    @property
    def before_after(self) -> bool:
        """The baseline's calls come from earlier periods: not a randomised comparison."""
        return any(p.move_id != self.period.move_id for p in self.baseline_periods)

    def figure(self, metric: str, challenger: int | None = None) -> Figure | None:
        """One metric's figure for a challenger (default: the first)."""
        return self.figures.get(challenger if challenger is not None else self.challengers[0], {}).get(metric)

    # -- what the card says --------------------------------------------------------------------

    def checks(self) -> list[vd.Check]:
        """The assignment check, for the top of the card."""
        if self.before_after:
            return [vd.Check(vd.UNDERPOWERED, "before/after", (
                f"v{self.challengers[0]} serves all traffic, so v{self.baseline} is read from the periods before: not "
                "randomised, so anything else that changed between the periods is in the difference too"))]
        srm = self.srm
        if srm is None or math.isnan(srm.p_value) and not srm.outside:
            return [vd.Check(vd.EMPTY, "assignment n/a", "no units recorded yet: pick(key=...) records who saw which version")]
        total = sum(srm.observed.values())
        parts = []
        for v in sorted(srm.expected):
            n = srm.observed.get(v, 0)
            share = n / total if total else math.nan
            parts.append(f"v{v} {fmt.count(n)} units ({fmt.pct(share)}, expected {fmt.pct(self.period.split[v])})")
        counted = "exposures" if self.srm_source == "exposures" else "units seen in calls (no exposures recorded)"
        text = "; ".join(parts) + f"; χ² {fmt.pvalue(srm.p_value)} over {counted}"
        out = []
        if srm.mismatch:
            why = (f"{fmt.count(srm.outside)} units were served a version outside the split; " if srm.outside else "")
            out.append(vd.Check(vd.WORSE, "sample ratio mismatch", (
                f"{why}{text}. The assignment is broken: do not trust the comparison below until it is fixed")))
        else:
            out.append(vd.Check(vd.BETTER, "assignment ok", text))
        if self.mixed:
            out.append(vd.Check(vd.WORSE, "not sticky", (
                f"{fmt.count(self.mixed)} units were served more than one version in this period: "
                "serve with pick(key=unit) so each unit keeps its version")))
        return out

    def card(self, challenger: int | None = None, *, details: bool = False) -> vd.Card:
        """The verdict card of one challenger against the baseline."""
        import polars as pl

        c = challenger if challenger is not None else self.challengers[0]
        figs = self.figures[c]
        a, b = f"v{self.baseline}", f"v{c}"
        arms = self.calls.filter(pl.col("version").is_in([self.baseline, c]))
        if self.before_after:
            mine, theirs = arms.filter(pl.col("version") == c), arms.filter(pl.col("version") == self.baseline)
            status = (f"{b}: {fmt.plural(mine['unit'].n_unique(), 'unit')}, {fmt.plural(mine.height, 'call')} since it took "
                      f"all traffic ({self.period.when()}); {a}: {fmt.plural(theirs['unit'].n_unique(), 'unit')}, "
                      f"{fmt.plural(theirs.height, 'call')} in {fmt.plural(len(self.baseline_periods), 'period')} before")
        else:
            status = (f"{fmt.plural(arms['unit'].n_unique(), 'unit')}, {fmt.plural(arms.height, 'call')} served by label "
                      f"{self.label}: {self.period.describe()}")
        metrics = [
            vd.Metric(f.metric, f.d.a, f.d.b, f.d.diff, f.d.ci_low, f.d.ci_high, f.p_adjusted, min(f.d.n_a, f.d.n_b), f.kind,
                      f.mde, f.target, f.n_needed, detail=f"scored calls {fmt.count(f.d.n_a)} and {fmt.count(f.d.n_b)}, "
                      f"units {fmt.count(f.d.units_a)} and {fmt.count(f.d.units_b)}")
            for name, f in figs.items() if name not in BUILTIN
        ]
        e = figs["error_rate"]
        rates = [vd.Rate("error rate", e.d.a, e.d.b, e.d.diff, e.d.ci_low, e.d.ci_high, e.d.p_value, e.d.n_a, e.d.n_b,
                         e.kind if e.d.n_a and e.d.n_b else vd.EMPTY)]
        cf = figs["cost"]
        cost = vd.Cost(_finite(cf.d.a), _finite(cf.d.b), _finite(cf.d.diff), _finite(cf.d.ci_low), _finite(cf.d.ci_high),
                       min(cf.d.n_a, cf.d.n_b), cf.kind if cf.d.n_a and cf.d.n_b else vd.EMPTY, per="call")
        latency = [vd.Latency(stat, _finite(f.d.a), _finite(f.d.b), _finite(f.d.diff), _finite(f.d.ci_low),
                              _finite(f.d.ci_high), f.kind if f.d.n_a and f.d.n_b else vd.EMPTY)
                   for stat, f in (("p50", figs["latency_p50"]), ("p95", figs["latency_p95"]))]
        notes = list(self.notes)
        notes.append(f"Intervals are clustered by unit (one user's calls are not independent draws): "
                     f"{fmt.count(e.d.units_a)} units of {a}, {fmt.count(e.d.units_b)} of {b}; latency percentiles by Woodruff's method on the same clusters.")
        tested = len(metrics)
        empty = ""
        if not arms.height:
            empty = f"no calls served by label {self.label} in this period yet: serve with rollout.pick(key=...) or rollout.complete(...)"
        return vd.Card(
            title=f"{self.name} · label {self.label}", a=a, b=b, metrics=metrics, cost=cost, latency=latency,
            simulated=self.simulated, status=status, empty=empty, notes=notes, confidence=self.confidence,
            adjusted=f"Holm across {tested} scores" if tested > 1 else "", checks=self.checks(), rates=rates, unit="call",
            details_html=self._details_html() if details and not empty else "",
        )

    def summary(self) -> pl.DataFrame:
        """One row per version: share, units, calls, error rate, cost per call, latency p50/p95, each score's mean and n."""
        import polars as pl

        ok = pl.col("status") == "ok"
        out = self.calls.group_by("version").agg(
            pl.col("unit").n_unique().alias("units"),
            pl.len().alias("calls"),
            (pl.col("status") == "error").mean().alias("error_rate"),
            pl.col("cost_usd").filter(ok).mean().alias("cost_per_call_usd"),
            pl.col("latency_ms").filter(ok).quantile(0.5, interpolation="lower").alias("latency_p50_ms"),
            pl.col("latency_ms").filter(ok).quantile(0.95, interpolation="lower").alias("latency_p95_ms"),
        )
        if self.scores.height:
            per = (self.scores.join(self.calls.select(pl.col("id").alias("trace_id"), "version"), on="trace_id")
                   .group_by("version", "scorer").agg(pl.col("value").mean().alias("mean"), pl.len().alias("n")))
            for s in sorted(per["scorer"].unique().to_list()):
                part = per.filter(pl.col("scorer") == s).select("version", pl.col("mean").alias(s), pl.col("n").alias(f"{s}_n"))
                out = out.join(part, on="version", how="left")
        shares = pl.DataFrame({"version": list(self.period.split), "share": list(self.period.split.values())},
                              schema={"version": pl.Int64, "share": pl.Float64})
        return out.join(shares, on="version", how="left").sort("version").select(
            "version", "share", *[c for c in out.columns if c != "version"])

    def _details_html(self) -> str:
        frame = self.summary()
        rows = []
        for r in frame.iter_rows(named=True):
            rows.append([f"v{r['version']}", fmt.pct(r["share"]), fmt.count(r["units"]), fmt.count(r["calls"]),
                         fmt.pct(r["error_rate"]), fmt.money(r["cost_per_call_usd"]), fmt.ms(r["latency_p50_ms"]),
                         fmt.ms(r["latency_p95_ms"])]
                        + [f"{fmt.num(r[s])} (n={fmt.count(r[s + '_n'])})" for s in _scorer_columns(frame)])
        heads = ["version", "share", "units", "calls", "errors", "cost per call", "p50", "p95", *_scorer_columns(frame)]
        return vd.details("Details: per version", vd.table(heads, rows))

    def __str__(self) -> str:
        return "\n\n".join(vd.text(self.card(c)) for c in self.challengers)

    def __repr__(self) -> str:
        return f"<OnlineReadout {self.name}/{self.label}: v{', v'.join(map(str, self.challengers))} vs v{self.baseline}>"

    def _repr_html_(self) -> str:
        cards = "".join(vd.html(self.card(c, details=True), wrap=False) for c in self.challengers)
        return _html.root(cards, cls="wb-online-readout", style="display:grid;gap:10px")


def _scorer_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if f"{c}_n" in frame.columns]


def _finite(x: Any) -> float | None:
    return None if fmt.missing(x) else float(x)


# -- building one -------------------------------------------------------------------------------


def readout(
    bench: Workbench,
    name: str,
    label: str,
    *,
    baseline: int | None = None,
    move_id: str | None = None,
    baseline_moves: Sequence[str] | None = None,
    confidence: float = 0.95,
    target_effect: float | Mapping[str, float] | None = None,
) -> OnlineReadout:
    """Compare the versions served under one split period of ``label`` (default: the current one).

    Args:
        bench: The workbench.
        name: The prompt's name.
        label: The label that served the traffic.
        baseline: The version the others are compared with (default: the heaviest
            of the split; a tie goes to the older version).
        move_id: The split period (default: the label's current one).
        baseline_moves: Periods the baseline's calls come from when it is not
            served in ``move_id`` (a 100% step of a rollout, blue-green); default:
            the period just before, when the label serves one version only.
        confidence: Of every interval.
        target_effect: The quality difference that matters (as in ``exp.compare``).
    """
    all_periods = periods(bench, name, label)
    state = bench.prompts.label_state(name, label)
    notes = []
    if move_id is None and baseline is None and len(state.split) == 1:
        # One version serves alone now (a ramp completed, a rollback): the last split that served it
        # beside another is the randomised comparison a reader means; else the period before.
        last = _last_split_with(all_periods, state.move_id, state.version)
        if last is not None:
            move_id, baseline = last.move_id, max(last.split, key=lambda v: (last.split[v], -v))
            notes.append(f"v{state.version} serves label {label} alone now; this is its last split, "
                         f"{last.describe()}")
    move_id = move_id or state.move_id
    period = all_periods.get(move_id) or Period(move_id, state.updated_at, dict(state.split))
    split = period.split
    if baseline is None:
        baseline = max(split, key=lambda v: (split[v], -v)) if len(split) > 1 else _previous_version(all_periods, period)
    if baseline is None:
        raise ConfigError(
            f"label {label!r} of prompt {name!r} serves v{next(iter(split))} alone and has no earlier version to compare "
            "with; split it first: bench.prompts.set_split(...) or rollout.start(candidate)")
    challengers = sorted(v for v in split if v != baseline)
    if not challengers:
        raise ConfigError(f"label {label!r} serves only v{baseline} in this period: nothing to compare it with")
    if baseline in split:
        base_periods = [period]
    else:
        ids = list(baseline_moves) if baseline_moves else [_previous_move(all_periods, period, baseline)]
        base_periods = [all_periods[m] for m in ids if m in all_periods]
        if not base_periods:
            raise ConfigError(f"no earlier period of label {label!r} served v{baseline}: pass baseline_moves=[...]")
    calls = served_calls(bench, name, label)
    import polars as pl

    base_ids = [p.move_id for p in base_periods]
    calls = calls.filter(
        ((pl.col("move_id") == move_id) & pl.col("version").is_in(challengers))
        | (pl.col("move_id").is_in(base_ids) & (pl.col("version") == baseline))
    )
    scores = sampled_scores(bench, calls)
    if isinstance(target_effect, Mapping):
        unknown = sorted(set(target_effect) - set(scores["scorer"].to_list()))
        if unknown:
            raise ConfigError(f"target_effect names no sampled score {', '.join(map(repr, unknown))} "
                              f"(scores: {', '.join(sorted(set(scores['scorer'].to_list()))) or 'none'})")
    figures = {c: _figures(calls, scores, baseline, c, confidence, target_effect) for c in challengers}
    srm, source, mixed = _sample_ratio(bench, name, label, period, calls)
    simulated = bool(calls.height and (calls["simulated"].fill_null(0).max() or 0))
    return OnlineReadout(name, label, baseline, challengers, period, base_periods, calls, scores, figures,
                         srm if baseline in split else None, source, mixed, simulated, confidence, notes)


def _previous_move(all_periods: Mapping[str, Period], period: Period, version: int) -> str:
    """The latest period before ``period`` that served ``version``."""
    earlier = sorted((p for p in all_periods.values() if p.move_id < period.move_id and version in p.split),
                     key=lambda p: p.move_id)
    return earlier[-1].move_id if earlier else ""


def _last_split_with(all_periods: Mapping[str, Period], before: str, version: int) -> Period | None:
    """The newest period before move ``before`` that split traffic between ``version`` and another version."""
    for p in sorted(all_periods.values(), key=lambda p: p.move_id, reverse=True):
        if p.move_id < before and len(p.split) > 1 and version in p.split:
            return p
    return None


def _previous_version(all_periods: Mapping[str, Period], period: Period) -> int | None:
    """The heaviest version of the period before ``period`` other than the one served now."""
    now = set(period.split)
    for p in sorted(all_periods.values(), key=lambda p: p.move_id, reverse=True):
        if p.move_id < period.move_id:
            others = {v: w for v, w in p.split.items() if v not in now}
            if others:
                return max(others, key=lambda v: (others[v], -v))
    return None


def _sample_ratio(bench: Workbench, name: str, label: str, period: Period,
                  calls: pl.DataFrame) -> tuple[_stats.SampleRatio, str, int]:
    """Units per version in the period, from exposures when recorded, else from the calls."""
    import polars as pl

    exposed = bench.prompts.exposures(name, label, period.move_id)
    if exposed.total:
        return _stats.sample_ratio(exposed.units, period.split), "exposures", exposed.mixed
    mine = calls.filter(pl.col("move_id") == period.move_id)
    per = mine.group_by("version").agg(pl.col("unit").n_unique().alias("n"))
    both = mine.group_by("unit").agg(pl.col("version").n_unique().alias("k")).filter(pl.col("k") > 1).height
    return _stats.sample_ratio(dict(zip(per["version"].to_list(), per["n"].to_list())), period.split), "calls", both


def _figures(calls: pl.DataFrame, scores: pl.DataFrame, a: int, b: int, confidence: float,
             target_effect: float | Mapping[str, float] | None) -> dict[str, Figure]:
    import numpy as np
    import polars as pl

    from ..readouts import _target
    from ..stats import holm

    arm_a, arm_b = calls.filter(pl.col("version") == a), calls.filter(pl.col("version") == b)
    out: dict[str, Figure] = {}

    def arrays(frame: pl.DataFrame, col: str) -> tuple[Any, Any]:
        f = frame.filter(pl.col(col).is_not_null())
        return f[col].cast(pl.Float64).to_numpy(), f["unit_code"].to_numpy()

    def add(metric: str, d: _stats.Difference, higher: bool, p: float | None, **extra: Any) -> None:
        kind = vd.decide(d.diff, d.ci_low, d.ci_high, p, n=min(d.n_a, d.n_b), alpha=1 - confidence,
                         mde=extra.get("mde"), target=extra.get("target"))
        out[metric] = Figure(metric, d, higher, kind if higher else vd.flip(kind), **extra)

    errors = [(frame.with_columns((pl.col("status") == "error").cast(pl.Float64).alias("err"))) for frame in (arm_a, arm_b)]
    (ea, ua), (eb, ub) = arrays(errors[0], "err"), arrays(errors[1], "err")
    add("error_rate", _stats.rate_difference(ea, eb, ua, ub, confidence), False, None)
    ok_a, ok_b = arm_a.filter(pl.col("status") == "ok"), arm_b.filter(pl.col("status") == "ok")
    (ca, cua), (cb, cub) = arrays(ok_a, "cost_usd"), arrays(ok_b, "cost_usd")
    d = _stats.two_sample(ca, cb, cua, cub, confidence)
    add("cost", d, False, d.p_value)
    (la, lua), (lb, lub) = arrays(ok_a, "latency_ms"), arrays(ok_b, "latency_ms")
    for q, metric in ((0.5, "latency_p50"), (0.95, "latency_p95")):
        d = _stats.quantile_difference(la, lb, lua, lub, q=q, confidence=confidence)
        add(metric, d, False, d.p_value)

    quality = []
    joined = scores.join(calls.select(pl.col("id").alias("trace_id"), "version", "unit_code"), on="trace_id")
    for scorer in sorted(joined["scorer"].unique().to_list()):
        mine = joined.filter(pl.col("scorer") == scorer)
        sa, sb = mine.filter(pl.col("version") == a), mine.filter(pl.col("version") == b)
        va, vb = sa["value"].to_numpy(), sb["value"].to_numpy()
        binary = bool(np.isin(np.concatenate([va, vb]), (0.0, 1.0)).all())
        method = _stats.rate_difference if binary else _stats.two_sample
        d = method(va, vb, sa["unit_code"].to_numpy(), sb["unit_code"].to_numpy(), confidence)
        target = _target(target_effect, scorer, np.concatenate([va, vb])) if len(va) + len(vb) else None
        mde = _stats.mde(d.se, 1 - confidence) if d.n_a > 1 and d.n_b > 1 else math.nan
        need = None
        if target and not math.isnan(mde) and mde > target:
            need = math.ceil((d.n_a + d.n_b) * (mde / target) ** 2)
        quality.append((scorer, d, None if math.isnan(mde) else mde, target, need))
    tested = [(i, q[1].p_value) for i, q in enumerate(quality) if not math.isnan(q[1].p_value)]
    adjusted = dict(zip([i for i, _ in tested], holm([p for _, p in tested]))) if tested else {}
    for i, (scorer, d, mde, target, need) in enumerate(quality):
        p = float(adjusted.get(i, math.nan))
        add(scorer, d, True, p, p_adjusted=p, mde=mde, target=target, n_needed=need)
    return out


def with_checks(card: vd.Card, checks: Sequence[vd.Check]) -> vd.Card:
    """The card with more lines on top (a ramp's decision, its guards), above its own checks."""
    return replace(card, checks=[*checks, *card.checks])
