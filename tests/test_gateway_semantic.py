"""The semantic cache: precision on the shipped labelled pairs, guards, expiry, persistence."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from workbench import gateway as gw
from workbench.errors import ConfigError
from workbench.gateway.cache import evaluate
from workbench.providers.base import Completion, Request, Usage

PAIRS = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "semantic_pairs.jsonl").read_text().splitlines()]
needs_wordllama = pytest.mark.skipif(
    __import__("importlib").util.find_spec("wordllama") is None, reason="the semantic extra (wordllama) is not installed"
)


def answer(text: str) -> Completion:
    return Completion(text=f"answer to: {text}", model="claude-haiku-4-5", stop_reason="end_turn",
                      usage=Usage(200, 50), latency_ms=300.0, provider="scripted")


def ask(text: str) -> Request:
    return Request.of("claude-haiku-4-5", text, max_tokens=300)


def test_the_pairs_are_labelled_both_ways():
    same = sum(p["same"] for p in PAIRS)
    assert same >= 25 and len(PAIRS) - same >= 25


@needs_wordllama
def test_the_default_embedder_serves_paraphrases_and_rarely_a_near_miss():
    report = evaluate(PAIRS)
    assert report["embedder"].startswith("wordllama")
    assert report["precision"] >= 0.9, report  # at most 1 wrong answer in 10 hits
    assert report["hit_rate"] >= 0.4, report
    baseline = evaluate(PAIRS, gw.hashing_embedder())
    assert report["right_hits"] > baseline["right_hits"]


@needs_wordllama
def test_the_cache_in_the_file_agrees_with_the_evaluation(store):
    cache = gw.SemanticCache(threshold=0.9)
    cache.bind(store)
    cache.add_many([(ask(q), answer(q)) for q in sorted({p["cached"] for p in PAIRS})], cost_usd=0.001)
    right = wrong = 0
    for p in PAIRS:
        hit, info = cache.lookup(ask(p["asked"]))
        if hit is None:
            assert info["result"] == "miss"
            continue
        if p["same"] and hit.completion.text == f"answer to: {p['cached']}":
            right += 1
        else:
            wrong += 1
        assert hit.cost_usd == 0.001 and hit.similarity >= 0.9
    report = evaluate(PAIRS)
    assert (right, wrong) == (report["right_hits"], report["wrong_hits"])


@pytest.mark.parametrize("dim", [8, 32, 128])
def test_the_two_pass_search_finds_what_a_loop_over_entries_finds(store, dim):
    """Hits and near misses exactly as a loop over every entry; farther misses only say so."""
    rng = np.random.default_rng(dim)
    table = rng.normal(size=(1_000, dim)).astype(np.float32)
    # Half the probes are close to a stored entry (a hit or a near miss), half are random.
    table[900:950] = table[:50] + rng.normal(scale=0.45, size=(50, dim)).astype(np.float32) * np.linalg.norm(table[:50], axis=1, keepdims=True) / np.sqrt(dim)

    def embed(texts):
        return np.stack([table[int(t.split()[-1])] for t in texts])

    threshold = 0.9
    cache = gw.SemanticCache(threshold=threshold, embedder=embed)
    cache.bind(store)
    cache.add_many([(ask(f"entry {i}"), answer(f"entry {i}")) for i in range(800)])
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    seen = {"hit": 0, "near": 0, "far": 0}
    for q in [*range(900, 950), *range(950, 1000)]:
        hit, info = cache.lookup(ask(f"probe {q}"))
        sims = [float(np.dot(unit[q], unit[i])) for i in range(800)]
        best = max(range(800), key=sims.__getitem__)
        assert (hit is not None) == (sims[best] >= threshold)
        if sims[best] >= threshold - 0.1:
            assert info["similarity"] == pytest.approx(sims[best], abs=1e-4)  # rounded to 4 places
            seen["hit" if hit is not None else "near"] += 1
        else:
            assert info == {"result": "miss", "similarity": None, "below": pytest.approx(threshold - 0.1)}
            seen["far"] += 1
        if hit is not None:
            assert hit.completion.text == f"answer to: entry {best}"
    assert all(seen.values()), seen  # every branch was exercised


def test_the_search_skips_expired_entries_even_when_they_are_the_closest(store):
    now = [1_000_000.0]
    rng = np.random.default_rng(5)
    base = rng.normal(size=32).astype(np.float32)
    table = np.stack([base, base + rng.normal(scale=0.2, size=32).astype(np.float32)])  # similarity about 0.98

    def embed(texts):
        return np.stack([table[int(t.split()[-1])] for t in texts])

    cache = gw.SemanticCache(threshold=0.9, embedder=embed, ttl_s=10, clock=lambda: now[0])
    cache.bind(store)
    cache.store_answer(ask("entry 0"), answer("entry 0"), 0.0)
    now[0] += 5
    cache.store_answer(ask("entry 1"), answer("entry 1"), 0.0)
    assert cache.lookup(ask("entry 0"))[0].completion.text == "answer to: entry 0"
    now[0] += 6  # entry 0 has expired, entry 1 has not
    hit, info = cache.lookup(ask("entry 0"))
    assert hit.completion.text == "answer to: entry 1" and 0.9 <= info["similarity"] < 1
    now[0] += 5
    assert cache.lookup(ask("entry 0"))[0] is None


def test_entries_expire_and_survive_a_restart(tmp_path):
    from workbench.store import Store

    emb = gw.hashing_embedder(64)
    s1 = Store(tmp_path / "s.db")
    cache = gw.SemanticCache(threshold=0.99, embedder=emb, ttl_s=60)
    cache.bind(s1)
    assert cache.store_answer(ask("How do I reset my password?"), answer("reset"), 0.002)
    assert cache.lookup(ask("How do I reset my password?"), now=time.time() + 61)[0] is None
    cache.flush()  # a gateway's caches flush with bench.flush() and bench.close()
    s1.close()
    s2 = Store(tmp_path / "s.db")
    again = gw.SemanticCache(threshold=0.99, embedder=emb, ttl_s=60)
    again.bind(s2)
    hit, _ = again.lookup(ask("How do I reset my password?"))
    assert hit is not None and hit.completion.text == "answer to: reset"
    s2.close()


def test_truncated_answers_are_not_stored_and_a_bad_embedder_is_named(store):
    cache = gw.SemanticCache(embedder=gw.hashing_embedder(16))
    cache.bind(store)
    cut = Completion("half", "claude-haiku-4-5", "max_tokens", Usage(1, 1), 1.0)
    assert not cache.store_answer(ask("hello"), cut, 0.0)
    broken = gw.SemanticCache(embedder=lambda texts: [[1.0, 2.0]])
    with pytest.raises(ConfigError, match="one vector per text"):
        broken.embed(["a", "b"])
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        gw.SemanticCache(threshold=1.5)
    assert math.isfinite(cache.threshold)


@needs_wordllama
def test_word_by_word_ids_are_the_tokenizers_own():
    """The embedder tokenizes word by word (remembering each word): it must give the tokenizer's ids exactly."""
    from workbench.gateway.cache import SPACE, _load_wordllama, _wordllama_ids

    tokenizer, _ = _load_wordllama()
    # What makes it exact: no token has the word marker anywhere but first, except runs of the marker alone.
    assert not [t for t in tokenizer.get_vocab() if SPACE in t[1:] and set(t) != {SPACE}]
    texts = [q for p in PAIRS for q in (p["cached"], p["asked"])] + [
        " leading space", "trailing space ", "two  spaces", "", " ", "own ▁ marker", "tab\tand\nnewline",
        "ünïcödé and emoji 🙂 and 中文", "don't, can't; e-mail: a@b.co!", "x" * 300, "1234 5678 9012 3456",
    ]
    for text in texts * 2:  # the second time from what it remembered
        assert _wordllama_ids(tokenizer, text) == tokenizer.encode(text, add_special_tokens=False).ids, text


