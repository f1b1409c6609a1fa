"""Experiments: every cell once, scored, resumable, within budget, through faults and crashes."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import workbench as wb
from workbench import _loop
from workbench.errors import ConfigError, ExperimentError, ExperimentNotFound, ProviderError, UnexpectedProviderError
from workbench.experiments import variant
from workbench.providers.anthropic import AnthropicProvider
from workbench.providers.simulated import SimulatedProvider
from workbench.scorers import contains_reference, exact_match

pytestmark = pytest.mark.backends("sqlite", "postgres")

try:  # tests/ may or may not become a package
    from .fake_anthropic import FakeAnthropic
except ImportError:
    from fake_anthropic import FakeAnthropic

ROOT = Path(__file__).resolve().parent.parent
SUPPORT_QA = ROOT / "data" / "support_qa.jsonl"
HELPER = Path(__file__).resolve().parent / "helpers" / "run_experiment.py"

NO_CONTEXT = "Answer the customer's question.\nQuestion: {question}"
WITH_CONTEXT = "Use this help-centre text.\nContext: {context}\nQuestion: {question}"


def prompts(bench, **params):
    """The no-context (A) and with-context (B) prompts."""
    a = bench.prompts.register("support", NO_CONTEXT, "claude-haiku-4-5", **params)
    b = bench.prompts.register("support", WITH_CONTEXT, "claude-haiku-4-5", **params)
    return a, b


def dataset(bench, n: int | None = None, name: str = "support-qa"):
    ds = bench.datasets.load(name, SUPPORT_QA)
    if n is None:
        return ds
    return bench.datasets.load(f"{name}-{n}", [i.canonical() for i in ds.items[:n]])


def context_experiment(bench, name: str = "context-helps", *, n: int | None = None, repeats: int = 1, **kwargs):
    a, b = prompts(bench)
    return bench.experiment(
        name, dataset=dataset(bench, n), variants={"A": a, "B": b},
        scorers=[contains_reference()], repeats=repeats, **kwargs,
    )


def llm_traces(bench, exp) -> list[dict]:
    """The experiment's model calls (judges excluded), oldest first."""
    bench.flush()
    return bench.store.query(
        "SELECT * FROM traces WHERE experiment_id = ? AND kind = 'llm' AND variant IS NOT NULL ORDER BY id",
        (exp.id,),
    )


def ok_cells(bench, exp) -> Counter:
    """(variant, item, repeat) -> number of ok traces."""
    return Counter((t["variant"], t["item_id"], t["repeat"]) for t in llm_traces(bench, exp) if t["status"] == "ok")


def mean_score(bench, exp, variant_name: str, scorer: str = "contains_reference") -> float:
    (value,) = bench.store.execute(
        "SELECT AVG(value) FROM scores WHERE experiment_id = ? AND variant = ? AND scorer = ?",
        (exp.id, variant_name, scorer),
    ).fetchone()
    return value


def close_provider(provider) -> None:
    """Close the HTTP pool an AnthropicProvider opened on the workbench loop."""
    _loop.run_sync(provider.aclose())


# -- running on the simulator ---------------------------------------------------------------------


def test_run_makes_every_cell_once_and_scores_it(bench):
    exp = context_experiment(bench, repeats=2)
    cells = exp.cells()
    assert len(cells) == 60 * 2 * 2 == len(set(cells))
    exp.run(progress=False)
    assert exp.status == "completed" and exp.last_run.status == "completed"

    traces = llm_traces(bench, exp)
    assert Counter((t["variant"], t["item_id"], t["repeat"]) for t in traces) == Counter(cells)
    assert all(t["status"] == "ok" for t in traces)
    versions = {"A": exp.variants["A"].prompt.version, "B": exp.variants["B"].prompt.version}
    for t in traces:
        assert t["experiment_id"] == exp.id
        assert t["prompt_name"] == "support" and t["prompt_version"] == versions[t["variant"]]
        assert t["provider"] == "simulated" and t["simulated"] == 1
        assert t["model"] == "claude-haiku-4-5" and t["attempts"] >= 1
        assert t["cost_usd"] > 0 and t["output"]

    scores = bench.store.query("SELECT * FROM scores WHERE experiment_id = ?", (exp.id,))
    by_trace = {t["id"]: t for t in traces}
    assert sorted(s["trace_id"] for s in scores) == sorted(by_trace)
    for s in scores:
        t = by_trace[s["trace_id"]]
        assert (s["variant"], s["item_id"], s["repeat"]) == (t["variant"], t["item_id"], t["repeat"])
        assert s["scorer"] == "contains_reference" and s["value"] in (0.0, 1.0)
        assert s["passed"] == int(s["value"]) and s["rationale"]

    # The prompt with the help-centre text answers from it; the bare question cannot.
    a, b = mean_score(bench, exp, "A"), mean_score(bench, exp, "B")
    assert b > a + 0.3, (a, b)

    # Everything is done: another run makes no call and writes nothing.
    calls = bench.provider.calls
    exp.run(progress=False)
    assert bench.provider.calls == calls
    assert len(llm_traces(bench, exp)) == len(cells)
    assert bench.store.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == len(cells)
    assert exp.status == "completed" and exp.estimate().calls == 0


