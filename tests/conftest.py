"""Shared fixtures: a store, a workbench on the simulator, and a scripted provider.

``store``, ``bench`` and ``scripted_bench`` are a SQLite file by default. A test
(or module) marked ``@pytest.mark.backends("sqlite", "postgres")`` runs once per
back end: on PostgreSQL each test gets a new database on the server from
``tests/_postgres.py`` (``WORKBENCH_TEST_POSTGRES``, or a throw-away cluster it
starts), and skips with the reason when there is none, unless
``WORKBENCH_REQUIRE_POSTGRES=1`` (CI), where it fails.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import pytest

import workbench as wb
from workbench.providers.base import Completion, Request, Usage
from workbench.providers.simulated import SimulatedProvider
from workbench.store import Store


class ScriptedProvider:
    """A provider that answers from a queue: Completions are returned, errors raised.

    ``calls`` counts attempts and ``requests`` keeps what each attempt was asked,
    so tests can see retries. An empty queue is a test bug and fails loudly.
    """

    name = "scripted"
    simulated = False

    def __init__(self, outcomes: Iterable[Completion | BaseException | str] = ()) -> None:
        self.outcomes: deque[Completion | BaseException | str] = deque(outcomes)
        self.calls = 0
        self.requests: list[Request] = []

    def queue(self, *outcomes: Completion | BaseException | str) -> ScriptedProvider:
        self.outcomes.extend(outcomes)
        return self

    @staticmethod
    def completion(
        text: str = "scripted answer",
        *,
        model: str = "claude-haiku-4-5",
        input_tokens: int = 100,
        output_tokens: int = 20,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        latency_ms: float = 250.0,
        ttft_ms: float | None = 120.0,
        request_id: str | None = "msg_scripted",
        stop_reason: str = "end_turn",
    ) -> Completion:
        return Completion(
            text=text,
            model=model,
            stop_reason=stop_reason,
            usage=Usage(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens),
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            request_id=request_id,
            provider="scripted",
        )

    async def complete(self, request: Request) -> Completion:
        self.calls += 1
        self.requests.append(request)
        if not self.outcomes:
            raise AssertionError(f"ScriptedProvider has nothing queued for call {self.calls}")
        outcome = self.outcomes.popleft()
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, str):
            return self.completion(outcome, model=request.model)
        return outcome

    async def sleep(self, seconds: float) -> None:
        pass


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", marker.args, ids=list(marker.args))


@pytest.fixture
def backend(request):
    """``sqlite`` unless the test is marked ``backends(...)``."""
    return getattr(request, "param", "sqlite")


def postgres_url() -> str:
    """A new, empty PostgreSQL database for one test (skips, or fails in CI, without a server)."""
    import _postgres

    server = _postgres.server()
    if server is None:
        if _postgres.REQUIRED:
            pytest.fail(f"WORKBENCH_REQUIRE_POSTGRES=1 but {_postgres.skip_reason()}")
        pytest.skip(_postgres.skip_reason())
    return _postgres.fresh_database(server)


@pytest.fixture
def target(backend, tmp_path):
    """Where a store lives for this test: a file under ``tmp_path``, or a fresh PostgreSQL database's URL."""
    def make(name: str = "store.db"):
        return tmp_path / name if backend == "sqlite" else postgres_url()

    return make


@pytest.fixture
def store(target):
    s = Store(target("store.db"))
    yield s
    s.close()


@pytest.fixture
def bench(target):
    b = wb.open(target("wb.db"), provider=SimulatedProvider(seed=0, time_scale=0))
    yield b
    b.close()


@pytest.fixture
def scripted():
    """A fresh ScriptedProvider with nothing queued."""
    return ScriptedProvider()


@pytest.fixture
def scripted_bench(target, scripted):
    """A workbench whose calls go to the ``scripted`` provider."""
    b = wb.open(target("scripted.db"), provider=scripted)
    yield b
    b.close()


@pytest.fixture(autouse=True)
def _no_real_api(monkeypatch):
    """No test may reach a real LLM API: a key or base URL from the developer's shell is dropped."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
