"""The spill file: rows the background writer could not commit, kept beside the database.

A full disk, a read-only file or a corrupt page must not lose traces. The writer
appends the rows of a failed commit here, as JSON lines, and writes them into
the database on its next successful commit, on ``flush()``, or when someone runs
``workbench db recover``. A row SQLite itself refuses (a value it cannot store)
is kept too, marked ``failed`` with its error, so it is never lost without a word.

The file is ``<database>.spill.jsonl``. When it cannot be written either (the
same full disk, a read-only folder) the rows go to a fallback file in the
temporary folder, named after the database's path; readers merge both. Lines::

    {"sql_id":"3f2a...","sql":"INSERT INTO traces (...) VALUES (...)"}
    {"kind":"pending","sql_id":"3f2a...","row":[...],"error":"database or disk is full","at":"..."}
    {"kind":"failed","sql_id":"3f2a...","row":[...],"error":"Error binding parameter 5 ...","at":"..."}

Statements are written once per append, not once per row. Processes that share
a database share its spill files under one exclusive lock, kept in the temporary
folder beside the fallback file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: one process per file is the common case there
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".spill.jsonl"
PENDING, FAILED = "pending", "failed"
_PENDING_PREFIX = b'{"kind":"pending"'
_FAILED_PREFIX = b'{"kind":"failed"'


@dataclass
class Entry:
    """One kept row."""

    kind: str
    """``pending`` (the file refused it) or ``failed`` (SQLite refuses the row itself)."""
    sql: str
    row: tuple[Any, ...]
    error: str | None
    at: str


def primary_path(db_path: str) -> str:
    """``<database>.spill.jsonl`` beside the database."""
    return os.fspath(db_path) + SUFFIX


def fallback_path(db_path: str) -> str:
    """The spill file in the temporary folder, for when the database's folder takes nothing."""
    full = Path(db_path).resolve().as_posix()
    digest = hashlib.sha256(full.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "workbench-spill", f"{Path(full).name}-{digest}{SUFFIX}")


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - keep the row even when its value cannot describe itself
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return {"$repr": text}


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$b64" in value:
            return base64.b64decode(value["$b64"])
        # A value SQLite never took: keep it described, it cannot be replayed as it was.
        return _Unreplayable(value.get("$repr", repr(value)))
    return value


class _Unreplayable:
    """A value kept only as its ``repr``: SQLite cannot bind it, so its row stays ``failed``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text  # written back as the same {"$repr": ...}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _lines(entries: Sequence[tuple[str, str, Sequence[Any], str | None]]) -> bytes:
    """JSON lines for ``(kind, sql, row, error)`` entries, each statement defined once."""
    out: list[str] = []
    ids: dict[str, str] = {}
    at = _now()
    for kind, sql, row, error in entries:
        sql_id = ids.get(sql)
        if sql_id is None:
            sql_id = ids[sql] = hashlib.sha256(sql.encode()).hexdigest()[:16]
            out.append(json.dumps({"sql_id": sql_id, "sql": sql}, separators=(",", ":")))
        out.append(json.dumps(
            {"kind": kind, "sql_id": sql_id, "row": [_encode(v) for v in row], "error": error, "at": at},
            separators=(",", ":"),
        ))
    return ("\n".join(out) + "\n").encode("utf-8", "surrogatepass") if out else b""


@dataclass
class Session:
    """The entries of a locked spill file; set ``changed`` to write ``entries`` back."""

    entries: list[Entry]
    changed: bool = False


class Spill:
    """The spill files of one database."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.paths = (primary_path(db_path), fallback_path(db_path))
        self.lock_path = self.paths[1][: -len(SUFFIX)] + ".spill.lock"

    def append(self, entries: Sequence[tuple[str, str, Sequence[Any], str | None]]) -> str:
        """Append ``(kind, sql, row, error)`` entries durably; returns the file used.

        Raises OSError when neither file can be written.
        """
        data = _lines(entries)
        last: OSError | None = None
        with self._locked():
            for path in self.paths:
                try:
                    if path == self.paths[1]:
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                    _append(path, data)
                    return path
                except OSError as exc:
                    last = exc
        assert last is not None
        raise last

    def counts(self) -> tuple[int, int]:
        """(pending, failed) rows over both files, without parsing the JSON."""
        pending = failed = 0
        for counted in self._counts().values():
            pending += counted[0]
            failed += counted[1]
        return pending, failed

    def _counts(self) -> dict[str, tuple[int, int]]:
        found = {}
        for path in self.paths:
            pending = failed = 0
            try:
                with open(path, "rb") as fh:
                    for line in fh:
                        if line.startswith(_PENDING_PREFIX):
                            pending += 1
                        elif line.startswith(_FAILED_PREFIX):
                            failed += 1
            except OSError:
                continue  # missing, or unreadable: health says what it can
            if pending or failed:
                found[path] = (pending, failed)
        return found

    def existing(self) -> list[str]:
        return [p for p in self.paths if os.path.exists(p)]

    def where(self) -> str | None:
        """The spill file(s) holding rows, for messages (``a and b`` when both do), or None."""
        found = list(self._counts())
        return " and ".join(found) if found else None

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Lock both files and read every entry; when the caller sets ``changed``, its
        ``entries`` are written back (to the primary file when it can be written), and
        an empty list removes the files.
        """
        with self._locked():
            session = Session([e for path in self.paths for e in _read(path)])
            yield session
            if session.changed:
                self._rewrite(session.entries)

    def _rewrite(self, entries: list[Entry]) -> None:
        if not entries:
            for name in (*self.paths, self.lock_path):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)
            return
        data = _lines([(e.kind, e.sql, e.row, e.error) for e in entries])
        for i, path in enumerate(self.paths):
            try:
                _replace(path, data)
            except OSError:
                continue
            for other in self.paths[i + 1:] + self.paths[:i]:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(other)
            return
        # Neither can be rewritten: the old files stay. Rows already written would be
        # written again by the next replay, where a duplicate id counts as written.

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One lock for both files, kept in the temporary folder so none is left beside the database."""
        if fcntl is None:
            yield
            return
        while True:
            try:
                os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                yield  # no temporary folder to lock in: one process per file is the common case
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder before us removed it: lock the new one
        try:
            yield
        finally:
            # Leave no lock file behind when the temporary folder holds no rows of ours
            # (a waiter on the removed file sees it is gone and locks afresh).
            if not os.path.exists(self.paths[1]):
                with contextlib.suppress(OSError):
                    os.remove(self.lock_path)
            os.close(fd)


def _append(path: str, data: bytes) -> None:
    """Append whole lines durably; on failure leave the file as it was (or absent)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        # A full disk takes half a line: cut back so every line stays whole.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        os.close(fd)
        if size == 0:
            with contextlib.suppress(OSError):
                os.remove(path)
        raise
    os.close(fd)


def _replace(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".spill-", suffix=".tmp")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _read(path: str) -> list[Entry]:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return []
    statements: dict[str, str] = {}
    entries: list[Entry] = []
    with fh:
        for raw in fh:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue  # a line cut by a crash mid-append; every whole line is kept
            if "sql" in obj:
                statements[obj["sql_id"]] = obj["sql"]
                continue
            sql = statements.get(obj.get("sql_id", ""))
            if sql is None:
                continue
            entries.append(Entry(obj["kind"], sql, tuple(_decode(v) for v in obj["row"]), obj.get("error"), obj.get("at", "")))
    return entries
