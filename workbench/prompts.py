"""The prompt registry: immutable, content-hashed versions with labels.

Only this module writes the ``prompts``, ``prompt_labels``,
``prompt_label_history`` and ``exposures`` tables.

A label can split traffic between versions. Each unit (a user or session id)
hashes to a point in ``[0, SPACE)``, and the label's *layout* cuts that space
between its versions, so a unit keeps its version while the split stays. The
layout is kept with the label: when the weights change, each version keeps as
much of its old space as its new weight allows and only the freed space changes
hands (`relayout`), so the share of units that move is exactly the total
variation between the old and new weights, for any number of versions. (No
stateless hash can do that for three versions or more: the layout is state.)
"""

from __future__ import annotations

import bisect
import difflib
import functools
import hashlib
import random
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import _html
from ._canonical import canonical_json, content_hash, dumps, loads
from ._ids import new_id, utc_now
from .errors import ConfigError, LabelMoved, PromptNotFound, RenderError, TemplateError
from .traces import iso_utc

if TYPE_CHECKING:
    from .providers.base import Request
    from .store import Store

REQUEST_PARAMS = ("system", "max_tokens", "temperature", "stop", "cache_system")
"""Params that shape the request; any other param is kept as metadata."""

SPACE = 1 << 32
"""Units hash to a point in ``[0, SPACE)``; a label's layout cuts this space between versions."""
SEEN_MAX = 1_000_000
"""Exposures a registry remembers having written; past it, it forgets and lets the primary key dedupe."""
EXPOSURE_SQL = (
    "INSERT INTO exposures (name, label, move_id, unit, version, first_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
"""One exposure; a unit served again under the same move and version adds nothing."""

Layout = tuple[tuple[int, int], ...]
"""``((start, version), ...)``: starts ascending from 0, each segment running to the next start (or SPACE)."""


def parse_template(template: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Split a template into (literal, field) parts and its variables.

    Raises:
        TemplateError: unbalanced braces, positional ``{}``, attribute or index
            access, or conversions and format specs (templates stay plain).
    """
    if not isinstance(template, str):
        raise TemplateError(f"template must be a string, got {type(template).__name__}")
    parts, variables = _parsed(template)
    return list(parts), list(variables)


@functools.lru_cache(maxsize=1024)
def _parsed(template: str) -> tuple[tuple[tuple[str, str | None], ...], tuple[str, ...]]:
    # Parsed once per template, not once per rendered item: an experiment renders
    # each version thousands of times (and checks every item's variables).
    parts: list[tuple[str, str | None]] = []
    variables: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"malformed template: {exc}. Use {{name}} for a variable and {{{{ or }}}} for a literal brace"
        ) from None
    for literal, name, spec, conversion in parsed:
        if name is None:
            parts.append((literal, None))
            continue
        if name == "" or not name.isidentifier():
            raise TemplateError(
                f"malformed template field {{{name}}}: a field must be a plain name like {{question}}; "
                "write {{ and }} for literal braces"
            )
        if spec or conversion:
            raise TemplateError(
                f"template field {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                "uses a conversion or format spec; format the value before rendering"
            )
        parts.append((literal, name))
        if name not in variables:
            variables.append(name)
    return tuple(parts), tuple(variables)


@dataclass(frozen=True)
class PromptVersion:
    """One immutable version of a named prompt."""

    name: str
    """The prompt's name, e.g. ``support``."""
    version: int
    """1, 2, ... in order of registration."""
    template: str
    """Text with ``{variable}`` fields."""
    model: str
    """Model the prompt is meant for."""
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """temperature, max_tokens, system, ... (do not mutate). Left out of the hash, which
    the content hash already covers, so versions can be dict keys and set members."""
    content_hash: str = ""
    """``sha256:`` of the canonical JSON of template, model and params."""
    created_at: str = ""
    """When this version was first registered (UTC)."""
    id: str = ""
    """Row id in the store."""
    served: Served | None = field(default=None, compare=False, repr=False)
    """Set on a version returned by ``pick``: the label, unit and label move it was served under.
    Left out of equality, so a picked version equals the registered one."""

    @property
    def variables(self) -> list[str]:
        """Template variables in first-use order."""
        return list(_parsed(self.template)[1])

    @property
    def ref(self) -> str:
        """``name@vN``."""
        return f"{self.name}@v{self.version}"

    def render(self, variables: Mapping[str, Any] | None = None, /, *, allow_extra: bool = False, **kwargs: Any) -> str:
        """Fill the template; strict about missing and unexpected variables."""
        values = {**(variables or {}), **kwargs} if kwargs else (variables or {})
        parts, expected = _parsed(self.template)
        missing = [v for v in expected if v not in values]
        if missing:
            raise RenderError(
                f"missing variable{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
                f"for prompt {self.name!r} v{self.version} (template uses: {', '.join(expected) or 'nothing'})"
            )
        if not allow_extra:
            extra = sorted(set(values) - set(expected))
            if extra:
                raise RenderError(
                    f"unexpected variable{'s' if len(extra) > 1 else ''} {', '.join(repr(e) for e in extra)} "
                    f"for prompt {self.name!r} v{self.version} (template uses: {', '.join(expected) or 'nothing'}); "
                    "pass allow_extra=True to ignore them"
                )
        return "".join(literal + ("" if name is None else str(values[name])) for literal, name in parts)

    def to_request(self, variables: Mapping[str, Any] | None = None, /, *, allow_extra: bool = False, model: str | None = None, **overrides: Any) -> Request:
        """The provider request for these variables (params can be overridden)."""
        from .providers.base import Message, Request

        params = {**self.params, **overrides}
        kwargs = {k: params[k] for k in REQUEST_PARAMS if k in params and params[k] is not None}
        if "stop" in kwargs:
            kwargs["stop"] = tuple(kwargs["stop"])
        text = self.render(variables, allow_extra=allow_extra)
        metadata: dict[str, Any] = {"prompt_name": self.name, "prompt_version": self.version}
        if self.served is not None:
            # The trace then says which label served it, to whom, under which split (a readout's arms).
            metadata.update(self.served.metadata())
        return Request(
            model=model or self.model,
            messages=(Message("user", text),),
            metadata=metadata,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"<PromptVersion {self.ref} model={self.model} {self.content_hash[:15]}>"

    def _repr_html_(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items())) or "none"
        return _html.root(
            f"<b>{_html.esc(self.ref)}</b> · model <code>{_html.esc(self.model)}</code>"
            f" · params {_html.esc(params)} · variables {_html.esc(', '.join(self.variables) or 'none')}"
            f"<br><small>{_html.esc(self.content_hash)} · {_html.esc(self.created_at)}</small>"
            f"{_html.pre(self.template)}",
            cls="wb-prompt",
        )


@dataclass(frozen=True)
class PromptDiff:
    """What changed between two versions."""

    a: PromptVersion
    b: PromptVersion
    template_diff: str
    """Unified diff of the templates ('' when equal)."""
    changed: dict[str, tuple[Any, Any]]
    """model and params that differ: name -> (a value, b value)."""

    def __str__(self) -> str:
        lines = [f"{self.a.ref} -> {self.b.ref}"]
        for k, (x, y) in self.changed.items():
            lines.append(f"  {k}: {x!r} -> {y!r}")
        if self.template_diff:
            lines.append(self.template_diff.rstrip("\n"))
        else:
            lines.append("  template unchanged")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<PromptDiff {self.a.ref} -> {self.b.ref}: {len(self.changed)} params changed>"

    def _repr_html_(self) -> str:
        rows = []
        for line in self.template_diff.splitlines():
            cls = "add" if line.startswith("+") and not line.startswith("+++") else (
                "del" if line.startswith("-") and not line.startswith("---") else "ctx")
            color = {"add": "#e6ffed", "del": "#ffeef0", "ctx": "transparent"}[cls]
            rows.append(f'<div style="background:{color};white-space:pre-wrap;font-family:monospace">{_html.esc(line)}</div>')
        changed = _html.table(["field", self.a.ref, self.b.ref], [(k, repr(x), repr(y)) for k, (x, y) in self.changed.items()])
        return _html.root(f"<b>{_html.esc(self.a.ref)} → {_html.esc(self.b.ref)}</b>{changed if self.changed else ''}{''.join(rows) or '<i>template unchanged</i>'}")


def diff_versions(a: PromptVersion, b: PromptVersion) -> PromptDiff:
    lines = difflib.unified_diff(
        a.template.splitlines(), b.template.splitlines(), fromfile=a.ref, tofile=b.ref, lineterm=""
    )
    text = "\n".join(lines)
    changed: dict[str, tuple[Any, Any]] = {}
    if a.model != b.model:
        changed["model"] = (a.model, b.model)
    for key in sorted(set(a.params) | set(b.params)):
        if a.params.get(key) != b.params.get(key):
            changed[key] = (a.params.get(key), b.params.get(key))
    return PromptDiff(a, b, text, changed)


def variable_changes(new: list[str], previous: list[str]) -> str:
    """What a new version's variables change against the previous version's, in words.

    A new variable close to one the previous version used reads as a typo:
    ``new variable qustion; did you mean question?``. A variable the previous
    version used and this one drops is named. A new variable unlike any
    previous one is taken as intended (``{context}`` added to a support
    prompt): '' when nothing looks like a mistake.
    """
    parts = []
    typos: dict[str, str] = {}
    for var in new:
        if var in previous:
            continue
        close = difflib.get_close_matches(var, [p for p in previous if p not in new], n=1, cutoff=0.75)
        if close:
            typos[var] = close[0]
            parts.append(f"new variable {var}; did you mean {close[0]}?")
    dropped = [v for v in previous if v not in new and v not in typos.values()]
    if dropped:
        added = [v for v in new if v not in previous and v not in typos]
        parts.append(f"no longer uses {', '.join(dropped)}" + (f"; new: {', '.join(added)}" if added else ""))
    return " ".join(parts)


def _warn_variables(name: str, version: int, variables: list[str], previous: list[str]) -> None:
    change = variable_changes(variables, previous)
    if change:
        import warnings

        used = ", ".join(previous) or "none"
        # stacklevel 3: the line that called register().
        warnings.warn(f"prompt {name!r} v{version}: {change} (v{version - 1} uses: {used})", UserWarning, stacklevel=3)


def _from_row(row: Mapping[str, Any]) -> PromptVersion:
    return PromptVersion(
        name=row["name"],
        version=row["version"],
        template=row["template"],
        model=row["model"],
        params=loads(row["params_json"], {}),
        content_hash=row["content_hash"],
        created_at=row["created_at"],
        id=row["id"],
    )


@dataclass(frozen=True)
class Served:
    """How a picked version was served: under which label, to which unit, in which split period."""

    label: str
    unit: str | None
    """The key given to ``pick`` (None for a random draw)."""
    move_id: str
    """The label move whose split served it: the readout's split period."""

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "label_move": self.move_id}
        if self.unit is not None:
            out["unit"] = self.unit
        return out


@dataclass(frozen=True)
class LabelState:
    """Where a label points now: its split, its layout and the move that set them."""

    name: str
    label: str
    version: int
    """The primary version (the heaviest of a split)."""
    split: dict[int, float]
    """``{version: share}``; a plain label is ``{version: 1.0}``."""
    layout: Layout
    move_id: str
    """The history row of the move that set this state (a split period's id)."""
    updated_at: str

    def version_at(self, point: int) -> int:
        """The version that serves a unit at ``point`` in ``[0, SPACE)``."""
        starts = [s for s, _ in self.layout]
        return self.layout[bisect.bisect_right(starts, point) - 1][1]


@dataclass(frozen=True)
class Exposures:
    """Units served under one label move, per version."""

    move_id: str
    units: dict[int, int]
    """``{version: units}``; a unit served two versions counts under both."""
    mixed: int
    """Units served more than one version in this move: a sticky assignment never does that."""

    @property
    def total(self) -> int:
        return sum(self.units.values())


def point(name: str, label: str, key: str) -> int:
    """A unit's place in ``[0, SPACE)`` for one label: a hash, so it stays while the layout stays."""
    digest = hashlib.sha256(f"{name}\0{label}\0{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def ticks(shares: Mapping[int, float]) -> dict[int, int]:
    """Shares (summing to 1) as whole ticks of SPACE summing to exactly SPACE (largest remainders)."""
    raw = {v: float(s) * SPACE for v, s in shares.items()}
    out = {v: min(SPACE, int(x)) for v, x in raw.items()}
    short = max(0, SPACE - sum(out.values()))
    for v in sorted(raw, key=lambda v: (out[v] - raw[v], v))[:short]:
        out[v] += 1
    return out


def segments(layout: Layout) -> list[tuple[int, int, int]]:
    """``(start, end, version)`` of each segment of a layout."""
    ends = [s for s, _ in layout[1:]] + [SPACE]
    return [(s, e, v) for (s, v), e in zip(layout, ends)]


def relayout(old: Layout | None, shares: Mapping[int, float]) -> Layout:
    """The layout for new ``shares`` that moves as few units as possible from ``old``.

    Each version keeps its old segments, lowest first, up to its new share; the
    rest is freed and handed, in order, to the versions that grow (lowest version
    first). So a unit moves only from a version that shrinks to one that grows,
    and the space that moves is exactly the total variation distance between the
    old and new shares. Without ``old`` the versions are laid out in version
    order, which is what ``pick`` did before layouts were kept.
    """
    budget = ticks(shares)
    pieces: list[tuple[int, int, int]] = []
    free: list[tuple[int, int]] = []
    for start, end, version in segments(old) if old else [(0, SPACE, -1)]:
        take = min(end - start, budget.get(version, 0))
        if take:
            pieces.append((start, start + take, version))
            budget[version] -= take
        if start + take < end:
            free.append((start + take, end))
    free.sort()
    for version in sorted(budget):
        need = budget[version]
        while need > 0:
            start, end = free[0]
            take = min(end - start, need)
            pieces.append((start, start + take, version))
            need -= take
            if start + take == end:
                free.pop(0)
            else:
                free[0] = (start + take, end)
    merged: list[tuple[int, int]] = []
    for start, _, version in sorted(pieces):
        if not merged or merged[-1][1] != version:
            merged.append((start, version))
    return tuple(merged)


def _layout_from_row(version: int | None, split_json: str | None, layout_json: str | None) -> Layout | None:
    """A stored label's layout; labels set before layouts were kept get the one ``pick`` used then."""
    if layout_json is not None:
        return tuple((int(s), int(v)) for s, v in loads(layout_json))
    if split_json is not None:
        return relayout(None, {int(k): float(w) for k, w in loads(split_json).items()})
    if version is not None:
        return ((0, int(version)),)
    return None


def _layout_json(layout: Layout) -> str:
    return dumps([list(seg) for seg in layout])


class PromptRegistry:
    """``bench.prompts``: register, fetch, label and diff prompt versions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._versions: dict[tuple[str, int], PromptVersion] = {}
        """Versions ``pick`` served (immutable, so never stale)."""
        self._layouts: dict[str, Layout] = {}
        """Parsed layouts by move id (a move's layout never changes)."""
        self._seen: set[tuple[str, str, str, str, int]] = set()
        """Exposures this registry already queued."""

    def register(self, name: str, template: str, model: str, **params: Any) -> PromptVersion:
        """Register a version; identical content returns the existing version."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("prompt name must be a non-empty string")
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"prompt {name!r}: model must be a non-empty string such as 'claude-haiku-4-5'")
        parts, variables = parse_template(template)
        if "stop" in params and params["stop"] is not None:
            params["stop"] = list(params["stop"])
        try:
            canonical_json(params)
        except TypeError as exc:
            raise ConfigError(f"prompt {name!r}: params must be JSON values: {exc}") from None
        digest = content_hash({"template": template, "model": model, "params": params})
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM prompts WHERE name = ? AND content_hash = ?", (name, digest)
            ).fetchone()
            if row is None:
                (last,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM prompts WHERE name = ?", (name,)).fetchone()
                if last:
                    (previous,) = conn.execute(
                        "SELECT variables_json FROM prompts WHERE name = ? AND version = ?", (name, last)).fetchone()
                    _warn_variables(name, last + 1, variables, loads(previous, []))
                conn.execute(
                    "INSERT INTO prompts (id, name, version, template, model, params_json, variables_json, "
                    "content_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (new_id(), name, last + 1, template, model, canonical_json(params), dumps(variables), digest, utc_now()),
                )
        return self._one("name = ? AND content_hash = ?", (name, digest), f"prompt {name!r}")

    def _one(self, where: str, params: tuple[Any, ...], what: str) -> PromptVersion:
        rows = self.store.query(f"SELECT * FROM prompts WHERE {where} ORDER BY version DESC LIMIT 1", params)
        if not rows:
            raise PromptNotFound(f"{what} not found; registered prompts: {', '.join(self.names()) or 'none'}")
        return _from_row(rows[0])

    def names(self) -> list[str]:
        return [r["name"] for r in self.store.query("SELECT DISTINCT name FROM prompts ORDER BY name")]

    def get(self, name: str, version: int | None = None, *, label: str | None = None) -> PromptVersion:
        """The latest version, a given version, or the one a label points at."""
        if version is not None and label is not None:
            raise ConfigError("pass version or label, not both")
        if label is not None:
            rows = self.store.query("SELECT version FROM prompt_labels WHERE name = ? AND label = ?", (name, label))
            if not rows or rows[0]["version"] is None:
                labels = [r["label"] for r in self.store.query("SELECT label FROM prompt_labels WHERE name = ?", (name,))]
                raise PromptNotFound(f"prompt {name!r} has no label {label!r} (labels: {', '.join(labels) or 'none'})")
            version = rows[0]["version"]
        if version is not None:
            rows = self.store.query("SELECT * FROM prompts WHERE name = ? AND version = ?", (name, version))
            if not rows:
                versions = [str(r["version"]) for r in self.store.query("SELECT version FROM prompts WHERE name = ? ORDER BY version", (name,))]
                if not versions:
                    raise PromptNotFound(f"prompt {name!r} not found; registered prompts: {', '.join(self.names()) or 'none'}")
                raise PromptNotFound(f"prompt {name!r} has no version {version} (versions: {', '.join(versions)})")
            return _from_row(rows[0])
        return self._one("name = ?", (name,), f"prompt {name!r}")

    def by_hash(self, name: str, digest: str) -> PromptVersion:
        return self._one("name = ? AND content_hash = ?", (name, digest), f"prompt {name!r} with hash {digest}")

    def history(self, name: str) -> list[PromptVersion]:
        """Every version of ``name``, oldest first."""
        rows = self.store.query("SELECT * FROM prompts WHERE name = ? ORDER BY version", (name,))
        if not rows:
            raise PromptNotFound(f"prompt {name!r} not found; registered prompts: {', '.join(self.names()) or 'none'}")
        return [_from_row(r) for r in rows]

    def list(self) -> list[PromptVersion]:
        """The latest version of every prompt."""
        rows = self.store.query(
            "SELECT p.* FROM prompts p JOIN (SELECT name, MAX(version) AS v FROM prompts GROUP BY name) m "
            "ON p.name = m.name AND p.version = m.v ORDER BY p.name"
        )
        return [_from_row(r) for r in rows]

    def labels(self, name: str | None = None) -> dict[str, dict[str, int | None]]:
        """``{name: {label: version}}``."""
        sql = "SELECT name, label, version FROM prompt_labels"
        rows = self.store.query(sql + (" WHERE name = ?" if name else "") + " ORDER BY name, label", (name,) if name else ())
        out: dict[str, dict[str, int | None]] = {}
        for r in rows:
            out.setdefault(r["name"], {})[r["label"]] = r["version"]
        return out

    def set_label(
        self, name: str, label: str, version: int | PromptVersion, *, reason: str | None = None, expect_move: str | None = None
    ) -> PromptVersion:
        """Point ``label`` at a version; the move (and ``reason``, if given) is kept in the label history.

        ``expect_move``: move only if the label's last move is still this one
        (else `LabelMoved`), so two processes deciding on the same reading cannot both move it.
        """
        version = self._version_number(name, version)
        target = self.get(name, version)
        self._move(name, label, target.version, "set", reason=reason, expect_move=expect_move)
        return target

    def _version_number(self, name: str, version: int | PromptVersion) -> int:
        if isinstance(version, PromptVersion):
            if version.name != name:
                raise ConfigError(f"version {version.ref} belongs to prompt {version.name!r}, not {name!r}")
            return version.version
        return version

    def _move(
        self,
        name: str,
        label: str,
        version: int | None,
        action: str,
        split: dict[int, float] | None = None,
        *,
        reason: str | None = None,
        layout: Layout | None = None,
        expect_move: str | None = None,
    ) -> str:
        """Move a label, recording the move; returns the move's id (the new split period).

        The new layout is computed from the stored one inside the transaction, so
        two processes moving the same label cannot both start from a stale layout.
        """
        now = utc_now()
        move_id = new_id()
        split_json = None if split is None else dumps({str(k): v for k, v in sorted(split.items())})
        with self.store.transaction() as conn:
            prev = conn.execute(
                "SELECT version, split_json, layout_json, COALESCE(move_id, updated_at) FROM prompt_labels "
                "WHERE name = ? AND label = ?", (name, label)
            ).fetchone()
            if expect_move is not None and (prev is None or prev[3] != expect_move):
                raise LabelMoved(
                    f"label {label!r} of prompt {name!r} moved since it was read (now move {prev[3] if prev else 'none'}, "
                    f"expected {expect_move}); read it again before deciding"
                )
            old = None if prev is None else _layout_from_row(*prev[:3])
            if layout is None and version is not None:
                layout = relayout(old, split if split is not None else {version: 1.0})
            new_json = None if layout is None else _layout_json(layout)
            conn.execute(
                "INSERT INTO prompt_labels (name, label, version, split_json, layout_json, move_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name, label) DO UPDATE SET version = excluded.version, split_json = excluded.split_json, "
                "layout_json = excluded.layout_json, move_id = excluded.move_id, updated_at = excluded.updated_at",
                (name, label, version, split_json, new_json, move_id, now),
            )
            conn.execute(
                "INSERT INTO prompt_label_history (id, name, label, version, split_json, previous_version, "
                "previous_split_json, action, set_at, layout_json, previous_layout_json, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (move_id, name, label, version, split_json, prev[0] if prev else None, prev[1] if prev else None,
                 action, now, new_json, None if old is None else _layout_json(old), reason),
            )
        return move_id

    def set_split(
        self,
        name: str,
        label: str,
        weights: Mapping[int | PromptVersion, float],
        *,
        reason: str | None = None,
        expect_move: str | None = None,
    ) -> dict[int, float]:
        """Split a label's traffic between versions, e.g. ``{1: 0.9, 2: 0.1}`` (weights are normalised).

        ``get(name, label=...)`` then returns the heaviest version and ``pick``
        serves one by weight; ``set_label`` ends the split; ``rollback`` undoes it.
        Changing the weights moves only the units it must: from the versions that
        shrink to the versions that grow (see `relayout`).
        """
        split: dict[int, float] = {}
        for key, weight in weights.items():
            version = self._version_number(name, key)
            if not isinstance(weight, (int, float)) or weight < 0 or weight != weight:
                raise ConfigError(f"split weight for {name!r} v{version} must be a number >= 0, got {weight!r}")
            self.get(name, version)  # must exist
            split[int(version)] = split.get(int(version), 0.0) + float(weight)
        total = sum(split.values())
        if not split or total <= 0:
            raise ConfigError(f"a split of {name!r} label {label!r} needs at least one positive weight, got {dict(weights)!r}")
        split = {v: w / total for v, w in split.items() if w > 0}
        primary = max(split, key=lambda v: (split[v], v))
        self._move(name, label, primary, "split", split, reason=reason, expect_move=expect_move)
        return split

    def split(self, name: str, label: str) -> dict[int, float]:
        """The label's traffic split ``{version: share}``; a plain label is ``{version: 1.0}``."""
        rows = self.store.query("SELECT version, split_json FROM prompt_labels WHERE name = ? AND label = ?", (name, label))
        if not rows or rows[0]["version"] is None:
            raise PromptNotFound(f"prompt {name!r} has no label {label!r}")
        if rows[0]["split_json"] is None:
            return {rows[0]["version"]: 1.0}
        return {int(k): float(v) for k, v in loads(rows[0]["split_json"]).items()}

    def label_state(self, name: str, label: str) -> LabelState:
        """Where ``label`` points now, with its layout and the id of the move that set it."""
        row = self.store.execute(
            "SELECT version, split_json, layout_json, move_id, updated_at FROM prompt_labels WHERE name = ? AND label = ?",
            (name, label),
        ).fetchone()
        if row is None or row[0] is None:
            labels = [r["label"] for r in self.store.query("SELECT label FROM prompt_labels WHERE name = ?", (name,))]
            raise PromptNotFound(f"prompt {name!r} has no label {label!r} (labels: {', '.join(labels) or 'none'})")
        version, split_json, layout_json, move_id, updated_at = row
        # A label moved before layouts were kept has no move id: its last update stands for one.
        move_id = move_id or updated_at
        layout = self._layouts.get(move_id)
        if layout is None:
            layout = _layout_from_row(version, split_json, layout_json)
            self._layouts[move_id] = layout  # type: ignore[assignment]
        split = {version: 1.0} if split_json is None else {int(k): float(v) for k, v in loads(split_json).items()}
        return LabelState(name, label, version, split, layout, move_id, updated_at)  # type: ignore[arg-type]

    def pick(
        self, name: str, label: str = "production", *, key: str | None = None, expose: bool = True
    ) -> PromptVersion:
        """The version to serve for one request under the label's traffic split.

        With ``key`` (a user or session id) the choice is sticky: the same key
        always gets the same version while the split stays, and changing the
        weights moves only the keys it must. Each key's first serving of a version
        under a split is recorded as an exposure (``expose=False`` skips that, for
        a preview): the readout counts them against the weights to catch broken
        assignment. Without ``key``, a random draw and no exposure.

        The version returned carries ``served`` (label, key, split period), so the
        trace of a call made with it says which label served it.
        """
        state = self.label_state(name, label)
        where = random.getrandbits(32) if key is None else point(name, label, str(key))
        chosen = state.version_at(where)
        found = self._versions.get((name, chosen))
        if found is None:
            found = self._versions[(name, chosen)] = self.get(name, chosen)
        if key is not None and expose:
            self._expose(name, label, state.move_id, str(key), chosen)
        return replace(found, served=Served(label, None if key is None else str(key), state.move_id))

    def _expose(self, name: str, label: str, move_id: str, unit: str, version: int) -> None:
        seen = (name, label, move_id, unit, version)
        if seen in self._seen:
            return
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()  # the primary key still dedupes; this only saves queue traffic
        self._seen.add(seen)
        self.store.writer.put(EXPOSURE_SQL, (name, label, move_id, unit, version, iso_utc(time.time())))

    def record_exposure(self, name: str, label: str, unit: str, version: int | PromptVersion, *, move_id: str | None = None) -> None:
        """Record that ``unit`` was served ``version`` under ``label`` (for traffic assigned outside ``pick``).

        ``move_id`` defaults to the label's current split period. Written through
        the batched writer; a repeat adds nothing.
        """
        number = self._version_number(name, version)
        self._expose(name, label, move_id or self.label_state(name, label).move_id, str(unit), number)

    def exposures(self, name: str, label: str, move_id: str | None = None) -> Exposures:
        """Units served under one split period of ``label`` (default: the current one), per version."""
        move_id = move_id or self.label_state(name, label).move_id
        self.store.flush()
        rows = self.store.execute(
            "SELECT version, COUNT(*) FROM exposures WHERE name = ? AND label = ? AND move_id = ? GROUP BY version",
            (name, label, move_id),
        ).fetchall()
        (mixed,) = self.store.execute(
            "SELECT COUNT(*) FROM (SELECT unit FROM exposures WHERE name = ? AND label = ? AND move_id = ? "
            "GROUP BY unit HAVING COUNT(*) > 1)",
            (name, label, move_id),
        ).fetchone()
        return Exposures(move_id, {int(v): int(n) for v, n in rows}, int(mixed))

    def label_history(self, name: str, label: str | None = None) -> list[dict[str, Any]]:
        """Moves of labels, newest first (with each move's ``id``, ``reason`` and layouts)."""
        sql = (
            "SELECT id, name, label, version, split_json, previous_version, previous_split_json, action, set_at, "
            "reason, layout_json, previous_layout_json FROM prompt_label_history WHERE name = ?"
        )
        params: tuple[Any, ...] = (name,)
        if label is not None:
            sql += " AND label = ?"
            params += (label,)
        return self.store.query(sql + " ORDER BY id DESC", params)

    def rollback(
        self,
        name: str,
        label: str,
        *,
        to: int | PromptVersion | None = None,
        reason: str | None = None,
        expect_move: str | None = None,
    ) -> PromptVersion:
        """Move ``label`` back: to the version (and split) it had before its last move, or straight ``to`` a version.

        Undoing a move restores its split's layout too, so every unit gets back
        exactly the version it had. ``reason`` is kept in the label history.
        """
        hist = self.label_history(name, label)
        if not hist:
            raise PromptNotFound(f"prompt {name!r} has no label {label!r} to roll back")
        if to is not None:
            target = self.get(name, self._version_number(name, to))
            self._move(name, label, target.version, "rollback", reason=reason, expect_move=expect_move)
            return target
        previous = hist[0]["previous_version"]
        if previous is None:
            raise ConfigError(f"label {label!r} of prompt {name!r} has no earlier version to roll back to")
        previous_split = hist[0]["previous_split_json"]
        split = None if previous_split is None else {int(k): float(v) for k, v in loads(previous_split).items()}
        layout = _layout_from_row(previous, previous_split, hist[0]["previous_layout_json"])
        self._move(name, label, previous, "rollback", split, reason=reason, layout=layout, expect_move=expect_move)
        return self.get(name, previous)

    def diff(self, a: PromptVersion | int, b: PromptVersion | int, name: str | None = None) -> PromptDiff:
        """Compare two versions: ``diff(v1, v2)`` or ``diff(1, 2, name="support")``."""
        if not isinstance(a, PromptVersion) or not isinstance(b, PromptVersion):
            if name is None:
                raise ConfigError("diff by version numbers needs name=...")
            a = a if isinstance(a, PromptVersion) else self.get(name, a)
            b = b if isinstance(b, PromptVersion) else self.get(name, b)
        return diff_versions(a, b)

    def count(self) -> int:
        """Prompt versions stored, all names."""
        (n,) = self.store.execute("SELECT COUNT(*) FROM prompts").fetchone()
        return int(n)

    def __repr__(self) -> str:
        return f"<PromptRegistry {self.count()} versions>"

    def _repr_html_(self) -> str:
        labels = self.labels()
        rows = []
        for p in self.list():
            lab = ", ".join(f"{k}→v{v}" for k, v in labels.get(p.name, {}).items())
            rows.append((p.name, p.version, p.model, ", ".join(p.variables), lab, p.created_at[:19]))
        return _html.root(_html.table(["prompt", "latest", "model", "variables", "labels", "created"], rows))
