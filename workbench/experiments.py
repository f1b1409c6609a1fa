"""A/B experiments: variants of prompts and models over a dataset, with repeats.

The stored config pins prompt content hashes, models, params, the dataset hash,
scorers with their arguments, repeats and seed, so a run can be rebuilt and
resumed. A run is async with a concurrency limit, stays within its budget
(in-flight calls included), records provider errors as error traces, and after
a crash makes only the calls that are missing. Only this module writes the
``experiments`` and ``scores`` tables.
"""

from __future__ import annotations

import asyncio
import gc
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _format as fmt
from . import _html, _loop, traces
from ._canonical import canonical_json, content_hash, loads
from ._ids import new_id, utc_now
from .datasets import Dataset, DatasetItem
from .errors import ConfigError, ExperimentError, ExperimentNotFound
from .prompts import PromptVersion
from .providers.base import Usage
from .scorers import Example, Score, Scorer, build

if TYPE_CHECKING:
    import polars as pl

    from .bench import Workbench
    from .readouts import Comparison
    from .tracing import CallResult

RESERVE_CHARS_PER_TOKEN = 2
"""Budget reservations assume 2 characters a token: more tokens than any real tokenizer gives for prose."""
TYPICAL_OUTPUT_TOKENS = 120
"""Expected answer length before any call of a variant has finished (a short support answer)."""
MIN_CALLS_FOR_ERROR_RATE = 20
"""``max_error_rate`` is judged only after this many calls."""
COMMIT_WINDOW_S = 0.005
"""Longest a finished call's rows wait to share a commit with others: what a SIGKILL
can lose, far inside the store's 200 ms promise."""
COMMIT_GROUP_ROWS = 512
"""Rows that are committed at once without waiting for the window."""

SCORE_SQL = (
    "INSERT INTO scores (id, trace_id, experiment_id, variant, item_id, repeat, scorer, value, passed, "
    "rationale, judge_trace_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (trace_id, scorer) DO UPDATE SET value = excluded.value, passed = excluded.passed, "
    "rationale = excluded.rationale, judge_trace_id = excluded.judge_trace_id, created_at = excluded.created_at"
)


@dataclass(frozen=True)
class Variant:
    """A prompt version, optionally on another model or with other params."""

    prompt: PromptVersion
    """The prompt version to render."""
    model: str | None = None
    """Model override (None: the prompt's own model)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Param overrides (temperature, max_tokens, ...)."""
    gateway: Any = None
    """A ``wb.gateway.Gateway`` policy the variant's calls go through (None: the workbench's provider)."""

    @property
    def effective_model(self) -> str:
        return self.model or self.prompt.model

    @property
    def effective_params(self) -> dict[str, Any]:
        return {**self.prompt.params, **self.params}

    def spec(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt.name,
            "version": self.prompt.version,
            "content_hash": self.prompt.content_hash,
            "model": self.effective_model,
            "params": dict(self.params),
            **({"gateway": self.gateway.spec()} if self.gateway is not None else {}),
        }

    def label(self) -> str:
        text = self.prompt.ref
        if self.model and self.model != self.prompt.model:
            text += f" on {self.model}"
        if self.params:
            text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(self.params.items())) + ")"
        if self.gateway is not None:
            text += f" via {self.gateway.policy}"
        return text


def variant(prompt: PromptVersion, *, model: str | None = None, gateway: Any = None, **params: Any) -> Variant:
    """``wb.variant(v1, model="claude-sonnet-4-5", temperature=0)``; ``gateway=routed`` sends
    the variant's calls through a ``wb.gateway.Gateway`` (its spec is pinned in the config)."""
    if not isinstance(prompt, PromptVersion):
        raise ConfigError(f"a variant needs a PromptVersion from bench.prompts, got {type(prompt).__name__}")
    if gateway is not None and not (hasattr(gateway, "spec") and hasattr(gateway, "complete")):
        raise ConfigError(f"variant gateway= takes a wb.gateway.Gateway, got {type(gateway).__name__}")
    return Variant(prompt, model, dict(params), gateway)


def _as_variant(name: str, value: Any) -> Variant:
    if isinstance(value, Variant):
        return value
    if isinstance(value, PromptVersion):
        return Variant(value)
    raise ConfigError(
        f"variant {name!r} must be a PromptVersion or wb.variant(prompt, model=...), got {type(value).__name__}"
    )


@dataclass(frozen=True)
class Estimate:
    """What a run will cost before it starts."""

    calls: int
    """Calls still to make (cells not yet completed)."""
    cost_low: float | None
    cost_expected: float | None
    cost_high: float | None
    """Worst case: every call writes ``max_tokens``."""
    per_variant: dict[str, dict[str, Any]]
    basis: str
    """How the numbers were made."""

    def __repr__(self) -> str:
        if self.cost_expected is None:
            return f"<Estimate {self.calls} calls, cost unknown ({self.basis})>"
        return (
            f"<Estimate {self.calls} calls, {fmt.money(self.cost_expected)} expected "
            f"(range {fmt.money(self.cost_low)} to {fmt.money(self.cost_high)}); {self.basis}>"
        )

    def _repr_html_(self) -> str:
        rows = [
            (v, d["calls"], d["input_tokens_per_call"], _money(d["cost_low"]), _money(d["cost_expected"]), _money(d["cost_high"]))
            for v, d in self.per_variant.items()
        ]
        return _html.root(
            f"<b>{fmt.count(self.calls)} calls</b>, expected {_html.esc(_money(self.cost_expected))} "
            f"(range {_html.esc(_money(self.cost_low))} to {_html.esc(_money(self.cost_high))})"
            f"{_html.table(['variant', 'calls', 'input tokens/call', 'low', 'expected', 'worst case'], rows)}"
            f"<small>{_html.esc(self.basis)}</small>"
        )


def _money(x: float | None) -> str:
    return "unknown (no price for a model)" if fmt.missing(x) else fmt.money(x)


