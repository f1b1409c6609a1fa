"""The background writer: batched commits within a bounded window, kept rows, signals.

``BatchWriter`` is a thread that commits queued rows at least every
``WRITER_WINDOW_S``; its batches and its queue's bound follow its measured
speed, so a queued row is on disk within the window and a SIGKILL loses at most
that window. Rows the file refuses are kept in the spill file (``_spill.py``)
and written later. SIGTERM and SIGHUP write the queue before the process ends
(when the application has no handler of its own); a normal exit does it through
``atexit``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _spill
from ._sqlite import SqliteBackend
from .errors import RowsNotWritten, StoreError

WRITER_QUEUE_SIZE = 100_000
"""Most rows that may ever wait for disk; the writer keeps far fewer (``WRITER_WINDOW_S``)."""
WRITER_BATCH = 5_000
"""Rows per transaction until the writer has measured its own speed."""
WRITER_BATCH_MAX = 50_000
"""Rows per transaction at most, however fast the disk."""
WRITER_BATCH_MIN = 100
"""Rows per transaction at least, however slow the disk (and the most a caller can be made to wait behind)."""
WRITER_WINDOW_S = 0.2
"""The writer commits a queued row within this long: a SIGKILL loses at most this window."""
IDLE_AFTER_S = 0.05
"""The writer does idle work (the search index) once its queue has been empty this long."""
SIGNAL_FLUSH_S = 5.0
"""On SIGTERM, how long the writer may take to commit the queue before the rest is spilled."""
REPLAY_EVERY_S = 1.0
"""While the file refuses rows, kept rows are retried at most this often (and on every flush)."""


_SYNC = object()
"""Marker: wake me when what was queued before is committed or kept."""
_FLUSH = object()
"""Marker: as _SYNC, and retry kept rows now."""
_STOP = object()
_live_writers: weakref.WeakSet[BatchWriter] = weakref.WeakSet()


class _RowQueue:
    """A FIFO whose bound the writer moves; takers get whole batches under one lock."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: deque[Any] = deque()
        self.lock = threading.Lock()
        self.not_empty = threading.Condition(self.lock)
        self.not_full = threading.Condition(self.lock)

    def put(self, item: Any) -> None:
        with self.not_full:
            while len(self.items) >= self.maxsize:
                self.not_full.wait()
            self.items.append(item)
            self.not_empty.notify()

    def put_control(self, item: Any) -> None:
        """Queue a marker (flush, stop) even when full: it waits behind the rows, not for room."""
        with self.lock:
            self.items.append(item)
            self.not_empty.notify()

    def take(self, most: int, bound: int, timeout: float | None = None) -> list[Any]:
        """Up to ``most`` items, waiting for the first (or ``timeout`` seconds: then none);
        sets the queue's bound to ``bound``."""
        with self.not_empty:
            if not self.items and timeout is not None:
                self.not_empty.wait(timeout)
                if not self.items:
                    return []
            while not self.items:
                self.not_empty.wait()
            n = min(most, len(self.items))
            batch = [self.items.popleft() for _ in range(n)]
            self.maxsize = bound
            self.not_full.notify_all()
            return batch

    def qsize(self) -> int:
        return len(self.items)


