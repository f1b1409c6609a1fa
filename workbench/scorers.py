"""Scorers: turn one model output into a score.

Pure logic: a scorer takes an `Example` (the output, the reference and the
item's inputs) and returns a `Score`; nothing here touches the store. Every
scorer has a JSON-able ``spec()`` that an experiment stores with its config,
and `build` turns a spec back into an equal scorer, so a stored run can be
scored again.

Built-in kinds (each a factory of the same name): ``exact_match``,
``contains_reference``, ``regex``, ``valid_json``, ``numeric_close``,
``length_bounds`` and ``llm_judge``. Your own scorers are plain functions
decorated with `scorer` (``@wb.scorer``); they receive the example's fields
by parameter name::

    @wb.scorer(pass_threshold=0.5)
    def polite(output: str) -> float:
        return 1.0 if "please" in output.lower() else 0.0

A scorer never stops a run: an exception inside a custom function, a judge
call that failed or a reply that cannot be read gives ``Score(None, ...)``
with the reason in ``rationale``. Configuration mistakes (a regex that does
not compile, a bad JSON Schema, an unknown kind) raise `ConfigError` when the
scorer is made, before any call is spent.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import math
import numbers
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from .errors import ConfigError, ProviderError

if TYPE_CHECKING:
    from .prompts import PromptVersion
    from .tracing import CallResult

__all__ = [
    "Example",
    "Judge",
    "Score",
    "Scorer",
    "build",
    "contains_reference",
    "exact_match",
    "length_bounds",
    "llm_judge",
    "numeric_close",
    "regex",
    "register_kind",
    "scorer",
    "valid_json",
]

_F = TypeVar("_F", bound=Callable[..., Any])


# -- records and protocols ---------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """What a scorer sees: one output and what it is judged against."""

    output: str
    """The model's answer."""
    expected: Any = None
    """The reference: text, a number, a list of acceptable answers or structured data; None when there is none."""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    """The template variables the output was produced from."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The dataset item's metadata."""
    item_id: str | None = None
    """The dataset item's id, when the example comes from a dataset."""


@dataclass(frozen=True)
class Score:
    """One scorer's verdict on one output."""

    value: float | None
    """The score (1.0/0.0 for pass/fail scorers); None when it could not score."""
    passed: bool | None = None
    """Pass or fail; None where pass/fail does not apply."""
    rationale: str | None = None
    """Why, in a sentence: what differed, what failed to parse, what the judge said."""
    judge_trace_id: str | None = None
    """The trace of the judge's model call, for LLM-as-judge scores."""

    def __post_init__(self) -> None:
        # One rule for every scorer, as for plain numbers a custom scorer returns: a value
        # that is not a finite number (inf, nan) is no score. Stored, it would make every
        # mean and interval of the experiment inf or NaN.
        value = self.value
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
            note = _not_finite(value)
            object.__setattr__(self, "value", None)
            object.__setattr__(self, "passed", None)
            object.__setattr__(self, "rationale", note if self.rationale is None else f"{note} ({self.rationale})")


def _not_finite(value: float, what: str = "the score was {}") -> str:
    return f"not scored: {what.format(float(value))}, not a finite number"


class Judge(Protocol):
    """A model caller handed to scorers that need one (LLM-as-judge).

    The experiment runner provides it: it registers prompts in its bench and
    traces and costs each call like any other.
    """

    def register_prompt(self, name: str, template: str, model: str, **params: Any) -> PromptVersion:
        """Register (or find the identical) prompt version."""
        ...

    async def complete(self, prompt: PromptVersion, **variables: Any) -> CallResult:
        """Render ``prompt`` with ``variables`` and call its model."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """Anything with a name, a JSON-able spec and an async ``score``."""

    name: str

    def spec(self) -> dict[str, Any]:
        """JSON-able config; ``build(spec)`` rebuilds an equal scorer."""
        ...

    async def score(self, example: Example, judge: Judge | None = None) -> Score:
        """Score one example."""
        ...


# -- the registry of built-in kinds --------------------------------------------------------------

_KINDS: dict[str, Callable[..., Scorer]] = {}
"""Built-in kind -> factory; `build` calls the factory with the spec's args."""

