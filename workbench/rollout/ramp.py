"""Gradual rollouts: a candidate's share of a label ramps up step by step, guarded, and rolls back by itself.

A `Plan` is a list of shares (5% → 25% → 50% → 100%), guard metrics with
margins, and the samples each step needs. ``step()`` reads the current step's
split period (`readout`) and decides:

- **rollback** when any guard regressed: the whole interval of the harm (how much
  worse the candidate is) lies beyond its margin. The label goes back to the
  baseline at once, and the label history says why, with the figures.
- **advance** (or **complete** after the last step) when every guard holds: the
  whole interval lies within its margin (non-inferiority on the interval, not on
  the point estimate), with at least the minimum samples in both arms.
- **hold** otherwise: too few samples, an interval that straddles a margin, or a
  sample ratio mismatch (the assignment is broken, so nothing can be judged).

At a 100% step the candidate serves everyone, so its calls are compared with the
baseline's calls in the periods before (the earlier steps, and the period before
the rollout started): a before/after comparison, which the card says is not
randomised. Blue-green is the plan with the single step 100%.

Every label move goes through ``PromptRegistry`` (the label history is the
audit trail), guarded by the move it was decided on, so two processes stepping
the same rollout cannot both move the label. State (plan, step, each step's
move, every decision with its figures) is in the ``rollouts`` and
``rollout_decisions`` tables, which only this module writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _format as fmt
from .. import _html
from .. import verdict as vd
from .._canonical import dumps, loads
from .._ids import new_id, utc_now
from ..errors import ConfigError, LabelMoved, RolloutError, RolloutNotFound
from . import _stats
from .readout import BUILTIN, OnlineReadout, readout, shares_text, with_checks

if TYPE_CHECKING:
    import polars as pl

    from ..bench import Workbench

DEFAULT_STEPS = (0.05, 0.25, 0.5, 1.0)
DEFAULT_GUARDS: dict[str, float] = {"error_rate": 0.01, "latency_p95": 0.10, "cost": 0.10}
"""Error rate at most one percentage point worse, p95 latency and cost per call at most 10% worse."""
RELATIVE = ("cost", "latency_p50", "latency_p95")
"""Guards whose margin is a share of the baseline's value; the others' margins are absolute."""
RUNNING, COMPLETED, ROLLED_BACK, STOPPED = "running", "completed", "rolled_back", "stopped"
WAITING = "waiting"
"""A guard without enough samples yet."""
EARLY_ROLLBACK_UNITS = 30
"""Units per arm from which a regression is acted on before ``min_units`` are in: a version that fails
every third call should not serve more users while the ramp waits to be sure of everything else. Its whole
interval must still lie beyond the margin."""


@dataclass(frozen=True)
class Guard:
    """A metric the candidate must not be worse on by more than ``margin``."""

    metric: str
    """``error_rate``, ``cost``, ``latency_p50``, ``latency_p95``, or a sampled quality score's scorer name."""
    margin: float
    """Error rate: a share (0.01 is one point); cost and latency: a share of the baseline (0.10 is 10%);
    a quality score: in the score's units."""

    @property
    def relative(self) -> bool:
        return self.metric in RELATIVE

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in BUILTIN

    def describe(self) -> str:
        """The margin as a person reads it: ``+1.0 pts``, ``+10%``, ``−0.020``."""
        if self.metric == "error_rate":
            return vd.points(self.margin)
        if self.relative:
            return fmt.pct(self.margin, 0 if self.margin * 100 == round(self.margin * 100) else 1, signed=True)
        return fmt.num(-self.margin, signed=True)


