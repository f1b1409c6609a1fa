"""Numbered schema migrations of the workbench file.

Each migration runs in a transaction. A migration that has shipped is never
edited: change the schema with a new, higher-numbered one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

MIGRATION_SET = "workbench"
_STEPS: list[Callable[[Database], None]] = []


def _step(fn: Callable[[Database], None]) -> Callable[[Database], None]:
    _STEPS.append(fn)
    return fn


@_step
def m001_prompts(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE prompts (
            id TEXT PRIMARY KEY,            -- time-sortable UUIDv7
            name TEXT NOT NULL,
            version INTEGER NOT NULL,       -- 1, 2, ... per name
            template TEXT NOT NULL,
            model TEXT NOT NULL,
            params_json TEXT NOT NULL,      -- temperature, max_tokens, system, ...
            variables_json TEXT NOT NULL,   -- template fields in first-use order
            content_hash TEXT NOT NULL,     -- 'sha256:' of canonical JSON of template, model, params
            created_at TEXT NOT NULL,       -- UTC ISO 8601
            UNIQUE (name, version),
            UNIQUE (name, content_hash)
        );
        CREATE TABLE prompt_labels (
            name TEXT NOT NULL,
            label TEXT NOT NULL,            -- production, staging, ...
            version INTEGER,                -- the version the label points at
            split_json TEXT,                -- traffic split {version: weight}, when split
            updated_at TEXT NOT NULL,
            PRIMARY KEY (name, label)
        );
        CREATE TABLE prompt_label_history (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            version INTEGER,
            split_json TEXT,
            previous_version INTEGER,
            previous_split_json TEXT,
            action TEXT NOT NULL,           -- set, rollback, delete
            set_at TEXT NOT NULL
        );
        CREATE INDEX idx_prompt_label_history ON prompt_label_history (name, label, set_at);
        """
    )


@_step
def m002_traces(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE traces (
            id TEXT PRIMARY KEY,            -- span id, UUIDv7
            trace_id TEXT NOT NULL,         -- root span id of the tree
            parent_id TEXT,
            kind TEXT NOT NULL,             -- llm, span
            name TEXT NOT NULL,
            started_at TEXT NOT NULL,       -- UTC ISO 8601
            provider TEXT,                  -- anthropic, simulated, ...
            simulated INTEGER NOT NULL DEFAULT 0,
            model TEXT,                     -- as requested
            resolved_model TEXT,            -- as the provider answered
            prompt_name TEXT,
            prompt_version INTEGER,
            experiment_id TEXT,
            variant TEXT,
            item_id TEXT,
            repeat INTEGER,
            user_id TEXT,
            input TEXT,
            output TEXT,
            input_tokens INTEGER,           -- Anthropic semantics: excludes cache reads and writes
            output_tokens INTEGER,
            cache_read_tokens INTEGER,
            cache_write_tokens INTEGER,
            latency_ms REAL,
            ttft_ms REAL,
            cost_usd REAL,                  -- NULL when the price is unknown, never a guess
            price_source TEXT,              -- which price data priced it
            status TEXT NOT NULL,           -- ok, error, cached, guardrail
            error_type TEXT,
            error TEXT,
            attempts INTEGER,
            stop_reason TEXT,
            request_id TEXT,
            tags_json TEXT,
            metadata_json TEXT
        );
        CREATE INDEX idx_traces_started_at ON traces (started_at);
        CREATE INDEX idx_traces_trace_id ON traces (trace_id);
        CREATE INDEX idx_traces_experiment ON traces (experiment_id, variant)
            WHERE experiment_id IS NOT NULL;
        CREATE VIEW llm_calls AS
            SELECT id, started_at, provider, simulated, model, prompt_name, prompt_version,
                   status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                   latency_ms, ttft_ms, cost_usd, attempts, error_type, user_id
            FROM traces WHERE kind = 'llm';
        """
    )


@_step
def m003_price_overrides(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE price_overrides (
            model TEXT PRIMARY KEY,
            input_per_mtok REAL NOT NULL,       -- dollars per million uncached input tokens
            output_per_mtok REAL NOT NULL,
            cache_read_per_mtok REAL,           -- NULL: same as input
            cache_write_per_mtok REAL,
            updated_at TEXT NOT NULL
        );
        """
    )


