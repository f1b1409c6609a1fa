"""Datasets: items with inputs, an expected output, metadata and a cluster.

Content-hashed and versioned by name: loading changed content under a name
makes a new version; identical content returns the existing one. Only this
module writes ``datasets`` and ``dataset_items``.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import _html
from ._canonical import (
    MAX_DEPTH,
    ListHash,
    TooDeeplyNested,
    canonical_json,
    dumps,
    escape_surrogates,
    escape_surrogates_in,
    loads,
)
from ._ids import new_id, utc_now
from .errors import DatasetError, DatasetNotFound

if TYPE_CHECKING:
    import polars as pl

    from .store import Store

RESERVED = ("id", "inputs", "expected", "metadata", "cluster")


class InvalidTextWarning(UserWarning):
    """Text that is not valid Unicode (a lone surrogate) was stored with ``\\udXXX`` escapes."""


@dataclass(frozen=True, slots=True)
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


def _escaped(item: DatasetItem) -> DatasetItem:
    """``item`` with every lone surrogate in its text written as a ``\\udXXX`` escape."""
    return DatasetItem(
        item_id=escape_surrogates(item.item_id),
        inputs=escape_surrogates_in(dict(item.inputs)),
        expected=escape_surrogates_in(item.expected),
        metadata=escape_surrogates_in(dict(item.metadata)),
        cluster=None if item.cluster is None else escape_surrogates(item.cluster),
    )


# -- reading files, one record at a time ----------------------------------------------------------
# Each reader yields (line or item number, record) and reads the file as it goes,
# so a million-item file is never held twice.

Records = Iterator[tuple[int, Any]]


def _parse_json(text: str, where: Callable[[int | None], str]) -> Any:
    """``json.loads`` whose failures are DatasetErrors naming the place."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where(exc.lineno)}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DatasetError(
            f"{where(None)}: JSON nested too deeply to parse (items may nest at most {MAX_DEPTH} levels); "
            "flatten it or store the deep part as a string"
        ) from None
    except ValueError as exc:
        # Python refuses to parse integers longer than sys.get_int_max_str_digits().
        raise DatasetError(
            f"{where(None)}: a number too long to read ({exc.args[0].split(':')[0]}); store it as a string"
        ) from None


def read_jsonl(path: Path) -> Records:
    """Records of a JSON Lines file; blank lines are skipped but counted."""
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
            yield n, _parse_json(line, lambda _, n=n: f"{path} line {n}")


def _text_lines(fh: IO[bytes], path: Path) -> Iterator[str]:
    """The lines of a binary file as text, each decoded on its own so an error names its line."""
    for n, raw in enumerate(fh, 1):
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path} line {n}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
        if "\r" in line and not line.endswith("\r\n"):
            # Old Mac files end lines with a bare CR; csv wants each as its own line.
            yield from (piece for piece in re.split("(?<=\r)(?!\n)", line) if piece)
        else:
            yield line


def read_csv(path: Path) -> Records:
    """Records of a CSV file with a header row, keyed by the header's names.

    A row with more or fewer fields than the header is refused with its line
    number (a missing field would otherwise reach the model as ``None``).
    """
    with path.open("rb") as fh:
        reader = csv.reader(_text_lines(fh, path))
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise DatasetError(f"{path} line 1: {_csv_problem(exc)}") from None
        if not header:
            raise DatasetError(f"{path}: no header row")
        doubled = sorted({h for h in header if header.count(h) > 1})
        if doubled:
            raise DatasetError(f"{path} line 1: column {doubled[0]!r} appears more than once in the header; rename one")
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader, None)
            except csv.Error as exc:
                raise DatasetError(f"{path} line {start}: {_csv_problem(exc)}") from None
            if row is None:
                return
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                if len(row) > len(header):
                    problem = f"more fields than the header has ({len(row)}, the header has {len(header)})"
                else:
                    missing = ", ".join(header[len(row):])
                    problem = (f"fewer fields than the header has ({len(row)} of {len(header)}; "
                               f"no value for {missing})")
                raise DatasetError(f"{path} line {start}: {problem}; quote fields that hold commas or line breaks")
            yield start, dict(zip(header, row))


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return (
            f"a field is longer than {csv.field_size_limit():,} characters, csv's limit: a quote left "
            "open runs on to the end of the file, or the text is that long (JSONL has no such limit)"
        )
    return f"not valid CSV ({text})"


