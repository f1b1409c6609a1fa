"""``exp.run(batch=True)``: Message Batches through the local server, and the simulator's batch engine."""

from __future__ import annotations

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
from workbench import batches
from workbench.errors import ConfigError, ExperimentError
from workbench.pricing import BATCH_DISCOUNT, Pricer
from workbench.providers.anthropic import AnthropicProvider
from workbench.providers.base import Usage
from workbench.providers.simulated import SimulatedProvider
from workbench.scorers import contains_reference, llm_judge

try:  # tests/ may or may not become a package
    from .fake_anthropic import FakeAnthropic
except ImportError:
    from fake_anthropic import FakeAnthropic

ROOT = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve().parent / "helpers" / "run_batch.py"
MODEL = "claude-haiku-4-5"


def make_experiment(bench, name: str = "batched", *, n: int = 12, repeats: int = 1, **kwargs):
    """Two variants over ``n`` items whose questions name the item, so an answer shows whose it is."""
    a = bench.prompts.register("lookup", "Question: {question}", MODEL, max_tokens=100)
    b = bench.prompts.register("lookup", "Please answer.\nQuestion: {question}", MODEL, max_tokens=100)
    rows = [{"id": f"item-{i}", "question": f"what is the code of parcel {i}?", "expected": f"parcel {i}?"}
            for i in range(n)]
    ds = bench.datasets.load(f"parcels-{n}", rows)
    return bench.experiment(name, dataset=ds, variants={"A": a, "B": b}, scorers=[contains_reference()],
                            repeats=repeats, **kwargs)


def llm_traces(bench, exp) -> list[dict]:
    bench.flush()
    return bench.store.query(
        "SELECT * FROM traces WHERE experiment_id = ? AND kind = 'llm' AND variant IS NOT NULL ORDER BY id", (exp.id,),
    )


def ok_cells(bench, exp) -> Counter:
    return Counter((t["variant"], t["item_id"], t["repeat"]) for t in llm_traces(bench, exp) if t["status"] == "ok")


def anthropic(server) -> AnthropicProvider:
    return AnthropicProvider(api_key="test", base_url=server.base_url)


def live_cost(bench, trace: dict) -> float:
    usage = Usage(trace["input_tokens"], trace["output_tokens"], trace["cache_read_tokens"], trace["cache_write_tokens"])
    return bench.pricing.estimate(trace["model"], usage)


# -- through the local server with the real SDK ---------------------------------------------------


def test_batches_through_the_local_server_map_every_result_to_its_cell_at_half_price(tmp_path):
    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        exp = make_experiment(bench, n=13, repeats=2)
        cells = exp.cells()
        exp.run(batch=True, batch_size=20, poll_s=0.01, progress=False)

        assert exp.status == "completed"
        # 52 cells in batches of at most 20: three batches, each request once, each paid once.
        assert [len(b.requests) for b in server.batches.values()] == [20, 20, 12]
        assert server.batch_requests_submitted == server.batch_requests_billed == len(cells)
        assert server.completed == 0  # nothing went through the live Messages API
        # Each request carries what a live call would send.
        sent = [r["params"] for b in server.batches.values() for r in b.requests]
        assert all(p["model"] == MODEL and p["max_tokens"] == 100 and "stream" not in p for p in sent)

        traces = llm_traces(bench, exp)
        assert ok_cells(bench, exp) == Counter(cells)
        items = {i.item_id: i for i in exp.dataset.items}
        for t in traces:
            # The fake echoes the question: every answer landed on its own cell.
            assert items[t["item_id"]].inputs["question"] in t["output"]
            assert t["provider"] == "anthropic" and not t["simulated"] and t["latency_ms"] is None
            assert t["request_id"].startswith("msg_fake_")
            assert t["price_source"].endswith("(batch price)")
            assert t["cost_usd"] == pytest.approx(live_cost(bench, t) * BATCH_DISCOUNT)
        frame = exp.batches()
        assert frame["state"].to_list() == ["collected"] * 3
        assert frame["succeeded"].sum() == len(cells) and frame["pending"].sum() == 0
        assert frame["batch_id"].to_list() == list(server.batches)
        # Scored like any run; the readout explains the missing latency.
        assert exp.summary()["contains_reference"].to_list() == [1.0, 1.0]
        assert any("batch" in note for note in exp.summary().notes)