_CUSTOM: dict[str, _CustomScorer] = {}
"""Name -> the latest ``@scorer`` function of that name defined in this process."""


def register_kind(kind: str) -> Callable[[_F], _F]:
    """Register a factory under ``kind`` so `build` can rebuild its scorers."""
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"scorer kind must be a non-empty string, got {kind!r}")
    if kind == "custom":
        raise ConfigError("scorer kind 'custom' is reserved for @scorer functions")

    def decorate(factory: _F) -> _F:
        _KINDS[kind] = factory
        return factory

    return decorate


def build(spec: Mapping[str, Any]) -> Scorer:
    """Rebuild a scorer from its ``spec()``.

    Raises:
        ConfigError: the spec is malformed, its kind is unknown, its args do
            not fit the kind, or it names a custom scorer this session has not
            defined.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("kind"), str):
        raise ConfigError(f"a scorer spec is a dict with a 'kind', got {spec!r}")
    kind = spec["kind"]
    name = spec.get("name")
    args = spec.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"scorer spec {name or kind!r}: 'args' must be a dict, got {type(args).__name__}")
    if kind == "custom":
        return _build_custom(name, args)
    factory = _KINDS.get(kind)
    if factory is None:
        known = ", ".join(sorted([*_KINDS, "custom"]))
        raise ConfigError(f"unknown scorer kind {kind!r}; known kinds: {known}")
    try:
        return factory(**args, name=name)
    except TypeError as exc:
        raise ConfigError(f"scorer spec {name or kind!r} has args that do not fit kind {kind!r}: {exc}") from None


def _build_custom(name: Any, args: Mapping[str, Any]) -> Scorer:
    found = _CUSTOM.get(name) if isinstance(name, str) else None
    if found is None:
        raise ConfigError(
            f"custom scorer {name!r} is not defined in this session; "
            "run the cell that defines it with @wb.scorer before rebuilding"
        )
    threshold = args.get("pass_threshold", found.pass_threshold)
    if threshold == found.pass_threshold:
        return found
    # The stored threshold wins, so a rebuilt run scores as the stored one did.
    return _CustomScorer(found.fn, name=found.name, pass_threshold=threshold, register=False)


# -- shared helpers -------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_NO_REFERENCE = "no reference"


def _text(value: Any) -> str:
    """Text of an output or reference: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _references(expected: Any) -> list[str] | None:
    """The acceptable references: a list or tuple means any of them; None when there is none."""
    if expected is None:
        return None
    if isinstance(expected, (list, tuple)):
        refs = [_text(e) for e in expected if e is not None]
        return refs or None
    return [_text(expected)]


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_name(name: Any, default: str) -> str:
    if name is None:
        return default
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"scorer name must be a non-empty string, got {name!r}")
    return name


def _check_number(what: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if low is not None and high is not None else f">= {low}"
        raise ConfigError(f"{what} must be {bounds}, got {value!r}")
    return float(value)


def _passfail(ok: bool, rationale: str | None = None) -> Score:
    return Score(1.0 if ok else 0.0, passed=ok, rationale=rationale)


class _Builtin:
    """Base of the built-in scorers: a kind, a name and JSON-able args."""

    kind: ClassVar[str]

    def __init__(self, name: str | None, args: dict[str, Any]) -> None:
        self.name = _check_name(name, self.kind)
        self._args = args

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "args": copy.deepcopy(self._args)}

    async def score(self, example: Example, judge: Judge | None = None) -> Score:
        return self._score(example)

    def _score(self, example: Example) -> Score:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Builtin):
            return NotImplemented
        return self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(json.dumps(self.spec(), sort_keys=True, default=str))

    def __repr__(self) -> str:
        return f"<Scorer {self.name}>" if self.name == self.kind else f"<Scorer {self.name} ({self.kind})>"


# -- exact_match, contains_reference -------------------------------------------------------------