class BatchWriter:
    """A background thread that inserts queued rows in batched transactions.

    ``put(sql, row)`` returns at once unless the writer is a window behind (then
    it waits: backpressure, never a drop). Rows with the same SQL are written
    with a few multi-row INSERTs per batch. Batches and the queue's bound follow the
    writer's measured speed, so a queued row is committed within
    ``WRITER_WINDOW_S``. Rows the file refuses are kept (``keep``) and retried.
    """

    def __init__(self, path: str, maxsize: int = WRITER_QUEUE_SIZE, *, backend: Any = None,
                 idle: Callable[[Any], bool] | None = None) -> None:
        self.path = path
        self.idle = idle
        """Work for quiet moments, on the writer's connection (catching the search index up);
        returns True while more is left. Never delays a queued row: it runs only when the
        queue has been empty for ``IDLE_AFTER_S``."""
        self._idle_due = idle is not None
        self.backend = backend if backend is not None else SqliteBackend(path)
        """Connections, commits and error translation: ``_sqlite.SqliteBackend`` or ``_pg.PgBackend``."""
        self.maxsize = maxsize
        self.written = 0
        self.failed = 0
        """Rows this writer found SQLite refuses (kept in the spill file with their error)."""
        self.spilled = 0
        """Rows this writer moved to the spill file because the file refused them."""
        self.held: list[tuple[str, str, Sequence[Any], str | None]] = []
        """Kept rows no spill file took: (kind, sql, row, error)."""
        self.last_error: StoreError | None = None
        self.spill_error: str | None = None
        self.spill = _spill.Spill(self.backend.spill_base)
        self._closed = False
        self._batch = min(maxsize, WRITER_BATCH)
        self._row_s: float | None = None
        self._inflight: list[Any] = []
        self._troubled = False
        self._replay_due = bool(self.spill.existing())
        self._replay_after = 0.0
        self._failed_seen = self.spill.counts()[1] if self._replay_due else 0
        self._start()
        _live_writers.add(self)

    def _start(self) -> None:
        self.queue = _RowQueue(self._batch)
        self._thread = threading.Thread(target=self._run, name="workbench-writer", daemon=True)
        self._thread.start()

    # -- the caller's side ------------------------------------------------------------------

    def put(self, sql: str, row: Sequence[Any]) -> None:
        if self._closed:
            raise StoreError("the trace writer is closed; open the workbench again")
        self.queue.put((sql, row))

    def put_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.put(sql, row)

    def pending(self) -> int:
        """Rows in memory: queued, being written, or held after a failed commit."""
        inflight = sum(1 for item in self._inflight if isinstance(item[0], str))
        return self.queue.qsize() + inflight + len(self.held)

    def sync(self, timeout: float | None = None, *, retry: bool = False) -> None:
        """Wait until the rows queued so far are committed or kept aside (``retry``: kept rows are retried now)."""
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        self.queue.put_control((_FLUSH if retry else _SYNC, done))
        if not done.wait(timeout):
            raise StoreError(
                f"the trace writer did not finish writing to {self.path} within {timeout} s; its rows stay queued"
            )

    def flush(self, timeout: float | None = None) -> None:
        """``sync`` (retrying kept rows), then raise ``RowsNotWritten`` if rows are outside the file."""
        self.sync(timeout, retry=True)
        self.check()

    async def flush_async(self) -> None:
        """Await until every row queued so far is committed (or kept), without blocking the loop.

        Many awaiting callers share one commit (group commit).
        """
        if self._closed or not self._thread.is_alive():
            return
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done() -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

        self.queue.put_control((_SYNC, done))
        await future

    def close(self) -> None:
        """Write the queue, stop the thread; raises ``RowsNotWritten`` if rows stay outside the file."""
        if self._closed:
            return
        self.sync(retry=True)
        self._closed = True
        self.queue.put_control((_STOP, None))
        self._thread.join()
        if self.held:
            self._spill_held()
        self.check()

    def check(self) -> None:
        """Raise ``RowsNotWritten`` while rows are outside the file (failed rows: once each)."""
        pending, failed = self.spill.counts()
        held = len(self.held)
        new_failed = failed - self._failed_seen
        if not (pending or held or new_failed > 0):
            return
        self._failed_seen = failed
        raise RowsNotWritten(
            self._outside_message(pending, failed, held), pending=pending + held, failed=failed,
            spill_path=self.spill.where(),
        )

    def _outside_message(self, pending: int, failed: int, held: int) -> str:
        total = pending + failed + held
        where = self.spill.where() or self.spill.paths[0]
        parts = []
        if pending:
            parts.append(f"{_rows(pending, 'waits', 'wait')} in {where}")
        if held:
            parts.append(
                f"{_rows(held)} only in this process's memory, because no spill file could be written "
                f"({self.spill_error}); they are lost if the process ends before the file takes them"
            )
        if failed:
            parts.append(f"{_rows(failed, 'can', 'can')} never be written (the database refuses a value; each is kept in {where} with its error)")
        cause = f" The file refused them: {self.last_error}" if (pending or held) and self.last_error is not None else ""
        return (
            f"{_rows(total)} not in {self.path}: " + "; ".join(parts) + "." + cause + " "
            f"Fix the cause, then call flush() again or run `workbench db recover --db {self.path}`."
        )

    def keep(self, entries: list[tuple[str, str, Sequence[Any], str | None]], error: BaseException | None = None) -> str:
        """Keep rows the file refused (spill file, else memory); returns where, as a sentence."""
        if error is not None and not self.backend.row_level(error):
            self.last_error = self.backend.translate(error, "writing to")
        pending = sum(1 for e in entries if e[0] == _spill.PENDING)
        failed = len(entries) - pending
        try:
            where = self.spill.append(entries)
        except OSError as exc:
            self.held.extend(entries)
            self.spill_error = exc.strerror or str(exc)
            sentence = (
                f"{_rows(len(entries))} kept in memory only: no spill file could be written "
                f"({exc.strerror}); they are lost if this process ends before the file takes them."
            )
        else:
            self.spilled += pending
            self.failed += failed
            parts = []
            if pending:
                parts.append(
                    f"{_rows(pending)} kept in {where} and go into the file at its next successful write "
                    f"(or `workbench db recover --db {self.path}`)."
                )
            if failed:
                first = next(e[3] for e in entries if e[0] == _spill.FAILED)
                parts.append(
                    f"{_rows(failed, 'can', 'can')} never be written, because the database refuses a value ({first}); "
                    f"{'it is' if failed == 1 else 'they are'} kept in {where} with {'its' if failed == 1 else 'their'} error."
                )
            sentence = " ".join(parts)
        self._replay_due = self._replay_due or bool(pending) or bool(self.held)
        if not self._troubled or failed:
            # Once per trouble, not once per batch: flush(), close() and health() give the counts.
            self._troubled = self._troubled or bool(pending)
            reason = f"{self.last_error} " if pending and self.last_error is not None else ""
            warnings.warn(f"workbench could not write to {self.path}: {reason}{sentence}", RuntimeWarning, stacklevel=2)
        return sentence

    def retry_held_now(self) -> None:
        """Move rows held in memory to the spill file (``recover`` then writes them)."""
        if self.held:
            self._spill_held()

    def _spill_held(self) -> None:
        held, self.held = self.held, []
        try:
            self.spill.append(held)
        except OSError:
            self.held = held + self.held

    def drain_for_exit(self, deadline: float) -> None:
        """On a terminating signal: commit the queue, or spill what is left at ``deadline``."""
        if self._closed or not self._thread.is_alive():
            return
        done = threading.Event()
        self.queue.put_control((_FLUSH, done))
        if done.wait(max(0.0, deadline - time.monotonic())):
            if self.held:
                self._spill_held()
            return
        # The writer is stuck (a lock held elsewhere, a slow disk): keep what it has not written.
        with self.queue.lock:
            rest = list(self.queue.items)
            self.queue.items.clear()
        rows = [(_spill.PENDING, sql, row, "the process ended before the writer could commit")
                for sql, row in list(self._inflight) + rest if isinstance(sql, str)]
        with contextlib.suppress(OSError):
            self.spill.append(rows + self.held)

    # -- the writer's thread ----------------------------------------------------------------

    def _run(self) -> None:
        conn: Any = None
        try:
            while True:
                batch = self.queue.take(self._batch, min(self.maxsize, self._batch),
                                        IDLE_AFTER_S if self._idle_due else None)
                if not batch:
                    conn = self._idle_step(conn)
                    continue
                self._inflight = batch
                try:
                    if conn is None:
                        conn = self.backend.connect()
                    stop = self._write(conn, batch)
                    self._idle_due = self.idle is not None
                except Exception as exc:  # noqa: BLE001 - the writer must outlive any failure, keeping the rows
                    stop = self._write_failed(batch, exc)
                    if conn is not None:  # start again from a fresh connection
                        self.backend.close(conn)
                        conn = None
                finally:
                    self._inflight = []
                if stop:
                    return
        finally:
            if conn is not None:
                self.backend.close(conn)

    def _idle_step(self, conn: Any) -> Any:
        """One piece of idle work; a failure only ends it until the next commit (a search catches up then)."""
        try:
            if conn is None:
                conn = self.backend.connect()
            self._idle_due = bool(self.idle(conn))  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - optional work must never disturb the rows' path
            self._idle_due = False
        return conn

    def _write_failed(self, batch: list[Any], exc: BaseException) -> bool:
        """The connection itself failed: keep the batch's rows and release its waiters."""
        rows = [(_spill.PENDING, sql, payload, None) for sql, payload in batch if isinstance(sql, str)]
        if rows:
            self.keep(rows, exc)
        stop = False
        for sql, payload in batch:
            if sql is _SYNC or sql is _FLUSH:
                _signal(payload)
            elif sql is _STOP:
                stop = True
        return stop

    def _write(self, conn: Any, batch: list[Any]) -> bool:
        items: list[tuple[str, Sequence[Any]]] = []
        events: list[Any] = []
        force = stop = False
        for sql, payload in batch:
            if sql is _SYNC or sql is _FLUSH:
                events.append(payload)
                force = force or sql is _FLUSH
            elif sql is _STOP:
                stop = force = True
            else:
                items.append((sql, payload))
        committed = self._commit(conn, items) if items else True
        if force and not self._replay_due:
            self._replay_due = bool(self.spill.existing())  # another process may have kept rows
        # Kept rows go in before anyone waiting on this batch reads (an experiment must see
        # its kept calls, or it would pay for them again), with the next commit that works,
        # and otherwise at most every REPLAY_EVERY_S while the file refuses them.
        if self._replay_due and (events or force or (committed and time.monotonic() >= self._replay_after)):
            self._retry_kept(conn)
        for ev in events:
            _signal(ev)
        return stop

    def _commit(self, conn: Any, items: list[tuple[str, Sequence[Any]]]) -> bool:
        """Write ``items``; keep what the file refuses. True when all were committed."""
        t0 = time.perf_counter()
        written, kept, failed, error = self.backend.write_rows(conn, items)
        self.written += written
        if not kept and not failed:
            self._measure(len(items), time.perf_counter() - t0)
            if not self._replay_due:
                self._troubled = False
            return True
        entries = [(_spill.PENDING, items[i][0], items[i][1], None) for i in kept]
        entries += [(_spill.FAILED, items[i][0], items[i][1], why) for i, why in failed]
        self.keep(entries, error)
        return not kept

    def _measure(self, n: int, seconds: float) -> None:
        """Size batches and the queue from the measured time per row.

        A queued row waits for at most the batch being written, then is written in
        the next: two batches. Each is sized to an eighth of the window, because a
        commit sometimes takes several times its usual time (a checkpoint, a busy
        machine, the caller's thread holding the GIL); the estimate rises at once
        on a slow commit and comes down slowly.
        """
        if n < WRITER_BATCH_MIN:
            return
        per_row = seconds / n
        if self._row_s is None or per_row > self._row_s:
            self._row_s = per_row
        else:
            self._row_s = 0.8 * self._row_s + 0.2 * per_row
        target = int(WRITER_WINDOW_S / 8 / max(self._row_s, 1e-7))
        self._batch = max(WRITER_BATCH_MIN, min(target, WRITER_BATCH_MAX, self.maxsize))

    def _retry_kept(self, conn: Any) -> None:
        """Write rows kept after earlier failures: held in memory first, then the spill file."""
        self._replay_after = time.monotonic() + REPLAY_EVERY_S
        if self.held:
            self._spill_held()
        try:
            result = _replay(self.backend, conn, self.spill)
        except OSError:
            return  # the spill file cannot be read or rewritten now; try again later
        self.written += result.written
        if result.error is not None:
            self.last_error = self.backend.translate(result.error, "writing to")
            return
        # Failed rows stay in the spill file but are not retried on their own: only recover() does.
        self._replay_due = bool(self.held)
        self._troubled = self._replay_due


