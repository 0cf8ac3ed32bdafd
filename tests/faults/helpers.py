"""Real processes for fault tests: gunicorn, Celery workers, a private Redis, and a TCP proxy
that can cut the service off from PostgreSQL. Everything binds to 127.0.0.1 and is stopped by
the caller (each helper is a context manager); nothing touches the shared PostgreSQL cluster or
the shared Redis at :6379.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.db import connection

from tests.conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(*, host: str | None = None, port: int | None = None, name: str | None = None) -> str:
    """A URL for subprocesses pointing at the test database (optionally through another host/port)."""
    config = connection.settings_dict
    if connection.vendor != "postgresql":
        return f"sqlite:///{Path(config['NAME']).resolve()}"
    return (f"postgres://{config['USER']}@{host or config['HOST'] or '127.0.0.1'}:{port or config['PORT'] or 5432}/"
            f"{name or config['NAME']}")


def service_env(**extra: str) -> dict[str, str]:
    """Environment for a child process of the service: the test's keys and database, no eager tasks."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update({
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(REPO_ROOT),
        "DJANGO_SETTINGS_MODULE": "governance.settings",
        "LEDGER_SIGNING_KEY_FILE": str(settings.LEDGER_SIGNING_KEY_FILE),
        "ATTESTATION_SIGNING_KEY_FILE": str(settings.ATTESTATION_SIGNING_KEY_FILE),
        # The same key-encryption keys, so a worker unwraps the data keys this process wrapped.
        "DATA_KEK_FILE": str(settings.DATA_KEK_FILE),
        "DATA_KEK": settings.DATA_KEK,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "SECURE_COOKIES": "false",
        "LOG_LEVEL": "WARNING",
    })
    env.update(extra)
    return env


def reset_broker_connections() -> None:
    """Forget pooled broker connections (kombu keeps them per URL), so the next publish uses the current settings."""
    from kombu import pools

    from governance.celery import app

    pools.reset()
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@contextlib.contextmanager
def broker_override(url: str, *, queue: str | None = None,
                    transport_options: dict[str, Any] | None = None) -> Iterator[None]:
    """Point this process's Celery app at another broker (and default queue) for the block."""
    from governance.celery import app

    # The app reads Django settings with the CELERY_ namespace, so overrides need those keys.
    overrides: dict[str, Any] = {"CELERY_BROKER_URL": url,
                                 "CELERY_BROKER_TRANSPORT_OPTIONS": transport_options or {"visibility_timeout": 3600}}
    if queue is not None:
        overrides["CELERY_TASK_DEFAULT_QUEUE"] = queue
    previous = {key: app.conf.get(key) for key in overrides}
    app.conf.update(overrides)
    reset_broker_connections()
    try:
        yield
    finally:
        for key, value in previous.items():
            app.conf[key] = value
        reset_broker_connections()


def wait_for_log(path: Path, text: str, process: subprocess.Popen[Any], *, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{path.name}: no {text!r} within {timeout_s} s"
        time.sleep(0.1)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def wait_http(url: str, *, timeout_s: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before serving {url}")
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout_s} s")


def stop(process: subprocess.Popen[Any], *, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group (we started it with start_new_session), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 2, timeout_s: int = 60) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = subprocess.Popen(
        [_bin("gunicorn"), "governance.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--timeout", str(timeout_s), "--graceful-timeout", "5", "--log-level", "warning"],
        cwd=REPO_ROOT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/admin/login/", process=process)
        yield base, process
    finally:
        stop(process)


def gunicorn_worker_pids(master_pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master_pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


@contextlib.contextmanager
def celery_worker(env: dict[str, str], *, name: str, concurrency: int = 1,
                  queues: str = "celery") -> Iterator[subprocess.Popen[bytes]]:
    process = start_celery_worker(env, name=name, concurrency=concurrency, queues=queues)
    try:
        yield process
    finally:
        stop(process, timeout_s=15)


def start_celery_worker(env: dict[str, str], *, name: str, concurrency: int = 1,
                        queues: str = "celery") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [_bin("celery"), "-A", "governance", "worker", "--loglevel", "WARNING", "--concurrency", str(concurrency),
         "--pool", "prefork", "--hostname", f"{name}@%h", "--queues", queues, "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=REPO_ROOT, env=env, start_new_session=True)


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[int, Any]]:
    """A throw-away redis-server on its own port; yields (port, controller with stop()/start())."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()

    class Controller:
        process: subprocess.Popen[bytes] | None = None

        def start(self) -> None:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
                time.sleep(0.05)
            raise TimeoutError("private redis did not start")

        def stop(self) -> None:
            if self.process is not None:
                self.process.kill()
                self.process.wait(timeout=10)
                self.process = None

    controller = Controller()
    controller.start()
    try:
        yield port, controller
    finally:
        controller.stop()


class TcpProxy:
    """A loopback TCP proxy in a background thread. `cut()` drops every connection and refuses new
    ones (as a restarting PostgreSQL does); `restore()` accepts again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.restore()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self.writers |= {client_writer, upstream_writer}
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        self.writers -= {client_writer, upstream_writer}

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            transport = writer.transport
            if transport is not None:
                transport.abort()
        self.writers.clear()

    def restore(self) -> None:
        self._call(self._start())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
