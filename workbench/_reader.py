"""Arrow reads of the SQLite file, in a helper process.

ADBC's SQLite driver links its own copy of SQLite. Two SQLite libraries in one
process break each other's POSIX file locks: closing the driver's connection
drops the locks Python's ``sqlite3`` holds on the same file, and another
process (the CLI, Datasette, a second kernel) may then checkpoint and delete
the WAL under us; rows written afterwards were seen by no other process. So
the driver runs in a child process that never shares the file with Python's
``sqlite3``, and frames come back as an Arrow IPC stream over a pipe. The child
uses the driver manager's own Arrow stream with Polars, not pyarrow, which
would add half a second to its start.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

_OK, _ERR = b"O", b"E"


class ReaderError(RuntimeError):
    """The helper process failed to read."""


class ArrowReader:
    """A lazily started child process that answers SELECTs with Arrow tables."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            # Run this file as a script: the child needs the driver, not the workbench package.
            self._proc = subprocess.Popen(
                [sys.executable, "-u", __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self._proc

    def prestart(self) -> None:
        """Start the child now (it takes a few hundred ms to import the driver), not at the first read."""
        with self._lock:
            self._ensure()

    def read_parts(self, uri: str, parts: Sequence[tuple[str, Sequence[Any]]], options: dict[str, str],
                   ident: Sequence[Any] = ()) -> Any:
        """Run several SELECTs at once (one connection and thread each) and stack their rows in order."""
        import polars as pl

        request = json.dumps({
            "uri": uri, "ident": list(ident), "parts": [{"sql": q, "params": list(p)} for q, p in parts], "options": options,
        }).encode() + b"\n"
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                head = _read_exact(proc.stdout, 9)
                payload = _read_exact(proc.stdout, int.from_bytes(head[1:], "little"))
            except (OSError, EOFError) as exc:
                self.close()
                raise ReaderError(f"the Arrow reader process stopped: {exc}") from None
        if head[:1] == _ERR:
            raise ReaderError(payload.decode("utf-8", "replace"))
        return pl.read_ipc_stream(payload)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                proc.kill()


def _read_exact(stream: Any, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError(f"expected {left} more bytes")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_reader: ArrowReader | None = None


def reader() -> ArrowReader:
    global _reader
    if _reader is None:
        _reader = ArrowReader()
    return _reader


def _forget_in_child() -> None:
    global _reader
    _reader = None  # the pipe belongs to the parent


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(lambda: _reader is not None and _reader.close())


def serve() -> None:
    """The child's loop: one JSON request per line, one framed Arrow stream per answer."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    import adbc_driver_manager as adbc
    import adbc_driver_sqlite
    import polars as pl

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    driver = adbc_driver_sqlite._driver_path()
    conns: dict[tuple[str, int], tuple[Any, Any]] = {}
    pool = ThreadPoolExecutor(max_workers=4)

    def run(uri: str, ident: Any, slot: int, sql: str, params: list[Any], options: dict[str, str]) -> Any:
        # The driver releases the GIL while it reads: parts on their own connections overlap.
        held = conns.get((uri, slot))
        if held is not None and held[0] != ident:
            # Another file now sits at this path (deleted and made again): the open connection
            # would go on reading the deleted one.
            held[1].close()
            held = None
        if held is None:
            held = conns[(uri, slot)] = (ident, adbc.AdbcConnection(adbc.AdbcDatabase(driver=driver, uri=uri)))
        conn = held[1]
        stmt = adbc.AdbcStatement(conn)
        try:
            if options:
                stmt.set_options(**options)
            stmt.set_sql_query(sql)
            if params:
                stmt.bind_stream(pl.DataFrame({f"p{i}": [v] for i, v in enumerate(params)}).__arrow_c_stream__())
            stream, _ = stmt.execute_query()
            frame = pl.DataFrame(stream)
        finally:
            stmt.close()
        return frame

    for line in stdin:
        try:
            req = json.loads(line)
            futures = [
                pool.submit(run, req["uri"], req.get("ident"), slot, part["sql"], part["params"], req["options"])
                for slot, part in enumerate(req["parts"])
            ]
            frames = [f.result() for f in futures]
            frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")
            sink = io.BytesIO()
            frame.write_ipc_stream(sink)
            out, status = sink.getvalue(), _OK
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            out, status = f"{type(exc).__name__}: {exc}".encode(), _ERR
        stdout.write(status + len(out).to_bytes(8, "little"))
        stdout.write(out)
        stdout.flush()


if __name__ == "__main__":
    serve()
