"""Readouts of an experiment: summaries, per-item frames, comparisons and charts.

The analysis half of an experiment (the runner is `experiments.py`): each
function takes an ``Experiment`` and returns Polars frames, a ``Comparison``
or an Altair chart. ``Experiment.summary()``, ``.compare()`` and ``.chart()``
call these.

Readouts never turn missing data into a verdict: an experiment with no
recorded call says so (and what to run); one scorer's bad values (infinities,
only nulls, a failure) are set aside with a note and never cost the other
scorers their readout; items without a cluster, in a dataset where others have
one, count as clusters of their own.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _format as fmt
from . import _html
from . import verdict as vd
from .errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from ._summary import Summary
    from .experiments import Experiment

DEFAULT_TARGET_EFFECT = 0.05
"""The effect that matters on a score within 0..1: five points (of a pass rate, say)."""
DEFAULT_TARGET_SD = 0.2
"""On any other scale: a fifth of the scores' standard deviation (Cohen's "small" effect)."""

MIN_CLUSTERS = 10
"""Fewer clusters than this: the readout says the interval is wide for that reason."""
CHARTS = ("quality", "latency", "cost", "tokens", "paired", "cost_quality")
"""What ``exp.chart(kind)`` draws."""


def traces_df(exp: Experiment) -> pl.DataFrame:
    """This experiment's model calls (judges excluded)."""
    import polars as pl

    from . import frames

    df = frames.traces_df(exp.bench.store, experiment_id=exp.id, kind="llm")
    return df.filter(pl.col("variant").is_not_null())


def scores_df(exp: Experiment) -> pl.DataFrame:
    from . import frames

    return frames.scores_df(exp.bench.store, experiment_id=exp.id)