def test_run_again_collects_and_never_submits_a_held_cell_twice(tmp_path, capsys):
    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        server.batch_hold = True
        exp = make_experiment(bench, n=6)
        exp.run(batch=True, wait=False, progress=False)
        assert exp.status == "batch_pending"
        assert "run(batch=True) again" in capsys.readouterr().out
        assert exp.estimate(batch=True).calls == 0  # nothing left to pay for
        # A live run would pay for the held cells again: refused, saying what to do.
        with pytest.raises(ExperimentError, match=r"12 calls waiting in batches.*run\(batch=True\)"):
            exp.run(progress=False)
        assert exp.status == "batch_pending"
        exp.run(batch=True, wait=False, progress=False)  # still processing: nothing new submitted
        assert len(server.batches) == 1 and server.completed == 0

        server.end_batches()
        exp.run(batch=True, poll_s=0.01, progress=False)
        assert exp.status == "completed" and len(server.batches) == 1
        assert ok_cells(bench, exp) == Counter(exp.cells())
        exp.run(batch=True, progress=False)
        assert "nothing to do: 12 of 12 calls recorded" in capsys.readouterr().out
        assert len(server.batches) == 1 and server.batch_requests_billed == 12


def test_errored_and_expired_requests_are_submitted_again_and_only_they(tmp_path):
    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        exp = make_experiment(bench, n=5)
        server.batch_hold = True
        exp.run(batch=True, wait=False, progress=False, batch_size=6)
        first, second = server.batches.values()
        server.batch_errors = {first.requests[0]["custom_id"]: "overloaded_error"}
        server._end_batch(first, "succeeded")
        server.expire_batches()  # the second batch's 4 requests never ran
        exp.run(batch=True, wait=False, progress=False)

        errors = [t for t in llm_traces(bench, exp) if t["status"] == "error"]
        assert len(errors) == 1 and errors[0]["error_type"] == "Overloaded" and errors[0]["cost_usd"] is None
        assert "overloaded_error" in errors[0]["error"]
        # Run again: a third batch with exactly the errored and expired cells.
        third = list(server.batches.values())[2]
        assert len(third.requests) == 1 + len(second.requests) == 5
        server.batch_hold = False
        exp.run(batch=True, poll_s=0.01, progress=False)
        assert exp.status == "completed"
        assert ok_cells(bench, exp) == Counter(exp.cells())
        assert server.batch_requests_billed == len(exp.cells())
        assert exp.batches()["errored"].to_list() == [1, 0, 0]
        assert exp.batches()["expired"].to_list() == [0, 4, 0]


def test_cancel_batches_reads_what_was_done_and_frees_the_rest(tmp_path):
    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        server.batch_hold = True
        exp = make_experiment(bench, n=4)
        exp.run(batch=True, wait=False, progress=False, batch_size=4)
        first, _ = server.batches.values()
        server._end_batch(first, "succeeded")  # one batch finished before the cancel
        assert exp.cancel_batches(poll_s=0.01) == 1
        assert exp.batches()["state"].to_list() == ["collected", "collected"]
        assert exp.batches()["canceled"].to_list() == [0, 4]
        assert len(ok_cells(bench, exp)) == 4 and server.batch_requests_billed == 4
        exp.run(progress=False)  # the canceled cells are free for a live run
        assert exp.status == "completed" and server.completed == 4


def test_a_refused_batch_frees_its_cells_and_says_why(tmp_path):
    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        exp = make_experiment(bench, n=3)
        server.queue_faults([("status", 413)])
        with pytest.raises(ExperimentError, match=r"refused batch 1 of 1 \(6 requests\).*413"):
            exp.run(batch=True, progress=False)
        assert exp.batches()["state"].to_list() == ["not_created"]
        assert batches.held_cells(bench.store, exp.id) == set()
        exp.run(batch=True, poll_s=0.01, progress=False)
        assert exp.status == "completed" and server.batch_requests_billed == 6


def test_a_lost_answer_is_looked_for_before_anything_is_sent_again(tmp_path):
    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        exp = make_experiment(bench, n=3)
        # The first create is made and its answer lost; a dropped one is not made at all.
        server.queue_faults([("cut",)])
        exp.run(batch=True, poll_s=0.01, progress=False, batch_size=4)
        server.queue_faults([("drop",)])
        other = make_experiment(bench, "other", n=2)
        other.run(batch=True, poll_s=0.01, progress=False)
        assert [len(b.requests) for b in server.batches.values()] == [4, 2, 4]
        assert exp.status == other.status == "completed"
        assert server.batch_requests_billed == 10  # 6 + 4 cells, each once
        lists = [r for r in server.requests if r.method == "GET" and r.path == "/v1/messages/batches"]
        assert len(lists) == 2  # one look after each failure


