"""frames: Arrow reads from the store, declared dtypes, filters, and metrics checked against numpy."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from workbench import frames, traces
from workbench.errors import ConfigError
from workbench.store import Store

pytestmark = pytest.mark.backends("sqlite", "postgres")

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
_seq = iter(range(10**9))


def _row(**values):
    """A trace row with the NOT NULL columns filled; ids sort in insertion order."""
    n = next(_seq)
    values.setdefault("id", f"t{n:010d}")
    values.setdefault("trace_id", values["id"])
    values.setdefault("kind", "llm")
    values.setdefault("name", "call")
    values.setdefault("status", "ok")
    values.setdefault("simulated", 1)
    when = values.pop("at", T0)
    values.setdefault("started_at", traces.iso_utc(when.timestamp()))
    return traces.row(**values)


def _put(store: Store, *rows) -> None:
    for r in rows:
        store.writer.put(traces.INSERT_SQL, r)


@pytest.fixture
def db(store):
    """The shared ``store`` fixture under the name these tests use."""
    return store


@pytest.fixture
def filled(db):
    """Six calls and a span over two models, two variants, three hours."""
    _put(
        db,
        _row(at=T0, model="haiku", variant="A", prompt_name="support", prompt_version=1, experiment_id="e1",
             user_id="u1", latency_ms=100.0, ttft_ms=40.0, cost_usd=0.001, input_tokens=10, output_tokens=5,
             tags_json='["x"]', metadata_json='{"k": 1}'),
        _row(at=T0 + timedelta(minutes=30), model="haiku", variant="B", prompt_name="support", prompt_version=2,
             experiment_id="e1", user_id="u2", latency_ms=200.0, cost_usd=None, input_tokens=20, output_tokens=7),
        _row(at=T0 + timedelta(hours=1), model="sonnet", variant="A", status="error", error="boom",
             experiment_id="e1", latency_ms=50.0),
        _row(at=T0 + timedelta(hours=1, minutes=5), model="sonnet", variant="B", latency_ms=400.0, cost_usd=0.01,
             input_tokens=30, output_tokens=9, cache_read_tokens=100, user_id="u1"),
        _row(at=T0 + timedelta(hours=2), model="haiku", variant="A", status="cached", latency_ms=1.0, cost_usd=0.0),
        _row(at=T0 + timedelta(hours=2, minutes=1), kind="span", name="retrieve", latency_ms=9999.0),
        _row(at=T0 + timedelta(hours=2, minutes=2), model="haiku", variant="A", latency_ms=300.0, ttft_ms=90.0,
             cost_usd=0.002, input_tokens=40, output_tokens=11, cache_write_tokens=50),
    )
    return db


# -- reading ---------------------------------------------------------------------------------


def test_traces_have_declared_dtypes_and_time_order(filled):
    df = frames.traces_df(filled)
    assert df.columns == list(traces.COLUMNS)
    assert df.height == 7
    assert df.schema["started_at"] == pl.Datetime("us", "UTC")
    for c in ("prompt_version", "input_tokens", "cache_write_tokens", "simulated", "attempts", "repeat"):
        assert df.schema[c] == pl.Int64, c
    for c in ("latency_ms", "ttft_ms", "cost_usd"):
        assert df.schema[c] == pl.Float64, c
    for c in ("id", "model", "error", "tags_json", "metadata_json", "input"):
        assert df.schema[c] == pl.String, c
    assert df["started_at"].is_sorted()
    assert df["started_at"][0] == T0
    assert df["tags_json"][0] == '["x"]'  # JSON stays text


def test_empty_results_keep_columns_and_dtypes(db):
    df = frames.traces_df(db)
    assert df.height == 0
    expected = dict(frames.TRACE_SCHEMA, started_at=pl.Datetime("us", "UTC"))
    assert dict(df.schema) == expected
    assert dict(frames.traces_df(db, parse_times=False).schema) == frames.TRACE_SCHEMA
    assert dict(frames.scores_df(db).schema) == frames.SCORE_SCHEMA
    assert dict(frames.experiments_df(db).schema) == frames.EXPERIMENT_SCHEMA


def test_queued_rows_are_visible_without_an_explicit_flush(db):
    _put(db, _row(model="m"), _row(model="m"))
    assert frames.traces_df(db, columns=["model"]).height == 2


def test_null_first_batch_does_not_break_type_inference(db):
    # ADBC infers types from its first batch; thousands of NULLs before text must still read.
    rows = [_row(error=None, cost_usd=None, prompt_version=None) for _ in range(3000)]
    rows.append(_row(error="late text", cost_usd=0.5, prompt_version=3))
    with db.transaction() as conn:
        conn.executemany(traces.INSERT_SQL, rows)
    df = frames.traces_df(db, columns=["error", "cost_usd", "prompt_version"])
    assert df.schema == pl.Schema({"error": pl.String, "cost_usd": pl.Float64, "prompt_version": pl.Int64})
    assert df["error"].drop_nulls().to_list() == ["late text"]
    assert df["cost_usd"].sum() == 0.5


def test_in_memory_store_falls_back_to_its_own_connection():
    mem = Store(":memory:")
    try:
        mem.conn.executemany(traces.INSERT_SQL, [_row(model="m", latency_ms=5.0), _row(model="n")])
        df = frames.traces_df(mem, model="m")
        assert df["latency_ms"].to_list() == [5.0]
        assert df.schema["started_at"] == pl.Datetime("us", "UTC")
        empty = frames.traces_df(mem, model="nobody")
        assert empty.height == 0 and empty.schema["latency_ms"] == pl.Float64
    finally:
        mem.close()


def test_read_sql_binds_parameters_and_applies_a_schema(filled):
    df = frames.read_sql(filled, "SELECT model, latency_ms FROM traces WHERE model = ? ORDER BY id", ["sonnet"])
    assert df["latency_ms"].to_list() == [50.0, 400.0]
    empty = frames.read_sql(filled, "SELECT model FROM traces WHERE 1 = 0", schema={"model": pl.String})
    assert empty.schema == pl.Schema({"model": pl.String})


# -- filters and columns ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"model": "haiku"}, 4),
        ({"variant": "B"}, 2),
        ({"status": "error"}, 1),
        ({"kind": "span"}, 1),
        ({"prompt_name": "support", "prompt_version": 2}, 1),
        ({"experiment_id": "e1"}, 3),
        ({"user_id": "u1"}, 2),
        ({"since": "2025-03-01T13:00:00Z"}, 5),
        ({"since": T0 + timedelta(hours=1), "until": T0 + timedelta(hours=2)}, 2),
        ({"until": datetime(2025, 3, 1, 12, 30)}, 1),  # naive means UTC
        ({"until": "2025-03-01T14:31:00+02:00"}, 2),  # = 12:31 UTC
        ({"since": "2025-03-02"}, 0),
    ],
)
def test_filters(filled, filters, expected):
    assert frames.traces_df(filled, **filters).height == expected


def test_bad_time_is_refused_with_the_value(filled):
    with pytest.raises(ConfigError, match="yesterday"):
        frames.traces_df(filled, since="yesterday")


def test_columns_are_selected_in_sql_and_validated(filled):
    df = frames.traces_df(filled, columns=["latency_ms", "model"])
    assert df.columns == ["latency_ms", "model"]
    with pytest.raises(ConfigError, match="'latency'"):
        frames.traces_df(filled, columns=["model", "latency"])


def test_parse_times_off_keeps_text_and_other_iso_forms_parse(db):
    forms = [
        "2025-03-01T12:00:00Z",
        "2025-03-01T12:00:01.5+00:00",
        "2025-03-01T14:00:02.25+02:00",
        "2025-03-01 12:00:03.000001+00:00",
        "2025-03-01T12:00:04",
        "2025-03-01T12:00:05.000000+00:00",  # the form workbench writes
    ]
    _put(db, *(_row(started_at=f) for f in forms))
    raw = frames.traces_df(db, parse_times=False)
    assert raw.schema["started_at"] == pl.String and raw["started_at"].to_list() == forms
    parsed = frames.traces_df(db)["started_at"].to_list()
    seconds = [0, 1.5, 2.25, 3.000001, 4, 5]
    assert parsed == [T0 + timedelta(seconds=x) for x in seconds]


def test_scores_and_experiments(filled):
    conn = filled.conn
    conn.execute(
        "INSERT INTO experiments (id, name, config_json, config_hash, status, created_at, updated_at) "
        "VALUES ('e1', 'first', '{}', 'h', 'completed', '2025-03-01', '2025-03-01'), "
        "('e2', 'second', '{}', 'h2', 'created', '2025-03-02', '2025-03-02')"
    )
    conn.executemany(
        "INSERT INTO scores (id, trace_id, experiment_id, variant, item_id, repeat, scorer, value, passed, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'now')",
        [("s1", "t1", "e1", "A", "i1", 0, "exact", 1.0, 1), ("s2", "t2", "e2", "B", "i1", 0, "exact", None, None)],
    )
    s = frames.scores_df(filled)
    assert s.height == 2 and s.schema["value"] == pl.Float64 and s.schema["passed"] == pl.Int64
    assert frames.scores_df(filled, experiment_id="e1")["id"].to_list() == ["s1"]
    e = frames.experiments_df(filled)
    assert e.columns == list(frames.EXPERIMENT_SCHEMA)
    assert e["name"].to_list() == ["second", "first"]  # newest first
    first = e.row(1, named=True)
    assert first["n_traces"] == 3
    assert first["cost_usd"] == pytest.approx(0.001)  # the unpriced traces add nothing
    second = e.row(0, named=True)
    assert second["n_traces"] == 0 and second["cost_usd"] is None


# -- metrics ---------------------------------------------------------------------------------


def _synthetic(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cost = rng.uniform(0, 0.01, n)
    latency = rng.lognormal(6, 0.7, n)
    ttft = latency / 3
    return pl.DataFrame(
        {
            "kind": rng.choice(["llm", "llm", "llm", "span"], n),
            "status": rng.choice(["ok"] * 7 + ["error", "cached", "guardrail"], n),
            "model": rng.choice(["haiku", "sonnet", None], n).tolist(),
            "variant": rng.choice(["A", "B"], n),
            "prompt_version": rng.choice([1, 2], n),
            "user_id": [f"u{i}" for i in rng.integers(0, 40, n)],
            "started_at": [T0 + timedelta(seconds=float(s)) for s in rng.uniform(0, 4 * 3600, n)],
            "input_tokens": rng.integers(0, 2000, n),
            "output_tokens": rng.integers(0, 500, n),
            "cache_read_tokens": rng.integers(0, 800, n),
            "cache_write_tokens": rng.integers(0, 100, n),
            "cost_usd": np.where(rng.random(n) < 0.1, np.nan, cost),
            "latency_ms": np.where(rng.random(n) < 0.05, np.nan, latency),
            "ttft_ms": np.where(rng.random(n) < 0.2, np.nan, ttft),
        },
        schema_overrides={"started_at": pl.Datetime("us", "UTC")},
    ).with_columns(pl.col("cost_usd", "latency_ms", "ttft_ms").fill_nan(None))


def _expected(g: pl.DataFrame) -> dict[str, float | int | None]:
    """The metrics of one group's rows, computed with numpy."""
    g = g.filter(pl.col("kind") == "llm")
    status = g["status"].to_numpy()
    ok = status == "ok"
    cost = g["cost_usd"].to_numpy().astype(float)
    lat = g["latency_ms"].to_numpy().astype(float)[ok]
    lat = lat[~np.isnan(lat)]
    ttft = g["ttft_ms"].to_numpy().astype(float)[ok]
    ttft = ttft[~np.isnan(ttft)]
    n = len(status)

    def pct(a, q):
        return float(np.percentile(a, q)) if len(a) else None

    return {
        "requests": n,
        "errors": int((status == "error").sum()),
        "error_rate": float((status == "error").mean()) if n else None,
        **{c: int(g[c].to_numpy().sum()) for c in frames._TOKENS},
        "cost_usd": float(np.nansum(cost)) if (~np.isnan(cost)).any() else None,
        "unpriced": int((ok & np.isnan(cost)).sum()),
        "latency_mean": float(lat.mean()) if len(lat) else None,
        "latency_p50": pct(lat, 50),
        "latency_p95": pct(lat, 95),
        "latency_p99": pct(lat, 99),
        "ttft_p50": pct(ttft, 50),
        "ttft_p95": pct(ttft, 95),
    }