def read_json(path: Path) -> Records:
    """Records of a ``.json`` file holding one list of objects."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path} line {line}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    parsed = _parse_json(text, lambda line: f"{path}" + ("" if line is None else f" line {line}"))
    if not isinstance(parsed, list):
        raise DatasetError(f"{path}: a .json dataset must be a list of objects")
    # Hand each record over and forget it, so the list shrinks as the items grow.
    parsed.reverse()
    n = 0
    while parsed:
        n += 1
        yield n, parsed.pop()


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
        """Load a JSONL, CSV or JSON file, a Polars frame or a list of dicts.

        Each record has ``inputs`` (an object) or input fields, and optionally
        ``id``, ``expected``, ``metadata`` and ``cluster``. ``inputs`` names the
        input columns of a flat file when other columns should be ignored.

        Files are read and hashed one item at a time. Text that is not valid
        Unicode (a lone surrogate such as ``"\\ud800"``) is stored as a
        ``\\ud800`` escape, with an `InvalidTextWarning` naming the items.

        Raises:
            DatasetError: the file or a record is malformed; the message names
                the file and line (or record) and what to change.
        """
        records, label, where = self._records(source)
        items: list[DatasetItem] = []
        first_at: dict[str, int] = {}
        digest = ListHash()
        escaped: list[str] = []
        for idx, (at, record) in enumerate(records):
            item = item_from_record(record, idx, where(at), inputs=inputs)
            if item.item_id in first_at:
                raise DatasetError(f"{where(at)}: duplicate id {item.item_id!r} (first at {where(first_at[item.item_id])})")
            first_at[item.item_id] = at
            try:
                try:
                    data = canonical_json(item.canonical()).encode("utf-8")
                except UnicodeEncodeError:
                    item = _escaped(item)
                    data = canonical_json(item.canonical()).encode("utf-8")
                    escaped.append(where(at))
            except (TooDeeplyNested, RecursionError):
                raise DatasetError(
                    f"{where(at)}: nested more than {MAX_DEPTH} levels deep; flatten it or store the deep part as a string"
                ) from None
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"{where(at)}: values must be JSON ({exc})") from None
            digest.add(data)
            items.append(item)
        del first_at
        if not items:
            raise DatasetError(f"{label}: no items")
        if escaped:
            shown = "; ".join(escaped[:3]) + (f" and {len(escaped) - 3:,} more" if len(escaped) > 3 else "")
            warnings.warn(
                f"{len(escaped):,} item{'s' if len(escaped) != 1 else ''} of {label} held text that is not valid "
                f"Unicode (a lone surrogate, as a non-UTF-8 file name gives): stored with \\udXXX escapes ({shown})",
                InvalidTextWarning,
                stacklevel=2,
            )
        # Values from a file are plain JSON and read back as they are; a frame's or a
        # list's (dates, tuples, ...) read back as their JSON, so convert them now.
        as_stored = label in ("frame", "records")
        return self._save(name, items, digest.digest(), label, as_stored=as_stored)

    def _records(self, source: Any) -> tuple[Records, str, Callable[[int], str]]:
        """(numbered records, a label for messages, where(number) -> 'file line n')."""
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise DatasetError(f"dataset file {path} not found")
            suffix = path.suffix.lower()
            prefix = f"{path} line "
            if suffix in (".jsonl", ".ndjson"):
                return read_jsonl(path), str(path), lambda n: prefix + str(n)
            if suffix == ".csv":
                return read_csv(path), str(path), lambda n: prefix + str(n)
            if suffix == ".json":
                return read_json(path), str(path), lambda n: f"{path} item {n}"
            raise DatasetError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .csv or .json")
        if hasattr(source, "iter_rows") and hasattr(source, "columns"):
            return enumerate(source.iter_rows(named=True), 1), "frame", lambda n: f"frame row {n}"
        if hasattr(source, "to_dicts") and hasattr(source, "columns"):
            return enumerate(source.to_dicts(), 1), "frame", lambda n: f"frame row {n}"
        if isinstance(source, Iterable) and not isinstance(source, (bytes, str, Mapping)):
            return enumerate(source, 1), "records", lambda n: f"record {n}"
        raise DatasetError(f"cannot load a dataset from {type(source).__name__}; give a path, a Polars frame or a list of dicts")

    def _save(self, name: str, items: list[DatasetItem], digest: str, source: str, *, as_stored: bool) -> Dataset:
        def rows() -> Iterator[tuple[Any, ...]]:
            for i, it in enumerate(items):
                metadata_json = dumps(dict(it.metadata)) if it.metadata else "{}"
                inputs_json, expected_json = dumps(dict(it.inputs)), dumps(it.expected)
                if as_stored:
                    # Swap in the item as `get` will read it back, freeing the original.
                    items[i] = DatasetItem(it.item_id, loads(inputs_json, {}), loads(expected_json),
                                           loads(metadata_json, {}), it.cluster)
                yield (ds_id, it.item_id, i, inputs_json, expected_json, metadata_json, it.cluster)

        with self.store.transaction() as conn:
            row = conn.execute("SELECT id FROM datasets WHERE name = ? AND content_hash = ?", (name, digest)).fetchone()
            if row is None:
                (last,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM datasets WHERE name = ?", (name,)).fetchone()
                ds_id, version, created_at = new_id(), last + 1, utc_now()
                conn.execute(
                    "INSERT INTO datasets (id, name, version, content_hash, n_items, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (ds_id, name, version, digest, len(items), source, created_at),
                )
                conn.executemany(
                    "INSERT INTO dataset_items (dataset_id, item_id, idx, inputs_json, expected_json, metadata_json, cluster) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows(),
                )
        if row is not None:
            items.clear()  # the stored version is read back instead; do not hold both
            return self.get(name, content_hash=digest)
        return Dataset(ds_id, name, version, digest, tuple(items), source, created_at)

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
        # Rows are turned into items as the cursor yields them, never all held as dicts.
        cursor = self.store.execute(
            "SELECT item_id, inputs_json, expected_json, metadata_json, cluster FROM dataset_items "
            "WHERE dataset_id = ? ORDER BY idx",
            (row["id"],),
        )
        items = tuple(
            DatasetItem(item_id, loads(inputs_json, {}), loads(expected_json), loads(metadata_json, {}), cluster)
            for item_id, inputs_json, expected_json, metadata_json, cluster in cursor
        )
        return Dataset(row["id"], row["name"], row["version"], row["content_hash"], items, row["source"], row["created_at"])

    def list(self) -> list[dict[str, Any]]:
        """Every dataset version (name, version, items, hash, created_at)."""
        return self.store.query("SELECT name, version, n_items, content_hash, source, created_at FROM datasets ORDER BY name, version")

    def __repr__(self) -> str:
        return f"<Datasets {len(self.list())} versions>"