def test_the_budget_limits_what_is_submitted_at_the_batch_rate(tmp_path):
    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        probe = make_experiment(bench, "probe", n=10)
        per_cell_batch = probe._reserve(probe._request("A", probe.dataset.items[0], 0), batch=True)
        per_cell_live = probe._reserve(probe._request("A", probe.dataset.items[0], 0))
        assert per_cell_batch == pytest.approx(per_cell_live * BATCH_DISCOUNT)
        server.batch_hold = True
        exp = make_experiment(bench, "limited", n=10, budget_usd=per_cell_batch * 7.5)
        exp.run(batch=True, wait=False, progress=False)
        assert server.batch_requests_submitted == 7
        assert exp.status == "batch_pending"
        assert "13 calls not submitted, as they could exceed the budget" in exp.last_run.message
        # Held requests keep their reservation: a second run submits nothing more.
        exp.run(batch=True, wait=False, progress=False)
        assert server.batch_requests_submitted == 7
        # Once results are in, real costs replace the worst cases and more fits: the run
        # goes on submitting until everything is done or nothing more fits.
        server.batch_hold = False
        server.end_batches()
        exp.run(batch=True, poll_s=0.01, progress=False)
        assert exp.status == "completed" and server.batch_requests_submitted == 20
        assert len(server.batches) > 2
        assert ok_cells(bench, exp) == Counter(exp.cells())
        assert exp.spent_usd() <= exp.budget_usd


