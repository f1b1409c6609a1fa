"""A simulated provider: no key, no network, deterministic per (request, seed).

It reads the rendered prompt like a small extractive model: it finds the
question, scores the other sentences of the prompt by word overlap with it,
and answers with the best one, or, with a probability set by the model
profile's skill, with a plausible wrong one. A prompt that carries the context
therefore really does better than one that does not; no answer key is read.
Latency (lognormal), time to first token, errors and verbosity come from
per-model profiles named after the models they stand in for, and calls are
priced as those models. Every trace it produces is marked simulated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import math
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from ..errors import BadRequest, Overloaded, ProviderError, RateLimited
from . import _simjudge
from .base import BatchInfo, BatchResult, Completion, Request, Usage, cache_ttl

CHARS_PER_TOKEN = 4
MIN_CACHEABLE_TOKENS = 1024
"""The simulator caches a system prompt of at least this many tokens, as Sonnet and Opus do."""


@dataclass(frozen=True)
class ModelProfile:
    """How a simulated model behaves."""

    ttft_median_ms: float
    """Median time to first token."""
    tokens_per_s: float
    """Output speed once streaming."""
    latency_sigma: float
    """Lognormal sigma of both TTFT and generation time."""
    error_rate: float
    """Chance that one attempt fails with a 529 or 429."""
    skill: float
    """Chance of answering with the best-matching sentence."""
    verbosity: float
    """Chance of wrapping the answer in pleasantries (more output tokens)."""


PROFILES: dict[str, ModelProfile] = {
    "claude-haiku-4-5": ModelProfile(380, 190, 0.35, 0.02, 0.80, 0.25),
    "claude-sonnet-4-5": ModelProfile(750, 85, 0.35, 0.01, 0.93, 0.45),
    "claude-opus-4-5": ModelProfile(1100, 55, 0.35, 0.01, 0.97, 0.55),
}
GENERIC_PROFILE = ModelProfile(600, 100, 0.4, 0.02, 0.75, 0.3)
"""Any other model name: answered, but priced only if genai-prices knows it."""

_STOPWORDS = frozenset(
    """a an the and or but if then so to of in on at by for with from as is are was were be been
    being it its this that these those i me my we our you your he she they them their what which who
    whom when where why how do does did doing can could should would will shall may might must have
    has had not no yes there here about into over under up down out than too very just also any all
    each some such only own same other more most get got please thanks hi hello""".split()
)
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_LABEL = re.compile(r"^\s*(\[[a-z]+\]|[A-Z][A-Za-z ]{0,20}:)\s*")
_INSTRUCTION = re.compile(
    r"^(you are|you're|answer|reply|respond|use |using |be |do not|don't|only |always |never |keep |please )", re.I
)
"""Sentences that instruct the model are not facts to answer with."""


@functools.lru_cache(maxsize=16_384)
def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@functools.lru_cache(maxsize=4_096)
def content_words(text: str) -> frozenset[str]:
    # Cached: the same passages and instructions come back in every item and repeat.
    return frozenset(_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS)


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), at least 1 for non-empty text."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN)) if text else 0


def _sentences(text: str) -> list[str]:
    out = []
    for raw in _SENTENCE.split(text):
        s = _LABEL.sub("", raw).strip()
        if s:
            out.append(s)
    return out


def read_answer(request: Request, rng: random.Random, skill: float) -> tuple[str, bool]:
    """Answer the last question in the prompt from the prompt's own sentences.

    Returns the answer and whether it came from the best-matching sentence.
    """
    user_text = "\n".join(m.content for m in request.messages if m.role == "user")
    sentences = _sentences(user_text)
    questions = [s for s in sentences if s.endswith("?")]
    question = questions[-1] if questions else (sentences[-1] if sentences else "")
    q_words = content_words(question)
    candidates = [
        s for s in _sentences(request.system or "") + sentences
        if s != question and not s.endswith("?") and not _INSTRUCTION.match(s)
    ]
    scored = []
    for s in candidates:
        overlap = len(q_words & content_words(s))
        if overlap:
            scored.append((overlap / math.sqrt(len(content_words(s)) or 1), s))
    if not scored:
        return (
            "I don't have the details for that. You can usually find it in the app's Settings, "
            "or contact our support team and they will help.",
            False,
        )
    scored.sort(key=lambda t: -t[0])
    if len(scored) == 1 or rng.random() < skill:
        return scored[0][1], True
    # A plausible mistake: one of the next best matches.
    return rng.choice(scored[1:4])[1], False


class SimulatedProvider:
    """Deterministic stand-in for Claude models.

    Args:
        seed: changes every draw; the same (request, seed) gives the same answer.
        time_scale: real seconds slept per simulated second (0.01 makes a 1 s call
            take 10 ms of wall time). Recorded latencies are the simulated ones.
        fixed_latency_ms: every call takes exactly this long (benchmarks).
        error_rate: overrides every profile's error rate when set.
        profiles: extra or replacement model profiles.
        latency_factor: multiplies every simulated latency (an incident).
        batch_seconds: simulated seconds a Message Batch takes to end.
    """

    name = "simulated"
    simulated = True
    batch_poll_s = 10.0
    """Simulated seconds between looks at a batch (scaled by ``time_scale``, as the batch is)."""
    batch_max_requests = 100_000
    """As the Message Batches API."""

    def __init__(
        self,
        seed: int = 0,
        *,
        time_scale: float = 1.0,
        fixed_latency_ms: float | None = None,
        error_rate: float | None = None,
        profiles: dict[str, ModelProfile] | None = None,
        latency_factor: float = 1.0,
        batch_seconds: float = 60.0,
    ) -> None:
        self.seed = seed
        self.batch_seconds = batch_seconds
        """Simulated seconds a batch takes to end (scaled by ``time_scale``; 0 ends it at once)."""
        self._batches: dict[str, float] = {}
        self._canceled: set[str] = set()
        self._batch_seq = 0
        self.latency_factor = latency_factor
        self.time_scale = time_scale
        self.fixed_latency_ms = fixed_latency_ms
        self.error_rate = error_rate
        self.profiles = {**PROFILES, **(profiles or {})}
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self._cached: set[str] = set()
        self.calls = 0
        """Attempts made, successful or not."""

    def profile(self, model: str) -> ModelProfile:
        if model in self.profiles:
            return self.profiles[model]
        for name, prof in self.profiles.items():
            # Dated ids such as claude-haiku-4-5-20251001 use their family's profile.
            if model.startswith(name):
                return prof
        return GENERIC_PROFILE

    def _key(self, request: Request) -> str:
        sample = request.metadata.get("sample", 0)
        raw = repr((self.seed, sample, request.model, request.system, request.messages, request.max_tokens, request.temperature, request.stop))
        return hashlib.sha256(raw.encode()).hexdigest()

    async def complete(self, request: Request) -> Completion:
        outcome, wait_ms = self._respond(request)
        if isinstance(outcome, ProviderError):
            await asyncio.sleep(wait_ms / 1000 * self.time_scale)
            raise outcome
        if wait_ms > 0 and self.time_scale > 0:
            await asyncio.sleep(wait_ms / 1000 * self.time_scale)
        return outcome

    def _respond(self, request: Request, *, transient_errors: bool = True) -> tuple[Completion | ProviderError, float]:
        """The answer to ``request`` (or the error it fails with) and the simulated ms it takes.

        ``transient_errors=False`` never draws an overload or rate limit: a batch
        engine retries those itself.
        """
        key = self._key(request)
        prof = self.profile(request.model)
        with self._lock:
            attempt = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempt
            self.calls += 1
        error_rate = prof.error_rate if self.error_rate is None else self.error_rate
        # Integer seeds: seeding from a string hashes it with SHA-512 every call. With no
        # errors to draw, the draw is skipped (it could never fail).
        fail = random.Random((int(key[32:48], 16) << 8) + attempt) if error_rate > 0 and transient_errors else None
        rng = random.Random(int(key[:32], 16))
        if fail is not None and fail.random() < error_rate:
            wait_ms = rng.lognormvariate(math.log(prof.ttft_median_ms), prof.latency_sigma)
            error: ProviderError
            if fail.random() < 0.5:
                error = Overloaded(
                    "simulated overload", status_code=529, request_id=f"sim_req_{key[:16]}",
                    error_type="overloaded_error",
                )
            else:
                error = RateLimited(
                    "simulated rate limit", status_code=429, request_id=f"sim_req_{key[:16]}",
                    error_type="rate_limit_error", retry_after=1.0,
                )
            error.latency_ms = round(wait_ms, 3)  # simulated time, as a completion's latency is
            return error, wait_ms
        with self._lock:
            # A success ends this request's retries: forget its count, so memory does not
            # grow with every distinct request and a repeated request replays the same way.
            self._attempts.pop(key, None)
        prompt_text = "\n".join(m.content for m in request.messages)
        judging = _simjudge.is_judge_prompt(prompt_text)
        if judging:
            answer = _simjudge.judge_reply(prompt_text, rng, prof.skill)
        else:
            answer, _ = read_answer(request, rng, prof.skill)
        if not judging and rng.random() < prof.verbosity:
            answer = f"Thanks for reaching out! {answer} Let me know if there is anything else I can help with."
        out_tokens = estimate_tokens(answer)
        stop_reason = "end_turn"
        if out_tokens > request.max_tokens:
            answer = answer[: request.max_tokens * CHARS_PER_TOKEN]
            out_tokens = request.max_tokens
            stop_reason = "max_tokens"
        usage = self._usage(request, out_tokens)
        if self.fixed_latency_ms is not None:
            latency = float(self.fixed_latency_ms)
            ttft = latency / 2
        else:
            ttft = rng.lognormvariate(math.log(prof.ttft_median_ms), prof.latency_sigma)
            gen = out_tokens / prof.tokens_per_s * 1000 * rng.lognormvariate(0, prof.latency_sigma)
            latency = ttft + gen
            ttft *= self.latency_factor
            latency *= self.latency_factor
        return Completion(
            text=answer,
            model=request.model,
            stop_reason=stop_reason,
            usage=usage,
            latency_ms=round(latency, 3),
            ttft_ms=round(ttft, 3),
            request_id=f"sim_msg_{key[:24]}",
            provider=self.name,
        ), latency

    def _usage(self, request: Request, out_tokens: int) -> Usage:
        msg_tokens = sum(estimate_tokens(m.content) + 4 for m in request.messages)
        sys_tokens = estimate_tokens(request.system or "")
        read = write = 0
        ttl = cache_ttl(request.cache_system)
        if ttl is not None and sys_tokens >= MIN_CACHEABLE_TOKENS:
            cache_key = hashlib.sha256(f"{request.model}\0{request.system}".encode("utf-8", "surrogatepass")).hexdigest()
            with self._lock:
                if cache_key in self._cached:
                    read = sys_tokens
                else:
                    self._cached.add(cache_key)
                    write = sys_tokens
            sys_tokens = 0
        return Usage(
            input_tokens=msg_tokens + sys_tokens,
            output_tokens=out_tokens,
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_1h_tokens=write if ttl == "1h" else 0,
        )

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.time_scale)

    # -- a simulated Message Batches engine ------------------------------------------------
    #
    # Answers are deterministic per request, so a simulated batch keeps no state a new
    # process would need: its id says when it was made and how many requests it holds,
    # and its results are worked out from the requests when they are read. Only a
    # cancellation lives in this object's memory. Every answer is traced as simulated.

    async def submit_batch(self, requests: Sequence[tuple[str, Request]]) -> BatchInfo:
        """Accept a simulated batch; it ends `batch_seconds` simulated seconds later."""
        if not requests:
            raise BadRequest("simulated batch: requests must not be empty", status_code=400,
                             error_type="invalid_request_error", retryable=False)
        if len(requests) > self.batch_max_requests:
            raise BadRequest(f"simulated batch: {len(requests):,} requests, at most {self.batch_max_requests:,}",
                             status_code=400, error_type="invalid_request_error", retryable=False)
        created = time.time()
        with self._lock:
            self._batch_seq += 1
            batch_id = f"simbatch_{int(created * 1000):x}_{len(requests):x}_{self.seed:x}_{self._batch_seq:x}"
            self._batches[batch_id] = created
        return self._batch_info(batch_id)

    async def batch_info(self, batch_id: str) -> BatchInfo:
        return self._batch_info(batch_id)

    async def batch_results(self, batch_id: str, requests: Mapping[str, Request]) -> AsyncIterator[BatchResult]:
        info = self._batch_info(batch_id)
        if info.status != "ended":
            raise BadRequest(f"simulated batch {batch_id} is still {info.status}; its results come once it ends",
                             status_code=400, error_type="invalid_request_error", retryable=False)
        canceled = batch_id in self._canceled
        for custom_id, request in requests.items():
            if canceled:
                yield BatchResult(custom_id, "canceled")
                continue
            outcome, _ = self._respond(request, transient_errors=False)
            if isinstance(outcome, ProviderError):  # pragma: no cover - transient errors are off
                yield BatchResult(custom_id, "errored", error=outcome)
                continue
            # No single call of a batch is timed.
            yield BatchResult(custom_id, "succeeded", dataclasses.replace(outcome, latency_ms=None, ttft_ms=None))

    async def cancel_batch(self, batch_id: str) -> BatchInfo:
        """Cancel a simulated batch that has not ended: all of its requests come back canceled."""
        if self._batch_info(batch_id).status != "ended":
            with self._lock:
                self._canceled.add(batch_id)
        return self._batch_info(batch_id)

    async def recent_batches(self, since: float) -> list[BatchInfo]:
        with self._lock:
            ids = [b for b, created in self._batches.items() if created >= since]
        return sorted((self._batch_info(b) for b in ids), key=lambda b: -(b.created_at or 0))

    def _batch_info(self, batch_id: str) -> BatchInfo:
        try:
            prefix, created_ms, n, _seed, _seq = batch_id.split("_")
            created, requests = int(created_ms, 16) / 1000, int(n, 16)
            assert prefix == "simbatch"
        except (ValueError, AssertionError):
            raise BadRequest(f"simulated batch {batch_id!r} not found", status_code=404,
                             error_type="not_found_error", retryable=False) from None
        canceled = batch_id in self._canceled
        done_at = created + self.batch_seconds * self.time_scale
        ended = canceled or time.time() >= done_at
        counts = {"processing": 0 if ended else requests, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            counts["canceled" if canceled else "succeeded"] = requests
        return BatchInfo(
            id=batch_id, status="ended" if ended else "in_progress", requests=requests, counts=counts,
            created_at=created, expires_at=created + 24 * 3600,
            ended_at=(min(done_at, time.time()) if ended else None),
        )

    def __repr__(self) -> str:
        return f"<SimulatedProvider seed={self.seed} time_scale={self.time_scale}>"
