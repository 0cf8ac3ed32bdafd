"""Real PostgreSQL and Redis for the test suite, started here when the environment names none.

Loaded early (`-p tests.servers` in pytest's addopts) so that it runs before pytest-django reads
the settings. When `DATABASE_URL` is unset, a throwaway PostgreSQL cluster is created with
`initdb` in a temporary folder and started on a free port; when `REDIS_URL` is unset, a
`redis-server` is started on a free port. Both are stopped and deleted when pytest exits. When the
variables are set (as in CI), the suite uses those servers and starts nothing.

A `sqlite:///` URL runs the suite on the embedded default engine; the Makefile's SQLite pass does
that for the tests that exercise SQLite's own code paths.

PostgreSQL refuses to run as root, so as root the cluster is run as the `postgres` system user
(which Debian's package creates).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

STARTED: list[subprocess.Popen[bytes]] = []
FOLDERS: list[Path] = []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server binary: the newest Debian version folder first, then PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                    key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0, reverse=True)
    if debian:
        return str(debian[0])
    found = shutil.which(name)
    if found:
        return found
    raise pytest.UsageError(f"PostgreSQL's {name} was not found: install Debian's postgresql package "
                            "(`make test` does), or set DATABASE_URL to a running server")


def _as_server_user(folder: Path) -> list[str]:
    """Command prefix that runs PostgreSQL as a non-root user; the folder is handed to that user."""
    if os.geteuid() != 0:
        return []
    os.chown(folder, *_postgres_ids())
    return ["runuser", "-u", "postgres", "--"]


def _postgres_ids() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as missing:
        raise pytest.UsageError("running as root, PostgreSQL needs the `postgres` system user "
                                "(Debian's postgresql package creates it)") from missing
    return entry.pw_uid, entry.pw_gid


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise pytest.UsageError(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise pytest.UsageError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s} s")


def start_postgres() -> str:
    """A private cluster: trust auth, no durability (a test cluster), a socket folder of its own."""
    folder = Path(tempfile.mkdtemp(prefix="governance-test-pg-"))
    FOLDERS.append(folder)
    prefix = _as_server_user(folder)
    data = folder / "data"
    subprocess.run([*prefix, _postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = _free_port()
    log = folder / "postgres.log"
    log.touch()
    if prefix:
        os.chown(log, *_postgres_ids())
    with log.open("ab") as log_handle:
        process = subprocess.Popen(
            [*prefix, _postgres_bin("postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
             "-k", str(folder), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=128MB"],
            stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True)
    STARTED.append(process)
    _wait_for_port(port, process, "the test PostgreSQL", log)
    # Accepting TCP is not yet accepting sessions: wait until a query answers.
    deadline = time.monotonic() + 60
    import psycopg

    while True:
        try:
            psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return f"postgres://postgres@127.0.0.1:{port}/governance"


def start_redis() -> str:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise pytest.UsageError("redis-server was not found: install Debian's redis-server package "
                                "(`make test` does), or set REDIS_URL to a running server")
    folder = Path(tempfile.mkdtemp(prefix="governance-test-redis-"))
    FOLDERS.append(folder)
    port = _free_port()
    log = folder / "redis.log"
    process = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    STARTED.append(process)
    log.touch()
    _wait_for_port(port, process, "the test Redis", log)
    return f"redis://127.0.0.1:{port}/15"


def stop_all() -> None:
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)  # runuser forwards it; postgres shuts down fast
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    while FOLDERS:
        shutil.rmtree(FOLDERS.pop(), ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # xdist workers inherit the controller's servers through the environment
    atexit.register(stop_all)
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_postgres()
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = start_redis()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        stop_all()


def pytest_report_header(config: pytest.Config) -> list[str]:
    database = os.environ.get("DATABASE_URL") or "sqlite (embedded default)"
    return [f"servers: DATABASE_URL={database} REDIS_URL={os.environ.get('REDIS_URL')}"]