@dataclass
class RunOutcome:
    """What one ``run()`` did."""

    status: str
    calls: int = 0
    errors: int = 0
    spent_usd: float = 0.0
    remaining: int = 0
    message: str = ""


class Experiment:
    """An experiment: create with ``bench.experiment(...)``, then ``run()``."""

    def __init__(
        self,
        bench: Workbench,
        *,
        id: str,
        name: str,
        dataset: Dataset,
        variants: dict[str, Variant],
        scorers: list[Scorer],
        repeats: int,
        seed: int,
        concurrency: int,
        budget_usd: float | None,
        max_error_rate: float | None,
        config: dict[str, Any],
    ) -> None:
        self.bench = bench
        self.id = id
        self.name = name
        self.dataset = dataset
        self.variants = variants
        self.scorers = scorers
        self.repeats = repeats
        self.seed = seed
        self.concurrency = concurrency
        self.budget_usd = budget_usd
        self.max_error_rate = max_error_rate
        self.config = config
        self.last_run: RunOutcome | None = None
        self._on_call: list[Any] = []
        self._judge_prompts: dict[str, PromptVersion] = {}

    # -- state -------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        rows = self.bench.store.query("SELECT status FROM experiments WHERE id = ?", (self.id,))
        return rows[0]["status"] if rows else "unknown"

    def _set_status(self, status: str, message: str | None = None) -> None:
        self.bench.store.execute(
            "UPDATE experiments SET status = ?, status_message = ?, updated_at = ? WHERE id = ?",
            (status, message, utc_now(), self.id),
        )

    def cells(self) -> list[tuple[str, str, int]]:
        """Every (variant, item id, repeat), in run order: repeat, then item, then variant."""
        return [
            (v, item.item_id, r)
            for r in range(self.repeats)
            for item in self.dataset.items
            for v in self.variants
        ]

    def completed_cells(self) -> dict[tuple[str, str, int], str]:
        """(variant, item, repeat) -> trace id of its successful call."""
        self.bench.store.sync()
        done: dict[tuple[str, str, int], str] = {}
        for r in traces.experiment_cells(self.bench.store, self.id):
            done.setdefault((r["variant"], r["item_id"], r["repeat"]), r["id"])
        return done

    def _held_in_batches(self) -> int:
        """Cells waiting in batches whose results have not been read."""
        from . import batches

        return len(batches.held_cells(self.bench.store, self.id))

    def batches(self) -> pl.DataFrame:
        """This experiment's batches (``run(batch=True)``), oldest first: the provider's id,
        state, requests pending, succeeded, errored, canceled and expired, and times."""
        from . import batches

        return batches.batches_frame(self.bench.store, self.id)

    def cancel_batches(self, *, wait: bool = True, poll_s: float | None = None) -> int:
        """Stop every batch of this experiment still processing; returns how many were asked.

        Requests the provider already processed are done and billed: with ``wait``
        (the default) their results are read into traces once the batches end.
        The canceled cells are missing again, for ``run()`` or ``run(batch=True)``.
        """
        from . import batches

        return _loop.run_sync(batches.cancel(self, wait=wait, poll_s=poll_s))

    def forget_batch(self, batch_id: str) -> int:
        """Give up on one batch the provider cannot show any more (another workspace's key,
        results deleted): its cells are missing again, for the next run, which may pay for them
        a second time. Returns how many requests it held."""
        from . import batches

        return batches.forget(self, batch_id)

    def spent_usd(self) -> float:
        """Dollars spent by every call of this experiment so far (judges included)."""
        self.bench.store.sync()
        return traces.experiment_spent(self.bench.store, self.id)

    # -- requests and costs ------------------------------------------------------------------

    def _request(self, vname: str, item: DatasetItem, repeat: int) -> Any:
        v = self.variants[vname]
        req = v.prompt.to_request(item.inputs, allow_extra=True, model=v.model, **dict(v.params))
        # The simulated provider samples by this; real providers ignore metadata.
        req.metadata["sample"] = f"{self.seed}:{repeat}"
        return req

    def _reserve(self, request: Any, gateway: Any = None, *, batch: bool = False) -> float | None:
        """Worst-case dollars of one call: generous input count and max_tokens of output
        (``batch``: the call at the batch rate; judges still call live)."""
        chars = len(request.prompt_text())
        usage = Usage(input_tokens=math.ceil(chars / RESERVE_CHARS_PER_TOKEN) + 16, output_tokens=request.max_tokens)
        main = self.bench.pricing.estimate(request.model, usage, batch=batch)
        if gateway is not None:
            # A routed or fallen-back call may land on a dearer model: reserve for the dearest.
            main = gateway.worst_cost(request, usage)
        if main is None:
            return None
        for s in self.scorers:
            judge_model = getattr(s, "model", None)
            if judge_model:
                judge_usage = Usage(
                    input_tokens=math.ceil((chars + request.max_tokens * 4 + 2_000) / RESERVE_CHARS_PER_TOKEN),
                    output_tokens=getattr(s, "max_tokens", 300),
                )
                cost = self.bench.pricing.estimate(judge_model, judge_usage)
                if cost is None:
                    return None
                main += cost
        return main

    def estimate(self, *, batch: bool = False) -> Estimate:
        """Calls left to make and their cost: low, expected and worst case.

        Input tokens come from the rendered prompts (4 characters a token);
        output tokens from this experiment's finished calls of the same variant
        when there are some, else 20 to 120 tokens; the worst case is every
        call writing ``max_tokens``. LLM-judge calls are counted for every cell.
        ``batch=True`` prices the calls as ``run(batch=True)`` makes them: at the
        batch rate (judges still call live). Calls waiting in batches are not counted.
        """
        from . import batches

        done = self.completed_cells()
        held = batches.held_cells(self.bench.store, self.id)
        todo = [c for c in self.cells() if c not in done and c not in held]
        observed = self._observed_output_tokens()
        per: dict[str, dict[str, Any]] = {}
        totals = [0.0, 0.0, 0.0]
        unknown = False
        items = {i.item_id: i for i in self.dataset.items}
        judges = [s for s in self.scorers if getattr(s, "model", None)]
        chars_per_token, counted = self._chars_per_token(todo, items)
        for vname in self.variants:
            cells = [c for c in todo if c[0] == vname]
            lo = ex = hi = 0.0
            in_tokens = 0
            for _, item_id, rep in cells:
                req = self._request(vname, items[item_id], rep)
                tokens = math.ceil(len(req.prompt_text()) / chars_per_token) + 8
                in_tokens += tokens
                o_lo, o_ex = observed.get(vname, (20, min(TYPICAL_OUTPUT_TOKENS, req.max_tokens)))
                # No call writes more than max_tokens: keep low <= expected <= worst case.
                o_lo, o_ex = min(o_lo, req.max_tokens), min(o_ex, req.max_tokens)
                prices = [
                    self.bench.pricing.estimate(req.model, Usage(input_tokens=int(tokens * f), output_tokens=int(o)), batch=batch)
                    for f, o in ((0.85, o_lo), (1.0, o_ex), (1.15, req.max_tokens))
                ]
                for judge in judges:
                    # The judge reads the prompt's inputs, the answer and the reference, plus its rubric.
                    j_in = tokens + int(o_ex) + math.ceil(len(getattr(judge, "rubric", "")) / 4) + 80
                    j_prices = [
                        self.bench.pricing.estimate(judge.model, Usage(input_tokens=int(j_in * f), output_tokens=int(o)))
                        for f, o in ((0.85, 20), (1.0, 60), (1.15 + req.max_tokens / max(j_in, 1), getattr(judge, "max_tokens", 300)))
                    ]
                    prices = [None if p is None or q is None else p + q for p, q in zip(prices, j_prices)]
                if any(p is None for p in prices):
                    unknown = True
                    continue
                lo += prices[0]  # type: ignore[operator]
                ex += prices[1]  # type: ignore[operator]
                hi += prices[2]  # type: ignore[operator]
            per[vname] = {
                "calls": len(cells),
                "input_tokens_per_call": round(in_tokens / len(cells)) if cells else 0,
                "cost_low": None if unknown else lo,
                "cost_expected": None if unknown else ex,
                "cost_high": None if unknown else hi,
            }
            totals = [totals[0] + lo, totals[1] + ex, totals[2] + hi]
        basis = (
            f"input from rendered prompts at {chars_per_token:.2f} chars/token "
            + (f"(calibrated on {counted} prompts counted by the provider)" if counted else "(a rule of thumb)")
            + "; output "
        ) + (
            "from finished calls" if observed else f"assumed 20 to {TYPICAL_OUTPUT_TOKENS} tokens"
        ) + "; worst case at max_tokens" + ("; judge calls included (20 to 60 output tokens expected)" if judges else "") + (
            "; calls at the batch rate" + (" (judges live)" if judges else "") if batch else ""
        ) + (f"; {fmt.plural(len(held), 'call')} waiting in batches not counted" if held else "")
        if unknown:
            return Estimate(len(todo), None, None, None, per, basis + "; some model has no known price")
        return Estimate(len(todo), totals[0], totals[1], totals[2], per, basis)

    def _chars_per_token(self, todo: list[tuple[str, str, int]], items: dict[str, DatasetItem], sample: int = 5) -> tuple[float, int]:
        """Characters per input token: counted by the provider on a few prompts when it can count."""
        count = getattr(self.bench.provider, "count_tokens", None)
        if count is None or getattr(self.bench.provider, "simulated", False) or not todo:
            return 4.0, 0
        chars = tokens = 0
        picked = 0
        for vname in self.variants:
            for cell in [c for c in todo if c[0] == vname][:sample]:
                req = self._request(vname, items[cell[1]], cell[2])
                try:
                    tokens += _loop.run_sync(count(req))
                except Exception:  # noqa: BLE001 - an estimate falls back to the rule of thumb
                    return 4.0, 0
                chars += len(req.prompt_text())
                picked += 1
        return (chars / tokens if tokens else 4.0), picked

    def _observed_output_tokens(self) -> dict[str, tuple[float, float]]:
        return traces.experiment_output_tokens(self.bench.store, self.id)

    # -- running -----------------------------------------------------------------------------

    def run(
        self, *, progress: bool = True, retry_errors: bool = True, batch: bool = False, wait: bool = True,
        poll_s: float | None = None, batch_size: int | None = None,
    ) -> Experiment:
        """Make every missing call, score it, and store it. Returns self.

        Works from a script and inside Jupyter. Interrupting (Ctrl-C, a crash)
        loses no finished call; ``run()`` again makes only the missing ones.

        ``batch=True`` sends the missing calls through the provider's batch engine
        instead (Anthropic's Message Batches: half price, results within 24 hours;
        the simulator has one too): submitted in batches of ``batch_size`` requests
        (10,000 by default), looked at every ``poll_s`` seconds, read into traces
        priced at the batch rate, then scored (LLM judges call live). The batches
        are in the file: after Ctrl-C, a kernel restart or a crash, ``run(batch=True)``
        in any process collects them and submits only what no batch holds, so no
        call is paid twice. ``wait=False`` returns once submitted. A budget is kept at
        submission (worst cases at the batch rate); ``max_error_rate`` cannot stop a
        batch. See ``exp.batches()`` and ``exp.cancel_batches()``.
        """
        _loop.run_sync(self.arun(progress=progress, retry_errors=retry_errors, batch=batch, wait=wait,
                                 poll_s=poll_s, batch_size=batch_size))
        return self

    async def arun(
        self, *, progress: bool = True, retry_errors: bool = True, batch: bool = False, wait: bool = True,
        poll_s: float | None = None, batch_size: int | None = None,
    ) -> Experiment:
        """Async ``run``, for code that already runs in an event loop."""
        if batch:
            await _loop.run_async(self._run_batch(progress, retry_errors, wait, poll_s, batch_size))
            return self
        held = self._held_in_batches()
        if held:
            # Before the run starts, so the experiment keeps its status (batch_pending).
            raise ExperimentError(
                f"experiment {self.name!r} has {fmt.plural(held, 'call')} waiting in batches that have not been "
                "collected, so a live run would pay for them twice; run(batch=True) collects them "
                "(exp.cancel_batches() stops them first)"
            )
        await _loop.run_async(self._run(progress, retry_errors))
        return self

    def _check_provider(self) -> None:
        planned = self.config.get("provider")
        if planned is not None and planned != self.bench.provider.name:
            raise ExperimentError(
                f"experiment {self.name!r} runs on the {planned} provider, but this workbench uses "
                f"{self.bench.provider.name}; open it with wb.open(..., provider={planned!r}) to continue, "
                "or start a new experiment (one experiment never mixes providers)"
            )

    def _check_prices(self) -> None:
        """With a budget, every model must have a price, or the budget cannot be kept."""
        needs_price = [(v.effective_model, f"variant {vname!r}") for vname, v in self.variants.items()]
        needs_price += [(s.model, f"scorer {s.name!r}") for s in self.scorers if getattr(s, "model", None)]
        for model, who in needs_price:
            if self.bench.pricing.estimate(model, Usage(1, 1)) is None:
                raise ConfigError(
                    f"budget_usd is set but no price is known for model {model!r} ({who}), so the budget "
                    f"cannot be kept; set one with bench.pricing.set_price({model!r}, input=..., output=...)"
                )

    async def _run_batch(self, progress: bool, retry_errors: bool, wait: bool, poll_s: float | None,
                         batch_size: int | None) -> None:
        from . import batches

        self._check_provider()
        outcome = RunOutcome(status="running", spent_usd=await asyncio.to_thread(self.spent_usd))
        self.last_run = outcome
        await batches.BatchRun(
            self, outcome, wait=wait, poll_s=poll_s, batch_size=batches.BATCH_SIZE if batch_size is None else batch_size,
            progress=progress, retry_errors=retry_errors,
        ).run()

    async def _run(self, progress: bool, retry_errors: bool) -> None:
        ended: list[str] = []  # the body appends once it has recorded how the run ended
        try:
            await self._run_calls(progress, retry_errors, ended)
        except asyncio.CancelledError:
            # Ctrl-C (run_sync cancels us and waits for this) or a cancelled task.
            if not ended:
                await self._record_stop("interrupted", "run cancelled; run() again to finish")
            raise
        except BaseException as exc:
            if not ended:
                await self._record_stop("failed", f"{type(exc).__name__}: {exc}; run() again to retry the missing calls")
            raise

    async def _record_stop(self, status: str, message: str) -> None:
        """Say why the run stopped, even when the file is what failed."""
        if self.last_run is not None:
            self.last_run.status = status
        try:
            await self.bench.store.flush_async()
            self._set_status(status, message)
        except Exception as exc:  # noqa: BLE001 - the reason the run stopped must reach the user, not this one
            warnings.warn(f"experiment {self.name!r} stopped ({status}) but its status could not be recorded: {exc}",
                          RuntimeWarning, stacklevel=1)

    async def _run_calls(self, progress: bool, retry_errors: bool, ended: list[str]) -> None:
        bench = self.bench
        store = bench.store
        self._check_provider()
        done = await asyncio.to_thread(self.completed_cells)
        todo = [c for c in self.cells() if c not in done]
        if not retry_errors:
            failed = {(r["variant"], r["item_id"], r["repeat"]) for r in traces.experiment_cells(store, self.id, "error")}
            todo = [c for c in todo if c not in failed]
        spent = await asyncio.to_thread(self.spent_usd)
        items = {i.item_id: i for i in self.dataset.items}
        outcome = RunOutcome(status="running", spent_usd=spent)
        self.last_run = outcome
        # Finished calls whose scores are missing (a crash between call and score).
        await self._score_missing(done, items)
        if not todo:
            planned = len(self.cells())
            failed = planned - len(done)
            outcome.status = "completed" if not failed else "completed_with_errors"
            outcome.message = f"nothing to do: {fmt.count(len(done))} of {fmt.plural(planned, 'call')} recorded" + (
                f"; {fmt.plural(failed, 'failed call')} not retried (run(retry_errors=True) retries them)" if failed else ""
            )
            self._set_status(outcome.status, None if not failed else outcome.message)
            ended.append(outcome.status)
            print(outcome.message)
            return
        if self.budget_usd is not None:
            self._check_prices()
        self._set_status("running", None)
        judged = any(getattr(s, "model", None) for s in self.scorers)
        commit = _GroupCommit(store)
        reserved = 0.0
        in_flight = 0
        settled = asyncio.Condition()
        stop: list[str] = []
        bar = _progress(len(todo), self.name, progress)

        async def one(cell: tuple[str, str, int]) -> asyncio.Future[None] | None:
            nonlocal reserved, in_flight
            vname, item_id, rep = cell
            request = self._request(vname, items[item_id], rep)
            reserve = 0.0
            if self.budget_usd is not None:
                reserve = self._reserve(request, self.variants[vname].gateway)
                assert reserve is not None  # every model was checked to have a price above
                # Calls in flight usually cost far less than reserved: when only their
                # reservations stand in the way, wait for them rather than stop early.
                async with settled:
                    await settled.wait_for(
                        lambda: bool(stop) or in_flight == 0
                        or outcome.spent_usd + reserved + reserve <= self.budget_usd  # type: ignore[operator]
                    )
                if stop:
                    return
                if outcome.spent_usd + reserved + reserve > self.budget_usd:
                    stop.append("stopped_budget")
                    return
            reserved += reserve
            in_flight += 1
            rows: list[tuple[str, Any]] = []
            emit = _collector(rows)
            try:
                result = await bench.tracer.call(
                    self.variants[vname].gateway or bench.provider, request, emit=emit,
                    context={"experiment_id": self.id, "variant": vname, "item_id": item_id, "repeat": rep,
                             "metadata": {"dataset": self.dataset.ref}},
                )
                outcome.calls += 1
                outcome.spent_usd += result.cost_usd or 0.0
                if judged:
                    # A judge is another slow, paid call: put this one on disk first.
                    await commit(rows)
                    rows = []
                    emit = _collector(rows)
                if result.status == "ok":
                    # Await first: other calls add to spent_usd meanwhile.
                    judge_cost = await self._score(result.trace_id, result.text, vname, items[item_id], rep, emit)
                    outcome.spent_usd += judge_cost
                else:
                    outcome.errors += 1
                # Committed with every call that finishes in this turn of the loop. Not
                # awaited here: waiting would hold each worker until the whole group is
                # on disk, so workers would start their next calls in lock-step waves.
                on_disk = commit.queue(rows)
            finally:
                reserved -= reserve
                in_flight -= 1
                if self.budget_usd is not None:
                    async with settled:
                        settled.notify_all()
            if self.max_error_rate is not None and outcome.calls >= MIN_CALLS_FOR_ERROR_RATE \
                    and outcome.errors / outcome.calls > self.max_error_rate and not stop:
                stop.append("stopped_errors")
            on_disk.add_done_callback(recorded)
            return on_disk

        def recorded(on_disk: asyncio.Future[None]) -> None:
            """Progress and live views hear of a call once its rows are on disk."""
            if on_disk.cancelled() or on_disk.exception() is not None:
                return  # the worker that queued the rows raises it
            if bar is not None:
                bar.update(1)
                bar.set_postfix(errors=outcome.errors, spent=f"${outcome.spent_usd:.4f}", refresh=False)
            self._tell(outcome)

        pending = iter(todo)

        async def worker() -> None:
            # `concurrency` workers, each taking the next cell when its call is done: the
            # same order and limit as a task per cell behind a semaphore, at half the
            # event-loop work per call (no task, no semaphore wake-up). A worker goes on
            # to its next call while the last one's rows are being committed, and
            # stops with the file's error if they were refused.
            previous: asyncio.Future[None] | None = None
            for cell in pending:
                if stop:
                    break
                on_disk = await one(cell)
                if previous is not None:
                    await previous
                previous = on_disk
            if previous is not None:
                await previous

        _hold_gc()
        tasks = [asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, len(todo)))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # Cancellation (Ctrl-C) or an unexpected error in one call (the file refused a
            # commit): stop every other call before it is paid for and keep what finished;
            # _run records why it stopped.
            stop.append("interrupted")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            commit.flush()
            _release_gc()
            if bar is not None:
                bar.close()
        finished = await asyncio.to_thread(self.completed_cells)
        remaining = sum(1 for c in self.cells() if c not in finished)
        outcome.remaining = remaining
        if stop and stop[0] == "stopped_budget":
            outcome.status = "stopped_budget"
            outcome.message = (
                f"experiment {self.name!r} stopped before exceeding its budget of {fmt.money(self.budget_usd)}: "
                f"spent {fmt.money(outcome.spent_usd)}, {fmt.plural(remaining, 'call')} not made. "
                "Raise budget_usd and run() again to finish."
            )
        elif stop:
            outcome.status = "stopped_errors"
            outcome.message = (
                f"experiment {self.name!r} stopped: error rate {outcome.errors}/{outcome.calls} exceeded "
                f"max_error_rate={self.max_error_rate}; {fmt.plural(remaining, 'call')} not made."
            )
        elif remaining:
            outcome.status = "completed_with_errors"
            outcome.message = f"experiment {self.name!r}: {fmt.plural(remaining, 'call')} failed after retries; run() again to retry them."
        else:
            outcome.status = "completed"
        self._set_status(outcome.status, outcome.message or None)
        ended.append(outcome.status)
        if outcome.message:
            print(outcome.message)

    async def _score(self, trace_id: str, output: str, vname: str, item: DatasetItem, rep: int, emit: Any = None) -> float:
        """Score one output and emit its rows (judge traces too); returns dollars spent by judges."""
        emit = emit or self.bench.store.writer.put
        example = Example(output=output, expected=item.expected, inputs=item.inputs, metadata=item.metadata, item_id=item.item_id)
        judge = _Judge(self, item.item_id, rep, trace_id, vname, emit)
        now = utc_now()
        for s in self.scorers:
            try:
                score = await s.score(example, judge)
            except Exception as exc:  # noqa: BLE001 - a broken scorer must not stop the run
                score = Score(None, None, f"{type(exc).__name__}: {exc}")
            emit(
                SCORE_SQL,
                (new_id(), trace_id, self.id, vname, item.item_id, rep, s.name,
                 score.value, None if score.passed is None else int(score.passed), score.rationale,
                 score.judge_trace_id, now),
            )
        return judge.spent

    async def _score_missing(self, done: dict[tuple[str, str, int], str], items: dict[str, DatasetItem]) -> None:
        if not done or not self.scorers:
            return
        have = {
            (r["trace_id"], r["scorer"])
            for r in self.bench.store.query("SELECT trace_id, scorer FROM scores WHERE experiment_id = ?", (self.id,))
        }
        for (vname, item_id, rep), trace_id in done.items():
            if all((trace_id, s.name) in have for s in self.scorers):
                continue
            await self._score(trace_id, traces.output_of(self.bench.store, trace_id) or "", vname, items[item_id], rep)
        await self.bench.store.flush_async()

    def simulated(self) -> bool:
        """Whether any call of this experiment was answered by the simulated provider."""
        self.bench.store.sync()
        return bool(traces.experiment_totals(self.bench.store).get(self.id, {}).get("simulated"))

    def on_call(self, hook: Any) -> None:
        """Call ``hook(experiment, outcome)`` after every finished call (live views use it)."""
        self._on_call.append(hook)

    def _tell(self, outcome: RunOutcome) -> None:
        """Hand the run's progress to every ``on_call`` hook."""
        for hook in self._on_call:
            try:
                hook(self, outcome)
            except Exception as exc:  # noqa: BLE001 - a view must never stop the run
                warnings.warn(f"on_call hook {hook!r} failed: {exc}", RuntimeWarning, stacklevel=1)

    # -- readouts (in readouts.py) -----------------------------------------------------------

    def traces_df(self) -> pl.DataFrame:
        """This experiment's model calls (judges excluded)."""
        from . import readouts

        return readouts.traces_df(self)

    def scores_df(self) -> pl.DataFrame:
        from . import readouts

        return readouts.scores_df(self)

    def item_scores(self) -> pl.DataFrame:
        """Per item, variant and scorer: the mean over repeats (long frame)."""
        from . import readouts

        return readouts.item_scores(self)

    def quality(self, confidence: float = 0.95) -> pl.DataFrame:
        """Per variant and scorer: mean of item means with a (clustered) CI, and pass rate with a Wilson CI."""
        from . import readouts

        return readouts.quality(self, confidence)

    def summary(self, confidence: float = 0.95, *, wide: bool = False) -> pl.DataFrame:
        """One row per variant: items, each scorer's mean and CI, error rate, cost per item, latency p50/p95.

        A narrow frame that displays as a readable table; ``wide=True`` gives every
        column (calls, errors, tokens, total cost, pass rates). See ``readouts.summary``.
        """
        from . import readouts

        return readouts.summary(self, confidence, wide=wide)

    def compare(
        self,
        a: str = "A",
        b: str = "B",
        *,
        confidence: float = 0.95,
        alpha: float = 0.05,
        target_effect: float | Mapping[str, float] | None = None,
    ) -> Comparison:
        """B against A on the same items, as a verdict card.

        Per scorer: the paired difference with its CI, the Holm-adjusted p-value,
        n and the minimum detectable effect (MDE, 80% power), and a badge: ``B
        better`` or ``B worse`` when the difference is significant; otherwise
        ``no detectable difference`` when the MDE is no larger than the effect
        that matters (so such an effect would most likely have shown), else ``not
        enough data`` with the items needed. Then cost per item and per 1,000
        calls, latency p50/p95 (bootstrap CIs), and human preference when rated.

        Args:
            a: The baseline variant.
            b: The challenger.
            confidence: Level of every interval.
            alpha: Significance level (after Holm's adjustment across scorers).
            target_effect: The smallest difference that matters, on the scorers'
                scale: one number, or ``{scorer: number}``. Default: 0.05 for a
                scorer whose values lie within 0..1 (five points), else a fifth
                of the scores' standard deviation.
        """
        from . import readouts

        return readouts.compare(self, a, b, confidence=confidence, alpha=alpha, target_effect=target_effect)

    def items(self, a: str = "A", b: str = "B", scorer: str | None = None) -> pl.DataFrame:
        """Per item: inputs, reference, both outputs (first repeat) and scores; regressions first."""
        from . import readouts

        return readouts.items(self, a, b, scorer)

    def chart(self, kind: str = "quality", **kwargs: Any) -> Any:
        """An Altair chart: quality, latency, cost, tokens, paired, cost_quality."""
        from . import readouts

        return readouts.chart(self, kind, **kwargs)

    def cost_quality_points(self, scorer: str | None = None) -> pl.DataFrame:
        from . import readouts

        return readouts.cost_quality_points(self, scorer)

    def __repr__(self) -> str:
        return f"<Experiment {self.name!r} {len(self.dataset)} items × {len(self.variants)} variants × {self.repeats} repeats: {self.status}>"

    def _repr_html_(self) -> str:
        from . import readouts

        return readouts.experiment_html(self)




