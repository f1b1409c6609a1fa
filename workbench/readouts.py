"""Readouts of an experiment: summaries, per-item frames, comparisons and charts.

The analysis half of an experiment (the runner is `experiments.py`): each
function takes an ``Experiment`` and returns Polars frames, a ``Comparison``
or an Altair chart. ``Experiment.summary()``, ``.compare()`` and ``.chart()``
call these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _html
from .errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from .experiments import Experiment


def traces_df(exp: Experiment) -> pl.DataFrame:
    """This experiment's model calls (judges excluded)."""
    import polars as pl

    from . import frames

    df = frames.traces_df(exp.bench.store, experiment_id=exp.id, kind="llm")
    return df.filter(pl.col("variant").is_not_null())


def scores_df(exp: Experiment) -> pl.DataFrame:
    from . import frames

    return frames.scores_df(exp.bench.store, experiment_id=exp.id)


def item_scores(exp: Experiment) -> pl.DataFrame:
    """Per item, variant and scorer: the mean over repeats (long frame)."""
    import polars as pl

    s = exp.scores_df()
    clusters = pl.DataFrame(
        {"item_id": [i.item_id for i in exp.dataset.items], "cluster": [i.cluster for i in exp.dataset.items]},
        schema={"item_id": pl.String, "cluster": pl.String},
    )
    return (
        s.group_by("item_id", "variant", "scorer")
        .agg(
            pl.col("value").mean().alias("value"),
            pl.col("passed").cast(pl.Float64).mean().alias("pass_rate"),
            pl.col("value").count().alias("n"),
        )
        .join(clusters, on="item_id", how="left")
        .sort("variant", "scorer", "item_id")
    )