def test_estimate_before_running_brackets_the_spend(bench):
    exp = context_experiment(bench, repeats=2)
    est = exp.estimate()
    assert est.calls == len(exp.dataset) * len(exp.variants) * exp.repeats == 240
    assert 0 < est.cost_low <= est.cost_expected <= est.cost_high
    assert set(est.per_variant) == {"A", "B"}
    assert sum(v["calls"] for v in est.per_variant.values()) == 240
    # The with-context prompt is longer, so it costs more to send.
    assert est.per_variant["B"]["input_tokens_per_call"] > est.per_variant["A"]["input_tokens_per_call"]
    exp.run(progress=False)
    assert est.cost_low <= exp.spent_usd() <= est.cost_high


def test_estimate_keeps_its_order_when_max_tokens_is_small(bench):
    a, b = prompts(bench, max_tokens=100)
    exp = bench.experiment("short", dataset=dataset(bench, 10), variants={"A": a, "B": b})
    est = exp.estimate()
    assert est.cost_low <= est.cost_expected <= est.cost_high


def test_same_name_same_config_reopens_different_config_is_refused(bench):
    exp = context_experiment(bench, repeats=2)
    again = context_experiment(bench, repeats=2, concurrency=3, budget_usd=5.0)
    assert again.id == exp.id
    assert bench.store.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 1

    with pytest.raises(ExperimentError, match=r"'context-helps' already exists .*changed: repeats\)"):
        context_experiment(bench, repeats=3)
    a, b = prompts(bench)
    other = bench.prompts.register("support", "Q: {question}", "claude-haiku-4-5")
    with pytest.raises(ExperimentError, match=r"changed: variants\)"):
        bench.experiment("context-helps", dataset=exp.dataset, variants={"A": a, "B": other},
                         scorers=[contains_reference()], repeats=2)
    with pytest.raises(ExperimentError, match=r"changed: scorers\)"):
        bench.experiment("context-helps", dataset=exp.dataset, variants={"A": a, "B": b},
                         scorers=[exact_match()], repeats=2)
    with pytest.raises(ExperimentError, match=r"changed: seed\)"):
        bench.experiment("context-helps", dataset=exp.dataset, variants={"A": a, "B": b},
                         scorers=[contains_reference()], repeats=2, seed=7)
    with pytest.raises(ExperimentError, match="bench.experiments.get"):
        context_experiment(bench, n=5, repeats=2)
    assert bench.store.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 1