@dataclass(frozen=True)
class Plan:
    """How a rollout ramps and what it guards."""

    steps: tuple[float, ...] = DEFAULT_STEPS
    """The candidate's share at each step, increasing, each in (0, 1]."""
    guards: tuple[Guard, ...] = tuple(Guard(m, v) for m, v in DEFAULT_GUARDS.items())
    min_units: int = 100
    """Units each version needs in a step before anything is judged (the candidate's arm is the small one)."""
    min_scores: int = 30
    """Scored calls each version needs before a quality guard is judged."""
    confidence: float = 0.95
    """Of every interval a decision reads."""

    @classmethod
    def make(
        cls,
        steps: Sequence[float] = DEFAULT_STEPS,
        guards: Mapping[str, float] | None = None,
        *,
        min_units: int = 100,
        min_scores: int = 30,
        confidence: float = 0.95,
    ) -> Plan:
        """A checked plan: steps as shares (``0.05``) or percents (``5``), guards as ``{metric: margin}``."""
        shares = tuple(float(s) / 100 if any(x > 1 for x in steps) else float(s) for s in steps)
        if not shares or any(not 0 < s <= 1 for s in shares) or list(shares) != sorted(set(shares)):
            raise ConfigError(f"rollout steps must be increasing shares in (0, 1] such as (0.05, 0.25, 0.5, 1.0), got {tuple(steps)!r}")
        given = dict(DEFAULT_GUARDS if guards is None else guards)
        for metric, margin in given.items():
            if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
                raise ConfigError(f"guard {metric!r} needs a margin >= 0 (how much worse is tolerated), got {margin!r}")
        if not given:
            raise ConfigError("a rollout needs at least one guard, e.g. guards={'error_rate': 0.01}")
        for what, n in (("min_units", min_units), ("min_scores", min_scores)):
            if not isinstance(n, int) or n < 2:
                raise ConfigError(f"{what} must be an integer >= 2 (an interval needs two units), got {n!r}")
        if not 0 < confidence < 1:
            raise ConfigError(f"confidence must be between 0 and 1, got {confidence!r}")
        return cls(shares, tuple(Guard(m, float(v)) for m, v in given.items()), min_units, min_scores, confidence)

    def to_json(self) -> str:
        return dumps({"steps": list(self.steps), "guards": {g.metric: g.margin for g in self.guards},
                      "min_units": self.min_units, "min_scores": self.min_scores, "confidence": self.confidence})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = loads(text)
        return cls(tuple(d["steps"]), tuple(Guard(m, v) for m, v in d["guards"].items()), d["min_units"],
                   d["min_scores"], d["confidence"])

    def describe(self) -> str:
        return " → ".join(fmt.pct(s, 0) for s in self.steps)


@dataclass
class State:
    """A rollout as stored."""

    id: str
    name: str
    label: str
    baseline: int
    candidate: int
    plan: Plan
    status: str
    step: int
    step_move_id: str
    start_move_id: str | None
    moves: list[str]
    step_started_at: str
    created_at: str
    updated_at: str

    @property
    def share(self) -> float:
        return self.plan.steps[self.step]

    def tagged(self, why: str, step: int | None = None) -> str:
        """A label move's reason: why, then which rollout and step made it (recovery finds its own moves by it)."""
        return tag(why, self.id, self.step if step is None else step, len(self.plan.steps))


def tag(why: str, rollout_id: str, step: int, steps: int) -> str:
    """``why [rollout ID step K/N]``: the reason first, for a person reading the label history."""
    return f"{why} [rollout {rollout_id} step {step + 1}/{steps}]"


_TAG = re.compile(r"\[rollout (\S+) step (\d+)/(\d+)\]$")


def _state(row: Mapping[str, Any]) -> State:
    return State(row["id"], row["name"], row["label"], row["baseline"], row["candidate"], Plan.from_json(row["plan_json"]),
                 row["status"], row["step"], row["step_move_id"], row["start_move_id"], loads(row["moves_json"], []),
                 row["step_started_at"], row["created_at"], row["updated_at"])


@dataclass(frozen=True)
class GuardResult:
    """One guard judged on one step's figures."""

    guard: Guard
    state: str
    """``holds``, ``regressed``, ``unsure`` or ``waiting``."""
    why: str
    """The figures in words."""
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self) -> vd.Check:
        kind, badge = {
            _stats.HOLDS: (vd.BETTER, "holds"), _stats.REGRESSED: (vd.WORSE, "regressed"),
            _stats.UNSURE: (vd.UNDERPOWERED, "not yet"), WAITING: (vd.EMPTY, "waiting"),
        }[self.state]
        return vd.Check(kind, f"{self.guard.metric} {badge}", self.why)


def _money_or_ms(metric: str, x: Any, signed: bool = False) -> str:
    """A cost per 1,000 calls (a per-call cost is a string of zeros) or a latency in whole ms."""
    if metric == "cost":
        return fmt.money(None if fmt.missing(x) else float(x) * 1000, signed=signed)
    return fmt.ms(x, signed=signed, decimals=0)


