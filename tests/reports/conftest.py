"""Reports tests: a real Celery worker on Redis for the integration test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"


def _reset_broker_connections(app: Any) -> None:
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def reports_worker(settings, key_dir: Path, tmp_path: Path) -> Iterator[str]:
    """A real `celery -A governance worker` on its own Redis queue, against the test database."""
    from governance.celery import app

    queue = f"reports-{uuid.uuid4().hex[:8]}"
    media = tmp_path / "media"
    media.mkdir()
    settings.MEDIA_ROOT = media
    overrides = {"CELERY_BROKER_URL": REDIS_URL, "CELERY_BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": 3600},
                 "CELERY_TASK_DEFAULT_QUEUE": queue}
    previous = {key: app.conf.get(key) for key in overrides}
    app.conf.update(overrides)
    _reset_broker_connections(app)
    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": REDIS_URL,
           "LEDGER_SIGNING_KEY_FILE": str(key_dir / "ledger.key"),
           "ATTESTATION_SIGNING_KEY_FILE": str(key_dir / "attestation.key"),
           "MEDIA_ROOT": str(media), "CELERY_TASK_ALWAYS_EAGER": "false"}
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "governance", "worker", "--pool=solo",
                                   "--loglevel=INFO", "-Q", queue, "--without-heartbeat", "--without-gossip",
                                   "--without-mingle"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "ready" not in log_path.read_text():
                assert worker.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the Celery worker did not start"
                time.sleep(0.2)
            yield queue
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
            for key, value in previous.items():
                app.conf[key] = value
            _reset_broker_connections(app)