def _rows(n: int, one: str = "is", many: str = "are") -> str:
    """``1 row is``, ``2,000 rows are``."""
    from ._format import count

    return f"{count(n)} row {one}" if n == 1 else f"{count(n)} rows {many}"


def _signal(event: Any) -> None:
    # A threading.Event from sync(), or a callback from flush_async().
    event.set() if isinstance(event, threading.Event) else event()


@dataclass
class _Replayed:
    written: int = 0
    failed_left: int = 0
    error: BaseException | None = None


def _replay(
    backend: Any, conn: Any, spill: _spill.Spill, *, retry_failed: bool = False, discard_failed: bool = False
) -> _Replayed:
    """Write the spill file's pending rows (and failed ones when asked) into the file."""
    result = _Replayed()
    if not spill.existing():
        return result
    with spill.session() as session:
        todo = [i for i, e in enumerate(session.entries) if e.kind == _spill.PENDING or (retry_failed and e.kind == _spill.FAILED)]
        if todo:
            written, kept, failed, error = backend.write_rows(
                conn, [(session.entries[i].sql, session.entries[i].row) for i in todo], replaying=True
            )
            result.written, result.error = written, error
            if written or failed:
                done = set(todo) - {todo[k] for k in kept} - {todo[k] for k, _ in failed}
                for k, why in failed:
                    e = session.entries[todo[k]]
                    e.kind, e.error = _spill.FAILED, why
                session.entries = [e for i, e in enumerate(session.entries) if i not in done]
                session.changed = True
        if discard_failed:
            left = [e for e in session.entries if e.kind != _spill.FAILED]
            if len(left) != len(session.entries):
                session.entries, session.changed = left, True
        result.failed_left = sum(1 for e in session.entries if e.kind == _spill.FAILED)
    return result


