"""Experiments through a batch engine: Anthropic's Message Batches, at half price.

``exp.run(batch=True)`` sends every missing call of an experiment as batches of
requests, each with a custom id that maps back to its cell (variant, item,
repeat); waits for them to end (most do within the hour, all within a day);
reads their results into traces priced at the batch rate; and scores them.

Batches outlive the process that submitted them. Their ids and their
requests' custom ids are in the file, written *before* the provider is asked,
so ``run(batch=True)`` in any later process (after a kernel restart, a crash,
a closed laptop) finds them, collects those that ended and submits only cells
that no batch holds. A cell with a request in a batch that has not been
collected is never submitted again, and a live ``run()`` refuses to call it:
no call is paid twice. A process that died between the provider creating a
batch and the file recording its id leaves the batch's row in state
``submitting``; the next run finds the batch among the provider's recent ones
(created since then, with as many requests) and adopts it.

The simulated provider has a batch engine too (deterministic, no network);
its traces are marked simulated like any other.

Only this module writes ``experiment_batches`` and ``experiment_batch_requests``.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _format as fmt
from ._canonical import dumps
from ._ids import new_id, utc_from_epoch, utc_now
from ._retry import DEFAULT_POLICY, RetryPolicy
from .errors import ConfigError, ExperimentError, ProviderError
from .experiments import RunOutcome, _collector

if TYPE_CHECKING:
    import polars as pl

    from .experiments import Experiment
    from .providers.base import BatchInfo, BatchProvider, BatchResult, Request

BATCH_SIZE = 10_000
"""Requests per batch unless ``run(batch_size=...)`` says otherwise: a large experiment
goes as several batches, whose results come back (and are scored) as each ends."""
MAX_BATCH_BYTES = 200_000_000
"""Request text per batch, kept under the API's 256 MB with room for the JSON around it."""
REQUEST_OVERHEAD_BYTES = 512
"""JSON around one request's text (custom id, model, params) when sizing a batch."""
SUBMIT_TIMEOUT_S = 600.0
"""A batch another live process is submitting is left alone this long before it is
looked for at the provider (its submitting request cannot take longer)."""
CLOCK_SKEW_S = 300.0
"""Slack between our clock and the provider's when looking for a batch by creation time."""
RESULT_CHUNK = 500
"""Results recorded (and committed) together."""

HELD = "pending"
"""The state of a request that holds its cell: submitted (or being submitted), result not yet read."""
OPEN_STATES = ("submitting", "in_progress", "canceling", "ended")
"""States of a batch whose results are not all read."""

_BATCH_SQL = (
    "INSERT INTO experiment_batches (id, experiment_id, provider, batch_id, state, requests, owner, created_at) "
    "VALUES (?, ?, ?, NULL, 'submitting', ?, ?, ?)"
)
_REQUEST_SQL = (
    "INSERT INTO experiment_batch_requests (custom_id, batch, experiment_id, variant, item_id, repeat, "
    "reserve_usd, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)"
)
_SETTLE_SQL = "UPDATE experiment_batch_requests SET state = ?, trace_id = ?, updated_at = ? WHERE custom_id = ?"

_active: set[str] = set()
"""Experiments running in batch mode in this process (one run at a time each)."""
_JITTER = random.Random()


class _Unsure(ExperimentError):
    """A batch may or may not have been created: its cells stay held until a later run finds out."""


# -- what is held ---------------------------------------------------------------------------------


def held_cells(store: Any, experiment_id: str) -> set[tuple[str, str, int]]:
    """Cells with a request in a batch whose result has not been read: never to be called again."""
    return {
        (r["variant"], r["item_id"], r["repeat"])
        for r in store.query(
            "SELECT variant, item_id, repeat FROM experiment_batch_requests WHERE experiment_id = ? AND state = ?",
            (experiment_id, HELD),
        )
    }


_OUTCOMES = {"pending": ("pending",), "succeeded": ("succeeded",), "errored": ("errored",),
             "canceled": ("canceled",), "expired": ("expired", "lost")}
"""Columns of `batches_frame` counting a batch's requests, and the request states each counts."""