def test_get_rebuilds_the_stored_config_and_it_reproduces_in_a_new_file(bench, tmp_path):
    exp = context_experiment(bench, n=20, repeats=2)
    exp.run(progress=False)

    stored = bench.experiments.get("context-helps")
    assert stored.id == exp.id and stored.repeats == 2 and stored.seed == exp.seed
    assert stored.dataset.content_hash == exp.dataset.content_hash
    for name in ("A", "B"):
        assert stored.variants[name].prompt.content_hash == exp.variants[name].prompt.content_hash
        assert stored.variants[name].spec() == exp.variants[name].spec()
    assert [s.spec() for s in stored.scorers] == [s.spec() for s in exp.scorers]
    assert stored.config == exp.config
    with pytest.raises(ExperimentNotFound, match="'nope' not found; experiments: context-helps"):
        bench.experiments.get("nope")

    # The stored config alone, in a new file with the same seed, gives the same outputs and scores.
    with wb.open(tmp_path / "replay.db", provider=SimulatedProvider(seed=0, time_scale=0)) as other:
        variants = {}
        for name, v in stored.variants.items():
            p = other.prompts.register(v.prompt.name, v.prompt.template, v.prompt.model, **dict(v.prompt.params))
            assert p.content_hash == v.prompt.content_hash
            variants[name] = variant(p, model=v.model, **dict(v.params))
        ds = other.datasets.load(stored.dataset.name, [i.canonical() for i in stored.dataset.items])
        assert ds.content_hash == stored.dataset.content_hash
        replay = other.experiment("replay", dataset=ds, variants=variants, scorers=stored.scorers,
                                  repeats=stored.repeats, seed=stored.seed).run(progress=False)
        assert replay.config["variants"] == stored.config["variants"]
        assert replay.config["scorers"] == stored.config["scorers"]

        def results(b, e):
            rows = b.store.query(
                "SELECT t.variant, t.item_id, t.repeat, t.output, t.input_tokens, t.output_tokens, t.cost_usd, "
                "s.value FROM traces t JOIN scores s ON s.trace_id = t.id "
                "WHERE t.experiment_id = ? AND t.status = 'ok'", (e.id,),
            )
            return {(r["variant"], r["item_id"], r["repeat"]): r for r in rows}

        bench.flush()
        other.flush()
        first, second = results(bench, exp), results(other, replay)
        assert len(first) == 80 and first.keys() == second.keys()
        for cell, row in first.items():
            assert row == second[cell], cell


def test_variant_with_a_model_override(bench):
    _, with_context = prompts(bench)
    exp = bench.experiment(
        "haiku-vs-sonnet", dataset=dataset(bench, 20),
        variants={"haiku": with_context, "sonnet": variant(with_context, model="claude-sonnet-4-5")},
        scorers=[contains_reference()],
    ).run(progress=False)
    assert exp.status == "completed"
    traces = llm_traces(bench, exp)
    models = {(t["variant"], t["model"]) for t in traces}
    assert models == {("haiku", "claude-haiku-4-5"), ("sonnet", "claude-sonnet-4-5")}
    assert {t["prompt_version"] for t in traces} == {with_context.version}
    cost = {v: sum(t["cost_usd"] for t in traces if t["variant"] == v) for v in ("haiku", "sonnet")}
    assert cost["sonnet"] > 2 * cost["haiku"]
    assert exp.variants["sonnet"].label() == f"{with_context.ref} on claude-sonnet-4-5"
    assert exp.config["variants"]["sonnet"]["model"] == "claude-sonnet-4-5"

    stored = bench.experiments.get("haiku-vs-sonnet")
    assert stored.variants["sonnet"].effective_model == "claude-sonnet-4-5"
    assert stored.variants["haiku"].effective_model == "claude-haiku-4-5"
    assert stored.estimate().calls == 0
    with pytest.raises(ConfigError, match="PromptVersion"):
        variant("not a prompt", model="claude-sonnet-4-5")


def test_a_variable_the_dataset_lacks_is_refused_at_creation(bench):
    a, b = prompts(bench)
    questions_only = bench.datasets.load("questions", [{"id": "q1", "question": "How do I export?"}])
    with pytest.raises(ConfigError, match=r"variant 'B' \(support@v2\) needs context") as info:
        bench.experiment("needs-context", dataset=questions_only, variants={"A": a, "B": b})
    assert "question" in str(info.value)  # what the items do have
    # One item without it is enough: it would stop the run half-way otherwise.
    mixed = bench.datasets.load("mixed", [
        {"id": "m1", "question": "Where?", "context": "Here."},
        {"id": "m2", "question": "When?"},
    ])
    with pytest.raises(ConfigError, match=r"needs context, which dataset mixed@v1 item 'm2'"):
        bench.experiment("needs-context", dataset=mixed, variants={"B": b})
    assert bench.store.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 0


# -- budget -----------------------------------------------------------------------------------------