# -- process lifetime ------------------------------------------------------------------------


@atexit.register
def _flush_all_writers() -> None:
    for writer in list(_live_writers):
        try:
            writer.close()
        except RowsNotWritten as exc:
            # Nothing else can be done at exit: say it where the user will see it.
            print(f"workbench: {exc}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - at exit, keep closing the others
            pass


def _restart_writers_in_child() -> None:
    # Threads do not survive fork: without this, a forked child's rows would sit in a
    # queue nobody reads and flush() would return at once. Rows queued before the
    # fork are the parent's to write, so the child starts with an empty queue.
    # Forking while SQLite is busy on another thread can still hang the child in
    # SQLite itself; use the "spawn" start method for processes that trace.
    for writer in list(_live_writers):
        if not writer._closed:
            writer._inflight = []
            writer._start()


os.register_at_fork(after_in_child=_restart_writers_in_child)

_HANDLED_SIGNALS = ("SIGTERM", "SIGHUP")
"""What ``docker stop``, systemd, ``kill`` and a closed terminal send: their default ends the process
without ``atexit``, so queued rows would be lost."""
_handlers_installed = False


def _install_signal_handlers() -> None:
    """Write queued rows before SIGTERM/SIGHUP end the process, where the application has no handler."""
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for name in _HANDLED_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_DFL:  # the application's own handler (or SIG_IGN) is left alone
                signal.signal(signum, _make_handler(previous))
        except (ValueError, OSError):
            continue  # not the main interpreter


def _make_handler(previous: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        writers = [w for w in list(_live_writers) if not w._closed]
        for w in writers:
            if not w.queue.lock.acquire(timeout=0.5):
                # The code this handler interrupted holds the queue's lock (we run on its
                # thread): come back once it has let go.
                threading.Timer(0.02, os.kill, (os.getpid(), signum)).start()
                return
            w.queue.lock.release()
        deadline = time.monotonic() + SIGNAL_FLUSH_S
        for w in writers:
            with contextlib.suppress(Exception):
                w.drain_for_exit(deadline)
        # Then what the signal would have done without us.
        if callable(previous):
            previous(signum, frame)
        elif previous is signal.SIG_IGN:
            return
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    handler.workbench = True  # type: ignore[attr-defined]
    return handler