def batches_frame(store: Any, experiment_id: str) -> pl.DataFrame:
    """One row per batch of an experiment, oldest first: ids, state, requests by outcome, times."""
    import polars as pl

    # CASE, not SUM(boolean): the same SQL on SQLite and PostgreSQL.
    tallies = ", ".join(
        f"SUM(CASE WHEN r.state IN ({', '.join(repr(s) for s in states)}) THEN 1 ELSE 0 END) AS {name}"
        for name, states in _OUTCOMES.items()
    )
    rows = store.query(
        "SELECT b.id, b.batch_id, b.provider, b.state, b.requests, b.created_at, b.submitted_at, b.expires_at, "
        f"b.ended_at, b.collected_at, b.message, {tallies} "
        "FROM experiment_batches b LEFT JOIN experiment_batch_requests r ON r.batch = b.id "
        "WHERE b.experiment_id = ? GROUP BY b.id ORDER BY b.created_at",
        (experiment_id,),
    )
    schema = {
        "batch_id": pl.String, "provider": pl.String, "state": pl.String, "requests": pl.Int64,
        **{c: pl.Int64 for c in _OUTCOMES},
        "created_at": pl.String, "submitted_at": pl.String, "expires_at": pl.String, "ended_at": pl.String,
        "collected_at": pl.String, "message": pl.String,
    }
    data = [{k: (r[k] or 0 if k in _OUTCOMES else r[k]) for k in schema} for r in rows]
    return pl.DataFrame(data, schema=schema, orient="row")