def item_scores(exp: Experiment, scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per item, variant and scorer: the mean over repeats (long frame).

    Only finite values count: ``n`` is how many did, ``n_bad`` how many were
    infinite or not a number (left out, and reported by the readouts).
    """
    import polars as pl

    s = exp.scores_df() if scores is None else scores
    clusters = pl.DataFrame(
        {"item_id": [i.item_id for i in exp.dataset.items], "cluster": [i.cluster for i in exp.dataset.items]},
        schema={"item_id": pl.String, "cluster": pl.String},
    )
    finite = pl.col("value").is_finite()
    return (
        s.group_by("item_id", "variant", "scorer")
        .agg(
            pl.col("value").filter(finite).mean().alias("value"),
            pl.col("passed").cast(pl.Float64).mean().alias("pass_rate"),
            pl.col("value").filter(finite).count().alias("n"),
            (pl.col("value").is_not_null() & ~finite).sum().alias("n_bad"),
        )
        .join(clusters, on="item_id", how="left")
        .sort("variant", "scorer", "item_id")
    )


# -- what is wrong with the data, in words ---------------------------------------------------


@dataclass
class _Progress:
    """How many of an experiment's calls are recorded."""

    made: int
    planned: int
    failed: int

    @property
    def empty(self) -> str:
        """The message that replaces a readout when no call succeeded yet ('' otherwise)."""
        if self.made:
            return ""
        failed = f" ({fmt.count(self.failed)} failed)" if self.failed else ""
        return f"0 of {fmt.plural(self.planned, 'call')} made{failed}: run exp.run()"

    @property
    def status(self) -> str:
        if not self.made:
            return ""
        if self.made >= self.planned:
            return f"{fmt.count(self.made)} of {fmt.plural(self.planned, 'call')} recorded"
        missing = self.planned - self.made
        failed = f", {fmt.count(self.failed)} of them failed" if self.failed else ""
        return (f"{fmt.count(self.made)} of {fmt.plural(self.planned, 'call')} recorded "
                f"({fmt.count(missing)} missing{failed}): run exp.run() to finish")


def _progress(exp: Experiment, t: pl.DataFrame) -> _Progress:
    import polars as pl

    planned = len(exp.variants) * len(exp.dataset) * exp.repeats
    cell = ["variant", "item_id", "repeat"]
    ok = t.filter(pl.col("status") == "ok").select(cell).unique()
    failed = t.filter(pl.col("status") == "error").select(cell).unique().join(ok, on=cell, how="anti")
    return _Progress(ok.height, planned, failed.height)


def _cluster_labels(exp: Experiment, frame: pl.DataFrame) -> list[str] | None:
    """Cluster per row of ``frame`` (item_id, cluster); an item without one is its own cluster."""
    if not exp.dataset.has_clusters:
        return None
    # The NUL prefix keeps an item's own cluster from colliding with a real cluster name.
    return [c if c is not None else f"\0{i}" for i, c in zip(frame["item_id"].to_list(), frame["cluster"].to_list())]


def _cluster_note(exp: Experiment) -> list[str]:
    items = exp.dataset.items
    if not exp.dataset.has_clusters:
        return []
    lone = sum(1 for i in items if i.cluster is None)
    if not lone:
        return []
    return [f"{fmt.count(lone)} of {fmt.plural(len(items), 'item')} have no cluster: each counts as a cluster of its own "
            "in the standard errors"]


def _scorer_notes(exp: Experiment, scores: pl.DataFrame, variants: list[str]) -> dict[str, str]:
    """Per scorer, what is wrong with its values in ``variants`` (absent when nothing is)."""
    import polars as pl

    notes: dict[str, str] = {}
    sub = scores.filter(pl.col("variant").is_in(variants))
    for s in exp.scorers:
        rows = sub.filter(pl.col("scorer") == s.name)
        if rows.height == 0:
            continue
        values = rows["value"]
        bad = int((values.is_not_null() & ~values.is_finite()).sum())
        nulls = int(values.is_null().sum())
        if not bad and not nulls:
            continue
        failures = rows.filter(pl.col("value").is_null())["rationale"].drop_nulls()
        why = f" (first reason: {failures[0]})" if len(failures) else ""
        of = f"of {fmt.plural(rows.height, 'value')}"
        counts = "; ".join(x for x in (
            f"{fmt.count(nulls)} {of} not scored{why}" if nulls else "",
            f"{fmt.count(bad)} {of} infinite or not a number" if bad else "",
        ) if x)
        usable = int(values.is_finite().sum())
        notes[s.name] = f"no usable values: {counts}" if not usable else f"{counts}; left out"
    return notes


def _cost_notes(exp: Experiment, t: pl.DataFrame) -> dict[str, str]:
    """Per variant, why its cost reads n/a or covers only some calls."""
    import polars as pl

    notes = {}
    ok = t.filter(pl.col("status") == "ok")
    for vname, v in exp.variants.items():
        calls = ok.filter(pl.col("variant") == vname)
        unpriced = int(calls["cost_usd"].is_null().sum())
        if not unpriced:
            continue
        fix = f"set one with bench.pricing.set_price({v.effective_model!r}, input=..., output=...)"
        if unpriced == calls.height:
            notes[vname] = f"cost n/a for {vname}: no price known for {v.effective_model}; {fix}"
        else:
            notes[vname] = f"cost of {vname} covers the priced calls only: {fmt.plural(unpriced, 'call')} had no known price"
    return notes


def _batch_latency_note(t: pl.DataFrame) -> list[str]:
    """Why latency reads n/a when calls went through a batch engine (``run(batch=True)``)."""
    import polars as pl

    ok = t.filter(pl.col("status") == "ok")
    untimed = ok.filter(pl.col("latency_ms").is_null())
    if not untimed.height:
        return []
    share = "every call" if untimed.height == ok.height else f"{fmt.plural(untimed.height, 'call')}"
    return [f"latency leaves out {share} made through a batch (a batch times no single call)"]


# -- quality and summary -------------------------------------------------------------------------


def quality(exp: Experiment, confidence: float = 0.95) -> pl.DataFrame:
    """Per variant and scorer: mean of item means with a (clustered) CI, and pass rate with a Wilson CI.

    A scorer whose values cannot be summarised gets a row of nulls and a ``note``
    saying why; the other scorers are unaffected.
    """
    import polars as pl

    items = exp.item_scores()
    rows = []
    for vname in exp.variants:
        for s in exp.scorers:
            sub = items.filter((pl.col("variant") == vname) & (pl.col("scorer") == s.name) & pl.col("value").is_not_null())
            try:
                rows.append({"variant": vname, "scorer": s.name, **_quality_row(exp, sub, confidence), "note": None})
            except Exception as exc:  # noqa: BLE001 - one scorer's data must not cost the others their readout
                rows.append({"variant": vname, "scorer": s.name, "n": sub.height, "note": f"could not be summarised: {exc}"})
    schema = {"variant": pl.String, "scorer": pl.String, "mean": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64, "n": pl.Int64, "n_clusters": pl.Int64, "pass_rate": pl.Float64,
              "pass_ci_low": pl.Float64, "pass_ci_high": pl.Float64, "note": pl.String}
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)


def _quality_row(exp: Experiment, sub: pl.DataFrame, confidence: float) -> dict[str, Any]:
    import numpy as np

    from . import stats

    values = sub["value"].to_numpy()
    est = stats.mean_ci(values, clusters=_cluster_labels(exp, sub), confidence=confidence)
    if est.n > 0 and est.se == 0 and set(np.unique(values)) <= {0.0, 1.0}:
        # Every item scored the same 0 or 1: the CLT interval has zero width,
        # which overstates certainty; Wilson's does not.
        lo_w, hi_w = stats.wilson_interval(int(values.sum()), len(values), confidence)
        est = stats.Estimate(est.mean, est.se, lo_w, hi_w, est.n, est.n_clusters, confidence)
    if est.n > 0 and values.min() >= 0 and values.max() <= 1 and not fmt.missing(est.ci_low):
        # Scores in [0, 1] have a mean in [0, 1]: a t interval past it (few items) says nothing more.
        est = stats.Estimate(est.mean, est.se, max(est.ci_low, 0.0), min(est.ci_high, 1.0), est.n, est.n_clusters, confidence)
    passes = sub["pass_rate"].drop_nulls().to_numpy()
    if len(passes):
        k = int(np.sum(passes >= 0.5))
        lo, hi = stats.wilson_interval(k, len(passes), confidence)
        pr: float | None = k / len(passes)
    else:
        pr = lo = hi = None
    return {"mean": _finite(est.mean), "se": _finite(est.se), "ci_low": _finite(est.ci_low), "ci_high": _finite(est.ci_high),
            "n": est.n, "n_clusters": est.n_clusters, "pass_rate": pr, "pass_ci_low": lo, "pass_ci_high": hi}


