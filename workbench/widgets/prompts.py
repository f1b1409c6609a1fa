"""Browse, diff, edit and try prompt versions.

``wb.widgets.prompts(bench, dataset=ds)``: pick a prompt and a version to see
its template, params, labels and label moves, and every version's metrics
(calls, errors, average latency and cost from its traces, average quality
from the experiments that scored it); diff any two versions; edit the
template, model and params and register the result as a new version; preview
the editor's text rendered with a dataset item; and try the selected version
on the first few items, as traced calls.

It opens on your prompts: internal ones (an LLM judge's ``judge:...``
prompts) show only with ``internal=True`` or the "judge prompts" switch. A
version whose preview misses a variable is not registered until you press
"Register anyway".

Everything goes through ``bench.prompts`` and ``bench.complete``; errors
(a malformed template, a missing variable, a failed call) are shown inline.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import traitlets

from .. import _format, _html
from .._html import esc, root
from ..errors import ConfigError, PromptError, WorkbenchError
from ..prompts import PromptVersion
from ._common import error_html, guarded, info_html, money, ms, scroll_box

if TYPE_CHECKING:
    import polars as pl

    from ..bench import Workbench
    from ..datasets import Dataset

__all__ = ["INTERNAL_PREFIXES", "PromptsWidget", "prompt_metrics"]

INTERNAL_PREFIXES = ("judge:",)
"""Prompt names the package registers for itself (LLM judges): hidden unless asked for."""

TRY_ITEMS = 3
"""Items the "Try" button calls the model on."""
HISTORY_ROWS = 20
"""Label moves shown, newest first."""


class _Out(W.HTML):
    """An HTML widget whose value always sits in `_html.root` (MathJax leaves it alone)."""

    @traitlets.validate("value")
    def _rooted(self, proposal: Any) -> str:
        value = proposal["value"] or ""
        return value if not value or value.startswith('<div class="wb-out ') else root(value)


def prompt_metrics(bench: Workbench, name: str) -> pl.DataFrame:
    """Per version of prompt ``name``: calls, errors, average latency and cost, and average quality.

    Latency and cost are over the version's successful model calls (every
    trace with this prompt: experiments, the "Try" button, production); each
    scorer's quality (``quality_<scorer>``) is the mean of the scores those
    calls got in experiments. Judges' own calls are not counted.
    """
    import polars as pl

    from .. import frames

    bench.store.sync()
    t = frames.traces_df(
        bench.store, prompt_name=name, kind="llm",
        columns=["id", "prompt_version", "status", "latency_ms", "cost_usd", "experiment_id"], parse_times=False,
    )
    ok = pl.col("status") == "ok"
    out = t.group_by("prompt_version").agg(
        pl.len().alias("calls"),
        (pl.col("status") == "error").sum().alias("errors"),
        pl.col("latency_ms").filter(ok).mean().alias("latency_mean_ms"),
        pl.col("cost_usd").filter(ok).mean().alias("cost_mean_usd"),
    )
    versions = pl.DataFrame({"version": [v.version for v in bench.prompts.history(name)]}, schema={"version": pl.Int64})
    out = versions.join(out.rename({"prompt_version": "version"}), on="version", how="left")
    experiments = [e for e in t["experiment_id"].unique().to_list() if e is not None]
    if experiments:
        scores = pl.concat([frames.scores_df(bench.store, e) for e in experiments]).select("trace_id", "scorer", "value")
        quality = (
            scores.join(t.select("id", "prompt_version"), left_on="trace_id", right_on="id")
            .group_by("prompt_version", "scorer").agg(pl.col("value").mean())
            .pivot("scorer", index="prompt_version", values="value")
        )
        quality = quality.rename({c: f"quality_{c}" for c in quality.columns if c != "prompt_version"})
        out = out.join(quality.rename({"prompt_version": "version"}), on="version", how="left")
    return out.with_columns(pl.col("calls", "errors").fill_null(0)).sort("version", descending=True)


class PromptsWidget(W.VBox):
    """The prompt registry as a widget.

    Args:
        bench: the workbench.
        dataset: a Dataset (or the name of one) whose items feed the preview and "Try".
        try_items: how many items "Try" calls the model on.
        internal: list the package's own prompts too (LLM judges' ``judge:...``).

    Drive it from Python like a user would: ``w.name.value = "support"``,
    ``w.editor.value = "..."``, ``w.register_button.click()``.
    """

    def __init__(self, bench: Workbench, dataset: Dataset | str | None = None, *, try_items: int = TRY_ITEMS,
                 internal: bool = False) -> None:
        from ..datasets import Dataset

        if isinstance(dataset, str):
            dataset = bench.datasets.get(dataset)
        if dataset is not None and not isinstance(dataset, Dataset):
            raise ConfigError(f"dataset must be a Dataset or a dataset name, got {type(dataset).__name__}")
        if not isinstance(try_items, int) or try_items < 1:
            raise ConfigError(f"try_items must be an integer >= 1, got {try_items!r}")
        self.bench = bench
        self.dataset = dataset
        self.try_items = try_items
        self.internal = internal
        self.last_error: Exception | None = None
        self._syncing = False
        self._confirm_missing: list[str] = []
        self._build_controls()
        super().__init__(children=self._layout(), layout=W.Layout(width="100%"))
        self.refresh()

    # -- controls ----------------------------------------------------------------------------

    def _build_controls(self) -> None:
        self.name = W.Dropdown(description="Prompt", options=[], tooltip="Prompt name")
        self.version = W.Dropdown(description="Version", options=[], tooltip="Version of the prompt")
        self.refresh_button = W.Button(description="Reload", tooltip="Read prompts and labels from the store again",
                                       layout=W.Layout(width="auto"))
        self.show_internal = W.Checkbox(value=self.internal, description="judge prompts", indent=False,
                                        tooltip="Also list the prompts LLM judges register (judge:...)",
                                        layout=W.Layout(width="auto"))
        self.info_html = _Out()

        self.diff_a = W.Dropdown(description="From", options=[], layout=W.Layout(width="220px"))
        self.diff_b = W.Dropdown(description="To", options=[], layout=W.Layout(width="220px"))
        self.diff_button = W.Button(description="Diff", tooltip="Show what changed between the two versions",
                                    layout=W.Layout(width="auto"))
        self.diff_html = _Out()

        self.editor = W.Textarea(description="Template", rows=8, continuous_update=False,
                                 layout=W.Layout(width="100%"),
                                 placeholder="Use {name} for a variable and {{ }} for literal braces")
        self.model = W.Text(description="Model", continuous_update=False)
        self.params = W.Textarea(description="Params", rows=2, continuous_update=False, layout=W.Layout(width="100%"),
                                 placeholder='JSON object, e.g. {"temperature": 0.2, "max_tokens": 300}')
        self.register_button = W.Button(description="Register new version", button_style="primary",
                                        tooltip="Save the editor's template, model and params as the next version",
                                        layout=W.Layout(width="auto"))
        self.confirm_button = W.Button(description="Register anyway", button_style="warning",
                                       tooltip="Register although the preview misses a variable",
                                       layout=W.Layout(width="auto", display="none"))
        self.message = _Out()

        items = [] if self.dataset is None else [i.item_id for i in self.dataset.items]
        self.preview_item = W.Dropdown(description="Item", options=items, value=items[0] if items else None,
                                       disabled=not items, tooltip="Dataset item whose inputs fill the template")
        self.preview_button = W.Button(description="Preview", tooltip="Render the editor's template with the item's inputs",
                                       layout=W.Layout(width="auto"))
        self.preview_html = _Out()
        self.try_button = W.Button(description=f"Try on {self.try_items} items", disabled=self.dataset is None,
                                   tooltip=f"Call the model with the selected version on the first {self.try_items} items (traced)",
                                   layout=W.Layout(width="auto"))
        self.try_html = _Out()

        self.name.observe(self._on_name, names="value")
        self.version.observe(self._on_version, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.diff_button.on_click(lambda _: self.show_diff())
        self.register_button.on_click(lambda _: self.register())
        self.confirm_button.on_click(lambda _: self.register(confirm=True))
        self.show_internal.observe(self._on_internal, names="value")
        self.preview_button.on_click(lambda _: self.preview())
        self.preview_item.observe(lambda _: self.preview(), names="value")
        for box in (self.editor, self.model, self.params):
            box.observe(lambda _: self.preview(), names="value")
        self.try_button.on_click(lambda _: self.try_on_items())

    def _layout(self) -> list[W.Widget]:
        browse = W.VBox([self.info_html])
        diff = W.VBox([W.HBox([self.diff_a, self.diff_b, self.diff_button]), self.diff_html])
        edit = W.VBox([
            self.editor, self.model, self.params,
            W.HBox([self.register_button, self.confirm_button], layout=W.Layout(flex_flow="row wrap")),
            _Out("<b>Preview</b> <small>(the editor's text, rendered with a dataset item)</small>"),
            W.HBox([self.preview_item, self.preview_button]), self.preview_html,
            _Out("<b>Try</b> <small>(the selected, registered version)</small>"),
            self.try_button, self.try_html,
        ])
        tabs = W.Tab(children=[browse, diff, edit], titles=["Version", "Diff", "Edit, preview, try"])
        top = W.HBox([self.name, self.version, self.refresh_button, self.show_internal],
                     layout=W.Layout(flex_flow="row wrap", align_items="center"))
        return [top, self.message, tabs]

    # -- selection ---------------------------------------------------------------------------

    @property
    def selected(self) -> PromptVersion | None:
        """The version picked in the dropdowns."""
        if not self.name.value or self.version.value is None:
            return None
        return self.bench.prompts.get(self.name.value, self.version.value)

    @guarded
    def refresh(self) -> None:
        """Read prompt names, versions and labels from the store again, keeping the selection."""
        names = [n for n in self.bench.prompts.names() if self.internal or not n.startswith(INTERNAL_PREFIXES)]
        keep = self.name.value if self.name.value in names else (names[0] if names else None)
        self._syncing = True
        try:
            self.name.options = names
            self.name.value = keep
        finally:
            self._syncing = False
        if keep is None:
            self.message.value = info_html("No prompts yet: register one with bench.prompts.register(name, template, model).")
            self._set_versions([], None)
            self._show_version()
            return
        self._load_name(keep, keep_version=self.version.value)

    @guarded
    def _on_internal(self, change: dict[str, Any]) -> None:
        self.internal = bool(change["new"])
        self.refresh()

    @guarded
    def _on_name(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"]:
            self.message.value = ""
            self._load_name(change["new"])

    @guarded
    def _on_version(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self._show_version()

    def _load_name(self, name: str, keep_version: int | None = None, select: int | None = None) -> None:
        history = self.bench.prompts.history(name)
        numbers = [v.version for v in history]
        if select is None:
            select = keep_version if keep_version in numbers else numbers[-1]
        self._set_versions(history, select)
        self._show_version()

    def _set_versions(self, history: list[PromptVersion], select: int | None) -> None:
        labels: dict[int, list[str]] = {}
        if history:
            for label, v in self.bench.prompts.labels(history[0].name).get(history[0].name, {}).items():
                if v is not None:
                    labels.setdefault(v, []).append(label)
        options = [
            (f"v{v.version}" + (f" [{', '.join(sorted(labels[v.version]))}]" if v.version in labels else ""), v.version)
            for v in reversed(history)
        ]
        numbers = [v.version for v in history]
        self._syncing = True
        try:
            self.version.options = options
            self.version.value = select
            self.diff_a.options = options
            self.diff_b.options = options
            self.diff_b.value = numbers[-1] if numbers else None
            self.diff_a.value = numbers[-2] if len(numbers) > 1 else (numbers[-1] if numbers else None)
        finally:
            self._syncing = False

    def _show_version(self) -> None:
        pv = self.selected
        self._syncing = True
        try:
            self.editor.value = pv.template if pv else ""
            self.model.value = pv.model if pv else ""
            self.params.value = json.dumps(dict(pv.params), sort_keys=True) if pv else "{}"
        finally:
            self._syncing = False
        self.info_html.value = "" if pv is None else self._info(pv)
        self.preview()

    def _info(self, pv: PromptVersion) -> str:
        prompts = self.bench.prompts
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(pv.params.items())) or "none"
        labels = prompts.labels(pv.name).get(pv.name, {})
        label_text = ", ".join(f"{k} → v{v}" for k, v in sorted(labels.items())) or "none"
        moves = prompts.label_history(pv.name)[:HISTORY_ROWS]
        move_rows = [
            (m["set_at"][:19], m["label"], "" if m["previous_version"] is None else f"v{m['previous_version']}",
             "" if m["version"] is None else f"v{m['version']}", m["action"])
            for m in moves
        ]
        by_version: dict[int, list[str]] = {}
        for k, v in labels.items():
            if v is not None:
                by_version.setdefault(v, []).append(k)
        metrics = {r["version"]: r for r in prompt_metrics(self.bench, pv.name).iter_rows(named=True)}
        quality_cols = sorted({k for r in metrics.values() for k in r if k.startswith("quality_")})
        versions = []
        for v in reversed(prompts.history(pv.name)):
            m = metrics.get(v.version, {})
            versions.append((
                f"v{v.version}", v.created_at[:19].replace("T", " "), v.model, ", ".join(sorted(by_version.get(v.version, []))),
                _format.count(m.get("calls") or 0), _format.count(m.get("errors") or 0),
                _format.ms(m.get("latency_mean_ms")), _format.money(m.get("cost_mean_usd")),
                *(_format.num(m.get(c), 3) for c in quality_cols),
            ))
        headers = ["version", "created (UTC)", "model", "labels", "calls", "errors", "avg latency", "avg cost per call",
                   *(f"avg {c.removeprefix('quality_')}" for c in quality_cols)]
        history = _html.table(["set at (UTC)", "label", "from", "to", "action"], move_rows) if move_rows else "<i>no label moves</i>"
        return (
            f"<div><b>{esc(pv.ref)}</b> · model <code>{esc(pv.model)}</code> · params {esc(params)} · "
            f"variables {esc(', '.join(pv.variables) or 'none')}<br>"
            f"<small>{esc(pv.content_hash)} · created {esc(pv.created_at)}</small></div>"
            f"{scroll_box(esc(pv.template), '240px')}"
            f"<div><b>Labels</b>: {esc(label_text)}</div>"
            f"<div><b>Label moves</b> (newest first){history}</div>"
            f"<div><b>Versions</b> <small>(latency and cost: this version's successful calls; quality: its scores "
            f"in experiments; n/a: none yet)</small>{_html.table(headers, versions, cls='wb-table wb-metrics')}</div>"
        )

    # -- diff --------------------------------------------------------------------------------

    @guarded
    def show_diff(self) -> None:
        """Show the diff between the versions picked in ``diff_a`` and ``diff_b``."""
        if not self.name.value or self.diff_a.value is None or self.diff_b.value is None:
            self.diff_html.value = "<i>pick two versions</i>"
            return
        d = self.bench.prompts.diff(self.diff_a.value, self.diff_b.value, name=self.name.value)
        self.diff_html.value = d._repr_html_()

    # -- editing -----------------------------------------------------------------------------

    def _edited_params(self) -> dict[str, Any]:
        text = self.params.value.strip()
        if not text:
            return {}
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"params must be a JSON object: {exc.msg} at column {exc.colno}") from None
        if not isinstance(params, dict):
            raise ConfigError(f"params must be a JSON object such as {{\"temperature\": 0.2}}, got {type(params).__name__}")
        return params

    def missing_variables(self) -> list[str]:
        """Variables of the editor's template that the preview item does not have (none without a dataset)."""
        if self.dataset is None or self.preview_item.value is None:
            return []
        from ..prompts import parse_template

        try:
            _, variables = parse_template(self.editor.value)
        except PromptError:
            return []  # a malformed template: register() refuses it with the reason
        inputs = self.dataset[self.preview_item.value].inputs
        return [v for v in variables if v not in inputs]

    @guarded
    def register(self, confirm: bool = False) -> PromptVersion | None:
        """Register the editor's template, model and params as the next version of the selected prompt.

        When the preview item lacks one of the template's variables the version
        is not registered: the message says which, and "Register anyway"
        (``confirm=True``) registers it all the same.
        """
        name = self.name.value
        if not name:
            raise ConfigError("pick a prompt first; a new prompt is registered with bench.prompts.register(...)")
        missing = self.missing_variables()
        if missing and not confirm:
            item = self.dataset[self.preview_item.value]  # type: ignore[index]
            self.confirm_button.layout.display = None
            self.message.value = error_html(
                f"Not registered: the preview misses {', '.join(repr(v) for v in missing)} "
                f"(item {item.item_id} has {', '.join(item.inputs) or 'no inputs'}). Fix the template, "
                "or press “Register anyway” if callers pass it."
            )
            return None
        self.confirm_button.layout.display = "none"
        base = self.version.value
        before = {v.version for v in self.bench.prompts.history(name)}
        try:
            pv = self.bench.prompts.register(name, self.editor.value, self.model.value, **self._edited_params())
        except (PromptError, ConfigError) as exc:
            self.message.value = error_html(f"Not registered: {exc}")
            return None
        if pv.version in before:
            note = f"Nothing new: the editor matches {pv.ref} exactly."
        else:
            note = f"Registered {pv.ref}."
        self._load_name(name, select=pv.version)
        if pv.version not in before and base is not None:
            self._syncing = True
            try:
                self.diff_a.value, self.diff_b.value = base, pv.version
            finally:
                self._syncing = False
            self.show_diff()
        self.message.value = info_html(note)
        return pv

    # -- preview and try ---------------------------------------------------------------------

    def _draft(self) -> tuple[PromptVersion, bool]:
        """The version the editor describes, and whether it is the selected one unchanged."""
        pv = self.selected
        if pv is None:
            raise ConfigError("no prompt selected")
        params = self._edited_params()
        if self.editor.value == pv.template and self.model.value == pv.model and params == dict(pv.params):
            return pv, True
        # Numbered as the version it would become, so error messages name it sensibly.
        latest = self.bench.prompts.history(pv.name)[-1].version
        return PromptVersion(pv.name, latest + 1, self.editor.value, self.model.value, params), False

    @guarded
    def preview(self) -> None:
        """Render the editor's template with the inputs of the item picked in ``preview_item``."""
        if self._syncing:
            return
        if self.dataset is None:
            self.preview_html.value = "<i>Pass dataset=... to preview the template with dataset items.</i>"
            return
        if self.preview_item.value is None or self.selected is None:
            self.preview_html.value = ""
            return
        item = self.dataset[self.preview_item.value]
        try:
            draft, unchanged = self._draft()
            heading = f"Preview of {draft.ref}" if unchanged else f"Preview of the editor's text (unsaved; would be {draft.ref})"
            text = draft.render(item.inputs, allow_extra=True)
        except (PromptError, ConfigError) as exc:
            self.preview_html.value = error_html(exc)
            return
        system = draft.params.get("system")
        system_html = f"<div><small>system</small>{scroll_box(esc(system), '100px')}</div>" if system else ""
        self.preview_html.value = (
            f"<div><small>{esc(heading)} · item {esc(item.item_id)} · model {esc(draft.model)}</small></div>"
            f"{system_html}{scroll_box(esc(text))}"
        )

    @guarded
    def try_on_items(self) -> None:
        """Call the model with the selected version on the first ``try_items`` dataset items (traced)."""
        if self.dataset is None:
            self.try_html.value = "<i>Pass dataset=... to try the prompt on dataset items.</i>"
            return
        pv = self.selected
        if pv is None:
            raise ConfigError("no prompt selected")
        blocks = []
        _, unchanged = self._safe_draft()
        if not unchanged:
            blocks.append(info_html(f"The editor has unsaved changes; trying the registered {pv.ref}. Register to try the edits."))
        if getattr(self.bench.provider, "simulated", False):
            blocks.append('<div style="color:#b45309"><small>Simulated provider: not a real model.</small></div>')
        for item in self.dataset.items[: self.try_items]:
            variables = {k: item.inputs[k] for k in pv.variables if k in item.inputs}
            head = f"<div><b>{esc(item.item_id)}</b>"
            try:
                result = self.bench.complete(
                    pv, raise_on_error=False, tags=["prompts-widget"],
                    metadata={"dataset": self.dataset.ref, "item_id": item.item_id}, variables=variables,
                )
            except WorkbenchError as exc:
                blocks.append(f"{head}</div>{error_html(exc)}")
                continue
            if result.status != "ok":
                blocks.append(f"{head} <small>{esc(result.status)} after {result.attempts} attempts</small></div>{error_html(result.error)}")
                continue
            c = result.completion
            usage = f" · {c.usage.input_tokens} → {c.usage.output_tokens} tokens" if c is not None else ""
            latency = ms(c.latency_ms) if c is not None else "–"
            blocks.append(
                f"{head} <small>cost {esc(money(result.cost_usd))} · latency {esc(latency)}{esc(usage)}</small></div>"
                f"{scroll_box(esc(result.text), '200px')}"
            )
        self.try_html.value = "".join(blocks)

    def _safe_draft(self) -> tuple[PromptVersion | None, bool]:
        try:
            return self._draft()
        except (PromptError, ConfigError):
            return None, False

    def show_message(self, html: str) -> None:
        self.message.value = html

    def metrics(self, name: str | None = None) -> pl.DataFrame:
        """`prompt_metrics` of ``name`` (default: the selected prompt)."""
        name = name or self.name.value
        if not name:
            raise ConfigError("no prompt selected; pass a prompt name")
        return prompt_metrics(self.bench, name)

    def __repr__(self) -> str:
        return f"<PromptsWidget {self.name.value or 'no prompt'} v{self.version.value}>"