def _open_batches(store: Any, experiment_id: str) -> list[dict[str, Any]]:
    marks = ", ".join("?" * len(OPEN_STATES))
    return store.query(
        f"SELECT * FROM experiment_batches WHERE experiment_id = ? AND state IN ({marks}) ORDER BY created_at",
        (experiment_id, *OPEN_STATES),
    )


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_gone(owner: str | None) -> bool:
    """Whether the process that was submitting a batch can no longer finish recording it."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: only time tells
    if int(pid) == os.getpid():
        return True  # this process, whose run of the experiment ended (one at a time: `_active`)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def batch_provider(exp: Experiment) -> BatchProvider:
    """The workbench's provider, if it can run ``exp`` through a batch engine.

    Raises:
        ConfigError: the provider has no batch engine, is a gateway, or a variant
            goes through a gateway (caches, routes and limits act on single calls).
    """
    provider = exp.bench.provider
    gated = [name for name, v in exp.variants.items() if v.gateway is not None]
    if gated:
        raise ConfigError(
            f"variant {gated[0]!r} of experiment {exp.name!r} goes through a gateway, whose caches, routes and "
            "limits act on single calls, not on a batch; run it without batch=True"
        )
    if hasattr(provider, "worst_cost"):
        raise ConfigError(
            "this workbench's provider is a gateway, whose caches, routes and limits act on single calls; "
            "open the file with the provider itself for batch=True, e.g. wb.open(path, provider='anthropic')"
        )
    if not callable(getattr(provider, "submit_batch", None)):
        raise ConfigError(
            f"the {provider.name!r} provider has no batch engine; batch=True needs Anthropic's Message Batches "
            "(wb.open(path, provider='anthropic')) or the simulated provider"
        )
    return provider  # type: ignore[return-value]


# -- the run ------------------------------------------------------------------------------------


class BatchRun:
    """One ``exp.run(batch=True)``: collect what ended, submit what is missing, wait.

    Args:
        exp: the experiment.
        outcome: the run's `RunOutcome`, kept up to date.
        wait: wait for every batch to end and read its results; False returns once
            submitted (``run(batch=True)`` again, in any process, collects them).
        poll_s: seconds between looks at a batch still processing (default: the
            provider's; the simulator's are simulated seconds).
        batch_size: most requests per batch.
        progress: show a progress bar of results read.
        retry_errors: submit again the cells whose earlier call failed.
    """

    def __init__(self, exp: Experiment, outcome: RunOutcome, *, wait: bool, poll_s: float | None,
                 batch_size: int, progress: bool, retry_errors: bool, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.exp = exp
        self.store = exp.bench.store
        self.provider = batch_provider(exp)
        self.outcome = outcome
        self.wait = wait
        if poll_s is not None and (not isinstance(poll_s, (int, float)) or poll_s < 0):
            raise ConfigError(f"poll_s must be a number of seconds >= 0, got {poll_s!r}")
        self.poll_s = self.provider.batch_poll_s if poll_s is None else float(poll_s)
        if not isinstance(batch_size, int) or not 1 <= batch_size <= self.provider.batch_max_requests:
            raise ConfigError(
                f"batch_size must be an integer from 1 to {self.provider.batch_max_requests:,} "
                f"(the {self.provider.name} batch limit), got {batch_size!r}"
            )
        self.batch_size = batch_size
        self.progress = progress
        self.retry_errors = retry_errors
        self.policy = policy
        self.items = {i.item_id: i for i in exp.dataset.items}
        self.bar: Any = None
        self.stopped_budget = 0
        self.submitted = 0
        """Requests submitted by this run."""
        self.read = 0
        """Results read by this run."""
        self.notes: list[str] = []

    async def run(self) -> None:
        exp = self.exp
        if exp.id in _active:
            raise ExperimentError(f"experiment {exp.name!r} is already running with batch=True in this process")
        _active.add(exp.id)
        try:
            await self._reconcile()
            await exp._score_missing(await asyncio.to_thread(exp.completed_cells), self.items)
            while True:
                before = self.submitted
                await self._submit(await asyncio.to_thread(self._todo))
                if not self.wait:
                    break
                await self._wait()
                if not self.stopped_budget or self.submitted == before:
                    break
                # Results replaced worst-case reservations with real costs: more may fit now.
        except BaseException as exc:
            # Ctrl-C while waiting, or a batch refused: those submitted go on processing.
            stopped = "run cancelled" if isinstance(exc, asyncio.CancelledError) else f"{type(exc).__name__}: {exc}"
            if held_cells(self.store, exp.id):
                self.notes.append(stopped)
                # Ctrl-C: say where the batches are; an error says it itself.
                self._finish(echo=isinstance(exc, asyncio.CancelledError))
            else:
                self.outcome.status = "interrupted" if isinstance(exc, asyncio.CancelledError) else "failed"
                exp._set_status(self.outcome.status, f"{stopped}; run(batch=True) again to finish")
            raise
        finally:
            _active.discard(exp.id)
            if self.bar is not None:
                self.bar.close()
        self._finish()

    # -- planning ------------------------------------------------------------------------------

    def _todo(self) -> list[tuple[str, str, int]]:
        exp = self.exp
        done = exp.completed_cells()
        held = held_cells(self.store, exp.id)
        todo = [c for c in exp.cells() if c not in done and c not in held]
        if not self.retry_errors:
            from . import traces

            failed = {(r["variant"], r["item_id"], r["repeat"]) for r in traces.experiment_cells(self.store, exp.id, "error")}
            todo = [c for c in todo if c not in failed]
        return todo

    def _held_reserve(self) -> float:
        (total,) = self.store.execute(
            "SELECT COALESCE(SUM(reserve_usd), 0) FROM experiment_batch_requests WHERE experiment_id = ? AND state = ?",
            (self.exp.id, HELD),
        ).fetchone()
        return float(total)

    def _chunks(self, cells: Sequence[tuple[str, str, int]]) -> tuple[list[list[tuple[Any, ...]]], int]:
        """(batches of (cell, request, reserve), cells left out by the budget)."""
        exp = self.exp
        budget = exp.budget_usd
        room = None if budget is None else budget - exp.spent_usd() - self._held_reserve()
        chunks: list[list[tuple[Any, ...]]] = [[]]
        size = 0
        for n, cell in enumerate(cells):
            vname, item_id, rep = cell
            request = exp._request(vname, self.items[item_id], rep)
            reserve = None
            if room is not None:
                reserve = exp._reserve(request, batch=True)
                assert reserve is not None  # every model was checked to have a price
                if reserve > room:
                    return [c for c in chunks if c], len(cells) - n
                room -= reserve
            weight = len(request.prompt_text().encode("utf-8", "surrogatepass")) + REQUEST_OVERHEAD_BYTES
            if chunks[-1] and (len(chunks[-1]) >= self.batch_size or size + weight > MAX_BATCH_BYTES):
                chunks.append([])
                size = 0
            chunks[-1].append((cell, request, reserve))
            size += weight
        return [c for c in chunks if c], 0

    # -- submitting ----------------------------------------------------------------------------

    async def _submit(self, cells: list[tuple[str, str, int]]) -> None:
        self.stopped_budget = 0
        if not cells:
            return
        exp = self.exp
        if exp.budget_usd is not None:
            exp._check_prices()
        chunks, self.stopped_budget = await asyncio.to_thread(self._chunks, cells)
        exp._set_status("running", None)
        for i, chunk in enumerate(chunks, 1):
            try:
                await self._submit_one(chunk)
            except ProviderError as exc:
                sent = sum(len(c) for c in chunks[: i - 1])
                raise ExperimentError(
                    f"the {self.provider.name} batch API refused batch {i} of {len(chunks)} "
                    f"({fmt.plural(len(chunk), 'request')}) of experiment {exp.name!r}: {exc}. "
                    + (f"{fmt.plural(sent, 'request')} already submitted go on processing; " if sent else "")
                    + "run(batch=True) again to submit the rest"
                ) from exc
            if self.progress and self.bar is None:
                print(f"{exp.name}: submitted {fmt.plural(len(chunk), 'request')} as a "
                      f"{'simulated ' if self.provider.simulated else ''}batch ({i} of {len(chunks)})")

    async def _submit_one(self, chunk: list[tuple[Any, ...]]) -> None:
        """Record a batch and its requests, then create it; the record comes first so a
        process that dies in between leaves enough to find the batch again."""
        exp = self.exp
        bid, now = new_id(), utc_now()
        ids = [new_id() for _ in chunk]
        rows: list[tuple[str, Any]] = [(_BATCH_SQL, (bid, exp.id, self.provider.name, len(chunk), _owner(), now))]
        rows += [
            (_REQUEST_SQL, (cid, bid, exp.id, vname, item_id, rep, reserve, now))
            for cid, ((vname, item_id, rep), _, reserve) in zip(ids, chunk)
        ]
        await asyncio.to_thread(self.store.write_now, rows)
        requests = [(cid, request) for cid, (_, request, _) in zip(ids, chunk)]
        try:
            info = await self._create(requests, time.time())
        except ProviderError as exc:
            # Refused, or looked for and not there: nothing was created, its cells are free again.
            self._forget(bid, f"not created: {exc}")
            raise
        # Anything else (Ctrl-C, a lost answer we could not look into) leaves the batch
        # 'submitting': its cells stay held and the next run looks for it.
        self._record_submitted(bid, info)
        self.submitted += len(chunk)

    async def _create(self, requests: list[tuple[str, Request]], started: float) -> BatchInfo:
        """Create the batch, retrying what the API refused before creating anything.

        After a failure that may have come after the batch was made (a dropped
        connection, a timeout, a 5xx) it is looked for among the provider's recent
        batches before anything is sent again.

        Raises:
            ProviderError: nothing was created.
            _Unsure: it may have been; the batch stays 'submitting' for a later run.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.provider.submit_batch(requests)
            except ProviderError as exc:
                if not _refused(exc):
                    try:
                        found = await self._find(started, len(requests), {cid for cid, _ in requests})
                    except ProviderError as lookup:
                        raise _Unsure(
                            f"submitting a batch failed ({exc}) and the batches could not be listed to see whether "
                            f"it was created ({lookup}); its cells wait until run(batch=True) can tell"
                        ) from exc
                    if isinstance(found, str):
                        raise _Unsure(f"submitting a batch failed ({exc}); {found}") from exc
                    if found is not None:
                        return found
                delay = self.policy.delay(attempt, exc, _JITTER)
                if delay is None:
                    raise
                await self.provider.sleep(delay)

    def _record_submitted(self, bid: str, info: BatchInfo) -> None:
        self.store.write_now([(
            "UPDATE experiment_batches SET batch_id = ?, state = ?, submitted_at = ?, expires_at = ?, counts_json = ? "
            "WHERE id = ?",
            (info.id, info.status, utc_from_epoch(info.created_at or time.time()),
             None if info.expires_at is None else utc_from_epoch(info.expires_at), dumps(info.counts), bid),
        )])

    def _forget(self, bid: str, message: str) -> None:
        """A batch that was never created: its requests stop holding their cells."""
        now = utc_now()
        self.store.write_now([
            ("UPDATE experiment_batches SET state = 'not_created', message = ? WHERE id = ?", (message, bid)),
            ("UPDATE experiment_batch_requests SET state = 'not_created', updated_at = ? WHERE batch = ? AND state = ?",
             (now, bid, HELD)),
        ])

    async def _find(self, since: float, requests: int, custom_ids: set[str]) -> BatchInfo | None | str:
        """The provider's batch that a submission created but never recorded.

        Returns the batch, None when there is none (safe to submit again), or a
        sentence when several could be it and none has ended to tell by its results.
        """
        known = {r["batch_id"] for r in self.store.query("SELECT batch_id FROM experiment_batches WHERE batch_id IS NOT NULL")}
        recent = await self.provider.recent_batches(since - CLOCK_SKEW_S)
        candidates = [b for b in recent if b.id not in known and b.requests == requests]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        for b in candidates:
            if b.status != "ended" or not b.results_available:
                continue
            async for result in self.provider.batch_results(b.id, {}):
                if result.custom_id in custom_ids:
                    return b
                break
        return (f"{len(candidates)} batches of {fmt.plural(requests, 'request')} were created since then and "
                "none has ended to tell which holds these; run(batch=True) again once they end")

    # -- collecting ----------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Bring every open batch of the experiment up to date; read the results of those that ended."""
        for b in _open_batches(self.store, self.exp.id):
            if b["state"] == "submitting":
                await self._adopt(b)
                continue
            info = await self._info(b)
            self._update(b, info)
            if info.status == "ended":
                await self._collect(b, info)

    async def _info(self, b: dict[str, Any]) -> BatchInfo:
        """The provider's word on one of our batches; one it does not know is an error that says what to do."""
        try:
            return await self.provider.batch_info(b["batch_id"])
        except ProviderError as exc:
            if exc.status_code != 404:
                raise
            raise ExperimentError(
                f"the {self.provider.name} API does not know batch {b['batch_id']} of experiment {self.exp.name!r} "
                f"({fmt.plural(b['requests'], 'request')}, submitted {(b['submitted_at'] or b['created_at'])[:19]} UTC by "
                f"{b['owner']}): open the file with the API key (workspace) that submitted it, or give up on it with "
                f"exp.forget_batch({b['batch_id']!r}) (its calls may have been billed already)"
            ) from exc

    async def _adopt(self, b: dict[str, Any]) -> None:
        """A batch left half-recorded by a process that died: find it, or free its cells."""
        started = _epoch(b["created_at"]) or 0.0
        if not _owner_gone(b["owner"]) and time.time() - started < SUBMIT_TIMEOUT_S:
            self.notes.append(f"a batch of {fmt.plural(b['requests'], 'request')} is being submitted by "
                              f"another process ({b['owner']}); its cells are left to it")
            return
        custom_ids = {r["custom_id"] for r in self.store.query(
            "SELECT custom_id FROM experiment_batch_requests WHERE batch = ?", (b["id"],))}
        found = await self._find(started, b["requests"], custom_ids)
        if isinstance(found, str):
            self.notes.append(found)
            return
        if found is None:
            self._forget(b["id"], "not created (the submitting process stopped before the provider answered)")
            return
        self._record_submitted(b["id"], found)
        b = {**b, "batch_id": found.id}
        if found.status == "ended":
            await self._collect(b, found)

    def _update(self, b: dict[str, Any], info: BatchInfo) -> None:
        self.store.write_now([(
            "UPDATE experiment_batches SET state = ?, counts_json = ?, ended_at = ? WHERE id = ?",
            (info.status, dumps(info.counts), None if info.ended_at is None else utc_from_epoch(info.ended_at), b["id"]),
        )])

    async def _collect(self, b: dict[str, Any], info: BatchInfo) -> None:
        """Read an ended batch's results into traces (priced at the batch rate) and score them."""
        exp = self.exp
        pending = {
            r["custom_id"]: (r["variant"], r["item_id"], r["repeat"])
            for r in self.store.query(
                "SELECT custom_id, variant, item_id, repeat FROM experiment_batch_requests WHERE batch = ? AND state = ?",
                (b["id"], HELD),
            )
        }
        if pending and not info.results_available:
            now = utc_now()
            self.store.write_now([(_SETTLE_SQL, ("lost", None, now, cid)) for cid in pending])
            warnings.warn(
                f"batch {b['batch_id']}'s results are no longer served (the API keeps them 29 days); "
                f"{fmt.plural(len(pending), 'request')} in it were never read and will be submitted again",
                RuntimeWarning, stacklevel=2,
            )
            pending = {}
        if pending:
            requests = {cid: exp._request(v, self.items[i], r) for cid, (v, i, r) in pending.items()}
            started = _epoch(b["submitted_at"]) or info.created_at or time.time()
            results: list[BatchResult] = []
            async for result in self.provider.batch_results(b["batch_id"], requests):
                if result.custom_id not in pending:
                    continue
                results.append(result)
                if len(results) >= RESULT_CHUNK:
                    await self._record(results, pending, requests, started, b["batch_id"])
                    results = []
            await self._record(results, pending, requests, started, b["batch_id"])
            if pending:
                # Every request has a result line; one missing can only be submitted again.
                now = utc_now()
                self.store.write_now([(_SETTLE_SQL, ("expired", None, now, cid)) for cid in pending])
        self.store.write_now([(
            "UPDATE experiment_batches SET state = 'collected', collected_at = ? WHERE id = ?", (utc_now(), b["id"]),
        )])

    async def _record(self, results: list[BatchResult], pending: dict[str, tuple[str, str, int]],
                      requests: dict[str, Request], started: float, batch_id: str) -> None:
        """Traces and request states of some results in one transaction, then their scores."""
        if not results:
            return
        exp, outcome = self.exp, self.outcome
        tracer = exp.bench.tracer
        rows: list[tuple[str, Any]] = []
        emit = _collector(rows)
        now = utc_now()
        to_score: list[tuple[str, str, str, str, int]] = []
        for result in results:
            vname, item_id, rep = pending.pop(result.custom_id)
            trace_id = None
            if result.outcome in ("succeeded", "errored"):
                call = tracer.record_call(
                    self.provider, requests[result.custom_id], result.completion, result.error,
                    attempts=1, started=started, emit=emit, batch=True,
                    context={"experiment_id": exp.id, "variant": vname, "item_id": item_id, "repeat": rep,
                             "metadata": {"dataset": exp.dataset.ref,
                                          "batch": {"id": batch_id, "custom_id": result.custom_id}}},
                )
                trace_id = call.trace_id
                outcome.calls += 1
                outcome.spent_usd += call.cost_usd or 0.0
                if call.status == "ok":
                    to_score.append((call.trace_id, call.text, vname, item_id, rep))
                else:
                    outcome.errors += 1
            rows.append((_SETTLE_SQL, (result.outcome, trace_id, now, result.custom_id)))
        await asyncio.to_thread(self.store.write_now, rows)
        self.read += len(results)
        if self.bar is not None:
            self.bar.update(len(results))
            self.bar.set_postfix(errors=outcome.errors, spent=f"${outcome.spent_usd:.4f}", refresh=False)
        await self._score(to_score)
        exp._tell(outcome)  # live views, as after each call of a live run

    async def _score(self, calls: list[tuple[str, str, str, str, int]]) -> None:
        """Score recorded results; LLM judges call live (at the standard rate), ``concurrency`` at a time."""
        if not calls or not self.exp.scorers:
            return
        exp, outcome = self.exp, self.outcome
        rows: list[tuple[str, Any]] = []
        emit = _collector(rows)
        pending = iter(calls)

        async def worker() -> None:
            for trace_id, text, vname, item_id, rep in pending:
                outcome.spent_usd += await exp._score(trace_id, text, vname, self.items[item_id], rep, emit)

        await asyncio.gather(*[worker() for _ in range(min(exp.concurrency, len(calls)))])
        await asyncio.to_thread(self.store.write_now, rows)

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(self) -> None:
        open_ = [b for b in _open_batches(self.store, self.exp.id) if b["state"] != "submitting"]
        if not open_:
            return
        if self.progress:
            from tqdm.auto import tqdm

            waiting = sum(b["requests"] for b in open_)
            if self.bar is None:
                self.bar = tqdm(total=waiting, desc=f"{self.exp.name} (batch)", unit="result")
            else:  # a second round, submitted once the first one's real costs freed budget
                self.bar.total += waiting
        kind = "simulated" if self.provider.simulated else self.provider.name
        while open_:
            if self.bar is not None:
                self.bar.set_postfix_str(
                    f"{fmt.count(len(open_))} {kind} {'batch' if len(open_) == 1 else 'batches'} processing",
                    refresh=True,
                )
            await self.provider.sleep(self.poll_s)
            for b in open_:
                info = await self._info(b)
                self._update(b, info)
                if info.status == "ended":
                    await self._collect(b, info)
            open_ = [b for b in _open_batches(self.store, self.exp.id) if b["state"] != "submitting"]

    # -- the end -------------------------------------------------------------------------------

    def _finish(self, echo: bool = True) -> None:
        exp, outcome = self.exp, self.outcome
        finished = exp.completed_cells()
        held = held_cells(self.store, exp.id)
        missing = [c for c in exp.cells() if c not in finished]
        outcome.remaining = len(missing)
        kind = "simulated" if self.provider.simulated else self.provider.name
        over_budget = (
            f"{fmt.plural(self.stopped_budget, 'call')} not submitted, as they could exceed the budget of "
            f"{fmt.money(exp.budget_usd)} (spent {fmt.money(exp.spent_usd())}"
            + (f", {fmt.money(self._held_reserve())} held for batches still processing" if held else "")
            + "). Raise budget_usd and run(batch=True) again to finish."
        )
        if held:
            batches = len({b["id"] for b in _open_batches(self.store, exp.id)})
            outcome.status = "batch_pending"
            outcome.message = (
                f"experiment {exp.name!r}: {fmt.plural(len(held), 'request')} in {fmt.count(batches)} {kind} "
                f"{'batch' if batches == 1 else 'batches'} still processing (half price, up to 24 h); "
                "run(batch=True) again, in this or any process, to collect them; exp.cancel_batches() stops them"
            ) + (f". {over_budget}" if self.stopped_budget else "")
        elif self.stopped_budget:
            outcome.status = "stopped_budget"
            outcome.message = f"experiment {exp.name!r}: {over_budget}"
        elif missing:
            outcome.status = "completed_with_errors"
            outcome.message = (
                f"experiment {exp.name!r}: {fmt.plural(len(missing), 'call')} failed, expired or were canceled "
                "in their batch; run(batch=True) again to submit them again."
            )
        else:
            outcome.status = "completed"
            if not self.submitted and not self.read:
                outcome.message = f"nothing to do: {fmt.count(len(finished))} of {fmt.plural(len(exp.cells()), 'call')} recorded"
        if self.notes:
            outcome.message = "; ".join([outcome.message, *self.notes] if outcome.message else self.notes)
        exp._set_status(outcome.status, outcome.message or None)
        if outcome.message and echo:
            print(outcome.message)


