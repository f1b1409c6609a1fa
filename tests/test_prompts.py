"""The prompt registry: immutable content-hashed versions, labels, diffs and strict rendering."""

from __future__ import annotations

import dataclasses

import pytest

from workbench.errors import ConfigError, PromptNotFound, RenderError, TemplateError
from workbench.prompts import PromptRegistry

V1 = "Answer: {question}"
V2 = "Context: {context}\nQuestion: {question}"
MODEL = "claude-haiku-4-5"

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
def prompts(store):
    return PromptRegistry(store)


def n_rows(prompts: PromptRegistry, table: str = "prompts") -> int:
    return prompts.store.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def three_versions(prompts: PromptRegistry):
    return [
        prompts.register("support", template=V1, model=MODEL, temperature=0.3),
        prompts.register("support", template=V2, model=MODEL, temperature=0.1),
        prompts.register("support", template=V2 + "\nBe brief.", model=MODEL, temperature=0.1),
    ]


# -- versions --------------------------------------------------------------------------------


def test_register_numbers_versions_per_name(prompts):
    v1 = prompts.register("support", template=V1, model=MODEL, temperature=0.3)
    v2 = prompts.register("support", template=V2, model=MODEL, temperature=0.1)
    other = prompts.register("triage", template=V1, model=MODEL)
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.ref == "support@v1"
    assert v2.variables == ["context", "question"]
    assert v1.content_hash.startswith("sha256:") and v1.content_hash != v2.content_hash
    assert v1.created_at.endswith("+00:00")


def test_identical_content_returns_the_existing_version(prompts):
    v1 = prompts.register("support", template=V1, model=MODEL, temperature=0.3, max_tokens=200,
                          metadata={"owner": "ada", "team": "care"})
    again = prompts.register("support", template=V1, model=MODEL, max_tokens=200, temperature=0.3,
                             metadata={"team": "care", "owner": "ada"})
    assert again == v1
    assert again.id == v1.id and again.created_at == v1.created_at
    assert n_rows(prompts) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"template": V1 + "!"},
        {"model": "claude-sonnet-4-5"},
        {"temperature": 0.7},
        {"max_tokens": 50},
    ],
    ids=["template", "model", "param value", "extra param"],
)
def test_any_content_change_is_a_new_version(prompts, change):
    base = {"template": V1, "model": MODEL, "temperature": 0.3}
    v1 = prompts.register("support", **base)
    v2 = prompts.register("support", **{**base, **change})
    assert v2.version == 2 and v2.content_hash != v1.content_hash
    assert n_rows(prompts) == 2


