"""The ``Gateway``: caches, routing, limits, fallbacks and guardrails around a provider.

A gateway is itself a ``Provider``, so ``wb.open(path, provider=gateway)``,
``bench.complete(..., gateway=gateway)``, an experiment variant and a wrapped
client all take it unchanged. For each call, in order:

1. input guardrails (block, redact, flag) on the last user turn;
2. the router picks the model (rule, classifier or default);
3. limits admit the call: a request and its estimated tokens from each bucket,
   its worst-case cost reserved against each budget;
4. the exact cache, then the semantic cache, may answer (status ``cached``);
5. otherwise the fallback chain calls providers in order, skipping those whose
   breaker is open, retrying and moving on as configured;
6. output guardrails check the answer;
7. limits settle with the real tokens and cost; a complete, unflagged answer is cached.

Every decision goes on the trace (``metadata.gateway``) through the ``CallNote``
the completion or the error carries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._retry import DEFAULT_POLICY
from ..errors import ConfigError, GatewayRefused, GuardrailTriggered, ProviderError, ProviderUnavailable
from ..providers.base import CallNote, Completion, Message, Request, Usage
from .cache import ExactCache, SemanticCache, _completion_json, cacheable, request_key
from .fallback import Fallbacks, Target
from .guardrails import Guardrails
from .limits import Admission, Limits
from .routing import Router, input_tokens

if TYPE_CHECKING:
    from ..pricing import Pricer
    from ..store import Store

__all__ = ["Caller", "Gateway"]

CALLER_KEY = "caller"
"""Request metadata key under which ``bench.complete`` hands the gateway its caller (user, tags, metadata)."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: what limits and routes look at."""

    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """``tier``, ``key``, ``feature``, ``no_cache`` and anything else the caller passed."""


def _caller_of(request: Request) -> tuple[Caller, Request]:
    """The caller, and the request without the caller's entry in its metadata."""
    meta = request.metadata
    given = meta.get(CALLER_KEY)
    if given is None:
        return Caller(meta.get("user_id"), meta), request
    rest = {k: v for k, v in meta.items() if k != CALLER_KEY}
    caller_meta = {**rest, **(given.get("metadata") or {})}
    return Caller(given.get("user_id"), caller_meta), _replace(request, metadata=rest)


