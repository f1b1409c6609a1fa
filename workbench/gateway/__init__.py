"""The gateway: caches, routing, fallbacks, guardrails and per-user limits around every call.

::

    import workbench as wb
    from workbench import gateway as gw

    routed = gw.Gateway(
        provider,                                   # any Provider
        cache=gw.ExactCache(ttl_s=3600),
        semantic_cache=gw.SemanticCache(threshold=0.9),
        router=gw.Router([gw.Route("claude-haiku-4-5", max_input_tokens=300)]),
        fallbacks=gw.Fallbacks([provider, gw.Target(openai, "gpt-4.1-mini")], on=("overloaded", "rate_limited")),
        guardrails=gw.Guardrails(input=[gw.pii()], output=[gw.max_length(chars=4000)]),
        limits=gw.Limits(gw.RateLimit(requests=60, tokens=20_000), gw.Budget(usd=5, period="day")),
        name="routed",
    )
    bench = wb.open("app.db", provider=routed)       # or bench.complete(..., gateway=routed)

Every decision is on the call's trace under ``metadata.gateway``; ``bench.savings()``
adds them up. ``Gateway.from_config({...})`` builds the same from plain data (a dict,
or TOML read with ``tomllib``).
"""

from __future__ import annotations

from ._config import from_config
from ._core import Caller, Gateway
from .cache import CacheHit, ExactCache, SemanticCache, hashing_embedder, request_key, wordllama_embedder
from .fallback import CircuitBreaker, Fallbacks, Target
from .guardrails import Check, Guardrails, custom, json_schema, max_length, pii, regex
from .limits import Budget, Limits, RateLimit
from .routing import ModelClassifier, Route, Router

__all__ = [
    "Budget",
    "CacheHit",
    "Caller",
    "Check",
    "CircuitBreaker",
    "ExactCache",
    "Fallbacks",
    "Gateway",
    "Guardrails",
    "Limits",
    "ModelClassifier",
    "RateLimit",
    "Route",
    "Router",
    "SemanticCache",
    "Target",
    "custom",
    "from_config",
    "hashing_embedder",
    "json_schema",
    "max_length",
    "pii",
    "regex",
    "request_key",
    "wordllama_embedder",
]
