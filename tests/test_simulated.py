"""The simulated provider: deterministic, context-sensitive, priced and failing as declared."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path


from workbench._retry import complete_with_retries
from workbench.errors import Overloaded, ProviderError, RateLimited
from workbench.providers.base import Message, Provider, Request
from workbench.providers.simulated import MIN_CACHEABLE_TOKENS, SimulatedProvider

DATA = Path(__file__).parent.parent / "data" / "support_qa.jsonl"
MODEL = "claude-haiku-4-5"


def sim(seed: int = 0, **kwargs) -> SimulatedProvider:
    kwargs.setdefault("error_rate", 0.0)
    return SimulatedProvider(seed=seed, time_scale=0, **kwargs)


def run(coro):
    return asyncio.run(coro)


def complete(provider: SimulatedProvider, request: Request):
    return run(provider.complete(request))


def ask(question: str, **kwargs) -> Request:
    return Request.of(MODEL, question, **kwargs)


def test_is_a_provider_marked_simulated():
    p = sim()
    assert isinstance(p, Provider)
    assert p.simulated is True and p.name == "simulated"


def test_same_request_and_seed_give_the_same_completion():
    request = ask("Context: Pro allows up to 10 devices.\nQuestion: How many devices on Pro?")
    a, b = complete(sim(7), request), complete(sim(7), request)
    assert a == b
    assert complete(sim(7), request) == complete(sim(7), request)


def test_seed_and_sample_change_the_draws():
    request = ask("Context: Pro allows up to 10 devices.\nQuestion: How many devices on Pro?")
    by_seed = [complete(sim(seed), request) for seed in range(5)]
    assert len({c.latency_ms for c in by_seed}) == 5
    assert len({c.request_id for c in by_seed}) == 5
    p = sim(0)
    by_sample = [
        complete(p, Request.of(MODEL, request.messages, metadata={"sample": k})) for k in range(5)
    ]
    assert len({c.latency_ms for c in by_sample}) == 5


def test_context_makes_answers_correct():
    items = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    assert len(items) >= 50
    p = sim(0)

    def correct(template: str) -> float:
        hits = 0
        for item in items:
            prompt = template.format(**item["inputs"])
            answer = complete(p, ask(prompt)).text
            hits += item["expected"].lower() in answer.lower()
        return hits / len(items)

    with_context = correct("Context: {context}\nQuestion: {question}")
    without = correct("Answer: {question}")
    assert with_context > 0.5
    assert without < 0.1


def test_token_counts_follow_text_length():
    short = complete(sim(), ask("How do I reset my password?"))
    long = complete(sim(), ask("How do I reset my password? " + "I have tried everything already. " * 40))
    assert long.usage.input_tokens > short.usage.input_tokens * 10
    for c in (short, long):
        assert c.usage.output_tokens == math.ceil(len(c.text) / 4)
    assert short.usage.input_tokens == math.ceil(len("How do I reset my password?") / 4) + 4


def test_a_long_cached_system_prompt_is_written_then_read():
    system = "Refunds are possible within 30 days of purchase. " * 100
    system_tokens = math.ceil(len(system) / 4)
    assert system_tokens >= MIN_CACHEABLE_TOKENS
    p = sim()

    def call(question: str, cache: bool = True):
        return complete(p, Request(model="claude-sonnet-4-5", messages=(Message("user", question),),
                                   system=system, cache_system=cache))

    first = call("Can I get a refund?")
    second = call("What is the refund window?")
    question_tokens = math.ceil(len("What is the refund window?") / 4) + 4
    assert (first.usage.cache_write_tokens, first.usage.cache_read_tokens) == (system_tokens, 0)
    assert (second.usage.cache_write_tokens, second.usage.cache_read_tokens) == (0, system_tokens)
    # Anthropic semantics: input_tokens excludes what went through the cache.
    assert second.usage.input_tokens == question_tokens
    uncached = call("What is the refund window?", cache=False)
    assert (uncached.usage.cache_read_tokens, uncached.usage.cache_write_tokens) == (0, 0)
    assert uncached.usage.input_tokens == question_tokens + system_tokens


def test_a_1_hour_cache_write_is_reported_as_one():
    system = "Refunds are possible within 30 days of purchase. " * 100
    p = sim()
    usage = complete(p, Request(model="claude-sonnet-4-5", messages=(Message("user", "Refund?"),),
                                system=system, cache_system="1h")).usage
    assert usage.cache_write_tokens == usage.cache_write_1h_tokens == math.ceil(len(system) / 4)


def test_a_short_system_prompt_is_not_cached():
    p = sim()
    request = Request(model="claude-sonnet-4-5", messages=(Message("user", "Hi?"),),
                      system="Be brief.", cache_system=True)
    for _ in range(2):
        usage = complete(p, request).usage
        assert (usage.cache_read_tokens, usage.cache_write_tokens) == (0, 0)


def first_attempt_errors(seed: int, n: int, error_rate: float) -> list[ProviderError | None]:
    p = SimulatedProvider(seed=seed, time_scale=0, error_rate=error_rate)

    async def go():
        out = []
        for i in range(n):
            try:
                await p.complete(ask(f"Question number {i}?"))
                out.append(None)
            except ProviderError as exc:
                out.append(exc)
        return out

    return run(go())


def test_errors_come_at_the_configured_rate():
    outcomes = first_attempt_errors(seed=0, n=500, error_rate=0.3)
    errors = [e for e in outcomes if e is not None]
    assert abs(len(errors) / 500 - 0.3) < 0.06
    assert {type(e) for e in errors} == {Overloaded, RateLimited}
    for e in errors:
        assert e.retryable and e.request_id.startswith("sim_req_")
        assert e.status_code == (529 if isinstance(e, Overloaded) else 429)
    assert all(e.retry_after is not None for e in errors if isinstance(e, RateLimited))
    assert first_attempt_errors(seed=0, n=0, error_rate=0.0) == []
    assert not any(first_attempt_errors(seed=0, n=100, error_rate=0.0))


def test_retried_attempts_are_deterministic():
    def attempts(p: SimulatedProvider) -> list[tuple[int, str | None]]:
        async def go():
            out = []
            for i in range(100):
                result = await complete_with_retries(p, ask(f"Question number {i}?"))
                out.append((result.attempts, None if result.completion is None else result.completion.text))
            return out

        return run(go())

    reused = SimulatedProvider(seed=3, time_scale=0, error_rate=0.3)
    first = attempts(reused)
    assert any(n > 1 for n, _ in first)
    assert first == attempts(SimulatedProvider(seed=3, time_scale=0, error_rate=0.3))
    # Asked again, a request that succeeded replays the same attempts (one that gave up
    # after three failures carries on with fresh draws, as a retry later would).
    again = attempts(reused)
    assert [a for a, f in zip(again, first) if f[1] is not None] == [f for f in first if f[1] is not None]
    assert first != attempts(SimulatedProvider(seed=4, time_scale=0, error_rate=0.3))


def test_max_tokens_truncates_the_answer():
    prompt = "Context: Deleted notes remain in the sync trash for 30 days before removal.\nQuestion: How long?"
    full = complete(sim(), ask(prompt))
    assert full.stop_reason == "end_turn" and full.usage.output_tokens > 3
    cut = complete(sim(), ask(prompt, max_tokens=3))
    assert cut.stop_reason == "max_tokens"
    assert cut.usage.output_tokens == 3
    assert full.text.startswith(cut.text) and len(cut.text) <= 3 * 4


def test_model_profiles_order_speed_and_report_timings():
    prompt = "Context: Pro allows 10 devices.\nQuestion: How many devices on Pro?"

    def median_latency(model: str) -> float:
        p = sim()
        latencies = []
        for k in range(51):
            c = complete(p, Request.of(model, prompt, metadata={"sample": k}))
            assert c.model == model and c.provider == "simulated"
            assert 0 < c.ttft_ms <= c.latency_ms
            latencies.append(c.latency_ms)
        return sorted(latencies)[25]

    haiku, sonnet, opus = (median_latency(f"claude-{m}-4-5") for m in ("haiku", "sonnet", "opus"))
    assert haiku < sonnet < opus