def judge_guard(guard: Guard, ro: OnlineReadout, plan: Plan, candidate: int) -> GuardResult:
    """Whether ``guard`` holds for ``candidate`` in a readout, with the figures that say so."""
    fig = ro.figure(guard.metric, candidate)
    errors = ro.figure("error_rate", candidate)
    assert errors is not None
    units = (errors.d.units_a, errors.d.units_b)
    base = {"metric": guard.metric, "margin": guard.margin, "units_a": units[0], "units_b": units[1]}
    short = min(units) < plan.min_units
    waiting = GuardResult(guard, WAITING, f"{fmt.count(min(units))} of {fmt.count(plan.min_units)} units in the smaller arm "
                                          f"(v{ro.baseline} {fmt.count(units[0])}, v{candidate} {fmt.count(units[1])})", base)
    if short and min(units) < min(plan.min_units, EARLY_ROLLBACK_UNITS):
        return waiting
    if fig is None:
        return GuardResult(guard, WAITING, f"no sampled {guard.metric} scores yet: score a sample of the calls "
                                            "(production scoring)", base)
    d = fig.d
    if guard.metric not in BUILTIN and min(d.n_a, d.n_b) < plan.min_scores:
        return GuardResult(guard, WAITING, f"{fmt.count(min(d.n_a, d.n_b))} of {fmt.count(plan.min_scores)} scored calls "
                                            "in the smaller arm", base)
    allowed = guard.margin * d.a if guard.relative else guard.margin
    figures = {**base, "a": _num(d.a), "b": _num(d.b), "diff": _num(d.diff), "ci_low": _num(d.ci_low),
               "ci_high": _num(d.ci_high), "n_a": d.n_a, "n_b": d.n_b, "allowed": _num(allowed)}
    if fmt.missing(allowed):
        return GuardResult(guard, _stats.UNSURE, f"no baseline {guard.metric} to set the margin against", figures)
    state = _stats.judge(d.ci_low, d.ci_high, allowed, higher_is_better=guard.higher_is_better)
    conf = f"{plan.confidence * 100:g}% CI"
    if guard.metric == "error_rate":
        shown = (f"{fmt.pct(d.a)} → {fmt.pct(d.b)}, {vd.points(d.diff)} ({conf} {vd.points(d.ci_low, unit=False)} to "
                 f"{vd.points(d.ci_high)}) against a margin of {guard.describe()}")
    elif guard.relative:
        per = " per 1,000 calls" if guard.metric == "cost" else ""
        shown = (f"{_money_or_ms(guard.metric, d.a)} → {_money_or_ms(guard.metric, d.b)}{per}, "
                 f"{_money_or_ms(guard.metric, d.diff, True)} ({conf} {_money_or_ms(guard.metric, d.ci_low, True)} to "
                 f"{_money_or_ms(guard.metric, d.ci_high, True)}) against a margin of {guard.describe()} "
                 f"({_money_or_ms(guard.metric, allowed, True)})")
    else:
        shown = (f"{fmt.num(d.a)} → {fmt.num(d.b)}, {fmt.num(d.diff, signed=True)} ({conf} "
                 f"{fmt.interval(d.ci_low, d.ci_high, signed=True)}) against a margin of {guard.describe()}")
    if short and state != _stats.REGRESSED:
        return waiting  # only a clear regression is called before the step has its units
    verdict = {_stats.HOLDS: "within the margin", _stats.REGRESSED: "worse beyond the margin",
               _stats.UNSURE: "the interval straddles the margin: more calls will tell"}[state]
    if short:
        verdict += f" (called at {fmt.count(min(units))} units, before the {fmt.count(plan.min_units)} a step needs)"
    return GuardResult(guard, state, f"{shown}: {verdict}", {**figures, "state": state})


def _num(x: Any) -> float | None:
    return None if fmt.missing(x) else float(x)


