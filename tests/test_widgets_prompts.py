"""The prompts widget, driven from Python: browse, diff, register, preview, try."""

from __future__ import annotations

import re

import html
import json
from pathlib import Path

import ipywidgets
import polars as pl
import pytest

import workbench as wb
from workbench import _format
from workbench.errors import BadRequest
from workbench.widgets.prompts import PromptsWidget, prompt_metrics

pytest.importorskip("ipywidgets")

DATA = Path(__file__).resolve().parent.parent / "data" / "support_qa.jsonl"
V1 = "Answer: {question}"
V2 = "Context: {context}\nQuestion: {question}"

def _cells(html: str) -> str:
    """The HTML with table cells' alignment styles dropped, so a test can look for ``<td>text</td>``."""
    return re.sub(r"<(td|th) style=\"[^\"]*\">", r"<\1>", html)



@pytest.fixture(autouse=True)
def _no_swallowed_callback_errors(caplog):
    """ipywidgets only logs an exception raised in a click handler; make it fail the test."""
    yield
    assert not [r.getMessage() for r in caplog.records if "Exception in callback" in r.getMessage()]


def load(bench):
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return bench.datasets.load("d", rows[:8])


@pytest.fixture
def ds(bench):
    return load(bench)


@pytest.fixture
def support(bench):
    v1 = bench.prompts.register("support", template=V1, model="claude-haiku-4-5", temperature=0.3)
    v2 = bench.prompts.register("support", template=V2, model="claude-haiku-4-5", temperature=0.1)
    return v1, v2


def n_traces(bench):
    return len(bench.traces(limit=None))


def test_opens_on_the_latest_version(bench, support, ds):
    bench.prompts.register("other", template="Hi {name}", model="claude-sonnet-4-5")
    w = wb.widgets.prompts(bench, dataset=ds)
    assert isinstance(wb.widgets.prompts(bench), PromptsWidget)  # the entry point works twice
    assert w.name.options == ("other", "support")
    w.name.value = "support"
    assert [v for _, v in w.version.options] == [2, 1] and w.version.value == 2
    assert w.editor.value == V2 and w.model.value == "claude-haiku-4-5"
    assert json.loads(w.params.value) == {"temperature": 0.1}
    assert "support@v2" in w.info_html.value and "context, question" in w.info_html.value
    w.version.value = 1
    assert w.editor.value == V1 and json.loads(w.params.value) == {"temperature": 0.3}
    w.name.value = "other"
    assert w.version.value == 1 and w.editor.value == "Hi {name}" and w.model.value == "claude-sonnet-4-5"
    assert w.last_error is None


def test_labels_and_label_moves_are_shown(bench, support):
    bench.prompts.set_label("support", "production", 1)
    bench.prompts.set_label("support", "production", 2)
    bench.prompts.set_label("support", "staging", 1)
    w = PromptsWidget(bench)
    info = _cells(w.info_html.value)
    assert "production → v2, staging → v1" in info
    moves = info.split("<b>Label moves</b>")[1].split("<b>Versions</b>")[0]
    assert moves.count("<td>production</td>") == 2 and moves.count("<td>staging</td>") == 1
    assert "v2 [production]" in [label for label, _ in w.version.options]
    bench.prompts.rollback("support", "production")
    w.refresh_button.click()
    assert "production → v1" in w.info_html.value and "rollback" in w.info_html.value


def test_diff_shows_changed_lines(bench, support):
    w = PromptsWidget(bench)
    assert (w.diff_a.value, w.diff_b.value) == (1, 2)
    w.diff_button.click()
    page = w.diff_html.value
    assert ">-Answer: {question}</div>" in page
    assert ">+Context: {context}</div>" in page and ">+Question: {question}</div>" in page
    assert "temperature" in page  # changed params are listed too
    w.diff_a.value, w.diff_b.value = 2, 2
    w.diff_button.click()
    assert "template unchanged" in w.diff_html.value


def test_register_from_the_editor_creates_the_next_version(bench, support, ds):
    w = PromptsWidget(bench, dataset=ds)
    w.editor.value = "Use only this: {context}\nQ: {question}"
    w.params.value = '{"temperature": 0.0, "max_tokens": 200}'
    w.register_button.click()
    latest = bench.prompts.get("support")
    assert latest.version == 3
    assert latest.template == "Use only this: {context}\nQ: {question}"
    assert dict(latest.params) == {"temperature": 0.0, "max_tokens": 200}
    assert "Registered support@v3" in w.message.value
    assert w.version.value == 3 and [v for _, v in w.version.options] == [3, 2, 1]
    # The diff now shows the edit against the version it started from.
    assert (w.diff_a.value, w.diff_b.value) == (2, 3)
    assert ">+Q: {question}</div>" in w.diff_html.value
    # Registering the same content again makes nothing new.
    w.register_button.click()
    assert len(bench.prompts.history("support")) == 3
    assert "Nothing new" in w.message.value
    assert w.last_error is None