def _finite(x: Any) -> float | None:
    """None for NaN or an infinity: frames hold null where there is no number."""
    return None if fmt.missing(x) else float(x)


def summary(exp: Experiment, confidence: float = 0.95, *, wide: bool = False) -> pl.DataFrame:
    """Per variant: the narrow readout by default, every column with ``wide=True``.

    Narrow (a ``Summary``, a ``pl.DataFrame`` that displays as a readable table):
    variant, label, model, n_items, each scorer's mean with ``_ci_low`` and
    ``_ci_high``, error_rate, cost_per_item_usd, latency_p50_ms, latency_p95_ms.

    Wide (a plain frame) adds repeats, calls, errors, token means, cache reads,
    total cost, unpriced calls, and each scorer's pass rate with a Wilson
    interval (``_pass_rate``: the share of items that pass on most of their
    repeats). A scorer's mean is over per-item means; cost per item is the mean
    cost of answering one item once.
    """
    import polars as pl

    t = exp.traces_df()
    base = pl.DataFrame(
        {"variant": list(exp.variants), "label": [v.label() for v in exp.variants.values()],
         "model": [v.effective_model for v in exp.variants.values()]},
        schema={"variant": pl.String, "label": pl.String, "model": pl.String},
    )
    ok = pl.col("status") == "ok"
    calls = t.group_by("variant").agg(
        pl.col("item_id").filter(ok).n_unique().cast(pl.Int64).alias("n_items"),
        pl.len().cast(pl.Int64).alias("calls"),
        (pl.col("status") == "error").sum().cast(pl.Int64).alias("errors"),
        (pl.col("status") == "error").mean().alias("error_rate"),
        pl.col("input_tokens").mean().alias("input_tokens_mean"),
        pl.col("output_tokens").mean().alias("output_tokens_mean"),
        pl.col("cache_read_tokens").sum().alias("cache_read_tokens"),
        # Null, not 0, when no call was priced: unknown is not free.
        pl.when(pl.col("cost_usd").is_not_null().any()).then(pl.col("cost_usd").sum()).alias("cost_usd"),
        pl.col("cost_usd").filter(ok).mean().alias("cost_per_item_usd"),
        pl.col("cost_usd").is_null().and_(ok).sum().alias("unpriced_calls"),
        pl.col("latency_ms").filter(ok).quantile(0.5, interpolation="linear").alias("latency_p50_ms"),
        pl.col("latency_ms").filter(ok).quantile(0.95, interpolation="linear").alias("latency_p95_ms"),
    )
    out = base.join(calls, on="variant", how="left").with_columns(
        pl.col("n_items").fill_null(0), pl.lit(exp.repeats).alias("repeats"),
    )
    q = exp.quality(confidence)
    for s in exp.scorers:
        sq = q.filter(pl.col("scorer") == s.name).select(
            "variant",
            pl.col("mean").alias(s.name),
            pl.col("ci_low").alias(f"{s.name}_ci_low"),
            pl.col("ci_high").alias(f"{s.name}_ci_high"),
            pl.col("pass_rate").alias(f"{s.name}_pass_rate"),
            pl.col("pass_ci_low").alias(f"{s.name}_pass_ci_low"),
            pl.col("pass_ci_high").alias(f"{s.name}_pass_ci_high"),
        )
        out = out.join(sq, on="variant", how="left")
    first = ["variant", "label", "model", "n_items", "repeats"]
    out = out.select(first + [c for c in out.columns if c not in first])
    if wide:
        return out
    return _narrow(exp, out, q, t, confidence)


def _narrow(exp: Experiment, wide: pl.DataFrame, q: pl.DataFrame, t: pl.DataFrame, confidence: float) -> Summary:
    import polars as pl

    from . import _summary

    names = [s.name for s in exp.scorers]
    cols = ["variant", "label", "model", "n_items"]
    for n in names:
        cols += [n, f"{n}_ci_low", f"{n}_ci_high"]
    cols += ["error_rate", "cost_per_item_usd", "latency_p50_ms", "latency_p95_ms"]
    progress = _progress(exp, t)
    notes: list[str] = []
    if not progress.empty:
        notes += [f"{k}: {v}" for k, v in _scorer_notes(exp, exp.scores_df(), list(exp.variants)).items()]
        notes += [f"{r['scorer']} for {r['variant']}: {r['note']}" for r in q.filter(pl.col("note").is_not_null()).iter_rows(named=True)]
        for r in q.filter(pl.col("note").is_null() & pl.col("mean").is_not_null() & pl.col("ci_low").is_null()).iter_rows(named=True):
            unit = "clusters" if r["n_clusters"] is not None else "items"
            notes.append(f"{r['scorer']} CI n/a for {r['variant']}: an interval needs at least 2 {unit} scored, "
                         f"{fmt.count(r['n_clusters'] if r['n_clusters'] is not None else r['n'])} were")
        notes += list(_cost_notes(exp, t).values())
        notes += _batch_latency_note(t)
        notes += _cluster_note(exp)
    return _summary.make(
        wide.select(cols), experiment=exp.name, scorers=tuple(names), status=progress.status,
        empty=progress.empty, notes=tuple(notes), simulated=_simulated(t), confidence=confidence,
    )