def _normalise(
    text: str, *, case_sensitive: bool, strip: bool = True, collapse_whitespace: bool = True,
    strip_punctuation: bool = False,
) -> str:
    if strip_punctuation:
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    if collapse_whitespace:
        text = _WS.sub(" ", text)
    if strip:
        text = text.strip()
    if not case_sensitive:
        text = text.casefold()
    return text


class _ExactMatch(_Builtin):
    kind = "exact_match"

    def _score(self, example: Example) -> Score:
        refs = _references(example.expected)
        if refs is None:
            return Score(None, rationale=_NO_REFERENCE)
        got = _normalise(_text(example.output), **self._args)
        for ref in refs:
            if got == _normalise(ref, **self._args):
                return _passfail(True, "exact match")
        shown = repr(_clip(refs[0])) + (f" (or {len(refs) - 1} other references)" if len(refs) > 1 else "")
        return _passfail(False, f"output {_clip(_text(example.output))!r} differs from expected {shown}")


@register_kind("exact_match")
def exact_match(
    *, case_sensitive: bool = False, strip: bool = True, collapse_whitespace: bool = True,
    strip_punctuation: bool = False, name: str | None = None,
) -> Scorer:
    """Pass when the output equals the reference after normalisation.

    The reference may be a list of acceptable answers (any one passes).
    Without a reference the score is None.

    Args:
        case_sensitive: compare case as written (default: ignore case).
        strip: ignore leading and trailing whitespace.
        collapse_whitespace: treat any run of whitespace as one space.
        strip_punctuation: drop punctuation characters before comparing.
        name: the scorer's name (default ``exact_match``).
    """
    return _ExactMatch(name, {
        "case_sensitive": bool(case_sensitive), "strip": bool(strip),
        "collapse_whitespace": bool(collapse_whitespace), "strip_punctuation": bool(strip_punctuation),
    })


class _ContainsReference(_Builtin):
    kind = "contains_reference"

    def _score(self, example: Example) -> Score:
        refs = _references(example.expected)
        if refs is None:
            return Score(None, rationale=_NO_REFERENCE)
        case_sensitive = self._args["case_sensitive"]
        got = _normalise(_text(example.output), case_sensitive=case_sensitive)
        wanted = [r for r in refs if _normalise(r, case_sensitive=case_sensitive)]
        if not wanted:
            return Score(None, rationale="the reference is empty")
        for ref in wanted:
            if _normalise(ref, case_sensitive=case_sensitive) in got:
                return _passfail(True, f"output contains {_clip(ref)!r}")
        if len(wanted) == 1:
            return _passfail(False, f"output does not contain {_clip(wanted[0])!r}")
        return _passfail(False, f"output contains none of the {len(wanted)} references, e.g. {_clip(wanted[0])!r}")


@register_kind("contains_reference")
def contains_reference(*, case_sensitive: bool = False, name: str | None = None) -> Scorer:
    """Pass when the output contains the reference text (whitespace normalised).

    The reference may be a list of acceptable strings; containing any passes.
    """
    return _ContainsReference(name, {"case_sensitive": bool(case_sensitive)})


# -- regex ----------------------------------------------------------------------------------------

_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII}


class _Regex(_Builtin):
    kind = "regex"

    def __init__(self, name: str | None, args: dict[str, Any], compiled: re.Pattern[str]) -> None:
        super().__init__(name, args)
        self._compiled = compiled

    def _score(self, example: Example) -> Score:
        m = self._compiled.search(_text(example.output))
        if self._args["must_match"]:
            if m:
                return _passfail(True, f"matched {_clip(m.group(0))!r} at {m.start()}")
            return _passfail(False, f"no match for /{_clip(self._args['pattern'])}/")
        if m:
            return _passfail(False, f"unwanted match {_clip(m.group(0))!r} at {m.start()}")
        return _passfail(True, f"no match for /{_clip(self._args['pattern'])}/, as required")