@_step
def m004_datasets(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE datasets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,       -- a new version when content changes under one name
            content_hash TEXT NOT NULL,     -- 'sha256:' of the canonical JSON of the items
            n_items INTEGER NOT NULL,
            source TEXT,                    -- file path or 'frame' / 'records'
            created_at TEXT NOT NULL,
            UNIQUE (name, version),
            UNIQUE (name, content_hash)
        );
        CREATE TABLE dataset_items (
            dataset_id TEXT NOT NULL REFERENCES datasets (id),
            item_id TEXT NOT NULL,          -- the file's id, or item-0001 ...
            idx INTEGER NOT NULL,           -- position in the file
            inputs_json TEXT NOT NULL,      -- template variables
            expected_json TEXT,             -- reference output (JSON: text or structured)
            metadata_json TEXT,
            cluster TEXT,                   -- items sharing a passage or conversation
            PRIMARY KEY (dataset_id, item_id)
        );
        """
    )


@_step
def m005_experiments(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE experiments (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            dataset_id TEXT REFERENCES datasets (id),
            config_json TEXT NOT NULL,      -- pins prompt hashes, models, params, dataset hash, scorers, repeats, seed
            config_hash TEXT NOT NULL,
            status TEXT NOT NULL,           -- created, running, interrupted, stopped_budget, stopped_errors, completed
            status_message TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE scores (
            id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,         -- the call that was scored
            experiment_id TEXT,
            variant TEXT,
            item_id TEXT,
            repeat INTEGER,
            scorer TEXT NOT NULL,
            value REAL,                     -- NULL when the scorer could not score
            passed INTEGER,                 -- 1/0, NULL where pass/fail does not apply
            rationale TEXT,
            judge_trace_id TEXT,            -- the judge's own call, for LLM-as-judge
            created_at TEXT NOT NULL,
            UNIQUE (trace_id, scorer)
        );
        CREATE INDEX idx_scores_experiment ON scores (experiment_id, variant, scorer);
        """
    )