def test_budget_stops_before_exceeding_and_a_bigger_budget_finishes_the_rest(bench, capsys):
    exp = context_experiment(bench, concurrency=4, budget_usd=0.015)
    cells = exp.cells()
    est = exp.estimate()
    assert est.cost_low > 0.015  # the whole run does not fit
    exp.run(progress=False)
    assert exp.spent_usd() <= 0.015
    # It stopped when the next call might not fit, not while budget was left for many more.
    assert exp.spent_usd() > 0.015 / 2
    assert exp.status == "stopped_budget" == exp.last_run.status
    assert "budget" in exp.last_run.message and "$0.015" in exp.last_run.message
    assert "budget" in capsys.readouterr().out
    done = ok_cells(bench, exp)
    assert 0 < len(done) < len(cells) and set(done.values()) == {1}
    assert exp.last_run.remaining == len(cells) - len(done)
    missing = len(cells) - len(done)
    before = len(llm_traces(bench, exp))

    bigger = bench.experiments.get("context-helps", budget_usd=1.0)
    bigger.run(progress=False)
    assert bigger.status == "completed"
    assert len(llm_traces(bench, exp)) - before == missing
    assert ok_cells(bench, exp) == Counter(cells)
    assert exp.spent_usd() <= 1.0


# -- provider errors -------------------------------------------------------------------------------


def test_too_many_errors_stop_the_run(tmp_path):
    provider = SimulatedProvider(seed=0, time_scale=0, error_rate=1.0)
    with wb.open(tmp_path / "wb.db", provider=provider) as bench:
        exp = context_experiment(bench, concurrency=4, max_error_rate=0.5)
        exp.run(progress=False)
        assert exp.status == "stopped_errors" == exp.last_run.status
        assert "max_error_rate=0.5" in exp.last_run.message
        traces = llm_traces(bench, exp)
        assert traces and all(t["status"] == "error" for t in traces)
        assert len(traces) == exp.last_run.errors == exp.last_run.calls
        # Judged after 20 calls; the calls already in flight finish, no more start.
        assert 20 <= len(traces) <= 20 + exp.concurrency < len(exp.cells())
        for t in traces:
            assert t["error_type"] in ("RateLimited", "Overloaded") and t["attempts"] == 3
            assert t["error"] and t["cost_usd"] is None and t["output"] is None
        assert provider.calls == 3 * len(traces)
        assert bench.store.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0


def test_errors_without_a_limit_never_abort_the_run(tmp_path):
    provider = SimulatedProvider(seed=0, time_scale=0, error_rate=0.3)
    with wb.open(tmp_path / "wb.db", provider=provider) as bench:
        exp = context_experiment(bench, concurrency=8)
        cells = exp.cells()
        exp.run(progress=False)
        traces = llm_traces(bench, exp)
        # Every cell was tried, exactly once; each failed cell is one error trace.
        assert Counter((t["variant"], t["item_id"], t["repeat"]) for t in traces) == Counter(cells)
        errors = [t for t in traces if t["status"] == "error"]
        # 0.3 a try, three tries: about 2.7% of cells fail (deterministic for seed 0).
        assert 0 < len(errors) == exp.last_run.errors < 0.1 * len(cells)
        assert all(t["attempts"] == 3 for t in errors)
        assert any(t["attempts"] > 1 for t in traces if t["status"] == "ok")
        assert exp.status == "completed_with_errors" == exp.last_run.status
        assert f"{len(errors)} calls failed" in exp.last_run.message
        # run() again retries only the failed cells.
        exp.run(progress=False)
        assert exp.status == "completed"
        assert len(llm_traces(bench, exp)) == len(cells) + len(errors)
        assert ok_cells(bench, exp) == Counter(cells)


# -- the real SDK path, through a local Anthropic-compatible server ---------------------------------


