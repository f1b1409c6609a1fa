"""A WorkbenchError in a notebook: its one-line message and advice, the full traceback one setting away."""

from __future__ import annotations

import re

import pytest

import workbench as wb

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_short_traceback_names_the_error_the_advice_and_the_callers_line():
    def user_code(bench):
        return bench.prompts.get("nope")  # the line the reader wrote

    with wb.open(":memory:", provider="simulated") as bench:
        with pytest.raises(wb.WorkbenchError) as info:
            user_code(bench)
    lines = [ANSI.sub("", line) for line in info.value._render_traceback_()]
    assert lines[0] == "PromptNotFound: prompt 'nope' not found; registered prompts: none"
    assert lines[1].startswith("  raised by return bench.prompts.get(\"nope\")  # the line the reader wrote  (")
    assert lines[1].endswith(f"{__file__}:{user_code.__code__.co_firstlineno + 1})")
    assert "WORKBENCH_DEBUG=1" in lines[2] and len(lines) == 3


def test_with_workbench_debug_ipython_finds_no_short_traceback(monkeypatch):
    error = wb.errors.ConfigError("bad")
    assert hasattr(error, "_render_traceback_")
    monkeypatch.setenv("WORKBENCH_DEBUG", "1")
    assert not hasattr(error, "_render_traceback_")


@pytest.mark.slow
def test_in_a_real_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import workbench as wb\nbench = wb.open('errors.db', provider='simulated')"),
        nbformat.v4.new_code_cell("x = 1\nbench.experiments.get('context-helsp')"),
        nbformat.v4.new_code_cell("%env WORKBENCH_DEBUG=1\nbench.experiments.get('context-helsp')"),
    ]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    def traceback(cell) -> list[str]:
        (error,) = [o for o in cell.outputs if o.output_type == "error"]
        assert error.ename == "ExperimentNotFound"
        return [ANSI.sub("", line) for line in error.traceback]

    short = traceback(nb.cells[1])
    assert short == [
        "ExperimentNotFound: experiment 'context-helsp' not found; experiments: none",
        "  raised by bench.experiments.get('context-helsp')  (line 2 of the cell)",
        "  (WORKBENCH_DEBUG=1 shows the full traceback: %env WORKBENCH_DEBUG=1)",
    ]
    full = "\n".join(traceback(nb.cells[2]))
    assert "workbench/experiments.py" in full and "Traceback (most recent call last)" in full
