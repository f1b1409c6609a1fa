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
    so queued traces are written (they are flushed at interpreter exit too).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        provider: str | Provider | None = None,
        seed: int = 0,
        time_scale: float | None = None,
    ) -> None:
        self.path = config.db_path(path)
        self.store = Store(self.path)
        self.prompts = PromptRegistry(self.store)
        self.pricing = Pricer(self.store)
        self.provider = make_provider(provider, seed=seed, time_scale=time_scale)
        self.seed = seed
        self.tracer = Tracer(lambda: self.store.writer, self.pricing)
        if self.path != ":memory:":
            from ._reader import reader

            reader().prestart()  # frames read through it; warm it while the user gets going
        self.datasets = Datasets(self.store)
        self.feedback = Feedback(self.store)
        self.experiments = Experiments(self)

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
        return self.tracer.call(self.provider, request, parent=current_span(), context=context)

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
        **kwargs: Any,
    ) -> CallResult:
        """Call the model once, traced: ``bench.complete(v2, question=..., context=...)``
        or ``bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])``.

        A failed call (after retries) is traced as an error and raised unless
        ``raise_on_error=False``. ``params`` override the prompt's (max_tokens, ...).
        A template variable named like an option here (``model``, ``tags``, ...)
        goes in ``variables={...}``.
        """
        options = dict(locals())
        del options["self"], options["prompt"], options["raise_on_error"]
        result = _loop.run_sync(self._call(prompt, options))
        if result.error is not None and raise_on_error:
            raise result.error
        return result

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

    def wrap(self, client: Any) -> Any:
        """A traced stand-in for an ``anthropic.Anthropic`` or ``AsyncAnthropic`` client."""
        from .providers.wrap import wrap_client

        return wrap_client(client, self.tracer)

    # -- reading -----------------------------------------------------------------------------

    def traces(self, limit: int | None = 50, **filters: Any) -> list[dict[str, Any]]:
        """Recent trace rows as dicts, newest first (see ``traces_df`` for a frame)."""
        self.flush()
        return traces.list_traces(self.store, traces.TraceQuery(**filters), limit=limit)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        self.flush()
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

        self.flush()
        return write_report(self, obj, path, **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every queued trace is on disk."""
        self.store.flush()

    def close(self) -> None:
        self.tracer.close()  # live exporters send what they hold
        self.store.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workbench {self.path} provider={self.provider.name}>"

    def _repr_html_(self) -> str:
        self.flush()
        n_prompts = self.prompts.count()
        n_traces = traces.count(self.store)
        sim = " (simulated: answers are not from a real model)" if getattr(self.provider, "simulated", False) else ""
        return (
            f"<div><b>workbench</b> <code>{_html.esc(self.path)}</code> · provider "
            f"<b>{_html.esc(self.provider.name)}</b>{_html.esc(sim)} · {n_prompts} prompt versions · {n_traces:,} traces</div>"
        )


def open(  # noqa: A001 - the entry verb users type: wb.open()
    path: str | os.PathLike[str] | None = None,
    *,
    provider: str | Provider | None = None,
    seed: int = 0,
    time_scale: float | None = None,
) -> Workbench:
    """Open (creating or migrating) a workbench file.

    Args:
        path: the SQLite file; default ``WORKBENCH_DB`` or ``workbench.db``.
        provider: ``"simulated"``, ``"anthropic"``, ``"auto"`` (Anthropic when
            ``ANTHROPIC_API_KEY`` is set) or a Provider instance.
        seed: the simulated provider's seed.
        time_scale: simulated seconds to real seconds (e.g. 0.01 for fast demos).
    """
    return Workbench(path, provider=provider, seed=seed, time_scale=time_scale)