@pytest.mark.slow
@pytest.mark.parametrize("when", ["waiting", "after_create"])
def test_a_process_killed_between_submit_and_results_pays_nothing_twice(tmp_path, when):
    db = tmp_path / "killed.db"
    with FakeAnthropic() as server:
        server.batch_hold = True
        with wb.open(db, provider=anthropic(server)) as bench:
            exp = make_experiment(bench, "killed", n=15)
            cells, exp_id = exp.cells(), exp.id
        args = [sys.executable, str(HELPER), str(db), server.base_url, "killed", "--batch-size", "10"]
        proc = subprocess.Popen(args + (["--die-after-create"] if when == "after_create" else []),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if when == "waiting":
                # Killed while it waits: all three batches created and recorded.
                deadline = time.monotonic() + 60
                while _recorded(db, exp_id) < 3:
                    if proc.poll() is not None:
                        pytest.fail(f"the run ended before it could be killed:\n{proc.communicate()}")
                    assert time.monotonic() < deadline, "the batches were not submitted within 60 s"
                    time.sleep(0.02)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                assert proc.returncode == -signal.SIGKILL
            else:
                # Died the moment the API created its first batch, before the file had its id.
                assert proc.wait(timeout=60) == 3, proc.communicate()
                assert _recorded(db, exp_id) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
        created = len(server.batches)
        assert created == (3 if when == "waiting" else 1)

        server.batch_hold = False
        with wb.open(db, provider=anthropic(server)) as bench:
            exp = bench.experiments.get("killed")
            exp.run(batch=True, poll_s=0.01, progress=False, batch_size=10)
            assert exp.status == "completed"
            assert ok_cells(bench, exp) == Counter(cells)
            assert exp.spent_usd() == pytest.approx(sum(live_cost(bench, t) for t in llm_traces(bench, exp)) * BATCH_DISCOUNT)
        # The killed process's batches were found and read; only cells no batch held were sent.
            assert exp.batches()["batch_id"].to_list() == list(server.batches)  # the unrecorded one adopted
        assert server.batch_requests_submitted == server.batch_requests_billed == len(cells)
        assert len(server.batches) == 3
        assert not [r for r in server.requests if r.path == "/v1/messages"]


def _recorded(db: Path, exp_id: str) -> int:
    """Batches of the experiment the file knows the provider's id of."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            (n,) = conn.execute("SELECT COUNT(*) FROM experiment_batches WHERE experiment_id = ? AND batch_id IS NOT NULL",
                                (exp_id,)).fetchone()
        conn.close()
    except sqlite3.OperationalError:  # no table yet (migrating) or busy
        return 0
    return n


# -- the simulated batch engine --------------------------------------------------------------------


def test_simulated_batches_run_offline_and_resume_in_a_new_process(tmp_path):
    db = tmp_path / "sim.db"
    provider = SimulatedProvider(seed=3, time_scale=0.01, batch_seconds=3600)  # ends 36 s after submitting
    with wb.open(db, provider=provider) as bench:
        exp = make_experiment(bench, "sim", n=8)
        exp.run(batch=True, wait=False, progress=False)
        assert exp.status == "batch_pending"
        (batch_id,) = exp.batches()["batch_id"].to_list()
        assert batch_id.startswith("simbatch_")
    # A new process: a new simulator that has never seen the batch, whose time has passed.
    with wb.open(db, provider=SimulatedProvider(seed=3, time_scale=0.0)) as bench:
        exp = bench.experiments.get("sim")
        exp.run(batch=True, progress=False)
        assert exp.status == "completed" and exp.batches()["batch_id"].to_list() == [batch_id]
        traces = llm_traces(bench, exp)
        assert ok_cells(bench, exp) == Counter(exp.cells())
        assert all(t["simulated"] and t["provider"] == "simulated" for t in traces)
        assert exp.summary().simulated
    # The same answers as live calls of the same seed, at half their price.
    with wb.open(tmp_path / "live.db", provider=SimulatedProvider(seed=3, time_scale=0.0)) as bench:
        live = make_experiment(bench, "sim", n=8)
        live.run(progress=False)
        live_out = {(t["variant"], t["item_id"]): (t["output"], t["cost_usd"]) for t in llm_traces(bench, live)}
    assert {(t["variant"], t["item_id"]): t["output"] for t in traces} == {k: v[0] for k, v in live_out.items()}
    for t in traces:
        assert t["cost_usd"] == pytest.approx(live_out[(t["variant"], t["item_id"])][1] * BATCH_DISCOUNT)


def test_llm_judges_score_batch_results_with_live_calls(bench):
    judge = llm_judge(rubric="Is the answer helpful?", model=MODEL)
    a = bench.prompts.register("q", "Question: {question}", MODEL)
    ds = bench.datasets.load("qs", [{"question": f"how do I reset password {i}?", "expected": "reset"} for i in range(4)])
    exp = bench.experiment("judged", dataset=ds, variants={"A": a}, scorers=[judge])
    exp.run(batch=True, progress=False)
    assert exp.status == "completed"
    rows = bench.store.query("SELECT tags_json, price_source FROM traces WHERE experiment_id = ? AND kind = 'llm'", (exp.id,))
    judged = [r for r in rows if r["tags_json"] and "judge" in r["tags_json"]]
    main = [r for r in rows if not (r["tags_json"] and "judge" in r["tags_json"])]
    assert len(judged) == len(main) == 4
    assert all("batch" in r["price_source"] for r in main)
    assert not any("batch" in r["price_source"] for r in judged)
    assert exp.scores_df().height == 4


def test_estimate_prices_a_batch_run_at_half(bench):
    exp = make_experiment(bench, n=10)
    live, batched = exp.estimate(), exp.estimate(batch=True)
    assert batched.calls == live.calls == 20
    assert batched.cost_expected == pytest.approx(live.cost_expected * BATCH_DISCOUNT)
    assert "batch rate" in batched.basis


def test_providers_and_variants_without_a_batch_engine_are_refused(tmp_path, scripted_bench):
    exp = make_experiment(scripted_bench, n=2)
    with pytest.raises(ConfigError, match="'scripted' provider has no batch engine"):
        exp.run(batch=True, progress=False)
    with wb.open(tmp_path / "gw.db", provider=SimulatedProvider(time_scale=0)) as bench:
        routed = bench.gateway(name="routed")
        a = bench.prompts.register("p", "Q: {question}", MODEL)
        ds = bench.datasets.load("d", [{"question": "hi"}])
        exp = bench.experiment("gw", dataset=ds, variants={"A": wb.variant(a, gateway=routed)})
        with pytest.raises(ConfigError, match="goes through a gateway"):
            exp.run(batch=True, progress=False)
        with pytest.raises(ConfigError, match="batch_size must be an integer from 1 to 100,000"):
            make_experiment(bench, "sized", n=1).run(batch=True, batch_size=0)
        assert bench.store.query("SELECT COUNT(*) AS n FROM experiment_batches")[0]["n"] == 0


# -- pricing at the batch rate ---------------------------------------------------------------------


def test_batch_prices_come_from_genai_prices_or_the_stated_discount():
    pricer = Pricer()
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=2000, cache_write_tokens=300)
    # A model genai-prices lists a batch price for.
    cost, source = pricer.cost("claude-sonnet-4-5", usage, batch=True)
    assert source.endswith("(batch price)") and cost == pytest.approx(pricer.cost("claude-sonnet-4-5", usage)[0] / 2)
    # One it lists none for: the standard price less Anthropic's discount, and the source says so.
    cost, source = pricer.cost("claude-sonnet-4", usage, batch=True)
    assert cost == pytest.approx(0.012225 * BATCH_DISCOUNT)
    assert "batch discount; no batch price listed" in source
    # A price set by hand is the standard price: the discount applies to it too.
    pricer.set_price("my-model", input=2.0, output=10.0)
    assert pricer.cost("my-model", Usage(1_000_000, 0), batch=True) == (1.0, "override x 0.5 (Anthropic batch discount; no batch price listed)")
    assert pricer.estimate("my-model", Usage(1_000_000, 0), batch=True) == 1.0


def test_the_command_line_lists_an_experiments_batches(tmp_path):
    from click.testing import CliRunner

    from workbench.cli import cli

    db = tmp_path / "cli.db"
    with wb.open(db, provider=SimulatedProvider(time_scale=0)) as bench:
        exp = make_experiment(bench, "listed", n=3)
        exp.run(batch=True, progress=False, batch_size=4)
        ids = exp.batches()["batch_id"].to_list()
        make_experiment(bench, "live", n=1)
    out = CliRunner().invoke(cli, ["experiments", "batches", "listed", "--db", str(db)], catch_exceptions=False).output
    lines = out.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [[ids[0], "collected", "4 requests"], [ids[1], "collected", "2 requests"]]
    assert "4 succeeded" in lines[0]
    out = CliRunner().invoke(cli, ["experiments", "batches", "live", "--db", str(db)], catch_exceptions=False).output
    assert "has no batches" in out


def test_a_batch_the_api_does_not_know_stops_the_run_until_it_is_forgotten(tmp_path):
    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        server.batch_hold = True
        exp = make_experiment(bench, n=2)
        exp.run(batch=True, wait=False, progress=False)
        (batch_id,) = exp.batches()["batch_id"].to_list()
        server.batches.clear()  # as if the file were opened with another workspace's key
        with pytest.raises(ExperimentError, match=rf"does not know batch {batch_id}.*exp.forget_batch"):
            exp.run(batch=True, progress=False)
        assert exp.status == "batch_pending"  # the cells are still held, and the status says why
        with pytest.raises(ConfigError, match="has no batch 'msgbatch_nope'"):
            exp.forget_batch("msgbatch_nope")
        assert exp.forget_batch(batch_id) == 4
        server.batch_hold = False
        exp.run(batch=True, poll_s=0.01, progress=False)
        assert exp.status == "completed"
        assert exp.batches()["state"].to_list() == ["forgotten", "collected"]


def test_ctrl_c_while_waiting_leaves_the_batches_to_collect_later(tmp_path, capsys):
    import asyncio

    with wb.open(tmp_path / "wb.db", provider=SimulatedProvider(time_scale=1.0, batch_seconds=3600)) as bench:
        exp = make_experiment(bench, n=3)

        async def interrupted() -> None:
            run = asyncio.ensure_future(exp._run_batch(False, True, True, 0.01, None))
            while not batches.held_cells(bench.store, exp.id):
                await asyncio.sleep(0.01)
            run.cancel()  # what Ctrl-C does to a run (run_sync cancels its task)
            with pytest.raises(asyncio.CancelledError):
                await run

        asyncio.run(interrupted())
        assert exp.status == "batch_pending"
        assert "6 requests in 1 simulated batch still processing" in capsys.readouterr().out
        assert "run cancelled" in bench.store.query("SELECT status_message FROM experiments")[0]["status_message"]
    with wb.open(tmp_path / "wb.db", provider=SimulatedProvider(time_scale=0.0)) as bench:
        exp = bench.experiments.get("batched")
        exp.run(batch=True, progress=False)
        assert exp.status == "completed" and exp.batches().height == 1


def test_a_temperature_this_api_refuses_is_left_out_of_batch_requests_with_one_warning(tmp_path):
    from workbench.providers.anthropic import IgnoredParamWarning

    with FakeAnthropic() as server, wb.open(tmp_path / "wb.db", provider=anthropic(server)) as bench:
        a = bench.prompts.register("warm", "Question: {question}", MODEL, temperature=0.3)
        ds = bench.datasets.load("qs", [{"question": f"q{i}?"} for i in range(5)])
        exp = bench.experiment("warm", dataset=ds, variants={"A": a})
        with pytest.warns(IgnoredParamWarning) as caught:
            exp.run(batch=True, poll_s=0.01, progress=False)
        assert len([w for w in caught if w.category is IgnoredParamWarning]) == 1
        assert exp.status == "completed" and server.batch_requests_billed == 5
        assert not any("temperature" in r["params"] for b in server.batches.values() for r in b.requests)
