"""Scorers: built-ins, custom @scorer functions, specs, LLM-as-judge and the simulated judge."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

import pytest

from workbench import scorers as S
from workbench.errors import ConfigError, Overloaded
from workbench.prompts import PromptVersion, parse_template
from workbench.providers._simjudge import is_judge_prompt, judge_reply


def run(scorer: Any, output: Any, expected: Any = None, judge: Any = None, **kwargs: Any) -> S.Score:
    return asyncio.run(scorer.score(S.Example(output, expected, **kwargs), judge))


# -- records ------------------------------------------------------------------------------------


def test_example_defaults_are_independent_and_frozen():
    a, b = S.Example("x"), S.Example("y")
    assert a.inputs == {} and a.metadata == {} and a.expected is None and a.item_id is None
    assert a.inputs is not b.inputs
    with pytest.raises(AttributeError):
        a.output = "z"  # type: ignore[misc]


def test_builtins_satisfy_the_scorer_protocol_and_have_cheap_reprs():
    assert isinstance(S.contains_reference(), S.Scorer)
    assert repr(S.contains_reference()) == "<Scorer contains_reference>"
    assert repr(S.regex("x", name="has_x")) == "<Scorer has_x (regex)>"


# -- exact_match --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "output", "expected", "passed"),
    [
        ({}, "Paris", "Paris", True),
        ({}, "  paris \n", "Paris", True),
        ({}, "New   York\tCity", "new york city", True),
        ({}, "Rome", "Paris", False),
        ({"case_sensitive": True}, "paris", "Paris", False),
        ({"strip": False}, " Paris", "Paris", False),
        ({"collapse_whitespace": False}, "New  York", "New York", False),
        ({}, "Paris.", "Paris", False),
        ({"strip_punctuation": True}, "Paris!", "paris", True),
        ({"strip_punctuation": True}, "it's O.K.", "its OK", True),
        ({}, "42", 42, True),
        ({}, "Lyon", ["Paris", "lyon"], True),
        ({}, "Nice", ["Paris", "Lyon"], False),
    ],
)
def test_exact_match(kwargs, output, expected, passed):
    score = run(S.exact_match(**kwargs), output, expected)
    assert score.passed is passed
    assert score.value == (1.0 if passed else 0.0)


def test_exact_match_failure_shows_both_texts():
    score = run(S.exact_match(), "Rome", "Paris")
    assert "Rome" in score.rationale and "Paris" in score.rationale


@pytest.mark.parametrize("expected", [None, []])
def test_exact_match_without_reference_does_not_score(expected):
    assert run(S.exact_match(), "Paris", expected) == S.Score(None, rationale="no reference")


# -- contains_reference -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "output", "expected", "passed"),
    [
        ({}, "The capital of France is Paris.", "paris", True),
        ({}, "Open Settings,\n  then   Billing.", "settings, then billing", True),
        ({}, "The capital is Lyon.", "Paris", False),
        ({"case_sensitive": True}, "the answer is paris", "Paris", False),
        ({"case_sensitive": True}, "the answer is Paris", "Paris", True),
        ({}, "Reset it from the Account page.", ["Security page", "account page"], True),
        ({}, "No idea.", ["Security page", "account page"], False),
    ],
)
def test_contains_reference(kwargs, output, expected, passed):
    score = run(S.contains_reference(**kwargs), output, expected)
    assert score.passed is passed
    assert score.value == (1.0 if passed else 0.0)


def test_contains_reference_edges():
    assert run(S.contains_reference(), "anything", None) == S.Score(None, rationale="no reference")
    empty = run(S.contains_reference(), "anything", "   ")
    assert empty.value is None and "empty" in empty.rationale
    assert "Paris" in run(S.contains_reference(), "Lyon", "Paris").rationale


# -- regex ----------------------------------------------------------------------------------------


def test_regex_match_and_no_match():
    order_id = S.regex(r"ORD-\d{4}")
    hit = run(order_id, "Your order ORD-1234 shipped")
    assert hit.passed is True and hit.value == 1.0 and "ORD-1234" in hit.rationale
    miss = run(order_id, "no order here")
    assert miss.passed is False and miss.value == 0.0


def test_regex_flags_and_must_not_match():
    assert run(S.regex("^sorry", flags="im"), "Hello\nSORRY about that").passed is True
    assert run(S.regex("^sorry"), "Hello\nSORRY about that").passed is False
    no_apology = S.regex(r"\bsorry\b", flags="i", must_match=False, name="no_apology")
    assert run(no_apology, "Here is your refund.").passed is True
    assert run(no_apology, "Sorry, here is your refund.").passed is False


def test_regex_bad_pattern_and_flag_fail_at_construction():
    with pytest.raises(ConfigError) as info:
        S.regex("([a-z]+")
    assert "([a-z]+" in str(info.value) and "missing )" in str(info.value)
    with pytest.raises(ConfigError, match="unknown regex flag 'q'"):
        S.regex("x", flags="iq")


# -- valid_json -----------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "maximum": 1}},
    "required": ["answer"],
}


@pytest.mark.parametrize(
    "output",
    [
        '{"answer": "Paris"}',
        '  [1, 2, 3]\n',
        'Here you go:\n```json\n{"answer": "Paris"}\n```\nAnything else?',
        '```\n{"answer": "Paris"}\n```',
    ],
)
def test_valid_json_accepts_plain_and_fenced(output):
    score = run(S.valid_json(), output)
    assert score.passed is True and score.value == 1.0


@pytest.mark.parametrize("output", ["", "Paris", '{"answer": "Paris",}', "```json\nnot json\n```"])
def test_valid_json_rejects_non_json(output):
    score = run(S.valid_json(), output)
    assert score.passed is False and score.value == 0.0
    assert score.rationale.startswith("not JSON")


def test_valid_json_schema_pass_and_violation_path():
    scorer = S.valid_json(schema=SCHEMA)
    assert run(scorer, '```json\n{"answer": "Paris", "confidence": 0.9}\n```').passed is True
    wrong_type = run(scorer, '{"answer": "Paris", "confidence": 3}')
    assert wrong_type.passed is False
    assert "$.confidence" in wrong_type.rationale and "3 is greater than the maximum of 1" in wrong_type.rationale
    missing = run(scorer, '{"confidence": 0.5}')
    assert missing.passed is False and "'answer' is a required property" in missing.rationale


def test_valid_json_bad_schema_fails_at_construction():
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        S.valid_json(schema={"type": "strnig"})
    with pytest.raises(ConfigError, match="JSON Schema dict"):
        S.valid_json(schema="object")  # type: ignore[arg-type]


# -- numeric_close --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected", "passed"),
    [
        ("The total is 42.", 42, True),
        ("The total is $1,234.50 including tax", 1234.5, True),
        ("It dropped to -3.5 degrees", -3.5, True),
        ("Balance: -$1,200", -1200, True),
        ("Balance: $-7", -7, True),
        ("about 1,000,000 users", "1,000,000", True),
        ("0.5 of them", ".5", True),
        ("The total is 43.", 42, False),
        ("-42", 42, False),
        ("3 apples and 42 pears", 42, False),  # the first number counts
    ],
)
def test_numeric_close_parses_the_first_number(output, expected, passed):
    score = run(S.numeric_close(), output, expected)
    assert score.passed is passed
    assert score.value == (1.0 if passed else 0.0)


def test_numeric_close_tolerances_and_rationale():
    assert run(S.numeric_close(), "3.14159", 3.14).passed is False
    assert run(S.numeric_close(abs_tol=0.01), "3.14159", 3.14).passed is True
    assert run(S.numeric_close(rel_tol=0.05), "about 104", 100).passed is True
    assert run(S.numeric_close(rel_tol=0.05), "about 106", 100).passed is False
    score = run(S.numeric_close(), "It costs $1,299", 1300)
    assert "1299" in score.rationale and "1300" in score.rationale


def test_numeric_close_edges():
    assert run(S.numeric_close(), "42", None) == S.Score(None, rationale="no reference")
    bad_ref = run(S.numeric_close(), "42", "forty-two")
    assert bad_ref.value is None and "not a number" in bad_ref.rationale
    no_number = run(S.numeric_close(), "I cannot say.", 42)
    assert no_number.passed is False and "no number" in no_number.rationale
    assert run(S.numeric_close(), "COVID-19 cases", 19).passed is True  # a hyphen inside a word is no sign
    with pytest.raises(ConfigError, match="rel_tol"):
        S.numeric_close(rel_tol=-1)


# -- length_bounds --------------------------------------------------------------------------------


def test_length_bounds_chars_and_words():
    short = S.length_bounds(max_chars=10)
    assert run(short, "  short  ").passed is True
    too_long = run(short, "far too long for this")
    assert too_long.passed is False and "21 chars > max 10" in too_long.rationale
    words = S.length_bounds(min_words=2, max_words=4)
    assert run(words, "one").passed is False
    assert run(words, "one two three").passed is True
    assert "5 words > max 4" in run(words, "one two three four five").rationale


def test_length_bounds_needs_a_valid_bound():
    with pytest.raises(ConfigError, match="at least one"):
        S.length_bounds()
    with pytest.raises(ConfigError, match="min_words=5 is greater than max_words=2"):
        S.length_bounds(min_words=5, max_words=2)
    with pytest.raises(ConfigError, match="max_chars"):
        S.length_bounds(max_chars=-1)


# -- custom scorers -------------------------------------------------------------------------------


@dataclass
class Recorder:
    calls: list[dict[str, Any]] = field(default_factory=list)


def test_custom_scorer_receives_fields_by_name_sync_and_async():
    seen = Recorder()

    @S.scorer
    def t_fields_sync(output, expected, inputs, metadata, item_id, example):
        seen.calls.append(dict(output=output, expected=expected, inputs=inputs, metadata=metadata,
                               item_id=item_id, example=example))
        return True

    @S.scorer
    async def t_fields_async(item_id, output):
        await asyncio.sleep(0)
        seen.calls.append({"item_id": item_id, "output": output})
        return False

    example = S.Example("out", "exp", {"q": 1}, {"tag": "a"}, "item-1")
    assert asyncio.run(t_fields_sync.score(example)) == S.Score(1.0, passed=True)
    assert asyncio.run(t_fields_async.score(example)) == S.Score(0.0, passed=False)
    assert seen.calls[0] == dict(output="out", expected="exp", inputs={"q": 1}, metadata={"tag": "a"},
                                 item_id="item-1", example=example)
    assert seen.calls[1] == {"item_id": "item-1", "output": "out"}


def test_custom_scorer_optional_params_and_kwargs():
    @S.scorer
    def t_opts(output, bonus=0.5, **rest):
        return min(1.0, len(output) / 10 + bonus), f"got {sorted(rest)}"

    score = run(t_opts, "abc", "exp")
    assert score.value == pytest.approx(0.8)
    assert score.rationale == "got ['example', 'expected', 'inputs', 'item_id', 'metadata']"


RETURNS = [
    (True, S.Score(1.0, passed=True)),
    (False, S.Score(0.0, passed=False)),
    (0.25, S.Score(0.25)),
    (3, S.Score(3.0)),
    (S.Score(0.7, passed=True, rationale="mine"), S.Score(0.7, passed=True, rationale="mine")),
    ({"value": 0.4, "rationale": "why"}, S.Score(0.4, rationale="why")),
    ({"value": 0.4, "passed": True}, S.Score(0.4, passed=True)),
    ((0.9, "close enough"), S.Score(0.9, rationale="close enough")),
    ((False, "wrong"), S.Score(0.0, passed=False, rationale="wrong")),
    (None, S.Score(None)),
]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("returned", "expected"), RETURNS, ids=[repr(r[0])[:20] for r in RETURNS])
def test_custom_return_kinds(is_async, returned, expected):
    if is_async:
        async def t_returns(output):
            return returned
    else:
        def t_returns(output):
            return returned
    assert run(S.scorer(t_returns), "x") == expected


def test_custom_pass_threshold_applies_to_numbers_only():
    @S.scorer(name="t_polite", pass_threshold=0.5)
    def polite(output):
        return output.count("please") / 2

    assert run(polite, "please, please") == S.Score(1.0, passed=True)
    assert run(polite, "please") == S.Score(0.5, passed=True)
    assert run(polite, "now") == S.Score(0.0, passed=False)
    assert polite.name == "t_polite"


@pytest.mark.parametrize(
    ("returned", "message"),
    [("yes", "returned str"), ({"score": 1}, "unknown keys 'score'"), ((1, 2, 3), "tuple of 3"),
     (float("nan"), "returned nan")],
)
def test_custom_unusable_returns_do_not_score(returned, message):
    score = run(S.scorer(lambda output: returned, name="t_unusable"), "x")
    assert score.value is None and message in score.rationale


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_custom_exception_becomes_an_unscored_result(is_async):
    if is_async:
        async def t_boom(output):
            raise ValueError("cannot read " + output)
    else:
        def t_boom(output):
            raise ValueError("cannot read " + output)
    assert run(S.scorer(t_boom), "it") == S.Score(None, rationale="ValueError: cannot read it")


def test_custom_bad_parameter_fails_at_decoration():
    with pytest.raises(ConfigError) as info:
        @S.scorer
        def t_bad(output, reference):
            return True
    assert "'reference'" in str(info.value) and "expected" in str(info.value)


def test_custom_stays_callable_and_is_registered():
    @S.scorer(name="t_len")
    def length(output: str) -> int:
        """Length of the output."""
        return len(output)

    assert length("abcd") == 4
    assert length.__doc__ == "Length of the output."
    assert isinstance(length, S.Scorer)
    assert length.spec() == {
        "kind": "custom", "name": "t_len",
        "function": f"{__name__}:test_custom_stays_callable_and_is_registered.<locals>.length",
        "args": {"pass_threshold": None},
    }
    assert S.build(length.spec()) is length


def test_custom_redefinition_replaces_and_stored_threshold_wins():
    @S.scorer(name="t_redef")
    def first(output):
        return 0.1

    @S.scorer(name="t_redef", pass_threshold=0.05)
    def second(output):
        return 0.2

    rebuilt = S.build(first.spec())
    assert rebuilt.spec()["function"].endswith(".second")  # the latest definition of the name
    assert rebuilt.spec()["args"] == first.spec()["args"]  # with the stored (no) threshold
    assert run(rebuilt, "x") == S.Score(0.2)
    assert run(S.build(second.spec()), "x") == S.Score(0.2, passed=True)


def test_build_unknown_custom_says_how_to_fix():
    with pytest.raises(ConfigError) as info:
        S.build({"kind": "custom", "name": "t_never_defined", "function": "m:f", "args": {}})
    assert str(info.value) == (
        "custom scorer 't_never_defined' is not defined in this session; "
        "run the cell that defines it with @wb.scorer before rebuilding"
    )


# -- specs and build ------------------------------------------------------------------------------

ALL_BUILTINS = [
    S.exact_match(),
    S.exact_match(case_sensitive=True, strip_punctuation=True, name="strict"),
    S.contains_reference(case_sensitive=True),
    S.regex(r"\d+", flags="i", must_match=False, name="no_digits"),
    S.valid_json(),
    S.valid_json(schema=SCHEMA, name="answer_json"),
    S.numeric_close(rel_tol=0.01, abs_tol=0.5),
    S.length_bounds(min_words=3, max_chars=200),
    S.llm_judge("Is the answer {polite}?", model="claude-sonnet-4-5", name="polite", pass_threshold=0.7,
                max_tokens=120),
]


@pytest.mark.parametrize("scorer", ALL_BUILTINS, ids=repr)
def test_spec_round_trip(scorer):
    spec = scorer.spec()
    assert json.loads(json.dumps(spec)) == spec
    assert set(spec) == {"kind", "name", "args"}
    rebuilt = S.build(json.loads(json.dumps(spec)))
    assert rebuilt.spec() == spec
    assert rebuilt == scorer and type(rebuilt) is type(scorer)


def test_names_default_to_kind_and_can_be_overridden():
    assert S.regex("a").name == "regex"
    assert S.regex("a", name="has_a").spec()["name"] == "has_a"
    assert S.llm_judge("ok?").name == "judge"
    assert S.regex("a", name="x") != S.regex("a", name="y")


def test_build_unknown_kind_lists_known_kinds():
    with pytest.raises(ConfigError) as info:
        S.build({"kind": "bleu", "name": "bleu", "args": {}})
    message = str(info.value)
    assert "'bleu'" in message
    for kind in ("contains_reference", "custom", "exact_match", "length_bounds", "llm_judge",
                 "numeric_close", "regex", "valid_json"):
        assert kind in message


def test_build_rejects_bad_args_and_bad_specs():
    with pytest.raises(ConfigError, match="do not fit kind 'exact_match'"):
        S.build({"kind": "exact_match", "name": "e", "args": {"casesensitive": True}})
    with pytest.raises(ConfigError, match="does not compile"):
        S.build({"kind": "regex", "name": "r", "args": {"pattern": "("}})
    with pytest.raises(ConfigError, match="'kind'"):
        S.build({"name": "x"})


def test_register_kind_adds_a_buildable_kind():
    @S.register_kind("t_always")
    def always(*, name=None):
        return S.regex("", name=name or "t_always")

    assert S.build({"kind": "t_always", "name": "z", "args": {}}).name == "z"
    with pytest.raises(ConfigError, match="reserved"):
        S.register_kind("custom")


# -- llm_judge ------------------------------------------------------------------------------------


class FakeJudge:
    """Records registrations and calls; answers from a queue of (text, status) replies."""

    def __init__(self, *replies: str | tuple[str, str]) -> None:
        self.replies = [r if isinstance(r, tuple) else (r, "ok") for r in replies]
        self.registered: list[PromptVersion] = []
        self.calls: list[tuple[PromptVersion, dict[str, Any], str]] = []

    def register_prompt(self, name: str, template: str, model: str, **params: Any) -> PromptVersion:
        prompt = PromptVersion(name=name, version=1, template=template, model=model, params=params)
        self.registered.append(prompt)
        return prompt

    async def complete(self, prompt: PromptVersion, **variables: Any) -> Any:
        rendered = prompt.render(variables)  # strict: missing or extra variables raise
        self.calls.append((prompt, variables, rendered))
        text, status = self.replies.pop(0)
        return type("Result", (), {"text": text if status == "ok" else "", "status": status,
                                   "trace_id": f"trace-{len(self.calls)}",
                                   "error": "simulated overload" if status == "error" else None})()


EXAMPLE = S.Example("The capital is Paris.", "Paris", {"question": "Capital of France?", "lang": "en"})


def test_llm_judge_registers_once_and_parses_the_reply():
    judge = FakeJudge("SCORE: 0.8\nRATIONALE: Correct and concise.", "SCORE: 0.3\nRATIONALE: Off topic.")
    scorer = S.llm_judge("Does it answer {the} question?", model="claude-sonnet-4-5", name="helpful",
                         pass_threshold=0.5, max_tokens=100)
    first = asyncio.run(scorer.score(EXAMPLE, judge))
    second = asyncio.run(scorer.score(EXAMPLE, judge))
    assert first == S.Score(0.8, passed=True, rationale="Correct and concise.", judge_trace_id="trace-1")
    assert second == S.Score(0.3, passed=False, rationale="Off topic.", judge_trace_id="trace-2")

    assert len(judge.registered) == 1
    prompt = judge.registered[0]
    assert prompt.name == "judge:helpful" and prompt.model == "claude-sonnet-4-5"
    assert prompt.params == {"temperature": 0, "max_tokens": 100}
    assert parse_template(prompt.template)[1] == ["input", "output", "expected"]
    assert "Reply in the form:\nSCORE: <a number from 0 to 1>\nRATIONALE: <one sentence>" in prompt.template

    _, variables, rendered = judge.calls[0]
    assert variables == {"input": "question: Capital of France?\nlang: en",
                         "output": "The capital is Paris.", "expected": "Paris"}
    assert "Does it answer {the} question?" in rendered  # rubric braces kept literally
    assert "<output>\nThe capital is Paris.\n</output>" in rendered
    assert "<expected>\nParis\n</expected>" in rendered


def test_llm_judge_exposes_model_and_budget_for_cost_estimates():
    scorer = S.llm_judge("Correct?", model="claude-opus-4-5", max_tokens=50, pass_threshold=0.6)
    assert (scorer.model, scorer.max_tokens, scorer.pass_threshold) == ("claude-opus-4-5", 50, 0.6)
    assert getattr(S.exact_match(), "model", None) is None  # only judges cost extra calls


def test_llm_judge_registers_again_for_another_judge():
    scorer = S.llm_judge("Correct?")
    a, b = FakeJudge("SCORE: 1"), FakeJudge("SCORE: 1")
    asyncio.run(scorer.score(EXAMPLE, a))
    asyncio.run(scorer.score(EXAMPLE, b))
    assert len(a.registered) == len(b.registered) == 1


@pytest.mark.parametrize(
    ("reply", "value", "rationale"),
    [
        ("SCORE: 1.7\nRATIONALE: Great.", 1.0, "Great."),
        ("SCORE: -0.2\nRATIONALE: Harmful.", 0.0, "Harmful."),
        ("**Score:** 0.75\n**Rationale:** Mostly right.", 0.75, "Mostly right."),
        ("SCORE: 8/10\nRATIONALE: Good.", 0.8, "Good."),
        ("Score = 60%", 0.6, None),
        ("SCORE: 0.7\nRATIONALE: Borderline.", 0.7, "Borderline."),  # the threshold itself passes
    ],
)
def test_llm_judge_clamps_and_reads_variants(reply, value, rationale):
    score = asyncio.run(S.llm_judge("Correct?", pass_threshold=0.7).score(EXAMPLE, FakeJudge(reply)))
    assert score.value == pytest.approx(value)
    assert score.passed is (value >= 0.7)
    assert score.rationale == rationale
    assert score.judge_trace_id == "trace-1"


def test_llm_judge_unparseable_reply():
    reply = "I think this answer is quite good overall. " * 10
    score = asyncio.run(S.llm_judge("Correct?").score(EXAMPLE, FakeJudge(reply)))
    assert score == S.Score(None, rationale=f"judge reply not understood: {reply[:200]}", judge_trace_id="trace-1")


def test_llm_judge_errored_call():
    score = asyncio.run(S.llm_judge("Correct?").score(EXAMPLE, FakeJudge(("", "error"))))
    assert score.value is None and score.passed is None
    assert "simulated overload" in score.rationale and score.judge_trace_id == "trace-1"


def test_llm_judge_raised_provider_error_does_not_stop_the_run():
    class RaisingJudge(FakeJudge):
        async def complete(self, prompt, **variables):
            raise Overloaded("overloaded", status_code=529)

    score = asyncio.run(S.llm_judge("Correct?").score(EXAMPLE, RaisingJudge()))
    assert score.value is None and "overloaded" in score.rationale


def test_llm_judge_without_a_judge_explains():
    with pytest.raises(ConfigError, match="inside an experiment") as info:
        asyncio.run(S.llm_judge("Correct?").score(EXAMPLE))
    assert "judge=" in str(info.value)


def test_llm_judge_config_errors():
    with pytest.raises(ConfigError, match="rubric"):
        S.llm_judge("  ")
    with pytest.raises(ConfigError, match="pass_threshold"):
        S.llm_judge("ok?", pass_threshold=2)


# -- the simulated judge --------------------------------------------------------------------------


class SimJudge(FakeJudge):
    """Answers with the simulated provider's judge, reading only the rendered prompt."""

    def __init__(self, seed: int, skill: float) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.skill = skill

    async def complete(self, prompt: PromptVersion, **variables: Any) -> Any:
        rendered = prompt.render(variables)
        assert is_judge_prompt(rendered)
        self.replies.append((judge_reply(rendered, self.rng, self.skill), "ok"))
        return await super().complete(prompt, **variables)