# -- guards: one answer never serves a request that could get another ---------------------------

BASE = dict(model="claude-haiku-4-5", system="You answer billing questions.", max_tokens=300, temperature=0.2,
            stop=["END"], metadata={"prompt_name": "support", "prompt_version": 3})
QUESTION = "How do I change the card I pay with?"


def asked(messages=QUESTION, **changes) -> Request:
    fields = {**BASE, **changes}
    model = fields.pop("model")
    return Request.of(model, messages, **fields)


@pytest.mark.parametrize("change", [
    {"model": "claude-sonnet-4-5"},
    {"system": "You answer shipping questions."},
    {"max_tokens": 800},
    {"temperature": 1.0},
    {"stop": ["STOP"]},
    {"metadata": {"prompt_name": "support", "prompt_version": 4}},
    {"metadata": {"prompt_name": "sales", "prompt_version": 3}},
    {"metadata": {**BASE["metadata"], "answer_params": "sha256:tools"}},
], ids=["model", "system", "max_tokens", "temperature", "stop", "version", "prompt", "other-params"])
def test_the_same_question_under_one_other_setting_is_never_served(store, change):
    cache = gw.SemanticCache(threshold=0.9, embedder=gw.hashing_embedder())
    cache.bind(store)
    assert cache.store_answer(asked(), answer(QUESTION), 0.001)
    hit, _ = cache.lookup(asked())
    assert hit is not None and hit.similarity == pytest.approx(1.0)  # the same request is served
    assert cache.lookup(asked(**change))[0] is None


def test_a_follow_up_is_looked_up_only_when_asked_for_and_then_under_its_history(store):
    earlier = [{"role": "user", "content": "I moved house."}, {"role": "assistant", "content": "Noted."}]
    follow_up = [*earlier, {"role": "user", "content": QUESTION}]
    single = gw.SemanticCache(threshold=0.9, embedder=gw.hashing_embedder())
    single.bind(store)
    single.store_answer(asked(), answer(QUESTION), 0.001)
    hit, info = single.lookup(asked(follow_up))
    assert hit is None and single.question(asked(follow_up)) is None  # not even embedded
    multi = gw.SemanticCache(threshold=0.9, embedder=gw.hashing_embedder(), multi_turn=True, namespace="multi")
    multi.bind(store)
    multi.store_answer(asked(follow_up), answer(QUESTION), 0.001)
    assert multi.lookup(asked(follow_up))[0] is not None
    other_history = [{"role": "user", "content": "I never moved."}, earlier[1], follow_up[-1]]
    assert multi.lookup(asked(other_history))[0] is None
    assert multi.lookup(asked())[0] is None  # the single question has no such history
