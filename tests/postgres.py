"""A throw-away PostgreSQL server for tests: its own data folder, a Unix socket, no TCP port.

Needs Debian's ``postgresql`` package (``make postgres-deps``).  PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres``
user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when no server is installed."""
    for candidate in [shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)]:
        if candidate:
            return Path(candidate).resolve().parent
    return None


def require_server() -> Path:
    """The server's bin folder; skip the test without one, except in CI, where it must be installed."""
    found = server_bin()
    if found is None:
        message = "PostgreSQL server not installed (make postgres-deps)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    return found


@contextmanager
def postgres_server(database: str = "gradebook") -> Iterator[str]:
    """Start a server, create ``database``, yield its SQLAlchemy URL; stop and delete it afterwards."""
    bindir = require_server()
    as_user: list[str] = []
    # A short path: Unix socket names are limited to about 100 bytes.
    home = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(home, "postgres", "postgres")
    data, log = home / "data", home / "server.log"

    def run(*command: str) -> None:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True)
        if result.returncode:
            details = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}{details}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", "grader", "--auth=trust", "-E", "UTF8")
    options = f"-c listen_addresses='' -k {home} -c fsync=off -c max_connections=200"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
    try:
        import psycopg

        with psycopg.connect(host=str(home), user="grader", dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
        yield f"postgresql+psycopg://grader@/{database}?host={home}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


def another_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url`` (one from ``postgres_server``); its SQLAlchemy URL."""
    import psycopg

    host = url.rsplit("?host=", 1)[1]
    with psycopg.connect(host=host, user="grader", dbname="postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://grader@/{name}?host={host}"
