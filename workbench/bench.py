"""The ``Workbench`` object: one store and everything that hangs off it."""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from . import _html, _loop, config, traces
from .datasets import Dataset, Datasets
from .errors import ConfigError
from .experiments import Experiment, Experiments
from .feedback import Feedback
from .pricing import Pricer
from .prompts import PromptRegistry, PromptVersion
from .providers.base import Provider, Request
from .store import Store
from .tracing import CallResult, Span, Tracer, current_span


def make_provider(provider: str | Provider | None, *, seed: int = 0, time_scale: float | None = None) -> Provider:
    """A provider from a name (``simulated``, ``anthropic``, ``auto``) or an instance."""
    if provider is not None and not isinstance(provider, str):
        if not hasattr(provider, "complete"):
            raise ConfigError(f"provider must be a name or have an async complete(request); got {provider!r}")
        return provider
    choice = config.provider_choice(provider)
    if choice == "anthropic":
        from .providers.anthropic import AnthropicProvider

        return AnthropicProvider()
    from .providers.simulated import SimulatedProvider

    scale = time_scale if time_scale is not None else float(config.setting(None, "WORKBENCH_TIME_SCALE", 1.0))  # type: ignore[arg-type]
    return SimulatedProvider(seed=seed, time_scale=scale)


class Workbench:
    """Prompts, calls, traces, datasets and experiments in one SQLite file.

    Open with ``wb.open(path)``; use as a context manager or call ``close()``
    so queued traces are written (they are flushed at interpreter exit, and on
    SIGTERM, too). ``wb.open(path, readonly=True)`` opens for viewing only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        provider: str | Provider | None = None,
        seed: int = 0,
        time_scale: float | None = None,
        readonly: bool = False,
    ) -> None:
        self.store = Store(config.db_path(path), readonly=readonly)
        self.path = self.store.path
        """The file, or the server's URL without its password."""
        self.prompts = PromptRegistry(self.store)
        self.pricing = Pricer(self.store)
        self.provider = make_provider(provider, seed=seed, time_scale=time_scale)
        self.seed = seed
        self.tracer = Tracer(lambda: self.store.writer, self.pricing)
        self.gateways: list[Any] = []
        """Gateways bound to this file (their limits and caches flush with it)."""
        bind = getattr(self.provider, "bind", None)
        if callable(bind):
            bind(self)  # a gateway keeps its caches and limits in this file
        self.store.warm()  # the reader frames go through; started while the user gets going
        self.datasets = Datasets(self.store)
        self.feedback = Feedback(self.store)
        self.experiments = Experiments(self)
        self._monitor: Any = None

    def experiment(
        self,
        name: str,
        *,
        dataset: Dataset,
        variants: dict[str, Any],
        scorers: Sequence[Any] = (),
        repeats: int = 1,
        seed: int | None = None,
        concurrency: int = 8,
        budget_usd: float | None = None,
        max_error_rate: float | None = None,
    ) -> Experiment:
        """Create (or reopen, when the config is identical) an experiment; then ``.run()``.

        Args:
            name: unique per file; the same name with a different config is refused.
            dataset: from ``bench.datasets.load``.
            variants: ``{"A": v1, "B": wb.variant(v1, model="claude-sonnet-4-5")}``.
            scorers: e.g. ``[wb.scorers.contains_reference()]``.
            repeats: calls per (item, variant); repeats are averaged per item.
            seed: sampling seed of the simulated provider (default: the bench's).
            concurrency: calls in flight at once.
            budget_usd: the run stops before it could exceed this, in-flight calls included.
            max_error_rate: stop when more than this share of calls fail (after 20 calls).
        """
        return self.experiments.create(
            name, dataset=dataset, variants=variants, scorers=scorers, repeats=repeats, seed=seed,
            concurrency=concurrency, budget_usd=budget_usd, max_error_rate=max_error_rate,
        )

    # -- calls -------------------------------------------------------------------------------

    def _request(self, prompt: PromptVersion | None, model: str | None, messages: Any, variables: dict[str, Any], params: dict[str, Any]) -> Request:
        if prompt is not None:
            if messages is not None:
                raise ConfigError("pass a prompt version or messages, not both")
            return prompt.to_request(variables, model=model, **params)
        if variables:
            raise ConfigError(
                f"template variables {', '.join(sorted(variables))} given without a prompt version; "
                "pass bench.complete(prompt_version, **variables) or messages=[...]"
            )
        if model is None or messages is None:
            raise ConfigError("bench.complete needs a prompt version, or model=... and messages=[...]")
        return Request.of(model, messages, **params)

    def _call(self, prompt: PromptVersion | None, options: dict[str, Any]) -> Coroutine[Any, Any, CallResult]:
        """The traced call for ``complete``/``acomplete``; ``options`` are their keyword arguments."""
        variables = {**(options.pop("variables") or {}), **options.pop("kwargs")}
        request = self._request(prompt, options["model"], options["messages"], variables, dict(options["params"] or {}))
        user_id = options["user_id"]
        if user_id is None and prompt is not None and prompt.served is not None:
            user_id = prompt.served.unit  # a version picked for a user is that user's call
        context = {"user_id": user_id, "tags": options["tags"], "metadata": options["metadata"]}
        provider = self.provider if options.get("gateway") is None else options["gateway"].bind(self)
        if getattr(provider, "reads_caller", False):
            # A gateway's limits and routes look at who is calling; it takes this back out of the trace.
            request.metadata["caller"] = {"user_id": user_id, "metadata": options["metadata"] or {}}
        return self.tracer.call(provider, request, parent=current_span(), context=context)

    async def acomplete(
        self,
        prompt: PromptVersion | None = None,
        /,
        *,
        model: str | None = None,
        messages: Any = None,
        user_id: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        raise_on_error: bool = True,
        params: dict[str, Any] | None = None,
        variables: dict[str, Any] | None = None,
        gateway: Any = None,
        **kwargs: Any,
    ) -> CallResult:
        """Async ``complete``."""
        options = dict(locals())
        del options["self"], options["prompt"], options["raise_on_error"]
        result = await _loop.run_async(self._call(prompt, options))
        if result.error is not None and raise_on_error:
            raise result.error
        return result

    def complete(
        self,
        prompt: PromptVersion | None = None,
        /,
        *,
        model: str | None = None,
        messages: Any = None,
        user_id: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        raise_on_error: bool = True,
        params: dict[str, Any] | None = None,
        variables: dict[str, Any] | None = None,
        gateway: Any = None,
        **kwargs: Any,
    ) -> CallResult:
        """Call the model once, traced: ``bench.complete(v2, question=..., context=...)``
        or ``bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])``.

        A failed call (after retries) is traced as an error and raised unless
        ``raise_on_error=False``. ``params`` override the prompt's (max_tokens, ...).
        A template variable named like an option here (``model``, ``tags``, ...)
        goes in ``variables={...}``. ``gateway=`` sends this one call through a
        ``wb.gateway.Gateway`` (caches, routes, limits, fallbacks, guardrails);
        ``metadata={"no_cache": True}`` skips its caches for the call.
        """
        options = dict(locals())
        del options["self"], options["prompt"], options["raise_on_error"]
        result = _loop.run_sync(self._call(prompt, options))
        if result.error is not None and raise_on_error:
            raise result.error
        return result

    # -- the gateway -------------------------------------------------------------------------

    def gateway(self, provider: Provider | None = None, **parts: Any) -> Any:
        """A ``wb.gateway.Gateway`` over this workbench's provider (or ``provider``), bound to this file.

        ``routed = bench.gateway(router=gw.Router([...]), cache=True, name="routed")``;
        the parts are ``Gateway``'s keyword arguments.
        """
        from .gateway import Gateway

        if provider is None and isinstance(self.provider, Gateway):
            provider = self.provider.provider
        return Gateway(provider or self.provider, **parts).bind(self)

    def savings(self, by: str | list[str] = "day", **filters: Any) -> Any:
        """Dollars saved by prompt caching, the response caches and routing, with hit rates (Polars).

        One row per ``by`` group (``day``, ``prompt``, ``model``, ``user``) and source
        (``prompt_cache``, ``exact_cache``, ``semantic_cache``, ``routing``); see
        ``frames.savings`` for how each is estimated.
        """
        from . import frames

        for gateway in self.gateways:
            gateway.flush()  # cache rows and settled limits still in memory
        self.store.sync()
        return frames.savings(self.store, by=by, **filters)
    # -- deployment --------------------------------------------------------------------------

    def rollout(self, name: str, label: str = "production") -> Any:
        """The handle of one label for serving, online readouts and gradual rollouts (``workbench.rollout.Rollout``)."""
        from .rollout import Rollout

        self.prompts.label_state(name, label)  # a typo fails here, naming the labels there are
        return Rollout(self, name, label)

    # -- spans -------------------------------------------------------------------------------

    def traced(self, fn: Callable[..., Any] | None = None, *, name: str | None = None, capture: bool = True) -> Any:
        """Decorator: each call of the function becomes a span (sync or async)."""
        return self.tracer.traced(fn, name=name, capture=capture)

    def span(self, name: str, input: Any = None) -> Span:
        """Context manager for a span around any block."""
        return self.tracer.span(name, input)

    def wrap(self, client: Any, *, gateway: Any = None) -> Any:
        """A traced stand-in for an ``anthropic.Anthropic`` or ``AsyncAnthropic`` client.

        With ``gateway=``, its calls go through that gateway's guardrails, routes and
        limits, and non-streamed ``messages.create`` calls also through its caches and
        fallbacks (the client still makes the call; see ``wrap_client``).
        """
        from .providers.wrap import wrap_client

        return wrap_client(client, self.tracer, None if gateway is None else gateway.bind(self))

    # -- reading -----------------------------------------------------------------------------

    def traces(self, limit: int | None = 50, **filters: Any) -> list[dict[str, Any]]:
        """Recent trace rows as dicts, newest first (see ``traces_df`` for a frame)."""
        self.store.sync()
        return traces.list_traces(self.store, traces.TraceQuery(**filters), limit=limit)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        self.store.sync()
        return traces.get_trace(self.store, trace_id)

    def traces_df(self, **filters: Any) -> Any:
        """Traces as a Polars frame (filters: since, until, model, prompt_name, prompt_version,
        experiment_id, variant, status, user_id, kind, columns)."""
        from . import frames

        return frames.traces_df(self.store, **filters)

    def scores_df(self, experiment_id: str | None = None) -> Any:
        from . import frames

        return frames.scores_df(self.store, experiment_id=experiment_id)

    def experiments_df(self) -> Any:
        from . import frames

        return frames.experiments_df(self.store)

    def metrics(self, by: str | list[str] | None = None, every: str | None = None, **filters: Any) -> Any:
        """Requests, errors, tokens, cost and latency percentiles, grouped ``by`` and bucketed ``every``."""
        from . import frames

        return frames.metrics(self.store, by=by, every=every, **filters)

    def report(self, obj: Any, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Write a self-contained HTML report of an experiment (or ``"traces"``); returns the path."""
        from .report import write_report

        self.store.sync()
        return write_report(self, obj, path, **kwargs)

    # -- monitoring --------------------------------------------------------------------------

    @property
    def monitor(self) -> Any:
        """Detectors, alerts and notifications over this file's production traffic (``workbench.monitor.Monitor``)."""
        if self._monitor is None:
            from .monitor import Monitor

            self._monitor = Monitor(self)
        return self._monitor

    # -- lifecycle ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every queued trace (and a gateway's settled limits and cache rows) is on disk.

        Raises:
            RowsNotWritten: some rows are not in the file (a full disk, a read-only or
                damaged file): it says how many, why, and where they are kept.
        """
        for gateway in self.gateways:
            gateway.flush()
        self.store.flush()

    def health(self) -> Any:
        """Rows written, pending, spilled (kept beside the file) and failed: a ``store.Health``."""
        return self.store.health()

    def recover(self, *, discard_failed: bool = False) -> Any:
        """Write rows kept in the spill file into the database now; returns the health afterwards.

        ``discard_failed=True`` deletes the rows SQLite still refuses (after saying so in ``health()``).
        """
        return self.store.recover(discard_failed=discard_failed)

    @property
    def readonly(self) -> bool:
        """Opened with ``readonly=True``: reads work, writes raise ``ReadOnlyDatabase``."""
        return self.store.readonly

    def close(self) -> None:
        """Write what is queued and close the file.

        Raises:
            RowsNotWritten: (after closing) rows that are not in the file, and where they are kept.
        """
        if self._monitor is not None:
            self._monitor.close()  # notifications still being sent get a few seconds
        self.tracer.close()  # live exporters send what they hold
        for gateway in self.gateways:
            gateway.close()
        self.store.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workbench {self.path} provider={self.provider.name}{' read-only' if self.readonly else ''}>"

    def _repr_html_(self) -> str:
        self.store.sync()
        n_prompts = self.prompts.count()
        n_traces = traces.count(self.store)
        sim = " (simulated: answers are not from a real model)" if getattr(self.provider, "simulated", False) else ""
        return _html.root(
            f"<b>workbench</b> <code>{_html.esc(self.path)}</code> · provider "
            f"<b>{_html.esc(self.provider.name)}</b>{_html.esc(sim)} · {n_prompts} prompt versions · {n_traces:,} traces"
        )


def open(  # noqa: A001 - the entry verb users type: wb.open()
    path: str | os.PathLike[str] | None = None,
    *,
    provider: str | Provider | None = None,
    seed: int = 0,
    time_scale: float | None = None,
    readonly: bool = False,
) -> Workbench:
    """Open (creating or migrating) a workbench file.

    Args:
        path: the SQLite file, or a PostgreSQL URL (``postgresql://user@host/db``); default ``WORKBENCH_DB`` or ``workbench.db``.
        provider: ``"simulated"``, ``"anthropic"``, ``"auto"`` (Anthropic when
            ``ANTHROPIC_API_KEY`` is set) or a Provider instance.
        seed: the simulated provider's seed.
        time_scale: simulated seconds to real seconds (e.g. 0.01 for fast demos).
        readonly: open an existing file for viewing only (no migration; every write
            raises ``ReadOnlyDatabase``), e.g. a file you may not change, or one in a
            read-only folder.

    Raises:
        NotAWorkbenchDatabase, CorruptDatabase, ReadOnlyDatabase, DiskFull, DatabaseLocked:
            the file cannot be used; the message names the cause and the fix.
    """
    return Workbench(path, provider=provider, seed=seed, time_scale=time_scale, readonly=readonly)