@dataclass
class Decision:
    """What one ``step()`` (or start, rollback, stop) decided, on which figures.

    Displays as the readout's verdict card with the decision and each guard on top.
    """

    rollout: State
    action: str
    """``start``, ``hold``, ``advance``, ``complete``, ``rollback`` or ``stop``."""
    reason: str
    share: float
    """The candidate's share during the step decided on."""
    next_share: float | None = None
    """The share it moved to (advance, rollback: 0)."""
    guards: list[GuardResult] = field(default_factory=list)
    readout: OnlineReadout | None = None
    srm: dict[str, Any] | None = None
    decided_at: str = ""
    headline: str = ""
    """The decision in a few words, for the top of the card (the guards' lines below give the figures)."""

    def figures(self) -> dict[str, Any]:
        return {"guards": [g.figures | {"state": g.state, "why": g.why} for g in self.guards], "srm": self.srm,
                "next_share": self.next_share, "move_id": self.rollout.step_move_id}

    def check(self) -> vd.Check:
        kind = {"rollback": vd.WORSE, "advance": vd.BETTER, "complete": vd.BETTER, "start": vd.NONE,
                "hold": vd.UNDERPOWERED, "stop": vd.EMPTY}[self.action]
        s = self.rollout
        step = f"step {s.step + 1} of {len(s.plan.steps)} ({fmt.pct(self.share, 0)})"
        return vd.Check(kind, self.action,
                        f"{s.name}/{s.label} v{s.candidate} over v{s.baseline}, {step}: {self.headline or self.reason}")

    def card(self) -> vd.Card | None:
        if self.readout is None:
            return None
        return with_checks(self.readout.card(self.rollout.candidate, details=True),
                           [self.check(), *(g.check() for g in self.guards)])

    def __str__(self) -> str:
        card = self.card()
        return vd.text(card) if card is not None else f"[{self.action}] {self.check().text}"

    def __repr__(self) -> str:
        return f"<Decision {self.action}: {self.reason[:80]}>"

    def _repr_html_(self) -> str:
        card = self.card()
        if card is not None:
            return vd.html(card)
        c = self.check()
        return _html.root(f"{vd.badge_html(c.kind, c.badge)} {_html.esc(c.text)}", cls="wb-decision")


# -- the tables ---------------------------------------------------------------------------------


def running(bench: Workbench, name: str | None = None, label: str | None = None) -> list[State]:
    """Rollouts running in the file (of one label, when given)."""
    sql, params = "SELECT * FROM rollouts WHERE status = ?", [RUNNING]
    if name is not None:
        sql += " AND name = ?"
        params.append(name)
    if label is not None:
        sql += " AND label = ?"
        params.append(label)
    return [_state(r) for r in bench.store.query(sql + " ORDER BY created_at", params)]


def every(bench: Workbench) -> list[State]:
    """Every rollout in the file, newest first."""
    return [_state(r) for r in bench.store.query("SELECT * FROM rollouts ORDER BY created_at DESC")]


def latest(bench: Workbench, name: str, label: str) -> State | None:
    """The label's newest rollout, running or not."""
    rows = bench.store.query("SELECT * FROM rollouts WHERE name = ? AND label = ? ORDER BY created_at DESC LIMIT 1", (name, label))
    return _state(rows[0]) if rows else None


def decisions_df(bench: Workbench, rollout_id: str) -> pl.DataFrame:
    """Every decision of one rollout, oldest first: when, step, share, action, reason, figures (JSON)."""
    import polars as pl

    rows = bench.store.query(
        "SELECT decided_at, step, share, action, reason, figures_json FROM rollout_decisions WHERE rollout_id = ? ORDER BY id",
        (rollout_id,),
    )
    schema = {"decided_at": pl.String, "step": pl.Int64, "share": pl.Float64, "action": pl.String, "reason": pl.String,
              "figures_json": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _record(bench: Workbench, d: Decision, *, state_update: dict[str, Any] | None = None) -> Decision:
    """Store a decision and, in the same transaction, the rollout's new state."""
    d.decided_at = utc_now()
    s = d.rollout
    with bench.store.transaction() as conn:
        if state_update:
            sets = ", ".join(f"{k} = ?" for k in state_update)
            conn.execute(f"UPDATE rollouts SET {sets}, updated_at = ? WHERE id = ?", [*state_update.values(), d.decided_at, s.id])
        conn.execute(
            "INSERT INTO rollout_decisions (id, rollout_id, step, share, action, reason, figures_json, decided_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id(), s.id, s.step, d.share, d.action, d.reason, dumps(d.figures()), d.decided_at),
        )
    return d


# -- start, step, roll back, stop ----------------------------------------------------------------


def start(bench: Workbench, name: str, label: str, candidate: int, plan: Plan) -> Decision:
    """Begin ramping ``candidate`` under ``label`` from the version the label serves now."""
    if running(bench, name, label):
        raise RolloutError(f"a rollout of {name}/{label} is already running; step it, or stop it with rollout.stop()")
    now = bench.prompts.label_state(name, label)
    if len(now.split) > 1:
        raise RolloutError(
            f"label {label!r} of {name!r} is split ({shares_text(now.split)}); "
            "a rollout starts from one version: bench.prompts.set_label(...) first")
    baseline = now.version
    cand = bench.prompts.get(name, candidate)
    if cand.version == baseline:
        raise RolloutError(f"v{baseline} already serves label {label!r}: pick another candidate")
    rid = new_id()
    first = plan.steps[0]
    reason = f"start, v{cand.version} at {fmt.pct(first, 0)} over v{baseline} ({plan.describe()})"
    _move_to(bench, name, label, baseline, cand.version, first, tag(reason, rid, 0, len(plan.steps)), now.move_id)
    moved = bench.prompts.label_state(name, label).move_id
    stamp = utc_now()
    state = State(rid, name, label, baseline, cand.version, plan, RUNNING, 0, moved, now.move_id, [moved], stamp, stamp, stamp)
    with bench.store.transaction() as conn:
        conn.execute(
            "INSERT INTO rollouts (id, name, label, baseline, candidate, plan_json, status, step, step_move_id, "
            "start_move_id, moves_json, step_started_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, name, label, baseline, cand.version, plan.to_json(), RUNNING, 0, moved, now.move_id, dumps([moved]),
             stamp, stamp, stamp),
        )
    return _record(bench, Decision(state, "start", reason, first, first))


