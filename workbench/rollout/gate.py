"""``workbench gate``: the eval every prompt or model change runs in CI before it ships.

A TOML file in the repository names a dataset, a baseline and a candidate
(templates inline, in files, in files at a git ref, or versions and labels of a
workbench file), the scorers with their non-inferiority margins, and what the
candidate may cost. The gate runs the two as an experiment (recorded in a
workbench file, so an unchanged pair costs nothing the second time), or reads
a finished experiment, and judges each check on its confidence interval, never
on the point estimate:

- a scorer **fails** when the whole interval of B − A lies below −margin (worse
  beyond the margin), **passes** when it lies at or above −margin, and is
  **inconclusive** when it straddles −margin (more items would tell);
- cost per item: the candidate may cost at most ``max_increase`` more than the
  baseline (relative, paired by item) and at most ``max_per_call`` dollars.

Exit codes: 0 every check passed; 1 a check failed; 2 no check failed but one is
inconclusive (or the run is incomplete); 3 the configuration or the run is broken.
"""

from __future__ import annotations

import math
import os
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _format as fmt
from .. import verdict as vd
from .._canonical import content_hash
from ..errors import GateConfigError
from . import _stats

if TYPE_CHECKING:
    from ..bench import Workbench
    from ..experiments import Experiment
    from ..readouts import Comparison

EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_ERROR = 0, 1, 2, 3
"""What ``workbench gate`` exits with."""
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
DEFAULT_CONFIG = "workbench-gate.toml"
SIDE_KEYS = ("template", "template_file", "ref", "model", "label", "version", "variant", "prompt")
"""Keys of [baseline] and [candidate] that say what runs; any other key is a request param (max_tokens, system, ...)."""
TOP_KEYS = ("name", "dataset", "experiment", "db", "provider", "repeats", "seed", "budget_usd", "concurrency",
            "confidence", "baseline", "candidate", "scorers", "cost")


@dataclass(frozen=True)
class Side:
    """The baseline or the candidate."""

    template: str | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    """A prompt of the workbench file (with ``label`` or ``version``)."""
    label: str | None = None
    version: int | None = None
    variant: str | None = None
    """A variant of a finished experiment."""


@dataclass(frozen=True)
class ScorerCheck:
    name: str
    spec: dict[str, Any]
    """For ``scorers.build``: kind, name, args."""
    margin: float


@dataclass(frozen=True)
class GateConfig:
    """A parsed ``workbench-gate.toml``."""

    path: Path
    name: str
    """The prompt's name in the workbench file."""
    dataset: Path | None
    experiment: str | None
    db: Path
    provider: str
    repeats: int
    seed: int
    budget_usd: float | None
    concurrency: int
    confidence: float
    baseline: Side
    candidate: Side
    scorers: tuple[ScorerCheck, ...]
    max_cost_increase: float | None
    max_cost_per_call: float | None


def _fail(path: Path, message: str) -> GateConfigError:
    return GateConfigError(f"{path}: {message}")


