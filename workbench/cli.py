"""The ``workbench`` command: a thin layer over the Python API.

Heavy modules are imported inside commands so ``workbench --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import _format as fmt
from . import config
from .errors import WorkbenchError

db_option = click.option("--db", "db", default=None, help="SQLite file or postgresql:// URL (default: $WORKBENCH_DB or workbench.db).")


def _open(db: str | None, *, create: bool = False, **kwargs: Any) -> Any:
    """Open the file. A missing one is an error naming the path, never a new empty file, unless
    ``create`` (a command that writes, such as receiving traces, may start a file)."""
    from .bench import open as wb_open

    path = _existing(db) if not create else config.db_path(_db(db))
    return wb_open(path, **kwargs)


def _existing(db: str | None) -> str:
    """The file's path; a missing file is an error naming it and where the path came from."""
    import os

    from .errors import StoreError
    from .store import is_server_url

    given = _db(db)
    path = config.db_path(given)
    if path != ":memory:" and not is_server_url(path) and not os.path.exists(path):
        source = ("--db" if given is not None else "WORKBENCH_DB" if os.environ.get("WORKBENCH_DB")
                  else f"the default, {config.DEFAULT_DB}")
        raise StoreError(
            f"no workbench file at {os.path.abspath(path)} (from {source}); check the path, point WORKBENCH_DB or "
            "--db at your file, or create one with `workbench demo` or `workbench db migrate`"
        )
    return path


def _db(db: str | None) -> str | None:
    """A command's --db, else its group's (``workbench prompts --db X``)."""
    if db is not None:
        return db
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if isinstance(ctx.obj, dict) and ctx.obj.get("db"):
            return ctx.obj["db"]
        ctx = ctx.parent
    return None