class _GroupCommit:
    """Commits rows on the event loop's thread, grouping calls that finish close together.

    Rows wait at most `COMMIT_WINDOW_S` (or until `COMMIT_GROUP_ROWS` are queued)
    and then share one transaction: a commit costs far more than the rows in it,
    so this is most of the runner's time in SQLite. A caller that must know its
    rows are on disk awaits the future `queue` returns.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.rows: list[tuple[str, Any]] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.scheduled: asyncio.Handle | None = None

    async def __call__(self, rows: list[tuple[str, Any]]) -> None:
        if rows:
            await self.queue(rows)

    def queue(self, rows: list[tuple[str, Any]]) -> asyncio.Future[None]:
        """Queue ``rows`` for the next commit; the future is done once they are on disk."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.rows.extend(rows)
        self.waiters.append(future)
        if len(self.rows) >= COMMIT_GROUP_ROWS:
            if self.scheduled is not None:
                self.scheduled.cancel()
            self.scheduled = loop.call_soon(self._commit)
        elif self.scheduled is None:
            self.scheduled = loop.call_later(COMMIT_WINDOW_S, self._commit)
        return future

    def flush(self) -> None:
        """Commit what is queued now (a run that ends or stops does not wait for the window)."""
        if self.scheduled is not None:
            self.scheduled.cancel()
            self._commit()

    def _commit(self) -> None:
        self.scheduled = None
        rows, waiters = self.rows, self.waiters
        self.rows, self.waiters = [], []
        if not rows:
            return
        try:
            self.store.write_now(rows)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
            return
        for w in waiters:
            if not w.done():
                w.set_result(None)


