"""Numbered schema migrations of the workbench file (and of a PostgreSQL store: ``POSTGRES``).

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
            status TEXT NOT NULL,           -- ok, error, cached, guardrail_triggered
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
def m009_cache_write_1h(db: Database) -> None:
    # Cache writes are priced by lifetime (1-hour writes at 2x the input price, 5-minute
    # at 1.25x). cache_write_tokens stays the total, so readers that predate the split
    # stay right; the new column says how much of it was 1-hour.
    db.executescript(
        """
        ALTER TABLE traces ADD COLUMN cache_write_1h_tokens INTEGER;  -- of cache_write_tokens, 1-hour writes
        ALTER TABLE price_overrides ADD COLUMN cache_write_1h_per_mtok REAL;  -- NULL: the cache_write price
        DROP VIEW llm_calls;
        CREATE VIEW llm_calls AS
            SELECT id, started_at, provider, simulated, model, prompt_name, prompt_version,
                   status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                   cache_write_1h_tokens, latency_ms, ttft_ms, cost_usd, attempts, error_type, user_id
            FROM traces WHERE kind = 'llm';
        """
    )


@_step
def m010_gateway_cache(db: Database) -> None:
    # Only workbench/gateway/cache.py reads and writes this table.
    db.executescript(
        """
        CREATE TABLE gateway_cache (
            id INTEGER PRIMARY KEY,         -- rowid: the semantic index points at it
            kind TEXT NOT NULL,             -- exact, semantic
            namespace TEXT NOT NULL,        -- separates apps, tenants or test runs
            key TEXT NOT NULL,              -- exact: 'sha256:' of the canonical request; semantic: of its guard
            prompt TEXT,                    -- semantic: the question that was embedded
            embedding BLOB,                 -- semantic: normalised float32 vector
            embedder TEXT,                  -- semantic: which embedder made it (vectors of two never mix)
            completion_json TEXT NOT NULL,  -- text, model, stop_reason, usage, provider of the stored answer
            cost_usd REAL,                  -- what the stored call cost: a hit saves this much
            created_at TEXT NOT NULL,       -- UTC ISO 8601
            expires_at REAL                 -- Unix time; NULL never expires
        );
        CREATE UNIQUE INDEX idx_gateway_cache_exact ON gateway_cache (namespace, key) WHERE kind = 'exact';
        CREATE INDEX idx_gateway_cache_semantic ON gateway_cache (namespace, key, embedder) WHERE kind = 'semantic';
        """
    )


@_step
def m011_gateway_limits(db: Database) -> None:
    # Only workbench/gateway/limits.py reads and writes these tables; every change is
    # one BEGIN IMMEDIATE transaction, so limits hold across threads and processes.
    db.executescript(
        """
        CREATE TABLE gateway_buckets (
            scope TEXT NOT NULL,            -- 'user:alice', 'key:k1', 'feature:search'
            name TEXT NOT NULL,             -- requests, tokens
            level REAL NOT NULL,            -- what is left in the bucket at updated_at
            updated_at REAL NOT NULL,       -- Unix time of the last change
            PRIMARY KEY (scope, name)
        );
        CREATE TABLE gateway_spend (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,           -- 'day:2026-12-02', 'month:2026-12' (UTC)
            spent_usd REAL NOT NULL DEFAULT 0,
            calls INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, period)
        );
        CREATE TABLE gateway_reservations (
            id TEXT PRIMARY KEY,            -- one per call in flight
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            usd REAL NOT NULL,              -- worst case of the call, held until it settles
            expires_at REAL NOT NULL        -- a crashed caller's hold lapses at this Unix time
        );
        CREATE INDEX idx_gateway_reservations ON gateway_reservations (scope, period);
        """
    )


@_step
def m012_alerts(db: Database) -> None:
    # Monitoring (workbench/monitor/alerts.py is the one writer). The partial unique
    # index keeps one open alert per rule and scope even when a cron check and a
    # notebook check run at once: only the process whose INSERT lands notifies.
    db.executescript(
        """
        CREATE TABLE alerts (
            id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,             -- the rule's name
            kind TEXT NOT NULL,             -- error_rate, latency, cost_per_call, spend, quality, threshold
            metric TEXT NOT NULL,           -- error_rate, latency_p95, cost_per_call, spend_per_hour, quality, ...
            scope TEXT NOT NULL,            -- as shown: 'prompt=support@2, model=claude-haiku-4-5' or 'all traffic'
            scope_json TEXT NOT NULL,       -- canonical JSON of the scope's keys and values
            status TEXT NOT NULL,           -- open, resolved
            window_minutes INTEGER NOT NULL,
            first_seen TEXT NOT NULL,       -- UTC: the check that opened it (its window ends there)
            last_seen TEXT NOT NULL,        -- UTC: the last check that still showed the problem
            clear_since TEXT,               -- UTC: first check of the current stretch without it
            resolved_at TEXT,               -- UTC
            observed REAL,                  -- in the opening window
            baseline REAL,                  -- what the rule compared it with
            bar REAL,                       -- what a window must still reach to keep it open (frozen while open)
            peak REAL,                      -- the worst window while open
            p_value REAL,                   -- the test's p-value at opening (NULL for thresholds)
            test_level REAL,                -- the level it had to be under (false-alarm target / tests)
            n INTEGER,                      -- calls or scores in the opening window
            n_baseline INTEGER,
            statistic TEXT,                 -- the evidence in one sentence
            rule_json TEXT,                 -- the rule's settings
            source TEXT NOT NULL,           -- check or replay
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX idx_alerts_one_open ON alerts (rule, scope_json) WHERE status = 'open';
        CREATE UNIQUE INDEX idx_alerts_incident ON alerts (rule, scope_json, first_seen);
        CREATE INDEX idx_alerts_first_seen ON alerts (first_seen);
        CREATE TABLE alert_notifications (
            id TEXT PRIMARY KEY,
            alert_id TEXT NOT NULL REFERENCES alerts (id),
            event TEXT NOT NULL,            -- opened, resolved
            channel TEXT NOT NULL,          -- webhook host, or the callable's name
            status TEXT NOT NULL,           -- sent, failed
            attempts INTEGER NOT NULL,
            error TEXT,
            at TEXT NOT NULL
        );
        CREATE INDEX idx_alert_notifications ON alert_notifications (alert_id);
        """
    )


@_step
def m013_experiment_batches(db: Database) -> None:
    # Only workbench/batches.py reads and writes these tables. A batch's row exists before
    # the provider's batch does (state 'submitting', batch_id NULL), so a process that dies
    # between the two leaves a trace to find the batch by, and no cell is submitted twice.
    db.executescript(
        """
        CREATE TABLE experiment_batches (
            id TEXT PRIMARY KEY,            -- ours, UUIDv7
            experiment_id TEXT NOT NULL REFERENCES experiments (id),
            provider TEXT NOT NULL,         -- anthropic, simulated
            batch_id TEXT UNIQUE,           -- the provider's (msgbatch_...); NULL until it answered
            state TEXT NOT NULL,            -- submitting, in_progress, canceling, ended, collected, not_created
            requests INTEGER NOT NULL,
            owner TEXT,                     -- host:pid of the process that submitted it
            created_at TEXT NOT NULL,       -- UTC ISO 8601: when we started submitting
            submitted_at TEXT,              -- when the provider accepted it
            expires_at TEXT,                -- the provider stops processing it then (24 h)
            ended_at TEXT,
            collected_at TEXT,              -- every result read into traces
            counts_json TEXT,               -- the provider's last request counts
            message TEXT                    -- why it was not created, or what went wrong
        );
        CREATE INDEX idx_experiment_batches ON experiment_batches (experiment_id, state);
        CREATE TABLE experiment_batch_requests (
            custom_id TEXT PRIMARY KEY,     -- sent with the request, comes back with its result
            batch TEXT NOT NULL REFERENCES experiment_batches (id),
            experiment_id TEXT NOT NULL,
            variant TEXT NOT NULL,
            item_id TEXT NOT NULL,
            repeat INTEGER NOT NULL,
            reserve_usd REAL,               -- worst case held against the budget until the result is in
            state TEXT NOT NULL,            -- pending, succeeded, errored, canceled, expired
            trace_id TEXT,                  -- the trace the result was recorded as
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_experiment_batch_requests ON experiment_batch_requests (experiment_id, state);
        CREATE INDEX idx_experiment_batch_requests_batch ON experiment_batch_requests (batch, state);
        """
    )


# -- the same migrations on PostgreSQL ---------------------------------------------------------
# Each name above has its PostgreSQL text here, applied by `_pg.PostgresStore.migrate` in one
# transaction under an advisory lock and recorded in `_workbench_migrations`. The tables, columns
# and their order are the same; the types are PostgreSQL's (BIGINT for SQLite's INTEGER, DOUBLE
# PRECISION for REAL, BYTEA for BLOB). Where SQLite has something PostgreSQL does not, the text
# says what stands in for it. A new migration adds its PostgreSQL text here too (a test checks).

POSTGRES: dict[str, str] = {
    "m001_prompts": """
        CREATE TABLE prompts (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            version BIGINT NOT NULL,
            template TEXT NOT NULL,
            model TEXT NOT NULL,
            params_json TEXT NOT NULL,
            variables_json TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (name, version),
            UNIQUE (name, content_hash)
        );
        CREATE TABLE prompt_labels (
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            version BIGINT,
            split_json TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (name, label)
        );
        CREATE TABLE prompt_label_history (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            version BIGINT,
            split_json TEXT,
            previous_version BIGINT,
            previous_split_json TEXT,
            action TEXT NOT NULL,
            set_at TEXT NOT NULL
        );
        CREATE INDEX idx_prompt_label_history ON prompt_label_history (name, label, set_at);
    """,
    # SQLite's hidden rowid becomes a column of that name. It is assigned under the write lock
    # (see _pg.py), so it grows in commit order, which the full-text index and the frame cache
    # rely on. `SELECT *` returns it; `traces._decode` drops it.
    "m002_traces": """
        CREATE TABLE traces (
            rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            parent_id TEXT,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            started_at TEXT NOT NULL,
            provider TEXT,
            simulated BIGINT NOT NULL DEFAULT 0,
            model TEXT,
            resolved_model TEXT,
            prompt_name TEXT,
            prompt_version BIGINT,
            experiment_id TEXT,
            variant TEXT,
            item_id TEXT,
            repeat BIGINT,
            user_id TEXT,
            input TEXT,
            output TEXT,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cache_read_tokens BIGINT,
            cache_write_tokens BIGINT,
            latency_ms DOUBLE PRECISION,
            ttft_ms DOUBLE PRECISION,
            cost_usd DOUBLE PRECISION,
            price_source TEXT,
            status TEXT NOT NULL,
            error_type TEXT,
            error TEXT,
            attempts BIGINT,
            stop_reason TEXT,
            request_id TEXT,
            tags_json TEXT,
            metadata_json TEXT
        );
        CREATE INDEX idx_traces_started_at ON traces (started_at);
        CREATE INDEX idx_traces_trace_id ON traces (trace_id);
        CREATE INDEX idx_traces_experiment ON traces (experiment_id, variant) WHERE experiment_id IS NOT NULL;
        CREATE VIEW llm_calls AS
            SELECT id, started_at, provider, simulated, model, prompt_name, prompt_version,
                   status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                   latency_ms, ttft_ms, cost_usd, attempts, error_type, user_id
            FROM traces WHERE kind = 'llm';
    """,
    "m003_price_overrides": """
        CREATE TABLE price_overrides (
            model TEXT PRIMARY KEY,
            input_per_mtok DOUBLE PRECISION NOT NULL,
            output_per_mtok DOUBLE PRECISION NOT NULL,
            cache_read_per_mtok DOUBLE PRECISION,
            cache_write_per_mtok DOUBLE PRECISION,
            updated_at TEXT NOT NULL
        );
    """,
    "m004_datasets": """
        CREATE TABLE datasets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            version BIGINT NOT NULL,
            content_hash TEXT NOT NULL,
            n_items BIGINT NOT NULL,
            source TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (name, version),
            UNIQUE (name, content_hash)
        );
        CREATE TABLE dataset_items (
            dataset_id TEXT NOT NULL REFERENCES datasets (id),
            item_id TEXT NOT NULL,
            idx BIGINT NOT NULL,
            inputs_json TEXT NOT NULL,
            expected_json TEXT,
            metadata_json TEXT,
            cluster TEXT,
            PRIMARY KEY (dataset_id, item_id)
        );
    """,
    "m005_experiments": """
        CREATE TABLE experiments (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            dataset_id TEXT REFERENCES datasets (id),
            config_json TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            status_message TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE scores (
            id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            experiment_id TEXT,
            variant TEXT,
            item_id TEXT,
            repeat BIGINT,
            scorer TEXT NOT NULL,
            value DOUBLE PRECISION,
            passed BIGINT,
            rationale TEXT,
            judge_trace_id TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (trace_id, scorer)
        );
        CREATE INDEX idx_scores_experiment ON scores (experiment_id, variant, scorer);
    """,
    "m006_feedback": """
        CREATE TABLE feedback (
            id TEXT PRIMARY KEY,
            experiment_id TEXT,
            item_id TEXT,
            variant_a TEXT,
            variant_b TEXT,
            choice TEXT,
            trace_id TEXT,
            rating DOUBLE PRECISION,
            comment TEXT,
            rater TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX idx_feedback_pair ON feedback (experiment_id, item_id, variant_a, variant_b, rater)
            WHERE trace_id IS NULL;
        CREATE UNIQUE INDEX idx_feedback_trace ON feedback (trace_id, rater) WHERE trace_id IS NOT NULL;
    """,
    # FTS5 becomes a table of tsvectors (the 'simple' configuration: lower-cased words, no
    # stemming, as FTS5's default tokenizer) caught up by rowid exactly as the FTS5 index is.
    "m007_traces_fts": """
        CREATE TABLE traces_fts (
            rowid BIGINT PRIMARY KEY,
            doc TSVECTOR NOT NULL
        );
        CREATE INDEX idx_traces_fts ON traces_fts USING GIN (doc);
        CREATE TABLE traces_fts_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_rowid BIGINT NOT NULL
        );
        INSERT INTO traces_fts_state (id, last_rowid) VALUES (1, 0);
    """,
    # The same covering columns; the judge expression is spelled as `traces.judge_sql` writes it here.
    "m008_trace_explorer": """
        CREATE INDEX idx_traces_explore ON traces (
            (strpos(COALESCE(tags_json, ''), '"judge"') > 0), started_at, kind, status, model,
            prompt_name, prompt_version, experiment_id, variant, item_id, user_id
        );
    """,
    "m009_cache_write_1h": """
        ALTER TABLE traces ADD COLUMN cache_write_1h_tokens BIGINT;
        ALTER TABLE price_overrides ADD COLUMN cache_write_1h_per_mtok DOUBLE PRECISION;
        DROP VIEW llm_calls;
        CREATE VIEW llm_calls AS
            SELECT id, started_at, provider, simulated, model, prompt_name, prompt_version,
                   status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                   cache_write_1h_tokens, latency_ms, ttft_ms, cost_usd, attempts, error_type, user_id
            FROM traces WHERE kind = 'llm';
    """,
    # SQLite's INTEGER PRIMARY KEY hands out ids when none is given (exact entries); semantic
    # entries bring their own random 62-bit ids.
    "m010_gateway_cache": """
        CREATE TABLE gateway_cache (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            kind TEXT NOT NULL,
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            prompt TEXT,
            embedding BYTEA,
            embedder TEXT,
            completion_json TEXT NOT NULL,
            cost_usd DOUBLE PRECISION,
            created_at TEXT NOT NULL,
            expires_at DOUBLE PRECISION
        );
        CREATE UNIQUE INDEX idx_gateway_cache_exact ON gateway_cache (namespace, key) WHERE kind = 'exact';
        CREATE INDEX idx_gateway_cache_semantic ON gateway_cache (namespace, key, embedder) WHERE kind = 'semantic';
    """,
    "m011_gateway_limits": """
        CREATE TABLE gateway_buckets (
            scope TEXT NOT NULL,
            name TEXT NOT NULL,
            level DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (scope, name)
        );
        CREATE TABLE gateway_spend (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            calls BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, period)
        );
        CREATE TABLE gateway_reservations (
            id TEXT PRIMARY KEY,
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            usd DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX idx_gateway_reservations ON gateway_reservations (scope, period);
    """,
    "m012_alerts": """
        CREATE TABLE alerts (
            id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            kind TEXT NOT NULL,
            metric TEXT NOT NULL,
            scope TEXT NOT NULL,
            scope_json TEXT NOT NULL,
            status TEXT NOT NULL,
            window_minutes BIGINT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            clear_since TEXT,
            resolved_at TEXT,
            observed DOUBLE PRECISION,
            baseline DOUBLE PRECISION,
            bar DOUBLE PRECISION,
            peak DOUBLE PRECISION,
            p_value DOUBLE PRECISION,
            test_level DOUBLE PRECISION,
            n BIGINT,
            n_baseline BIGINT,
            statistic TEXT,
            rule_json TEXT,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX idx_alerts_one_open ON alerts (rule, scope_json) WHERE status = 'open';
        CREATE UNIQUE INDEX idx_alerts_incident ON alerts (rule, scope_json, first_seen);
        CREATE INDEX idx_alerts_first_seen ON alerts (first_seen);
        CREATE TABLE alert_notifications (
            id TEXT PRIMARY KEY,
            alert_id TEXT NOT NULL REFERENCES alerts (id),
            event TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            error TEXT,
            at TEXT NOT NULL
        );
        CREATE INDEX idx_alert_notifications ON alert_notifications (alert_id);
    """,
    "m013_experiment_batches": """
        CREATE TABLE experiment_batches (
            id TEXT PRIMARY KEY,
            experiment_id TEXT NOT NULL REFERENCES experiments (id),
            provider TEXT NOT NULL,
            batch_id TEXT UNIQUE,
            state TEXT NOT NULL,
            requests BIGINT NOT NULL,
            owner TEXT,
            created_at TEXT NOT NULL,
            submitted_at TEXT,
            expires_at TEXT,
            ended_at TEXT,
            collected_at TEXT,
            counts_json TEXT,
            message TEXT
        );
        CREATE INDEX idx_experiment_batches ON experiment_batches (experiment_id, state);
        CREATE TABLE experiment_batch_requests (
            custom_id TEXT PRIMARY KEY,
            batch TEXT NOT NULL REFERENCES experiment_batches (id),
            experiment_id TEXT NOT NULL,
            variant TEXT NOT NULL,
            item_id TEXT NOT NULL,
            repeat BIGINT NOT NULL,
            reserve_usd DOUBLE PRECISION,
            state TEXT NOT NULL,
            trace_id TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_experiment_batch_requests ON experiment_batch_requests (experiment_id, state);
        CREATE INDEX idx_experiment_batch_requests_batch ON experiment_batch_requests (batch, state);
    """,
    "m014_exposures": """
        CREATE TABLE exposures (
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            move_id TEXT NOT NULL,
            unit TEXT NOT NULL,
            version BIGINT NOT NULL,
            first_at TEXT NOT NULL,
            PRIMARY KEY (name, label, move_id, unit, version)
        );
        ALTER TABLE prompt_labels ADD COLUMN layout_json TEXT;
        ALTER TABLE prompt_labels ADD COLUMN move_id TEXT;
        ALTER TABLE prompt_label_history ADD COLUMN layout_json TEXT;
        ALTER TABLE prompt_label_history ADD COLUMN previous_layout_json TEXT;
        ALTER TABLE prompt_label_history ADD COLUMN reason TEXT;
    """,
    "m015_rollouts": """
        CREATE TABLE rollouts (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            baseline BIGINT NOT NULL,
            candidate BIGINT NOT NULL,
            plan_json TEXT NOT NULL,
            status TEXT NOT NULL,
            step BIGINT NOT NULL,
            step_move_id TEXT NOT NULL,
            start_move_id TEXT,
            moves_json TEXT NOT NULL,
            step_started_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX idx_rollouts_running ON rollouts (name, label) WHERE status = 'running';
        CREATE TABLE rollout_decisions (
            id TEXT PRIMARY KEY,
            rollout_id TEXT NOT NULL REFERENCES rollouts (id),
            step BIGINT NOT NULL,
            share DOUBLE PRECISION NOT NULL,
            action TEXT NOT NULL,
            reason TEXT NOT NULL,
            figures_json TEXT,
            decided_at TEXT NOT NULL
        );
        CREATE INDEX idx_rollout_decisions ON rollout_decisions (rollout_id, decided_at);
    """,
}


@_step
def m014_exposures(db: Database) -> None:
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
def m015_rollouts(db: Database) -> None:
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