@register_kind("regex")
def regex(pattern: str, *, flags: str = "", must_match: bool = True, name: str | None = None) -> Scorer:
    """Pass when the pattern is found in the output (``re.search``), or not found with ``must_match=False``.

    Args:
        pattern: a Python regular expression.
        flags: letters from ``imsxa`` (ignore case, multiline, dot matches
            newline, verbose, ASCII).
        must_match: False turns it into a "must not match" check.
        name: the scorer's name (default ``regex``); name each regex scorer
            of a run differently.
    """
    if not isinstance(pattern, str):
        raise ConfigError(f"regex pattern must be a string, got {type(pattern).__name__}")
    if not isinstance(flags, str):
        raise ConfigError(f"regex flags must be a string of letters from 'imsxa', got {flags!r}")
    value = 0
    for letter in flags:
        if letter not in _REGEX_FLAGS:
            raise ConfigError(f"unknown regex flag {letter!r} in flags={flags!r}; use letters from 'imsxa'")
        value |= _REGEX_FLAGS[letter]
    try:
        compiled = re.compile(pattern, value)
    except re.error as exc:
        raise ConfigError(f"regex pattern {pattern!r} does not compile: {exc}") from None
    return _Regex(name, {"pattern": pattern, "flags": flags, "must_match": bool(must_match)}, compiled)


# -- valid_json -----------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)