class _Group(click.Group):
    """Turns WorkbenchError into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WorkbenchError as exc:
            if config.debug():
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def _list_default(group: click.Group) -> click.Group:
    """Make a noun group run its ``list`` command when called bare."""
    group.invoke_without_command = True
    # click sets this from invoke_without_command at construction; without resetting it a bare
    # group prints its help and exits 2 before the callback can run ``list``.
    group.no_args_is_help = False
    original = group.callback

    def callback(db: str | None = None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        ctx.obj = {"db": db}
        if original is not None:
            original(**kwargs)
        if ctx.invoked_subcommand is None:
            ctx.invoke(group.commands["list"])

    group.callback = callback
    group.params.append(click.Option(["--db", "db"], default=None, help="SQLite file or postgresql:// URL (default: $WORKBENCH_DB or workbench.db)."))
    return group


@click.group(cls=_Group)
@click.version_option(package_name="workbench")
def cli() -> None:
    """workbench: prompts, experiments, evaluation and tracing in one SQLite file."""


@cli.command()
@db_option
@click.option("--dataset", default=None, help="JSONL dataset to run on (default: the 60 support questions shipped with workbench).")
@click.option("--repeats", default=3, show_default=True, help="Calls per item and variant.")
@click.option("--report", "report_path", default="reports/demo.html", show_default=True, help="Where to write the HTML report.")
@click.option("--provider", default="simulated", show_default=True,
              help="simulated (offline, free), anthropic (real, paid calls) or auto.")
@click.option("--time-scale", default=0.05, show_default=True, help="Simulated provider: real seconds per simulated second.")
def demo(db: str | None, dataset: str | None, repeats: int, report_path: str, provider: str | None, time_scale: float) -> None:
    """Run the offline demo: two prompt versions, an A/B experiment, a report. Works from any folder."""
    from .demo import DATASET, run_demo

    run_demo(db=_db(db), dataset=dataset or DATASET, repeats=repeats, report_path=report_path,
             provider=provider, time_scale=time_scale, echo=click.echo)


# -- prompts ---------------------------------------------------------------------------------


@cli.group()
def prompts() -> None:
    """Prompt versions and labels."""


@prompts.command("list")
@db_option
def prompts_list(db: str | None) -> None:
    """The latest version of every prompt, with labels."""
    with _open(db, provider="simulated") as bench:
        labels = bench.prompts.labels()
        for p in bench.prompts.list():
            lab = ", ".join(f"{k}=v{v}" for k, v in labels.get(p.name, {}).items())
            click.echo(f"{p.name}\tv{p.version}\t{p.model}\t{p.created_at[:19]}\t{lab}")


@prompts.command("show")
@click.argument("name")
@click.option("--version", "version", type=int, default=None)
@click.option("--label", default=None)
@db_option
def prompts_show(name: str, version: int | None, label: str | None, db: str | None) -> None:
    """One prompt version: template, model, params."""
    with _open(db, provider="simulated") as bench:
        p = bench.prompts.get(name, version, label=label)
        click.echo(f"{p.ref}  model={p.model}  {p.content_hash}  {p.created_at}")
        for k, v in sorted(p.params.items()):
            click.echo(f"  {k}: {v!r}")
        click.echo(p.template)


@prompts.command("diff")
@click.argument("name")
@click.argument("a", type=int)
@click.argument("b", type=int)
@db_option
def prompts_diff(name: str, a: int, b: int, db: str | None) -> None:
    """Unified diff of two versions and their changed params."""
    with _open(db, provider="simulated") as bench:
        click.echo(str(bench.prompts.diff(a, b, name=name)))


_list_default(prompts)


# -- traces ----------------------------------------------------------------------------------


@cli.group()
def traces() -> None:
    """Traced calls and spans."""


@traces.command("list")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--experiment", default=None, help="Only this experiment's traces (by name).")
@db_option
def traces_list(limit: int, as_json: bool, experiment: str | None, db: str | None) -> None:
    """Recent traces, newest first."""
    with _open(db, provider="simulated") as bench:
        filters = {}
        if experiment:
            filters["experiment_id"] = bench.experiments.get(experiment).id
        for t in bench.traces(limit=limit, **filters):
            if as_json:
                click.echo(json.dumps(t, ensure_ascii=False))
                continue
            cost = fmt.money(t["cost_usd"])
            lat = fmt.ms(t["latency_ms"], decimals=0)
            sim = " (simulated)" if t["simulated"] else ""
            click.echo(f"{t['started_at'][:23]}  {t['kind']:4}  {t['status']:5}  {t['name'][:40]:40}  {lat:>8}  {cost:>11}{sim}")


_list_default(traces)


# -- experiments -----------------------------------------------------------------------------


@cli.group()
def experiments() -> None:
    """A/B experiments."""


@experiments.command("list")
@db_option
def experiments_list(db: str | None) -> None:
    """Every experiment with its status, calls and cost."""
    with _open(db, provider="simulated") as bench:
        for e in bench.experiments.list():
            click.echo(f"{e['name']}\t{e['status']}\t{fmt.plural(e['calls'], 'call')}\t{fmt.money(e['cost_usd'])}\t{e['created_at'][:19]}")


@experiments.command("show")
@click.argument("name")
@click.option("--wide", is_flag=True, help="Every column (calls, errors, tokens, total cost, pass rates), per variant.")
@db_option
def experiments_show(name: str, wide: bool, db: str | None) -> None:
    """An experiment's summary per variant."""
    with _open(db, provider="simulated") as bench:
        exp = bench.experiments.get(name)
        click.echo(repr(exp))
        if not wide:
            click.echo(str(exp.summary()))
            return
        for row in exp.summary(wide=True).iter_rows(named=True):
            click.echo(f"\nvariant {row['variant']}: {row['label']}")
            for key, value in row.items():
                if key not in ("variant", "label"):
                    header, cell = fmt.column(key, pretty=False)
                    click.echo(f"  {header}: {cell(value)}")


@experiments.command("compare")
@click.argument("name")
@click.argument("a", default="A")
@click.argument("b", default="B")
@db_option
def experiments_compare(name: str, a: str, b: str, db: str | None) -> None:
    """B against A: differences with confidence intervals and verdicts."""
    with _open(db, provider="simulated") as bench:
        click.echo(str(bench.experiments.get(name).compare(a, b)))