def _replace(record: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for the plain frozen records that cross the gateway, at a tenth of its cost.

    ``Request`` and ``Completion`` have no ``__post_init__`` to rerun, so copying
    the instance dictionary is the same record; ``dataclasses.replace`` goes
    through ``__init__`` and its field machinery (about 5 µs a call, three times a call).
    """
    new = object.__new__(type(record))
    new.__dict__.update(record.__dict__, **changes)
    return new


class Gateway:
    """Caches, routing, limits, fallbacks and guardrails around a provider; itself a Provider.

    Args:
        provider: the primary provider (None: the first fallback target, or, per
            call and in experiments, the workbench's own provider).
        cache: an ``ExactCache`` (or True for one with defaults).
        semantic_cache: a ``SemanticCache``.
        router: a ``Router`` of rules and a classifier.
        fallbacks: a ``Fallbacks`` chain (its first target is the primary when
            ``provider`` is None).
        guardrails: ``Guardrails(input=[...], output=[...])``.
        limits: ``Limits(RateLimit(...), Budget(...))``.
        retries: extra tries of a target on a retryable error when no
            ``Fallbacks`` says otherwise (2, as the SDK).
        name: the policy's name on traces and experiment configs.

    Raises:
        ConfigError: a part of the wrong type.
    """

    reads_caller = True
    """``bench.complete`` passes user_id, tags and metadata in the request for limits and routes."""

    def __init__(
        self,
        provider: Any = None,
        *,
        cache: ExactCache | bool | None = None,
        semantic_cache: SemanticCache | None = None,
        router: Router | None = None,
        fallbacks: Fallbacks | None = None,
        guardrails: Guardrails | None = None,
        limits: Limits | None = None,
        retries: int = 2,
        name: str = "gateway",
    ) -> None:
        if cache is True:
            cache = ExactCache()
        for value, cls, arg in (
            (cache or None, ExactCache, "cache"), (semantic_cache, SemanticCache, "semantic_cache"),
            (router, Router, "router"), (fallbacks, Fallbacks, "fallbacks"),
            (guardrails, Guardrails, "guardrails"), (limits, Limits, "limits"),
        ):
            if value is not None and not isinstance(value, cls):
                raise ConfigError(f"Gateway {arg}= takes a wb.gateway.{cls.__name__}, got {type(value).__name__}")
        if provider is not None and not hasattr(provider, "complete"):
            raise ConfigError(f"Gateway provider must be a Provider (with async complete), got {provider!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"Gateway retries must be an integer >= 0, got {retries!r}")
        self.provider = provider if provider is not None else (fallbacks.targets[0].provider if fallbacks else None)
        self.cache = cache or None
        self.semantic_cache = semantic_cache
        self.router = router
        self.fallbacks = fallbacks
        self.guardrails = guardrails
        self.limits = limits
        self.retries = retries
        self.policy = name
        self.store: Store | None = None
        self.pricer: Pricer | None = None
        self._rng = random.Random()
        self._below_tiers: dict[tuple[str, str | None], Any] = {}
        """(model, price provider) -> (first tier's input tokens, base Price), or False."""

    # -- the Provider protocol ---------------------------------------------------------------

    @property
    def name(self) -> str:  # type: ignore[override]
        """The primary provider's name: traces and experiments see who answers, not the wrapper."""
        return self.provider.name if self.provider is not None else "gateway"

    @property
    def simulated(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.provider, "simulated", False))

    async def sleep(self, seconds: float) -> None:
        if self.provider is not None:
            await self.provider.sleep(seconds)

    def bind(self, bench: Any) -> Gateway:
        """Attach to a workbench: its file keeps caches and limits, its pricer prices savings.

        ``wb.open(path, provider=gateway)`` and ``bench.complete(..., gateway=...)`` do this.
        A gateway without a provider of its own calls the workbench's.
        """
        if self.store is bench.store:
            return self
        if self.store is not None and not _same_file(self.store.path, bench.store.path):
            raise ConfigError(
                f"this gateway is bound to {self.store.path}; build another for {bench.store.path} "
                "(caches and limits live in one file)"
            )
        if self.provider is None or (self.store is not None and self.provider is getattr(self, "_borrowed", None)):
            if bench.provider is self or isinstance(bench.provider, Gateway):
                raise ConfigError("Gateway(provider=...) is needed when the gateway is the workbench's provider")
            self.provider = self._borrowed = bench.provider
        self.store = bench.store
        self.pricer = bench.pricing
        bench.gateways.append(self)
        if self.limits is not None:
            self.limits.bind(bench.store)
        # With limits, cache rows ride in the limits' admit transactions: one writer per file.
        sink = None if self.limits is None else self.limits.defer
        for cache in (self.cache, self.semantic_cache):
            if cache is not None:
                cache.bind(bench.store, sink)
        return self

    def flush(self) -> None:
        """Write settled limits and cached answers still held in memory to the file."""
        for cache in (self.cache, self.semantic_cache):
            if cache is not None:
                cache.flush()
        if self.limits is not None:
            self.limits.flush()

    def close(self) -> None:
        """Flush, and close the limits' connection (``bench.close()`` does this)."""
        for cache in (self.cache, self.semantic_cache):
            if cache is not None:
                cache.flush()
        if self.limits is not None:
            self.limits.close()

    def spec(self) -> dict[str, Any]:
        """The policy as plain data: pinned in experiment configs so a run stays reproducible."""
        return {
            "name": self.policy,
            "provider": None if self.provider is None else self.provider.name,
            "cache": None if self.cache is None else self.cache.spec(),
            "semantic_cache": None if self.semantic_cache is None else self.semantic_cache.spec(),
            "router": None if self.router is None else self.router.spec(),
            "fallbacks": None if self.fallbacks is None else self.fallbacks.spec(),
            "guardrails": None if self.guardrails is None else self.guardrails.spec(),
            "limits": None if self.limits is None else self.limits.spec(),
            "retries": self.retries,
        }

    async def complete(self, request: Request) -> Completion:
        """Complete ``request`` through every layer (see the module docstring).

        Raises:
            GuardrailTriggered, UserRateLimited, SpendLimitReached: refused here.
            ProviderError: every target failed; never retried again by the caller.
        """
        if self.provider is None:
            raise ConfigError("this gateway has no provider: Gateway(provider=...) or bind it to a workbench")
        return await self._run(request, self._call_chain)

    @contextlib.contextmanager
    def _file_errors(self) -> Iterator[None]:
        """A driver error of the file (caches, limits) leaves as the store's ``StoreError``."""
        try:
            yield
        except Exception as exc:
            store = self.store
            if store is None or not isinstance(exc, store.backend.errors):
                raise
            raise store.error(exc, "keeping the gateway's caches and limits in") from None

    async def _prepare(self, request: Request) -> tuple[Request, Caller, dict[str, Any], Admission | None]:
        """Input guardrails, the route and the limits: (the request to send, caller, decisions, admission).

        Raises:
            GuardrailTriggered, UserRateLimited, SpendLimitReached: refused, with the decisions noted.
        """
        caller, request = _caller_of(request)
        d: dict[str, Any] = {"policy": self.policy}
        if caller.user_id is not None:
            d["user_id"] = caller.user_id
        guard = self.guardrails
        if guard is not None and guard.input and request.messages:
            text, fired, blocked = Guardrails.apply(guard.input, request.messages[-1].content, "input")
            if fired:
                d["guardrails"] = fired
            if blocked is not None:
                raise self._refused(GuardrailTriggered(
                    f"input guardrail {blocked.name!r} blocked the call: {fired[-1]['detail']}", rule=blocked.name,
                ), d, request)
            if text != request.messages[-1].content:
                last = request.messages[-1]
                request = _replace(request, messages=(*request.messages[:-1], Message(last.role, text)))
        if self.router is not None:
            model, route = await self.router.choose(request, caller, self.provider)
            spent = route["inputs"].get("classifier_usage")
            if spent is not None:
                # Not in the trace's cost_usd (that is the answering call's): the decision carries it.
                route["classifier_cost_usd"] = self._cost(route["inputs"]["classifier_model"], Usage(*spent), None)
            if model != request.model:
                route["requested"] = request.model
                request = _replace(request, model=model)
            d["route"] = route
        admission: Admission | None = None
        if self.limits is not None:
            tokens = input_tokens(request) + request.max_tokens
            reserve = self.worst_cost(request, routed=True) if self.limits.budgets else 0.0
            try:
                admission = await self.limits.aadmit(caller, tokens, reserve)
            except GatewayRefused as exc:
                d["limits"] = {"refused": exc.rule, "retry_after_s": None if exc.retry_after is None else round(exc.retry_after, 3)}
                raise self._refused(exc, d, request) from None
            d["limits"] = admission.decisions
        return request, caller, d, admission

    async def _run(self, request: Request, call: Any) -> Completion:
        """Every layer around ``call(request, decisions) -> (completion, provider, sent request, attempts)``."""
        with self._file_errors():
            return await self._layers(request, call)

    async def _layers(self, request: Request, call: Any) -> Completion:
        started = time.perf_counter()
        request, caller, d, admission = await self._prepare(request)
        guard = self.guardrails
        try:
            hit = self._lookup(request, caller, d, started)
            if hit is not None:
                if admission is not None:
                    self.limits.settle(admission, 0, 0.0)  # type: ignore[union-attr]
                return hit
            completion, answered_by, sent, attempts = await call(request, d)
        except BaseException:
            if admission is not None:
                self.limits.settle(admission, 0, 0.0)  # type: ignore[union-attr]
            raise
        price_provider = getattr(answered_by, "price_provider", None)
        cost = self._cost(sent.model, completion.usage, price_provider)
        if "route" in d and d["route"].get("requested"):
            baseline = self._cost(d["route"]["requested"], completion.usage, None)
            d["route"]["baseline_cost_usd"] = baseline
            d["route"]["saved_usd"] = None if baseline is None or cost is None else round(baseline - cost, 10)
        out_fired: list[dict[str, Any]] = []
        if guard is not None and guard.output:
            text, out_fired, blocked = Guardrails.apply(guard.output, completion.text, "output")
            if out_fired:
                d.setdefault("guardrails", []).extend(out_fired)
            if blocked is not None:
                if admission is not None:
                    self.limits.settle(admission, _tokens(completion.usage), cost)  # type: ignore[union-attr]
                paid = dataclasses.replace(completion, text="")
                raise self._refused(GuardrailTriggered(
                    f"output guardrail {blocked.name!r} blocked the answer: {out_fired[-1]['detail']}", rule=blocked.name,
                ), d, sent, paid=paid, provider=answered_by, price_provider=price_provider, attempts=attempts)
            if text != completion.text:
                completion = _replace(completion, text=text)
        if admission is not None:
            self.limits.settle(admission, _tokens(completion.usage), cost)  # type: ignore[union-attr]
        if not out_fired and not caller.metadata.get("no_cache"):
            self._store(request, completion, cost, d)
        d["gateway_ms"] = round((time.perf_counter() - started) * 1000 - completion.latency_ms, 3)
        return _replace(completion, note=CallNote(
            decisions=d, request=sent, provider=answered_by, price_provider=price_provider, attempts=attempts,
        ))

    # -- the layers --------------------------------------------------------------------------

    # -- a wrapped anthropic client (bench.wrap(client, gateway=...)) ---------------------------

    def wrapped_create(self, request: Request, create: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        """Run a wrapped client's non-streamed ``messages.create`` through the layers.

        Returns, for an async client, a coroutine giving ``(message, completion)``,
        else that pair. ``create`` is the client's own method: its retries, timeouts
        and headers apply; a routed model or a redacted last turn is passed to it in
        ``kwargs``. The client takes the place of the first fallback target: when it
        fails with an error the chain falls back on (after its own retries), the
        chain's other targets are asked, and their answer comes back as an SDK
        ``Message``. A cache hit also returns a ``Message`` built from the stored answer.

        Raises:
            the SDK's exception when the client's call failed and no fallback answered
            (a fallback target's failure raises its ``ProviderError``), with the
            decisions on its ``note``; ``GatewayRefused`` for refusals.
        """
        from .._loop import run_sync
        from ..providers._wrapcall import _completion

        holder: dict[str, Any] = {}
        client = _WrappedClient(create, kwargs, is_async, holder)

        async def run() -> tuple[Any, Completion]:
            try:
                completion = await self._run(_of_wrapped(request, kwargs), lambda sent, d: self._call_chain(sent, d, client))
            except ProviderError as exc:
                sdk = getattr(exc, "sdk_exception", None)
                if sdk is not None:
                    sdk.note = exc.note
                    raise sdk from None
                raise
            message = holder.get("message")
            answered_by_client = completion.note is not None and completion.note.provider is client
            if message is None or not answered_by_client:
                message = _sdk_message(completion)  # a cache hit or a fallback's answer
            elif completion.text != _completion(message, 0.0, None).text:
                message = _sdk_message(completion, message)  # an output guardrail redacted it
            return message, completion

        return run() if is_async else run_sync(run())

    def open_stream(self, request: Request, kwargs: dict[str, Any], is_async: bool) -> Any:
        """Input guardrails, the route and the limits for a wrapped client's stream.

        Returns ``(kwargs to send, StreamTicket)`` (a coroutine giving it for an async
        client). Caches never answer a stream and fallbacks never take one over: its
        text reaches the caller as it arrives. Output guardrails run when it ends and
        can only flag (the text is already shown). The ticket settles the limits and
        notes the decisions when the stream's row is written.

        Raises:
            GatewayRefused: blocked by an input guardrail or refused by a limit.
        """
        from .._loop import run_sync

        async def prepare() -> tuple[dict[str, Any], StreamTicket]:
            with self._file_errors():
                sent, _caller, d, admission = await self._prepare(_of_wrapped(request, kwargs))
            if self.cache is not None or self.semantic_cache is not None:
                d["cache"] = {"result": "skipped", "reason": "stream"}
            return _sent_kwargs(kwargs, sent), StreamTicket(self, sent, d, admission)

        return prepare() if is_async else run_sync(prepare())

    def _lookup(self, request: Request, caller: Caller, d: dict[str, Any], started: float) -> Completion | None:
        if self.cache is None and self.semantic_cache is None:
            return None
        if caller.metadata.get("no_cache"):
            d["cache"] = {"result": "skipped", "reason": "no_cache"}
            return None
        cache_d: dict[str, Any] = {}
        d["cache"] = cache_d
        hit = None
        if self.cache is not None:
            key = request_key(request)
            d["_key"] = key
            hit = self.cache.lookup(request, key)
            cache_d["exact"] = "hit" if hit is not None else "miss"
        if hit is None and self.semantic_cache is not None:
            # Embedded only when the exact cache missed and the request is eligible;
            # the vector and the guard's hash are kept for storing the answer.
            vector = guard = None
            question = self.semantic_cache.question(request)
            if question is not None:
                vector = self.semantic_cache.embed_question(question)
                guard = self.semantic_cache.guard(request)
                d["_vector"], d["_guard"] = vector, guard
            hit, info = self.semantic_cache.lookup(request, vector=vector, guard=guard)
            cache_d["semantic"] = info
        if hit is None:
            cache_d["result"] = "miss"
            return None
        original = hit.completion
        cache_d.update({
            "result": "hit", "kind": hit.kind, "saved_usd": hit.cost_usd, "age_s": round(hit.age_s, 3),
            "original_usage": dataclasses.asdict(original.usage), "original_model": original.model,
        })
        if hit.similarity is not None:
            cache_d["similarity"] = round(hit.similarity, 4)
        _drop_scratch(d)
        elapsed = (time.perf_counter() - started) * 1000
        return Completion(
            text=original.text, model=original.model, stop_reason=original.stop_reason, usage=Usage(),
            latency_ms=elapsed, ttft_ms=elapsed, request_id=original.request_id, provider=original.provider,
            note=CallNote(status="cached", decisions=d, request=request, provider=self.provider, attempts=0),
        )

    def _store(self, request: Request, completion: Completion, cost: float | None, d: dict[str, Any]) -> None:
        key = d.pop("_key", None)
        vector = d.pop("_vector", None)
        guard = d.pop("_guard", None)
        stored = []
        payload = _completion_json(completion) if cacheable(completion) else None  # one JSON for both caches
        if self.cache is not None and self.cache.store_answer(request, completion, cost, key, payload=payload):
            stored.append("exact")
        if self.semantic_cache is not None and self.semantic_cache.store_answer(
                request, completion, cost, vector=vector, guard=guard, payload=payload):
            stored.append("semantic")
        if "cache" in d:
            d["cache"]["stored"] = stored

    async def _call_chain(self, request: Request, d: dict[str, Any], first: Any = None) -> tuple[Completion, Any, Request, int]:
        """(answer, the provider that gave it, the request it was sent, attempts).

        ``first`` takes the first target's place (a wrapped client).
        """
        chain = self.fallbacks
        targets = chain.targets if chain is not None else (Target(self.provider),)
        if first is not None:
            targets = (Target(first), *targets[1:])
        retries = chain.retries if chain is not None else self.retries
        breaker = chain.breaker if chain is not None else None
        attempts: list[dict[str, Any]] = []
        d["attempts"] = attempts
        last: ProviderError | None = None
        for target in targets:
            sent = request if target.model is None or target.model == request.model else _replace(request, model=target.model)
            label = f"{target.provider.name}:{sent.model}"
            state = None
            if breaker is not None:
                allowed, state = breaker.allow(label)
                if not allowed:
                    attempts.append({"target": label, "skipped": f"breaker {state}"})
                    continue
            for attempt in range(1, retries + 2):
                t0 = time.perf_counter()
                try:
                    completion = await target.provider.complete(sent)
                except ProviderError as exc:
                    attempts.append(_attempt(
                        label, state, breaker, False, error_type=type(exc).__name__, status=exc.status_code,
                        error=str(exc)[:300], latency_ms=round((time.perf_counter() - t0) * 1000, 3),
                    ))
                    last = exc
                    if chain is not None and not chain.falls_back_on(exc) and not exc.retryable:
                        raise self._failed(exc, d, sent, len(attempts)) from None
                    if attempt <= retries and exc.retryable:
                        delay = DEFAULT_POLICY.delay(attempt, exc, self._rng)
                        if delay is not None:
                            await target.provider.sleep(delay)
                            continue
                    if chain is None or not chain.falls_back_on(exc):
                        raise self._failed(exc, d, sent, len(attempts)) from None
                    break
                attempts.append(_attempt(label, state, breaker, True, latency_ms=round(completion.latency_ms, 3)))
                if target is not targets[0]:
                    d["fallback"] = {"used": label, "after": [a["target"] for a in attempts[:-1]]}
                return completion, target.provider, sent, sum(1 for a in attempts if "skipped" not in a)
        if last is None:
            last = ProviderUnavailable(
                "every fallback target is skipped: their circuit breakers are open; "
                f"the first probe is allowed {breaker.cooldown_s:g} s after opening" if breaker else "no target",
            )
        raise self._failed(last, d, request, sum(1 for a in attempts if "skipped" not in a))

    def _failed(self, exc: ProviderError, d: dict[str, Any], sent: Request, attempts: int) -> ProviderError:
        # The gateway has retried and fallen back already: the caller's loop must not redo it all.
        exc.retryable = False
        exc.note = CallNote(decisions=d, request=sent, attempts=attempts)
        _drop_scratch(d)
        return exc

    def _refused(self, exc: GatewayRefused, d: dict[str, Any], request: Request, **note: Any) -> GatewayRefused:
        status = "guardrail_triggered" if isinstance(exc, GuardrailTriggered) else "error"
        d["refused"] = {"error_type": type(exc).__name__, "rule": exc.rule}
        _drop_scratch(d)
        exc.note = CallNote(
            status=status, decisions=d, request=request, provider=note.get("provider"),
            price_provider=note.get("price_provider"), completion=note.get("paid"), attempts=note.get("attempts", 0),
        )
        return exc

    def _cost(self, model: str, usage: Usage, price_provider: str | None) -> float | None:
        if self.pricer is None:
            return None
        if model not in self.pricer.overrides():
            below = self._below_tiers.get((model, price_provider))
            if below is None:
                below = self._below_tiers[(model, price_provider)] = _base_prices(model, price_provider)
            if below is not False and usage.total_input_tokens < below[0]:
                return below[1].cost(usage)
        return self.pricer.estimate(model, usage, price_provider)

    def worst_cost(self, request: Request, usage: Usage | None = None, *, routed: bool = False) -> float | None:
        """The most this call can cost on any model it may be routed (unless ``routed``) or fall back to.

        ``usage`` defaults to input at 2 characters a token (more than any tokenizer
        gives for prose) and all of ``max_tokens`` out. None when a model has no price.
        """
        usage = usage or Usage(input_tokens=2 * input_tokens(request) + 16, output_tokens=request.max_tokens)
        models = {request.model}
        if self.router is not None and not routed:
            models |= {r.model for r in self.router.routes} | set(self.router.labels.values())
            if self.router.default:
                models.add(self.router.default)
        targets = self.fallbacks.targets if self.fallbacks is not None else (Target(self.provider),)
        worst = 0.0
        for t in targets:
            for model in ({t.model} if t.model else models):
                cost = self._cost(model, usage, getattr(t.provider, "price_provider", None))
                if cost is None:
                    return None
                worst = max(worst, cost)
        return worst

    def __repr__(self) -> str:
        parts = [p for p in ("cache", "semantic_cache", "router", "fallbacks", "guardrails", "limits") if getattr(self, p) is not None]
        return f"<Gateway {self.policy!r} over {self.name}: {', '.join(parts) or 'no layers'}>"


def _base_prices(model: str, provider_id: str | None) -> Any:
    """(input tokens where the first price tier starts, the base ``Price``), or False.

    genai-prices prices a tiered model (long-context prices) in Decimal at about
    100 µs a call; below its first tier the base prices give the same dollars in
    about 1 µs. Flat models get an infinite start. False: no price known.
    """
    import math
    from decimal import Decimal

    from genai_prices import Usage as GPUsage
    from genai_prices import calc_price

    from ..pricing import Price

    try:
        mp = calc_price(GPUsage(input_tokens=1, output_tokens=1), model, provider_id=provider_id or "anthropic").model_price
    except LookupError:
        return False
    fields = (mp.input_mtok, mp.output_mtok, mp.cache_read_mtok, mp.cache_write_mtok)
    start, base = math.inf, []
    for f in fields:
        if f is None or isinstance(f, Decimal):
            base.append(None if f is None else float(f))
        else:  # TieredPrices: base price and the tiers above it
            base.append(float(f.base))
            start = min([start, *(t.start for t in f.tiers)])
    if base[0] is None or base[1] is None:
        return False
    return start, Price(base[0], base[1], base[2], base[3])


def _drop_scratch(d: dict[str, Any]) -> None:
    """Remove what ``_lookup`` kept for ``_store`` (key, vector, guard): it is not for the trace."""
    for name in ("_key", "_vector", "_guard"):
        d.pop(name, None)


def _same_file(a: str, b: str) -> bool:
    """Whether two store paths are one file (a notebook cell run again opens it anew)."""
    import os

    if ":memory:" in (a, b):
        return False
    return os.path.realpath(a) == os.path.realpath(b)


def _attempt(label: str, state: str | None, breaker: Any, ok: bool, **fields: Any) -> dict[str, Any]:
    """One fallback attempt for the trace; counts it on the breaker and notes a transition."""
    record: dict[str, Any] = {"target": label, "ok": ok, **fields}
    if state is not None:
        record["breaker"] = state
    if breaker is not None:
        transition = breaker.record(label, ok)
        if transition:
            record["breaker_transition"] = transition
    return record


def _sdk_message(completion: Completion, like: Any = None) -> Any:
    """An anthropic SDK ``Message`` carrying ``completion`` (a cached or redacted answer)."""
    from anthropic.types import Message, TextBlock
    from anthropic.types import Usage as SDKUsage

    u = completion.usage
    return Message(
        id=(getattr(like, "id", None) or completion.request_id or "msg_cached"), type="message", role="assistant",
        model=completion.model, content=[TextBlock(type="text", text=completion.text)],
        stop_reason=completion.stop_reason, stop_sequence=None,
        usage=SDKUsage(input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                       cache_read_input_tokens=u.cache_read_tokens, cache_creation_input_tokens=u.cache_write_tokens),
    )


def _tokens(usage: Usage) -> int:
    return usage.total_input_tokens + usage.output_tokens


class StreamTicket:
    """A wrapped client's stream admitted by a gateway; ``finish`` settles it once, when its row is written."""

    __slots__ = ("gateway", "request", "decisions", "admission")

    def __init__(self, gateway: Gateway, request: Request, decisions: dict[str, Any], admission: Admission | None) -> None:
        self.gateway = gateway
        self.request = request
        self.decisions = decisions
        self.admission = admission

    def finish(self, completion: Completion | None, error: BaseException | None, tokens_used: int) -> Completion | None:
        """Settle the limits, run the output guardrails as flags, and put the decisions on the answer or error.

        A stream cut after tokens arrived counts its whole reservation (its cost is not known).
        """
        gateway, d = self.gateway, self.decisions
        cost: float | None = None
        if completion is not None:
            cost = gateway._cost(self.request.model, completion.usage, None)
            tokens_used = _tokens(completion.usage)
            guard = gateway.guardrails
            if guard is not None and guard.output:
                _, fired, _blocked = Guardrails.apply(guard.output, completion.text, "output")
                for f in fired:
                    f["streamed"] = True  # the text had reached the caller: flagged, never blocked
                if fired:
                    d.setdefault("guardrails", []).extend(fired)
        if self.admission is not None and gateway.limits is not None:
            gateway.limits.settle(self.admission, tokens_used, cost if completion is not None or not tokens_used else None)
        note = CallNote(decisions=d, request=self.request)
        if completion is not None:
            return _replace(completion, note=note)
        if error is not None:
            error.note = note  # type: ignore[attr-defined]
        return None


class _WrappedClient:
    """A wrapped client's own ``messages.create`` as the first target of a gateway's chain.

    Its errors are not retried again (the client retried them itself); an error the
    chain falls back on moves to the next target, any other is raised as the SDK's.
    """

    name = "anthropic"
    simulated = False

    def __init__(self, create: Any, kwargs: dict[str, Any], is_async: bool, holder: dict[str, Any]) -> None:
        self.create = create
        self.kwargs = kwargs
        self.is_async = is_async
        self.holder = holder

    async def complete(self, request: Request) -> Completion:
        from ..providers._wrapcall import _completion
        from ..providers.anthropic import _provider_error

        args = _sent_kwargs(self.kwargs, request)
        t0 = time.perf_counter()
        try:
            if self.is_async:
                message = await self.create(**args)
            else:
                import asyncio

                message = await asyncio.to_thread(self.create, **args)
        except Exception as exc:
            error = _provider_error(exc)
            if error is None:
                raise
            error.retryable = False
            error.sdk_exception = exc  # type: ignore[attr-defined]
            raise error from exc
        self.holder["message"] = message
        return _completion(message, (time.perf_counter() - t0) * 1000, None)

    async def sleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(seconds)


_NOT_ANSWER_PARAMS = frozenset({
    "model", "messages", "system", "max_tokens", "temperature", "stop_sequences",  # on the Request itself
    "stream", "metadata", "extra_headers", "extra_query", "timeout",  # never change the answer
})


def _of_wrapped(request: Request, kwargs: dict[str, Any]) -> Request:
    """A wrapped client's request as the gateway sees it: who limits count (the Messages API's
    own ``metadata.user_id``) and ``answer_params``, the hash of its other parameters (tools,
    thinking, ...), so a cache never serves an answer made with others."""
    meta = dict(request.metadata)
    given = kwargs.get("metadata")
    user = given.get("user_id") if isinstance(given, dict) else None
    if user is not None:
        meta[CALLER_KEY] = {"user_id": user}
    others = {k: v for k, v in kwargs.items() if k not in _NOT_ANSWER_PARAMS}
    if others:
        meta["answer_params"] = _params_hash(others)
    return _replace(request, metadata=meta) if meta != request.metadata else request


def _params_hash(params: dict[str, Any]) -> str:
    """'sha256:' of parameters in canonical JSON (SDK objects by their fields)."""
    import hashlib
    import json

    def plain(value: Any) -> Any:
        dump = getattr(value, "model_dump", None)
        return dump() if callable(dump) else repr(value)

    raw = json.dumps(params, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=plain)
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def _sent_kwargs(kwargs: dict[str, Any], sent: Request) -> dict[str, Any]:
    """The client's arguments with the routed model and the redacted last turn."""
    args = dict(kwargs, model=sent.model)
    messages = list(args.get("messages") or ())
    if messages and sent.messages and messages[-1].get("content") != sent.messages[-1].content:
        messages[-1] = {**messages[-1], "content": sent.messages[-1].content}
        args["messages"] = messages
    return args