def _simulated(t: pl.DataFrame) -> bool:
    # Labelled by the data, not by the provider open now: a readout of a simulated run stays marked.
    return bool(t.height and (t["simulated"].fill_null(0).max() or 0))


def items(exp: Experiment, a: str = "A", b: str = "B", scorer: str | None = None) -> pl.DataFrame:
    """Per item: inputs, reference, both outputs (first repeat) and scores; regressions first."""
    import polars as pl

    _check_variants(exp, a, b)
    scorer = scorer or (exp.scorers[0].name if exp.scorers else None)
    t = exp.traces_df().filter(pl.col("status") == "ok").sort("repeat", "id")
    first = t.group_by("variant", "item_id").agg(pl.col("output").first(), pl.col("id").first().alias("trace_id"))
    base = pl.DataFrame(
        {
            "item_id": [i.item_id for i in exp.dataset.items],
            "inputs": [_inputs_text(i.inputs) for i in exp.dataset.items],
            "expected": [None if i.expected is None else str(i.expected) for i in exp.dataset.items],
            "cluster": [i.cluster for i in exp.dataset.items],
        },
        schema={"item_id": pl.String, "inputs": pl.String, "expected": pl.String, "cluster": pl.String},
    )
    scores = exp.item_scores() if scorer is not None else None
    for v, suffix in ((a, "a"), (b, "b")):
        part = first.filter(pl.col("variant") == v).select(
            "item_id", pl.col("output").alias(f"output_{suffix}"), pl.col("trace_id").alias(f"trace_{suffix}")
        )
        base = base.join(part, on="item_id", how="left")
        if scores is not None:
            sc = scores.filter((pl.col("variant") == v) & (pl.col("scorer") == scorer)).select(
                "item_id", pl.col("value").alias(f"score_{suffix}")
            )
            base = base.join(sc, on="item_id", how="left")
    if scorer is not None:
        base = base.with_columns((pl.col("score_b") - pl.col("score_a")).alias("delta")).sort("delta", nulls_last=True)
    return base


def _check_variants(exp: Experiment, *names: str) -> None:
    for v in names:
        if v not in exp.variants:
            raise ConfigError(f"no variant {v!r} in experiment {exp.name!r} (variants: {', '.join(exp.variants)})")