def test_is_judge_prompt():
    rendered = S._judge_template("Correct?").format(input="", output="x", expected="y")
    assert is_judge_prompt(rendered)
    assert is_judge_prompt("[user]\n" + rendered)
    assert not is_judge_prompt("Answer the question: what is SCORE: <a number>?")


def test_simjudge_scores_containment_above_a_miss_over_seeds():
    scorer = S.llm_judge("Is the answer correct?")
    hit = S.Example("You can reset it from the Account page in Settings.", "Account page",
                    {"question": "Where do I reset my password?"})
    miss = S.Example("Please contact our support team.", "Account page",
                     {"question": "Where do I reset my password?"})
    hits = [asyncio.run(scorer.score(hit, SimJudge(seed, 0.8))).value for seed in range(40)]
    misses = [asyncio.run(scorer.score(miss, SimJudge(seed, 0.8))).value for seed in range(40)]
    assert all(v is not None and 0 <= v <= 1 for v in hits + misses)
    assert statistics.mean(hits) > 0.8 > 0.3 > statistics.mean(misses)


def test_simjudge_is_deterministic_and_noisier_with_less_skill():
    prompt = S._judge_template("Correct?").format(input="q: capital?", output="Lyon, I think", expected="Paris")
    assert judge_reply(prompt, random.Random(7), 0.5) == judge_reply(prompt, random.Random(7), 0.5)
    perfect = {judge_reply(prompt, random.Random(s), 1.0) for s in range(20)}
    assert len(perfect) == 1 and perfect.pop().startswith("SCORE: 0.10\nRATIONALE: ")
    sloppy = [S._parse_judge_reply(judge_reply(prompt, random.Random(s), 0.2))[0] for s in range(50)]
    assert statistics.pstdev(sloppy) > 0.15


