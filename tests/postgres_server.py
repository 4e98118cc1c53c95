"""A throwaway PostgreSQL server for the tests and the warehouse benchmark: Debian's ``postgresql`` package,
``initdb`` in a temporary folder, listening on 127.0.0.1 only (its unix socket in that folder too), one
user with a password (SCRAM authentication for every host connection), stopped and removed afterwards.

PostgreSQL refuses to run as root; run as root (as the tests do in containers), the server runs as the
``postgres`` system user (or ``nobody``), the temporary folder owned by it. :func:`unavailable` says why
no server can be started here (the reason a test skips with), or None.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

USER = "crmscore"
PASSWORD = "crm-test-secret-7f3a"
DATABASE = "crm"


@dataclasses.dataclass(frozen=True)
class Server:
    """A running server: where it listens and how to log in."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, database: str | None = None) -> str:
        """The connection URL without the password (crmscore reads it from an environment variable)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database or self.database}"


def bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``, else one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _run_as() -> str | None:
    """The unprivileged user to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists to run PostgreSQL as")


def unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None when it can."""
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        return "the ADBC PostgreSQL driver is not installed (pip install 'crmscore[warehouse]')"
    if bin_dir() is None:
        return "PostgreSQL is not installed (initdb/pg_ctl not found; `make postgres` installs Debian's postgresql)"
    try:
        user = _run_as()
    except RuntimeError as exc:
        return str(exc)
    if user is not None and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as an unprivileged user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(args: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *args] if user else args


@contextlib.contextmanager
def postgres_server() -> Iterator[Server]:
    """Start a server in a temporary folder; stop it and remove the folder on leaving."""
    binaries = bin_dir()
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="crmscore-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    pwfile = root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if user:
        entry = pwd.getpwnam(user)
        for path in (root, socket_dir, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    try:
        subprocess.run(
            _command(
                [str(binaries / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "-E", "UTF8",
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--no-sync"],
                user,
            ),
            check=True, capture_output=True, env=env, cwd=root,
        )  # fmt: skip
        options = f"-h 127.0.0.1 -p {port} -k {socket_dir} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            _command([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
                      "start"], user),
            check=True, capture_output=True, env=env, cwd=root,
        )  # fmt: skip
        server = Server("127.0.0.1", port, USER, PASSWORD, DATABASE)
        _create_database(binaries, server, socket_dir, user, env)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _command([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user),
                capture_output=True, env=env, cwd=root,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _create_database(binaries: Path, server: Server, socket_dir: Path, user: str | None, env: dict) -> None:
    env = {**env, "PGPASSWORD": server.password}
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            _command([str(binaries / "createdb"), "-h", str(socket_dir), "-p", str(server.port), "-U", server.user,
                      server.database], user),
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"createdb failed: {done.stderr.strip()}")
        time.sleep(0.2)