@experiments.command("batches")
@click.argument("name")
@db_option
def experiments_batches(name: str, db: str | None) -> None:
    """An experiment's batches (run(batch=True)): state and requests per outcome."""
    with _open(db, provider="simulated") as bench:
        frame = bench.experiments.get(name).batches()
        if not frame.height:
            click.echo(f"experiment {name!r} has no batches; exp.run(batch=True) sends it through Message Batches")
            return
        for r in frame.iter_rows(named=True):
            counts = ", ".join(f"{fmt.count(r[k])} {k}" for k in ("pending", "succeeded", "errored", "canceled", "expired") if r[k])
            click.echo(f"{r['batch_id'] or '(not recorded)'}\t{r['state']}\t{fmt.plural(r['requests'], 'request')}"
                       f"\t{counts or '-'}\t{(r['submitted_at'] or r['created_at'])[:19]}")


_list_default(experiments)


# -- reports and the file --------------------------------------------------------------------


@cli.command()
@click.argument("experiment", required=False)
@click.option("--out", "out", required=True, help="HTML file to write.")
@click.option("--traces", "traces_report", is_flag=True, help="A report of all traces instead of an experiment.")
@db_option
def report(experiment: str | None, out: str, traces_report: bool, db: str | None) -> None:
    """Write a self-contained HTML report that opens offline: of EXPERIMENT, or of every trace."""
    with _open(db, provider="simulated") as bench:
        if traces_report or experiment is None:
            if experiment is None and not traces_report:
                names = [e["name"] for e in bench.experiments.list()]
                hint = f" (experiments: {', '.join(names)})" if names else ""
                click.echo(f"no experiment named: writing a traces report of every call in {bench.path}; "
                           f"`workbench report EXPERIMENT --out FILE` reports on one experiment{hint}", err=True)
            path = bench.report("traces", out)
        else:
            path = bench.report(bench.experiments.get(experiment), out)
        click.echo(str(path))


@cli.group()
def db() -> None:
    """The SQLite file."""


@db.command("path")
@db_option
def db_path(db: str | None) -> None:
    """Print the resolved path of the file."""
    import os

    click.echo(os.path.abspath(config.db_path(_db(db))))


@db.command("migrate")
@db_option
def db_migrate(db: str | None) -> None:
    """Create or upgrade the file to the current schema."""
    from .store import Store

    store = Store(config.db_path(_db(db)), migrate=False)
    try:
        applied = store.migrate()
        click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")
    finally:
        store.close()


@db.command("health")
@db_option
def db_health(db: str | None) -> None:
    """Rows kept outside the file (spilled, failed) and where; exit code 1 when there are any."""
    from .store import Store

    store = Store(_existing(db))
    try:
        health = store.health()
    finally:
        store.close()
    _echo_health(health)
    if not health.ok:
        sys.exit(1)


@db.command("recover")
@click.option("--discard-failed", is_flag=True, help="Delete kept rows SQLite still refuses (after showing them).")
@db_option
def db_recover(discard_failed: bool, db: str | None) -> None:
    """Write rows kept in the spill file (a full disk, a read-only or locked file) into the database."""
    from ._format import count
    from .store import Store

    store = Store(_existing(db))
    try:
        before = store.health()
        after = store.recover(discard_failed=discard_failed)
    finally:
        store.close()
    click.echo(f"wrote {count(after.written)} kept row{'' if after.written == 1 else 's'} into {after.path}")
    if discard_failed and before.failed > after.failed:
        click.echo(f"discarded {count(before.failed - after.failed)} row(s) SQLite refuses")
    _echo_health(after)
    if not after.ok:
        sys.exit(1)


def _echo_health(health: Any) -> None:
    from ._format import count

    click.echo(f"{health.path}: spilled {count(health.spilled)}, failed {count(health.failed)}")
    if health.spill_path:
        click.echo(f"kept in {health.spill_path}")
        if health.failed:
            click.echo("failed rows are refused by SQLite itself (their errors are in that file); "
                       "`workbench db recover --discard-failed` deletes them")