def test_faults_from_the_server_are_retried_and_counted(tmp_path):
    with FakeAnthropic() as server:
        server.fault_rate(0.05, statuses=(429, 529))  # retry-after: 0, so retries do not wait
        provider = AnthropicProvider(api_key="test", base_url=server.base_url)
        with wb.open(tmp_path / "wb.db", provider=provider) as bench:
            try:
                exp = context_experiment(bench, n=40, concurrency=8)
                cells = exp.cells()
                assert len(cells) == 80
                exp.run(progress=False)
                if exp.status != "completed":  # a cell out of retries (3 faults in a row): run() again
                    exp.run(progress=False)
                assert exp.status == "completed"
            finally:
                close_provider(provider)
            traces = llm_traces(bench, exp)
            ok = [t for t in traces if t["status"] == "ok"]
            assert ok_cells(bench, exp) == Counter(cells)
            assert {t["provider"] for t in traces} == {"anthropic"} and not any(t["simulated"] for t in traces)
            assert all(t["request_id"].startswith("msg_fake_") for t in ok)
            faulted = [r for r in server.requests_to("/v1/messages") if r.fault is not None]
            assert faulted and {r.fault[1] for r in faulted} <= {429, 529}
            # Every attempt is on a trace: retries show, and they are the requests the server saw.
            assert sum(t["attempts"] for t in ok) > len(cells)
            assert sum(t["attempts"] for t in traces) == len(server.requests_to("/v1/messages"))
            assert server.completed == len(ok) == len(cells)
            assert sum(t["attempts"] for t in ok) == len(cells) + sum(
                1 for r in faulted if r.request_id is not None
            ) - 3 * (len(traces) - len(ok))


