"""Response caches: exact (a hash of the canonical request) and semantic (similar questions).

Both live in the ``gateway_cache`` table of the workbench file (this module is its
only reader and writer), so a cache survives restarts and is shared by every
process on the file. Writes go through the store's background writer; reads of
the exact cache hit an in-process map first, so a repeated request costs
microseconds. Errors and truncated answers (``stop_reason == "max_tokens"``)
are never stored.

The semantic cache embeds the last user turn, keeps normalised float32 vectors
per guard (model, system prompt, parameters, prompt version) and answers with an
exact search that reads about half of them (``_Index``). Only single-turn requests are looked up unless
``multi_turn=True``, because a follow-up ("and in euros?") means nothing alone.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import random
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._canonical import loads
from .._ids import utc_from_epoch
from ..errors import ConfigError, MissingDependency
from ..providers.base import Completion, Request, Usage

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "CacheHit",
    "ExactCache",
    "SemanticCache",
    "cacheable",
    "hashing_embedder",
    "request_key",
    "wordllama_embedder",
]

OUTBOX_ROWS = 64
OUTBOX_S = 0.5
"""Cache rows are handed to the writer 64 at a time, or after half a second."""
REFRESH_S = 1.0
"""How often an exact cache catches up with keys other processes stored."""
MEMORY_ENTRIES = 10_000
"""Exact-cache entries kept in memory per process (least recently used go first)."""

LOAD_CHUNK = 10_000
"""Rows read at a time when a semantic index is loaded from the file."""
NEAR_MISS = 0.1
"""A miss this close to the threshold names its nearest stored question and similarity on the
trace; a farther one says only that nothing came within it (``below``), which spares a full scan."""
_GUARDS: dict[tuple[Any, ...], str] = {}
"""Single-turn requests' settings -> their semantic guard (``SemanticCache.guard``)."""
GUARDS_MAX = 10_000
SCAN_BLOCK = 2_048
"""Rows of a semantic index multiplied by one BLAS call (see ``_Index.best``)."""
Embedder = Callable[[Sequence[str]], Any]
"""Any callable from texts to a (n, dim) array of vectors."""


@dataclass(frozen=True)
class CacheHit:
    """A stored answer that serves a request."""

    completion: Completion
    """The stored answer (its usage is the original call's)."""
    cost_usd: float | None
    """What the original call cost: the dollars this hit saved."""
    kind: str
    """``exact`` or ``semantic``."""
    key: str
    """The exact key, or the guard of a semantic entry."""
    similarity: float | None = None
    """Semantic hits: cosine similarity to the stored question."""
    matched: str | None = None
    """Semantic hits: the stored question."""
    age_s: float = 0.0
    """Seconds since the answer was stored."""