def _assert_row(got: dict, want: dict) -> None:
    for k, v in want.items():
        if v is None:
            assert got[k] is None, k
        elif isinstance(v, float):
            assert got[k] == pytest.approx(v, rel=1e-12), k
        else:
            assert got[k] == v, k


def test_metrics_match_numpy_over_all_calls():
    df = _synthetic(5000)
    out = frames.metrics(df)
    assert out.columns == list(frames.METRIC_COLUMNS)
    assert out.height == 1
    _assert_row(out.row(0, named=True), _expected(df))


@pytest.mark.parametrize("by", ["model", ["model", "variant"], "user_id", ["prompt_version", "status"]])
def test_metrics_by_group_match_numpy_and_sort_by_keys(by):
    df = _synthetic(4000, seed=1)
    keys = [by] if isinstance(by, str) else by
    out = frames.metrics(df, by=by)
    assert out.columns == [*keys, *frames.METRIC_COLUMNS]
    assert out.select(keys).equals(out.select(keys).sort(keys, nulls_last=True))
    llm_keys = df.filter(pl.col("kind") == "llm").select(keys).unique()
    assert out.height == llm_keys.height  # groups seen only on spans are not reported
    for row in out.iter_rows(named=True):
        mask = pl.all_horizontal(
            (pl.col(k).is_null() if row[k] is None else pl.col(k) == row[k]) for k in keys
        )
        _assert_row(row, _expected(df.filter(mask)))