@pytest.mark.slow
def test_resume_after_sigkill_makes_only_the_missing_calls(tmp_path):
    name, repeats, concurrency = "crash", 2, 4
    db = tmp_path / "crash.db"
    with FakeAnthropic(delta_delay=0.01) as server:
        provider = AnthropicProvider(api_key="test", base_url=server.base_url)
        with wb.open(db, provider=provider) as bench:
            exp = context_experiment(bench, name, n=20, repeats=repeats)
            cells = exp.cells()
            exp_id = exp.id
        assert len(cells) == 80

        proc = subprocess.Popen(
            [sys.executable, str(HELPER), str(db), server.base_url, name, "--concurrency", str(concurrency)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            watcher = sqlite3.connect(db, timeout=5)
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        (n_ok,) = watcher.execute(
                            "SELECT COUNT(*) FROM traces WHERE experiment_id = ? AND kind = 'llm' AND status = 'ok'",
                            (exp_id,),
                        ).fetchone()
                    except sqlite3.OperationalError:  # busy while the child migrates or checkpoints
                        n_ok = 0
                    if n_ok >= math.ceil(0.3 * len(cells)):
                        break
                    if proc.poll() is not None:
                        out, err = proc.communicate()
                        pytest.fail(f"the run ended before it could be killed ({n_ok} ok):\n{out}\n{err}")
                    if time.monotonic() > deadline:
                        pytest.fail(f"only {n_ok} of {len(cells)} cells done after 60 s")
                    time.sleep(0.02)
            finally:
                watcher.close()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL

        # Calls in flight at the kill either finished on the server or broke off; let them settle.
        settled, last = time.monotonic(), server.completed
        while time.monotonic() - settled < 0.5:
            time.sleep(0.05)
            if server.completed != last:
                settled, last = time.monotonic(), server.completed
        completed_before = server.completed

        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT variant, item_id, repeat FROM traces WHERE experiment_id = ? AND kind = 'llm' "
                "AND status = 'ok'", (exp_id,),
            ).fetchall()
            (status,) = conn.execute("SELECT status FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        conn.close()
        done_after_kill = Counter(rows)
        assert set(done_after_kill.values()) == {1}  # no cell twice, even before the resume
        assert status == "running"  # the killed run never got to say otherwise
        missing = len(cells) - len(done_after_kill)
        assert 0 < missing < len(cells) * 0.7 + 1

        provider = AnthropicProvider(api_key="test", base_url=server.base_url)
        with wb.open(db, provider=provider) as bench:
            try:
                resumed = bench.experiments.get(name)
                resumed.run(progress=False)
            finally:
                close_provider(provider)
            assert resumed.status == "completed"
            assert server.completed - completed_before == missing
            assert ok_cells(bench, resumed) == Counter(cells)
            assert all(t["status"] == "ok" for t in llm_traces(bench, resumed))
            # Calls finished but unscored at the kill are scored now, without a new call.
            (n_scores,) = bench.store.execute(
                "SELECT COUNT(*) FROM scores WHERE experiment_id = ?", (exp_id,)
            ).fetchone()
            assert n_scores == len(cells)

        # Across both runs each prompt was paid for `repeats` times, plus at most the calls
        # that were in flight when the process died (never more than the concurrency).
        per_prompt = Counter(body["messages"][-1]["content"] for body in server.completed_bodies)
        assert len(per_prompt) == len(cells) // repeats
        assert all(repeats <= n <= repeats + concurrency for n in per_prompt.values())
        extra = sum(n - repeats for n in per_prompt.values())
        assert extra == completed_before - len(done_after_kill) <= concurrency


# -- inside a running event loop (as in Jupyter) ------------------------------------------------------


def test_sync_run_and_arun_inside_a_running_loop(bench):
    sync_exp = context_experiment(bench, "sync-in-loop", n=10)
    async_exp = context_experiment(bench, "async", n=10, repeats=2)

    async def main():
        loop = asyncio.get_running_loop()
        sync_exp.run(progress=False)  # the blocking API, called from a coroutine as a notebook cell would
        result = await async_exp.arun(progress=False)
        assert asyncio.get_running_loop() is loop
        return result

    assert asyncio.run(main()) is async_exp
    assert sync_exp.status == "completed" and async_exp.status == "completed"
    assert ok_cells(bench, sync_exp) == Counter(sync_exp.cells())
    assert ok_cells(bench, async_exp) == Counter(async_exp.cells())


# -- readouts -------------------------------------------------------------------------------------


# The summary and comparison tests live in test_readouts.py.


def test_items_put_regressions_first(bench):
    # Sonnet against Haiku on the same prompt: mostly ties, a few wins each way.
    _, with_context = prompts(bench)
    exp = bench.experiment(
        "models", dataset=dataset(bench), scorers=[contains_reference()],
        variants={"A": with_context, "B": variant(with_context, model="claude-sonnet-4-5")},
    ).run(progress=False)
    items = exp.items("A", "B")
    assert items.height == 60 and items["item_id"].n_unique() == 60
    assert {"output_a", "output_b", "score_a", "score_b", "expected", "delta"} <= set(items.columns)
    deltas = items["delta"].to_list()
    assert None not in deltas and min(deltas) < 0 < max(deltas)
    assert deltas == sorted(deltas)
    first = items.row(0, named=True)
    assert first["score_b"] < first["score_a"] and first["delta"] == first["score_b"] - first["score_a"]
    # Outputs are the stored answers of that item.
    stored = {(t["variant"], t["item_id"]): t["output"] for t in llm_traces(bench, exp)}
    assert first["output_a"] == stored[("A", first["item_id"])]
    assert first["output_b"] == stored[("B", first["item_id"])]


# -- review fixes ------------------------------------------------------------------------------------


def test_budget_holds_with_an_llm_judge(bench):
    """Judge calls are paid too; concurrent judges must not hide each other's cost."""
    a, b = prompts(bench)
    judge = wb.scorers.llm_judge("Does the answer give the reference fact? 1 yes, 0 no.")
    exp = bench.experiment("judged-budget", dataset=dataset(bench), variants={"A": a, "B": b},
                           scorers=[contains_reference(), judge], concurrency=8, budget_usd=0.03)
    exp.run(progress=False)
    spent = exp.spent_usd()
    assert spent <= 0.03
    assert exp.status == "stopped_budget"
    assert abs(exp.last_run.spent_usd - spent) < 1e-9  # the running total matches the stored traces


def test_an_unpriced_judge_model_with_a_budget_is_refused(bench):
    a, b = prompts(bench)
    judge = wb.scorers.llm_judge("Correct?", model="my-finetuned-judge")
    exp = bench.experiment("unpriced-judge", dataset=dataset(bench, 4), variants={"A": a, "B": b},
                           scorers=[judge], budget_usd=1.0)
    with pytest.raises(ConfigError, match="my-finetuned-judge.*set_price"):
        exp.run(progress=False)
    assert llm_traces(bench, exp) == []


def test_an_exception_from_a_custom_provider_is_that_calls_error_trace(tmp_path):
    """A provider raising something other than a ProviderError fails that call, like a provider error:
    recorded as its error trace, not retried, and the run goes on (or stops by max_error_rate)."""

    class Exploding(SimulatedProvider):
        async def complete(self, request):
            if "q-3?" in request.messages[-1].content:
                raise RuntimeError("boom")
            return await super().complete(request)

    provider = Exploding(seed=0, fixed_latency_ms=30)
    with wb.open(tmp_path / "wb.db", provider=provider) as bench:
        v = bench.prompts.register("p", "Question: {q}", "claude-haiku-4-5")
        ds = bench.datasets.load("d", [{"q": f"q-{i}?"} for i in range(60)])
        exp = bench.experiment("boom", dataset=ds, variants={"A": v}, concurrency=4)
        exp.run(progress=False)
        assert exp.status == "completed_with_errors"
        [failed] = [t for t in llm_traces(bench, exp) if t["status"] == "error"]
        # Not retried: nothing says a RuntimeError is transient.
        assert failed["error_type"] == "RuntimeError" and "boom" in failed["error"] and failed["attempts"] == 1
        assert len([t for t in llm_traces(bench, exp) if t["status"] == "ok"]) == 59

        with pytest.raises(UnexpectedProviderError, match="RuntimeError: boom") as excinfo:
            bench.complete(v, q="q-3?")
        assert isinstance(excinfo.value, ProviderError) and isinstance(excinfo.value.__cause__, RuntimeError)

        class AlwaysExploding(SimulatedProvider):
            async def complete(self, request):
                raise ValueError("bad")

        bench.provider = AlwaysExploding(seed=0, fixed_latency_ms=1)
        exp2 = bench.experiment("always", dataset=ds, variants={"A": v}, concurrency=1, max_error_rate=0.5)
        exp2.run(progress=False)
        assert exp2.status == "stopped_errors" and exp2.last_run.calls == 20


def test_an_unpriced_model_costs_null_not_zero(bench):
    v = bench.prompts.register("p", "Question: {q}", "my-local-model")
    ds = bench.datasets.load("d", [{"q": f"q{i}?"} for i in range(3)])
    exp = bench.experiment("unpriced", dataset=ds, variants={"A": v})
    with pytest.warns(UserWarning, match="no price known"):
        exp.run(progress=False)
    row = exp.summary(wide=True).row(0, named=True)
    assert row["cost_usd"] is None and row["cost_per_item_usd"] is None and row["unpriced_calls"] == 3
    assert bench.experiments.list()[-1]["cost_usd"] is None


def test_one_experiment_never_mixes_providers(bench, tmp_path):
    exp = context_experiment(bench, n=2)
    exp.run(progress=False)
    with wb.open(bench.path, provider=AnthropicProvider(api_key="test", base_url="http://127.0.0.1:9")) as other:
        with pytest.raises(ExperimentError, match="simulated provider.*provider='simulated'"):
            other.experiments.get("context-helps").run(progress=False)


def test_readouts_of_a_simulated_run_stay_labelled_when_opened_with_another_provider(bench):
    exp = context_experiment(bench, n=6)
    exp.run(progress=False)
    with wb.open(bench.path, provider=AnthropicProvider(api_key="test", base_url="http://127.0.0.1:9")) as other:
        again = other.experiments.get("context-helps")
        assert again.simulated()
        assert again.compare("A", "B").simulated
        assert "simulated provider" in again._repr_html_()


def test_estimate_counts_tokens_with_a_provider_that_can(tmp_path):
    """With a real provider the input side is calibrated by its token counter, not guessed."""
    with FakeAnthropic() as server:
        provider = AnthropicProvider(api_key="test", base_url=server.base_url)
        with wb.open(tmp_path / "wb.db", provider=provider) as bench:
            exp = context_experiment(bench, n=4)
            est = exp.estimate()
            counted = server.requests_to("/v1/messages/count_tokens")
        close_provider(provider)
    assert len(counted) == 8  # a few prompts per variant, never a completion
    assert server.completed == 0
    assert "counted by the provider" in est.basis and est.cost_low <= est.cost_expected <= est.cost_high