def test_simjudge_reads_sections_not_the_rubric():
    # The rubric mentions the tags and the answer; only the real sections count.
    prompt = S._judge_template("A good <output>\nParis\n</output> names the capital.").format(
        input="", output="It is Rome.", expected="Paris")
    assert judge_reply(prompt, random.Random(0), 1.0).startswith("SCORE: 0.10")
    partial = S._judge_template("ok?").format(input="", output="Settings then Billing", expected="Settings, then Billing tab")
    assert judge_reply(partial, random.Random(0), 1.0).startswith("SCORE: 0.57")  # 0.1 + 0.7 * 2/3
    no_ref = S._judge_template("ok?").format(input="question: reset password", output="", expected="")
    assert judge_reply(no_ref, random.Random(0), 1.0).startswith("SCORE: 0.00\nRATIONALE: The response is empty.")


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("shape", ["plain", "Score", "dict", "tuple"])
def test_a_non_finite_value_is_not_a_score_however_it_is_returned(bad, shape):
    returned = {"plain": bad, "Score": S.Score(bad, passed=True, rationale="mine"),
                "dict": {"value": bad, "passed": True}, "tuple": (bad, "why")}[shape]
    score = run(S.scorer(lambda output: returned, name="t_inf"), "x")
    assert score.value is None and score.passed is None
    assert score.rationale.startswith(f"not scored: scorer 't_inf' returned {'a Score of ' if shape == 'Score' else ''}{bad}, "
                                      "not a finite number")