_gc_holds = 0
"""Runs in progress that hold the collector (`_hold_gc`)."""


def _hold_gc() -> None:
    """Leave every object that exists now out of garbage collection until `_release_gc`.

    A full collection walks every object in the process (a notebook's data too)
    and stalls each call in flight while it does; a run makes enough objects to
    set several off. Objects made during the run are still collected; the held
    ones are looked at again once the last run ends (``gc.freeze``/``unfreeze``).
    """
    global _gc_holds
    if _gc_holds == 0:
        gc.freeze()
    _gc_holds += 1


def _release_gc() -> None:
    global _gc_holds
    _gc_holds -= 1
    if _gc_holds == 0:
        gc.unfreeze()


def _collector(rows: list[tuple[str, Any]]) -> Any:
    def emit(sql: str, row: Any) -> None:
        rows.append((sql, row))

    return emit


def _progress(total: int, name: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, unit="call")


def _registered(
    bench: Workbench, cache: dict[str, PromptVersion], name: str, template: str, model: str, params: dict[str, Any]
) -> PromptVersion:
    """A judge's prompt, registered once per cache (not one transaction per scored output)."""
    key = content_hash({"name": name, "template": template, "model": model, "params": params})
    if key not in cache:
        cache[key] = bench.prompts.register(name, template, model, **params)
    return cache[key]


