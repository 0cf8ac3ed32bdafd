"""Eight writer processes append at once: the chain never forks, seq has no gap, nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from audit.models import LedgerEntry, LedgerHead
from audit.verify import verify_ledger
from tests.conftest import REPO_ROOT, uses_postgres

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.usefixtures("empty_ledger")]

WRITERS = 8


def _database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    return f"sqlite:///{Path(settings['NAME']).resolve()}"


def _run_writers(count: int, batch: int, mode: str = "own") -> None:
    env = {**os.environ, "DATABASE_URL": _database_url(), "PYTHONPATH": str(REPO_ROOT)}
    processes = [subprocess.Popen([sys.executable, str(REPO_ROOT / "tests/integration/ledger_writer.py"),
                                   str(writer), str(count), str(batch), mode], env=env, cwd=REPO_ROOT,
                                  stderr=subprocess.PIPE) for writer in range(WRITERS)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()[-2000:]


def _assert_intact(expected: int, count: int) -> None:
    seqs = list(LedgerEntry.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(expected)), "seq must run 0..n-1 with no gap"
    subjects = set(LedgerEntry.objects.values_list("subject_id", flat=True))
    assert subjects == {f"{writer}-{index}" for writer in range(WRITERS) for index in range(count)}
    assert LedgerHead.objects.get(pk=1).tree_size == expected
    result = verify_ledger()
    assert result.ok, result.problems


@pytest.mark.skipif(not uses_postgres(), reason="the 8-process test targets the real PostgreSQL (CI sets DATABASE_URL)")
def test_eight_processes_appending_on_postgresql_never_fork_or_lose_entries():
    _run_writers(count=150, batch=1)
    _assert_intact(WRITERS * 150, 150)


@pytest.mark.skipif(not uses_postgres(), reason="targets the real PostgreSQL")
def test_eight_processes_appending_outside_transactions_on_postgresql_never_fork_or_lose_entries():
    # Each append is one statement that is its own transaction (no BEGIN/COMMIT round trips).
    _run_writers(count=150, batch=1, mode="own+autocommit")
    _assert_intact(WRITERS * 150, 150)


@pytest.mark.skipif(not uses_postgres(), reason="targets the real PostgreSQL")
def test_eight_processes_batch_appending_on_postgresql():
    _run_writers(count=400, batch=100)
    _assert_intact(WRITERS * 400, 400)


@pytest.mark.skipif(uses_postgres(), reason="the SQLite variant runs when the suite runs on SQLite")
def test_eight_processes_appending_on_sqlite_never_fork_or_lose_entries():
    _run_writers(count=40, batch=1)
    _assert_intact(WRITERS * 40, 40)


def _assert_subject_histories_complete(expected: int) -> None:
    """Every entry about a shared subject names the one before it: one unbroken list per subject."""
    previous: dict[str, int] = {}
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert len(entries) == expected
    for entry in entries:
        assert entry.subject_prev == previous.get(entry.subject_id), entry
        previous[entry.subject_id] = entry.seq
    assert sorted(previous) == ["s0", "s1", "s2"]
    result = verify_ledger()
    assert result.ok, result.problems


@pytest.mark.skipif(not uses_postgres(), reason="targets the real PostgreSQL")
def test_eight_processes_appending_about_the_same_subjects_keep_subject_prev_exact():
    # Single appends go through the server function, batches of 100 through the client path: mixed.
    _run_writers(count=100, batch=1, mode="shared")
    _run_writers(count=200, batch=100, mode="shared")
    _run_writers(count=50, batch=1, mode="shared+autocommit")  # one statement each, outside transactions
    _assert_subject_histories_complete(WRITERS * 350)


@pytest.mark.skipif(uses_postgres(), reason="the SQLite variant runs when the suite runs on SQLite")
def test_eight_processes_appending_about_the_same_subjects_on_sqlite():
    _run_writers(count=30, batch=1, mode="shared")
    _assert_subject_histories_complete(WRITERS * 30)
