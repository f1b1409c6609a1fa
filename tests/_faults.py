"""Broken files for the durability tests: full disks, read-only files and folders, damaged pages.

Each scenario runs in a child process, so what it breaks (a mount, a file size
limit, dropped capabilities) ends with it:

- **Full disk**: a small tmpfs mounted in a private mount namespace (``unshare -m``,
  or ``unshare -rm`` without root) over a folder of the test; where mounting is not
  allowed, the process's file size limit (``RLIMIT_FSIZE``) stands in for it.
  ``fill()`` and ``free()`` in the child fill and free the "disk" either way.
- **Read-only**: file modes. Root ignores them, so as root the child runs under
  ``setpriv`` with the capabilities that override file modes dropped.

The child prints one JSON value on its last line of stdout; ``run`` returns it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PRELUDE = textwrap.dedent(
    """
    import json, os, signal, sys
    DISK_MODE = os.environ.get("WB_FAULT_DISK", "")
    DISK = os.environ.get("WB_FAULT_DIR", "")

    def fill():
        \"\"\"Leave no room on the disk (tmpfs), or no room to grow any file (file size limit).\"\"\"
        if DISK_MODE == "tmpfs":
            fd = os.open(os.path.join(DISK, "filler"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                for size in (65536, 4096, 512, 1):  # down to the last scraps
                    while True:
                        try:
                            os.write(fd, b"\\0" * size)
                        except OSError:
                            break
            finally:
                os.close(fd)
        elif DISK_MODE == "rlimit":
            import resource
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing us
            sizes = [os.path.getsize(os.path.join(DISK, f)) for f in os.listdir(DISK) if f.endswith(".db")]
            resource.setrlimit(resource.RLIMIT_FSIZE, (min(sizes, default=0), resource.RLIM_INFINITY))

    def free():
        if DISK_MODE == "tmpfs":
            os.remove(os.path.join(DISK, "filler"))
        elif DISK_MODE == "rlimit":
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    def outcome(fn):
        \"\"\"["ok", value] or [exception class path, is a WorkbenchError, message].\"\"\"
        from workbench.errors import WorkbenchError
        try:
            return ["ok", fn()]
        except BaseException as exc:
            cls = type(exc)
            return [f"{cls.__module__}.{cls.__qualname__}", isinstance(exc, WorkbenchError), str(exc)]

    def report(value):
        print(json.dumps(value, default=str))
    """
)


def _run(argv: list[str], code: str, args: list[str], env: dict[str, str], timeout: float) -> Any:
    proc = subprocess.run(
        [*argv, sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **env},
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"child failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return json.loads(lines[-1])


def run(code: str, *args: str, timeout: float = 180) -> Any:
    """Run ``code`` in a plain child process."""
    return _run([], code, list(args), {}, timeout)


# -- read-only files -------------------------------------------------------------------------


@functools.cache
def _unprivileged_prefix() -> list[str] | None:
    """A command prefix under which file modes apply, or None when the machine cannot give one."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os; os.open('/proc/self/status', os.O_RDONLY)"],
                           capture_output=True)
    return prefix if probe.returncode == 0 else None


def run_unprivileged(code: str, *args: str, timeout: float = 180) -> Any:
    """Run ``code`` where file modes apply (as root: capabilities dropped); skips where impossible."""
    prefix = _unprivileged_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to apply")
    return _run(prefix, code, list(args), {}, timeout)


# -- full disks ------------------------------------------------------------------------------


@functools.cache
def _mount_prefix() -> list[str] | None:
    """``unshare`` arguments that allow mounting a tmpfs, or None."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        return None
    for flags in (["-m"], ["-r", "-m"]):
        probe = subprocess.run(
            [unshare, *flags, "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs \"$d\" && umount \"$d\"; rc=$?; rmdir \"$d\"; exit $rc"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return [unshare, *flags]
    return None


def disk_modes() -> list[Any]:
    """The ways this machine can make a disk full: ``tmpfs`` where mounting works, ``rlimit`` always (Linux)."""
    modes = []
    if _mount_prefix() is not None:
        modes.append("tmpfs")
    if sys.platform == "linux":
        modes.append("rlimit")
    return modes or [pytest.param("none", marks=pytest.mark.skip(reason="no way to fill a disk on this platform"))]


def run_on_small_disk(mode: str, folder: Path, code: str, *args: str, size_kb: int = 4096, timeout: float = 240) -> Any:
    """Run ``code`` with ``folder`` on a small disk that ``fill()`` fills and ``free()`` frees."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {"WB_FAULT_DISK": mode, "WB_FAULT_DIR": str(folder)}
    if mode == "rlimit":
        return _run([], code, list(args), env, timeout)
    prefix = _mount_prefix()
    assert prefix is not None
    mount = ["sh", "-c", f'mount -t tmpfs -o size={size_kb}k tmpfs "$0" && exec "$@"', str(folder)]
    return _run([*prefix, *mount], code, list(args), env, timeout)


# -- damaged files ---------------------------------------------------------------------------


def damage_a_data_page(path: Path) -> None:
    """Overwrite a page of the traces table with garbage, keeping the header and schema intact."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    try:  # SQLite's page map, where it is compiled in
        leaves = [r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = 'traces' AND pagetype = 'leaf'")]
    except sqlite3.OperationalError:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        leaves = list(range(pages // 2, pages))  # the later half holds the traces written last
    conn.close()
    with open(path, "r+b") as fh:
        for page in leaves[len(leaves) // 2: len(leaves) // 2 + 3]:
            fh.seek(page_size * (page - 1))
            fh.write(bytes((i * 37 + 11) % 256 for i in range(page_size)))