@pytest.mark.parametrize(
    ("template", "params", "model", "error"),
    [
        ("Hello {name", "{}", "claude-haiku-4-5", "malformed template"),
        ("Hello {}", "{}", "claude-haiku-4-5", "a field must be a plain name"),
        ("Hello {name!r}", "{}", "claude-haiku-4-5", "conversion or format spec"),
        ("Hello {name}", "{temperature: 1}", "claude-haiku-4-5", "params must be a JSON object"),
        ("Hello {name}", "[1]", "claude-haiku-4-5", "params must be a JSON object"),
        ("Hello {name}", "{}", "", "model must be a non-empty string"),
    ],
)
def test_bad_input_is_refused_inline_and_creates_nothing(bench, support, template, params, model, error):
    w = PromptsWidget(bench)
    w.editor.value, w.params.value, w.model.value = template, params, model
    w.register_button.click()
    assert "Not registered" in w.message.value or "ConfigError" in w.message.value
    assert html.escape(error) in w.message.value
    assert len(bench.prompts.history("support")) == 2
    assert w.version.value == 2 and w.editor.value == template  # the text is kept for fixing


def test_preview_renders_the_editor_text_with_an_item(bench, support, ds):
    w = PromptsWidget(bench, dataset=ds)
    assert w.preview_item.options == tuple(i.item_id for i in ds.items)
    w.preview_item.value = "sq-002"
    item = ds["sq-002"]
    page = w.preview_html.value
    assert "Preview of support@v2" in page and "item sq-002" in page
    assert html.escape(f"Question: {item.inputs['question']}") in page
    assert html.escape(item.inputs["context"]) in page
    # Unsaved edits are previewed as the version they would become.
    w.editor.value = "Customer {customer} asks: {question}"
    page = w.preview_html.value
    assert "missing variable &#x27;customer&#x27;" in page and "v3" in page
    assert "wb-error" in page
    w.editor.value = "Asks: {question"
    assert "malformed template" in w.preview_html.value
    w.editor.value = "Asks: {question}"
    assert "unsaved; would be support@v3" in w.preview_html.value
    assert html.escape(f"Asks: {item.inputs['question']}") in w.preview_html.value
    assert len(bench.prompts.history("support")) == 2  # previewing registers nothing
    assert w.last_error is None


def test_try_calls_the_model_on_three_items_traced(bench, support, ds):
    w = PromptsWidget(bench, dataset=ds)
    w.version.value = 1  # uses only {question}; the items' context is left out
    before = n_traces(bench)
    w.try_button.click()
    assert n_traces(bench) == before + 3
    calls = bench.traces(limit=3)
    assert {(t["prompt_name"], t["prompt_version"]) for t in calls} == {("support", 1)}
    page = w.try_html.value
    for item in ds.items[:3]:
        assert f"<b>{item.item_id}</b>" in page
    assert ds.items[3].item_id not in page
    assert html.unescape(page).count("cost $") == 3 and page.count(" ms") >= 3
    assert "Simulated provider" in page
    assert w.last_error is None


def test_try_shows_errors_inline(bench, support, ds):
    bench.prompts.register("support", template="{customer}: {question}", model="claude-haiku-4-5")
    w = PromptsWidget(bench, dataset=ds)
    assert w.version.value == 3
    before = n_traces(bench)
    w.try_button.click()
    assert w.try_html.value.count("missing variable &#x27;customer&#x27;") == 3
    assert n_traces(bench) == before
    w.version.value = 2
    w.editor.value = "edited"
    w.try_button.click()
    assert "unsaved changes; trying the registered support@v2" in w.try_html.value


def test_try_shows_provider_errors_inline(scripted_bench, scripted):
    ds = load(scripted_bench)
    scripted_bench.prompts.register("support", template=V1, model="claude-haiku-4-5")
    scripted.queue(BadRequest("prompt too long", status_code=400), "<b>fine</b>", "ok")
    w = PromptsWidget(scripted_bench, dataset=ds)
    w.try_button.click()
    page = w.try_html.value
    assert "prompt too long" in page and "error after 1 attempts" in page
    assert "&lt;b&gt;fine&lt;/b&gt;" in page and "<b>fine</b>" not in page
    assert len(scripted_bench.traces(limit=None)) == 3  # the failed call is traced too


def test_without_a_dataset(bench, support):
    w = PromptsWidget(bench)
    assert w.try_button.disabled and w.preview_item.disabled
    assert "Pass dataset=" in w.preview_html.value
    w.try_on_items()
    assert "Pass dataset=" in w.try_html.value


def test_empty_registry(bench):
    w = PromptsWidget(bench)
    assert w.name.options == () and w.version.value is None
    assert "No prompts yet" in w.message.value
    w.register_button.click()
    assert "pick a prompt first" in w.message.value
    assert bench.prompts.names() == []


