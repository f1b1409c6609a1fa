"""``workbench demo``: the whole offline path in one command."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

DATASET = Path(__file__).resolve().parent / "data" / "support_qa.jsonl"
"""The demo's 60 support questions (written for this project); shipped inside the package."""

SYSTEM = "You are the support assistant of Lumen Notes, a note-taking app. Answer in one or two sentences."
TEMPLATE_V1 = "Customer question: {question}"
TEMPLATE_V2 = "Help-centre passage:\n{context}\n\nCustomer question: {question}"
JUDGE_RUBRIC = (
    "Judge whether the support answer gives the customer the fact in the reference answer. "
    "1 means it does, 0 means it does not or it is wrong."
)


def run_demo(
    *,
    db: str | None = None,
    dataset: str | Path = DATASET,
    repeats: int = 3,
    report_path: str | None = "reports/demo.html",
    provider: str | None = "simulated",
    time_scale: float = 0.05,
    echo: Callable[[str], None] = print,
) -> dict[str, object]:
    """Register two prompt versions, run an A/B experiment, print the readout, write a report.

    Everything is recorded in the file: run it again and it makes no calls, only
    the readout and the report.
    """
    from . import _format as fmt
    from . import scorers
    from .bench import open as wb_open
    from .errors import DatasetError

    if not Path(dataset).exists():
        raise DatasetError(f"demo dataset {dataset} not found; pass --dataset PATH to a JSONL file, or leave it out "
                           f"to use the one shipped with workbench ({DATASET})")
    t0 = time.perf_counter()
    bench = wb_open(db, provider=provider, time_scale=time_scale)
    try:
        simulated = getattr(bench.provider, "simulated", False)
        echo(f"workbench demo: {bench.path} with the {bench.provider.name} provider"
             + (" (simulated answers, simulated time compressed; no API key needed)" if simulated else ""))
        v1 = bench.prompts.register("support", template=TEMPLATE_V1, model="claude-haiku-4-5", system=SYSTEM, temperature=0.3, max_tokens=300)
        v2 = bench.prompts.register("support", template=TEMPLATE_V2, model="claude-haiku-4-5", system=SYSTEM, temperature=0.3, max_tokens=300)
        bench.prompts.set_label("support", "production", v1)
        bench.prompts.set_label("support", "staging", v2)
        echo(str(bench.prompts.diff(v1, v2)))
        ds = bench.datasets.load("support-qa", dataset)
        exp = bench.experiment(
            "context-helps",
            dataset=ds,
            variants={"A": v1, "B": v2},
            scorers=[scorers.contains_reference(), scorers.llm_judge(JUDGE_RUBRIC, name="judge")],
            repeats=repeats,
            concurrency=16,
            budget_usd=2.00,
        )
        est = exp.estimate()
        if est.calls:
            cost = (f"about {fmt.money(est.cost_expected)} (worst case {fmt.money(est.cost_high)})"
                    if est.cost_expected is not None else "cost unknown")
            echo(f"estimate: {fmt.plural(est.calls, 'call')} to make, {cost}")
        exp.run()
        echo("")
        echo(str(exp.summary()))
        echo("")
        comparison = exp.compare("A", "B")
        echo(str(comparison))
        echo("")
        out = None
        if report_path:
            out = bench.report(exp, report_path)
            echo(f"report: {Path(out).resolve()}")
        echo(f"done in {time.perf_counter() - t0:.1f} s")
        return {"experiment": exp, "comparison": comparison, "report": out}
    finally:
        bench.close()