def _move_to(bench: Workbench, name: str, label: str, baseline: int, candidate: int, share: float, reason: str,
             expect: str) -> None:
    if share >= 1:
        bench.prompts.set_label(name, label, candidate, reason=reason, expect_move=expect)
    else:
        bench.prompts.set_split(name, label, {baseline: 1 - share, candidate: share}, reason=reason, expect_move=expect)


def _adopt(bench: Workbench, s: State) -> State | None:
    """After a crash between moving the label and saving the state: adopt the move this rollout made, if it is one."""
    hist = bench.prompts.label_history(s.name, s.label)
    found = _TAG.search(hist[0]["reason"] or "") if hist else None
    if found is None or found.group(1) != s.id:
        return None
    move = hist[0]["id"]
    step = int(found.group(2)) - 1
    status = ROLLED_BACK if hist[0]["action"] == "rollback" else RUNNING
    with bench.store.transaction() as conn:
        conn.execute("UPDATE rollouts SET step = ?, step_move_id = ?, moves_json = ?, status = ?, updated_at = ? WHERE id = ?",
                     (step, move, dumps([*s.moves, move]), status, utc_now(), s.id))
    return _state(bench.store.query("SELECT * FROM rollouts WHERE id = ?", (s.id,))[0])


def step(bench: Workbench, s: State) -> Decision:
    """Judge the current step of a running rollout and act: advance, complete, roll back or hold."""
    if s.status != RUNNING:
        raise RolloutError(f"rollout {s.id} of {s.name}/{s.label} is {s.status.replace('_', ' ')}, not running")
    label_now = bench.prompts.label_state(s.name, s.label)
    if label_now.move_id != s.step_move_id:
        adopted = _adopt(bench, s)
        if adopted is None:
            reason = (f"the label was moved outside the rollout (now {shares_text(label_now.split)}); "
                      "the rollout stops and the label keeps what was set")
            return _record(bench, Decision(s, "stop", reason, s.share), state_update={"status": STOPPED})
        if adopted.status != RUNNING:
            return Decision(adopted, "stop", "this rollout had already rolled the label back", adopted.share)
        s = adopted
    base_moves = [m for m in [s.start_move_id, *s.moves[:-1]] if m]
    ro = readout(bench, s.name, s.label, baseline=s.baseline, move_id=s.step_move_id, baseline_moves=base_moves,
                 confidence=s.plan.confidence)
    results = [judge_guard(g, ro, s.plan, s.candidate) for g in s.plan.guards]
    srm = ro.srm
    srm_figures = None if srm is None else {"observed": {str(k): v for k, v in srm.observed.items()},
                                            "expected": {str(k): v for k, v in srm.expected.items()},
                                            "p_value": _num(srm.p_value), "outside": srm.outside, "mixed": ro.mixed}
    regressed = [r for r in results if r.state == _stats.REGRESSED]
    if regressed:
        why = "; ".join(f"{r.guard.metric} {r.why}" for r in regressed)
        reason = f"rolled back to v{s.baseline}: {why}"
        try:
            bench.prompts.rollback(s.name, s.label, to=s.baseline, reason=s.tagged(reason), expect_move=s.step_move_id)
        except LabelMoved:
            return Decision(s, "hold", "another process moved the label meanwhile; step again", s.share, guards=results, readout=ro)
        headline = f"rolled back to v{s.baseline}: {', '.join(r.guard.metric for r in regressed)} worse beyond the margin"
        return _record(bench, Decision(s, "rollback", reason, s.share, 0.0, results, ro, srm_figures, headline=headline),
                       state_update={"status": ROLLED_BACK})
    if srm is not None and (srm.mismatch or ro.mixed):
        reason = ("sample ratio mismatch: " + (f"χ² {fmt.pvalue(srm.p_value)}" if not srm.outside else
                                                f"{fmt.count(srm.outside)} units outside the split")
                  + (f", {fmt.count(ro.mixed)} units served both versions" if ro.mixed else "")
                  + "; the assignment is broken, so nothing is judged until it is fixed")
        return _record(bench, Decision(s, "hold", reason, s.share, None, results, ro, srm_figures))
    pending = [r for r in results if r.state != _stats.HOLDS]
    if pending:
        waiting = [r.guard.metric for r in pending if r.state == WAITING]
        unsure = [r.guard.metric for r in pending if r.state != WAITING]
        headline = "; ".join(x for x in (
            f"waiting for samples ({', '.join(waiting)})" if waiting else "",
            f"not decided yet: {', '.join(unsure)} straddle{'s' if len(unsure) == 1 else ''} the margin" if unsure else "",
        ) if x)
        return _record(bench, Decision(s, "hold", _grouped(pending), s.share, None, results, ro, srm_figures,
                                       headline=headline))
    held = ", ".join(r.guard.metric for r in results)
    if s.step + 1 >= len(s.plan.steps):
        reason = f"every guard held at {fmt.pct(s.share, 0)} ({held}): v{s.candidate} stays"
        return _record(bench, Decision(s, "complete", reason, s.share, s.share, results, ro, srm_figures),
                       state_update={"status": COMPLETED})
    nxt = s.plan.steps[s.step + 1]
    reason = f"every guard held ({held}): {fmt.pct(s.share, 0)} → {fmt.pct(nxt, 0)}"
    try:
        _move_to(bench, s.name, s.label, s.baseline, s.candidate, nxt, s.tagged(reason, s.step + 1), s.step_move_id)
    except LabelMoved:
        return Decision(s, "hold", "another process moved the label meanwhile; step again", s.share, guards=results, readout=ro)
    moved = bench.prompts.label_state(s.name, s.label).move_id
    decision = _record(bench, Decision(s, "advance", reason, s.share, nxt, results, ro, srm_figures), state_update={
        "step": s.step + 1, "step_move_id": moved, "moves_json": dumps([*s.moves, moved]), "step_started_at": utc_now()})
    return decision