def test_many_groups_take_the_vectorised_sort(monkeypatch):
    monkeypatch.setattr(frames, "_LOOP_GROUPS", 3)
    df = _synthetic(3000, seed=2)
    out = frames.metrics(df, by="user_id")
    for row in out.iter_rows(named=True):
        _assert_row(row, _expected(df.filter(pl.col("user_id") == row["user_id"])))


def test_one_call_gives_its_value_for_every_percentile():
    df = pl.DataFrame({"status": ["ok"], "latency_ms": [123.0], "ttft_ms": [45.0], "cost_usd": [0.5],
                       "input_tokens": [1], "output_tokens": [2], "cache_read_tokens": [None],
                       "cache_write_tokens": [None], "model": ["m"]})
    row = frames.metrics(df, by="model").row(0, named=True)
    assert row["latency_p50"] == row["latency_p95"] == row["latency_p99"] == row["latency_mean"] == 123.0
    assert row["ttft_p50"] == row["ttft_p95"] == 45.0
    assert row["cache_read_tokens"] == 0 and row["requests"] == 1 and row["error_rate"] == 0.0


def test_no_ok_call_and_no_price_give_nulls_not_zeros():
    df = pl.DataFrame({"status": ["error", "error", "ok"], "latency_ms": [10.0, 20.0, None], "ttft_ms": [None] * 3,
                       "cost_usd": [None, None, None], "input_tokens": [None, None, 5], "output_tokens": [0, 0, 1],
                       "cache_read_tokens": [0, 0, 0], "cache_write_tokens": [0, 0, 0]},
                      schema_overrides={"ttft_ms": pl.Float64, "cost_usd": pl.Float64})
    row = frames.metrics(df).row(0, named=True)
    assert row["requests"] == 3 and row["errors"] == 2 and row["error_rate"] == pytest.approx(2 / 3)
    assert row["cost_usd"] is None and row["unpriced"] == 1
    assert row["latency_p50"] is None and row["latency_mean"] is None and row["ttft_p95"] is None
    assert row["input_tokens"] == 5