def quality(exp: Experiment, confidence: float = 0.95) -> pl.DataFrame:
    """Per variant and scorer: mean of item means with a (clustered) CI, and pass rate with a Wilson CI."""
    import numpy as np
    import polars as pl

    from . import stats

    items = exp.item_scores()
    rows = []
    for vname in exp.variants:
        for s in exp.scorers:
            sub = items.filter((pl.col("variant") == vname) & (pl.col("scorer") == s.name) & pl.col("value").is_not_null())
            values = sub["value"].to_numpy()
            clusters = sub["cluster"].to_list() if exp.dataset.has_clusters else None
            est = stats.mean_ci(values, clusters=clusters, confidence=confidence)
            if est.n > 0 and est.se == 0 and set(np.unique(values)) <= {0.0, 1.0}:
                # Every item scored the same 0 or 1: the CLT interval has zero width,
                # which overstates certainty; Wilson's does not.
                lo_w, hi_w = stats.wilson_interval(int(values.sum()), len(values), confidence)
                est = stats.Estimate(est.mean, est.se, lo_w, hi_w, est.n, est.n_clusters, confidence)
            passes = sub["pass_rate"].drop_nulls().to_numpy()
            if len(passes):
                k = int(np.sum(passes >= 0.5))
                lo, hi = stats.wilson_interval(k, len(passes), confidence)
                pr = k / len(passes)
            else:
                pr = lo = hi = None
            rows.append({
                "variant": vname, "scorer": s.name, "mean": est.mean, "se": est.se,
                "ci_low": est.ci_low, "ci_high": est.ci_high, "n": est.n,
                "n_clusters": est.n_clusters, "pass_rate": pr, "pass_ci_low": lo, "pass_ci_high": hi,
            })
    schema = {"variant": pl.String, "scorer": pl.String, "mean": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64, "n": pl.Int64, "n_clusters": pl.Int64, "pass_rate": pl.Float64,
              "pass_ci_low": pl.Float64, "pass_ci_high": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def summary(exp: Experiment, confidence: float = 0.95) -> pl.DataFrame:
    """One row per variant: items, repeats, each scorer's mean and CI (and pass rate),
    error rate, tokens, total cost and cost per item (the mean cost of answering one
    item once), latency p50/p95.

    A scorer's ``_pass_rate`` is the share of items that pass on most of their
    repeats, with a Wilson interval; its mean is over per-item means.
    """
    import polars as pl

    t = exp.traces_df()
    base = pl.DataFrame(
        {"variant": list(exp.variants), "label": [v.label() for v in exp.variants.values()],
         "model": [v.effective_model for v in exp.variants.values()]},
        schema={"variant": pl.String, "label": pl.String, "model": pl.String},
    )
    calls = t.group_by("variant").agg(
        pl.col("item_id").filter(pl.col("status") == "ok").n_unique().alias("n_items"),
        pl.len().alias("calls"),
        (pl.col("status") == "error").sum().alias("errors"),
        (pl.col("status") == "error").mean().alias("error_rate"),
        pl.col("input_tokens").mean().alias("input_tokens_mean"),
        pl.col("output_tokens").mean().alias("output_tokens_mean"),
        pl.col("cache_read_tokens").sum().alias("cache_read_tokens"),
        # Null, not 0, when no call was priced: unknown is not free.
        pl.when(pl.col("cost_usd").is_not_null().any()).then(pl.col("cost_usd").sum()).alias("cost_usd"),
        pl.col("cost_usd").filter(pl.col("status") == "ok").mean().alias("cost_per_item_usd"),
        pl.col("cost_usd").is_null().and_(pl.col("status") == "ok").sum().alias("unpriced_calls"),
        pl.col("latency_ms").filter(pl.col("status") == "ok").quantile(0.5, interpolation="linear").alias("latency_p50_ms"),
        pl.col("latency_ms").filter(pl.col("status") == "ok").quantile(0.95, interpolation="linear").alias("latency_p95_ms"),
    )
    out = base.join(calls, on="variant", how="left").with_columns(
        pl.lit(exp.repeats).alias("repeats"),
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
    return out.select(first + [c for c in out.columns if c not in first])


def items(exp: Experiment, a: str = "A", b: str = "B", scorer: str | None = None) -> pl.DataFrame:
    """Per item: inputs, reference, both outputs (first repeat) and scores; regressions first."""
    import polars as pl

    for v in (a, b):
        if v not in exp.variants:
            raise ConfigError(f"no variant {v!r} in experiment {exp.name!r} (variants: {', '.join(exp.variants)})")
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
    for v, suffix in ((a, "a"), (b, "b")):
        part = first.filter(pl.col("variant") == v).select(
            "item_id", pl.col("output").alias(f"output_{suffix}"), pl.col("trace_id").alias(f"trace_{suffix}")
        )
        base = base.join(part, on="item_id", how="left")
        if scorer is not None:
            sc = exp.item_scores().filter((pl.col("variant") == v) & (pl.col("scorer") == scorer)).select(
                "item_id", pl.col("value").alias(f"score_{suffix}")
            )
            base = base.join(sc, on="item_id", how="left")
    if scorer is not None:
        base = base.with_columns((pl.col("score_b") - pl.col("score_a")).alias("delta")).sort("delta", nulls_last=True)
    return base


def chart(exp: Experiment, kind: str = "quality", **kwargs: Any) -> Any:
    """An Altair chart: quality, latency, cost, tokens, paired, cost_quality."""
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
    if kind == "cost_quality":
        return charts.cost_quality(exp.cost_quality_points(kwargs.pop("scorer", None)), **kwargs)
    raise ConfigError(f"unknown chart {kind!r}; use quality, latency, cost, tokens, paired or cost_quality")


def cost_quality_points(exp: Experiment, scorer: str | None = None) -> pl.DataFrame:
    import polars as pl

    scorer = scorer or (exp.scorers[0].name if exp.scorers else None)
    summ = exp.summary()
    q = exp.quality().filter(pl.col("scorer") == scorer).select("variant", pl.col("mean").alias("quality"), "ci_low", "ci_high")
    return summ.select("variant", pl.col("cost_per_item_usd").alias("cost_per_item")).join(q, on="variant", how="left")


def experiment_html(exp: Experiment) -> str:
    head = (
        f"<b>experiment {_html.esc(exp.name)}</b> · status <b>{_html.esc(exp.status)}</b> · dataset "
        f"{_html.esc(exp.dataset.ref)} ({len(exp.dataset)} items) · repeats {exp.repeats} · seed {exp.seed}"
    )
    if exp.simulated():
        head += ' · <span style="color:#b45309">simulated provider</span>'
    variants = _html.table(["variant", "prompt / model"], [(k, v.label()) for k, v in exp.variants.items()])
    try:
        summary = exp.summary()
        cols = ["variant", "n_items", "calls", "errors"] + [s.name for s in exp.scorers] + ["cost_usd", "latency_p50_ms", "latency_p95_ms"]
        body = _frame_html(summary.select([c for c in cols if c in summary.columns]))
    except Exception as exc:  # noqa: BLE001 - a repr must not raise
        body = f"<i>no results yet ({_html.esc(exc)})</i>"
    return _html.root(head + variants + body)


@dataclass
class Comparison:
    """B against A: quality per scorer, cost and latency, each with uncertainty."""

    experiment: str
    a: str
    b: str
    scores: Any
    """Polars frame: per scorer the paired difference, CI, p-values, verdict, MDE, n needed."""
    cost: Any
    """Polars frame: per-item cost difference (paired) with CI."""
    latency: Any
    """Polars frame: median and p95 latency differences (bootstrap CIs) and Mann-Whitney p."""
    preference: Any = None
    """Human preference of B over A, when rated (``stats.Preference``)."""
    simulated: bool = False

    def verdicts(self) -> dict[str, str]:
        return dict(zip(self.scores["scorer"].to_list(), self.scores["verdict"].to_list()))

    def __str__(self) -> str:
        lines = [f"{self.experiment}: {self.b} vs {self.a}" + ("  [simulated provider]" if self.simulated else "")]
        for r in self.scores.iter_rows(named=True):
            lines.append(
                f"  {r['scorer']}: {r['mean_a']:.3f} -> {r['mean_b']:.3f}, diff {r['diff']:+.3f} "
                f"(95% CI {r['ci_low']:+.3f} to {r['ci_high']:+.3f}), p={r['p_holm']:.3g} (Holm) -> {r['verdict']}; "
                f"n={r['n']}, MDE {r['mde']:.3f}" + (f", n needed {r['n_needed']}" if r["n_needed"] is not None else "")
            )
            if r.get("mcnemar_p") is not None:
                lines.append(f"    pass rate {r['pass_rate_a']:.1%} -> {r['pass_rate_b']:.1%}, exact McNemar p={r['mcnemar_p']:.3g}")
        for r in self.cost.iter_rows(named=True):
            lines.append(
                f"  cost per item: ${r['mean_a']:.6f} -> ${r['mean_b']:.6f}, diff {r['diff']:+.6f} "
                f"(95% CI {r['ci_low']:+.6f} to {r['ci_high']:+.6f}) -> {r['verdict']}"
            )
        for r in self.latency.iter_rows(named=True):
            mw = "" if r["mann_whitney_p"] is None else f", Mann-Whitney p={r['mann_whitney_p']:.3g}"
            lines.append(
                f"  latency {r['stat']}: {r['a']:.0f} ms -> {r['b']:.0f} ms, diff {r['diff']:+.0f} ms "
                f"(95% CI {r['ci_low']:+.0f} to {r['ci_high']:+.0f}, bootstrap){mw}"
            )
        if self.preference is not None and self.preference.n:
            p = self.preference
            lines.append(
                f"  human preference: {self.b} wins {p.wins_b}, {self.a} wins {p.wins_a}, ties {p.ties}; "
                f"win rate {p.win_rate:.1%} (95% CI {p.ci_low:.1%}–{p.ci_high:.1%}), sign test p={p.p_value:.3g}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Comparison {self.experiment}: {self.b} vs {self.a} {self.verdicts()}>"

    def _repr_html_(self) -> str:
        sim = '<div style="color:#b45309">Simulated provider: these numbers describe a declared simulation, not a real model.</div>' if self.simulated else ""
        pref = ""
        if self.preference is not None and self.preference.n:
            p = self.preference
            pref = (f"<p>Human preference: {_html.esc(self.b)} wins {p.wins_b}, {_html.esc(self.a)} wins {p.wins_a}, ties {p.ties}; "
                    f"win rate {p.win_rate:.1%} (95% CI {p.ci_low:.1%}–{p.ci_high:.1%}), sign test p={p.p_value:.3g}</p>")
        return _html.root(
            f"<b>{_html.esc(self.b)} vs {_html.esc(self.a)}</b> · {_html.esc(self.experiment)}{sim}"
            f"{_frame_html(self.scores)}{_frame_html(self.cost, 6)}{_frame_html(self.latency)}{pref}"
        )


def compare(exp: Experiment, a: str = "A", b: str = "B", *, confidence: float = 0.95, alpha: float = 0.05, target_effect: float | None = None) -> Comparison:
    import numpy as np
    import polars as pl

    from . import stats

    for v in (a, b):
        if v not in exp.variants:
            raise ConfigError(f"no variant {v!r} in experiment {exp.name!r} (variants: {', '.join(exp.variants)})")
    items = exp.item_scores()
    rows = []
    for s in exp.scorers:
        sa = items.filter((pl.col("variant") == a) & (pl.col("scorer") == s.name)).select("item_id", "cluster", pl.col("value").alias("a"), pl.col("pass_rate").alias("pa"))
        sb = items.filter((pl.col("variant") == b) & (pl.col("scorer") == s.name)).select("item_id", pl.col("value").alias("b"), pl.col("pass_rate").alias("pb"))
        joined = sa.join(sb, on="item_id", how="inner").drop_nulls(["a", "b"]).sort("item_id")
        va, vb = joined["a"].to_numpy(), joined["b"].to_numpy()
        clusters = joined["cluster"].to_list() if exp.dataset.has_clusters else None
        d = stats.paired_difference(va, vb, clusters=clusters, confidence=confidence)
        sd_a = float(np.std(va, ddof=1)) if len(va) > 1 else float("nan")
        sd_b = float(np.std(vb, ddof=1)) if len(vb) > 1 else float("nan")
        corr = 0.0 if math.isnan(d.correlation) else d.correlation
        mde = stats.minimum_detectable_effect(sd_a, sd_b, corr, max(d.n, 1), alpha=alpha) if d.n > 1 else float("nan")
        effect = target_effect if target_effect is not None else abs(d.diff)
        n_needed = None
        if d.n > 1 and effect and not math.isnan(effect) and not (math.isnan(sd_a) or math.isnan(sd_b)):
            try:
                n_needed = stats.sample_size_needed(effect, sd_a, sd_b, corr, alpha=alpha)
            except ValueError:
                n_needed = None
        row = {
            "scorer": s.name, "n": d.n, "n_clusters": d.n_clusters, "mean_a": d.mean_a, "mean_b": d.mean_b,
            "diff": d.diff, "se": d.se, "ci_low": d.ci_low, "ci_high": d.ci_high, "p_value": d.p_value,
            "correlation": d.correlation, "mde": mde, "n_needed": n_needed,
            "pass_rate_a": None, "pass_rate_b": None, "mcnemar_p": None,
        }
        pj = joined.drop_nulls(["pa", "pb"])
        if pj.height:
            pa, pb = pj["pa"].to_numpy() >= 0.5, pj["pb"].to_numpy() >= 0.5
            m = stats.mcnemar_exact(pa, pb)
            row.update(pass_rate_a=float(pa.mean()), pass_rate_b=float(pb.mean()), mcnemar_p=m.p_value)
        rows.append(row)
    p_holm = stats.holm([r["p_value"] for r in rows]) if rows else []
    for r, p in zip(rows, p_holm):
        r["p_holm"] = float(p)
        r["verdict"] = stats.verdict(r["diff"], r["ci_low"], r["ci_high"], r["p_holm"], alpha=alpha, a=a, b=b)
    score_schema = {
        "scorer": pl.String, "n": pl.Int64, "n_clusters": pl.Int64, "mean_a": pl.Float64, "mean_b": pl.Float64,
        "diff": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "p_value": pl.Float64,
        "p_holm": pl.Float64, "verdict": pl.String, "correlation": pl.Float64, "mde": pl.Float64, "n_needed": pl.Int64,
        "pass_rate_a": pl.Float64, "pass_rate_b": pl.Float64, "mcnemar_p": pl.Float64,
    }
    scores = pl.DataFrame([{k: r.get(k) for k in score_schema} for r in rows], schema=score_schema)

    t = exp.traces_df()
    ok = t.filter(pl.col("status") == "ok")
    per_item = ok.group_by("variant", "item_id").agg(pl.col("cost_usd").mean().alias("cost"))
    ca = per_item.filter(pl.col("variant") == a).select("item_id", pl.col("cost").alias("a"))
    cb = per_item.filter(pl.col("variant") == b).select("item_id", pl.col("cost").alias("b"))
    cj = ca.join(cb, on="item_id").drop_nulls().sort("item_id")
    cd = stats.paired_difference(cj["a"].to_numpy(), cj["b"].to_numpy(), confidence=confidence)
    cost = pl.DataFrame([{
        "metric": "cost_per_item_usd", "n": cd.n, "mean_a": cd.mean_a, "mean_b": cd.mean_b, "diff": cd.diff,
        "ci_low": cd.ci_low, "ci_high": cd.ci_high, "p_value": cd.p_value,
        "verdict": stats.verdict(cd.diff, cd.ci_low, cd.ci_high, cd.p_value, alpha=alpha, higher_is_better=False, a=a, b=b).replace("better", "cheaper").replace("worse", "costlier"),
    }])
    la = ok.filter(pl.col("variant") == a)["latency_ms"].drop_nulls().to_numpy()
    lb = ok.filter(pl.col("variant") == b)["latency_ms"].drop_nulls().to_numpy()
    _, mw_p = stats.mann_whitney(la, lb)
    lat_rows = []
    for stat in ("median", "p95"):
        bd = stats.bootstrap_difference(la, lb, stat=stat, seed=exp.seed, confidence=confidence)
        # Mann-Whitney tests a shift of the whole distribution: it belongs beside the median only.
        lat_rows.append({"stat": stat, "a": bd.a, "b": bd.b, "diff": bd.diff, "ci_low": bd.ci_low, "ci_high": bd.ci_high,
                         "n_a": bd.n_a, "n_b": bd.n_b, "mann_whitney_p": mw_p if stat == "median" else None})
    latency = pl.DataFrame(lat_rows, schema_overrides={"mann_whitney_p": pl.Float64})
    pref = None
    try:
        from . import feedback

        pref = feedback.preference(exp.bench.store, exp.id, a, b)
    except (ImportError, AttributeError):
        pref = None
    # Labelled by the data, not by the provider open now: a readout of a simulated run stays marked.
    simulated = bool(t.height and (t["simulated"].fill_null(0).max() or 0))
    return Comparison(exp.name, a, b, scores, cost, latency, pref, simulated)


def _inputs_text(inputs: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in inputs.items())



def _frame_html(df: pl.DataFrame, digits: int = 4) -> str:
    rows = []
    for r in df.iter_rows():
        rows.append([f"{x:.{digits}g}" if isinstance(x, float) else ("" if x is None else x) for x in r])
    return _html.table(df.columns, rows)