def _number(path: Path, key: str, value: Any, *, low: float = 0.0, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(float(value)) or value < low:
        want = "an integer" if integer else "a number"
        raise _fail(path, f"{key} must be {want} >= {low:g}, got {value!r}")
    return value


def _git_show(path: Path, ref: str, file: str) -> str:
    """A file's text at a git ref (``origin/main``): the baseline of a pull request is the template on main."""
    rel = os.path.relpath((path.parent / file).resolve(), _git_root(path))
    try:
        out = subprocess.run(["git", "show", f"{ref}:{Path(rel).as_posix()}"], cwd=path.parent, capture_output=True,
                             text=True, check=False, timeout=30)
    except FileNotFoundError:
        raise _fail(path, "ref needs git on PATH") from None
    if out.returncode != 0:
        raise _fail(path, f"git show {ref}:{rel} failed ({out.stderr.strip() or 'no output'}); in CI fetch the ref first "
                          "(actions/checkout with fetch-depth: 0)")
    return out.stdout


def _git_root(path: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path.parent, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise _fail(path, f"ref needs {path.parent} to be inside a git repository")
    return out.stdout.strip()


def _side(path: Path, key: str, raw: Any, from_experiment: bool) -> Side:
    if from_experiment:
        if raw is None:
            return Side(variant="A" if key == "baseline" else "B")
        if isinstance(raw, str):
            return Side(variant=raw)
        raise _fail(path, f"with experiment = ..., {key} is a variant name such as \"A\", got {raw!r}")
    if not isinstance(raw, Mapping):
        raise _fail(path, f"[{key}] is missing: give template (or template_file) and model, or prompt with label or version")
    params = {k: v for k, v in raw.items() if k not in SIDE_KEYS}
    template = raw.get("template")
    if raw.get("template_file") is not None:
        file = str(raw["template_file"])
        if raw.get("ref"):
            template = _git_show(path, str(raw["ref"]), file)
        else:
            target = path.parent / file
            if not target.is_file():
                raise _fail(path, f"[{key}] template_file {file!r} not found at {target}")
            template = target.read_text(encoding="utf-8")
    if template is None and raw.get("prompt") is None:
        raise _fail(path, f"[{key}] needs template, template_file, or prompt with label or version")
    if template is not None and not raw.get("model"):
        raise _fail(path, f"[{key}] needs model, e.g. model = \"claude-haiku-4-5\"")
    version = raw.get("version")
    if version is not None:
        _number(path, f"[{key}] version", version, low=1, integer=True)
    return Side(template, raw.get("model"), params, raw.get("prompt"), raw.get("label"), version)


def load_config(path: str | os.PathLike[str] = DEFAULT_CONFIG) -> GateConfig:
    """Read and check a gate file; every error names the file, the key and what to write instead."""
    p = Path(path)
    if not p.is_file():
        raise GateConfigError(f"no gate configuration at {p.resolve()}; write one (see the README's \"CI gate\") or pass --config")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise _fail(p, f"not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise _fail(p, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (known: {', '.join(TOP_KEYS)})")
    experiment = raw.get("experiment")
    if experiment is None and raw.get("dataset") is None:
        raise _fail(p, "give dataset = \"path/to/items.jsonl\" to run, or experiment = \"name\" to read a finished one")
    dataset = None if raw.get("dataset") is None else p.parent / str(raw["dataset"])
    if dataset is not None and not dataset.is_file():
        raise _fail(p, f"dataset {raw['dataset']!r} not found at {dataset}")
    scorers_raw = raw.get("scorers") or {}
    if not isinstance(scorers_raw, Mapping) or not scorers_raw:
        raise _fail(p, "name at least one scorer with its margin, e.g. [scorers.contains_reference] margin = 0.02")
    checks = []
    for sname, table in scorers_raw.items():
        if not isinstance(table, Mapping) or "margin" not in table:
            raise _fail(p, f"[scorers.{sname}] needs margin = ... (how much worse the candidate may be on that scorer)")
        margin = float(_number(p, f"[scorers.{sname}] margin", table["margin"]))
        args = dict(table.get("args") or {})
        args.update({k: v for k, v in table.items() if k not in ("margin", "kind", "args")})
        checks.append(ScorerCheck(sname, {"kind": table.get("kind", sname), "name": sname, "args": args}, margin))
    cost = raw.get("cost") or {}
    if not isinstance(cost, Mapping) or set(cost) - {"max_increase", "max_per_call"}:
        raise _fail(p, "[cost] takes max_increase (a share: 0.10 is 10% more per item) and max_per_call (dollars)")
    confidence = float(_number(p, "confidence", raw.get("confidence", 0.95)))
    if not 0 < confidence < 1:
        raise _fail(p, f"confidence must be between 0 and 1, got {confidence!r}")
    budget = raw.get("budget_usd")
    return GateConfig(
        path=p, name=str(raw.get("name", "gate")), dataset=dataset, experiment=experiment,
        db=p.parent / str(raw.get("db", ".workbench/gate.db")), provider=str(raw.get("provider", "auto")),
        repeats=_number(p, "repeats", raw.get("repeats", 1), low=1, integer=True),
        seed=_number(p, "seed", raw.get("seed", 0), integer=True),
        budget_usd=None if budget is None else float(_number(p, "budget_usd", budget)),
        concurrency=_number(p, "concurrency", raw.get("concurrency", 8), low=1, integer=True),
        confidence=confidence,
        baseline=_side(p, "baseline", raw.get("baseline"), experiment is not None),
        candidate=_side(p, "candidate", raw.get("candidate"), experiment is not None),
        scorers=tuple(checks),
        max_cost_increase=None if cost.get("max_increase") is None else float(_number(p, "[cost] max_increase", cost["max_increase"])),
        max_cost_per_call=None if cost.get("max_per_call") is None else float(_number(p, "[cost] max_per_call", cost["max_per_call"])),
    )


# -- judging -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateCheck:
    """One thing the gate judged."""

    what: str
    verdict: str
    """``pass``, ``fail`` or ``inconclusive``."""
    text: str

    def check(self) -> vd.Check:
        kind = {PASS: vd.BETTER, FAIL: vd.WORSE, INCONCLUSIVE: vd.UNDERPOWERED}[self.verdict]
        return vd.Check(kind, f"{self.what}: {self.verdict}", self.text)


def _decide(ci_low: Any, ci_high: Any, allowed: float, higher_is_better: bool) -> str:
    if fmt.missing(ci_low) or fmt.missing(ci_high):
        return INCONCLUSIVE
    state = _stats.judge(float(ci_low), float(ci_high), allowed, higher_is_better=higher_is_better)
    return {_stats.HOLDS: PASS, _stats.REGRESSED: FAIL, _stats.UNSURE: INCONCLUSIVE}[state]


def _items_to_settle(n: int, low: float, high: float, threshold: float) -> int | None:
    """Items that would shrink the interval (as 1/sqrt(n)) to clear ``threshold`` on the side of its centre."""
    centre, half = (low + high) / 2, (high - low) / 2
    gap = abs(centre - threshold)
    if n < 2 or half <= 0 or gap == 0:
        return None
    return max(n + 1, math.ceil(n * (half / gap) ** 2))


def judge_comparison(cmp: Comparison, config: GateConfig, candidate_costs: Any) -> list[GateCheck]:
    """Every check of the gate on a finished comparison (candidate = B)."""
    conf = f"{config.confidence * 100:g}% CI"
    out = []
    rows = {r["scorer"]: r for r in cmp.scores.iter_rows(named=True)}
    for sc in config.scorers:
        r = rows.get(sc.name)
        if r is None or not r["n"]:
            note = (r or {}).get("note") or "no item scored for both"
            out.append(GateCheck(sc.name, INCONCLUSIVE, f"no comparison: {note}"))
            continue
        verdict = _decide(r["ci_low"], r["ci_high"], sc.margin, True)
        shown = (f"{fmt.num(r['mean_a'])} → {fmt.num(r['mean_b'])}, diff {fmt.num(r['diff'], signed=True)} ({conf} "
                 f"{fmt.interval(r['ci_low'], r['ci_high'], signed=True)}), n={fmt.count(r['n'])}, "
                 f"margin {fmt.num(-sc.margin, signed=True)}")
        why = {PASS: "the whole interval is within the margin",
               FAIL: "the whole interval is below the margin: worse beyond it",
               INCONCLUSIVE: "the interval straddles the margin"}[verdict]
        if verdict == INCONCLUSIVE and not fmt.missing(r["ci_low"]):
            need = _items_to_settle(r["n"], r["ci_low"], r["ci_high"], -sc.margin)
            if need:
                why += f"; about {fmt.plural(need, 'item')} would settle it"
        out.append(GateCheck(sc.name, verdict, f"{shown}: {why}"))
    c = cmp.cost.row(0, named=True)
    if config.max_cost_increase is not None:
        allowed = None if fmt.missing(c["mean_a"]) else config.max_cost_increase * c["mean_a"]
        if allowed is None or not c["n"]:
            out.append(GateCheck("cost increase", INCONCLUSIVE, c["note"] or "no priced items for both"))
        else:
            verdict = _decide(c["ci_low"], c["ci_high"], allowed, False)
            out.append(GateCheck("cost increase", verdict, (
                f"per item {fmt.money(c['mean_a'])} → {fmt.money(c['mean_b'])} ({fmt.relative(c['mean_b'], c['mean_a'])}), "
                f"{conf} of the increase {fmt.interval(c['ci_low'], c['ci_high'], fmt.money, signed=True)}, allowed "
                f"{fmt.pct(config.max_cost_increase, 0, signed=True)} ({fmt.money(allowed, signed=True)})")))
    if config.max_cost_per_call is not None:
        from .. import stats

        est = stats.mean_ci(candidate_costs, confidence=config.confidence)
        verdict = INCONCLUSIVE if est.n == 0 else _decide(est.ci_low, est.ci_high, config.max_cost_per_call, False)
        out.append(GateCheck("cost per call", verdict, (
            f"{cmp.b} {fmt.money(est.mean)} per call ({conf} {fmt.interval(est.ci_low, est.ci_high, fmt.money)}), "
            f"allowed {fmt.money(config.max_cost_per_call)}")))
    if cmp.calls_made < cmp.calls_planned:
        out.append(GateCheck("calls", INCONCLUSIVE, (
            f"{fmt.count(cmp.calls_made)} of {fmt.plural(cmp.calls_planned, 'call')} recorded "
            f"({fmt.count(cmp.calls_failed)} failed): the run is incomplete")))
    return out


@dataclass
class GateResult:
    """What the gate decided, the comparison it decided on, and the exit code."""

    config: GateConfig
    experiment: Experiment
    comparison: Comparison
    checks: list[GateCheck]

    @property
    def verdict(self) -> str:
        verdicts = {c.verdict for c in self.checks}
        return FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS

    @property
    def exit_code(self) -> int:
        return {PASS: EXIT_PASS, FAIL: EXIT_FAIL, INCONCLUSIVE: EXIT_INCONCLUSIVE}[self.verdict]

    def summary_check(self) -> vd.Check:
        kind = {PASS: vd.BETTER, FAIL: vd.WORSE, INCONCLUSIVE: vd.UNDERPOWERED}[self.verdict]
        failing = [c.what for c in self.checks if c.verdict == self.verdict and self.verdict != PASS]
        text = {PASS: f"every check passed ({', '.join(c.what for c in self.checks)})",
                FAIL: f"failed: {', '.join(failing)}",
                INCONCLUSIVE: f"not decided: {', '.join(failing)}; nothing failed"}[self.verdict]
        return vd.Check(kind, f"gate: {self.verdict}", f"{text} (exit code {self.exit_code})")

    def card(self) -> vd.Card:
        card = self.comparison.card(details=True)
        return replace(card, title=f"gate · {self.config.name}",
                       checks=[self.summary_check(), *(c.check() for c in self.checks), *card.checks])

    def text(self) -> str:
        return vd.text(self.card())

    def _repr_html_(self) -> str:
        return vd.html(self.card())


def _version(bench: Workbench, config: GateConfig, side: Side, role: str) -> Any:
    if side.template is not None:
        return bench.prompts.register(config.name, side.template, str(side.model), **side.params)
    prompt = side.prompt or config.name
    if side.label is None and side.version is None:
        raise _fail(config.path, f"[{role}] prompt = {prompt!r} needs label or version")
    pv = bench.prompts.get(prompt, side.version, label=side.label)
    from ..experiments import variant

    return variant(pv, model=side.model, **side.params) if side.model or side.params else pv


def run(config: GateConfig, *, progress: bool = False, echo: Callable[[str], None] = print) -> GateResult:
    """Run (or read) the comparison and judge it."""
    import polars as pl

    from ..bench import open as wb_open

    config.db.parent.mkdir(parents=True, exist_ok=True)
    # The simulator's latencies are recorded, not waited for: a CI run takes seconds.
    bench = wb_open(config.db, provider=config.provider, seed=config.seed, time_scale=0)
    try:
        if config.experiment is not None:
            exp = bench.experiments.get(config.experiment)
            a, b = str(config.baseline.variant), str(config.candidate.variant)
        else:
            from .. import scorers

            ds = bench.datasets.load(config.dataset.stem, config.dataset)  # type: ignore[union-attr]
            built = [scorers.build(sc.spec) for sc in config.scorers]
            variants = {"baseline": _version(bench, config, config.baseline, "baseline"),
                        "candidate": _version(bench, config, config.candidate, "candidate")}
            if _spec(variants["baseline"]) == _spec(variants["candidate"]):
                echo("gate: the baseline and the candidate are the same prompt, model and params: nothing changed, "
                     "so every quality check passes (check [baseline] and [candidate], or the ref)")
            digest = content_hash({"dataset": ds.content_hash, "variants": {k: _spec(v) for k, v in variants.items()},
                                   "scorers": [sc.spec for sc in config.scorers], "repeats": config.repeats,
                                   "seed": config.seed, "provider": bench.provider.name})[7:19]
            exp = bench.experiment(f"gate-{config.name}-{digest}", dataset=ds, variants=variants, scorers=built,
                                   repeats=config.repeats, seed=config.seed, concurrency=config.concurrency,
                                   budget_usd=config.budget_usd)
            echo(f"gate: {exp.name} ({ds.ref}, {fmt.plural(len(ds), 'item')} × {fmt.plural(config.repeats, 'repeat')}, "
                 f"provider {bench.provider.name}) in {config.db}")
            exp.run(progress=progress)
            a, b = "baseline", "candidate"
        known = [s.name for s in exp.scorers]
        missing = [sc.name for sc in config.scorers if sc.name not in known]
        if missing:
            raise _fail(config.path, f"experiment {exp.name!r} has no scorer {', '.join(map(repr, missing))} "
                                     f"(scorers: {', '.join(known) or 'none'})")
        cmp = exp.compare(a, b, confidence=config.confidence, alpha=1 - config.confidence)
        t = exp.traces_df()
        costs = t.filter((pl.col("variant") == b) & (pl.col("status") == "ok"))["cost_usd"].drop_nulls().to_numpy()
        return GateResult(config, exp, cmp, judge_comparison(cmp, config, costs))
    finally:
        bench.close()


def _spec(v: Any) -> Any:
    return v.spec() if hasattr(v, "spec") else {"prompt": v.content_hash, "model": v.model}


def write_html(result: GateResult, path: str | os.PathLike[str]) -> Path:
    """The experiment's report with the gate's card first: a self-contained CI artifact."""
    from ..bench import open as wb_open
    from ..report import write_report

    bench = wb_open(result.config.db, provider="simulated")
    try:
        exp = bench.experiments.get(result.experiment.name)
        return write_report(bench, exp, path, lead=vd.html(result.card(), wrap=False))
    finally:
        bench.close()