def _parse_json_output(text: str) -> Any:
    """Parse JSON from an output, alone or in a fenced ```json block.

    Raises:
        ValueError: neither the text nor any fenced block is JSON (the message
            is the first parse error).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        first = exc
    for block in _FENCE.finditer(text):
        try:
            return json.loads(block.group(1))
        except json.JSONDecodeError:
            continue
    raise ValueError(str(first))


class _ValidJson(_Builtin):
    kind = "valid_json"

    def __init__(self, name: str | None, args: dict[str, Any], validator: Any) -> None:
        super().__init__(name, args)
        self._validator = validator

    def _score(self, example: Example) -> Score:
        try:
            doc = _parse_json_output(_text(example.output))
        except ValueError as exc:
            return _passfail(False, f"not JSON: {exc}")
        if self._validator is None:
            return _passfail(True, "valid JSON")
        from jsonschema.exceptions import best_match

        errors = list(self._validator.iter_errors(doc))
        if not errors:
            return _passfail(True, "valid JSON, matches the schema")
        err = best_match(errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return _passfail(False, f"schema violation at {err.json_path}: {_clip(err.message, 200)}{more}")


@register_kind("valid_json")
def valid_json(*, schema: Mapping[str, Any] | bool | None = None, name: str | None = None) -> Scorer:
    """Pass when the output is JSON (alone or in a ```json fence) and, given a schema, valid against it.

    The schema's ``$schema`` picks the JSON Schema draft (2020-12 when absent);
    it is checked here, so a bad schema fails before the run.
    """
    validator = None
    if schema is not None:
        if not isinstance(schema, (Mapping, bool)):
            raise ConfigError(f"valid_json schema must be a JSON Schema dict, got {type(schema).__name__}")
        try:
            json.dumps(schema)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"valid_json schema must be plain JSON so it can be stored: {exc}") from None
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for

        cls = validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise ConfigError(
                f"valid_json schema is not a valid JSON Schema: {exc.message} (at {exc.json_path})"
            ) from None
        schema = copy.deepcopy(dict(schema)) if isinstance(schema, Mapping) else schema
        validator = cls(schema)
    return _ValidJson(name, {"schema": schema}, validator)


# -- numeric_close --------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"""
    (?<![\w.,])                                   # not the tail of a word or of another number
    (?P<sign>[-+\u2212])?
    \$?
    (?P<sign2>[-\u2212])?                         # $-5
    (?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)? | \d+(?:\.\d+)? | \.\d+)
    (?P<exp>[eE][-+]?\d+)?
    """,
    re.VERBOSE,
)


def _first_number(text: str) -> float | None:
    """The first number in a text: signs, decimals, ``1,234.5`` separators and a leading ``$``."""
    m = _NUMBER.search(text)
    if m is None:
        return None
    value = float(m.group("digits").replace(",", "") + (m.group("exp") or ""))
    negative = (m.group("sign") in ("-", "\u2212")) != (m.group("sign2") is not None)
    return -value if negative else value


def _fmt(x: float) -> str:
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


class _NumericClose(_Builtin):
    kind = "numeric_close"

    def _score(self, example: Example) -> Score:
        expected = example.expected
        if expected is None:
            return Score(None, rationale=_NO_REFERENCE)
        if isinstance(expected, numbers.Real) and not isinstance(expected, bool):
            want: float | None = float(expected)
        elif isinstance(expected, str):
            want = _first_number(expected)
        else:
            want = None
        if want is None:
            return Score(None, rationale=f"expected {_clip(_text(expected))!r} is not a number")
        got = _first_number(_text(example.output))
        if got is None:
            return _passfail(False, f"no number in the output; expected {_fmt(want)}")
        ok = math.isclose(got, want, rel_tol=self._args["rel_tol"], abs_tol=self._args["abs_tol"])
        return _passfail(ok, f"got {_fmt(got)}, expected {_fmt(want)}" + ("" if ok else " (outside tolerance)"))


@register_kind("numeric_close")
def numeric_close(*, rel_tol: float = 0.0, abs_tol: float = 1e-9, name: str | None = None) -> Scorer:
    """Pass when the first number in the output is close to the expected number (``math.isclose``)."""
    return _NumericClose(name, {
        "rel_tol": _check_number("numeric_close rel_tol", rel_tol, low=0),
        "abs_tol": _check_number("numeric_close abs_tol", abs_tol, low=0),
    })


# -- length_bounds --------------------------------------------------------------------------------


class _LengthBounds(_Builtin):
    kind = "length_bounds"

    def _score(self, example: Example) -> Score:
        text = _text(example.output).strip()
        sizes = {"chars": len(text), "words": len(text.split())}
        problems = []
        for unit, size in sizes.items():
            low, high = self._args[f"min_{unit}"], self._args[f"max_{unit}"]
            if low is not None and size < low:
                problems.append(f"{size} {unit} < min {low}")
            if high is not None and size > high:
                problems.append(f"{size} {unit} > max {high}")
        if problems:
            return _passfail(False, "; ".join(problems))
        return _passfail(True, f"{sizes['chars']} chars, {sizes['words']} words, within bounds")


@register_kind("length_bounds")
def length_bounds(
    *, min_chars: int | None = None, max_chars: int | None = None, min_words: int | None = None,
    max_words: int | None = None, name: str | None = None,
) -> Scorer:
    """Pass when the output's length (surrounding whitespace stripped) is within every bound given."""
    args = {"min_chars": min_chars, "max_chars": max_chars, "min_words": min_words, "max_words": max_words}
    if all(v is None for v in args.values()):
        raise ConfigError("length_bounds needs at least one of min_chars, max_chars, min_words, max_words")
    for key, value in args.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"length_bounds {key} must be a whole number >= 0, got {value!r}")
    for unit in ("chars", "words"):
        low, high = args[f"min_{unit}"], args[f"max_{unit}"]
        if low is not None and high is not None and low > high:
            raise ConfigError(f"length_bounds min_{unit}={low} is greater than max_{unit}={high}")
    return _LengthBounds(name, args)


# -- llm_judge ------------------------------------------------------------------------------------

_JUDGE_REPLY_FORMAT = "Reply in the form:\nSCORE: <a number from 0 to 1>\nRATIONALE: <one sentence>"
"""The closing instruction of every judge prompt; the simulated provider recognises judge prompts by it."""

_JUDGE_TEMPLATE = """You are an impartial judge grading one response of an AI system.

Rubric:
{rubric}

The inputs the response was produced from:
<input>
{{input}}
</input>

The response to grade:
<output>
{{output}}
</output>

The reference answer (an empty block means there is none):
<expected>
{{expected}}
</expected>

Grade the response against the rubric; it need not match the reference word for word.
{reply_format}"""

_SCORE_RE = re.compile(
    r"\bscore\W{0,4}?[:=]\s*\**\s*(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:(?P<pct>%)|/\s*(?P<den>\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)
_RATIONALE_RE = re.compile(r"\brationale\W{0,4}?[:=]\s*\**\s*(?P<text>.+)", re.IGNORECASE | re.DOTALL)


def _judge_template(rubric: str) -> str:
    """The judge prompt's template for a rubric (the rubric's braces escaped)."""
    escaped = rubric.replace("{", "{{").replace("}", "}}")
    return _JUDGE_TEMPLATE.format(rubric=escaped.strip(), reply_format=_JUDGE_REPLY_FORMAT)


def _parse_judge_reply(text: str) -> tuple[float, str | None] | None:
    """``(score clamped to [0, 1], rationale)`` from a judge's reply, or None when there is no score.

    Accepts ``SCORE: 0.8``, ``**Score:** 0.8``, ``SCORE: 8/10`` and ``SCORE: 80%``.
    """
    m = _SCORE_RE.search(text)
    if m is None:
        return None
    value = float(m.group("num"))
    if m.group("pct"):
        value /= 100
    elif m.group("den"):
        den = float(m.group("den"))
        if den == 0:
            return None
        value /= den
    value = min(1.0, max(0.0, value))
    r = _RATIONALE_RE.search(text)
    rationale = r.group("text").strip().strip("*").strip() if r else None
    if not rationale:
        rest = (text[: m.start()] + text[m.end():]).strip()
        rationale = rest or None
    return value, rationale


def _render_inputs(inputs: Mapping[str, Any]) -> str:
    return "\n".join(f"{key}: {_text(value)}" for key, value in inputs.items())


class _LLMJudge(_Builtin):
    kind = "llm_judge"

    def __init__(self, name: str | None, args: dict[str, Any]) -> None:
        super().__init__(name, args)
        self.template = _judge_template(args["rubric"])
        self._prompt: tuple[Any, PromptVersion] | None = None
        """(judge, prompt) of the last registration; a new judge (another bench) registers again."""

    @property
    def prompt_name(self) -> str:
        """The registered prompt's name, ``judge:<name>``."""
        return f"judge:{self.name}"

    @property
    def rubric(self) -> str:
        return self._args["rubric"]

    @property
    def model(self) -> str:
        """The judging model (the experiment runner prices judge calls with it)."""
        return self._args["model"]

    @property
    def max_tokens(self) -> int:
        return self._args["max_tokens"]

    @property
    def pass_threshold(self) -> float:
        return self._args["pass_threshold"]

    def _prompt_for(self, judge: Judge) -> PromptVersion:
        cached = self._prompt
        if cached is not None and cached[0] is judge:
            return cached[1]
        prompt = judge.register_prompt(
            self.prompt_name, self.template, self._args["model"],
            temperature=0, max_tokens=self._args["max_tokens"],
        )
        self._prompt = (judge, prompt)
        return prompt

    async def score(self, example: Example, judge: Judge | None = None) -> Score:
        if judge is None:
            raise ConfigError(
                f"llm_judge scorer {self.name!r} needs a model to call: LLM-as-judge runs inside an "
                "experiment (pass it in scorers=[...]), or give it a judge: await scorer.score(example, judge=...)"
            )
        prompt = self._prompt_for(judge)
        try:
            result = await judge.complete(
                prompt,
                input=_render_inputs(example.inputs),
                output=_text(example.output),
                expected=_text(example.expected),
            )
        except ProviderError as exc:
            return Score(None, rationale=f"judge call failed: {exc}")
        trace_id = getattr(result, "trace_id", None)
        if getattr(result, "status", "ok") == "error":
            error = getattr(result, "error", None)
            return Score(None, rationale=f"judge call failed: {error or 'error status'}", judge_trace_id=trace_id)
        text = getattr(result, "text", "") or ""
        parsed = _parse_judge_reply(text)
        if parsed is None:
            return Score(None, rationale=f"judge reply not understood: {text[:200]}", judge_trace_id=trace_id)
        value, rationale = parsed
        return Score(value, passed=value >= self._args["pass_threshold"], rationale=rationale,
                     judge_trace_id=trace_id)


@register_kind("llm_judge")
def llm_judge(
    rubric: str, *, model: str = "claude-haiku-4-5", name: str | None = "judge",
    pass_threshold: float = 0.5, max_tokens: int = 300,
) -> Scorer:
    """Ask a model to grade the output against a rubric (LLM-as-judge).

    On first use it registers the prompt ``judge:<name>`` (temperature 0)
    through the judge it is given; the output, the reference and the inputs
    are filled in per example, and the reply's ``SCORE:`` (clamped to [0, 1])
    becomes the value.

    Args:
        rubric: what a good response is; braces are kept literally.
        model: the judging model.
        name: the scorer's name and the prompt's suffix; name each judge of
            a run differently.
        pass_threshold: a score at or above it passes.
        max_tokens: the judge's reply budget.
    """
    if not isinstance(rubric, str) or not rubric.strip():
        raise ConfigError("llm_judge needs a rubric: a non-empty description of a good response")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"llm_judge model must be a model name such as 'claude-haiku-4-5', got {model!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"llm_judge max_tokens must be a whole number >= 1, got {max_tokens!r}")
    threshold = _check_number("llm_judge pass_threshold", pass_threshold, low=0, high=1)
    return _LLMJudge(name if name is not None else "judge", {
        "rubric": rubric, "model": model, "pass_threshold": threshold, "max_tokens": max_tokens,
    })


# -- custom scorers -------------------------------------------------------------------------------

_EXAMPLE_FIELDS = ("output", "expected", "inputs", "metadata", "item_id", "example")
"""Parameter names a custom scorer function can ask for."""


def _call_plan(fn: Callable[..., Any], name: str) -> tuple[list[str], list[str]]:
    """(positional-only fields, keyword fields) to pass to ``fn``; refuses other required parameters."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"scorer {name!r}: cannot read the function's parameters: {exc}") from None
    positional: list[str] = []
    keywords: list[str] = []
    positional_open = True
    var_keyword = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            var_keyword = True
            continue
        if p.name not in _EXAMPLE_FIELDS:
            if p.default is p.empty:
                raise ConfigError(
                    f"scorer {name!r}: parameter {p.name!r} is not something a scorer receives; "
                    f"name parameters after what they need ({', '.join(_EXAMPLE_FIELDS)}) "
                    f"or give {p.name!r} a default"
                )
            if p.kind is p.POSITIONAL_ONLY:
                positional_open = False
            continue
        if p.kind is p.POSITIONAL_ONLY:
            if not positional_open:
                raise ConfigError(
                    f"scorer {name!r}: positional-only parameter {p.name!r} follows one the scorer cannot fill; "
                    "make the parameters regular ones"
                )
            positional.append(p.name)
        else:
            keywords.append(p.name)
    if var_keyword:
        keywords += [f for f in _EXAMPLE_FIELDS if f not in positional and f not in keywords]
    return positional, keywords


def _field(example: Example, name: str) -> Any:
    return example if name == "example" else getattr(example, name)


class _CustomScorer:
    """A function turned into a scorer by `scorer`; still callable as the function."""

    kind = "custom"

    def __init__(
        self, fn: Callable[..., Any], *, name: str | None = None, pass_threshold: float | None = None,
        register: bool = True,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"@scorer decorates a function, got {fn!r}; use @scorer(name='...') for options")
        default = getattr(fn, "__name__", None)
        if name is None and not (isinstance(default, str) and default.isidentifier()):
            raise ConfigError(f"scorer {fn!r} has no usable __name__; give it one with @scorer(name='...')")
        self.fn = fn
        self.name = _check_name(name, default)
        self.pass_threshold = (
            None if pass_threshold is None else _check_number(f"scorer {self.name!r} pass_threshold", pass_threshold)
        )
        self._positional, self._keywords = _call_plan(fn, self.name)
        functools.update_wrapper(self, fn, updated=())
        if register:
            _CUSTOM[self.name] = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def spec(self) -> dict[str, Any]:
        function = f"{getattr(self.fn, '__module__', '?')}:{getattr(self.fn, '__qualname__', self.name)}"
        return {"kind": "custom", "name": self.name, "function": function,
                "args": {"pass_threshold": self.pass_threshold}}

    async def score(self, example: Example, judge: Judge | None = None) -> Score:
        args = [_field(example, f) for f in self._positional]
        kwargs = {f: _field(example, f) for f in self._keywords}
        try:
            result = self.fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - one bad example must not stop the run
            return Score(None, rationale=f"{type(exc).__name__}: {exc}")
        return self._to_score(result)

    def _value(self, value: Any) -> tuple[float | None, bool | None, str | None]:
        """(value, passed from a bool or the threshold, problem) for a returned value."""
        if value is None:
            return None, None, None
        if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", None) == "b":
            return (1.0 if value else 0.0), bool(value), None
        if isinstance(value, numbers.Real):
            number = float(value)
            if not math.isfinite(number):
                return None, None, _not_finite(number, f"scorer {self.name!r} returned {{}}")
            passed = None if self.pass_threshold is None else number >= self.pass_threshold
            return number, passed, None
        return None, None, (
            f"scorer {self.name!r} returned {type(value).__name__}; return a bool, a number, a Score, "
            "a dict with value/passed/rationale, (value, rationale) or None"
        )

    def _to_score(self, result: Any) -> Score:
        if isinstance(result, Score):
            if result.value is None and (result.rationale or "").startswith("not scored: the score was "):
                # Score() itself refused a non-finite value; name the scorer as for a plain number.
                return Score(None, rationale=result.rationale.replace(
                    "the score was ", f"scorer {self.name!r} returned a Score of ", 1))
            return result
        rationale: Any = None
        explicit_passed: Any = None
        if isinstance(result, Mapping):
            unknown = sorted(set(map(str, result)) - {"value", "passed", "rationale"})
            if unknown:
                return Score(None, rationale=(
                    f"scorer {self.name!r} returned a dict with unknown keys {', '.join(map(repr, unknown))}; "
                    "use 'value', 'passed' and 'rationale'"
                ))
            value, explicit_passed, rationale = result.get("value"), result.get("passed"), result.get("rationale")
        elif isinstance(result, tuple):
            if len(result) != 2:
                return Score(None, rationale=(
                    f"scorer {self.name!r} returned a tuple of {len(result)}; return (value, rationale)"
                ))
            value, rationale = result
        else:
            value = result
        number, passed, problem = self._value(value)
        if problem:
            return Score(None, rationale=problem)
        if explicit_passed is not None:
            passed = bool(explicit_passed)
        return Score(number, passed=passed, rationale=None if rationale is None else str(rationale))

    def __repr__(self) -> str:
        return f"<Scorer {self.name} (custom)>"


def scorer(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, pass_threshold: float | None = None,
) -> Any:
    """Turn a function into a scorer: ``@wb.scorer`` or ``@wb.scorer(name=..., pass_threshold=...)``.

    The function may be sync or async and receives, by parameter name, any of
    ``output``, ``expected``, ``inputs``, ``metadata``, ``item_id`` and
    ``example``. It may return a bool (pass/fail), a number (passed when
    ``pass_threshold`` is given and reached), a `Score`, a dict with
    ``value``/``passed``/``rationale``, a ``(value, rationale)`` tuple, or
    None (not scored). An exception it raises becomes ``Score(None)`` with
    the error as rationale. The scorer is registered by name for this
    process, so `build` can find it again; the decorated object stays
    callable as the original function.

    Raises:
        ConfigError: a required parameter is not one of the names above.
    """
    if fn is not None:
        return _CustomScorer(fn, name=name, pass_threshold=pass_threshold)

    def decorate(func: Callable[..., Any]) -> _CustomScorer:
        return _CustomScorer(func, name=name, pass_threshold=pass_threshold)

    return decorate