class _Judge:
    """What LLM-as-judge scorers see: prompt registration and traced calls."""

    def __init__(self, exp: Experiment, item_id: str, repeat: int, judged: str, variant: str, emit: Any = None) -> None:
        self.exp = exp
        self.emit = emit
        self.item_id = item_id
        self.repeat = repeat
        self.judged = judged
        self.variant = variant
        self.spent = 0.0

    def register_prompt(self, name: str, template: str, model: str, **params: Any) -> PromptVersion:
        # One registration per experiment and prompt, not one transaction per scored output.
        return _registered(self.exp.bench, self.exp._judge_prompts, name, template, model, params)

    async def complete(self, prompt: PromptVersion, **variables: Any) -> CallResult:
        request = prompt.to_request(variables)
        request.metadata["sample"] = f"{self.exp.seed}:{self.repeat}"
        result = await self.exp.bench.tracer.call(
            self.exp.bench.provider, request, emit=self.emit,
            context={"experiment_id": self.exp.id, "item_id": self.item_id, "repeat": self.repeat,
                     "tags": ["judge"], "metadata": {"judged_trace": self.judged, "judged_variant": self.variant}},
        )
        self.spent += result.cost_usd or 0.0
        return result


# -- scores outside experiments (production sampling) ------------------------------------------


