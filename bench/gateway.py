"""The gateway's costs, each beside the baseline it is judged against, measured in one run.

- exact-cache hit: ``await gateway.complete(request)`` for a request already
  cached ("end to end" = canonical key and its SHA-256, the in-memory lookup, the
  cached Completion with its decisions; the trace row is not written here, see
  the traced figure) against the call it replaces: the same request streamed
  from the local Anthropic-compatible server by ``AnthropicProvider`` (loopback,
  no model time at all, so a real call is slower still).
- semantic lookup over 100,000 entries: ``SemanticCache.lookup`` with the query
  embedded beforehand (the two-pass exact search of ``_Index.best``, then one row
  read for a hit), its memory (the index's arrays, by tracemalloc), the embedding
  of a question beside it; interleaved with it, query by query, the one full
  float32 product the index used before (``einsum`` over every entry, argmax);
  and the seed's linear loop (cosine per entry in Python) over the same vectors.
- overhead on a miss: every layer on, over a provider that answers at once
  (``_Instant``), against that provider called bare. Per call, in order: the
  caller read from the request; input guardrails (PII redaction with e-mail and
  card patterns, a length limit); a rule router (sonnet routed to haiku); limits
  (a request and token bucket and a daily dollar budget, per user, 50 users: the
  worst-case cost priced for the reservation, then the admission, from a lease
  once a user calls often, else one ``BEGIN IMMEDIATE`` transaction in the file);
  the exact cache (canonical JSON, SHA-256, memory and file-key lookups); the
  semantic cache (the question embedded by WordLlama, the guard's index searched:
  it holds every earlier question, up to 3,200); a two-target fallback chain with
  a breaker; the call; output guardrails; pricing the answer and the routing
  saving; settling the limits; storing the answer in both caches (rows queued for
  the file); the decisions. Rows reach the file in batches off the caller's path
  (with limits, the limits' own thread writes them; without, the store's
  writer), so they weigh on the mean, not the median. Every question is new, so
  every call misses both caches. Run three times, interleaved with the same
  without limits; the figure is the median of the three runs' medians. CPU time
  per call (``thread_time``) is printed beside wall time: on a busy machine the
  wall time also counts the time other processes had the core.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any


_WORDS = """account billing invoice export spreadsheet password reset subscription cancel refund order shipping
delivery tracking upgrade downgrade workspace project member calendar notification language theme offline mobile
tablet desktop browser extension integration webhook token permission admin owner archive restore backup storage
upload download attachment folder label filter search report dashboard chart template currency payment receipt
discount coupon trial renewal contract seat license device security encryption privacy deletion migration import"""


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


class _Instant:
    """A provider that answers at once: what remains is the gateway's own work."""

    name = "instant"
    simulated = True

    def __init__(self) -> None:
        from workbench.providers.base import Completion, Usage

        self.answer = Completion("Settings > Export > CSV.", "claude-haiku-4-5", "end_turn", Usage(120, 12), 0.0, provider="instant")

    async def complete(self, request: Any) -> Any:
        return self.answer

    async def sleep(self, seconds: float) -> None:
        return None


def exact_hit(n: int = 20_000) -> None:
    import workbench as wb
    from tests.fake_anthropic import FakeAnthropic
    from workbench import gateway as gw
    from workbench.providers.anthropic import AnthropicProvider
    from workbench.providers.base import Request

    request = Request.of("claude-haiku-4-5", "How do I export my data to a spreadsheet?", max_tokens=300)
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic() as server:
        provider = AnthropicProvider(api_key="test", base_url=server.base_url)
        gateway = gw.Gateway(provider, cache=gw.ExactCache())
        bench = wb.open(Path(tmp) / "g.db", provider=gateway)

        async def run() -> tuple[list[float], list[float]]:
            await gateway.complete(request)  # the miss that fills the cache
            calls = []
            for _ in range(200):
                t0 = time.perf_counter()
                await provider.complete(request)
                calls.append(time.perf_counter() - t0)
            hits = []
            for _ in range(n):
                t0 = time.perf_counter()
                await gateway.complete(request)
                hits.append(time.perf_counter() - t0)
            await provider.aclose()
            return hits, calls

        hits, calls = asyncio.run(run())
        traced = []
        for _ in range(2_000):
            t0 = time.perf_counter()
            bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "How do I export my data to a spreadsheet?"}],
                           params={"max_tokens": 300})
            traced.append(time.perf_counter() - t0)
        saved = bench.traces(1)[0]["metadata"]["gateway"]["cache"]["saved_usd"]
        bench.close()
    hit, call = _median_us(hits), _median_us(calls)
    print(f"exact-cache hit (gateway.complete):  {hit:.1f} us median over {n:,} (target <= 50 us)")
    print(f"the call it replaces (local server): {call:.0f} us median over 200; ratio {call / hit:,.0f}x; a hit also saves ${saved:.6f}")
    print(f"traced hit via bench.complete:       {_median_us(traced):.1f} us median (adds the sync hop to the loop and the trace row)")


