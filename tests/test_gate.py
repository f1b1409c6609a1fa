"""``workbench gate``: exit codes on clearly better, clearly worse and inconclusive candidates, in a subprocess as
CI runs it; configuration errors; reading a finished experiment; the HTML artifact."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import GateConfigError
from workbench.providers.simulated import SimulatedProvider
from workbench.rollout import gate

GROUNDED = "Help-centre passage:\\n{context}\\n\\nCustomer question: {question}"
BARE = "Customer question: {question}"
WORKBENCH = Path(sys.executable).with_name("workbench")


def write(tmp_path: Path, baseline: str, candidate: str, *, items: int = 60, extra: str = "", margin: float = 0.02) -> Path:
    lines = Path(wb.demo.DATASET).read_text().splitlines()[:items]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "workbench-gate.toml"
    config.write_text(f"""# the eval every prompt change must pass
name = "support"
dataset = "items.jsonl"
provider = "simulated"
{extra}
[baseline]
template = "{baseline}"
model = "claude-haiku-4-5"
max_tokens = 300

[candidate]
template = "{candidate}"
model = "claude-haiku-4-5"
max_tokens = 300

[scorers.contains_reference]
margin = {margin}
""")
    return config


def run_gate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "WORKBENCH_"))}
    return subprocess.run([str(WORKBENCH), "gate", *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.slow
def test_a_clearly_better_candidate_passes_with_exit_0(tmp_path):
    write(tmp_path, BARE, GROUNDED)
    out = run_gate(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[gate: pass]" in out.stdout and "[contains_reference: pass]" in out.stdout


@pytest.mark.slow
def test_a_clearly_worse_candidate_fails_with_exit_1_and_writes_the_report(tmp_path):
    write(tmp_path, GROUNDED, BARE)
    out = run_gate(tmp_path, "--html", "artifacts/gate.html")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "[gate: fail] failed: contains_reference (exit code 1)" in out.stdout
    assert "worse beyond it" in out.stdout
    html = (tmp_path / "artifacts" / "gate.html").read_text()
    assert "gate: fail" in html and "contains_reference: fail" in html and "<script" in html  # charts inlined
    assert html.index("gate: fail") < html.index("What was compared")


@pytest.mark.slow
def test_an_inconclusive_candidate_exits_2(tmp_path):
    # Twelve items and a rewording: the interval is far wider than the margin on both sides.
    write(tmp_path, GROUNDED, GROUNDED.replace("Customer question", "Question"), items=12)
    out = run_gate(tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "[gate: inconclusive]" in out.stdout and "the interval straddles the margin" in out.stdout
    assert "items would settle it" in out.stdout


@pytest.mark.slow
def test_a_broken_configuration_exits_3_and_says_what_to_fix(tmp_path):
    out = run_gate(tmp_path)
    assert out.returncode == 3 and "no gate configuration at" in out.stderr
    config = write(tmp_path, BARE, GROUNDED)
    config.write_text(config.read_text().replace("margin = 0.02", "margn = 0.02"))
    out = run_gate(tmp_path)
    assert out.returncode == 3 and "[scorers.contains_reference] needs margin" in out.stderr
    out = run_gate(tmp_path, "--no-such-option")
    assert out.returncode == 3  # a usage error is a broken configuration too, never "inconclusive"


def test_a_second_run_of_the_same_pair_makes_no_calls(tmp_path):
    config = gate.load_config(write(tmp_path, BARE, GROUNDED, items=20))
    first = gate.run(config, echo=lambda _: None)
    again = gate.run(config, echo=lambda _: None)
    assert first.experiment.name == again.experiment.name
    bench = wb.open(config.db, provider="simulated")
    try:
        assert len(bench.traces(limit=None, kind="llm")) == 40
    finally:
        bench.close()


def test_cost_checks_read_the_interval(tmp_path):
    config = write(tmp_path, BARE, GROUNDED, items=20, extra="[cost]\nmax_increase = 0.01\nmax_per_call = 1.0\n")
    result = gate.run(gate.load_config(config), echo=lambda _: None)
    checks = {c.what: c for c in result.checks}
    # The grounded prompt sends the passage: about 20% more input, far beyond a 1% allowance.
    assert checks["cost increase"].verdict == gate.FAIL
    assert checks["cost per call"].verdict == gate.PASS
    assert result.exit_code == gate.EXIT_FAIL


def test_the_gate_can_read_a_finished_experiment(tmp_path):
    db = tmp_path / "team.db"
    bench = wb.open(db, provider=SimulatedProvider(seed=0, time_scale=0))
    try:
        ds = bench.datasets.load("support-qa", wb.demo.DATASET)
        a = bench.prompts.register("support", BARE, "claude-haiku-4-5")
        b = bench.prompts.register("support", GROUNDED.replace("\\n", "\n"), "claude-haiku-4-5")
        bench.experiment("context-helps", dataset=ds, variants={"A": a, "B": b},
                         scorers=[wb.scorers.contains_reference()]).run(progress=False)
    finally:
        bench.close()
    config = tmp_path / "gate.toml"
    config.write_text('experiment = "context-helps"\ndb = "team.db"\nbaseline = "A"\ncandidate = "B"\n'
                      "[scorers.contains_reference]\nmargin = 0.0\n")
    result = gate.run(gate.load_config(config), echo=lambda _: None)
    assert result.verdict == gate.PASS and result.comparison.b == "B"
    config.write_text(config.read_text().replace("contains_reference", "exact"))
    with pytest.raises(GateConfigError, match="has no scorer 'exact' \\(scorers: contains_reference\\)"):
        gate.run(gate.load_config(config), echo=lambda _: None)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_baseline_can_be_the_template_at_a_git_ref(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "CI")
    (tmp_path / "support.txt").write_text("Customer question: {question}\n")
    git("add", "support.txt")
    git("commit", "-qm", "v1")
    (tmp_path / "support.txt").write_text("Passage:\n{context}\n\nCustomer question: {question}\n")
    config = write(tmp_path, BARE, GROUNDED)
    text = config.read_text()
    text = text.replace(f'[baseline]\ntemplate = "{BARE}"', '[baseline]\ntemplate_file = "support.txt"\nref = "HEAD"')
    text = text.replace(f'[candidate]\ntemplate = "{GROUNDED}"', '[candidate]\ntemplate_file = "support.txt"')
    config.write_text(text)
    parsed = gate.load_config(config)
    assert parsed.baseline.template == "Customer question: {question}\n"
    assert parsed.candidate.template.startswith("Passage:")
