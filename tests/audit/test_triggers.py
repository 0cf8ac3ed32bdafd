"""The database refuses UPDATE, DELETE and TRUNCATE on the ledger tables, even for raw SQL."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.ledger import checkpoint_create, ledger_append
from audit.models import Checkpoint, LedgerEntry, MerkleNode, SigningKey

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_ledger")]

TABLES = ["audit_ledgerentry", "audit_merklenode", "audit_checkpoint"]


@pytest.fixture
def populated():
    for index in range(4):
        ledger_append(actor="system:test", action="t", subject=("t", str(index)))
    checkpoint_create()
    assert MerkleNode.objects.exists() and Checkpoint.objects.exists()


def _refused(sql: str) -> None:
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert "append-only" in str(caught.value)


@pytest.mark.parametrize("table", TABLES)
def test_update_is_refused(populated, table):
    column = {"audit_ledgerentry": "actor = 'user:mallory'", "audit_merklenode": "hash = hash",
              "audit_checkpoint": "note = 'forged'"}[table]
    _refused(f"UPDATE {table} SET {column}")


@pytest.mark.parametrize("table", TABLES)
def test_delete_is_refused(populated, table):
    _refused(f"DELETE FROM {table}")


@pytest.mark.parametrize("table", TABLES + ["audit_signingkey"])
def test_truncate_is_refused(populated, table):
    if connection.vendor == "postgresql":
        _refused(f"TRUNCATE {table} CASCADE")
    else:  # SQLite has no TRUNCATE; an unqualified DELETE is its truncate and fires the trigger
        _refused(f"DELETE FROM {table}")


def test_orm_paths_are_refused_too(populated):
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(seq=0).update(action="forged")
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(seq=3).delete()
    assert LedgerEntry.objects.count() == 4


def test_signing_keys_only_allow_closing_the_validity_window(populated):
    key = SigningKey.objects.first()
    with pytest.raises(DatabaseError), transaction.atomic():
        SigningKey.objects.filter(pk=key.pk).update(vkey="forged")
    with pytest.raises(DatabaseError), transaction.atomic():
        SigningKey.objects.filter(pk=key.pk).delete()
    from django.utils import timezone

    SigningKey.objects.filter(pk=key.pk).update(valid_until=timezone.now())
    with pytest.raises(DatabaseError), transaction.atomic():
        SigningKey.objects.filter(pk=key.pk).update(valid_until=None)