def test_score_itself_refuses_a_non_finite_value_for_every_scorer():
    # A class-based scorer (the Scorer protocol) builds Score directly: the same rule holds.
    assert S.Score(float("inf"), passed=True, rationale="judge said so") == S.Score(
        None, rationale="not scored: the score was inf, not a finite number (judge said so)")
    assert S.Score(0.5).value == 0.5 and S.Score(True).value is True


def test_an_experiment_with_an_infinite_score_keeps_every_readout(bench):
    @S.scorer(name="t_sometimes_inf")
    def sometimes_inf(output, item_id):
        return S.Score(float("inf")) if item_id == "i2" else 1.0

    a = bench.prompts.register("inf-a", "Q: {question}", "claude-haiku-4-5")
    b = bench.prompts.register("inf-b", "Question: {question}", "claude-haiku-4-5")
    ds = bench.datasets.load("inf", [{"id": f"i{i}", "question": f"q{i}?"} for i in range(6)])
    exp = bench.experiment("inf", dataset=ds, variants={"A": a, "B": b},
                           scorers=[sometimes_inf, S.exact_match()]).run()
    stored = bench.store.query("SELECT value, rationale FROM scores WHERE scorer = 't_sometimes_inf' AND item_id = 'i2'")
    assert [r["value"] for r in stored] == [None, None]
    assert all(r["rationale"].startswith("not scored") for r in stored)
    scores = exp.compare("A", "B").scores
    assert set(scores["scorer"].to_list()) == {"t_sometimes_inf", "exact_match"}
    assert scores.filter(scores["scorer"] == "t_sometimes_inf")["n"].to_list() == [5]
    str(exp.compare("A", "B"))