# -- deployment: rollouts and the CI gate ------------------------------------------------------


@cli.group("rollout")
def rollout_group() -> None:
    """Online A/B readouts and gradual rollouts of a label (cron: `workbench rollout step`)."""


@rollout_group.command("list")
@db_option
def rollout_list(db: str | None) -> None:
    """Every rollout: label, candidate over baseline, status and step."""
    from .rollout import ramp

    with _open(db, provider="simulated") as bench:
        states = ramp.every(bench)
        if not states:
            click.echo("no rollouts yet; start one with `workbench rollout start NAME CANDIDATE`")
        for s in states:
            steps = " → ".join(f"[{fmt.pct(x, 0)}]" if i == s.step and s.status == ramp.RUNNING else fmt.pct(x, 0)
                               for i, x in enumerate(s.plan.steps))
            click.echo(f"{s.name}/{s.label}	v{s.candidate} over v{s.baseline}	{s.status}	{steps}	{s.updated_at[:19]}")


def _guards(pairs: tuple[str, ...]) -> dict[str, float] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        metric, sep, value = pair.partition("=")
        try:
            out[metric.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{pair!r} is not METRIC=MARGIN (e.g. error_rate=0.01)", param_hint="--guard") from None
        if not sep or not metric.strip():
            raise click.BadParameter(f"{pair!r} is not METRIC=MARGIN (e.g. error_rate=0.01)", param_hint="--guard")
    return out


@rollout_group.command("start")
@click.argument("name")
@click.argument("candidate", type=int)
@click.option("--label", default="production", show_default=True)
@click.option("--steps", default="5,25,50,100", show_default=True, help="The candidate's share at each step, in percent.")
@click.option("--blue-green", is_flag=True, help="One step: all traffic at once, guarded against the period before.")
@click.option("--guard", "guards", multiple=True, metavar="METRIC=MARGIN",
              help="error_rate (points, 0.01), cost/latency_p95/latency_p50 (share of the baseline, 0.10) or a scorer "
                   "(its units); repeatable. Default: error_rate=0.01, latency_p95=0.1, cost=0.1.")
@click.option("--min-units", default=100, show_default=True, help="Units each version needs per step.")
@db_option
def rollout_start(name: str, candidate: int, label: str, steps: str, blue_green: bool, guards: tuple[str, ...],
                  min_units: int, db: str | None) -> None:
    """Start ramping CANDIDATE (a version number) under a label of prompt NAME."""
    try:
        shares = (100.0,) if blue_green else tuple(float(x) for x in steps.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{steps!r} is not a list of percents such as 5,25,50,100", param_hint="--steps") from None
    with _open(db, provider="simulated") as bench:
        decision = bench.rollout(name, label).start(candidate, steps=shares, guards=_guards(guards), min_units=min_units)
        click.echo(decision.check().text)


@rollout_group.command("step")
@click.argument("name", required=False)
@click.option("--label", default=None, help="Only this label (default: every running rollout).")
@db_option
def rollout_step(name: str | None, label: str | None, db: str | None) -> None:
    """Judge every running rollout and act: advance, complete, roll back or hold. For cron."""
    from .rollout import ramp

    with _open(db, provider="simulated") as bench:
        states = ramp.running(bench, name, label)
        if not states:
            click.echo("no rollout is running" + (f" for {name}" if name else ""))
        for s in states:
            decision = ramp.step(bench, s)
            click.echo(f"[{decision.action}] {decision.check().text}")


@rollout_group.command("readout")
@click.argument("name")
@click.option("--label", default="production", show_default=True)
@db_option
def rollout_readout(name: str, label: str, db: str | None) -> None:
    """The online readout of the label's current split: the verdict card, the sample-ratio check on top."""
    with _open(db, provider="simulated") as bench:
        click.echo(str(bench.rollout(name, label).readout()))


@rollout_group.command("rollback")
@click.argument("name")
@click.option("--label", default="production", show_default=True)
@click.option("--reason", required=True, help="Why; kept in the label history.")
@db_option
def rollout_rollback(name: str, label: str, reason: str, db: str | None) -> None:
    """Switch the label back now: to the running rollout's baseline, else undo its last move."""
    with _open(db, provider="simulated") as bench:
        done = bench.rollout(name, label).rollback(reason)
        click.echo(done.check().text if hasattr(done, "check") else f"{name}/{label} back to v{done.version}")


@rollout_group.command("stop")
@click.argument("name")
@click.option("--label", default="production", show_default=True)
@click.option("--reason", default="by hand", show_default=True)
@db_option
def rollout_stop(name: str, label: str, reason: str, db: str | None) -> None:
    """End the running rollout where it stands (the label keeps its split)."""
    with _open(db, provider="simulated") as bench:
        click.echo(bench.rollout(name, label).stop(reason).check().text)


@rollout_group.command("history")
@click.argument("name")
@click.option("--label", default="production", show_default=True)
@db_option
def rollout_history(name: str, label: str, db: str | None) -> None:
    """The label's moves, newest first, with why."""
    with _open(db, provider="simulated") as bench:
        for h in bench.prompts.label_history(name, label):
            click.echo(f"{h['set_at'][:19]}\t{h['action']}\tv{h['version']}\t{h['split_json'] or ''}\t{h['reason'] or ''}")


_list_default(rollout_group)


class _GateCommand(click.Command):
    """Usage errors exit 3 like any broken configuration: 2 means inconclusive here."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = 3
            raise


@cli.command(cls=_GateCommand)
@click.option("--config", "config_path", default="workbench-gate.toml", show_default=True, help="The gate's TOML file.")
@click.option("--html", "html_path", default=None, help="Also write the report with the gate's card first (a CI artifact).")
@click.option("--progress", is_flag=True, help="Show a progress bar while the calls run.")
def gate(config_path: str, html_path: str | None, progress: bool) -> None:
    """Run a candidate against the baseline and exit 0 pass, 1 fail, 2 inconclusive, 3 broken configuration.

    Every check is judged on its confidence interval: a scorer fails only when the
    whole interval is worse than its margin, passes only when it is all within it.
    """
    from .rollout import gate as gating

    ctx = click.get_current_context()
    try:
        cfg = gating.load_config(config_path)
        result = gating.run(cfg, progress=progress, echo=lambda line: click.echo(line, err=True))
        click.echo(result.text())
        if html_path:
            click.echo(f"report: {gating.write_html(result, html_path)}", err=True)
    except WorkbenchError as exc:
        if config.debug():
            raise
        click.echo(f"error: {exc}", err=True)
        ctx.exit(gating.EXIT_ERROR)
    ctx.exit(result.exit_code)


# -- export and serve ------------------------------------------------------------------------


@cli.group("export")
def export_group() -> None:
    """Send or write the file's traces elsewhere (OpenTelemetry, Parquet)."""


@export_group.command("otlp")
@click.option("--endpoint", required=True, help="OTLP/HTTP collector, e.g. http://localhost:4318 (/v1/traces is added).")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE", help="Sent with each request (repeatable).")
@click.option("--since", default=None, help="Only traces started at or after this ISO time.")
@click.option("--until", default=None, help="Only traces started before this ISO time.")
@click.option("--service", default="workbench", show_default=True, help="service.name of the spans' resource.")
@click.option("--no-content", is_flag=True, help="Leave inputs, outputs and error texts out of the spans.")
@db_option
def export_otlp(endpoint: str, headers: tuple[str, ...], since: str | None, until: str | None, service: str,
                no_content: bool, db: str | None) -> None:
    """Send every trace (or a time range) as OTLP spans with the GenAI conventions."""
    from .otel import export

    pairs = {}
    for h in headers:
        name, sep, value = h.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{h!r} is not NAME=VALUE", param_hint="--header")
        pairs[name.strip()] = value.strip()
    with _open(db, provider="simulated") as bench:
        n = export(bench, endpoint, headers=pairs, service=service, content=not no_content, since=since, until=until)
    click.echo(f"sent {n:,} spans to {endpoint}")


@export_group.command("parquet")
@click.argument("folder")
@click.option("--since", default=None, help="Only the UTC days from this ISO time on (whole days).")
@click.option("--until", default=None, help="Only the UTC days before this ISO time.")
@db_option
def export_parquet(folder: str, since: str | None, until: str | None, db: str | None) -> None:
    """Write traces, scores and experiments as Parquet, one file per table and UTC day."""
    from .parquet import export_parquet as write

    with _open(db, provider="simulated") as bench:
        counts = write(bench, folder, since=since, until=until)
    click.echo(", ".join(f"{n:,} {table}" for table, n in counts.items()) + f" written to {folder}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; not loopback needs --token.")
@click.option("--port", default=4318, show_default=True, help="OTLP/HTTP's usual port; 0 picks a free one.")
@click.option("--token", default=None, envvar="WORKBENCH_OTLP_TOKEN",
              help="Senders must send 'Authorization: Bearer TOKEN' (default: $WORKBENCH_OTLP_TOKEN).")
@click.option("--verbose", is_flag=True, help="Log every request.")
@db_option
def serve(host: str, port: int, token: str | None, verbose: bool, db: str | None) -> None:
    """Receive OpenTelemetry traces (OTLP/HTTP, protobuf or JSON) into the file."""
    import signal

    from .otel import OtlpServer

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM (a service manager, kill) stops as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    with _open(db, create=True, provider="simulated") as bench:
        server = OtlpServer(bench.store, host, port, token=token, pricer=bench.pricing, verbose=verbose)
        click.echo(f"receiving OTLP traces at {server.url} into {bench.path}"
                   f"{' (bearer token required)' if token else ''}; Ctrl-C stops", err=True)
        server.run()
        click.echo(f"stopped after {server.ingestor.spans:,} spans", err=True)
# -- monitoring ------------------------------------------------------------------------------


@cli.command()
@click.option("--once", "mode", flag_value="once", help="Check every rule once and exit (for cron).")
@click.option("--watch", "mode", flag_value="watch", help="Check every --every seconds until Ctrl-C or SIGTERM.")
@click.option("--every", default=60.0, show_default=True, help="Seconds between checks with --watch.")
@click.option("--rules", "rules_path", default=None, help="TOML file of rules and [[notify]] webhooks (default: the built-in rules).")
@click.option("--webhook", "webhooks", multiple=True, help="Also POST alerts here (Slack-compatible JSON); repeatable.")
@click.option("--now", "now", default=None, help="With --once: check as of this UTC time (ISO 8601), e.g. for backdated traffic.")
@db_option
def monitor(mode: str | None, every: float, rules_path: str | None, webhooks: tuple[str, ...], now: str | None, db: str | None) -> None:
    """Check production traffic for incidents: error spikes, slower calls, cost, spend, quality.

    Without --once or --watch, lists the open alerts. Alerts go to the file
    (see `bench.monitor.alerts()`) and to every webhook, once per incident.
    """
    if now is not None and mode != "once":
        raise click.UsageError("--now goes with --once")
    with _open(db, provider="simulated") as bench:
        mon = bench.monitor
        if rules_path:
            mon.load(rules_path)
        for url in webhooks:
            mon.notify(url)
        if mode is None:
            open_ = mon.alerts("open")
            if open_.height == 0:
                click.echo("no open alerts (workbench monitor --once checks now; --watch keeps checking)")
            for a in open_.iter_rows(named=True):
                click.echo(f"OPEN  {a['rule']}  {a['scope']}  since {a['first_seen']:%Y-%m-%d %H:%M} UTC  {a['statistic']}")
            return
        if mode == "once":
            result = mon.check(now)
            click.echo(repr(result))
            mon.drain()
            return
        click.echo(f"watching {bench.path} every {every:g} s with {len(mon.rules)} rules; Ctrl-C or SIGTERM stops", err=True)
        checks = mon.watch(every, echo=click.echo)
        click.echo(f"stopped after {checks} check{'s' if checks != 1 else ''}", err=True)


def main() -> None:
    cli(prog_name="workbench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
