"""Deployment: online A/B from labels, gradual rollouts with automatic rollback, and the CI gate.

``bench.rollout("support", "production")`` is a `Rollout`: the handle of one
label for serving (``pick``, ``complete``), reading (``readout``) and ramping
(``start``, ``blue_green``, ``step``, ``rollback``, ``stop``). The parts:

- `readout`: the online readout of a split period, as a verdict card with the
  sample-ratio check on top;
- `ramp`: plans, guards, steps and decisions (tables ``rollouts`` and
  ``rollout_decisions``);
- `gate`: ``workbench gate``, an eval that exits non-zero when a candidate
  prompt or model is worse than the baseline beyond a margin;
- `_stats`: the statistics of unpaired, unit-clustered comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _format as fmt
from .. import _html
from ..errors import RolloutNotFound
from . import ramp
from .ramp import Decision, Guard, Plan
from .readout import OnlineReadout

if TYPE_CHECKING:
    import polars as pl

    from ..bench import Workbench
    from ..prompts import PromptVersion
    from ..tracing import CallResult

__all__ = ["Decision", "Guard", "OnlineReadout", "Plan", "Rollout"]


class Rollout:
    """One label of one prompt: serve it, read it out, ramp a new version through it.

    Args:
        bench: The workbench.
        name: The prompt's name.
        label: The label that serves traffic (``production``).
    """

    def __init__(self, bench: Workbench, name: str, label: str = "production") -> None:
        self.bench = bench
        self.name = name
        self.label = label

    # -- serving ---------------------------------------------------------------------------------

    def pick(self, key: str, *, expose: bool = True) -> PromptVersion:
        """The version ``key`` (a user or session id) is served; records the exposure."""
        return self.bench.prompts.pick(self.name, self.label, key=key, expose=expose)

    def complete(self, key: str, variables: Mapping[str, Any] | None = None, **kwargs: Any) -> CallResult:
        """Serve ``key`` its version and call the model, traced with the label and the key as user id."""
        return self.bench.complete(self.pick(key), variables=dict(variables or {}), user_id=key, **kwargs)

    async def acomplete(self, key: str, variables: Mapping[str, Any] | None = None, **kwargs: Any) -> CallResult:
        """Async ``complete``."""
        return await self.bench.acomplete(self.pick(key), variables=dict(variables or {}), user_id=key, **kwargs)

    # -- reading ---------------------------------------------------------------------------------

    def readout(
        self,
        *,
        baseline: int | None = None,
        move_id: str | None = None,
        confidence: float = 0.95,
        target_effect: float | Mapping[str, float] | None = None,
    ) -> OnlineReadout:
        """Compare the versions served in the label's current split period (see `readout.readout`).

        A label that serves one version alone is compared with the period before
        (before/after, and the card says it is not randomised).
        """
        from .readout import readout

        current = self.current()
        if current is not None and baseline is None and move_id is None:
            # A running rollout knows its baseline, and where its calls were before a 100% step.
            return readout(self.bench, self.name, self.label, baseline=current.baseline, move_id=current.step_move_id,
                           baseline_moves=[m for m in [current.start_move_id, *current.moves[:-1]] if m],
                           confidence=confidence, target_effect=target_effect)
        return readout(self.bench, self.name, self.label, baseline=baseline, move_id=move_id,
                       confidence=confidence, target_effect=target_effect)

    def history(self) -> pl.DataFrame:
        """The label's moves, newest first: when (UTC), action, the split it set (``v1 95% / v2 5%``), why."""
        import polars as pl

        from .readout import periods, shares_text

        known = periods(self.bench, self.name, self.label)
        rows = [{"set_at": r["set_at"], "action": r["action"], "version": r["version"],
                 "split": shares_text(known[r["id"]].split) if r["id"] in known else "", "reason": r["reason"]}
                for r in self.bench.prompts.label_history(self.name, self.label)]
        schema = {"set_at": pl.String, "action": pl.String, "version": pl.Int64, "split": pl.String, "reason": pl.String}
        frame = pl.DataFrame(rows, schema=schema)
        return frame.with_columns(pl.col("set_at").str.to_datetime(time_unit="us", time_zone="UTC"))

    # -- ramps -----------------------------------------------------------------------------------

    def start(
        self,
        candidate: int | PromptVersion,
        *,
        steps: Sequence[float] = ramp.DEFAULT_STEPS,
        guards: Mapping[str, float] | None = None,
        min_units: int = 100,
        min_scores: int = 30,
        confidence: float = 0.95,
    ) -> Decision:
        """Start ramping ``candidate`` up from the version the label serves now.

        Args:
            candidate: The new version (or its number).
            steps: Its share at each step: ``(0.05, 0.25, 0.5, 1.0)`` or percents.
            guards: ``{metric: margin}``: ``error_rate`` (points, 0.01), ``cost``,
                ``latency_p50``, ``latency_p95`` (shares of the baseline, 0.10) and any
                sampled quality score by scorer name (its units). Default: errors
                +1 point, p95 latency and cost +10%.
            min_units: Units each version needs in a step before it is judged.
            min_scores: Scored calls each version needs before a quality guard is judged.
            confidence: Of the intervals decisions read.
        """
        number = candidate if isinstance(candidate, int) else candidate.version
        plan = Plan.make(steps, guards, min_units=min_units, min_scores=min_scores, confidence=confidence)
        return ramp.start(self.bench, self.name, self.label, number, plan)

    def blue_green(self, candidate: int | PromptVersion, **kwargs: Any) -> Decision:
        """Switch all traffic to ``candidate`` at once, guarded against the period before (one step, 100%)."""
        return self.start(candidate, steps=(1.0,), **kwargs)

    def step(self) -> Decision:
        """Judge the current step and act on it: advance, complete, roll back or hold."""
        return ramp.step(self.bench, ramp.get_running(self.bench, self.name, self.label))

    def rollback(self, reason: str = "by hand") -> Decision | PromptVersion:
        """Back to the baseline now: of the running rollout, else the label's last move undone."""
        current = self.current()
        if current is not None:
            return ramp.rollback(self.bench, current, reason)
        return self.bench.prompts.rollback(self.name, self.label, reason=reason)

    def stop(self, reason: str = "by hand") -> Decision:
        """End the running rollout where it stands (the label keeps its split)."""
        return ramp.stop(self.bench, ramp.get_running(self.bench, self.name, self.label), reason)

    def current(self) -> ramp.State | None:
        """The running rollout of this label, if any."""
        found = ramp.running(self.bench, self.name, self.label)
        return found[0] if found else None

    def decisions(self) -> pl.DataFrame:
        """Every decision of the label's newest rollout, oldest first."""
        state = ramp.latest(self.bench, self.name, self.label)
        if state is None:
            raise RolloutNotFound(f"{self.name}/{self.label} has had no rollout; start one with .start(candidate)")
        return ramp.decisions_df(self.bench, state.id)

    # -- display ---------------------------------------------------------------------------------

    def describe(self) -> str:
        """Where the label stands, in one or two lines."""
        from .readout import shares_text

        state = self.bench.prompts.label_state(self.name, self.label)
        line = f"{self.name}/{self.label}: {shares_text(state.split)}"
        latest = ramp.latest(self.bench, self.name, self.label)
        if latest is not None:
            steps = " → ".join(f"[{fmt.pct(s, 0)}]" if i == latest.step and latest.status == ramp.RUNNING else fmt.pct(s, 0)
                               for i, s in enumerate(latest.plan.steps))
            line += f"\nrollout of v{latest.candidate} over v{latest.baseline}: {latest.status.replace('_', ' ')}, {steps}"
        return line

    def __repr__(self) -> str:
        return f"<Rollout {self.name}/{self.label}>"

    def _repr_html_(self) -> str:
        lines = self.describe().split("\n")
        return _html.root("<br>".join(_html.esc(x) for x in lines), cls="wb-rollout")
