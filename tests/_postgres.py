"""A PostgreSQL server for the tests: the one in ``WORKBENCH_TEST_POSTGRES``, or a throw-away cluster.

``server()`` returns a URL of a server the tests may create databases on, or
None (the PostgreSQL tests then skip with the reason, unless
``WORKBENCH_REQUIRE_POSTGRES=1``, where they fail). Without the variable, a
cluster is made with the machine's ``initdb``/``pg_ctl`` (Debian's
``postgresql`` package) in a temporary folder on a free port, with trust
authentication on loopback only, and stopped at exit. As root it runs as the
``postgres`` user (PostgreSQL refuses to run as root). ``.ci/run`` starts one
the same way through ``tests/_postgres.py start`` and exports the URL.

``fresh_database(server_url)`` creates an empty database per test and returns its URL.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REQUIRED = os.environ.get("WORKBENCH_REQUIRE_POSTGRES", "") not in ("", "0")
_state: dict[str, object] = {}
_counter = itertools.count()


def binaries() -> str | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH), or None."""
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(folder, "pg_ctl")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def start_cluster(folder: str | None = None, *, durable: bool = False) -> tuple[str, str]:
    """Make and start a throw-away cluster; returns (URL, data folder).

    Fast settings (no fsync): its data is disposable. ``durable`` (benchmarks) keeps fsync
    and full-page writes, with ``synchronous_commit=off`` like SQLite's ``synchronous=NORMAL``.
    """
    bindir = binaries()
    if bindir is None:
        raise RuntimeError("no pg_ctl on this machine: apt-get install postgresql")
    base = folder or tempfile.mkdtemp(prefix="workbench-pg-")
    data = os.path.join(base, "data")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        os.chmod(base, 0o700)
    subprocess.run(_as_owner([os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                              "-E", "UTF8", "--no-locale", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = _free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c synchronous_commit=off -c max_connections=500"
    if not durable:
        options += " -c fsync=off -c full_page_writes=off"
    subprocess.run(_as_owner([os.path.join(bindir, "pg_ctl"), "-D", data, "-o", options, "-l",
                              os.path.join(base, "log"), "-w", "-t", "120", "start"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", data


def stop_cluster(data: str) -> None:
    bindir = binaries()
    if bindir is None:
        return
    subprocess.run(_as_owner([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(os.path.dirname(data), ignore_errors=True)


def server() -> str | None:
    """A server URL for the tests, or None with the reason in ``skip_reason()``."""
    if "url" in _state:
        return _state["url"]  # type: ignore[return-value]
    url = os.environ.get("WORKBENCH_TEST_POSTGRES") or None
    reason = None
    if url is None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            reason = "psycopg is not installed (pip install 'workbench[postgres]')"
        else:
            if binaries() is None:
                reason = "no PostgreSQL server: set WORKBENCH_TEST_POSTGRES or apt-get install postgresql"
            else:
                try:
                    url, data = start_cluster()
                except (subprocess.CalledProcessError, OSError) as exc:
                    detail = getattr(exc, "stderr", b"") or b""
                    reason = f"could not start a throw-away PostgreSQL cluster: {exc} {detail.decode(errors='replace')[-300:]}"
                else:
                    atexit.register(stop_cluster, data)
    _state["url"], _state["reason"] = url, reason
    return url


def skip_reason() -> str:
    return str(_state.get("reason") or "no PostgreSQL server")


def fresh_database(server_url: str) -> str:
    """An empty database on the server; its URL. Dropped at exit (with the cluster, when it is ours)."""
    import psycopg

    name = f"wb_{os.getpid()}_{next(_counter)}_{int(time.time() * 1000) % 100000}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = server_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    atexit.register(_drop, server_url, name)
    return url


def _drop(server_url: str, name: str) -> None:
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str]) -> int:
    """``python tests/_postgres.py start FOLDER`` prints the URL; ``stop FOLDER`` stops that cluster."""
    if len(argv) == 3 and argv[1] == "start":
        os.makedirs(argv[2], exist_ok=True)
        url, _ = start_cluster(argv[2])
        print(url)
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        stop_cluster(os.path.join(argv[2], "data"))
        return 0
    print("usage: python tests/_postgres.py start|stop FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