def semantic_lookup(entries: int = 100_000, dim: int = 128, lookups: int = 200, loop_lookups: int = 3) -> None:
    import numpy as np

    import workbench as wb
    from workbench import gateway as gw
    from workbench.providers.base import Completion, Request, Usage

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(entries, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    by_text = {f"question {i}": vectors[i] for i in range(entries)}

    def embed(texts: list[str]) -> Any:
        return np.stack([by_text.get(t, vectors[0]) for t in texts])

    answer = Completion("an answer", "claude-haiku-4-5", "end_turn", Usage(100, 20), 300.0)
    with tempfile.TemporaryDirectory() as tmp:
        bench = wb.open(Path(tmp) / "s.db", provider="simulated")
        cache = gw.SemanticCache(threshold=0.9, embedder=embed)
        cache.bind(bench.store)
        pairs = [(Request.of("claude-haiku-4-5", f"question {i}", max_tokens=300), answer) for i in range(entries)]
        t0 = time.perf_counter()
        cache.add_many(pairs[:1])  # first guard load
        tracemalloc.start()
        cache.add_many(pairs[1:])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        fill = time.perf_counter() - t0
        index_mb = cache.memory_bytes() / 1e6
        # Reload from the file, as a fresh process would: that is the index a server keeps.
        fresh = gw.SemanticCache(threshold=0.9, embedder=embed)
        fresh.bind(bench.store)
        probe = Request.of("claude-haiku-4-5", "question 17", max_tokens=300)
        tracemalloc.start()
        t1 = time.perf_counter()
        fresh.lookup(probe, vector=vectors[17])
        load = time.perf_counter() - t1
        _, load_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        queries = rng.normal(size=(lookups, dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        queries[::2] = vectors[rng.integers(0, entries, lookups // 2)]  # half of them hit
        # The index before this search: one float32 matrix and one full product (rebuilt here for the comparison).
        index = next(iter(fresh._indexes.values()))
        full = np.ascontiguousarray(np.hstack([index.head[: index.n, : index.split], index.tail[: index.n]]))
        expires = index.expires[: index.n]
        times, search_times, full_times, hits, agree = [], [], [], 0, 0
        for q in queries:
            t0 = time.perf_counter()
            hit, info = fresh.lookup(probe, vector=q)
            t1 = time.perf_counter()
            index.best(q, t1, 0.9 - 0.1)
            t2 = time.perf_counter()
            sims = np.einsum("ij,j->i", full, q)
            live = expires > t2
            if not live.all():
                sims = np.where(live, sims, -np.inf)
            best = int(np.argmax(sims))
            t3 = time.perf_counter()
            times.append(t1 - t0)
            search_times.append(t2 - t1)
            full_times.append(t3 - t2)
            hits += hit is not None
            agree += (hit is not None) == (sims[best] >= 0.9)
        del full
        real = gw.SemanticCache()  # the default embedder, for the cost of embedding a question
        real.embed(["warm up"])
        emb = []
        for _ in range(200):
            t0 = time.perf_counter()
            real.embed(["How do I export my data to a spreadsheet?"])
            emb.append(time.perf_counter() - t0)
        # The seed's lookup: a Python loop computing cosine similarity per entry.
        stored = [v.tolist() for v in vectors]
        loop_times = []
        for q in queries[:loop_lookups]:
            ql = q.tolist()
            t0 = time.perf_counter()
            best, best_sim = -1, -2.0
            for i, v in enumerate(stored):
                dot = sum(a * b for a, b in zip(ql, v))
                na = sum(a * a for a in ql) ** 0.5
                nb = sum(b * b for b in v) ** 0.5
                sim = dot / (na * nb)
                if sim > best_sim:
                    best, best_sim = i, sim
            loop_times.append(time.perf_counter() - t0)
        bench.close()
    med = statistics.median(times) * 1000
    full_med = statistics.median(full_times) * 1000
    search_med = statistics.median(search_times) * 1000
    loop = statistics.median(loop_times) * 1000
    print(f"semantic index: {entries:,} entries x {dim} dims written in {fill:.1f} s (this benchmark's own "
          f"lists included, peak traced {peak / 1e6:.0f} MB)")
    print(f"  a fresh cache loads it from the file in {load:.2f} s: index arrays {index_mb:.1f} MB, "
          f"peak traced while loading {load_peak / 1e6:.1f} MB (target <= 100 MB)")
    print(f"semantic lookup: {med:.2f} ms median, p95 {sorted(times)[int(0.95 * len(times))] * 1000:.2f} ms over {lookups} "
          f"({hits} hits) (target <= 5 ms); embedding the question {_median_us(emb):.0f} us ({real.embedder_name})")
    print(f"  its search alone {search_med:.2f} ms vs one full product over every entry (the index before), "
          f"interleaved, {full_med:.2f} ms: {search_med / full_med:.2f}x; hit or not the same for {agree} of {lookups}")
    print(f"seed's linear loop over the same entries: {loop:.0f} ms median of {loop_lookups}; ratio {loop / med:,.0f}x (target >= 700x)")


def miss_overhead(n: int = 3_000, repeats: int = 3) -> None:
    """Every layer on, then the same without limits, interleaved ``repeats`` times (see the module docstring)."""
    runs: dict[bool, list[tuple[float, float, float, float]]] = {True: [], False: []}
    for _ in range(repeats):
        for with_limits in (True, False):
            through, direct, cpu = _miss_run(n, with_limits)
            runs[with_limits].append((_median_us(through), statistics.mean(through) * 1e6, _median_us(direct), _median_us(cpu)))
    for with_limits in (True, False):
        meds = [r[0] for r in runs[with_limits]]
        g, bare = statistics.median(meds), statistics.median(r[2] for r in runs[with_limits])
        label = "miss with every layer on:" if with_limits else "the same without limits: "
        print(f"{label} {g:.0f} us median of {repeats} runs' medians ({', '.join(f'{m:.0f}' for m in meds)}), "
              f"mean {statistics.median(r[1] for r in runs[with_limits]):.0f} us, CPU {statistics.median(r[3] for r in runs[with_limits]):.0f} us "
              f"over {n:,} calls each; bare provider call {bare:.1f} us; overhead {g - bare:.0f} us"
              + (" (target <= 100 us)" if with_limits else ""))


def _miss_run(n: int, with_limits: bool) -> tuple[list[float], list[float], list[float]]:
    import workbench as wb
    from workbench import gateway as gw
    from workbench.providers.base import Request

    bare = _Instant()
    backup = _Instant()
    backup.name = "instant-backup"
    with tempfile.TemporaryDirectory() as tmp:
        gateway = gw.Gateway(
            cache=gw.ExactCache(), semantic_cache=gw.SemanticCache(threshold=0.95),
            router=gw.Router([gw.Route("claude-haiku-4-5", max_input_tokens=500)]),
            fallbacks=gw.Fallbacks([bare, gw.Target(backup, "claude-haiku-4-5")]),
            guardrails=gw.Guardrails(input=[gw.pii(), gw.max_length(chars=20_000)], output=[gw.pii(action="flag")]),
            limits=gw.Limits(gw.RateLimit(requests=10**9, tokens=10**12), gw.Budget(usd=10**6, period="day")) if with_limits else None,
            name="all-layers",
        )
        bench = wb.open(Path(tmp) / "m.db", provider=gateway)
        # Distinct questions (random words), so every call misses both caches.
        rng = random.Random(0)
        words = [w for w in _WORDS.split() if len(w) > 3]
        requests = [Request.of("claude-sonnet-4-5", " ".join(rng.sample(words, 12)) + "?",
                               max_tokens=300, metadata={"caller": {"user_id": f"user-{i % 50}"}}) for i in range(n + 200)]

        async def run() -> tuple[list[float], list[float], list[float]]:
            for r in requests[:200]:  # warm-up: imports, prices, the embedder
                await gateway.complete(r)
                await bare.complete(r)
            through, direct, cpu = [], [], []
            for r in requests[200:]:
                t0 = time.perf_counter()
                await bare.complete(r)
                t1 = time.perf_counter()
                c1 = time.thread_time()
                await gateway.complete(r)
                c2 = time.thread_time()
                t2 = time.perf_counter()
                direct.append(t1 - t0)
                through.append(t2 - t1)
                cpu.append(c2 - c1)
            return through, direct, cpu

        result = asyncio.run(run())
        bench.close()
    return result


def main() -> None:
    exact_hit()
    semantic_lookup()
    miss_overhead()


if __name__ == "__main__":
    main()
