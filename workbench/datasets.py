"""Datasets: items with inputs, an expected output, metadata and a cluster.

Content-hashed and versioned by name: loading changed content under a name
makes a new version; identical content returns the existing one. Only this
module writes ``datasets`` and ``dataset_items``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _html
from ._canonical import content_hash, dumps, loads
from ._ids import new_id, utc_now
from .errors import DatasetError, DatasetNotFound

if TYPE_CHECKING:
    import polars as pl

    from .store import Store

RESERVED = ("id", "inputs", "expected", "metadata", "cluster")


@dataclass(frozen=True)
class DatasetItem:
    """One example."""

    item_id: str
    """The file's id, or ``item-0001`` by position."""
    inputs: Mapping[str, Any]
    """Template variables."""
    expected: Any = None
    """Reference output (text, number or structured), if any."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Free-form fields (topic, difficulty, ...)."""
    cluster: str | None = None
    """Items sharing a passage or conversation share a cluster."""

    def canonical(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "inputs": dict(self.inputs),
            "expected": self.expected,
            "metadata": dict(self.metadata),
            "cluster": self.cluster,
        }


@dataclass(frozen=True)
class Dataset:
    """A versioned, content-hashed list of items."""

    id: str
    name: str
    version: int
    content_hash: str
    items: tuple[DatasetItem, ...]
    source: str | None = None
    created_at: str = ""

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[DatasetItem]:
        return iter(self.items)

    def __getitem__(self, key: int | str) -> DatasetItem:
        if isinstance(key, int):
            return self.items[key]
        for item in self.items:
            if item.item_id == key:
                return item
        raise DatasetNotFound(f"dataset {self.name!r} v{self.version} has no item {key!r}")

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def has_clusters(self) -> bool:
        return any(i.cluster is not None for i in self.items)

    def to_polars(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(
            {
                "item_id": [i.item_id for i in self.items],
                "inputs": [dumps(dict(i.inputs)) for i in self.items],
                "expected": [i.expected if isinstance(i.expected, str) or i.expected is None else dumps(i.expected) for i in self.items],
                "cluster": [i.cluster for i in self.items],
                "metadata": [dumps(dict(i.metadata)) for i in self.items],
            },
            schema={"item_id": pl.String, "inputs": pl.String, "expected": pl.String, "cluster": pl.String, "metadata": pl.String},
        )

    def __repr__(self) -> str:
        return f"<Dataset {self.ref} {len(self.items)} items {self.content_hash[:15]}>"

    def _repr_html_(self) -> str:
        rows = [
            (i.item_id, _short(dumps(dict(i.inputs))), _short(i.expected), i.cluster or "")
            for i in self.items[:10]
        ]
        more = f"<small>… {len(self.items) - 10} more items</small>" if len(self.items) > 10 else ""
        return _html.root(
            f"<b>{_html.esc(self.ref)}</b> · {len(self.items)} items · {_html.esc(self.content_hash[:23])}"
            f"{_html.table(['item', 'inputs', 'expected', 'cluster'], rows)}{more}"
        )


def _short(value: Any, n: int = 80) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def item_from_record(record: Mapping[str, Any], idx: int, where: str, *, inputs: list[str] | None = None) -> DatasetItem:
    """Normalise one record: ``inputs`` dict, or every non-reserved field as an input."""
    if not isinstance(record, Mapping):
        raise DatasetError(f"{where}: each item must be a JSON object, got {type(record).__name__}")
    raw_id = record.get("id")
    item_id = str(raw_id) if raw_id not in (None, "") else f"item-{idx + 1:04d}"
    if "inputs" in record:
        values = record["inputs"]
        if not isinstance(values, Mapping):
            raise DatasetError(f"{where}: 'inputs' must be an object of template variables, got {type(values).__name__}")
    elif inputs is not None:
        missing = [k for k in inputs if k not in record]
        if missing:
            raise DatasetError(f"{where}: missing input column(s) {', '.join(missing)}")
        values = {k: record[k] for k in inputs}
    else:
        values = {k: v for k, v in record.items() if k not in RESERVED and not str(k).startswith("metadata.")}
    if not values:
        raise DatasetError(f"{where}: item {item_id!r} has no inputs (give an 'inputs' object or input fields)")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise DatasetError(f"{where}: 'metadata' must be an object, got {type(metadata).__name__}")
    metadata = {**metadata, **{k.split(".", 1)[1]: v for k, v in record.items() if str(k).startswith("metadata.")}}
    cluster = record.get("cluster")
    return DatasetItem(
        item_id=item_id,
        inputs=dict(values),
        expected=record.get("expected"),
        metadata=metadata,
        cluster=None if cluster in (None, "") else str(cluster),
    )


def read_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    # Bytes, decoded line by line, so a non-UTF-8 line is named by its number.
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                # utf-8-sig: editors on Windows start files with a byte-order mark.
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(
                    f"{path} line {n}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                out.append((f"{path} line {n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path} line {n}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    return out


def read_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    data = path.read_bytes()
    # Excel's "CSV UTF-8" starts with a byte-order mark, which would rename the first column.
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path} line {line}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise DatasetError(f"{path}: no header row")
    rows = []
    for n, row in enumerate(reader, 2):
        if None in row:
            raise DatasetError(f"{path} line {n}: more fields than the header has")
        rows.append((f"{path} line {n}", {k: v for k, v in row.items()}))
    return rows


class Datasets:
    """``bench.datasets``: load, version and fetch datasets."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(
        self,
        name: str,
        source: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | Any,
        *,
        inputs: list[str] | None = None,
    ) -> Dataset:
        """Load a JSONL or CSV file, a Polars frame or a list of dicts.

        Each record has ``inputs`` (an object) or input fields, and optionally
        ``id``, ``expected``, ``metadata`` and ``cluster``. ``inputs`` names the
        input columns of a flat file when other columns should be ignored.
        """
        records, label = self._records(source)
        if not records:
            raise DatasetError(f"{label}: no items")
        items = []
        seen: dict[str, str] = {}
        for idx, (where, record) in enumerate(records):
            item = item_from_record(record, idx, where, inputs=inputs)
            if item.item_id in seen:
                raise DatasetError(f"{where}: duplicate id {item.item_id!r} (first at {seen[item.item_id]})")
            seen[item.item_id] = where
            items.append(item)
        try:
            digest = content_hash([i.canonical() for i in items])
        except TypeError as exc:
            raise DatasetError(f"{label}: values must be JSON ({exc})") from None
        return self._save(name, items, digest, label)

    def _records(self, source: Any) -> tuple[list[tuple[str, Any]], str]:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise DatasetError(f"dataset file {path} not found")
            suffix = path.suffix.lower()
            if suffix in (".jsonl", ".ndjson"):
                return read_jsonl(path), str(path)
            if suffix == ".csv":
                return read_csv(path), str(path)
            if suffix == ".json":
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
                if not isinstance(data, list):
                    raise DatasetError(f"{path}: a .json dataset must be a list of objects")
                return [(f"{path} item {i + 1}", r) for i, r in enumerate(data)], str(path)
            raise DatasetError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .csv or .json")
        if hasattr(source, "to_dicts") and hasattr(source, "columns"):
            return [(f"frame row {i + 1}", r) for i, r in enumerate(source.to_dicts())], "frame"
        if isinstance(source, Iterable) and not isinstance(source, (bytes, Mapping)):
            return [(f"record {i + 1}", r) for i, r in enumerate(source)], "records"
        raise DatasetError(f"cannot load a dataset from {type(source).__name__}; give a path, a Polars frame or a list of dicts")

    def _save(self, name: str, items: list[DatasetItem], digest: str, source: str) -> Dataset:
        with self.store.transaction() as conn:
            row = conn.execute("SELECT id FROM datasets WHERE name = ? AND content_hash = ?", (name, digest)).fetchone()
            if row is None:
                (last,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM datasets WHERE name = ?", (name,)).fetchone()
                ds_id = new_id()
                conn.execute(
                    "INSERT INTO datasets (id, name, version, content_hash, n_items, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (ds_id, name, last + 1, digest, len(items), source, utc_now()),
                )
                conn.executemany(
                    "INSERT INTO dataset_items (dataset_id, item_id, idx, inputs_json, expected_json, metadata_json, cluster) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (ds_id, it.item_id, i, dumps(dict(it.inputs)), dumps(it.expected), dumps(dict(it.metadata)), it.cluster)
                        for i, it in enumerate(items)
                    ],
                )
        return self.get(name, content_hash=digest)

    def get(self, name: str, version: int | None = None, *, content_hash: str | None = None) -> Dataset:
        """The latest version of ``name``, a given version, or the one with a hash."""
        sql, params = "SELECT * FROM datasets WHERE name = ?", [name]
        if version is not None:
            sql += " AND version = ?"
            params.append(version)
        if content_hash is not None:
            sql += " AND content_hash = ?"
            params.append(content_hash)
        rows = self.store.query(sql + " ORDER BY version DESC LIMIT 1", params)
        if not rows:
            names = [r["name"] for r in self.store.query("SELECT DISTINCT name FROM datasets ORDER BY name")]
            what = f"dataset {name!r}" + (f" v{version}" if version is not None else "") + (f" with hash {content_hash}" if content_hash else "")
            raise DatasetNotFound(f"{what} not found; datasets: {', '.join(names) or 'none'}")
        return self._with_items(rows[0])

    def by_id(self, dataset_id: str) -> Dataset:
        rows = self.store.query("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
        if not rows:
            raise DatasetNotFound(f"dataset id {dataset_id} not found")
        return self._with_items(rows[0])

    def _with_items(self, row: dict[str, Any]) -> Dataset:
        items = tuple(
            DatasetItem(
                item_id=r["item_id"],
                inputs=loads(r["inputs_json"], {}),
                expected=loads(r["expected_json"]),
                metadata=loads(r["metadata_json"], {}),
                cluster=r["cluster"],
            )
            for r in self.store.query("SELECT * FROM dataset_items WHERE dataset_id = ? ORDER BY idx", (row["id"],))
        )
        return Dataset(row["id"], row["name"], row["version"], row["content_hash"], items, row["source"], row["created_at"])

    def list(self) -> list[dict[str, Any]]:
        """Every dataset version (name, version, items, hash, created_at)."""
        return self.store.query("SELECT name, version, n_items, content_hash, source, created_at FROM datasets ORDER BY name, version")

    def __repr__(self) -> str:
        return f"<Datasets {len(self.list())} versions>"