def record_trace_scores(store: Any, rows: Sequence[tuple[str, str, float | None, bool | None, str | None]]) -> int:
    """Store scores of traced calls that belong to no experiment: (trace id, scorer, value, passed, rationale).

    A score already stored for the same trace and scorer is replaced. Returns the rows written.
    """
    now = utc_now()
    store.write_now([
        (SCORE_SQL, (new_id(), trace_id, None, None, None, None, scorer, value,
                     None if passed is None else int(passed), rationale, None, now))
        for trace_id, scorer, value, passed, rationale in rows
    ])
    return len(rows)


async def score_trace(
    bench: Workbench,
    trace_id: str,
    output: str,
    scorers: Sequence[Scorer],
    *,
    inputs: Mapping[str, Any] | None = None,
    expected: Any = None,
    metadata: Mapping[str, Any] | None = None,
    item_id: str | None = None,
    judge_prompts: dict[str, PromptVersion] | None = None,
) -> tuple[list[Score], float]:
    """Score one traced call outside any experiment and store the scores against it.

    The scores go to the ``scores`` table with no experiment. An LLM judge
    calls its model through ``bench``'s provider, traced like any call but
    tagged ``judge`` with ``judged_trace`` in its metadata, so monitors and
    experiment readouts leave it out. Returns the scores and the judges'
    dollars. ``judge_prompts`` caches judge prompt registrations across calls.
    """
    example = Example(output=output, expected=expected, inputs=dict(inputs or {}), metadata=dict(metadata or {}), item_id=item_id)
    judge = _TraceJudge(bench, trace_id, {} if judge_prompts is None else judge_prompts)
    scores = []
    for s in scorers:
        try:
            score = await s.score(example, judge)
        except Exception as exc:  # noqa: BLE001 - a broken scorer must not stop the others
            score = Score(None, None, f"{type(exc).__name__}: {exc}")
        scores.append(score)
    now = utc_now()
    await asyncio.to_thread(bench.store.write_now, [
        (SCORE_SQL, (new_id(), trace_id, None, None, item_id, None, s.name, sc.value,
                     None if sc.passed is None else int(sc.passed), sc.rationale, sc.judge_trace_id, now))
        for s, sc in zip(scorers, scores)
    ])
    return scores, judge.spent