def _grouped(results: Sequence[GuardResult]) -> str:
    """Guards' reasons, those that wait for the same thing named together."""
    by_why: dict[str, list[str]] = {}
    for r in results:
        by_why.setdefault(r.why, []).append(r.guard.metric)
    return "; ".join(f"{', '.join(metrics)}: {why}" for why, metrics in by_why.items())


def rollback(bench: Workbench, s: State, reason: str) -> Decision:
    """Switch the label back to the baseline now (a person's decision)."""
    why = f"rolled back to v{s.baseline} by hand: {reason}"
    bench.prompts.rollback(s.name, s.label, to=s.baseline, reason=s.tagged(why))
    return _record(bench, Decision(s, "rollback", why, s.share, 0.0), state_update={"status": ROLLED_BACK})


def stop(bench: Workbench, s: State, reason: str) -> Decision:
    """End the rollout where it stands; the label keeps its current split."""
    return _record(bench, Decision(s, "stop", f"stopped by hand: {reason}", s.share), state_update={"status": STOPPED})


def get_running(bench: Workbench, name: str, label: str) -> State:
    found = running(bench, name, label)
    if not found:
        raise RolloutNotFound(
            f"no rollout is running for {name}/{label}; start one with bench.rollout({name!r}, {label!r}).start(candidate)")
    return found[0]