def test_dataset_by_name(bench, support, ds):
    w = PromptsWidget(bench, dataset="d")
    assert w.dataset.id == ds.id and not w.try_button.disabled


# -- your prompts first, no cut labels, a missing variable needs a yes, metrics per version ---------


def test_opens_on_your_prompts_and_lists_judges_only_when_asked(bench, ds):
    v1 = bench.prompts.register("support", template=V1, model="claude-haiku-4-5")
    bench.experiment("judged", dataset=ds, variants={"A": v1},
                     scorers=[wb.scorers.llm_judge("Answers the question.")]).run(progress=False)
    assert "judge:judge" in bench.prompts.names()
    w = wb.widgets.prompts(bench, dataset=ds)
    assert w.name.options == ("support",) and w.name.value == "support"
    w.show_internal.value = True  # the switch
    assert w.name.options == ("judge:judge", "support") and w.name.value == "support"
    assert wb.widgets.prompts(bench, internal=True).name.options == ("judge:judge", "support")


def test_no_button_label_is_cut(bench, support, ds):
    w = wb.widgets.prompts(bench, dataset=ds)
    buttons = [c for c in _walk(w) if isinstance(c, ipywidgets.Button)]
    assert {b.description for b in buttons} >= {"Register new version", "Register anyway", "Try on 3 items", "Diff"}
    # A fixed width would cut a long label at 1024 px; auto fits the label.
    assert all(b.layout.width == "auto" for b in buttons), [(b.description, b.layout.width) for b in buttons]


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_a_version_whose_preview_misses_a_variable_needs_a_confirmation(bench, support, ds):
    w = wb.widgets.prompts(bench, dataset=ds)
    w.editor.value = "Context: {context}\nQuestion: {question}\nTone: {tone}"
    assert w.missing_variables() == ["tone"]
    assert "tone" in w.preview_html.value  # the preview says so first
    assert w.confirm_button.layout.display == "none"
    w.register_button.click()
    assert [v.version for v in bench.prompts.history("support")] == [1, 2]  # refused
    assert "Not registered: the preview misses &#x27;tone&#x27;" in w.message.value
    assert w.confirm_button.layout.display is None  # now offered
    w.confirm_button.click()
    assert [v.version for v in bench.prompts.history("support")] == [1, 2, 3]
    assert "Registered support@v3" in w.message.value and w.confirm_button.layout.display == "none"
    # With every variable there, one click registers.
    w.editor.value = "Q: {question}"
    w.register_button.click()
    assert bench.prompts.history("support")[-1].template == "Q: {question}"


def test_each_version_shows_its_latency_cost_and_quality(bench, support, ds):
    v1, v2 = support
    exp = bench.experiment("m", dataset=ds, variants={"A": v1, "B": v2},
                           scorers=[wb.scorers.contains_reference()]).run(progress=False)
    m = wb.widgets.prompts(bench, dataset=ds).metrics("support")
    t = exp.traces_df().filter(pl.col("status") == "ok")
    q = exp.quality()
    for v, name in ((1, "A"), (2, "B")):
        row = m.filter(pl.col("version") == v).row(0, named=True)
        mine = t.filter(pl.col("variant") == name)
        assert row["calls"] == exp.traces_df().filter(pl.col("variant") == name).height
        assert row["latency_mean_ms"] == pytest.approx(mine["latency_ms"].mean())
        assert row["cost_mean_usd"] == pytest.approx(mine["cost_usd"].mean())
        quality = q.filter((pl.col("variant") == name) & (pl.col("scorer") == "contains_reference"))["mean"][0]
        assert row["quality_contains_reference"] == pytest.approx(quality)  # one repeat: item means are the scores
    w = wb.widgets.prompts(bench, dataset=ds)
    w.version.value = 1
    table = html.unescape(_cells(w.info_html.value).split("<b>Versions</b>")[1])
    v1_row = table.split("<td>v1</td>")[1].split("</tr>")[0]
    row = m.filter(pl.col("version") == 1).row(0, named=True)
    for text in (_format.ms(row["latency_mean_ms"]), _format.money(row["cost_mean_usd"]),
                 _format.num(row["quality_contains_reference"], 3)):
        assert f"<td>{text}</td>" in v1_row, text
    assert "avg contains_reference" in table
    assert w.info_html.value.startswith('<div class="wb-out tex2jax_ignore mathjax_ignore')  # MathJax skips it


def test_a_version_without_calls_says_n_a(bench, support):
    m = prompt_metrics(bench, "support")
    assert m["calls"].to_list() == [0, 0] and m["latency_mean_ms"].null_count() == 2
    w = wb.widgets.prompts(bench)
    assert "<td>n/a</td>" in _cells(w.info_html.value) and "nan" not in _cells(w.info_html.value)
