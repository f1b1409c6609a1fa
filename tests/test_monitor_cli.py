"""``workbench monitor``: --once for cron, --watch until a signal, the open alerts without either."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from workbench import simulation as sim
from workbench.cli import cli

DAY = datetime(2026, 11, 25, tzinfo=timezone.utc)


@pytest.fixture
def incident_file(bench):
    traffic = sim.labelled_traffic(start=DAY, days=1, seed=8, streams=[sim.Stream(calls_per_minute=12)],
                                   incidents=[sim.Incident(start_hour=14, hours=1, error_rate=0.3)])
    traffic.write(bench)
    bench.flush()
    return bench.path


def test_once_checks_and_records(incident_file):
    runner = CliRunner()
    result = runner.invoke(cli, ["monitor", "--once", "--now", "2026-11-25T14:20:00Z", "--db", incident_file])
    assert result.exit_code == 0, result.output
    assert "1 opened" in result.output and "Incident: error_rate on prompt_name=support" in result.output
    listed = runner.invoke(cli, ["monitor", "--db", incident_file])
    assert listed.exit_code == 0 and listed.output.startswith("OPEN  error_rate  prompt_name=support")
    again = runner.invoke(cli, ["monitor", "--once", "--now", "2026-11-25T14:21:00Z", "--db", incident_file])
    assert "1 open" in again.output and "opened" not in again.output  # one alert per incident


def test_once_with_a_rules_file(incident_file, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\ntype = "threshold"\nname = "errors-over-5pc"\nmetric = "error_rate"\nabove = 0.05\n')
    result = CliRunner().invoke(cli, ["monitor", "--once", "--now", "2026-11-25T14:20:00Z", "--rules", str(rules), "--db", incident_file])
    assert result.exit_code == 0, result.output
    assert "1 rules" in result.output and "Incident: errors-over-5pc" in result.output


def test_a_missing_file_is_an_error_not_a_new_database(tmp_path):
    path = tmp_path / "typo.db"
    result = CliRunner().invoke(cli, ["monitor", "--once", "--db", str(path)])
    assert result.exit_code != 0 and "no workbench file at" in result.output and "WORKBENCH_DB" in result.output
    assert not path.exists()


def test_now_goes_with_once(incident_file):
    result = CliRunner().invoke(cli, ["monitor", "--watch", "--now", "2026-11-25T14:20:00Z", "--db", incident_file])
    assert result.exit_code == 2 and "--now goes with --once" in result.output


def _lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_watch_stops_cleanly_on_a_signal(incident_file, sig):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "monitor", "--watch", "--every", "0.2", "--db", incident_file],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    out: queue.Queue = queue.Queue()
    err: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    threading.Thread(target=_lines, args=(proc.stderr, err), daemon=True).start()
    try:
        assert "watching" in err.get(timeout=120)
        checks = 0
        while checks < 2:  # wait until the loop has checked twice, however busy the machine
            line = out.get(timeout=120)
            assert line is not None, "the watch loop ended by itself"
            checks += " rules, " in line
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tail = []
    while (line := err.get(timeout=30)) is not None:
        tail.append(line)
    assert any(line.startswith("stopped after ") for line in tail), tail
    assert not any("Traceback" in line for line in tail), tail


def test_watch_in_python_stops_when_asked(bench):
    stop = threading.Event()
    seen = []

    def echo(line: str) -> None:
        seen.append(line)
        if len(seen) == 2:
            stop.set()

    assert bench.monitor.watch(0.05, echo=echo, stop=stop) == 2
    assert all(" rules, " in line for line in seen)


def test_watch_reports_a_failed_check_and_goes_on(bench, monkeypatch):
    calls = []

    def flaky(now=None):
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return original(now)

    original = bench.monitor.check
    monkeypatch.setattr(bench.monitor, "check", flaky)
    seen = []
    assert bench.monitor.watch(0.05, echo=seen.append, max_checks=2) == 2
    assert seen[0] == "check failed: RuntimeError: database is locked" and " rules, " in seen[1]


