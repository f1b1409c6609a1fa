"""The HTML report: self-contained, escaped, labelled, and small at 1,000 items."""

from __future__ import annotations

import re

import workbench as wb
from workbench.providers.simulated import SimulatedProvider

XSS = "<img src=x onerror=alert(1)>"


def big_experiment(bench, items: int):
    a = bench.prompts.register("r", template="Question: {question}", model="claude-haiku-4-5")
    b = bench.prompts.register("r", template="Context: {context}\nQuestion: {question}", model="claude-haiku-4-5")
    rows = [
        {
            # A long context so outputs are long too: the report must cut them, not the database.
            "context": f"Plan {i} allows {i % 7 + 1} devices. {XSS} " + "Filler sentence about plan features. " * 60,
            "question": f"How many devices does plan {i} allow?",
            "expected": f"{i % 7 + 1} devices",
            "cluster": f"c{i % 50}",
        }
        for i in range(items)
    ]
    ds = bench.datasets.load("big", rows)
    exp = bench.experiment("big", dataset=ds, variants={"A": a, "B": b},
                           scorers=[wb.scorers.contains_reference()], concurrency=64)
    return exp.run(progress=False)


def test_a_1000_item_report_stays_under_3_mb_and_inlines_its_scripts(tmp_path):
    with wb.open(tmp_path / "wb.db", provider=SimulatedProvider(seed=0, time_scale=0)) as bench:
        exp = big_experiment(bench, 1000)
        path = bench.report(exp, tmp_path / "big.html")
        html = path.read_text()
    assert path.stat().st_size < 3_000_000
    assert "Simulated data" in html
    assert "more characters cut; full text in the database" in html  # long text is cut visibly
    # Nothing loads from the network: no external script, stylesheet or image sources.
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?https?:""", html)
    assert "cdn.jsdelivr" not in html
    # Model output and inputs are escaped everywhere they appear as HTML.
    body = re.sub(r"<script\b.*?</script>", "", html, flags=re.S)
    assert XSS not in body and "&lt;img src=x onerror=alert(1)&gt;" in body


def test_a_traces_report_has_metrics_and_is_labelled(tmp_path):
    with wb.open(tmp_path / "wb.db", provider=SimulatedProvider(seed=0, time_scale=0)) as bench:
        v = bench.prompts.register("p", template="Q: {q}", model="claude-haiku-4-5")
        for i in range(30):
            bench.complete(v, q=f"question {i}?", user_id=f"u{i % 3}")
        path = bench.report("traces", tmp_path / "traces.html")
        html = path.read_text()
    assert "Simulated data" in html and "By model" in html and "claude-haiku-4-5" in html
    assert html.count('class="vega-chart"') == 3


def test_the_report_opens_with_the_verdict_card_and_keeps_hashes_for_the_end(tmp_path):
    with wb.open(tmp_path / "wb.db", provider=SimulatedProvider(seed=0, time_scale=0)) as bench:
        exp = big_experiment(bench, 40)
        html = bench.report(exp, tmp_path / "r.html").read_text()
        card = str(exp.compare("A", "B"))
    body = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", body)
    order = [text.index(marker) for marker in
             ("B vs A", "What was compared", "Summary per variant", "Charts", "Per item", "Reproduce")]
    assert order == sorted(order)
    # The card is the one a notebook and the CLI show: its first verdict comes before anything else.
    first_verdict = card.splitlines()[3].split("  ")[1].strip()
    assert text.index(first_verdict) < text.index("What was compared")
    # Hashes, params and scorer specs sit in the collapsed section at the end.
    reproduce = body.index("<h2>Reproduce</h2>")
    assert all(m.start() > reproduce for m in re.finditer(r"sha256:", body))
    assert body.index("<h3>Scorers</h3>") > reproduce and body.count("<h3>Scorers</h3>") == 1
    # No wide tables: the summary is the narrow one.
    widest = max(len(re.findall(r"<th\b", t)) for t in re.findall(r"<table\b.*?</table>", body, flags=re.S))
    assert widest <= 11
    # Hashes aside (hex digits read like exponents), no number shows as nan or in exponent notation.
    assert not re.search(r"\bnan\b|\d[eE][-+]?\d", text[: text.index("Reproduce")], flags=re.I)


def test_a_report_before_any_call_says_so_and_draws_nothing(tmp_path, recwarn):
    with wb.open(tmp_path / "wb.db", provider=SimulatedProvider(seed=0, time_scale=0)) as bench:
        a = bench.prompts.register("r", template="Question: {question}", model="claude-haiku-4-5")
        ds = bench.datasets.load("d", [{"question": f"q{i}?", "expected": "x"} for i in range(5)])
        b = bench.prompts.register("r", template="Q: {question}", model="claude-haiku-4-5")
        exp = bench.experiment("empty", dataset=ds, variants={"A": a, "B": b}, scorers=[wb.scorers.contains_reference()])
        html = bench.report(exp, tmp_path / "empty.html").read_text()
    assert "0 of 10 calls made: run exp.run()" in html and "No calls recorded yet" in html
    assert 'class="vega-chart"' not in html and not [w for w in recwarn if "report chart" in str(w.message)]