def check_chart(kind: str) -> None:
    """Refuse an unknown chart name before anything heavy is imported."""
    if kind not in CHARTS:
        close = difflib.get_close_matches(str(kind), CHARTS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown chart {kind!r}; {hint}charts: {', '.join(CHARTS)}")


def chart(exp: Experiment, kind: str = "quality", **kwargs: Any) -> Any:
    """An Altair chart: quality, latency, cost, tokens, paired, cost_quality."""
    check_chart(kind)
    from . import charts

    if kind == "quality":
        return charts.quality(exp.quality(), **kwargs)
    if kind == "latency":
        return charts.latency(exp.traces_df(), by="variant", **kwargs)
    if kind == "cost":
        return charts.cost_per_item(exp.traces_df(), by="variant", **kwargs)
    if kind == "tokens":
        return charts.tokens(exp.traces_df(), by="variant", **kwargs)
    if kind == "paired":
        names = list(exp.variants)
        a, b = kwargs.pop("a", names[0]), kwargs.pop("b", names[-1])
        scorer = kwargs.pop("scorer", exp.scorers[0].name if exp.scorers else None)
        return charts.paired_differences(exp.item_scores(), a, b, scorer, **kwargs)
    return charts.cost_quality(exp.cost_quality_points(kwargs.pop("scorer", None)), **kwargs)


def cost_quality_points(exp: Experiment, scorer: str | None = None) -> pl.DataFrame:
    import polars as pl

    scorer = scorer or (exp.scorers[0].name if exp.scorers else None)
    summ = exp.summary()
    q = exp.quality().filter(pl.col("scorer") == scorer).select("variant", pl.col("mean").alias("quality"), "ci_low", "ci_high")
    return summ.select("variant", pl.col("cost_per_item_usd").alias("cost_per_item")).join(q, on="variant", how="left")


def experiment_html(exp: Experiment) -> str:
    head = (
        f"<div><b>experiment {_html.esc(exp.name)}</b> · status <b>{_html.esc(exp.status)}</b> · dataset "
        f"{_html.esc(exp.dataset.ref)} ({fmt.plural(len(exp.dataset), 'item')}) · repeats {exp.repeats} · seed {exp.seed}</div>"
    )
    try:
        body = exp.summary().html()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - a repr must not raise
        body = f"<i>no results yet ({_html.esc(exc)})</i>"
    return _html.root(head + body, cls="wb-experiment")


# -- comparisons ---------------------------------------------------------------------------------


@dataclass
class Comparison:
    """B against A: quality per scorer, cost and latency, each with uncertainty.

    Displays as a verdict card (``verdict.html``); ``str()`` is the same card as
    text; ``card()`` gives its data for other views.
    """

    experiment: str
    a: str
    b: str
    scores: Any
    """Polars frame: per scorer the paired difference, CI, p-values, verdict, MDE, target effect, n needed."""
    cost: Any
    """Polars frame: per-item cost difference (paired) with CI."""
    latency: Any
    """Polars frame: p50 and p95 latency differences (bootstrap CIs) and Mann-Whitney p."""
    preference: Any = None
    """Human preference of B over A, when rated (``stats.Preference``)."""
    simulated: bool = False
    calls_made: int = 0
    """Calls (variant, item, repeat) recorded with an answer."""
    calls_planned: int = 0
    """Calls the experiment makes when complete."""
    calls_failed: int = 0
    """Calls that only failed so far."""
    notes: list[str] = field(default_factory=list)
    """Caveats for the whole comparison (e.g. items without a cluster)."""
    confidence: float = 0.95
    alpha: float = 0.05

    @property
    def empty(self) -> bool:
        """True when no call has an answer yet: there is nothing to judge."""
        return self.calls_made == 0

    def verdicts(self) -> dict[str, str]:
        return dict(zip(self.scores["scorer"].to_list(), self.scores["verdict"].to_list()))

    def card(self, *, details: bool = False) -> vd.Card:
        """The verdict card's data (see ``workbench.verdict``)."""
        progress = _Progress(self.calls_made, self.calls_planned, self.calls_failed)
        metrics = []
        for r in self.scores.iter_rows(named=True):
            detail = ""
            if r.get("mcnemar_p") is not None:
                detail = (f"pass rate {fmt.pct(r['pass_rate_a'])} → {fmt.pct(r['pass_rate_b'])} "
                          f"(exact McNemar {fmt.pvalue(r['mcnemar_p'])})")
            metrics.append(vd.Metric(
                r["scorer"], r["mean_a"], r["mean_b"], r["diff"], r["ci_low"], r["ci_high"], r["p_holm"], r["n"] or 0,
                r["badge"], r["mde"], r["target_effect"], r["n_needed"], detail, r["note"] or "",
                n_clusters=r["n_clusters"], clusters_needed=r["clusters_needed"],
            ))
        c = self.cost.row(0, named=True)
        cost = vd.Cost(c["mean_a"], c["mean_b"], c["diff"], c["ci_low"], c["ci_high"], c["n"], c["badge"], c["note"] or "")
        latency = [vd.Latency(r["stat"], r["a"], r["b"], r["diff"], r["ci_low"], r["ci_high"], r["badge"])
                   for r in self.latency.iter_rows(named=True)]
        pref = None
        p = self.preference
        if p is not None and p.n:
            kind = vd.decide(p.win_rate - 0.5, p.ci_low - 0.5, p.ci_high - 0.5, p.p_value,
                             n=p.wins_a + p.wins_b, alpha=self.alpha) if not fmt.missing(p.win_rate) else vd.EMPTY
            pref = vd.Preference(p.wins_b, p.wins_a, p.ties, _finite(p.win_rate), p.ci_low, p.ci_high, p.p_value, kind)
        tested = sum(1 for r in self.scores.iter_rows(named=True) if not fmt.missing(r["p_value"]))
        return vd.Card(
            title=self.experiment, a=self.a, b=self.b, metrics=metrics, cost=cost, latency=latency, preference=pref,
            simulated=self.simulated, status=progress.status, empty=progress.empty, notes=list(self.notes),
            confidence=self.confidence, adjusted=f"Holm across {tested} scorers" if tested > 1 else "",
            details_html=self._details_html() if details and not self.empty else "",
        )

    def _details_html(self) -> str:
        conf = f"{self.confidence * 100:g}% CI"
        stats_rows = [
            (r["scorer"], fmt.count(r["n"]), fmt.num(r["mean_a"]), fmt.num(r["mean_b"]), fmt.num(r["diff"], signed=True),
             fmt.interval(r["ci_low"], r["ci_high"], signed=True), fmt.pvalue(r["p_value"]), fmt.pvalue(r["p_holm"]))
            for r in self.scores.iter_rows(named=True)
        ]
        power_rows = [
            (r["scorer"], fmt.num(r["mde"]), fmt.num(r["target_effect"]), fmt.count(r["n_needed"]),
             fmt.pct(r["pass_rate_a"]), fmt.pct(r["pass_rate_b"]), fmt.pvalue(r["mcnemar_p"]))
            for r in self.scores.iter_rows(named=True)
        ]
        c = self.cost.row(0, named=True)
        other_rows = [("cost per item", fmt.money(c["mean_a"]), fmt.money(c["mean_b"]), fmt.money(c["diff"], signed=True),
                       fmt.interval(c["ci_low"], c["ci_high"], fmt.money, signed=True), f"paired t, {fmt.pvalue(c['p_value'])}")]
        for r in self.latency.iter_rows(named=True):
            test = f"Mann-Whitney {fmt.pvalue(r['mann_whitney_p'])}" if r["mann_whitney_p"] is not None else "bootstrap"
            d = vd.ms_decimals(r["a"], r["b"])
            other_rows.append((f"latency {r['stat']}", fmt.ms(r["a"], decimals=d), fmt.ms(r["b"], decimals=d),
                               fmt.ms(r["diff"], signed=True, decimals=d),
                               fmt.interval(r["ci_low"], r["ci_high"], fmt.ms, signed=True, decimals=d), test))
        a, b = self.a, self.b
        return vd.details(
            "Details: statistics, power and pass rates, cost and latency",
            '<div style="margin-top:6px"><b>Per scorer</b> (paired over items; p from a t test on the item differences)</div>'
            + vd.table(["scorer", "n", f"mean {a}", f"mean {b}", "diff", conf, "p", "p (Holm)"], stats_rows)
            + "<div><b>Power and pass rates</b> (MDE and n needed at 80% power)</div>"
            + vd.table(["scorer", "MDE", "target effect", "n needed", f"pass {a}", f"pass {b}", "McNemar p"], power_rows)
            + "<div><b>Cost and latency</b></div>"
            + vd.table(["metric", a, b, "diff", conf, "test"], other_rows),
        )

    def __str__(self) -> str:
        return vd.text(self.card())

    def __repr__(self) -> str:
        return f"<Comparison {self.experiment}: {self.b} vs {self.a} {self.verdicts()}>"

    def _repr_html_(self) -> str:
        return vd.html(self.card(details=True))


def _check_target(exp: Experiment, target_effect: float | Mapping[str, float] | None) -> None:
    names = [s.name for s in exp.scorers]
    given = dict(target_effect) if isinstance(target_effect, Mapping) else {n: target_effect for n in names}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(f"target_effect names no scorer {', '.join(map(repr, unknown))} (scorers: {', '.join(names)})")
    for name, value in given.items():
        if value is not None and (isinstance(value, bool) or fmt.missing(value) or float(value) == 0):
            raise ConfigError(f"target_effect for {name!r} must be a non-zero finite number (the smallest difference "
                              f"that matters on that scorer's scale), got {value!r}")


def _target(target_effect: float | Mapping[str, float] | None, scorer: str, values: Any) -> float | None:
    """The effect that matters for ``scorer`` (see ``compare``); ``_check_target`` vetted it."""
    import numpy as np

    given = target_effect.get(scorer) if isinstance(target_effect, Mapping) else target_effect
    if given is not None:
        return abs(float(given))
    if len(values) == 0:
        return None
    if float(np.min(values)) >= 0 and float(np.max(values)) <= 1:
        return DEFAULT_TARGET_EFFECT
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return DEFAULT_TARGET_SD * sd if sd > 0 else None


def compare(
    exp: Experiment,
    a: str = "A",
    b: str = "B",
    *,
    confidence: float = 0.95,
    alpha: float = 0.05,
    target_effect: float | Mapping[str, float] | None = None,
) -> Comparison:
    """B against A on the same items (see ``Experiment.compare``)."""
    import polars as pl

    _check_variants(exp, a, b)
    _check_target(exp, target_effect)
    t = exp.traces_df()
    progress = _progress(exp, t)
    scores = exp.scores_df()
    items = item_scores(exp, scores)
    bad = _scorer_notes(exp, scores, [a, b])
    rows = []
    for s in exp.scorers:
        try:
            row = _compare_scorer(exp, items, s.name, a, b, confidence, alpha, target_effect)
        except Exception as exc:  # noqa: BLE001 - one scorer's data must not cost the others their readout
            row = {"scorer": s.name, "n": 0, "note": f"could not be compared ({type(exc).__name__}: {exc})"}
        if s.name in bad:
            # Bad values explain an empty comparison better than "no item has scores for both".
            row["note"] = bad[s.name] if row.get("n") == 0 or not row.get("note") else f"{row['note']}; {bad[s.name]}"
        rows.append(row)
    _holm(rows, alpha, b)
    score_schema = {
        "scorer": pl.String, "n": pl.Int64, "n_clusters": pl.Int64, "mean_a": pl.Float64, "mean_b": pl.Float64,
        "diff": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "p_value": pl.Float64,
        "p_holm": pl.Float64, "verdict": pl.String, "badge": pl.String, "correlation": pl.Float64, "mde": pl.Float64,
        "target_effect": pl.Float64, "n_needed": pl.Int64, "clusters_needed": pl.Int64, "pass_rate_a": pl.Float64, "pass_rate_b": pl.Float64,
        "mcnemar_p": pl.Float64, "note": pl.String,
    }
    frame = pl.DataFrame([{k: _finite(r.get(k)) if score_schema[k] == pl.Float64 else r.get(k) for k in score_schema}
                          for r in rows], schema=score_schema)
    ok = t.filter(pl.col("status") == "ok")
    pref = None
    try:
        from . import feedback

        pref = feedback.preference(exp.bench.store, exp.id, a, b, confidence=confidence)
    except (ImportError, AttributeError):
        pref = None
    return Comparison(
        exp.name, a, b, frame, _cost_frame(exp, ok, a, b, confidence, alpha), _latency_frame(exp, ok, a, b, confidence, alpha),
        pref, _simulated(t), progress.made, progress.planned, progress.failed, _cluster_note(exp), confidence, alpha,
    )


def _compare_scorer(exp: Experiment, items: pl.DataFrame, name: str, a: str, b: str, confidence: float, alpha: float,
                    target_effect: float | Mapping[str, float] | None) -> dict[str, Any]:
    import numpy as np
    import polars as pl

    from . import stats

    mine = items.filter(pl.col("scorer") == name)
    sa = mine.filter(pl.col("variant") == a).select("item_id", "cluster", pl.col("value").alias("a"), pl.col("pass_rate").alias("pa"))
    sb = mine.filter(pl.col("variant") == b).select("item_id", pl.col("value").alias("b"), pl.col("pass_rate").alias("pb"))
    joined = sa.join(sb, on="item_id", how="inner").drop_nulls(["a", "b"]).sort("item_id")
    va, vb = joined["a"].to_numpy(), joined["b"].to_numpy()
    d = stats.paired_difference(va, vb, clusters=_cluster_labels(exp, joined), confidence=confidence)
    sd_a = float(np.std(va, ddof=1)) if len(va) > 1 else math.nan
    sd_b = float(np.std(vb, ddof=1)) if len(vb) > 1 else math.nan
    corr = 0.0 if math.isnan(d.correlation) else d.correlation
    target = _target(target_effect, name, np.concatenate([va, vb]))
    mde = n_needed = clusters_needed = None
    notes: list[str] = []
    if d.n > 1 and not (math.isnan(sd_a) or math.isnan(sd_b)):
        mde = stats.minimum_detectable_effect(sd_a, sd_b, corr, d.n, alpha=alpha, power=vd.POWER)
        if target:
            n_needed = stats.sample_size_needed(target, sd_a, sd_b, corr, alpha=alpha, power=vd.POWER)
        if d.n_clusters is not None and d.test == "t" and d.n_clusters > 1 and math.isfinite(d.se):
            # Items of one cluster are not independent: what n can detect follows the clustered
            # standard error and its clusters − 1 degrees of freedom, as the interval does, and
            # the items needed grow by the design effect (the clustered variance over the iid one).
            mde = stats.detectable_effect_from_se(d.se, d.n_clusters - 1, alpha=alpha, power=vd.POWER)
            if target:
                clusters_needed = _clusters_needed(d.se, d.n_clusters, target, alpha)
                n_needed = None if clusters_needed is None else math.ceil(d.n * clusters_needed / d.n_clusters)
        if d.n_clusters is not None and d.n_clusters < MIN_CLUSTERS:
            notes.append(f"only {fmt.plural(d.n_clusters, 'cluster')}: the interval has {d.n_clusters - 1} degree"
                         f"{'' if d.n_clusters == 2 else 's'} of freedom and is wide; more clusters narrow it")
    low, high = d.ci_low, d.ci_high
    values = np.concatenate([va, vb])
    if len(values) and values.min() >= 0 and values.max() <= 1 and not (fmt.missing(low) or fmt.missing(high)):
        # A difference of two scores in [0, 1] lies in [−1, 1]: a t interval that reaches past it says nothing more.
        low, high = max(low, -1.0), min(high, 1.0)
    row = {
        "scorer": name, "n": d.n, "n_clusters": d.n_clusters, "mean_a": d.mean_a, "mean_b": d.mean_b,
        "diff": d.diff, "se": d.se, "ci_low": low, "ci_high": high, "p_value": d.p_value,
        "correlation": d.correlation, "mde": mde, "target_effect": target, "n_needed": n_needed,
        "clusters_needed": clusters_needed,
    }
    pj = joined.drop_nulls(["pa", "pb"])
    if pj.height:
        pa, pb = pj["pa"].to_numpy() >= 0.5, pj["pb"].to_numpy() >= 0.5
        row.update(pass_rate_a=float(pa.mean()), pass_rate_b=float(pb.mean()), mcnemar_p=stats.mcnemar_exact(pa, pb).p_value)
    if d.n == 0:
        notes.append(f"no item has scores for both {a} and {b}")
    if notes:
        row["note"] = "; ".join(notes)
    return row


def _clusters_needed(se: float, clusters: int, target: float, alpha: float, most: int = 1_000_000) -> int | None:
    """Clusters (of today's size) at which the clustered test detects ``target``; None past ``most``.

    The standard error shrinks as the square root of the clusters, and the t
    reference gains a degree of freedom with each: more items in the same
    clusters would not help, more clusters do.
    """
    from . import stats

    def enough(g: int) -> bool:
        return stats.detectable_effect_from_se(se * math.sqrt(clusters / g), g - 1, alpha=alpha, power=vd.POWER) <= target

    if enough(clusters):
        return clusters
    if not enough(most):
        return None
    low, high = clusters, most  # enough(high) and not enough(low)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def _holm(rows: list[dict[str, Any]], alpha: float, b: str) -> None:
    """Holm-adjust the p-values across scorers that have one, then give each its badge."""
    from . import stats

    tested = [r for r in rows if not fmt.missing(r.get("p_value"))]
    for r, p in zip(tested, stats.holm([r["p_value"] for r in tested]) if tested else []):
        r["p_holm"] = float(p)
    for r in rows:
        kind = vd.decide(r.get("diff"), r.get("ci_low"), r.get("ci_high"), r.get("p_holm", math.nan), n=r.get("n") or 0,
                         alpha=alpha, mde=r.get("mde"), target=r.get("target_effect"))
        r["badge"], r["verdict"] = kind, vd.label(kind, b)


def _cost_frame(exp: Experiment, ok: pl.DataFrame, a: str, b: str, confidence: float, alpha: float) -> pl.DataFrame:
    import polars as pl

    from . import stats

    per_item = ok.group_by("variant", "item_id").agg(pl.col("cost_usd").mean().alias("cost"))
    ca = per_item.filter(pl.col("variant") == a).select("item_id", pl.col("cost").alias("a"))
    cb = per_item.filter(pl.col("variant") == b).select("item_id", pl.col("cost").alias("b"))
    cj = ca.join(cb, on="item_id").drop_nulls().sort("item_id")
    cd = stats.paired_difference(cj["a"].to_numpy(), cj["b"].to_numpy(), confidence=confidence)
    kind = vd.flip(vd.decide(cd.diff, cd.ci_low, cd.ci_high, cd.p_value, n=cd.n, alpha=alpha))
    notes = [n for v, n in _cost_notes(exp, ok).items() if v in (a, b)]
    schema = {"metric": pl.String, "n": pl.Int64, "mean_a": pl.Float64, "mean_b": pl.Float64, "diff": pl.Float64,
              "relative": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "p_value": pl.Float64,
              "verdict": pl.String, "badge": pl.String, "note": pl.String}
    relative = cd.diff / cd.mean_a if cd.n and cd.mean_a else None
    row = {"metric": "cost_per_item_usd", "n": cd.n, "mean_a": _finite(cd.mean_a), "mean_b": _finite(cd.mean_b),
           "diff": _finite(cd.diff), "relative": _finite(relative), "ci_low": _finite(cd.ci_low),
           "ci_high": _finite(cd.ci_high), "p_value": _finite(cd.p_value),
           "verdict": vd.label(kind, b, "cheaper", "costlier"), "badge": kind, "note": "; ".join(notes) or None}
    return pl.DataFrame([row], schema=schema)


def _latency_frame(exp: Experiment, ok: pl.DataFrame, a: str, b: str, confidence: float, alpha: float) -> pl.DataFrame:
    import polars as pl

    from . import stats

    la = ok.filter(pl.col("variant") == a)["latency_ms"].drop_nulls().to_numpy()
    lb = ok.filter(pl.col("variant") == b)["latency_ms"].drop_nulls().to_numpy()
    _, mw_p = stats.mann_whitney(la, lb)
    rows = []
    for stat, name in (("median", "p50"), ("p95", "p95")):
        bd = stats.bootstrap_difference(la, lb, stat=stat, seed=exp.seed, confidence=confidence)
        # No p-value for a bootstrap interval: the badge follows the interval alone.
        kind = vd.flip(vd.decide(bd.diff, bd.ci_low, bd.ci_high, None, n=min(bd.n_a, bd.n_b), alpha=alpha))
        # Mann-Whitney tests a shift of the whole distribution: it belongs beside the median only.
        rows.append({"stat": name, "a": _finite(bd.a), "b": _finite(bd.b), "diff": _finite(bd.diff),
                     "ci_low": _finite(bd.ci_low), "ci_high": _finite(bd.ci_high), "n_a": bd.n_a, "n_b": bd.n_b,
                     "mann_whitney_p": _finite(mw_p) if name == "p50" else None,
                     "verdict": vd.label(kind, b, "faster", "slower"), "badge": kind})
    schema = {"stat": pl.String, "a": pl.Float64, "b": pl.Float64, "diff": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64, "n_a": pl.Int64, "n_b": pl.Int64, "mann_whitney_p": pl.Float64,
              "verdict": pl.String, "badge": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _inputs_text(inputs: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in inputs.items())