def test_no_calls_gives_one_zero_row_or_an_empty_grouped_frame():
    df = _synthetic(10).filter(pl.lit(False))
    row = frames.metrics(df).row(0, named=True)
    assert row["requests"] == 0 and row["error_rate"] is None and row["cost_usd"] is None
    grouped = frames.metrics(df, by="variant", every="1h")
    assert grouped.height == 0 and grouped.columns == ["bucket", "variant", *frames.METRIC_COLUMNS]


def test_time_buckets_truncate_started_at():
    df = _synthetic(3000, seed=3)
    out = frames.metrics(df, every="1h", by="variant")
    assert out.schema["bucket"] == pl.Datetime("us", "UTC")
    assert out["bucket"].dt.minute().max() == 0
    assert out["bucket"].unique().sort().to_list() == [T0 + timedelta(hours=h) for h in range(4)]
    assert out.select("bucket", "variant").equals(out.select("bucket", "variant").sort("bucket", "variant"))
    for row in out.iter_rows(named=True):
        start = row["bucket"]
        rows = df.filter(
            (pl.col("started_at") >= start) & (pl.col("started_at") < start + timedelta(hours=1))
            & (pl.col("variant") == row["variant"])
        )
        _assert_row(row, _expected(rows))
    # Row order does not matter (unsorted times take the general coding path).
    shuffled = frames.metrics(df.sample(fraction=1.0, shuffle=True, seed=4), every="1h", by="variant")
    assert shuffled.select("bucket", "variant", "requests").equals(out.select("bucket", "variant", "requests"))