class _TraceJudge:
    """The `Judge` of `score_trace`: judge calls traced as production-side judge calls."""

    def __init__(self, bench: Workbench, judged: str, prompts: dict[str, PromptVersion]) -> None:
        self.bench = bench
        self.judged = judged
        self.prompts = prompts
        self.spent = 0.0

    def register_prompt(self, name: str, template: str, model: str, **params: Any) -> PromptVersion:
        return _registered(self.bench, self.prompts, name, template, model, params)

    async def complete(self, prompt: PromptVersion, **variables: Any) -> CallResult:
        request = prompt.to_request(variables)
        request.metadata["sample"] = f"judge:{self.judged}"
        result = await self.bench.tracer.call(
            self.bench.provider, request,
            context={"tags": ["judge"], "metadata": {"judged_trace": self.judged}},
        )
        self.spent += result.cost_usd or 0.0
        return result


# -- the registry behind bench.experiment / bench.experiments ------------------------------------


def make_config(dataset: Dataset, variants: dict[str, Variant], scorers: Sequence[Scorer], repeats: int, seed: int, provider: str) -> dict[str, Any]:
    return {
        "provider": provider,
        "dataset": {"id": dataset.id, "name": dataset.name, "version": dataset.version,
                    "content_hash": dataset.content_hash, "n_items": len(dataset)},
        "variants": {k: v.spec() for k, v in variants.items()},
        "scorers": [s.spec() for s in scorers],
        "repeats": repeats,
        "seed": seed,
    }