def request_key(request: Request) -> str:
    """'sha256:' of everything in a request that changes the answer.

    Model, system prompt, every turn, max_tokens, temperature and stop sequences.
    Whether the system prompt is marked for prompt caching is left out (it changes
    the price, not the answer), and so is metadata (it never reaches the provider),
    except ``sample`` (the simulated provider draws by it) and ``answer_params``
    (a wrapped client's other parameters: tools, top_p, thinking, ...).
    """
    meta = request.metadata
    raw = json.dumps([
        request.model, request.system, [(m.role, m.content) for m in request.messages],
        request.max_tokens, request.temperature, request.stop, meta.get("sample"), meta.get("answer_params"),
    ], ensure_ascii=False, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def cacheable(completion: Completion) -> bool:
    """Whether an answer may be stored: complete (not cut at max_tokens) and not empty."""
    return completion.stop_reason != "max_tokens" and bool(completion.text)


def _completion_json(c: Completion) -> str:
    u = c.usage
    return json.dumps({
        "text": c.text, "model": c.model, "stop_reason": c.stop_reason, "provider": c.provider,
        "latency_ms": c.latency_ms, "request_id": c.request_id,
        "usage": [u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens],
    }, ensure_ascii=False, separators=(",", ":"))


def _completion_of(text: str) -> Completion:
    d = loads(text)
    return Completion(
        text=d["text"], model=d["model"], stop_reason=d["stop_reason"], usage=Usage(*d["usage"]),
        latency_ms=d["latency_ms"], request_id=d.get("request_id"), provider=d.get("provider") or "",
    )


def _check_ttl(ttl_s: float | None) -> float | None:
    if ttl_s is not None and (not isinstance(ttl_s, (int, float)) or ttl_s <= 0):
        raise ConfigError(f"cache ttl_s must be a positive number of seconds or None (never expires), got {ttl_s!r}")
    return ttl_s


def _check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not namespace:
        raise ConfigError(f"cache namespace must be a non-empty string, got {namespace!r}")
    return namespace


INSERT_SQL = (
    "INSERT INTO gateway_cache (kind, namespace, key, prompt, embedding, embedder, completion_json, "
    "cost_usd, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_ROW_SQL = (
    "INSERT INTO gateway_cache (id, kind, namespace, key, prompt, embedding, embedder, completion_json, "
    "cost_usd, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_id_rng = random.Random()


def _row_id() -> int:
    """A random positive 62-bit row id: unique across processes without asking the file."""
    return _id_rng.getrandbits(62) | 1
UPSERT_EXACT_SQL = INSERT_SQL + (
    " ON CONFLICT (namespace, key) WHERE kind = 'exact' DO UPDATE SET completion_json = excluded.completion_json, "
    "cost_usd = excluded.cost_usd, created_at = excluded.created_at, expires_at = excluded.expires_at"
)


class ExactCache:
    """Answers a request seen before with the stored answer.

    Args:
        ttl_s: seconds an answer stays valid; None keeps it until cleared.
        namespace: entries of one namespace never serve another (apps, tenants).
        memory_entries: answers kept in this process's memory in front of the file.
        clock: Unix time for expiry (simulations pass their own).

    ``bench.complete(..., metadata={"no_cache": True})`` skips the cache for one call
    (the answer is still stored for the next).
    """

    kind = "exact"

    def __init__(self, *, ttl_s: float | None = 24 * 3600, namespace: str = "default", memory_entries: int = MEMORY_ENTRIES,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.ttl_s = _check_ttl(ttl_s)
        self.namespace = _check_namespace(namespace)
        if not isinstance(memory_entries, int) or memory_entries < 0:
            raise ConfigError(f"memory_entries must be an integer >= 0, got {memory_entries!r}")
        self.memory_entries = memory_entries
        self._memory: OrderedDict[str, tuple[Completion, float | None, float, float | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.store: Store | None = None
        self.sink: Callable[[str, Any], None] | None = None
        self.refresh_s = REFRESH_S
        self._outbox = _Outbox(self)
        self._known: set[int] = set()
        self._seen_id = 0
        self._refreshed_at = -math.inf

    def spec(self) -> dict[str, Any]:
        return {"kind": "exact", "ttl_s": self.ttl_s, "namespace": self.namespace}

    def bind(self, store: Store, sink: Callable[[str, Any], None] | None = None) -> None:
        """Read from ``store``; write through ``sink(sql, row)`` (default: the store's background writer)."""
        self.store = store
        self.sink = sink

    def flush(self) -> None:
        """Hand rows still in the outbox to the writer (``bench.flush()`` does this)."""
        self._outbox.flush(lambda: self.sink or (self.store.writer.put if self.store is not None else None))

    def lookup(self, request: Request, key: str | None = None, now: float | None = None) -> CacheHit | None:
        """The stored answer for ``request``, or None (also when it has expired)."""
        key = key or request_key(request)
        now = self.clock() if now is None else now
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
        if entry is None and self.store is not None and self._maybe_stored(key, now):
            rows = self.store.execute(
                "SELECT completion_json, cost_usd, created_at, expires_at FROM gateway_cache "
                "WHERE kind = 'exact' AND namespace = ? AND key = ?",
                (self.namespace, key),
            ).fetchall()
            if rows:
                text, cost, created, expires = rows[0]
                entry = (_completion_of(text), cost, _epoch(created), expires)
                self._remember(key, entry)
        if entry is None:
            return None
        completion, cost, created_at, expires_at = entry
        if expires_at is not None and expires_at <= now:
            with self._lock:
                self._memory.pop(key, None)
            return None
        return CacheHit(completion, cost, "exact", key, age_s=max(now - created_at, 0.0))

    def store_answer(self, request: Request, completion: Completion, cost_usd: float | None, key: str | None = None,
                     now: float | None = None, payload: str | None = None) -> bool:
        """Keep ``completion`` for ``request``; False when it may not be cached.

        ``key`` and ``payload`` (the answer as stored JSON) save work when the caller has them.
        """
        if not cacheable(completion):
            return False
        key = key or request_key(request)
        now = self.clock() if now is None else now
        expires = None if self.ttl_s is None else now + self.ttl_s
        self._remember(key, (completion, cost_usd, now, expires))
        with self._lock:
            self._known.add(_prefix(key))
        if self.store is not None:
            self._outbox.put(self.sink or self.store.writer.put, UPSERT_EXACT_SQL, (
                "exact", self.namespace, key, None, None, None, payload or _completion_json(completion), cost_usd,
                _created_text(now), expires,
            ))
        return True

    def _maybe_stored(self, key: str, now: float) -> bool:
        """Whether the file may hold ``key``: a miss then costs a set lookup, not a query.

        The keys of the file's entries are kept as 64-bit prefixes (a collision only
        costs a query) and caught up by row id every ``refresh_s`` seconds, so an
        answer another process stored is found within that time.
        """
        if now - self._refreshed_at >= self.refresh_s or now < self._refreshed_at:
            self._refreshed_at = now
            rows = self.store.execute(  # type: ignore[union-attr]
                "SELECT id, key FROM gateway_cache WHERE kind = 'exact' AND namespace = ? AND id > ?",
                (self.namespace, self._seen_id),
            ).fetchall()
            with self._lock:
                for row_id, k in rows:
                    self._known.add(_prefix(k))
                    self._seen_id = max(self._seen_id, row_id)
        return _prefix(key) in self._known

    def _remember(self, key: str, entry: tuple[Completion, float | None, float, float | None]) -> None:
        if not self.memory_entries:
            return
        with self._lock:
            self._memory[key] = entry
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_entries:
                self._memory.popitem(last=False)

    def clear(self) -> int:
        """Forget every entry of this namespace (in memory and in the file); returns rows deleted."""
        self._outbox.flush(lambda: None)  # dropped: they are being cleared
        with self._lock:
            self._memory.clear()
            self._known.clear()
        if self.store is None:
            return 0
        self.store.sync()
        return self.store.execute(
            "DELETE FROM gateway_cache WHERE kind = 'exact' AND namespace = ?", (self.namespace,)
        ).rowcount

    def __repr__(self) -> str:
        return f"ExactCache(ttl_s={self.ttl_s}, namespace={self.namespace!r})"


class _Outbox:
    """Cache rows on their way to the file, handed over in batches.

    A row per call handed to the store's writer wakes its thread once per call,
    and on a busy machine each wake-up costs the caller a GIL hand-off; a batch
    costs one. Losing a batch (a crash) only loses cached answers, which the next
    call makes again.
    """

    def __init__(self, owner: Any) -> None:
        self.rows: list[tuple[str, Any]] = []
        self.since = 0.0
        self.lock = threading.Lock()
        _outboxes.add(owner)

    def put(self, sink: Callable[[str, Any], None], sql: str, row: Any) -> None:
        now = time.monotonic()
        with self.lock:
            if not self.rows:
                self.since = now
            self.rows.append((sql, row))
            if len(self.rows) < OUTBOX_ROWS and now - self.since < OUTBOX_S:
                return
            rows, self.rows = self.rows, []
        for item in rows:
            sink(*item)

    def flush(self, sink: Callable[[], Callable[[str, Any], None] | None]) -> None:
        """Hand every row to ``sink()`` (asked for only when there are rows)."""
        with self.lock:
            rows, self.rows = self.rows, []
        put = sink() if rows else None
        if put is not None:
            for item in rows:
                put(*item)


_outboxes: weakref.WeakSet[Any] = weakref.WeakSet()


@atexit.register
def _flush_outboxes() -> None:
    # Registered after the store's own exit hook, so it runs first: rows reach the writer before it closes.
    for cache in list(_outboxes):
        try:
            cache.flush()
        except Exception:  # noqa: BLE001 - at exit, keep flushing the others
            pass


def _prefix(key: str) -> int:
    """The first 64 bits of a 'sha256:...' key."""
    return int(key[7:23], 16)


_second: list[Any] = [None, ""]
"""The whole second last written by ``_created_text`` and its text up to the seconds."""


def _created_text(now: float) -> str:
    """``utc_from_epoch(now)``, with the date and time formatted once a second (two per cached answer)."""
    second = math.floor(now)
    micros = round((now - second) * 1e6)
    if micros >= 1_000_000:
        return utc_from_epoch(now)  # rounds up into the next second: let datetime carry it
    if _second[0] != second:
        _second[1] = utc_from_epoch(second)[:19]
        _second[0] = second
    return f"{_second[1]}.{micros:06d}+00:00"


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


# -- embedders -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+")


def hashing_embedder(dim: int = 512, *, ngrams: int = 3) -> Embedder:
    """A dependency-free embedder: hashed word unigrams and bigrams plus character n-grams.

    It sees surface overlap only: paraphrases that share few words score low, and
    near misses that share most words ("cancel my order" / "cancel my subscription")
    score high. Kept as the baseline the semantic cache is measured against.
    """
    import numpy as np

    def features(text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        out = words + [f"{a}_{b}" for a, b in zip(words, words[1:])]
        for w in words:
            padded = f"<{w}>"
            out += [padded[i:i + ngrams] for i in range(max(len(padded) - ngrams + 1, 1))]
        return out

    def embed(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for f in features(text):
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[row, h % dim] += 1.0 if (h >> 63) else -1.0
        return out

    embed.name = f"hashing-{dim}"  # type: ignore[attr-defined]
    return embed


_wordllama: Any = None
_wordllama_lock = threading.Lock()


def wordllama_embedder(dim: int = 256) -> Embedder:
    """WordLlama's ``l2_supercat`` token embeddings (MIT), loaded from its wheel: no download.

    ``dim`` truncates the Matryoshka-trained vectors (64, 128 or 256): fewer
    dimensions, less memory per cached entry. Needs ``pip install 'workbench[semantic]'``.
    The vectors are WordLlama's own (the mean of the text's token embeddings);
    a text is tokenized word by word with each word's ids remembered, which gives
    the ids of the whole text (``_wordllama_ids``) at a third of the cost.
    """
    import numpy as np

    if dim not in (64, 128, 256):
        raise ConfigError(f"wordllama dim must be 64, 128 or 256, got {dim!r}")
    table: list[Any] = []

    def embed(texts: Sequence[str]) -> Any:
        tokenizer, weights = _load_wordllama()
        if not table:
            table.append(np.ascontiguousarray(weights[:, :dim], dtype=np.float32))
        w = table[0]
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = _wordllama_ids(tokenizer, text)
            if ids:
                # take + sum is one C call each; fancy indexing and .mean() cost 4x more per question.
                out[row] = w.take(ids, axis=0, mode="clip").sum(axis=0) / len(ids)
        return out

    def one(text: str) -> Any:
        """One question's vector, already normalised: the gateway embeds one question per miss."""
        tokenizer, weights = _load_wordllama()
        if not table:
            table.append(np.ascontiguousarray(weights[:, :dim], dtype=np.float32))
        ids = _wordllama_ids(tokenizer, text)
        if not ids:
            return np.zeros(dim, dtype=np.float32)
        vector = table[0].take(ids, axis=0, mode="clip").sum(axis=0)
        norm = math.sqrt(float(vector @ vector))
        if norm:
            vector /= norm
        return vector

    embed.name = f"wordllama-l2_supercat-{dim}"  # type: ignore[attr-defined]
    embed.one = one  # type: ignore[attr-defined]
    return embed


_WORD_IDS: dict[str, list[int]] = {}
"""Token ids of each word seen (``_wordllama_ids``); emptied when it reaches ``WORD_IDS_MAX``."""
WORD_IDS_MAX = 50_000
SPACE = "\u2581"
"""SentencePiece's word marker: WordLlama's tokenizer turns every space into it."""


def _wordllama_ids(tokenizer: Any, text: str) -> list[int]:
    """The ids ``tokenizer.encode(text)`` gives, from the ids of each word, remembered.

    WordLlama's tokenizer (Llama 2's BPE) has no pre-tokenizer: it turns spaces
    into ``▁`` and runs BPE over the whole text, so nothing it learns carries from
    one question to the next, and on a busy server (cold CPU caches) one question
    took 50 to 90 µs. No token of its vocabulary has ``▁`` anywhere but first,
    except runs of ``▁`` alone (checked in the tests), so no merge crosses the
    start of a word, and the text's ids are its words' ids one after another when
    the words are separated by single spaces. Other texts (a leading, trailing or
    double space, a ``▁`` of their own) take the tokenizer's own path.
    """
    words = text.split(" ")
    if SPACE in text or "" in words:
        return tokenizer.encode(text, add_special_tokens=False).ids
    if len(_WORD_IDS) >= WORD_IDS_MAX:
        _WORD_IDS.clear()
    ids: list[int] = []
    for word in words:
        known = _WORD_IDS.get(word)
        if known is None:
            known = _WORD_IDS[word] = tokenizer.encode(word, add_special_tokens=False).ids
        ids += known
    return ids


def _load_wordllama() -> tuple[Any, Any]:
    """The tokenizer and the 256-dimension weights from inside the wordllama wheel.

    ``WordLlama.load()`` looks for the tokenizer under ``tokenizer/`` while the
    wheel ships it under ``tokenizers/``, then tries to download it: read both
    files from the package instead, so no network is ever needed.
    """
    global _wordllama
    with _wordllama_lock:
        if _wordllama is not None:
            return _wordllama
        try:
            import wordllama
            from safetensors import safe_open
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingDependency(
                f"the wordllama embedder needs the 'semantic' extra ({exc.name} is missing): "
                "pip install 'workbench[semantic]', or pass embedder=wb.gateway.hashing_embedder()"
            ) from None
        from pathlib import Path

        root = Path(wordllama.__file__).parent
        tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
        tokenizer.no_truncation()
        with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np", device="cpu") as f:
            weights = f.get_tensor("embedding.weight")
        _wordllama = (tokenizer, weights)
        return _wordllama


def default_embedder() -> Embedder:
    """WordLlama at 128 dimensions when installed, else the hashing embedder.

    Chosen by measurement on ``tests/fixtures/semantic_pairs.jsonl`` (31 paraphrases,
    29 near misses) at threshold 0.9: WordLlama-128 served 14 of 31 paraphrases with
    1 wrong hit, WordLlama-256 12 with 1, the hashing embedder 0 with 1. 128
    dimensions also halve the memory per entry (51 MB for 100,000 entries).
    """
    import importlib.util

    if importlib.util.find_spec("wordllama") is not None:
        return wordllama_embedder(128)
    return hashing_embedder()


def evaluate(pairs: Sequence[dict[str, Any]], embedder: Embedder | None = None, threshold: float = 0.9) -> dict[str, Any]:
    """Hit rate and precision of a semantic cache on labelled pairs.

    Each pair is ``{"cached": question, "asked": question, "same": bool}``: every
    ``cached`` question is stored (with its own answer), every ``asked`` one looked
    up. A hit is right when ``same`` and the stored question it matched is the
    pair's; any hit on a near miss (``same`` false) served a wrong answer.
    """
    import numpy as np

    cache = SemanticCache(threshold=threshold, embedder=embedder)
    stored = sorted({p["cached"] for p in pairs})
    matrix = cache.embed(stored)
    queries = cache.embed([p["asked"] for p in pairs])
    sims = queries @ matrix.T
    best = sims.argmax(axis=1)
    right = wrong = paraphrases = 0
    for p, i, row in zip(pairs, best, sims):
        paraphrases += bool(p["same"])
        if row[i] < threshold:
            continue
        if p["same"] and stored[i] == p["cached"]:
            right += 1
        else:
            wrong += 1
    hits = right + wrong
    return {
        "embedder": cache.embedder_name, "threshold": threshold, "pairs": len(pairs), "paraphrases": paraphrases,
        "hits": hits, "right_hits": right, "wrong_hits": wrong,
        "hit_rate": right / paraphrases if paraphrases else float("nan"),
        "precision": right / hits if hits else float("nan"),
        "max_near_miss_similarity": float(max((r[i] for p, i, r in zip(pairs, best, sims) if not p["same"]), default=np.nan)),
    }


def embedder_name(embedder: Embedder) -> str:
    return str(getattr(embedder, "name", None) or getattr(embedder, "__qualname__", None) or repr(embedder))


# -- the semantic cache --------------------------------------------------------------------------


class _Index:
    """One guard's vectors, searched exactly in two passes, and their row ids.

    Each normalised vector is kept as its first half (``head``, with the norm of
    the second half appended as one more column) and its second half (``tail``).
    By Cauchy-Schwarz, ``q·x <= q_head·x_head + |q_tail|·|x_tail|``: one product
    of the query (its head, then its tail's norm) with ``head`` gives that upper
    bound for every entry while reading a little over half the bytes a full
    product reads (the scan is memory-bound), and only entries whose bound reaches
    ``floor`` get their exact similarity from ``tail``. Nothing at or above the
    floor is ever missed, so hits are exactly those of a full product; a miss
    learns its nearest similarity only when it is above the floor. The arrays grow
    by doubling.
    """

    __slots__ = ("head", "tail", "ids", "expires", "n", "split")

    def __init__(self, dim: int, capacity: int = 64) -> None:
        import numpy as np

        # Embedders that put the most weight first (WordLlama's Matryoshka vectors) make the bound tightest.
        self.split = dim // 2 if dim >= 16 else dim
        self.head = np.zeros((capacity, self.split + 1), dtype=np.float32)
        self.tail = np.zeros((capacity, dim - self.split), dtype=np.float32)
        self.ids = np.zeros(capacity, dtype=np.int64)
        self.expires = np.full(capacity, np.inf, dtype=np.float64)
        self.n = 0

    def add(self, vectors: Any, ids: Sequence[int], expires: Sequence[float]) -> None:
        import numpy as np

        k = len(ids)
        if self.n + k > len(self.ids):
            capacity = max(self.n + k, 2 * len(self.ids))
            for name in ("head", "tail", "ids", "expires"):
                old = getattr(self, name)
                new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        if k == 1:  # a miss stores one answer: plain item writes, a fifth of the slicing's cost
            n, vector, tail = self.n, vectors[0], vectors[0, self.split:]
            self.head[n, : self.split] = vector[: self.split]
            self.head[n, self.split] = math.sqrt(float(tail @ tail))
            self.tail[n] = tail
            self.ids[n] = ids[0]
            self.expires[n] = expires[0]
            self.n += 1
            return
        rows = slice(self.n, self.n + k)
        tail = vectors[:, self.split:]
        self.head[rows, : self.split] = vectors[:, : self.split]
        self.head[rows, self.split] = np.sqrt(np.einsum("ij,ij->i", tail, tail))
        self.tail[rows] = tail
        self.ids[rows] = ids
        self.expires[rows] = expires
        self.n += k

    def best(self, query: Any, now: float, floor: float) -> tuple[int, float] | None:
        """(position, similarity) of the closest live entry at or above ``floor``, or None."""
        import numpy as np

        if not self.n:
            return None
        q_tail = query[self.split:]
        q = np.empty(self.split + 1, dtype=np.float32)
        q[: self.split] = query[: self.split]
        q[self.split] = np.sqrt(q_tail @ q_tail)
        # BLAS a block of rows at a time: OpenBLAS runs one product of 8,192 rows or more
        # on several threads, which on a busy 2-core machine took 13 ms instead of 1; a
        # block of 2,048 stays on this thread and is 3x faster than einsum's own loop.
        if self.n <= SCAN_BLOCK:
            bound = self.head[: self.n] @ q
        else:
            bound = np.empty(self.n, dtype=np.float32)
            for start in range(0, self.n, SCAN_BLOCK):
                end = min(start + SCAN_BLOCK, self.n)
                np.matmul(self.head[start:end], q, out=bound[start:end])
        # The slack covers float32 rounding in the bound: an entry exactly at the floor stays in.
        candidates = np.flatnonzero(bound >= floor - 1e-5)
        if not candidates.size:
            return None
        if candidates.size == 1:  # the usual case: no array gathering for one row
            i = int(candidates[0])
            if self.expires[i] <= now:
                return None
            sim = float(self.head[i, : self.split] @ q[: self.split] + self.tail[i] @ q_tail)
            return (i, sim) if sim >= floor else None
        head = self.head[candidates]
        sims = head[:, : self.split] @ q[: self.split] + self.tail[candidates] @ q_tail
        sims[self.expires[candidates] <= now] = -np.inf
        i = int(np.argmax(sims))
        if not np.isfinite(sims[i]) or sims[i] < floor:
            return None
        return int(candidates[i]), float(sims[i])

    def nbytes(self) -> int:
        return self.head.nbytes + self.tail.nbytes + self.ids.nbytes + self.expires.nbytes


class SemanticCache:
    """Answers a question close enough to one answered before.

    Args:
        threshold: cosine similarity at or above which a stored answer is served.
        embedder: any callable from texts to vectors; default WordLlama when
            installed, else the hashing embedder.
        ttl_s: seconds an answer stays valid; None keeps it until cleared.
        namespace: entries of one namespace never serve another.
        multi_turn: also look up requests with earlier turns (off: a follow-up
            question depends on what came before).
        clock: Unix time for expiry (simulations pass their own).

    Guards: an entry serves only a request with the same model, system prompt,
    max_tokens, temperature, stop sequences and prompt name and version; a new
    prompt version therefore never sees an older version's answers.
    """

    kind = "semantic"

    def __init__(
        self,
        *,
        threshold: float = 0.9,
        embedder: Embedder | None = None,
        ttl_s: float | None = 24 * 3600,
        namespace: str = "default",
        multi_turn: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ConfigError(f"semantic cache threshold must be a cosine similarity in (0, 1], got {threshold!r}")
        if embedder is not None and not callable(embedder):
            raise ConfigError(f"embedder must be a callable from a list of texts to vectors, got {embedder!r}")
        self.threshold = float(threshold)
        self.embedder = embedder or default_embedder()
        self.embedder_name = embedder_name(self.embedder)
        self.ttl_s = _check_ttl(ttl_s)
        self.namespace = _check_namespace(namespace)
        self.multi_turn = multi_turn
        self.store: Store | None = None
        self.sink: Callable[[str, Any], None] | None = None
        self._indexes: dict[str, _Index] = {}
        self._loaded: set[str] = set()
        self._lock = threading.Lock()
        self._outbox = _Outbox(self)
        self._recent: OrderedDict[int, tuple[str, str, float | None, str]] = OrderedDict()
        """Rows this process wrote that may still be on their way to disk."""

    def spec(self) -> dict[str, Any]:
        return {"kind": "semantic", "threshold": self.threshold, "embedder": self.embedder_name,
                "ttl_s": self.ttl_s, "namespace": self.namespace, "multi_turn": self.multi_turn}

    def bind(self, store: Store, sink: Callable[[str, Any], None] | None = None) -> None:
        """Read from ``store``; write through ``sink(sql, row)`` (default: the store's background writer)."""
        self.store = store
        self.sink = sink

    def flush(self) -> None:
        """Hand rows still in the outbox to the writer (``bench.flush()`` does this)."""
        self._outbox.flush(lambda: self.sink or (self.store.writer.put if self.store is not None else None))

    @staticmethod
    def guard(request: Request) -> str:
        """What must be equal for one answer to serve another request (hashed)."""
        meta = request.metadata
        parts = (request.model, request.system, request.max_tokens, request.temperature, request.stop,
                 meta.get("prompt_name"), meta.get("prompt_version"), meta.get("answer_params"))
        single = len(request.messages) <= 1
        if single:
            # A single-turn request's guard is its settings': few, and asked for on every miss.
            try:
                known = _GUARDS.get(parts)
            except TypeError:  # an unhashable prompt name or version: hash it every time
                known, single = None, False
            if known is not None:
                return known
        raw = json.dumps([*parts, [(m.role, m.content) for m in request.messages[:-1]]],
                         ensure_ascii=False, separators=(",", ":"), default=str)
        guard = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
        if single:
            if len(_GUARDS) >= GUARDS_MAX:
                _GUARDS.clear()
            _GUARDS[parts] = guard
        return guard

    def question(self, request: Request) -> str | None:
        """The text that is embedded: the last user turn; None when the request is not eligible."""
        if not request.messages or request.messages[-1].role != "user":
            return None
        if len(request.messages) > 1 and not self.multi_turn:
            return None
        return request.messages[-1].content

    def embed(self, texts: Sequence[str]) -> Any:
        """Normalised float32 vectors for ``texts``."""
        import numpy as np

        vectors = np.asarray(self.embedder(list(texts)), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ConfigError(
                f"embedder {self.embedder_name} returned shape {vectors.shape} for {len(texts)} texts; "
                "it must return one vector per text"
            )
        # Row norms by einsum and one in-place fix-up: linalg.norm and np.where cost more than the embedding.
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        norms[norms == 0] = 1
        return vectors / norms[:, None]

    def embed_question(self, text: str) -> Any:
        """``embed([text])[0]``, through the embedder's own one-text path when it has one (``.one``)."""
        one = getattr(self.embedder, "one", None)
        return one(text) if one is not None else self.embed([text])[0]

    def _index(self, guard: str) -> _Index | None:
        """The guard's index, loaded from the file the first time it is asked for."""
        with self._lock:
            index = self._indexes.get(guard)
            if guard in self._loaded or self.store is None:
                return index
            self._loaded.add(guard)
        import numpy as np

        where = ("FROM gateway_cache WHERE kind = 'semantic' AND namespace = ? AND key = ? AND embedder = ? "
                 "AND (expires_at IS NULL OR expires_at > ?)")
        params = (self.namespace, guard, self.embedder_name, self.clock())
        with self.store.lock:
            total = self.store.conn.execute(f"SELECT COUNT(*) {where}", params).fetchone()[0]
            if not total:
                return index
            cursor = self.store.conn.execute(f"SELECT id, embedding, expires_at {where}", params)
            # Read in chunks into arrays sized once: the rows never all sit in Python at once.
            while chunk := cursor.fetchmany(LOAD_CHUNK):
                vectors = np.frombuffer(b"".join(r[1] for r in chunk), dtype=np.float32).reshape(len(chunk), -1)
                with self._lock:
                    index = self._indexes.get(guard) or _Index(vectors.shape[1], total)
                    self._indexes[guard] = index
                    known = set(index.ids[: index.n].tolist()) if index.n < total else set()
                    keep = [i for i, r in enumerate(chunk) if r[0] not in known]
                    index.add(vectors[keep], [chunk[i][0] for i in keep],
                              [math.inf if chunk[i][2] is None else chunk[i][2] for i in keep])
        return index

    def lookup(self, request: Request, now: float | None = None, vector: Any = None,
               guard: str | None = None) -> tuple[CacheHit | None, dict[str, Any]]:
        """(the hit or None, what the lookup found for the trace).

        ``vector`` (the question embedded) and ``guard`` save work when the caller has them.
        """
        text = self.question(request)
        if text is None:
            reason = "multi-turn" if request.messages and request.messages[-1].role == "user" else "not a user turn"
            return None, {"result": "skipped", "reason": reason}
        now = self.clock() if now is None else now
        guard = guard or self.guard(request)
        index = self._index(guard)
        if index is None or not index.n:
            return None, {"result": "miss", "similarity": None}
        query = self.embed_question(text) if vector is None else vector
        floor = max(self.threshold - NEAR_MISS, -1.0)
        with self._lock:
            found = index.best(query, now, floor)
            if found is None:
                # Far from anything stored: how far is not worth a full scan.
                return None, {"result": "miss", "similarity": None, "below": round(floor, 4)}
            pos, sim = found
            row_id = int(index.ids[pos])
        info: dict[str, Any] = {"result": "miss", "similarity": round(sim, 4)}
        hit_it = sim >= self.threshold
        recent = self._recent.get(row_id)
        rows = [recent] if recent is not None else self.store.execute(
            "SELECT prompt, completion_json, cost_usd, created_at FROM gateway_cache WHERE id = ?", (row_id,)
        ).fetchall() if self.store is not None else []
        if not rows:
            return None, info
        matched, text, cost, created = rows[0]
        info["nearest"] = matched[:200]
        if not hit_it:
            return None, info
        info["result"] = "hit"
        hit = CacheHit(_completion_of(text), cost, "semantic", guard, similarity=sim, matched=matched,
                       age_s=max(now - _epoch(created), 0.0))
        return hit, info

    def store_answer(self, request: Request, completion: Completion, cost_usd: float | None, now: float | None = None,
                     vector: Any = None, guard: str | None = None, payload: str | None = None) -> bool:
        """Keep ``completion`` for questions like this one; False when it may not be cached.

        The row goes through the store's background writer with a random 62-bit
        id chosen here, so the index can point at it before it is on disk; until
        then a hit is served from ``_recent``. ``vector``, ``guard`` and ``payload``
        save work when the caller has them.
        """
        text = self.question(request)
        if text is None or not cacheable(completion) or self.store is None:
            return False
        now = self.clock() if now is None else now
        guard = guard or self.guard(request)
        self._index(guard)  # load what the file has before adding to it
        vec = self.embed_question(text) if vector is None else vector
        expires = None if self.ttl_s is None else now + self.ttl_s
        row_id = _row_id()
        created = _created_text(now)
        payload = payload or _completion_json(completion)
        self._outbox.put(self.sink or self.store.writer.put, INSERT_ROW_SQL, (
            row_id, "semantic", self.namespace, guard, text, vec.astype("float32", copy=False).tobytes(), self.embedder_name,
            payload, cost_usd, created, expires,
        ))
        with self._lock:
            index = self._indexes.get(guard) or _Index(len(vec))
            self._indexes[guard] = index
            index.add(vec[None, :], [row_id], [math.inf if expires is None else expires])
            self._recent[row_id] = (text, payload, cost_usd, created)
            while len(self._recent) > MEMORY_ENTRIES:
                self._recent.popitem(last=False)
        return True

    def add_many(self, pairs: Sequence[tuple[Request, Completion]], cost_usd: float | None = None) -> int:
        """Store many answers at once (warming a cache, benchmarks): one embedding call, one transaction."""
        if self.store is None:
            raise ConfigError("bind the cache to a workbench first: wb.open(path, provider=gateway)")
        eligible = [(r, c, q) for r, c in pairs if (q := self.question(r)) is not None and cacheable(c)]
        if not eligible:
            return 0
        vectors = self.embed([q for _, _, q in eligible])
        now = self.clock()
        expires = None if self.ttl_s is None else now + self.ttl_s
        created = utc_from_epoch(now)
        guards = [self.guard(r) for r, _, _ in eligible]
        ids = [_row_id() for _ in eligible]
        with self.store.transaction() as conn:
            conn.executemany(INSERT_ROW_SQL, [
                (ids[i], "semantic", self.namespace, guards[i], q, vectors[i].tobytes(), self.embedder_name,
                 _completion_json(c), cost_usd, created, expires)
                for i, (_, c, q) in enumerate(eligible)
            ])
        by_guard: dict[str, list[int]] = {}
        for i, guard in enumerate(guards):
            by_guard.setdefault(guard, []).append(i)
        for guard, rows in by_guard.items():
            self._index(guard)  # loads the rows just written when the guard is new to this process
            with self._lock:
                index = self._indexes.get(guard) or _Index(vectors.shape[1], len(rows))
                self._indexes[guard] = index
                known = set(index.ids[: index.n].tolist())
                fresh = [i for i in rows if ids[i] not in known]
                index.add(vectors[fresh], [ids[i] for i in fresh], [math.inf if expires is None else expires] * len(fresh))
        return len(eligible)

    def clear(self) -> int:
        """Drop every entry of this namespace; returns rows deleted.

        Entries are never served across prompt versions anyway (the guard); this
        frees their space.
        """
        self._outbox.flush(lambda: None)  # dropped: they are being cleared
        with self._lock:
            self._indexes.clear()
            self._loaded.clear()
            self._recent.clear()
        if self.store is None:
            return 0
        self.store.sync()
        return self.store.execute(
            "DELETE FROM gateway_cache WHERE kind = 'semantic' AND namespace = ?", (self.namespace,)
        ).rowcount

    def memory_bytes(self) -> int:
        """Bytes held by the in-memory indexes (matrices, ids, expiry times)."""
        return sum(i.nbytes() for i in self._indexes.values())

    def __repr__(self) -> str:
        return f"SemanticCache(threshold={self.threshold}, embedder={self.embedder_name!r}, namespace={self.namespace!r})"

