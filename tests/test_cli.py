"""The workbench command: demo, nouns, errors as one clean line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

import workbench as wb
from workbench.cli import cli
from workbench.demo import DATASET
from workbench.providers.simulated import SimulatedProvider


@pytest.fixture
def filled(tmp_path):
    path = tmp_path / "cli.db"
    with wb.open(path, provider=SimulatedProvider(seed=0, time_scale=0)) as bench:
        v1 = bench.prompts.register("support", template="Q: {question}", model="claude-haiku-4-5")
        v2 = bench.prompts.register("support", template="C: {context}\nQ: {question}", model="claude-haiku-4-5")
        bench.prompts.set_label("support", "production", v1)
        ds = bench.datasets.load("d", DATASET)
        bench.experiment("exp", dataset=ds, variants={"A": v1, "B": v2},
                         scorers=[wb.scorers.contains_reference()]).run(progress=False)
    return path


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_prompts_list_is_the_default_and_shows_labels(filled):
    bare = invoke("prompts", "--db", str(filled))
    listed = invoke("prompts", "list", "--db", str(filled))
    assert bare.exit_code == 0 and bare.output == listed.output
    assert "support\tv2\tclaude-haiku-4-5" in listed.output and "production=v1" in listed.output


def test_prompts_show_and_diff(filled):
    shown = invoke("prompts", "show", "support", "--version", "1", "--db", str(filled))
    assert shown.exit_code == 0 and "support@v1" in shown.output and "Q: {question}" in shown.output
    diff = invoke("prompts", "diff", "support", "1", "2", "--db", str(filled))
    assert diff.exit_code == 0
    assert "+C: {context}" in diff.output and "\n Q: {question}" in diff.output


def test_unknown_prompt_is_one_line_and_exit_1(filled):
    result = CliRunner().invoke(cli, ["prompts", "show", "nope", "--db", str(filled)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: prompt 'nope' not found")


def test_traces_list_json_and_limit(filled):
    result = invoke("traces", "list", "--limit", "3", "--json", "--db", str(filled))
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 3
    assert all(r["simulated"] == 1 and r["kind"] == "llm" for r in rows)
    text = invoke("traces", "--db", str(filled))
    assert "(simulated)" in text.output


def test_experiments_list_show_compare(filled):
    listed = invoke("experiments", "--db", str(filled))
    assert listed.output.startswith("exp\tcompleted\t120 calls\t$0.")
    shown = invoke("experiments", "show", "exp", "--db", str(filled))
    assert "contains_reference (95% CI)" in shown.output and "cost/item ($)" in shown.output
    wide = invoke("experiments", "show", "exp", "--wide", "--db", str(filled))
    assert "  cost_per_item_usd ($): 0.000" in wide.output and "  latency_p95_ms (ms): " in wide.output
    for text in (shown.output, wide.output):
        assert not re.search(r"\bnan\b|\d[eE][-+]?\d", text), text
    compared = invoke("experiments", "compare", "exp", "A", "B", "--db", str(filled))
    # The verdict card as text, as a notebook shows it.
    with wb.open(filled, provider="simulated") as bench:
        assert compared.output.rstrip("\n") == str(bench.experiments.get("exp").compare("A", "B"))
    assert "B better" in compared.output and "95% CI" in compared.output


@pytest.mark.parametrize("noun", ["prompts", "traces", "experiments"])
def test_a_bare_noun_lists(noun, filled, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB", str(filled))
    bare, listed = invoke(noun), invoke(noun, "list")
    assert bare.exit_code == 0 and bare.output == listed.output and bare.output


@pytest.mark.parametrize("args", [["prompts"], ["prompts", "list"], ["traces"], ["experiments", "show", "x"],
                                  ["experiments", "compare", "x"], ["report", "--out", "r.html"],
                                  ["db", "health"], ["db", "recover"], ["monitor"], ["export", "parquet", "out"]])
def test_a_read_command_never_creates_a_file(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORKBENCH_DB", raising=False)
    result = CliRunner().invoke(cli, [*args, "--db", "typo.db"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: no workbench file at {tmp_path / 'typo.db'} (from --db); check the path, point WORKBENCH_DB or "
        "--db at your file, or create one with `workbench demo` or `workbench db migrate`"
    )
    monkeypatch.setenv("WORKBENCH_DB", str(tmp_path / "env.db"))
    assert "(from WORKBENCH_DB)" in CliRunner().invoke(cli, args).output
    assert list(tmp_path.iterdir()) == []


def test_report_without_an_experiment_says_it_writes_a_traces_report(filled, tmp_path):
    out = tmp_path / "t.html"
    result = CliRunner().invoke(cli, ["report", "--out", str(out), "--db", str(filled)])
    assert result.exit_code == 0 and out.exists()
    assert "no experiment named: writing a traces report of every call in" in result.output
    assert "(experiments: exp)" in result.output
    assert result.output.strip().endswith(str(out))


def test_report_command_writes_a_file(filled, tmp_path):
    out = tmp_path / "r.html"
    result = invoke("report", "exp", "--out", str(out), "--db", str(filled))
    assert result.exit_code == 0 and out.exists() and "Simulated data" in out.read_text()


def test_db_path_and_migrate(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB", str(tmp_path / "env.db"))
    assert invoke("db", "path").output.strip() == str(tmp_path / "env.db")
    assert invoke("db", "migrate").output.startswith("applied: m001_prompts")
    assert invoke("db", "migrate").output.strip() == "up to date"


def test_foreign_file_is_refused_cleanly(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a database at all " * 100)
    result = CliRunner().invoke(cli, ["prompts", "--db", str(bad)])
    assert result.exit_code == 1 and "is not a SQLite database" in result.output
    assert bad.read_text().startswith("not a database")


@pytest.mark.slow
def test_demo_end_to_end_from_any_folder(tmp_path):
    """`workbench demo` as `make demo` runs it, in a folder with no data: offline, a readout, a report."""
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "WORKBENCH_DB")}
    env["WORKBENCH_PROVIDER"] = "auto"

    def demo() -> str:
        result = subprocess.run([sys.executable, "-m", "workbench.cli", "demo"],
                                capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = demo()
    assert "simulated" in out and "estimate: 360 calls to make" in out
    assert "context-helps: B vs A  [simulated provider]" in out and "B better" in out
    assert (tmp_path / "reports" / "demo.html").exists() and (tmp_path / "workbench.db").exists()
    assert "report:" in out
    again = demo()
    # Every call is recorded: the second run makes none and says so; the readout is the same.
    assert "estimate:" not in again and "nothing to do: 360 of 360 calls recorded" in again
    card = out[out.index("context-helps: B vs A"):out.index("report:")]
    assert card in again
