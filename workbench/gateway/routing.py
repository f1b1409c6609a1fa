"""Model routing: rules first, then a classifier, else the requested model.

A rule matches on what the caller and the request say (prompt name, input
length, user tier, any metadata key, a regex over the question); a classifier
labels the request (a callable, or a cheap model call) and the label picks a
model. Every decision says which rule or label chose the model and the inputs
it looked at, so the trace explains it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..providers.base import Request

if TYPE_CHECKING:
    from ._core import Caller

__all__ = ["ModelClassifier", "Route", "Router"]

CHARS_PER_TOKEN = 4
"""Input length for rules is estimated at 4 characters a token: no tokenizer call on the hot path."""


def input_tokens(request: Request) -> int:
    """Rough input tokens of a request (system prompt and every turn)."""
    chars = len(request.system or "") + sum(len(m.content) for m in request.messages)
    return -(-chars // CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Route:
    """Send matching requests to ``model``.

    Every condition given must hold: ``Route("claude-haiku-4-5", max_input_tokens=400, tier="free")``.

    Args:
        model: the model to call when the route matches.
        name: shown on the trace (default: built from the conditions).
        prompt: the prompt name (``bench.prompts`` name) the request was rendered from.
        min_input_tokens / max_input_tokens: bounds on the estimated input length.
        tier: the caller's ``metadata["tier"]`` (e.g. free, pro).
        metadata: other caller metadata keys that must equal these values.
        matches: a regex searched in the last user turn (case-insensitive).
    """

    model: str
    name: str | None = None
    prompt: str | None = None
    min_input_tokens: int | None = None
    max_input_tokens: int | None = None
    tier: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    matches: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"a Route needs a model name, got {self.model!r}")
        for attr in ("min_input_tokens", "max_input_tokens"):
            value = getattr(self, attr)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"Route {attr} must be an integer >= 0, got {value!r}")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ConfigError(f"Route matches={self.matches!r} is not a valid regex: {exc}") from None

    @cached_property  # asked for on every routed call; a frozen route's conditions never change
    def label(self) -> str:
        if self.name:
            return self.name
        parts = [f"{k}={v}" for k, v in self.conditions().items()]
        return " and ".join(parts) or "always"

    def conditions(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("prompt", "min_input_tokens", "max_input_tokens", "tier", "matches"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update({f"metadata.{k}": v for k, v in self.metadata.items()})
        return out

    def match(self, request: Request, caller: Caller, tokens: int) -> bool:
        if self.prompt is not None and request.metadata.get("prompt_name") != self.prompt:
            return False
        if self.min_input_tokens is not None and tokens < self.min_input_tokens:
            return False
        if self.max_input_tokens is not None and tokens > self.max_input_tokens:
            return False
        if self.tier is not None and caller.metadata.get("tier") != self.tier:
            return False
        if any(caller.metadata.get(k) != v for k, v in self.metadata.items()):
            return False
        if self.matches is not None:
            last = request.messages[-1].content if request.messages else ""
            if re.search(self.matches, last, re.I) is None:
                return False
        return True

    def spec(self) -> dict[str, Any]:
        return {"model": self.model, "name": self.name, **self.conditions()}


class ModelClassifier:
    """Labels a request's complexity with a cheap model call.

    Args:
        provider: who answers the classification (the gateway's provider by default).
        model: the cheap model, e.g. ``claude-haiku-4-5``.
        labels: the labels the model may answer with; the first one found in its
            answer wins, else ``default``.
        default: the label when the answer names none.
    """

    PROMPT = (
        "Label how hard this customer request is to answer well. Reply with one word: {labels}.\n\n"
        "Request: {question}"
    )

    def __init__(self, model: str, labels: tuple[str, ...] = ("simple", "complex"), default: str = "complex", provider: Any = None) -> None:
        if default not in labels:
            raise ConfigError(f"ModelClassifier default {default!r} must be one of its labels {labels}")
        self.model = model
        self.labels = tuple(labels)
        self.default = default
        self.provider = provider
        self.name = f"model:{model}"

    async def __call__(self, request: Request, provider: Any) -> tuple[str, dict[str, Any]]:
        question = request.messages[-1].content if request.messages else ""
        ask = Request.of(self.model, self.PROMPT.format(labels=", ".join(self.labels), question=question[:4000]), max_tokens=5)
        completion = await (self.provider or provider).complete(ask)
        answer = completion.text.lower()
        label = next((lab for lab in self.labels if lab in answer), self.default)
        u = completion.usage
        return label, {"answer": completion.text[:40], "classifier_model": self.model,
                       "classifier_usage": [u.input_tokens, u.output_tokens]}


class Router:
    """Picks the model for each request.

    Args:
        routes: tried in order; the first that matches picks the model.
        classifier: when no route matches, ``classifier(request) -> label`` (sync or
            async; a ``ModelClassifier`` makes a cheap model call) and ``labels``
            maps each label to a model.
        labels: ``{"simple": "claude-haiku-4-5", "complex": "claude-sonnet-4-5"}``.
        default: the model when nothing matches (None: the requested model).
        name: the policy name on traces and in experiments (``routed``).
    """

    def __init__(
        self,
        routes: list[Route] | tuple[Route, ...] = (),
        *,
        classifier: Callable[..., Any] | None = None,
        labels: Mapping[str, str] | None = None,
        default: str | None = None,
        name: str = "routed",
    ) -> None:
        for r in routes:
            if not isinstance(r, Route):
                raise ConfigError(f"Router routes must be wb.gateway.Route(...), got {r!r}")
        if classifier is not None and not labels:
            raise ConfigError("a Router classifier needs labels={label: model, ...} to turn its label into a model")
        if classifier is not None and not callable(classifier):
            raise ConfigError(f"Router classifier must be callable (request -> label), got {classifier!r}")
        self.routes = tuple(routes)
        self.classifier = classifier
        self.labels = dict(labels or {})
        self.default = default
        self.name = name

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "routes": [r.spec() for r in self.routes],
            "classifier": None if self.classifier is None else getattr(self.classifier, "name", getattr(self.classifier, "__qualname__", repr(self.classifier))),
            "labels": self.labels,
            "default": self.default,
        }

    async def choose(self, request: Request, caller: Caller, provider: Any) -> tuple[str, dict[str, Any]]:
        """(model, the decision for the trace)."""
        tokens = input_tokens(request)
        inputs = {"input_tokens_est": tokens, "prompt": request.metadata.get("prompt_name"),
                  "tier": caller.metadata.get("tier")}
        for route in self.routes:
            if route.match(request, caller, tokens):
                return route.model, {"model": route.model, "by": "rule", "rule": route.label, "inputs": inputs}
        if self.classifier is not None:
            result = self.classifier(request, provider) if isinstance(self.classifier, ModelClassifier) else self.classifier(request)
            if hasattr(result, "__await__"):
                result = await result
            extra: dict[str, Any] = {}
            if isinstance(result, tuple):
                result, extra = result
            label = str(result)
            model = self.labels.get(label)
            if model is None:
                raise ConfigError(
                    f"Router classifier returned label {label!r}, which labels= does not map to a model "
                    f"(known: {', '.join(self.labels)})"
                )
            return model, {"model": model, "by": "classifier", "label": label, "inputs": {**inputs, **extra}}
        model = self.default or request.model
        return model, {"model": model, "by": "default", "inputs": inputs}

    def __repr__(self) -> str:
        return f"Router({len(self.routes)} routes, classifier={'yes' if self.classifier else 'no'}, name={self.name!r})"
