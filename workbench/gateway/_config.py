"""Build a ``Gateway`` from plain data (a dict, or TOML/JSON read into one).

The shape follows what LiteLLM router and Portkey config users know: named
providers, a cache mode and age, routes, a fallback strategy with the error
classes it falls back on, guardrail checks and limits::

    {
        "name": "routed",
        "provider": "claude",
        "cache": {"mode": "exact", "ttl_s": 3600},
        "semantic_cache": {"threshold": 0.9},
        "routes": [{"model": "claude-haiku-4-5", "max_input_tokens": 300}],
        "fallbacks": {"targets": [{"provider": "claude"}, {"provider": "gpt", "model": "gpt-4.1-mini"}],
                      "on": ["overloaded", "rate_limited"], "breaker": {"failures": 5, "cooldown_s": 30}},
        "guardrails": {"input": [{"check": "pii", "action": "redact"}], "output": [{"check": "max_length", "chars": 4000}]},
        "limits": [{"rate_limit": {"requests": 60, "per": "user"}}, {"budget": {"usd": 5, "period": "day"}}],
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from . import guardrails as g
from ._core import Gateway
from .cache import ExactCache, SemanticCache, hashing_embedder, wordllama_embedder
from .fallback import CircuitBreaker, Fallbacks, Target
from .limits import Budget, Limits, RateLimit
from .routing import ModelClassifier, Route, Router

KNOWN = {"name", "provider", "cache", "semantic_cache", "routes", "default_model", "classifier", "labels",
         "fallbacks", "guardrails", "limits", "retries"}
CHECKS = {"pii": g.pii, "regex": g.regex, "max_length": g.max_length, "json_schema": g.json_schema}


def _provider(name: Any, providers: Mapping[str, Any]) -> Any:
    if not isinstance(name, str):
        return name
    if name not in providers:
        raise ConfigError(f"gateway config names provider {name!r}, which providers= does not have (known: {', '.join(providers) or 'none'})")
    return providers[name]


def _check(spec: Mapping[str, Any]) -> g.Check:
    spec = dict(spec)
    kind = spec.pop("check", None)
    if kind not in CHECKS:
        raise ConfigError(f"guardrail check {kind!r} is unknown; choose from {', '.join(CHECKS)} (custom checks: build in Python)")
    return CHECKS[kind](**spec)


def from_config(config: Mapping[str, Any], providers: Mapping[str, Any] | None = None) -> Gateway:
    """A ``Gateway`` from plain data; ``providers`` maps the names the config uses to Providers.

    Raises:
        ConfigError: an unknown key, provider name, check or value.
    """
    providers = dict(providers or {})
    unknown = set(config) - KNOWN
    if unknown:
        raise ConfigError(f"unknown gateway config keys {', '.join(sorted(unknown))}; known: {', '.join(sorted(KNOWN))}")
    cache = None
    if config.get("cache"):
        spec = dict(config["cache"])
        mode = spec.pop("mode", "exact")
        if mode != "exact":
            raise ConfigError(f"cache mode {mode!r}: use 'exact' here and a 'semantic_cache' section for semantic")
        cache = ExactCache(**spec)
    semantic = None
    if config.get("semantic_cache"):
        spec = dict(config["semantic_cache"])
        embedder = spec.pop("embedder", None)
        if isinstance(embedder, str):
            if embedder.startswith("hashing"):
                embedder = hashing_embedder()
            elif embedder.startswith("wordllama"):
                embedder = wordllama_embedder()
            else:
                raise ConfigError(f"embedder {embedder!r} is unknown; use 'hashing' or 'wordllama', or pass a callable")
        semantic = SemanticCache(embedder=embedder, **spec)
    router = None
    if config.get("routes") or config.get("classifier"):
        classifier = config.get("classifier")
        if isinstance(classifier, str) and classifier.startswith("model:"):
            classifier = ModelClassifier(classifier[len("model:"):], labels=tuple(config.get("labels") or ("simple", "complex")))
        router = Router(
            [Route(**r) for r in config.get("routes") or ()], classifier=classifier, labels=config.get("labels"),
            default=config.get("default_model"), name=config.get("name", "routed"),
        )
    fallbacks = None
    if config.get("fallbacks"):
        spec = dict(config["fallbacks"])
        targets = [Target(_provider(t["provider"], providers), t.get("model")) for t in spec.pop("targets")]
        breaker = spec.pop("breaker", True)
        if isinstance(breaker, Mapping):
            breaker = CircuitBreaker(**breaker)
        fallbacks = Fallbacks(targets, breaker=breaker, **spec)
    guardrails = None
    if config.get("guardrails"):
        spec = config["guardrails"]
        guardrails = g.Guardrails(input=[_check(c) for c in spec.get("input", ())], output=[_check(c) for c in spec.get("output", ())])
    limits = None
    if config.get("limits"):
        rules: list[RateLimit | Budget] = []
        for item in config["limits"]:
            if "rate_limit" in item:
                rules.append(RateLimit(**item["rate_limit"]))
            elif "budget" in item:
                rules.append(Budget(**item["budget"]))
            else:
                raise ConfigError(f"a limits entry is {{'rate_limit': {{...}}}} or {{'budget': {{...}}}}, got {item!r}")
        limits = Limits(*rules)
    provider = _provider(config["provider"], providers) if config.get("provider") else None
    return Gateway(
        provider, cache=cache, semantic_cache=semantic, router=router, fallbacks=fallbacks, guardrails=guardrails,
        limits=limits, retries=config.get("retries", 2), name=config.get("name", "gateway"),
    )