def test_bad_group_or_duration_or_filter_is_refused():
    df = _synthetic(20)
    with pytest.raises(ConfigError, match="'item_id'"):
        frames.metrics(df, by="item_id")
    with pytest.raises(ConfigError, match="'1 hour'"):
        frames.metrics(df, every="1 hour")
    with pytest.raises(ConfigError, match="'colour'"):
        frames.metrics(df, colour="red")
    with pytest.raises(ConfigError, match="kind"):
        frames.metrics(df, kind="span")
    with pytest.raises(ConfigError, match="ttft_ms"):
        frames.metrics(df.drop("ttft_ms"))
    objects = df.with_columns(pl.Series("model", np.array([None, *["m"] * (df.height - 1)], dtype=object)))
    with pytest.raises(ConfigError, match="model.*Object"):
        frames.metrics(objects, by="model")


def test_metrics_filters_apply_to_frames_too():
    df = _synthetic(2000, seed=5)
    got = frames.metrics(df, model="haiku", since=T0 + timedelta(hours=1)).row(0, named=True)
    want = _expected(df.filter((pl.col("model") == "haiku") & (pl.col("started_at") >= T0 + timedelta(hours=1))))
    _assert_row(got, want)


def test_metrics_from_a_store_reads_only_the_columns_it_needs(filled, monkeypatch):
    seen = {}
    real = frames._read_traces

    def spy(store, cols, filters, **kw):
        seen.update(kw, cols=cols, **filters)
        return real(store, cols, filters, **kw)

    monkeypatch.setattr(frames, "_read_traces", spy)
    out = frames.metrics(filled, by="model", every="1h")
    assert seen["kind"] == "llm" and seen["parse_times"] is True
    assert set(seen["cols"]) == {"model", "started_at", *frames.METRIC_INPUTS}
    assert out.select("bucket", "model").rows() == [
        (T0, "haiku"), (T0 + timedelta(hours=1), "sonnet"), (T0 + timedelta(hours=2), "haiku")
    ]
    haiku = out.filter(pl.col("model") == "haiku")
    assert haiku["requests"].to_list() == [2, 2]  # the span at 14:01 is not a call
    first = haiku.row(0, named=True)
    assert first["latency_p50"] == 150.0 and first["unpriced"] == 1 and first["cost_usd"] == pytest.approx(0.001)
    assert frames.metrics(filled, by="model", every=None)["model"].to_list() == ["haiku", "sonnet"]
    sonnet = frames.metrics(filled, model="sonnet").row(0, named=True)
    assert sonnet["requests"] == 2 and sonnet["errors"] == 1 and sonnet["error_rate"] == 0.5
    assert sonnet["latency_p95"] == 400.0  # the error's latency is not an ok call's


