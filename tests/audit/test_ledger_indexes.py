"""The ledger's indexes (audit/0010): each filter the service runs has one, and no column has two.

Every append writes every index of `audit_ledgerentry` while it holds the chain head, so an index
nobody reads is a cost on every governed write.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.ledger import ledger_append
from audit.models import LedgerEntry
from audit.selectors import ledger_entry_list

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE, AFTER = "0009_append_entry_function", "0010_one_index_per_filtered_column"
# Besides the primary key.
DECLARED = {"audit_ledgerentry_recorded_at_24c763f2", "ledger_subject_idx", "ledger_actor_idx", "ledger_action_idx"}
# What audit/0009 left: a plain index on each of actor and action, and on PostgreSQL a
# pattern_ops one on each as well.
EARLIER = {"audit_ledgerentry_recorded_at_24c763f2", "ledger_subject_idx", "audit_ledgerentry_actor_34817c4d",
           "audit_ledgerentry_action_f87b9928"}
EARLIER_PATTERN_OPS = {"audit_ledgerentry_actor_34817c4d_like", "audit_ledgerentry_action_f87b9928_like"}


def _indexes() -> set[str]:
    """The table's indexes but its primary key."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "audit_ledgerentry")
    return {name for name, info in constraints.items()
            if info["index"] and not info["primary_key"] and not name.startswith("sqlite_autoindex")}


def _migrate(target: str) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("audit", target)])


def test_each_filter_the_service_runs_finds_its_entries():
    ledger_append(actor="user:alice", action="model.approved", subject=("t", "1"))
    ledger_append(actor="user:bob", action="model.created", subject=("t", "2"))
    ledger_append(actor="user:alice", action="dataset.created", subject=("t", "3"))
    subjects = lambda entries: sorted(entry.subject_id for entry in entries)  # noqa: E731
    assert subjects(ledger_entry_list(actor="user:alice")) == ["1", "3"]
    assert subjects(ledger_entry_list(action="model.created")) == ["2"]
    assert subjects(ledger_entry_list(action_prefix="model.")) == ["1", "2"]
    assert subjects(LedgerEntry.objects.filter(action__in=["dataset.created", "model.approved"])) == ["1", "3"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="opclasses and plans of PostgreSQL")
@pytest.mark.parametrize(("lookup", "index"), [
    ({"actor": "user:alice"}, "ledger_actor_idx"),
    ({"action": "model.approved"}, "ledger_action_idx"),
    ({"action__in": ["model.approved", "model.created"]}, "ledger_action_idx"),
    ({"action__startswith": "model."}, "ledger_action_idx"),  # LIKE 'model.%' needs the pattern_ops opclass
])
def test_postgresql_serves_each_filter_from_one_index(lookup, index):
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            plan = LedgerEntry.objects.filter(**lookup).explain()
        finally:
            cursor.execute("RESET enable_seqscan")
    assert index in plan, plan


def test_the_table_has_the_declared_indexes_and_no_second_one_on_a_column():
    assert _indexes() == DECLARED


def test_the_migration_reverses_and_reapplies():
    try:
        _migrate(BEFORE)
        assert _indexes() == EARLIER | (EARLIER_PATTERN_OPS if connection.vendor == "postgresql" else set())
    finally:
        _migrate(AFTER)
    assert _indexes() == DECLARED
