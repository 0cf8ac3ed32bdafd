"""Suite-wide setup: isolated signing keys, eager Celery for unit tests, the append-only triggers
around flush; the shared fixtures come from the `tests.fixtures` plugin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "tests" / "data"  # third-party test data, each folder with its source note

pytest_plugins = ["tests.fixtures"]


def uses_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("ledger.key", "attestation.key"):
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        (folder / name).write_bytes(pem)
    return folder


@pytest.fixture(autouse=True)
def _isolated_keys(settings, key_dir: Path) -> None:  # type: ignore[no-untyped-def]
    settings.LEDGER_SIGNING_KEY_FILE = key_dir / "ledger.key"
    settings.ATTESTATION_SIGNING_KEY_FILE = key_dir / "attestation.key"
    settings.DATA_KEK_FILE = key_dir / "data.kek"  # created on first use, as in the embedded setup
    settings.DATA_KEK = ""


@pytest.fixture(autouse=True)
def _eager_celery(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Unit and service tests run tasks inline; integration tests start a real worker instead."""
    from governance.celery import app

    eager = request.node.get_closest_marker("integration") is None
    previous = app.conf.task_always_eager
    # The app reads Django settings with the CELERY_ namespace, so the override needs that key.
    app.conf.CELERY_TASK_ALWAYS_EAGER = eager
    yield
    app.conf.CELERY_TASK_ALWAYS_EAGER = previous


@pytest.fixture(scope="session", autouse=True)
def _flush_past_append_only_triggers():
    """Transactional tests end with `flush`, which the ledger's triggers rightly refuse.

    Test-only: around Django's flush command, drop the triggers and create them again, using
    the migration's own functions so the recreated triggers are exactly the production ones.
    """
    from importlib import import_module

    from django.core.management.commands import flush
    from django.db import connections

    triggers = import_module("audit.migrations.0002_append_only_triggers")
    witness_triggers = import_module("audit.migrations.0004_witness_cosignatures")
    timestamp_triggers = import_module("audit.migrations.0006_checkpoint_timestamps")
    original = flush.Command.handle

    def handle(self, **options):  # type: ignore[no-untyped-def]
        connection = connections[options.get("database", "default")]
        with connection.schema_editor() as editor:
            triggers.drop_triggers(None, editor)
            witness_triggers.drop_triggers(None, editor)
            timestamp_triggers.drop_triggers(None, editor)
        try:
            return original(self, **options)
        finally:
            # post_migrate handlers that flush re-runs (role groups) write ledger entries; the
            # next test must start from an empty ledger, as after a fresh migrate.
            with connection.cursor() as cursor:
                for table in ("audit_witnesscosignature", "audit_checkpointtimestamp", "audit_ledgerentry",
                              "audit_merklenode", "audit_checkpoint", "audit_ledgerhead"):
                    cursor.execute(f"DELETE FROM {table}")
            with connection.schema_editor() as editor:
                triggers.create_triggers(None, editor)
                witness_triggers.create_triggers(None, editor)
                timestamp_triggers.create_triggers(None, editor)
            from django.apps import apps

            triggers.create_head(apps, None)

    flush.Command.handle = handle
    yield
    flush.Command.handle = original


@pytest.fixture
def empty_ledger(db):  # type: ignore[no-untyped-def]
    """Start a test from an empty ledger (migrations record role grants), inside the test's transaction.

    The rows come back when the test's transaction rolls back; the triggers are off only
    within this transaction (PostgreSQL) or dropped and re-created in it (SQLite's DDL is
    transactional too).
    """
    from django.db import connection

    tables = ("audit_witnesscosignature", "audit_ledgerentry", "audit_merklenode", "audit_checkpoint")
    tables = ("audit_checkpointtimestamp", "audit_ledgerentry", "audit_merklenode", "audit_checkpoint")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
            try:
                for table in tables:
                    cursor.execute(f"DELETE FROM {table}")
            finally:
                cursor.execute("SET session_replication_role = origin")
        else:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit_%'")
            saved = cursor.fetchall()
            for name, _ in saved:
                cursor.execute(f'DROP TRIGGER "{name}"')
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")
            for _, sql in saved:
                cursor.execute(sql)
        cursor.execute("UPDATE audit_ledgerhead SET tree_size = 0, head_hash = %s, frontier = %s, subject_prev_from = 0 "
                       "WHERE id = 1",
                       [bytes(32), b""])
