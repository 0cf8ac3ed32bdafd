"""Backup and restore: a `pg_dump` restored into a fresh database verifies; restoring an older
backup over newer data (a rollback) is caught against the last published checkpoint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from audit.ledger import checkpoint_create
from audit.models import LedgerEntry
from governance.registry.services.registry import model_register, model_version_register, team_create
from tests.conftest import REPO_ROOT, uses_postgres
from tests.faults.helpers import database_url, service_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.postgres,
              pytest.mark.skipif(not uses_postgres(), reason="pg_dump / pg_restore of the real PostgreSQL")]


def _pg_args() -> list[str]:
    config = connection.settings_dict
    return ["-h", config["HOST"] or "127.0.0.1", "-p", str(config["PORT"] or 5432), "-U", config["USER"] or "postgres"]


def _dump(path: Path) -> None:
    subprocess.run(["pg_dump", *_pg_args(), "--format=custom", "--file", str(path), connection.settings_dict["NAME"]],
                   check=True, timeout=120)


def _restore(path: Path, name: str) -> None:
    subprocess.run(["dropdb", *_pg_args(), "--if-exists", name], check=True, timeout=60)
    subprocess.run(["createdb", *_pg_args(), name], check=True, timeout=60)
    subprocess.run(["pg_restore", *_pg_args(), "--dbname", name, "--no-owner", "--exit-on-error", str(path)],
                   check=True, timeout=120)


def _verify(name: str, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    completed = subprocess.run(
        [str(Path(__import__("sys").executable)), "manage.py", "verify_ledger", "--json", *extra],
        cwd=REPO_ROOT, env=service_env(DATABASE_URL=database_url(name=name)), capture_output=True, text=True, timeout=120)
    return completed.returncode, json.loads(completed.stdout or "{}")


def _writes(root, team, prefix: str, count: int) -> None:  # type: ignore[no-untyped-def]
    for index in range(count):
        model = model_register(by=root, name=f"{prefix}-{index}", team=team, risk_tier="minimal")
        model_version_register(model=model, by=root, label="1.0.0", artifact_uri=f"s3://m/{prefix}/{index}/",
                                        manifest={"model.bin": f"{index:064x}"})


def test_restored_backup_verifies_and_a_rollback_is_caught_by_the_published_checkpoint(tmp_path):
    root = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    team = team_create(by="system:backup_test", name="credit-risk")
    _writes(root, team, "before", 5)
    first = checkpoint_create()
    old_backup = tmp_path / "old.dump"
    _dump(old_backup)

    _writes(root, team, "after", 5)
    latest = checkpoint_create()
    assert latest.tree_size > first.tree_size
    published = tmp_path / "published-checkpoint.txt"
    published.write_text(latest.note)  # what we published (e.g. to a transparency witness)
    new_backup = tmp_path / "new.dump"
    _dump(new_backup)

    restored = f"{connection.settings_dict['NAME']}_restore"
    try:
        _restore(new_backup, restored)
        code, report = _verify(restored, "--trusted-checkpoint", str(published))
        assert code == 0, report
        assert report["ok"] is True and report["tree_size"] == LedgerEntry.objects.count()

        # An older backup restored over the newer data: internally consistent, so plain
        # verification passes; only the published checkpoint shows that entries are gone.
        _restore(old_backup, restored)
        code, report = _verify(restored)
        assert code == 0, report
        code, report = _verify(restored, "--trusted-checkpoint", str(published))
        assert code == 1, report
        assert report["ok"] is False
        assert report["problems"][0]["code"] == "ledger_truncated"
        assert report["problems"][0]["seq"] == first.tree_size
    finally:
        subprocess.run(["dropdb", *_pg_args(), "--if-exists", restored], timeout=60)