def test_metrics_from_a_file_see_rows_added_or_deleted_after_a_cached_read(tmp_path):
    """Repeated metrics() read only the rows added since the last read; a table that shrank is read afresh."""
    from workbench import traces as tr
    from workbench.store import Store

    def put(store, start, n, latency):
        store.writer.put_many(tr.INSERT_SQL, [
            tr.row(id=f"{start + i:012d}", trace_id="t", kind="llm", name="chat", model="m",
                   started_at="2026-01-01T00:00:00.000000+00:00", status="ok", latency_ms=latency, input_tokens=1)
            for i in range(n)])

    path = tmp_path / "grow.db"
    store = Store(path)
    put(store, 0, 10, 100.0)
    assert frames.metrics(store)["requests"][0] == 10
    put(store, 10, 5, 400.0)
    m = frames.metrics(store)
    assert (m["requests"][0], m["input_tokens"][0], m["latency_p99"][0]) == (15, 15, 400.0)
    store.execute("DELETE FROM traces WHERE id < '000000000003'")
    assert frames.metrics(store)["requests"][0] == 12
    store.close()


def test_prompt_cache_savings_price_each_groups_own_reads_and_writes(tmp_path, scripted):
    """Reads save, 5-minute and 1-hour writes cost their premium, each in its own group (genai-prices by hand)."""
    from genai_prices import Usage as GP
    from genai_prices import calc_price

    import workbench as wb

    model, n = "claude-sonnet-4-5", 100_000
    scripted.queue(
        scripted.completion("w", model=model, input_tokens=100, output_tokens=50, cache_write_tokens=n),
        scripted.completion("r", model=model, input_tokens=100, output_tokens=50, cache_read_tokens=n),
        scripted.completion("h", model=model, input_tokens=100, output_tokens=50, cache_write_tokens=n, cache_write_1h_tokens=n),
    )
    with wb.open(tmp_path / "s.db", provider=scripted) as bench:
        for name in ("writes", "reads", "writes_1h"):
            bench.complete(bench.prompts.register(name, "{q}", model), q="x")
        saved = dict(bench.savings(by="prompt").filter(pl.col("source") == "prompt_cache")
                     .select("prompt_name", "saved_usd").iter_rows())

    def price(**tokens) -> float:
        total = tokens.get("cache_read_tokens", 0) + tokens.get("cache_write_tokens", 0)
        return float(calc_price(GP(input_tokens=total, **tokens), model, provider_id="anthropic").total_price)

    plain = float(calc_price(GP(input_tokens=n), model, provider_id="anthropic").total_price)
    assert saved["reads"] == pytest.approx(plain - price(cache_read_tokens=n))
    assert saved["writes"] == pytest.approx(plain - price(cache_write_tokens=n))
    assert saved["writes_1h"] == pytest.approx(plain - price(cache_write_tokens=n, cache_write_1h_tokens=n))
    assert saved["writes"] < 0 and saved["writes_1h"] < saved["writes"] < saved["reads"]
