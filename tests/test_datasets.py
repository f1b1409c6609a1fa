"""Datasets: loading JSONL, CSV, frames and records; versioning by content; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from workbench import datasets as wb_datasets
from workbench.errors import DatasetError, DatasetNotFound

pytestmark = pytest.mark.backends("sqlite", "postgres")

SUPPORT_QA = Path(__file__).resolve().parent.parent / "data" / "support_qa.jsonl"


def counts(bench) -> tuple[int, int]:
    """Rows in datasets and dataset_items."""
    (d,) = bench.store.execute("SELECT COUNT(*) FROM datasets").fetchone()
    (i,) = bench.store.execute("SELECT COUNT(*) FROM dataset_items").fetchone()
    return d, i


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# -- loading ------------------------------------------------------------------------------------


def test_load_shipped_jsonl(bench):
    ds = bench.datasets.load("support-qa", SUPPORT_QA)
    assert len(ds) == 60
    assert ds.version == 1 and ds.name == "support-qa" and ds.ref == "support-qa@v1"
    assert ds.content_hash.startswith("sha256:")
    assert ds.has_clusters
    assert len({i.cluster for i in ds}) > 1
    first = ds[0]
    assert first.item_id == "sq-001"
    assert set(first.inputs) == {"context", "question"}
    assert first.expected == "up to 2 devices"
    assert first.metadata == {"topic": "sync", "difficulty": "easy"}
    assert first.cluster == "sync"
    assert ds["sq-001"] == first
    with pytest.raises(DatasetNotFound, match="no item 'nope'"):
        ds["nope"]
    assert counts(bench) == (1, 60)
    # What was stored reads back equal.
    again = bench.datasets.get("support-qa")
    assert again.items == ds.items and again.content_hash == ds.content_hash


def test_load_csv_flat_columns_and_metadata_columns(bench, tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text(
        "id,question,context,expected,metadata.topic,cluster\n"
        "q1,How many devices?,Up to 2 devices.,2 devices,sync,c1\n"
        "q2,Where is export?,Use File > Export.,File > Export,export,c2\n",
        encoding="utf-8",
    )
    ds = bench.datasets.load("csv-qa", path)
    assert [i.item_id for i in ds] == ["q1", "q2"]
    assert ds[0].inputs == {"question": "How many devices?", "context": "Up to 2 devices."}
    assert ds[0].expected == "2 devices"
    assert ds[0].metadata == {"topic": "sync"}
    assert ds[1].cluster == "c2"


def test_load_csv_selects_input_columns(bench, tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(
        "question,notes,expected,metadata.source\n"
        "What is 2+2?,ignore me,4,book\n"
        "What is 3+3?,ignore me too,6,web\n",
        encoding="utf-8",
    )
    ds = bench.datasets.load("wide", path, inputs=["question"])
    assert [dict(i.inputs) for i in ds] == [{"question": "What is 2+2?"}, {"question": "What is 3+3?"}]
    assert [i.expected for i in ds] == ["4", "6"]
    assert [i.metadata for i in ds] == [{"source": "book"}, {"source": "web"}]
    # Without an id column, ids follow the position.
    assert [i.item_id for i in ds] == ["item-0001", "item-0002"]
    with pytest.raises(DatasetError, match=r"wide\.csv line 2: missing input column\(s\) answer"):
        bench.datasets.load("wide2", path, inputs=["answer"])


def test_load_polars_frame(bench):
    df = pl.DataFrame({
        "id": ["a", "b", "c"],
        "question": ["q one?", "q two?", "q three?"],
        "expected": ["one", "two", "three"],
        "cluster": ["x", "x", "y"],
    })
    ds = bench.datasets.load("frame", df)
    assert len(ds) == 3
    assert ds["b"].inputs == {"question": "q two?"} and ds["b"].expected == "two"
    assert [i.cluster for i in ds] == ["x", "x", "y"]
    out = ds.to_polars()
    assert out.height == 3 and out["item_id"].to_list() == ["a", "b", "c"]


def test_load_list_of_dicts(bench):
    records = [
        {"id": 1, "inputs": {"question": "hi?"}, "expected": ["hello", "hi"], "metadata": {"k": 1}},
        {"id": 2, "question": "bye?"},
    ]
    ds = bench.datasets.load("records", records)
    assert [i.item_id for i in ds] == ["1", "2"]
    assert ds[0].expected == ["hello", "hi"] and ds[0].metadata == {"k": 1}
    assert ds[1].inputs == {"question": "bye?"} and ds[1].expected is None


# -- versions -------------------------------------------------------------------------------------


def test_identical_content_same_version_changed_content_new_version(bench, tmp_path):
    records = [{"id": "a", "question": "one?", "expected": "1"}, {"id": "b", "question": "two?", "expected": "2"}]
    v1 = bench.datasets.load("versions", records)
    # The same content from a file is the same dataset.
    same = bench.datasets.load("versions", write_jsonl(tmp_path / "same.jsonl", records))
    assert (same.id, same.version, same.content_hash) == (v1.id, 1, v1.content_hash)
    assert counts(bench) == (1, 2)

    changed = [*records[:1], {"id": "b", "question": "two?", "expected": "II"}]
    v2 = bench.datasets.load("versions", changed)
    assert v2.version == 2 and v2.content_hash != v1.content_hash
    assert counts(bench) == (2, 4)
    assert bench.datasets.get("versions").version == 2
    old = bench.datasets.get("versions", 1)
    assert old.id == v1.id and old["b"].expected == "2"
    assert bench.datasets.get("versions", 2)["b"].expected == "II"
    # Loading v1's content again finds v1; it does not make v3.
    assert bench.datasets.load("versions", records).version == 1
    assert bench.datasets.by_id(v2.id).version == 2
    with pytest.raises(DatasetNotFound, match=r"dataset 'versions' v7 not found"):
        bench.datasets.get("versions", 7)
    with pytest.raises(DatasetNotFound, match="datasets: versions"):
        bench.datasets.get("nope")
    assert [(r["name"], r["version"], r["n_items"]) for r in bench.datasets.list()] == [
        ("versions", 1, 2), ("versions", 2, 2),
    ]


def test_same_content_under_another_name_is_its_own_dataset(bench):
    records = [{"question": "one?"}]
    a = bench.datasets.load("a", records)
    b = bench.datasets.load("b", records)
    assert a.id != b.id and a.content_hash == b.content_hash and b.version == 1


# -- errors ---------------------------------------------------------------------------------------


def test_malformed_jsonl_names_file_and_line_and_writes_nothing(bench, tmp_path):
    bench.datasets.load("existing", [{"question": "q?"}])
    before = counts(bench)
    path = tmp_path / "broken.jsonl"
    path.write_text(
        '{"id": "1", "question": "fine?"}\n'
        '{"id": "2", "question": "fine too?"}\n'
        '{"id": "3", "question": "broken?"\n'
        '{"id": "4", "question": "never read?"}\n',
        encoding="utf-8",
    )
    with pytest.raises(DatasetError) as info:
        bench.datasets.load("broken", path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "invalid JSON" in message
    assert counts(bench) == before
    assert not bench.store.query("SELECT 1 FROM datasets WHERE name = 'broken'")


def test_blank_lines_are_skipped_and_do_not_shift_line_numbers(bench, tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"question": "a?"}\n\n{"question": "b?"}\n\n[1, 2]\n', encoding="utf-8")
    before = counts(bench)
    with pytest.raises(DatasetError, match=r"gaps\.jsonl line 5: each item must be a JSON object, got list"):
        bench.datasets.load("gaps", path)
    assert counts(bench) == before


def test_duplicate_ids(bench, tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [{"id": "x", "question": "a?"}, {"id": "y", "question": "b?"},
                                                {"id": "x", "question": "c?"}])
    with pytest.raises(DatasetError) as info:
        bench.datasets.load("dup", path)
    message = str(info.value)
    assert "duplicate id 'x'" in message and "line 3" in message and "line 1" in message
    assert counts(bench) == (0, 0)


def test_non_object_line(bench, tmp_path):
    path = tmp_path / "scalar.jsonl"
    path.write_text('{"question": "a?"}\n"just a string"\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"scalar\.jsonl line 2: each item must be a JSON object, got str"):
        bench.datasets.load("scalar", path)
    assert counts(bench) == (0, 0)


def test_empty_file(bench, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty\.jsonl: no items"):
        bench.datasets.load("empty", path)
    with pytest.raises(DatasetError, match="no items"):
        bench.datasets.load("empty", [])
    assert counts(bench) == (0, 0)


def test_missing_file(bench, tmp_path):
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(DatasetError, match=r"dataset file .*nowhere\.jsonl not found"):
        bench.datasets.load("missing", path)
    assert counts(bench) == (0, 0)


def test_unsupported_extension(bench, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("question\nwhat?\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        bench.datasets.load("txt", path)
    message = str(info.value)
    assert "data.txt" in message and "'.txt'" in message and ".jsonl" in message and ".csv" in message
    assert counts(bench) == (0, 0)


def test_item_without_inputs_and_bad_fields(bench):
    with pytest.raises(DatasetError, match=r"record 2: item 'b' has no inputs"):
        bench.datasets.load("x", [{"id": "a", "q": "?"}, {"id": "b", "expected": "e"}])
    with pytest.raises(DatasetError, match="'inputs' must be an object"):
        bench.datasets.load("x", [{"inputs": ["q"]}])
    with pytest.raises(DatasetError, match="'metadata' must be an object"):
        bench.datasets.load("x", [{"q": "?", "metadata": "m"}])
    with pytest.raises(DatasetError, match="cannot load a dataset from int"):
        bench.datasets.load("x", 42)
    assert counts(bench) == (0, 0)


def test_csv_row_with_extra_fields(bench, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("question,expected\na?,1\nb?,2,surplus\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"ragged\.csv line 3: more fields than the header"):
        bench.datasets.load("ragged", path)
    assert counts(bench) == (0, 0)


def test_byte_order_mark_does_not_rename_the_first_column(bench, tmp_path):
    # Excel's "CSV UTF-8" and some Windows editors start the file with a BOM.
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes("\ufeffid,question,expected\nq1,What?,x\n".encode())
    ds = bench.datasets.load("excel", csv_path)
    assert ds[0].item_id == "q1" and ds[0].inputs == {"question": "What?"}
    jsonl_path = tmp_path / "bom.jsonl"
    jsonl_path.write_bytes('\ufeff{"id": "j1", "question": "Why?"}\n'.encode())
    assert bench.datasets.load("bom", jsonl_path)[0].item_id == "j1"


@pytest.mark.parametrize("suffix, content", [
    (".jsonl", '{"question": "a?"}\n{"question": "b?"}\n{"question": "caf\xe9?"}\n'),
    (".csv", "question\na?\nb?\ncaf\xe9?\n"),
])
def test_non_utf8_file_names_the_line(bench, tmp_path, suffix, content):
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(content.encode("latin-1"))
    line = 3 if suffix == ".jsonl" else 4
    with pytest.raises(DatasetError, match=rf"latin1\{suffix} line {line}: not UTF-8 text .*save the file as UTF-8"):
        bench.datasets.load("latin1", path)
    assert counts(bench) == (0, 0)


def test_a_lone_surrogate_is_stored_escaped_with_a_warning(bench, tmp_path):
    # JSON may spell a lone surrogate; a non-UTF-8 file name decodes to one (os.fsdecode).
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"id": "a", "question": "fine?"}\n{"id": "b", "question": "bad \\ud800 text?"}\n', encoding="utf-8")
    with pytest.warns(wb_datasets.InvalidTextWarning, match=r"1 item of .*surrogate\.jsonl .*line 2"):
        ds = bench.datasets.load("surrogate", path)
    assert ds["b"].inputs == {"question": "bad \\ud800 text?"}
    assert bench.datasets.get("surrogate")["b"] == ds["b"]
    records = [{"file": "report-\udcff.txt", "metadata": {"dir": "\udce9t\udce9"}}]
    with pytest.warns(wb_datasets.InvalidTextWarning, match="record 1"):
        named = bench.datasets.load("files", records)
    assert named[0].inputs == {"file": "report-\\udcff.txt"} and named[0].metadata == {"dir": "\\udce9t\\udce9"}


def _deep(levels: int) -> str:
    return '{"question": ' + "[" * (levels - 1) + "1" + "]" * (levels - 1) + "}"


@pytest.mark.parametrize("name, content, where, problem", [
    # A row short of a field would reach the model as "None"; a quoted field may span lines,
    # and the line named is where the short row starts.
    ("short.csv", 'question,context,expected\n"two\nlines?",c,1\nb?,c\n', "line 4",
     "fewer fields than the header has (2 of 3; no value for expected)"),
    ("twice.csv", "question,question\na?,b?\n", "line 1", "column 'question' appears more than once"),
    ("deep500.jsonl", '{"question": "ok?"}\n' + _deep(500) + "\n", "line 2", "nested more than 100 levels"),
    ("deep5000.jsonl", _deep(5000) + "\n", "line 1", "nested too deeply to parse"),
    ("bigint.jsonl", '{"question": "ok?"}\n{"question": ' + "7" * 5000 + "}\n", "line 2", "a number too long to read"),
    ("deep5000.json", "[" + _deep(5000) + "]", "", "nested too deeply to parse"),
    ("latin1.json", '[{"question": "ok?"},\n {"question": "caf\xe9?"}]', "line 2", "not UTF-8 text"),
    ("huge.csv", "question,expected\nok?,1\n" + "x" * 140_000 + ",2\n", "line 3",
     "a field is longer than 131,072 characters"),
])
def test_malformed_and_hostile_files_give_a_dataset_error_naming_file_and_line(bench, tmp_path, name, content, where, problem):
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1" if name == "latin1.json" else "utf-8"))
    with pytest.raises(DatasetError) as info:
        bench.datasets.load("hostile", path)
    message = str(info.value)
    assert message.startswith(f"{path} {where}".rstrip() + ":"), message
    assert problem in message
    assert counts(bench) == (0, 0)


def test_records_from_a_generator_are_read_once(bench):
    def records():
        for i in range(3):
            yield {"id": f"g{i}", "question": f"q{i}?"}

    assert [i.item_id for i in bench.datasets.load("gen", records())] == ["g0", "g1", "g2"]


# Digests computed by the code before hashing streamed item by item. Stored experiments pin
# these hashes in their configs: a change would make every stored experiment look changed.
GOLDEN = {
    "support": "sha256:5baf7f33c956df776330cae7dac7c380907927b8386eb032cc08e51deb4cfa12",
    "records": "sha256:b7c24115580ce0f73fdc41c2c5e257aec42c8deec15f991799f63c4851447ddf",
    "frame": "sha256:f2ddfdb481a9979b1e72c9a6dbe3ede941e697fd018bcf4ed433746c6e0be2e4",
    "csv": "sha256:5bb7f17ed5decf07aaf3bf817c59f54824df133fd174969e386788c0e6c90709",
}


def test_content_hashes_are_the_ones_stored_files_pinned(bench, tmp_path):
    import datetime

    assert bench.datasets.load("s", SUPPORT_QA).content_hash == GOLDEN["support"]
    records = [
        {"id": 7, "inputs": {"question": "caf\u00e9 \u2028 \U0001F600?", "n": 1.0, "x": [1.5, 2.0, {"b": 1, "a": None}]},
         "expected": {"answer": 3.0, "alts": ["three", 3]}, "metadata": {"k": True, "z": 0.1}, "cluster": 5},
        {"question": "plain?", "metadata.topic": "t", "expected": ["a", "b"]},
        {"id": "", "inputs": {"q": "tab\tnewline\n\"quote\" \\ back"}, "cluster": ""},
    ]
    assert bench.datasets.load("r", records).content_hash == GOLDEN["records"]
    frame = pl.DataFrame({"id": ["a", "b"], "question": ["q1", "q2"], "when": [datetime.date(2026, 1, 2), None],
                          "score": [1.0, 2.5]})
    loaded = bench.datasets.load("f", frame)
    assert loaded.content_hash == GOLDEN["frame"]
    path = tmp_path / "x.csv"
    path.write_text('id,question,expected,cluster,metadata.src\nq1,"multi\nline",4,c,web\nq2,b?,,c,\n', encoding="utf-8")
    assert bench.datasets.load("c", path).content_hash == GOLDEN["csv"]
    # What load returns is what get reads back, for values JSON turns into others (a date).
    assert loaded.items == bench.datasets.get("f").items
    assert bench.datasets.get("f")[0].inputs["when"] == "2026-01-02"