def test_versions_are_immutable(prompts):
    v1 = prompts.register("support", template=V1, model=MODEL, temperature=0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        v1.template = "Answer rudely: {question}"  # type: ignore[misc]
    prompts.register("support", template=V2, model=MODEL, temperature=0.3)
    assert prompts.get("support", 1) == v1


def test_get_latest_by_version_and_by_label(prompts):
    v1, v2, v3 = three_versions(prompts)
    assert prompts.get("support") == v3
    assert prompts.get("support", 1) == v1
    prompts.set_label("support", "production", 2)
    assert prompts.get("support", label="production") == v2
    assert prompts.labels() == {"support": {"production": 2}}
    assert [p.version for p in prompts.history("support")] == [1, 2, 3]


def test_unknown_name_version_or_label_is_prompt_not_found(prompts):
    three_versions(prompts)
    prompts.set_label("support", "production", 1)

    with pytest.raises(PromptNotFound) as excinfo:
        prompts.get("suport")
    assert str(excinfo.value) == "prompt 'suport' not found; registered prompts: support"

    with pytest.raises(KeyError) as excinfo:  # also a KeyError, for dict-like callers
        prompts.get("support", 9)
    assert str(excinfo.value) == "prompt 'support' has no version 9 (versions: 1, 2, 3)"

    with pytest.raises(PromptNotFound) as excinfo:
        prompts.get("support", label="staging")
    assert str(excinfo.value) == "prompt 'support' has no label 'staging' (labels: production)"

    with pytest.raises(PromptNotFound, match="registered prompts: support"):
        prompts.get("nothing", 1)


# -- labels ----------------------------------------------------------------------------------


def test_label_moves_are_kept_and_rollback_goes_back_one_move(prompts):
    three_versions(prompts)
    for version in (1, 2, 3):
        prompts.set_label("support", "production", version)
    moves = prompts.label_history("support", "production")
    assert [(m["action"], m["previous_version"], m["version"]) for m in moves] == [
        ("set", 2, 3), ("set", 1, 2), ("set", None, 1),
    ]

    back = prompts.rollback("support", "production")
    assert back.version == 2
    assert prompts.get("support", label="production").version == 2
    newest = prompts.label_history("support", "production")[0]
    assert (newest["action"], newest["previous_version"], newest["version"]) == ("rollback", 3, 2)


def test_a_second_rollback_undoes_the_first(prompts):
    # Rollback returns to the previous_version of the label's last move, and a
    # rollback is itself a move: rolling back twice is back where it started.
    three_versions(prompts)
    for version in (1, 2, 3):
        prompts.set_label("support", "production", version)
    assert prompts.rollback("support", "production").version == 2
    assert prompts.rollback("support", "production").version == 3
    assert prompts.get("support", label="production").version == 3
    assert len(prompts.label_history("support", "production")) == 5


def test_rollback_needs_an_earlier_version(prompts):
    three_versions(prompts)
    with pytest.raises(PromptNotFound, match="no label 'production'"):
        prompts.rollback("support", "production")
    prompts.set_label("support", "production", 1)
    with pytest.raises(ConfigError, match="no earlier version"):
        prompts.rollback("support", "production")
    assert prompts.get("support", label="production").version == 1


def test_set_label_to_a_missing_version_writes_nothing(prompts):
    three_versions(prompts)
    with pytest.raises(PromptNotFound, match="no version 7"):
        prompts.set_label("support", "production", 7)
    assert n_rows(prompts, "prompt_labels") == 0
    assert n_rows(prompts, "prompt_label_history") == 0


# -- diff ------------------------------------------------------------------------------------


def test_diff_shows_the_template_diff_and_changed_params(prompts):
    v1 = prompts.register("support", template=V1, model=MODEL, temperature=0.3)
    v2 = prompts.register("support", template=V2, model="claude-sonnet-4-5", temperature=0.1, max_tokens=300)
    d = prompts.diff(v1, v2)
    assert d.template_diff.splitlines() == [
        "--- support@v1",
        "+++ support@v2",
        "@@ -1 +1,2 @@",
        "-Answer: {question}",
        "+Context: {context}",
        "+Question: {question}",
    ]
    assert d.changed == {
        "model": (MODEL, "claude-sonnet-4-5"),
        "max_tokens": (None, 300),
        "temperature": (0.3, 0.1),
    }
    assert prompts.diff(1, 2, name="support") == d
    assert "temperature: 0.3 -> 0.1" in str(d)
    same = prompts.diff(v1, v1)
    assert same.template_diff == "" and same.changed == {}


# -- rendering -------------------------------------------------------------------------------


def test_render_fills_every_variable(prompts):
    v2 = prompts.register("support", template=V2, model=MODEL)
    text = v2.render({"question": "How many devices?"}, context="Two devices.")
    assert text == "Context: Two devices.\nQuestion: How many devices?"


def test_render_names_the_missing_variable_and_the_template_variables(prompts):
    prompts.register("support", template=V1, model=MODEL)
    v2 = prompts.register("support", template=V2, model=MODEL)
    with pytest.raises(RenderError) as excinfo:
        v2.render(question="How many devices?")
    assert str(excinfo.value) == (
        "missing variable 'context' for prompt 'support' v2 (template uses: context, question)"
    )


def test_render_refuses_unexpected_variables_unless_allowed(prompts):
    v1 = prompts.register("support", template=V1, model=MODEL)
    with pytest.raises(RenderError, match="unexpected variable 'tone'.*allow_extra=True"):
        v1.render(question="Why?", tone="warm")
    assert v1.render(question="Why?", tone="warm", allow_extra=True) == "Answer: Why?"


def test_doubled_braces_are_literal_braces(prompts):
    v = prompts.register("json", template='Reply as {{"answer": "{answer}"}}', model=MODEL)
    assert v.variables == ["answer"]
    assert v.render(answer="42") == 'Reply as {"answer": "42"}'


@pytest.mark.parametrize(
    "template",
    ["Answer {", "Answer }", "Answer {0}", "Answer {}", "Answer {a.b}", "Answer {a[0]}",
     "Answer {a!r}", "Answer {a:>3}"],
)
def test_malformed_templates_are_refused_at_register_and_nothing_is_written(prompts, template):
    with pytest.raises(TemplateError):
        prompts.register("support", template=template, model=MODEL)
    assert n_rows(prompts) == 0
    assert prompts.names() == []


def test_html_repr_escapes_the_template(prompts):
    v = prompts.register("xss", template="<script>alert('x')</script> {question}", model=MODEL)
    html = v._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


# -- traffic splits (the A/B pick) ----------------------------------------------------------------


def test_split_picks_by_weight_and_sticks_per_key(bench):
    reg = bench.prompts
    v1 = reg.register("support", "A {q}", "claude-haiku-4-5")
    v2 = reg.register("support", "B {q}", "claude-haiku-4-5")
    reg.set_label("support", "production", v1)
    shares = reg.set_split("support", "production", {v1: 9, v2: 1})
    assert shares == {1: 0.9, 2: 0.1}
    assert reg.get("support", label="production").version == 1  # the heaviest version
    picks = [reg.pick("support", "production", key=f"user-{i}").version for i in range(4000)]
    share_v2 = picks.count(2) / len(picks)
    assert 0.08 < share_v2 < 0.12
    # Sticky: a user keeps their version while the split stays.
    assert all(reg.pick("support", "production", key="user-7").version == picks[7] for _ in range(20))
    history = reg.label_history("support", "production")
    assert history[0]["action"] == "split" and history[0]["previous_version"] == 1


def test_rollback_undoes_a_split_and_set_label_ends_it(bench):
    reg = bench.prompts
    v1 = reg.register("support", "A {q}", "claude-haiku-4-5")
    v2 = reg.register("support", "B {q}", "claude-haiku-4-5")
    reg.set_label("support", "production", v1)
    reg.set_split("support", "production", {1: 0.5, 2: 0.5})
    assert reg.rollback("support", "production").version == 1
    assert reg.split("support", "production") == {1: 1.0}
    reg.set_split("support", "production", {1: 0.2, 2: 0.8})
    reg.set_label("support", "production", v2)
    assert reg.split("support", "production") == {2: 1.0}
    assert reg.rollback("support", "production").version == 2  # back to the split's primary
    assert reg.split("support", "production") == {1: 0.2, 2: 0.8}


def test_bad_splits_are_refused(bench):
    reg = bench.prompts
    reg.register("support", "A {q}", "claude-haiku-4-5")
    with pytest.raises(PromptNotFound):
        reg.set_split("support", "production", {1: 0.5, 7: 0.5})
    with pytest.raises(ConfigError, match="at least one positive weight"):
        reg.set_split("support", "production", {1: 0})
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        reg.set_split("support", "production", {1: -1})
    with pytest.raises(PromptNotFound, match="no label"):
        reg.pick("support", "canary")


def test_a_new_version_with_a_variable_typo_warns_with_the_closest_known_name(bench):
    reg = bench.prompts
    reg.register("support", "Context: {context}\nQ: {question}", "claude-haiku-4-5")
    with pytest.warns(UserWarning) as caught:
        v2 = reg.register("support", "Context: {context}\nQ: {qustion}", "claude-haiku-4-5")
    assert [str(w.message) for w in caught] == [
        "prompt 'support' v2: new variable qustion; did you mean question? (v1 uses: context, question)"
    ]
    assert caught[0].filename == __file__  # points at the caller's line, not at workbench
    assert v2.version == 2  # a warning, not a refusal: the version is registered


def test_a_dropped_variable_warns_and_an_added_one_does_not(bench, recwarn):
    reg = bench.prompts
    reg.register("support", "Q: {question}", "claude-haiku-4-5")
    reg.register("support", "Context: {context}\nQ: {question}", "claude-haiku-4-5")  # adding a variable is deliberate
    reg.register("support", "Q: {question}", "claude-haiku-4-5")  # identical content: the existing v1, no new version
    assert [str(w.message) for w in recwarn] == []
    with pytest.warns(UserWarning, match=r"v3: no longer uses question; new: query \(v2 uses: context, question\)"):
        reg.register("support", "Context: {context}\nQ: {query}", "claude-haiku-4-5")
