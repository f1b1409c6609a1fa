"""One background event loop per process for workbench's async work.

Sync helpers submit coroutines here, so they work the same from a script and
from inside Jupyter's running loop, and provider clients always live on one loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new = asyncio.new_event_loop()
            thread = threading.Thread(target=new.run_forever, name="workbench-loop", daemon=True)
            thread.start()
            _loop = new
        return _loop


def in_background_loop() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


CLEANUP_WAIT_S = 60.0
"""After Ctrl-C, how long ``run_sync`` waits for the cancelled work to record what it stopped."""


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and wait for it; Ctrl-C cancels it.

    On Ctrl-C (or any exception in the waiting thread) the task is cancelled and
    its cleanup runs to the end before the exception goes on: an experiment
    records its ``interrupted`` status, and a script that ends right after does
    not shut the interpreter down under the cleanup. A second Ctrl-C stops the wait.
    """
    if in_background_loop():
        coro.close()
        raise RuntimeError("run_sync called from the workbench loop itself; await the async API instead")
    lp = loop()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    ended = threading.Event()
    tasks: list[asyncio.Task[T]] = []

    def finish(task: asyncio.Task[T]) -> None:
        # The task's own end, after its cleanup: not the moment cancel() was asked.
        if task.cancelled():
            done.cancel()
        elif task.exception() is not None:
            done.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            done.set_result(task.result())
        ended.set()

    def start() -> None:
        task = lp.create_task(coro)
        task.add_done_callback(finish)
        tasks.append(task)

    lp.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        if not done.done():
            # Callbacks run in order, so start() has made the task by the time this runs.
            lp.call_soon_threadsafe(lambda: tasks[0].cancel())
            ended.wait(CLEANUP_WAIT_S)
        raise


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the background loop from any other loop."""
    if in_background_loop():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop()))


def _forget_loop_in_child() -> None:
    # The loop's thread does not survive fork; a child starts its own on first use.
    global _loop, _lock
    _loop = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_loop_in_child)
