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


def test_one_matrix_product_finds_what_a_loop_over_entries_finds(store):
    rng = np.random.default_rng(3)
    dim = 32
    table = rng.normal(size=(500, dim)).astype(np.float32)

    def embed(texts):
        return np.stack([table[int(t.split()[-1])] for t in texts])

    cache = gw.SemanticCache(threshold=0.5, embedder=embed)
    cache.bind(store)
    cache.add_many([(ask(f"entry {i}"), answer(f"entry {i}")) for i in range(400)])
    for q in range(400, 420):
        hit, info = cache.lookup(ask(f"probe {q}"))
        v = table[q] / np.linalg.norm(table[q])
        sims = [float(np.dot(v, table[i] / np.linalg.norm(table[i]))) for i in range(400)]
        best = max(range(400), key=sims.__getitem__)
        assert info["similarity"] == pytest.approx(sims[best], abs=1e-4)
        assert (hit is not None) == (sims[best] >= 0.5)
        if hit is not None:
            assert hit.completion.text == f"answer to: entry {best}"


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