def _refused(error: ProviderError) -> bool:
    """Whether the API answered no before making anything (a 4xx, or 529 overloaded)."""
    status = error.status_code
    return status is not None and (400 <= status < 500 or status == 529)


def forget(exp: Experiment, batch_id: str) -> int:
    """Give up on one of ``exp``'s batches: its requests no longer hold their cells. Returns how many did."""
    store = exp.bench.store
    rows = store.query("SELECT id, state FROM experiment_batches WHERE experiment_id = ? AND batch_id = ?",
                       (exp.id, batch_id))
    if not rows:
        known = [r["batch_id"] for r in store.query(
            "SELECT batch_id FROM experiment_batches WHERE experiment_id = ? AND batch_id IS NOT NULL", (exp.id,))]
        raise ConfigError(f"experiment {exp.name!r} has no batch {batch_id!r}; its batches: {', '.join(known) or 'none'}")
    (n,) = store.execute("SELECT COUNT(*) FROM experiment_batch_requests WHERE batch = ? AND state = ?",
                         (rows[0]["id"], HELD)).fetchone()
    now = utc_now()
    store.write_now([
        ("UPDATE experiment_batches SET state = 'forgotten', message = ? WHERE id = ?",
         (f"forgotten at {now[:19]} UTC with {fmt.plural(n, 'request')} unread", rows[0]["id"])),
        ("UPDATE experiment_batch_requests SET state = 'forgotten', updated_at = ? WHERE batch = ? AND state = ?",
         (now, rows[0]["id"], HELD)),
    ])
    return int(n)


async def cancel(exp: Experiment, *, wait: bool = True, poll_s: float | None = None) -> int:
    """Cancel every batch of ``exp`` still processing; with ``wait``, read what they did
    (requests already processed are done and billed). Returns the batches asked to stop."""
    runner = BatchRun(exp, RunOutcome(status="canceling", spent_usd=exp.spent_usd()), wait=wait, poll_s=poll_s,
                      batch_size=1, progress=False, retry_errors=True)
    await runner._reconcile()  # read what has ended already: those need no cancelling
    asked = 0
    for b in _open_batches(exp.bench.store, exp.id):
        if b["state"] == "in_progress":
            runner._update(b, await runner.provider.cancel_batch(b["batch_id"]))
            asked += 1
    if wait:
        await runner._wait()
    return asked