@_step
def m006_feedback(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE feedback (
            id TEXT PRIMARY KEY,
            experiment_id TEXT,
            item_id TEXT,
            variant_a TEXT,                 -- pairwise preference between two variants ...
            variant_b TEXT,
            choice TEXT,                    -- a, b, tie, both_bad
            trace_id TEXT,                  -- ... or a rating of one trace
            rating REAL,
            comment TEXT,
            rater TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX idx_feedback_pair ON feedback (experiment_id, item_id, variant_a, variant_b, rater)
            WHERE trace_id IS NULL;
        CREATE UNIQUE INDEX idx_feedback_trace ON feedback (trace_id, rater) WHERE trace_id IS NOT NULL;
        """
    )


@_step
def m007_traces_fts(db: Database) -> None:
    # External content: the index keeps only tokens, the text stays in `traces`.
    # No triggers: the trace writer must stay a plain batched INSERT, so
    # `traces.index_fts` catches the index up by rowid before each search
    # (traces are append-only, so "rowid > last indexed" is exactly the new rows).
    db.executescript(
        """
        CREATE VIRTUAL TABLE traces_fts USING fts5(
            input, output, content='traces', content_rowid='rowid'
        );
        CREATE TABLE traces_fts_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_rowid INTEGER NOT NULL     -- highest traces.rowid already in traces_fts
        );
        INSERT INTO traces_fts_state (id, last_rowid) VALUES (1, 0);
        """
    )


@_step
def m008_trace_explorer(db: Database) -> None:
    # The traces explorer counts matches of any filter combination at a million traces. One
    # covering index holds every column it filters on, so a count reads index entries (about
    # a tenth of a row's bytes) instead of rows, never the input and output text. It leads with
    # "is a judge's call", which every default view filters on (judges are hidden by default);
    # no other query says that expression, so their plans are unchanged. The expression must be
    # spelled exactly as `traces.JUDGE_SQL`. started_at comes next because it grows as rows are
    # written: new entries append at the end of the index instead of landing all over it, which
    # keeps batched inserts nearly as fast as without the index (and time ranges searchable).
    db.executescript(
        """
        CREATE INDEX idx_traces_explore ON traces (
            (instr(COALESCE(tags_json, ''), '"judge"') > 0), started_at, kind, status, model,
            prompt_name, prompt_version, experiment_id, variant, item_id, user_id
        );
        """
    )


@_step
def m019_exposures(db: Database) -> None:
    # Who saw which version of a split label, once per unit and label move (a move starts a new
    # split period, so a readout counts the units of one period against that period's weights).
    # Written by `PromptRegistry.pick` through the batched writer, deduplicated by the primary key
    # (INSERT ... ON CONFLICT DO NOTHING): no read on the serving path.
    # A label's layout is how the hash space [0, 2**32) is cut between its versions, kept with the
    # label so that a change of weights moves only the units it must (see `prompts.relayout`).
    db.executescript(
        """
        CREATE TABLE exposures (
            name TEXT NOT NULL,             -- prompt name
            label TEXT NOT NULL,
            move_id TEXT NOT NULL,          -- the label move (prompt_label_history.id) the unit was served under
            unit TEXT NOT NULL,             -- the key given to pick(): a user or session id
            version INTEGER NOT NULL,
            first_at TEXT NOT NULL,         -- UTC, when this process first served it
            PRIMARY KEY (name, label, move_id, unit, version)
        ) WITHOUT ROWID;
        ALTER TABLE prompt_labels ADD COLUMN layout_json TEXT;           -- [[start, version], ...] over [0, 2**32)
        ALTER TABLE prompt_labels ADD COLUMN move_id TEXT;               -- the history row of the last move
        ALTER TABLE prompt_label_history ADD COLUMN layout_json TEXT;
        ALTER TABLE prompt_label_history ADD COLUMN previous_layout_json TEXT;
        ALTER TABLE prompt_label_history ADD COLUMN reason TEXT;         -- why it moved (a rollout's guard figures)
        """
    )


@_step
def m020_rollouts(db: Database) -> None:
    # A gradual rollout of one candidate version under a label, and every decision it took with
    # the figures it took it on. Written only by `workbench.rollout`.
    db.executescript(
        """
        CREATE TABLE rollouts (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,             -- prompt name
            label TEXT NOT NULL,
            baseline INTEGER NOT NULL,      -- the version served before
            candidate INTEGER NOT NULL,
            plan_json TEXT NOT NULL,        -- steps, guards and margins, minimum samples, confidence
            status TEXT NOT NULL,           -- running, completed, rolled_back, stopped
            step INTEGER NOT NULL,          -- index into the plan's steps
            step_move_id TEXT NOT NULL,     -- the label move that started the current step (its split period)
            start_move_id TEXT,             -- the label move before the rollout (the baseline's last period)
            moves_json TEXT NOT NULL,       -- the label move that started each step so far
            step_started_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX idx_rollouts_running ON rollouts (name, label) WHERE status = 'running';
        CREATE TABLE rollout_decisions (
            id TEXT PRIMARY KEY,
            rollout_id TEXT NOT NULL REFERENCES rollouts (id),
            step INTEGER NOT NULL,
            share REAL NOT NULL,            -- the candidate's share during the step decided on
            action TEXT NOT NULL,           -- start, hold, advance, rollback, complete, stop
            reason TEXT NOT NULL,
            figures_json TEXT,              -- per guard: estimate, interval, margin, state; units and calls; SRM
            decided_at TEXT NOT NULL
        );
        CREATE INDEX idx_rollout_decisions ON rollout_decisions (rollout_id, decided_at);
        """
    )


NAMES = tuple(fn.__name__ for fn in _STEPS)
"""Every migration, in order; opening an up-to-date file compares against this alone."""
_set: Migrations | None = None


def migration_set() -> Migrations:
    """The sqlite-utils ``Migrations("workbench")`` of every step (imports sqlite-utils, 0.4 s)."""
    global _set
    if _set is None:
        from sqlite_utils.migrations import Migrations

        _set = Migrations(MIGRATION_SET)
        for fn in _STEPS:
            _set(name=fn.__name__)(fn)
    return _set


def __getattr__(name: str) -> Any:
    if name == "migrations":
        return migration_set()
    raise AttributeError(name)