class Experiments:
    """``bench.experiments``: create, fetch and list experiments."""

    def __init__(self, bench: Workbench) -> None:
        self.bench = bench

    def create(
        self,
        name: str,
        *,
        dataset: Dataset,
        variants: Mapping[str, Any],
        scorers: Sequence[Scorer] = (),
        repeats: int = 1,
        seed: int | None = None,
        concurrency: int = 8,
        budget_usd: float | None = None,
        max_error_rate: float | None = None,
    ) -> Experiment:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("an experiment needs a non-empty name")
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"dataset must come from bench.datasets.load(...), got {type(dataset).__name__}")
        if not variants:
            raise ConfigError("an experiment needs at least one variant, e.g. variants={'A': v1, 'B': v2}")
        vs = {str(k): _as_variant(str(k), v) for k, v in variants.items()}
        for v in vs.values():
            if v.gateway is not None:
                v.gateway.bind(self.bench)
        for s in scorers:
            if not isinstance(s, Scorer):
                raise ConfigError(f"{s!r} is not a scorer; use wb.scorers.contains_reference() or @wb.scorer")
        names = [s.name for s in scorers]
        if len(set(names)) != len(names):
            raise ConfigError(f"scorer names must be unique, got {names}; pass name=... to tell them apart")
        if not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"repeats must be an integer >= 1, got {repeats!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if budget_usd is not None and (not isinstance(budget_usd, (int, float)) or budget_usd <= 0):
            raise ConfigError(f"budget_usd must be a positive number of dollars, got {budget_usd!r}")
        if max_error_rate is not None and not 0 <= max_error_rate <= 1:
            raise ConfigError(f"max_error_rate must be between 0 and 1, got {max_error_rate!r}")
        for vname, v in vs.items():
            # Every item, not only the first: one item without the variable would stop the run half-way.
            for item in dataset.items:
                missing = [var for var in v.prompt.variables if var not in item.inputs]
                if missing:
                    raise ConfigError(
                        f"variant {vname!r} ({v.prompt.ref}) needs {', '.join(missing)}, which dataset {dataset.ref} "
                        f"item {item.item_id!r} does not have (its inputs: {', '.join(item.inputs)})"
                    )
        seed = self.bench.seed if seed is None else seed
        config = make_config(dataset, vs, list(scorers), repeats, seed, self.bench.provider.name)
        digest = content_hash(config)
        existing = self.bench.store.query("SELECT id, config_json, config_hash FROM experiments WHERE name = ?", (name,))
        if existing:
            if existing[0]["config_hash"] != digest:
                old = loads(existing[0]["config_json"])
                changed = [k for k in config if canonical_json(config[k]) != canonical_json(old.get(k))]
                raise ExperimentError(
                    f"experiment {name!r} already exists with a different config (changed: {', '.join(changed)}); "
                    f"pick a new name, or bench.experiments.get({name!r}) to continue the stored one"
                )
            exp_id = existing[0]["id"]
        else:
            exp_id = new_id()
            now = utc_now()
            self.bench.store.execute(
                "INSERT INTO experiments (id, name, dataset_id, config_json, config_hash, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'created', ?, ?)",
                (exp_id, name, dataset.id, canonical_json(config), digest, now, now),
            )
        return Experiment(
            self.bench, id=exp_id, name=name, dataset=dataset, variants=vs, scorers=list(scorers),
            repeats=repeats, seed=seed, concurrency=concurrency, budget_usd=budget_usd,
            max_error_rate=max_error_rate, config=config,
        )

    def get(self, name: str, *, concurrency: int = 8, budget_usd: float | None = None, max_error_rate: float | None = None,
            gateways: Mapping[str, Any] | None = None) -> Experiment:
        """Rebuild a stored experiment from its config (prompts by hash, dataset by id, scorers by spec).

        A variant that went through a gateway needs it again: ``gateways={"routed": routed}``
        by policy name; its spec must equal the pinned one.
        """
        rows = self.bench.store.query("SELECT * FROM experiments WHERE name = ?", (name,))
        if not rows:
            names = [r["name"] for r in self.bench.store.query("SELECT name FROM experiments ORDER BY created_at")]
            raise ExperimentNotFound(f"experiment {name!r} not found; experiments: {', '.join(names) or 'none'}")
        row = rows[0]
        config = loads(row["config_json"])
        dataset = self.bench.datasets.by_id(config["dataset"]["id"])
        variants = {}
        for vname, spec in config["variants"].items():
            prompt = self.bench.prompts.by_hash(spec["prompt"], spec["content_hash"])
            model = spec["model"] if spec["model"] != prompt.model else None
            gateway = None
            if spec.get("gateway"):
                policy = spec["gateway"]["name"]
                gateway = (gateways or {}).get(policy)
                if gateway is None:
                    raise ConfigError(
                        f"variant {vname!r} of {name!r} ran through gateway policy {policy!r}; "
                        f"pass it again: bench.experiments.get({name!r}, gateways={{{policy!r}: gateway}})"
                    )
                if canonical_json(gateway.bind(self.bench).spec()) != canonical_json(spec["gateway"]):
                    raise ConfigError(f"gateway {policy!r} differs from the one experiment {name!r} pinned; rebuild it as it was")
            variants[vname] = Variant(prompt, model, spec.get("params") or {}, gateway)
        scorers = [build(s) for s in config["scorers"]]
        return Experiment(
            self.bench, id=row["id"], name=name, dataset=dataset, variants=variants, scorers=scorers,
            repeats=config["repeats"], seed=config["seed"], concurrency=concurrency, budget_usd=budget_usd,
            max_error_rate=max_error_rate, config=config,
        )

    def list(self) -> list[dict[str, Any]]:
        """Every experiment: name, status, times, main calls, dollars (None when nothing was priced)."""
        self.bench.store.sync()
        totals = traces.experiment_totals(self.bench.store)
        rows = self.bench.store.query("SELECT id, name, status, created_at, updated_at FROM experiments ORDER BY created_at")
        for r in rows:
            t = totals.get(r.pop("id"), {})
            r["calls"] = int(t.get("calls") or 0)
            r["cost_usd"] = t.get("cost_usd")
        return rows

    def __repr__(self) -> str:
        return f"<Experiments {len(self.list())}>"


